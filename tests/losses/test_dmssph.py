"""DMSSPH (reconstructed): Jaccard levels, the three terms and their gradient by hand."""

import numpy as np
import pytest
import tensorflow as tf

from tfhash import losses, methods
from tfhash.errors import UsageError
from tfhash.losses.dmssph import SIMILAR_BAND, DMSSPHLoss, jaccard_similarity


def by_hand(h, labels, margin, lam):
    """The loss written out pair by pair (ordered pairs i ≠ j)."""
    labels = np.asarray(labels)
    n = len(h)
    similar, dissimilar = [], []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if labels.ndim == 1:
                level = float(labels[i] == labels[j])
            else:
                a, b = set(np.flatnonzero(labels[i])), set(np.flatnonzero(labels[j]))
                level = len(a & b) / len(a | b) if a | b else 0.0
            d = np.sum((h[i] - h[j]) ** 2)
            if level > 0:
                similar.append(0.5 * abs(d - SIMILAR_BAND * margin * (1 - level)))
            else:
                dissimilar.append(0.5 * max(0.0, margin - d))
    quantization = np.mean(np.sum(np.abs(h - np.where(h >= 0, 1, -1)), axis=1))
    s = np.mean(similar) if similar else 0.0
    d = np.mean(dissimilar) if dissimilar else 0.0
    return s + d + lam * quantization, s, d, quantization


LABELS = [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 1, 1]]


@pytest.mark.parametrize("labels", [LABELS, [0, 1, 0, 2, 1, 1]])
@pytest.mark.parametrize("margin,lam", [(None, 0.1), (3.0, 0.8)])
def test_value_and_gradient_by_hand(labels, margin, lam):
    h = np.random.default_rng(0).uniform(-1, 1, (6, 4))
    m = 2.0 * 4 if margin is None else margin
    loss = DMSSPHLoss(margin=margin, quantization_weight=lam)
    variable = tf.Variable(h, dtype=tf.float32)
    with tf.GradientTape() as tape:
        terms = loss.terms(tf.constant(labels), variable)
    total, s, d, q = by_hand(h, labels, m, lam)
    for name, value in [("loss", total), ("similar", s), ("dissimilar", d), ("quantization", q)]:
        assert float(terms[name]) == pytest.approx(value, rel=1e-5, abs=1e-6), name
    numeric = np.zeros_like(h)
    for index in np.ndindex(h.shape):
        step = np.zeros_like(h)
        step[index] = 1e-5
        numeric[index] = (
            by_hand(h + step, labels, m, lam)[0] - by_hand(h - step, labels, m, lam)[0]
        ) / 2e-5
    np.testing.assert_allclose(tape.gradient(terms["loss"], variable).numpy(), numeric, atol=1e-3)


def test_jaccard_levels():
    levels = jaccard_similarity(tf.constant(LABELS)).numpy()
    assert levels[0].tolist() == pytest.approx([1, 1 / 3, 1 / 2, 0, 1, 1 / 4])
    np.testing.assert_array_equal(levels, levels.T)
    assert jaccard_similarity(tf.constant([2, 2, 0])).numpy().tolist() == [
        [1, 1, 0],
        [1, 1, 0],
        [0, 0, 1],
    ]


def test_distances_follow_the_level_at_the_optimum():
    """Codes whose squared distances equal the targets cost nothing but quantization."""
    labels = tf.constant([[1, 1], [1, 0], [0, 1]])  # levels: (0, 1) = (0, 2) = 1/2, (1, 2) = 0
    # 8 bits, m = 16: targets 0.75 · 16 · 0.5 = 6 for the similar pairs, >= 16 for (1, 2)
    b0 = np.ones(8)
    b1 = b0.copy()
    b1[:4] = 1 - np.sqrt(6 / 4)  # |b1 − b0|² = 4 · 6/4 = 6
    b2 = b0.copy()
    b2[4:] = 1 - np.sqrt(6 / 4)
    h = np.stack([b0, b1, b2])
    assert np.sum((b1 - b2) ** 2) == pytest.approx(12)  # < m: the dissimilar hinge is active
    terms = DMSSPHLoss(quantization_weight=0).terms(labels, tf.constant(h, tf.float32))
    assert float(terms["similar"]) == pytest.approx(0, abs=1e-5)
    assert float(terms["dissimilar"]) == pytest.approx(0.5 * (16 - 12), rel=1e-5)


def test_registry_defaults_and_config():
    assert methods.get("dmssph").head == "tanh"
    loss = losses.get("dmssph")
    assert isinstance(loss, DMSSPHLoss)
    assert loss.margin is None and loss.quantization_weight == 0.1
    assert loss.term_names == ("similar", "dissimilar", "quantization")
    clone = DMSSPHLoss.from_config(losses.get("dmssph", margin=12.0).get_config())
    assert clone.margin == 12.0
    with pytest.raises(UsageError, match="margin must be a finite positive number"):
        DMSSPHLoss(margin=0)
    with pytest.raises(UsageError, match="dmssph takes no argument 'mining'"):
        losses.get("dmssph", mining="all")
