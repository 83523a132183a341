"""The losses in Keras training: model.fit, XLA, mixed precision, a user subclass, .keras files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash.losses as losses
from tfhash.models.layers import HashingLayer


@keras.saving.register_keras_serializable(package="tfhash_tests")
class JaccardLSDH(losses.LSDHLoss):
    """A user-style subclass: multi-label items are similar when their Jaccard index ≥ threshold."""

    def __init__(self, threshold=0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold

    def similarity(self, y_true):
        y = tf.cast(y_true, tf.float32)
        shared = tf.matmul(y, y, transpose_b=True)
        sizes = tf.reduce_sum(y, axis=1)
        union = sizes[:, None] + sizes[None, :] - shared
        return tf.math.divide_no_nan(shared, union) >= self.threshold

    def get_config(self):
        return dict(super().get_config(), threshold=self.threshold)


def separable_multilabel(seed=0, n=48, labels=4, features=12):
    """Multi-hot labels and inputs that reveal them through a noisy projection."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(np.float32)
    y[np.arange(n), rng.integers(0, labels, n)] = 1.0  # at least one label each
    x = y @ rng.normal(size=(labels, features)) + 0.1 * rng.normal(size=(n, features))
    return x.astype(np.float32), y


def tiny_model(bits=6, features=12, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((features,)), keras.layers.Dense(16, activation="relu"), HashingLayer(bits)]
    )


def test_jaccard_similarity_hook():
    y = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32)
    sim = JaccardLSDH().similarity(y).numpy()
    # J(0,1) = 1/2, J(0,2) = 2/3, J(1,2) = 1/3; the label-less item matches nothing.
    np.testing.assert_array_equal(sim, [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


@pytest.mark.slow
def test_user_subclass_trains_and_round_trips_through_a_keras_file(tmp_path):
    x, y = separable_multilabel()
    model = tiny_model()
    loss = JaccardLSDH(threshold=0.5, margin=2.0, mining="all")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, jit_compile=False)
    history = model.fit(x, y, batch_size=48, epochs=15, shuffle=False, verbose=0)
    values = history.history["loss"]
    assert values[-1] < 0.7 * values[0], values

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is JaccardLSDH
    assert loaded.loss.get_config() == loss.get_config()
    h = model.predict(x, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), h)
    assert float(loaded.loss(y, h)) == float(loss(y, h))
    assert float(loaded.evaluate(x, y, batch_size=48, verbose=0)) == pytest.approx(
        float(model.evaluate(x, y, batch_size=48, verbose=0)), rel=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lsdh", "lsdh_l1", "triplet"])  # the tuple-mining losses
def test_fit_under_xla_with_random_mining(method):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 8)
    x = (np.eye(12)[y] * 3 + 0.3 * rng.normal(size=(32, 12))).astype(np.float32)
    model = tiny_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=losses.get(method, quadruplets_per_anchor=16, seed=0),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
    values = history.history["loss"]
    assert np.all(np.isfinite(values)) and values[-1] < values[0], values


@pytest.mark.slow
def test_terms_in_a_compiled_train_step():
    """What a custom train step does: every term, in graph mode, with gradients."""
    x, y = separable_multilabel(seed=2, n=16)
    model = tiny_model(seed=2)
    loss = losses.get("lsdh", seed=1, quadruplets_per_anchor=8)
    optimizer = keras.optimizers.SGD(0.05)

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            terms = loss.terms(y, model(x, training=True))
        grads = tape.gradient(terms["loss"], model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return terms

    for _ in range(3):
        terms = step(x, y)
    assert sorted(terms) == ["isometric", "loss", "quantization", "semantic"]
    for value in terms.values():
        assert value.dtype == tf.float32 and value.shape == () and np.isfinite(value.numpy())


@pytest.fixture
def bfloat16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_mixed_precision_training(bfloat16_policy):
    x, y = separable_multilabel(seed=3, n=32)
    model = tiny_model(seed=3)
    assert model.layers[0].compute_dtype == "bfloat16"
    loss = losses.get("lsdh", seed=0, quadruplets_per_anchor=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, jit_compile=False)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    terms = loss.terms(y, tf.cast(model(x), tf.bfloat16))
    for value in terms.values():
        assert value.dtype == tf.float32 and np.isfinite(value.numpy())
    assert loss(y, model(x)).dtype == tf.float32
