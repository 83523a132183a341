r"""Exports a trained run for TensorFlow Serving: ``python -m tfhash.export``.

    python -m tfhash.export --run_dir=runs/cifar10_48 --export_dir=models/cifar10_48

loads ``run_dir/checkpoints/best.keras`` (the checkpoint with the best
validation MAP) and writes a SavedModel into ``export_dir/<version>/``, the next
free integer version unless ``--version`` is given. The SavedModel has two
signatures, ``serving_default`` (float32 pixels ``images`` [B, S, S, 3] in
[0, 255]) and ``encode_images`` (encoded JPEG/PNG files ``image_bytes`` [B]),
each returning ``codes`` int8 ±1 [B, K], ``packed`` uint8 [B, ⌈K/8⌉] and
``embedding`` float32 [B, K]; see :mod:`tfhash.serving`.

The export itself is :func:`tfhash.serving.export.export_run` (importable from here too).
"""

import json
import os

from absl import flags

from tfhash import cli
from tfhash.serving.export import checkpoint_path, export_run  # noqa: F401  (callers' names)


def define_flags():
    """export's flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string(
        "run_dir",
        None,
        "Training run directory (written by python -m "
        "tfhash.train); its checkpoints/best.keras is exported.",
    )
    flags.DEFINE_string(
        "export_dir",
        None,
        "Base directory of the exported model, the "
        "--model_base_path of tensorflow_model_server; versions go in integer "
        "subdirectories.",
    )
    flags.DEFINE_integer(
        "version",
        None,
        "Version number of the export; default: one more than "
        "the highest version already in --export_dir (1 for a new one).",
    )


FLAGS = flags.FLAGS


def main(argv):
    version_dir = export_run(FLAGS.run_dir, FLAGS.export_dir, FLAGS.version)
    flags_path = os.path.join(FLAGS.run_dir, "flags.json")
    if os.path.isfile(flags_path):
        with open(flags_path) as f:
            run = json.load(f)
        summary = ", ".join(
            f"{k}={run[k]}"
            for k in ("method", "backbone", "bits", "image_size", "dataset")
            if k in run
        )
        print(f"{FLAGS.run_dir} ({summary})")
    print(
        f"exported to {version_dir}\n"
        f"serve it: tensorflow_model_server --rest_api_port=8501 --model_name=tfhash "
        f"--model_base_path={os.path.abspath(FLAGS.export_dir)}"
    )


if __name__ == "__main__":
    cli.run(main, define_flags)
