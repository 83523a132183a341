"""DHN, DSH, HashNet and SSDH-ZP against their official code (issue 26): each official layer's
forward and backward formulas written out in NumPy (float64) from the code, compared with
tfhash's values and tf.GradientTape gradients on small inputs, including the issue's examples."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash.losses as losses
from tfhash.errors import UsageError
from tfhash.losses.dhn import DHNLoss
from tfhash.losses.dsh import DSHLoss
from tfhash.losses.hashnet import HashNetLoss
from tfhash.losses.ssdh import SSDHLoss


def value_and_gradient(loss, y, u, term="loss", **kwargs):
    u = tf.constant(u, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(u)
        terms = loss.terms(tf.constant(y), u, **kwargs)
        value = terms[term]
    return terms, tape.gradient(value, u).numpy()


def away_from_kinks(rng, shape):
    """Codes whose entries stay clear of 0 and ±1, where the L1 forms have kinks:
    |u| in (0.15, 0.85) or (1.15, 1.85), either sign."""
    magnitude = rng.uniform(0.15, 0.85, size=shape) + rng.choice([0.0, 1.0], size=shape)
    return (magnitude * rng.choice([-1.0, 1.0], size=shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# DHN: zhuhan1236/dhn-caffe, PairwiseLossLayer (pairwise_loss_layer.cu)


def dhn_caffe_quantization(u, q_gamma):
    """The first author's quantization: forward ``mean_{N·K} log cosh(|u| − 1)`` reported with
    weight 1, backward ``(q_gamma / N) · sign(u) · tanh(|u| − 1)`` per entry (+ for u ≥ 0)."""
    u = u.astype(np.float64)
    forward = np.mean(np.log(np.cosh(np.abs(u) - 1.0)))
    sign = np.where(u >= 0, 1.0, -1.0)
    return forward, q_gamma / u.shape[0] * sign * np.tanh(np.abs(u) - 1.0)


def test_dhn_issue_example_default_is_deephash_pytorch_strength_and_option_the_first_authors():
    u = np.array([[0.5, -0.2, 0.9], [0.1, 0.3, -0.7]], np.float32)
    y = np.array([0, 0])
    expected = np.array([[-0.007702, 0.011067, -0.001661], [-0.011938, -0.010073, 0.004855]])
    default = DHNLoss()
    assert default.quantization_reduction == "mean" and default.quantization_weight == 0.1
    _, grad = value_and_gradient(default, y, u, term="quantization")
    np.testing.assert_allclose(0.1 * grad, expected, atol=1e-6)
    # DeepHash-pytorch: alpha · mean log cosh(|u| − 1) over the B · K entries, alpha = 0.1.
    deephash = 0.1 * np.mean(np.log(np.cosh(np.abs(u.astype(np.float64)) - 1)))
    np.testing.assert_allclose(
        0.1 * float(default.terms(y, u)["quantization"]), deephash, rtol=1e-6
    )
    _, official = dhn_caffe_quantization(u, 0.1)
    np.testing.assert_allclose(official, 3 * expected, atol=3e-6)  # K = 3 times
    _, grad = value_and_gradient(
        DHNLoss(quantization_reduction="sum_over_bits"), y, u, term="quantization"
    )
    np.testing.assert_allclose(0.1 * grad, official, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_dhn_sum_over_bits_matches_the_first_authors_forward_and_backward(seed):
    rng = np.random.default_rng(seed)
    u = np.tanh(rng.normal(size=(7, 5)) * 1.5).astype(np.float32)
    y = np.arange(7) % 3
    forward, backward = dhn_caffe_quantization(u, 0.1)
    mean_terms = DHNLoss().terms(y, u)
    np.testing.assert_allclose(float(mean_terms["quantization"]), forward, rtol=1e-5)
    loss = DHNLoss(quantization_reduction="sum_over_bits")
    terms, grad = value_and_gradient(loss, y, u)
    np.testing.assert_allclose(float(terms["quantization"]), 5 * forward, rtol=1e-5)
    _, ce_grad = value_and_gradient(loss, y, u, term="cross_entropy")
    np.testing.assert_allclose(grad - ce_grad, backward, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        float(terms["loss"]), float(terms["cross_entropy"]) + 0.1 * 5 * forward, rtol=1e-5
    )


def test_dhn_quantization_reduction_is_saved_and_checked():
    loss = DHNLoss(quantization_reduction="sum_over_bits")
    again = DHNLoss.from_config(loss.get_config())
    assert again.quantization_reduction == "sum_over_bits"
    assert losses.defaults("dhn")["quantization_reduction"] == "mean"
    with pytest.raises(UsageError, match="quantization_reduction must be mean or sum_over_bits"):
        DHNLoss(quantization_reduction="sum")


# ---------------------------------------------------------------------------------------------
# DSH: lhmRyan/deep-supervised-hashing-DSH, HashingLossLayer (hashing_loss_layer.cpp)


def dsh_caffe(u, y, margin, tradeoff):
    """The official layer, loop for loop: forward value and the diff it writes (its backward).

    Unordered pairs i < j; similar pairs add D, dissimilar ``max(m − D, 0)``, the sum divided
    by n (n − 1); the regulariser ``tradeoff · Σ_i ‖|u_i| − 1‖₁ / n``. The diff: ``±(u_i − u_j)
    / (n (n − 1))`` per pair, ``tradeoff / n · δ(u)`` per entry, δ = +1 where u ≥ 1 or
    −1 ≤ u ≤ 0, else −1.
    """
    u = u.astype(np.float64)
    n, _ = u.shape
    alpha, beta = 1.0 / (n * (n - 1)), 1.0 / n
    loss, reg, diff = 0.0, 0.0, np.zeros_like(u)
    for i in range(n):
        for j in range(i + 1, n):
            d = u[i] - u[j]
            dist_sq = d @ d
            if y[i] == y[j]:
                loss += dist_sq
                diff[i] += alpha * d
                diff[j] -= alpha * d
            else:
                loss += max(margin - dist_sq, 0.0)
                if margin - dist_sq > 0:
                    diff[i] -= alpha * d
                    diff[j] += alpha * d
        delta = np.where((u[i] >= 1) | ((u[i] <= 0) & (u[i] >= -1)), 1.0, -1.0)
        diff[i] += beta * tradeoff * delta
        reg += np.abs(np.abs(u[i]) - 1).sum()
    return loss / (n * (n - 1)) + tradeoff * reg / n, diff


def dsh_deephash_pytorch(u, y, alpha):
    """DeepHash-pytorch's objective with the batch's other items as its memory bank:
    ``mean_{i≠j} [½ (1 − y) D + ½ y max(m − D, 0)] + α · mean_{B·K} |1 − |u||``."""
    u = u.astype(np.float64)
    n, k = u.shape
    pairs = [
        0.5 * ((u[i] - u[j]) ** 2).sum()
        if y[i] == y[j]
        else 0.5 * max(2 * k - ((u[i] - u[j]) ** 2).sum(), 0.0)
        for i, j in itertools.permutations(range(n), 2)
    ]
    return np.mean(pairs) + alpha * np.mean(np.abs(1 - np.abs(u)))


def test_dsh_issue_example_deephash_pytorch_alpha_is_alpha_over_2k():
    u = np.array([[0.5, 2.0], [1.5, -0.25]], np.float32)
    y = np.array([0, 1])  # dissimilar, D = 6.0625 beyond m = 4: the regulariser alone
    np.testing.assert_allclose(float(DSHLoss(alpha=0.1).terms(y, u)["loss"]), 0.275, rtol=1e-6)
    np.testing.assert_allclose(dsh_deephash_pytorch(u, y, 0.1), 0.06875, rtol=1e-12)
    np.testing.assert_allclose(
        float(DSHLoss(alpha=0.1 / (2 * 2)).terms(y, u)["loss"]), 0.06875, rtol=1e-6
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsh_official_forward_equals_the_contrastive_and_backward_is_half(seed):
    rng = np.random.default_rng(seed)
    u = away_from_kinks(rng, (8, 4))
    y = np.arange(8) % 3
    alpha = 0.05
    terms, grad = value_and_gradient(DSHLoss(alpha=alpha), y, u)
    forward, official_diff = dsh_caffe(u, y, 2.0 * 4, alpha)
    contrastive_only, _ = dsh_caffe(u, y, 2.0 * 4, 0.0)
    # Forward: the contrastive value is tfhash's; the regulariser is α · mean_i r_i, half of
    # tfhash's α · mean_{i≠j} (r_i + r_j).
    np.testing.assert_allclose(float(terms["contrastive"]), contrastive_only, rtol=1e-5)
    np.testing.assert_allclose(
        forward, float(terms["contrastive"]) + 0.5 * alpha * float(terms["regularizer"]), rtol=1e-5
    )
    # Backward: half the gradient of tfhash's loss at the same α, term for term.
    np.testing.assert_allclose(official_diff, 0.5 * grad, rtol=1e-4, atol=1e-7)
    # DeepHash-pytorch's objective: tfhash's at α / (2K).
    np.testing.assert_allclose(
        float(DSHLoss(alpha=0.1 / 8).terms(y, u)["loss"]),
        dsh_deephash_pytorch(u, y, 0.1),
        rtol=1e-5,
    )


def dsh_deephash_pytorch_gradient(u, y, alpha):
    """DeepHash-pytorch's gradient with the batch's other items as its memory bank: the bank
    is detached, so each pair (i, j) differentiates ``u_i``'s side only."""
    u = u.astype(np.float64)
    n, k = u.shape
    grad = np.zeros_like(u)
    for i, j in itertools.permutations(range(n), 2):
        diff = u[i] - u[j]
        if y[i] == y[j]:
            grad[i] += diff
        elif diff @ diff < 2 * k:
            grad[i] -= diff
    return grad / (n * (n - 1)) + alpha * np.sign(np.abs(u) - 1) * np.sign(u) / u.size


