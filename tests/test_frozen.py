"""--freeze_backbone: the head trains on cached backbone features; the export still takes images."""

import glob
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import data
from tfhash.models import backbones
from tfhash.errors import UsageError
from tfhash.export import export_run
from tfhash.train import train

from test_train import _config, _write_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A 'pretrained' backbone as a user's local weights file (CI has no ImageNet weights)."""
    keras.utils.set_random_seed(1)
    path = str(tmp_path_factory.mktemp("weights") / "small.weights.h5")
    backbones.build_backbone("resnet_small", 32).save_weights(path)
    return path


def _assert_export_gives_the_report_codes(run_dir, folder, models_dir):
    """The run's exported SavedModel, fed the query images, gives the report's query codes."""
    version_dir = export_run(str(run_dir), str(models_dir))
    collection = data.load_collection("folder", str(folder))
    query = np.load(run_dir / "split" / "query.npy")
    images = np.concatenate([x for x, _ in data.eval_dataset(collection, query, 32, 64)])
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    codes = served(images=tf.constant(images))["codes"].numpy()
    np.testing.assert_array_equal(codes, np.load(run_dir / "codes" / "query_codes.npy"))


def test_a_frozen_run_trains_the_head_on_cached_features_and_exports_images_to_codes(
        tmp_path, folder, weights_file):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    settings = dict(freeze_backbone=True, weights=weights_file, feature_cache=str(cache),
                    head_hidden=32, epochs=4, steps_per_epoch=10, optimizer="adam",
                    learning_rate=0.01)
    metrics = train(_config(run_dir, folder, **settings))
    assert metrics["map"] > 0.5  # four colour classes: chance ~0.25; 1.0 measured (TF 2.21)
    assert len(glob.glob(str(cache / "*.npz"))) == 1
    assert (run_dir / "checkpoints" / "best_head.keras").exists()

    # The exported SavedModel takes images and gives the codes of the training-time report.
    _assert_export_gives_the_report_codes(run_dir, folder, tmp_path / "models")

    # A second run (another code length) reuses the cached features.
    train(_config(tmp_path / "run12", folder, bits=12, **settings))
    assert len(glob.glob(str(cache / "*.npz"))) == 1
    assert json.loads((tmp_path / "run12" / "flags.json").read_text())["freeze_backbone"]


def test_frozen_random_weights_are_refused(tmp_path, folder):
    with pytest.raises(UsageError, match="--freeze_backbone .* --weights=none"):
        train(_config(tmp_path / "run", folder, freeze_backbone=True))


def test_partial_fine_tuning_trains_the_last_blocks_on_the_cached_trunk(
        tmp_path, folder, weights_file):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    metrics = train(_config(run_dir, folder, freeze_backbone=True, trainable_blocks=1,
                            weights=weights_file, feature_cache=str(cache), epochs=3,
                            steps_per_epoch=10, learning_rate=1e-4, head_lr_multiplier=100.0))
    assert metrics["map"] > 0.5  # four colour classes: chance ~0.25; 1.0 measured (TF 2.21)
    # The cache holds the trunk's maps: the input of the small ResNet's last block.
    (path,) = glob.glob(str(cache / "*.npz"))
    with np.load(path) as archive:
        assert archive["features"].shape[1:] == (8, 8, 128)
        assert json.loads(str(archive["key"]))["trunk_before_last_blocks"] == 1

    # The exported model is the pretrained trunk, the fine-tuned last block and the head.
    pretrained = backbones.build_backbone("resnet_small", 32, weights_file)
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    (trunk_kernel,) = [w.numpy() for w in best.weights
                       if w.path.endswith("stage3_block1_conv1/kernel")]
    (top_kernel,) = [w.numpy() for w in best.weights
                     if w.path.endswith("stage3_block2_conv1/kernel")]
    np.testing.assert_array_equal(trunk_kernel,
                                  pretrained.get_layer("stage3_block1_conv1").kernel.numpy())
    assert np.abs(top_kernel - pretrained.get_layer("stage3_block2_conv1").kernel.numpy()).max() > 0
    _assert_export_gives_the_report_codes(run_dir, folder, tmp_path / "models")


def test_trainable_blocks_need_a_pretrained_backbone_made_of_blocks(tmp_path, folder, weights_file):
    with pytest.raises(UsageError, match="--trainable_blocks .* give --weights"):
        train(_config(tmp_path / "a", folder, trainable_blocks=1))
    with pytest.raises(UsageError, match=r"--trainable_blocks must be in \[1, 6\]"):
        train(_config(tmp_path / "b", folder, freeze_backbone=True, trainable_blocks=7,
                      weights=weights_file, feature_cache=str(tmp_path / "cache")))
