"""Shallow methods as SavedModels (tfhash.shallow.export) and as runs (tfhash.shallow.run)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import data, serving, shallow
from tfhash.errors import UsageError
from tfhash.shallow import export as shallow_export
from tfhash.shallow.run import train_shallow
from tfhash.train import TrainConfig

SIZE = 4  # 4 x 4 x 3 pixels: 48-d features
BITS = 12  # not a multiple of 8: packed codes carry padding
SMALL = {"lsh": {}, "sh": {}, "itq": {}, "ksh": {"anchors": 20}, "sdh": {"anchors": 25}}


@pytest.fixture(scope="module")
def images():
    """uint8-valued float32 images (PNG round-trips them exactly) and 3 classes of labels."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (60, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    pixels[labels == 1, :2] *= 0.3  # some class structure for the supervised fits
    return pixels, labels


@pytest.mark.parametrize("name", list(shallow.METHODS))
def test_saved_model_codes_equal_encode_on_pixels(name, images, tmp_path):
    pixels, labels = images
    features = pixels.reshape(len(pixels), -1)
    model = shallow.get(name, bits=BITS, seed=0, **SMALL[name]).fit(features, labels)
    version_dir = shallow_export.export_shallow(model, str(tmp_path / name), image_size=SIZE)
    assert os.path.basename(version_dir) == "1"
    loaded = tf.saved_model.load(version_dir)

    expected_codes = model.encode(features)
    out = loaded.signatures[serving.IMAGES_SIGNATURE](images=tf.constant(pixels))
    assert out["codes"].dtype == tf.int8 and out["embedding"].dtype == tf.float32
    np.testing.assert_array_equal(out["codes"].numpy(), expected_codes)
    np.testing.assert_array_equal(out["embedding"].numpy(), model.relaxed(features))
    np.testing.assert_array_equal(out["packed"].numpy(), np.packbits(expected_codes > 0, axis=1))

    png = [tf.io.encode_png(tf.constant(p.astype(np.uint8))).numpy() for p in pixels[:7]]
    out = loaded.signatures[serving.BYTES_SIGNATURE](image_bytes=tf.constant(png))
    np.testing.assert_array_equal(out["codes"].numpy(), expected_codes[:7])


def test_saved_model_codes_equal_encode_on_backbone_features(images, tmp_path):
    """ITQ on the small ResNet's features (random weights): the graph computes the same."""
    keras.utils.set_random_seed(0)
    net = shallow_export.feature_model("resnet_small", 32)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (24, 32, 32, 3)).astype(np.float32)
    features = keras.ops.convert_to_numpy(net(pixels, training=False))
    model = shallow.get("itq", bits=8).fit(features)
    version_dir = shallow_export.export_shallow(model, str(tmp_path / "m"), features=net)
    out = tf.saved_model.load(version_dir).signatures[serving.IMAGES_SIGNATURE](
        images=tf.constant(pixels)
    )
    np.testing.assert_array_equal(out["codes"].numpy(), model.encode(features))
    np.testing.assert_allclose(out["embedding"].numpy(), model.relaxed(features), atol=1e-4)


def test_encoder_layer_under_a_mixed_precision_policy_still_computes_in_float64(images):
    pixels, labels = images
    features = pixels.reshape(len(pixels), -1)
    model = shallow.get("ksh", bits=BITS, **SMALL["ksh"]).fit(features, labels)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        net = shallow_export.serving_model(model, shallow_export.feature_model("pixels", SIZE))
        h = keras.ops.convert_to_numpy(net(pixels))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_array_equal(h, model.relaxed(features))


def test_export_refuses_a_model_of_other_features(images, tmp_path):
    pixels, _ = images
    model = shallow.get("lsh", bits=4).fit(pixels.reshape(len(pixels), -1))
    with pytest.raises(UsageError, match="48-d ones"):
        shallow_export.export_shallow(model, str(tmp_path / "m"), image_size=8)
    with pytest.raises(UsageError, match="not fitted"):
        shallow_export.export_shallow(
            shallow.get("lsh", bits=4), str(tmp_path / "m"), image_size=SIZE
        )


# ---------------------------------------------------------------------------------------------
# Runs: digits, raw pixels at their native 8 x 8.


def config(run_dir, method="itq", **kwargs):
    return TrainConfig(
        run_dir=str(run_dir), method=method, bits=16, backbone="pixels", image_size=8, **kwargs
    )


@pytest.fixture(scope="module")
def itq_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "itq"
    return run_dir, train_shallow(config(run_dir))