def test_dsh_deephash_pytorch_trains_in_the_direction_of_alpha_over_k():
    rng = np.random.default_rng(3)
    u = away_from_kinks(rng, (8, 4))
    y = np.arange(8) % 3
    _, grad = value_and_gradient(DSHLoss(alpha=0.1 / 4), y, u)
    np.testing.assert_allclose(
        dsh_deephash_pytorch_gradient(u, y, 0.1), 0.5 * grad, rtol=1e-4, atol=1e-7
    )


# ---------------------------------------------------------------------------------------------
# HashNet: thuml/HashNet, pytorch/src/loss.py pairwise_loss (and the Caffe PairwiseLoss)


def hashnet_official(y, z, beta, alpha, class_num):
    """The official weighted likelihood on the pairs i ≠ j of h = tanh(βz), and its gradient
    in z: similar pairs weighted ``class_num``, the sum over ``class_num·|S₁| + |S₀|``. (The
    code's linear branch above θ = 15 never runs here: |θ| ≤ α K = 10.)"""
    z = z.astype(np.float64)
    h = np.tanh(beta * z)
    pairs = list(itertools.permutations(range(len(y)), 2))
    weight = {p: class_num if y[p[0]] == y[p[1]] else 1.0 for p in pairs}
    norm = sum(weight.values())
    loss, grad_h = 0.0, np.zeros_like(h)
    for i, j in pairs:
        s = float(y[i] == y[j])
        theta = alpha * h[i] @ h[j]
        loss += weight[i, j] * (np.logaddexp(0.0, theta) - s * theta)
        dtheta = weight[i, j] * (1.0 / (1.0 + np.exp(-theta)) - s)
        grad_h[i] += dtheta * alpha * h[j]
        grad_h[j] += dtheta * alpha * h[i]
    return loss / norm, grad_h * beta * (1.0 - h**2) / norm


