"""The hashing model: shapes, saving and reloading, per-term logging."""

import warnings

import keras
import numpy as np
import pytest

from tfhash.models import HashingModel, build_model
from tfhash.models.layers import HashingLayer


def test_small_resnet_maps_raw_pixels_to_relaxed_codes(images):
    model = build_model("resnet_small", bits=12, image_size=32)
    assert isinstance(model, HashingModel)
    assert 0.6e6 < model.count_params() < 0.8e6
    h = keras.ops.convert_to_numpy(model(images))
    assert h.shape == (6, 12) and h.dtype == np.float32 and np.all(np.abs(h) < 1)


def test_keras_file_round_trip_gives_the_same_codes(images, tmp_path):
    model = build_model("resnet_small", bits=8, image_size=32)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(restored, HashingModel)
    np.testing.assert_array_equal(
        restored.predict(images, verbose=0), model.predict(images, verbose=0)
    )


class _TwoTermLoss(keras.losses.Loss):
    def terms(self, y_true, y_pred):
        square = keras.ops.mean(y_pred**2)
        absolute = keras.ops.mean(keras.ops.abs(y_pred))
        return {"loss": square + 2.0 * absolute, "square": square, "absolute": absolute}

    def call(self, y_true, y_pred):
        return self.terms(y_true, y_pred)["loss"]


def test_every_loss_term_is_logged_as_its_own_metric(images):
    inputs = keras.Input((32, 32, 3))  # no BatchNorm: fit and predict compute the same h
    model = HashingModel(inputs, HashingLayer(4)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=_TwoTermLoss())
    history = model.fit(images, np.arange(6) % 2, batch_size=6, epochs=1, verbose=0).history
    h = model.predict(images, verbose=0)
    square, absolute = np.mean(h**2), np.mean(np.abs(h))
    assert history["square"][0] == pytest.approx(square, rel=1e-4)
    assert history["absolute"][0] == pytest.approx(absolute, rel=1e-4)
    assert history["loss"][0] == pytest.approx(square + 2 * absolute, rel=1e-4)


def test_a_reloaded_model_is_compiled_with_its_loss_and_term_trackers(images, tmp_path):
    model = build_model("resnet_small", bits=4, image_size=32)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=_TwoTermLoss())
    model.fit(images, np.arange(6) % 2, batch_size=6, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when it cannot compile a loaded model
        restored = keras.saving.load_model(
            tmp_path / "m.keras", custom_objects={"_TwoTermLoss": _TwoTermLoss}
        )
    assert restored.compiled and isinstance(restored.loss, _TwoTermLoss)
    history = restored.fit(images, np.arange(6) % 2, batch_size=6, epochs=1, verbose=0).history
    assert {"loss", "square", "absolute"} <= set(history)
