"""--freeze_backbone: the head trains on cached backbone features; the export still takes images."""

import glob
import json

import keras
import numpy as np
import pytest

from tfhash.errors import UsageError
from tfhash.models import backbones
from tfhash.train import train

from helpers import assert_export_gives_the_report_codes
from helpers import train_config as _config

pytestmark = pytest.mark.slow  # trains networks


def test_a_frozen_run_trains_the_head_on_cached_features_and_exports_images_to_codes(
    tmp_path, folder, weights_file
):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    settings = dict(
        freeze_backbone=True,
        weights=weights_file,
        feature_cache=str(cache),
        head_hidden=32,
        epochs=4,
        steps_per_epoch=10,
        optimizer="adam",
        learning_rate=0.01,
    )
    metrics = train(_config(run_dir, folder, **settings))
    assert metrics["map"] > 0.5  # four colour classes: chance ~0.25; 1.0 measured (TF 2.21)
    assert len(glob.glob(str(cache / "*.npz"))) == 1
    assert (run_dir / "checkpoints" / "best_head.keras").exists()

    # The exported SavedModel takes images and gives the codes of the training-time report.
    assert_export_gives_the_report_codes(run_dir, folder, tmp_path / "models")

    # A second run (another code length) reuses the cached features.
    train(_config(tmp_path / "run12", folder, bits=12, **settings))
    assert len(glob.glob(str(cache / "*.npz"))) == 1
    assert json.loads((tmp_path / "run12" / "flags.json").read_text())["freeze_backbone"]


def test_frozen_random_weights_are_refused(tmp_path, folder):
    with pytest.raises(UsageError, match="`freeze_backbone` .* weights=none"):
        train(_config(tmp_path / "run", folder, freeze_backbone=True))


def test_partial_fine_tuning_trains_the_last_blocks_on_the_cached_trunk(
    tmp_path, folder, weights_file
):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    metrics = train(
        _config(
            run_dir,
            folder,
            freeze_backbone=True,
            trainable_blocks=1,
            weights=weights_file,
            feature_cache=str(cache),
            epochs=3,
            steps_per_epoch=10,
            learning_rate=1e-4,
            head_lr_multiplier=100.0,
        )
    )
    assert metrics["map"] > 0.5  # four colour classes: chance ~0.25; 1.0 measured (TF 2.21)
    # The cache holds the trunk's maps: the input of the small ResNet's last block.
    (path,) = glob.glob(str(cache / "*.npz"))
    with np.load(path) as archive:
        assert archive["features"].shape[1:] == (8, 8, 128)
        assert json.loads(str(archive["key"]))["trunk_before_last_blocks"] == 1

    # The exported model is the pretrained trunk, the fine-tuned last block and the head.
    pretrained = backbones.build_backbone("resnet_small", 32, weights_file)
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    (trunk_kernel,) = [
        w.numpy() for w in best.weights if w.path.endswith("stage3_block1_conv1/kernel")
    ]
    (top_kernel,) = [
        w.numpy() for w in best.weights if w.path.endswith("stage3_block2_conv1/kernel")
    ]
    np.testing.assert_array_equal(
        trunk_kernel, pretrained.get_layer("stage3_block1_conv1").kernel.numpy()
    )
    assert np.abs(top_kernel - pretrained.get_layer("stage3_block2_conv1").kernel.numpy()).max() > 0
    assert_export_gives_the_report_codes(run_dir, folder, tmp_path / "models")


def test_trainable_blocks_need_a_pretrained_backbone_made_of_blocks(tmp_path, folder, weights_file):
    with pytest.raises(UsageError, match="`trainable_blocks` .* give `weights`"):
        train(_config(tmp_path / "a", folder, trainable_blocks=1))
    with pytest.raises(UsageError, match=r"`trainable_blocks` must be in \[1, 6\]"):
        train(
            _config(
                tmp_path / "b",
                folder,
                freeze_backbone=True,
                trainable_blocks=7,
                weights=weights_file,
                feature_cache=str(tmp_path / "cache"),
            )
        )