@pytest.mark.parametrize("class_num,iterations", [(1.0, 0), (5.0, 450), (10.0, 2000)])
def test_hashnet_official_weighting_matches_the_official_pairwise_loss(class_num, iterations):
    rng = np.random.default_rng(int(class_num))
    y = np.array([0, 0, 0, 0, 0, 1, 2, 3])  # far from balanced
    z = rng.normal(size=(8, 6)).astype(np.float32)
    loss = HashNetLoss(official_weighting=True, class_num=class_num)
    terms, grad = value_and_gradient(loss, y, z, iterations=iterations)
    beta = float(terms["beta"])
    ref_loss, ref_grad = hashnet_official(y, z, beta, 10.0 / 6, class_num)
    np.testing.assert_allclose(float(terms["loss"]), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=2e-6)  # float32, 1 − h² ≈ 0
    # The paper's balanced weighting (the default) is another loss on this batch.
    balanced = float(HashNetLoss().terms(y, z, iterations=iterations)["loss"])
    assert abs(balanced - ref_loss) > 0.05 * ref_loss


def test_hashnet_official_weighting_is_saved_listed_and_checked():
    loss = HashNetLoss(official_weighting=True, class_num=10)
    again = HashNetLoss.from_config(loss.get_config())
    assert again.official_weighting is True and again.class_num == 10.0
    defaults = losses.defaults("hashnet")
    assert defaults["official_weighting"] is False and defaults["class_num"] == 1.0
    with pytest.raises(UsageError, match="add official_weighting=True"):
        HashNetLoss(class_num=10)
    with pytest.raises(UsageError, match="official_weighting must be True or False"):
        HashNetLoss(official_weighting="true")
    with pytest.raises(UsageError, match="class_num must be a finite positive"):
        HashNetLoss(official_weighting=True, class_num=0)


