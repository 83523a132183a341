"""DNNH: the divide-and-encode head (forward, gradient, serialisation, export) and its loss."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import losses, methods, models
from tfhash.errors import UsageError
from tfhash.export import export_run
from tfhash.losses.dnnh import DNNHLoss, dnnh_loss
from tfhash.models.backbones import build_backbone
from tfhash.models.layers import DivideAndEncode, hashing_head, piecewise_threshold


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_head(x, layer, eps):
    """The layer's output written plainly: project, slice, per-slice unit, sigmoid, g."""
    if layer.projects:
        x = np.maximum(x @ layer.projection_kernel.numpy() + layer.projection_bias.numpy(), 0)
    w, v = layer.kernel.numpy(), layer.bias.numpy()
    out = np.empty((len(x), layer.bits))
    for k in range(layer.bits):
        s = sigmoid(x[:, 50 * k : 50 * (k + 1)] @ w[k] + v[k])
        g = np.where(s < 0.5 - eps, 0.0, np.where(s > 0.5 + eps, 1.0, s))
        out[:, k] = 2 * g - 1
    return out


@pytest.mark.parametrize("width", [600, 64])  # 50·q exactly (no projection) / projected
def test_divide_and_encode_forward(width):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, width)).astype(np.float32) * 3
    layer = DivideAndEncode(12, epsilon=0.2)
    h = layer(x).numpy()
    assert layer.projects == (width != 600)
    np.testing.assert_allclose(h, reference_head(x, layer, 0.2), atol=1e-5)
    # bit = [s >= 0.5]: the sign of h is the paper's code
    s = (h + 1) / 2
    np.testing.assert_array_equal(np.where(h >= 0, 1, 0), (s >= 0.5).astype(int))


def test_threshold_gradient_passes_inside_the_band_only():
    s = tf.Variable([0.1, 0.39, 0.45, 0.5, 0.55, 0.61, 0.95])
    with tf.GradientTape() as tape:
        g = piecewise_threshold(s, 0.1)
        total = tf.reduce_sum(g)
    np.testing.assert_allclose(g.numpy(), [0, 0, 0.45, 0.5, 0.55, 1, 1], atol=1e-7)
    np.testing.assert_array_equal(tape.gradient(total, s).numpy(), [0, 0, 1, 1, 1, 0, 0])


def test_head_gradient_matches_the_chain_rule():
    """d h_k / d w_k = 2 · σ'(z_k) · x⁽ᵏ⁾ inside the band, 0 outside; other slices 0."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 150)).astype(np.float32)
    layer = DivideAndEncode(3, epsilon=0.3)
    layer.build(x.shape)
    layer.kernel.assign(rng.normal(size=(3, 50)).astype(np.float32) * 0.05)
    with tf.GradientTape() as tape:
        h = layer(x)
        total = tf.reduce_sum(h)
    grad = tape.gradient(total, layer.kernel).numpy()
    w = layer.kernel.numpy()
    expected = np.zeros_like(w)
    for k in range(3):
        z = x[:, 50 * k : 50 * (k + 1)] @ w[k]
        s = sigmoid(z)
        inside = np.abs(s - 0.5) <= 0.3
        expected[k] = ((2 * s * (1 - s) * inside)[:, None] * x[:, 50 * k : 50 * (k + 1)]).sum(0)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    assert np.any(grad != 0)


def test_learning_rate_multiplier_scales_gradients_only():
    x = np.random.default_rng(2).normal(size=(3, 100)).astype(np.float32)
    a = DivideAndEncode(2, epsilon=0.45)
    b = DivideAndEncode(2, epsilon=0.45, learning_rate_multiplier=10.0)
    a.build(x.shape), b.build(x.shape)
    b.set_weights(a.get_weights())
    grads = []
    for layer in (a, b):
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(layer(x))
        grads.append(tape.gradient(out, layer.kernel).numpy())
        np.testing.assert_allclose(layer(x).numpy(), a(x).numpy())
    np.testing.assert_allclose(grads[1], 10 * grads[0], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(epsilon=0.0), r"epsilon .* must be in \(0, 0.5\), got 0.0"),
        (dict(epsilon=0.5), r"must be in \(0, 0.5\), got 0.5"),
        (dict(epsilon="x"), r"must be in \(0, 0.5\)"),
        (dict(bits=0), r"whole number of bits >= 1, got 0"),
        (dict(bits=2.5), r"whole number of bits >= 1, got 2.5"),
        (dict(projection="sometimes"), r"projection must be auto, always or none"),
    ],
)
def test_bad_head_settings_are_one_line_usage_errors(kwargs, message):
    kwargs = {"bits": 12, **kwargs}
    with pytest.raises(UsageError, match=message) as error:
        DivideAndEncode(**kwargs)
    assert "\n" not in str(error.value)


def test_bits_the_slicing_cannot_serve_without_a_projection():
    layer = DivideAndEncode(12, projection="none")
    with pytest.raises(UsageError, match=r"needs 50 x 12 = 600 features, got 128"):
        layer(np.zeros((2, 128), np.float32))


def test_serialisation_round_trip(tmp_path):
    model = models.build_model(
        "resnet_small", 12, 32, head="divide_encode", head_learning_rate_multiplier=2.0
    )
    layer = model.get_layer("hashing")
    assert isinstance(layer, DivideAndEncode)
    config = layer.get_config()
    assert config["epsilon"] == 0.1 and config["learning_rate_multiplier"] == 2.0
    clone = DivideAndEncode.from_config(config)
    assert clone.get_config() == config
    images = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    model.compile(optimizer="sgd", loss=losses.get("dnnh", mining="all"))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )
    assert loaded.loss.get_config() == model.loss.get_config()


def test_export_is_bit_identical(tmp_path):
    """The exported SavedModel's ±1 codes are sign(h) of the divide-and-encode model."""
    model = models.build_model("resnet_small", 12, 32, head="divide_encode")
    run_dir = tmp_path / "run"
    os.makedirs(run_dir / "checkpoints")
    with open(run_dir / "flags.json", "w") as f:
        json.dump(
            {
                "dataset": "digits",
                "method": "dnnh",
                "backbone": "resnet_small",
                "bits": 12,
                "image_size": 32,
            },
            f,
        )
    model.compile(optimizer="sgd", loss=losses.get("dnnh"))
    model.save(str(run_dir / "checkpoints" / "best.keras"))
    version_dir = export_run(str(run_dir), str(tmp_path / "models"))
    images = np.random.default_rng(4).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    outputs = tf.saved_model.load(version_dir).signatures["serving_default"](
        images=tf.constant(images)
    )
    h = model.predict(images, verbose=0)
    np.testing.assert_array_equal(outputs["codes"].numpy(), np.where(h >= 0, 1, -1))
    np.testing.assert_allclose(outputs["embedding"].numpy(), h, atol=1e-6)


