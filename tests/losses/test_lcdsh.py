"""LCDSH (the public code's form): value and gradient against the formula by hand in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from tfhash import losses, methods
from tfhash.errors import UsageError
from tfhash.losses.lcdsh import LCDSHLoss


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def by_hand(u, labels, lam):
    """L over all B² ordered pairs (i = j included) and dL/du, written out in NumPy."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        s = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    else:
        s = np.where(labels @ labels.T > 0, 1.0, -1.0)
    b = np.where(u >= 0, 1.0, -1.0)
    raw = 0.5 * u @ u.T
    theta = np.clip(raw, -50, 50)
    theta_b = 0.5 * b @ b.T
    n2 = len(u) ** 2
    likelihood = np.sum(np.log1p(np.exp(-s * theta))) / n2
    locality = np.sum((sigmoid(theta) - sigmoid(theta_b)) ** 2) / n2
    # dL/dΘ, zero where the clip is active, then Θ_ij = ½ u_iᵀu_j gives ½ (G + Gᵀ) u.
    g = -s * sigmoid(-s * theta) + lam * 2 * (sigmoid(theta) - sigmoid(theta_b)) * sigmoid(
        theta
    ) * (1 - sigmoid(theta))
    g = g * (np.abs(raw) <= 50) / n2
    return likelihood + lam * locality, likelihood, locality, 0.5 * (g + g.T) @ u


@pytest.mark.parametrize(
    "labels", [[0, 1, 0, 2, 1], [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]]]
)
@pytest.mark.parametrize("lam", [3.0, 0.5])
@pytest.mark.parametrize("scale", [1.0, 8.0])  # 8: some |Θ| beyond the clip at 50
def test_value_and_gradient_by_hand(labels, lam, scale):
    u = np.random.default_rng(0).normal(size=(5, 6)) * scale
    variable = tf.Variable(u, dtype=tf.float64)
    loss = LCDSHLoss(quantization_weight=lam)
    with tf.GradientTape() as tape:
        terms = loss.terms(tf.constant(labels), tf.cast(variable, tf.float32))
    total, likelihood, locality, gradient = by_hand(
        u.astype(np.float32).astype(np.float64), labels, lam
    )
    assert float(terms["likelihood"]) == pytest.approx(likelihood, rel=1e-5)
    assert float(terms["locality"]) == pytest.approx(locality, rel=1e-5, abs=1e-7)
    assert float(terms["loss"]) == pytest.approx(total, rel=1e-5)
    np.testing.assert_allclose(
        tape.gradient(terms["loss"], variable).numpy(), gradient, rtol=1e-4, atol=1e-6
    )
    if scale == 8.0:
        assert np.any(np.abs(0.5 * u @ u.T) > 50)  # the clip was exercised


def test_pairs_include_the_diagonal():
    """One item: the only pair is (0, 0), Θ = ½|u|², similar to itself."""
    u = np.array([[1.0, -0.5]])
    theta = 0.5 * 1.25
    value = float(LCDSHLoss().terms(tf.constant([3]), tf.constant(u, tf.float32))["likelihood"])
    assert value == pytest.approx(np.log1p(np.exp(-theta)), rel=1e-6)


def test_defaults_registry_and_config():
    method = methods.get("lcdsh")
    assert method.head == "linear"
    loss = losses.get("lcdsh")
    assert isinstance(loss, LCDSHLoss) and loss.quantization_weight == 3.0
    assert loss.term_names == ("likelihood", "locality")
    clone = LCDSHLoss.from_config(losses.get("lcdsh", quantization_weight=1.5).get_config())
    assert clone.quantization_weight == 1.5
    with pytest.raises(UsageError, match="lcdsh takes no argument 'quadruplets_per_anchor'"):
        losses.get("lcdsh", quadruplets_per_anchor=64)
    with pytest.raises(UsageError, match="quantization_weight must be a finite non-negative"):
        LCDSHLoss(quantization_weight=-1)