# ---------------------------------------------------------------------------------------------
# SSDH-ZP: PKU-ICST-MIPL/SSDH_TCSVT2017, SemiRankLossLayer (semirank_loss_layer.cpp)


def ssdh_official_ranking(h, labelled, y, margin):
    """The official ranking term in expectation and its backward, on s = (h + 1) / 2.

    Per labelled anchor i with a labelled negative: p uniform over the labelled j sharing its
    label, j = i included (the code's loop over every j); n uniform over those sharing none.
    Forward ``Σ ℓ / N_r / 2``; backward, for an active triplet, ``(s_i − s_p) − (s_i − s_n)``
    to i, ``−(s_i − s_p)`` to p, ``(s_i − s_n)`` to n, over N_r (the anchors).
    """
    s = (h.astype(np.float64) + 1) / 2
    d = ((s[:, None] - s[None]) ** 2).sum(-1)
    anchors = [
        i
        for i in range(len(y))
        if labelled[i] and any(labelled[j] and y[j] != y[i] for j in range(len(y)))
    ]
    value, grad_s = 0.0, np.zeros_like(s)
    for i in anchors:
        positives = [j for j in range(len(y)) if labelled[j] and y[j] == y[i]]  # i included
        negatives = [j for j in range(len(y)) if labelled[j] and y[j] != y[i]]
        prob = 1.0 / (len(positives) * len(negatives) * len(anchors))
        for p in positives:
            for n in negatives:
                loss = margin + d[i, p] - d[i, n]
                if loss > 0:
                    value += prob * loss
                    grad_s[i] += prob * ((s[i] - s[p]) - (s[i] - s[n]))
                    grad_s[p] -= prob * (s[i] - s[p])
                    grad_s[n] += prob * (s[i] - s[n])
    return value / 2, grad_s


@pytest.mark.parametrize("seed", [0, 1])
def test_ssdh_anchor_as_positive_matches_the_official_ranking_expectation(seed):
    rng = np.random.default_rng(seed)
    # 10 labelled of 4 classes, unbalanced (class 3 has one image: no positive but itself),
    # and 6 unlabelled images (their labels scrambled: never read).
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3] + list(rng.integers(0, 4, 6)))
    labelled = np.array([1] * 10 + [0] * 6)
    h = np.tanh(rng.normal(size=(16, 12)) * 0.4).astype(np.float32)
    y_true = np.stack([labelled, labels], axis=1)
    loss = SSDHLoss(anchor_as_positive=True, mining="all", graph_weight=0.0, seed=0)
    terms, grad = value_and_gradient(loss, y_true, h)
    value, grad_s = ssdh_official_ranking(h, labelled, labels, 1.0)
    np.testing.assert_allclose(float(terms["loss"]), value, rtol=1e-5)
    np.testing.assert_allclose(float(terms["ranking"]), 2 * value, rtol=1e-5)
    np.testing.assert_allclose(grad, 0.5 * grad_s, rtol=1e-4, atol=1e-7)  # ds/dh = ½
    # "random" mining takes every triplet while an anchor has at most 128: the same.
    sampled = SSDHLoss(anchor_as_positive=True, graph_weight=0.0, seed=0).terms(y_true, h)
    np.testing.assert_allclose(float(sampled["ranking"]), 2 * value, rtol=1e-5)
    # The default leaves the anchor out and averages over triplets: another value here.
    default = SSDHLoss(mining="all", graph_weight=0.0, seed=0).terms(y_true, h)
    assert abs(float(default["ranking"]) - 2 * value) > 1e-3


def test_ssdh_anchor_as_positive_is_saved_listed_and_checked():
    loss = SSDHLoss(anchor_as_positive=True, seed=3)
    again = SSDHLoss.from_config(loss.get_config())
    assert again.anchor_as_positive is True
    assert losses.defaults("ssdh")["anchor_as_positive"] is False
    with pytest.raises(UsageError, match="anchor_as_positive must be True or False"):
        SSDHLoss(anchor_as_positive=1)


def test_the_new_arguments_reload_with_a_saved_model(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(6)(inputs))
    model.compile(loss=HashNetLoss(official_weighting=True, class_num=5.0))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.loss.official_weighting is True and loaded.loss.class_num == 5.0
