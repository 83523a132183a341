"""HashingLayer (LSDH Eq. 4 with tanh range) and Sign (Eq. 5, sign(0) = +1)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.models.layers import HashingLayer, Sign, sign


def test_hashing_layer_is_tanh_of_affine_map():
    layer = HashingLayer(bits=5, bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(4, 7)).astype("float32")
    h = keras.ops.convert_to_numpy(layer(x))
    expected = np.tanh(x @ layer.kernel.numpy() + layer.bias.numpy())
    np.testing.assert_allclose(h, expected, rtol=1e-6, atol=1e-6)
    assert h.dtype == np.float32 and np.all(np.abs(h) < 1)


@pytest.mark.parametrize("multiplier", [1.0, 10.0])
def test_learning_rate_multiplier_scales_gradients_and_not_outputs(multiplier):
    x = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    plain = HashingLayer(bits=4)
    plain(x)
    scaled = HashingLayer(bits=4, learning_rate_multiplier=multiplier)
    scaled(x)
    scaled.set_weights(plain.get_weights())

    def grads(layer):
        with tf.GradientTape() as tape:
            out = layer(x)
            loss = tf.reduce_sum(out * tf.range(4, dtype=tf.float32))
        return out.numpy(), [g.numpy() for g in tape.gradient(loss, layer.trainable_variables)]

    out_plain, g_plain = grads(plain)
    out_scaled, g_scaled = grads(scaled)
    np.testing.assert_array_equal(out_plain, out_scaled)  # forward pass exactly unchanged
    for a, b in zip(g_plain, g_scaled):
        np.testing.assert_allclose(b, multiplier * a, rtol=1e-5)


def test_ten_times_head_gradient_is_ten_times_sgd_step():
    x = np.ones((2, 3), "float32")
    steps = []
    for multiplier in (1.0, 10.0):
        layer = HashingLayer(2, learning_rate_multiplier=multiplier, kernel_initializer="zeros")
        layer(x)
        opt = keras.optimizers.SGD(0.01)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        opt.apply(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables)
        steps.append(layer.kernel.numpy())
    np.testing.assert_allclose(steps[1], 10 * steps[0], rtol=1e-6)


def test_sign_of_zero_is_plus_one_and_codes_are_plus_minus_one():
    h = np.array([[0.0, -0.0, 1e-9, -1e-9, 0.7, -3.0]], "float32")
    codes = keras.ops.convert_to_numpy(Sign(output_dtype="int8")(h))
    np.testing.assert_array_equal(codes, [[1, 1, 1, -1, 1, -1]])
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(sign(h)), codes.astype("float32"))


@pytest.mark.parametrize(
    "layer",
    [
        HashingLayer(bits=12, learning_rate_multiplier=10.0, kernel_regularizer="l2", name="h"),
        Sign(output_dtype="int8", name="s"),
    ],
)
def test_layers_round_trip_through_their_config(layer):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


def test_invalid_bits_and_multiplier_are_rejected():
    with pytest.raises(ValueError, match="bits"):
        HashingLayer(bits=0)
    with pytest.raises(ValueError, match="learning_rate_multiplier"):
        HashingLayer(bits=4, learning_rate_multiplier=0)
