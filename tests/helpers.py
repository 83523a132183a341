"""Helper functions shared by test files: ``from helpers import write_folder, train_config``.

tests/ is on ``sys.path`` (tests/conftest.py puts it there), so any test file, in any
subdirectory, imports this module by its bare name. Fixtures live in tests/conftest.py.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("red", "green", "blue", "grey")


def write_folder(root, per_class=40, size=12):
    """Write an image folder ``root/<class>/<i>.png`` whose four classes differ by colour.

    Each image is its class colour plus Gaussian noise, so a network learns to tell the
    classes apart in a few steps; the same seed gives the same images every time.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    base = {
        "red": (200, 40, 40),
        "green": (40, 200, 40),
        "blue": (40, 40, 200),
        "grey": (128, 128, 128),
    }
    for name in CLASSES:
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = np.clip(rng.normal(base[name], 40, (size, size, 3)), 0, 255).astype(np.uint8)
            tf.io.write_file(str(root / name / f"{i:03d}.png"), tf.io.encode_png(pixels))
    return root


def train_settings(run_dir, folder, **overrides):
    """The settings of a short CPU run on ``folder`` (8 bits, 2 epochs of 3 steps), as a dict:
    ``TrainConfig(**settings)`` in-process, ``as_flags(settings)`` for the command.

    ``overrides`` replace any setting, e.g. ``train_settings(d, f, epochs=1, bits=12)``.
    """
    settings = dict(
        run_dir=str(run_dir),
        dataset="folder",
        data_dir=str(folder),
        protocol="fraction",
        bits=8,
        batch_size=16,
        images_per_class=4,
        epochs=2,
        steps_per_epoch=3,
        eval_every=1,
        eval_batch_size=64,
        verbose=0,
        learning_rate=0.01,
        head_lr_multiplier=1.0,
        augment="none",
    )
    settings.update(overrides)
    return settings


def train_config(run_dir, folder, **overrides):
    """``train_settings`` as a ``TrainConfig``, e.g. ``train_config(d, f, epochs=1, bits=12)``."""
    from tfhash.train import TrainConfig

    return TrainConfig(**train_settings(run_dir, folder, **overrides))


def as_flags(settings):
    """``{"bits": 8, ...}`` as the command's flags ``["--bits=8", ...]``: a test states its
    settings once and runs them as a command or, in-process, as ``TrainConfig(**settings)``
    (the command's defaults are TrainConfig's)."""
    return [f"--{name}={value}" for name, value in settings.items()]


def run_cli(*args, module="tfhash.train", timeout=300):
    """Run ``python -m <module> <args>`` in a fresh process; the ``CompletedProcess``, text out."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout
    )


def map_of(metrics):
    """The first MAP value (``map``, ``map@1000``, ...) of a training run's metrics."""
    candidates = [v for k, v in metrics.items() if k.startswith("map") and isinstance(v, float)]
    assert candidates, f"no MAP in {sorted(metrics)}"
    return candidates[0]


def assert_export_gives_the_report_codes(run_dir, folder, models_dir):
    """Export the run to ``models_dir``; fed the query images, it must give the report's codes."""
    import tensorflow as tf

    from tfhash import data
    from tfhash.export import export_run

    version_dir = export_run(str(run_dir), str(models_dir))
    collection = data.load_collection("folder", str(folder))
    query = np.load(run_dir / "split" / "query.npy")
    images = np.concatenate([x for x, _ in data.eval_dataset(collection, query, 32, 64)])
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    codes = served(images=tf.constant(images))["codes"].numpy()
    np.testing.assert_array_equal(codes, np.load(run_dir / "codes" / "query_codes.npy"))


def load_benchmark(name):
    """Import ``benchmarks/<name>.py`` (not a package) as a module, e.g. ``"paper_tables"``."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "benchmarks", name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