def test_registry_and_heads():
    method = methods.get("dnnh")
    assert method.head == "divide_encode"
    assert isinstance(hashing_head("divide_encode", 8), DivideAndEncode)
    with pytest.raises(UsageError, match="unknown head 'relu'"):
        hashing_head("relu", 8)
    assert isinstance(losses.get("dnnh"), DNNHLoss)


def test_nin_backbone():
    backbone = build_backbone("nin", 32)
    assert backbone.output_shape == (None, 1024)
    with pytest.raises(UsageError, match="nin has no ImageNet weights"):
        build_backbone("nin", 32, "imagenet")


# ---------------------------------------------------------------- the loss


def reference_loss(h, labels, margin):
    """Mean over every valid triplet of max(0, m + |b − b⁺|² − |b − b⁻|²), b = (h + 1) / 2."""
    b = (h + 1) / 2
    labels = np.asarray(labels)

    def similar(i, j):
        if labels.ndim == 1:
            return labels[i] == labels[j]
        return labels[i] @ labels[j] > 0

    values = []
    n = len(h)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                if i != j and i != k and similar(i, j) and not similar(i, k):
                    values.append(
                        max(0.0, margin + np.sum((b[i] - b[j]) ** 2) - np.sum((b[i] - b[k]) ** 2))
                    )
    return np.mean(values)


@pytest.mark.parametrize(
    "labels",
    [[0, 0, 1, 1, 2, 0], [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]]],
)
def test_loss_value_and_gradient_against_hand_computation(labels):
    rng = np.random.default_rng(5)
    h = rng.uniform(-1, 1, (6, 5))
    loss = DNNHLoss(mining="all", margin=1.0)
    variable = tf.Variable(h, dtype=tf.float32)
    with tf.GradientTape() as tape:
        terms = loss.terms(tf.constant(labels), variable)
    assert float(terms["loss"]) == pytest.approx(reference_loss(h, labels, 1.0), rel=1e-5)
    assert float(terms["ranking"]) == float(terms["loss"])
    grad = tape.gradient(terms["loss"], variable).numpy()
    numeric = np.zeros_like(h)
    for index in np.ndindex(h.shape):
        step = np.zeros_like(h)
        step[index] = 1e-6
        numeric[index] = (
            reference_loss(h + step, labels, 1.0) - reference_loss(h - step, labels, 1.0)
        ) / 2e-6
    np.testing.assert_allclose(grad, numeric, atol=1e-4)


def test_dnnh_loss_function_on_binary_codes():
    b = tf.constant([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # |b − b⁺|² = 1, |b − b⁻|² = 3: 1 + 1 − 3 < 0
    assert dnnh_loss(b, tf.constant([[0, 1, 2]])).numpy().tolist() == [0.0]
    # anchor 1, positive 2 (distance 2), negative 0 (distance 1): 1 + 2 − 1 = 2
    assert dnnh_loss(b, tf.constant([[1, 2, 0]])).numpy().tolist() == [2.0]


def test_loss_config_and_refusals():
    loss = losses.get("dnnh", margin=2.0, quadruplets_per_anchor=8, seed=3)
    assert DNNHLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    assert losses.get("dnnh", quantization_weight=0).margin == 1.0
    with pytest.raises(UsageError, match="dnnh has no quantization term"):
        losses.get("dnnh", quantization_weight=0.8)
    with pytest.raises(UsageError, match="dnnh takes no argument 'epsilon'"):
        losses.get("dnnh", epsilon=0.1)
    with pytest.raises(UsageError, match="sample_weight"):
        loss(tf.constant([0, 1]), tf.zeros((2, 4)), sample_weight=tf.ones(2))


def test_fits_a_model_end_to_end():
    """A few steps of model.fit through HashingModel log the term and lower the loss."""
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(4, 16)) * 3
    labels = np.repeat(np.arange(4), 16)
    x = (centres[labels] + rng.normal(size=(64, 16))).astype(np.float32)
    inputs = keras.Input((16,))
    model = models.HashingModel(inputs, DivideAndEncode(8, epsilon=0.2)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=DNNHLoss(seed=0))
    history = model.fit(x, labels, batch_size=64, epochs=30, verbose=0, shuffle=False)
    assert "ranking" in history.history
    assert history.history["loss"][-1] < history.history["loss"][0]