def test_a_run_writes_the_deep_run_layout(itq_run):
    run_dir, metrics = itq_run
    for path in (
        "flags.json",
        "flags.cfg",
        "split/protocol.json",
        "split/train.npy",
        "shallow/model.json",
        "metrics.json",
    ):
        assert os.path.isfile(run_dir / path), path
    split = data.Split.load(str(run_dir / "split"))
    collection = data.load_collection("digits")
    codes = {
        name: np.load(run_dir / "codes" / f"{name}.npy")
        for name in (
            "query_codes",
            "query_labels",
            "database_codes",
            "database_labels",
            "query_embedding",
            "database_embedding",
        )
    }
    assert codes["query_codes"].dtype == np.int8
    assert codes["query_codes"].shape == (len(split.query), 16)
    assert codes["database_codes"].shape == (len(split.database), 16)
    np.testing.assert_array_equal(codes["query_labels"], collection.labels[split.query])
    np.testing.assert_array_equal(
        codes["database_codes"], np.where(codes["database_embedding"] >= 0, 1, -1)
    )
    # The model was fitted on the training part only, and encodes the pixels as the run did.
    model = shallow.load(str(run_dir / "shallow"))
    pixels = collection.pixels.reshape(len(collection), -1).astype(np.float64)
    np.testing.assert_array_equal(model.arrays["mean"], pixels[split.train].mean(axis=0))
    np.testing.assert_array_equal(model.encode(pixels[split.query]), codes["query_codes"])
    # The report has a deep run's keys and settings.
    assert {"map", "p@k", "p@r2", "pr", "conventions", "data", "run"} <= set(metrics)
    assert metrics["run"]["method"] == "itq" and metrics["run"]["bits"] == 16
    assert metrics["data"]["queries"] == 300 and 0.3 < metrics["map"] <= 1
    assert json.loads((run_dir / "metrics.json").read_text())["map"] == metrics["map"]


def test_a_finished_run_is_reported_and_other_settings_are_refused(itq_run):
    run_dir, metrics = itq_run
    before = os.path.getmtime(run_dir / "metrics.json")
    assert train_shallow(config(run_dir)) == metrics
    assert os.path.getmtime(run_dir / "metrics.json") == before
    with pytest.raises(UsageError, match="other settings.*bits=16 there vs 24 now"):
        train_shallow(
            TrainConfig(
                run_dir=str(run_dir), method="itq", bits=24, backbone="pixels", image_size=8
            )
        )


def test_an_exported_run_gives_the_run_codes(itq_run, tmp_path):
    run_dir, _ = itq_run
    version_dir = shallow_export.export_run(str(run_dir), str(tmp_path / "models"))
    split = data.Split.load(str(run_dir / "split"))
    images = data.load_collection("digits").pixels[split.query].astype(np.float32)
    out = tf.saved_model.load(version_dir).signatures[serving.IMAGES_SIGNATURE](
        images=tf.constant(images)
    )
    np.testing.assert_array_equal(
        out["codes"].numpy(), np.load(run_dir / "codes" / "query_codes.npy")
    )


def test_user_features_give_the_codes_of_the_same_computed_features(itq_run, tmp_path):
    run_dir, _ = itq_run
    collection = data.load_collection("digits")
    path = tmp_path / "pixels.npy"
    np.save(path, collection.pixels.reshape(len(collection), -1).astype(np.float32))
    metrics = train_shallow(config(tmp_path / "run"), features=str(path))
    assert metrics["run"]["backbone"] == "features"
    np.testing.assert_array_equal(
        np.load(tmp_path / "run" / "codes" / "database_codes.npy"),
        np.load(run_dir / "codes" / "database_codes.npy"),
    )
    with pytest.raises(UsageError, match="fitted on your own features"):
        shallow_export.export_run(str(tmp_path / "run"), str(tmp_path / "models"))


def test_supervised_run_with_method_parameters(tmp_path):
    metrics = train_shallow(config(tmp_path / "sdh", "sdh"), params="anchors=200")
    assert metrics["run"]["params"]["anchors"] == 200
    saved = json.loads((tmp_path / "sdh" / "flags.json").read_text())
    assert saved["shallow_params"] == {"anchors": 200}
    assert "--shallow_params=anchors=200" in (tmp_path / "sdh" / "flags.cfg").read_text()
    assert metrics["map"] > 0.8  # digits, labels used: far above chance (0.1)


def test_run_input_errors_are_one_line(tmp_path):
    collection = data.load_collection("digits")
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((10, 4)))
    nan = tmp_path / "nan.npy"
    values = np.random.default_rng(0).normal(size=(len(collection), 6))
    values[:, 2] = np.nan
    np.save(nan, values)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("not a run")
    cases = [
        (lambda: train_shallow(config(tmp_path / "a", "lsdh")), "not a shallow method"),
        (lambda: train_shallow(config(tmp_path / "b"), features=str(short)), "10 rows"),
        (lambda: train_shallow(config(tmp_path / "c"), features=str(nan)), "NaN or Inf"),
        (
            lambda: train_shallow(config(tmp_path / "d"), features=str(tmp_path / "no.npy")),
            "not a file",
        ),
        (lambda: train_shallow(config(tmp_path / "e", "sdh")), "1000 anchors"),
        (lambda: train_shallow(config(tmp_path / "f"), params="anchors=3"), "no parameter"),
        (lambda: train_shallow(config(tmp_path / "full")), "holds no tfhash run"),
        (
            lambda: train_shallow(
                TrainConfig(
                    run_dir=str(tmp_path / "g"),
                    method="itq",
                    bits=200,
                    backbone="pixels",
                    image_size=8,
                )
            ),
            "use `bits` <= 192",
        ),
    ]
    for call, fragment in cases:
        with pytest.raises(UsageError) as info:
            call()
        assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)
