"""LSDH, LSDH-L1 and triplet losses: values and gradients against the paper's formulas."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash.losses as losses
from tfhash import methods
from tfhash.errors import UsageError
from tfhash.losses import (
    LSDHL1Loss,
    LSDHLoss,
    TripletLoss,
    hamming_isometric,
    quadruplet_loss,
    squared_distances,
    triplet_loss,
)

# The margin-ranking losses on mined tuples (RankingLoss): the arguments tested here are theirs.
RANKING = ("lsdh", "lsdh_l1", "triplet")

# ---------------------------------------------------------------- NumPy references


def relevant(labels, a, b):
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels[a] == labels[b]
    return bool(np.dot(labels[a], labels[b]) > 0)


def sq(u, v):
    return float(np.sum((u - v) ** 2))


def sgn(h):
    return np.where(h >= 0, 1.0, -1.0)


def eq13(h, labels, i, j, k, n, m):
    """Eq. 13 for one quadruplet, squared Euclidean distances (Eq. 8 when s_jk = 1)."""
    s = 1.0 if relevant(labels, j, k) else 0.0
    d_in = sq(h[i], h[n])
    return (
        max(0.0, m + sq(h[i], h[j]) - d_in)
        + max(0.0, m + sq(h[i], h[k]) - d_in)
        + s * max(0.0, m + sq(h[j], h[k]) - d_in)
        + (1 - s) * max(0.0, m - sq(h[j], h[k]))
    )


def q_parts(h, i, j):
    """The L1 and isometric parts of Eq. 11 for one pair."""
    b = sgn(h)
    l1 = np.abs(h[i] - b[i]).sum() + np.abs(h[j] - b[j]).sum()
    return l1, abs(sq(h[i], h[j]) - sq(b[i], b[j]))


def reference_terms(h, labels, m, lam, mu, tuple_size=4):
    """Eq. 15 with tfhash's normalisation, by plain loops over the batch."""
    bsz = len(h)
    tuples, values, pairs = [], [], set()
    for idx in itertools.product(range(bsz), repeat=tuple_size):
        if tuple_size == 4:
            i, j, k, n = idx
            if i in (j, k, n) or j >= k:
                continue
            if not (relevant(labels, i, j) and relevant(labels, i, k)) or relevant(labels, i, n):
                continue
            values.append(eq13(h, labels, i, j, k, n, m))
            pairs |= {frozenset(p) for p in ((i, j), (i, k), (j, k), (i, n))}
        else:
            i, j, n = idx
            if i in (j, n) or not relevant(labels, i, j) or relevant(labels, i, n):
                continue
            values.append(max(0.0, m + sq(h[i], h[j]) - sq(h[i], h[n])))
            pairs |= {frozenset(p) for p in ((i, j), (i, n))}
        tuples.append(idx)
    semantic = np.mean(values) if values else 0.0
    parts = [q_parts(h, *sorted(p)) for p in pairs]
    quant = np.mean([p[0] for p in parts]) if parts else 0.0
    iso = np.mean([p[1] for p in parts]) if parts else 0.0
    return {
        "loss": semantic + lam * (quant + mu * iso),
        "semantic": semantic,
        "quantization": quant,
        "isometric": iso,
    }


def codes(shape, seed):
    return np.tanh(np.random.default_rng(seed).normal(size=shape))


def numpy_terms(terms):
    return {key: float(value) for key, value in terms.items()}


# ---------------------------------------------------------------- values


SINGLE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
MULTI = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 1],
        [1, 0, 0, 1],
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("labels, mu", [(SINGLE, 0.25), (MULTI, 0.75)])
def test_lsdh_values_against_loops(labels, mu):
    h = codes((8, 5), seed=0).astype(np.float32)
    loss = LSDHLoss(margin=1.5, quantization_weight=0.8, mining="all")
    got = numpy_terms(loss.terms(labels, h))
    want = reference_terms(h.astype(np.float64), labels, m=1.5, lam=0.8, mu=mu)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_triplet_values_against_loops():
    h = codes((8, 5), seed=1).astype(np.float32)
    loss = TripletLoss(margin=2.0, quantization_weight=0.5, isometric_weight=0.3, mining="all")
    got = numpy_terms(loss.terms(SINGLE, h))
    want = reference_terms(h.astype(np.float64), SINGLE, 2.0, 0.5, 0.3, tuple_size=3)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_random_mining_with_enough_slots_is_exact():
    # Every anchor of SINGLE has at most 2 · 6 = 12 quadruplets: N = 12 takes them all.
    h = codes((8, 5), seed=2).astype(np.float32)
    exact = numpy_terms(LSDHLoss(mining="all").terms(SINGLE, h))
    sampled = numpy_terms(LSDHLoss(mining="random", quadruplets_per_anchor=12).terms(SINGLE, h))
    assert sampled == pytest.approx(exact, rel=1e-6)


def test_one_hot_labels_give_the_single_label_value():
    h = codes((8, 6), seed=3).astype(np.float32)
    one_hot = np.eye(3, dtype=np.float32)[SINGLE]
    loss = LSDHLoss(isometric_weight=0.25, mining="all")
    assert numpy_terms(loss.terms(one_hot, h)) == numpy_terms(loss.terms(SINGLE, h))
    # Left unset, μ follows the label type: one-hot rows are multi-hot [B, C].
    default = LSDHLoss()
    assert default.isometric_weight_for(SINGLE) == 0.25
    assert default.isometric_weight_for(SINGLE[:, None]) == 0.25
    assert default.isometric_weight_for(one_hot) == 0.75


def test_unrelated_positives_are_pushed_apart():
    # Anchor 0 has labels {0, 1}; 1 has {0}, 2 has {1}: positives of 0 sharing no label.
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    h = np.array([[0.9, 0.8], [0.7, 0.9], [0.8, 0.6], [-0.9, -0.7]], dtype=np.float32)
    m = 1.0
    d = lambda a, b: float(np.sum((h[a] - h[b]) ** 2))  # noqa: E731
    # The only quadruplet is (0, 1, 2, 3); s_12 = 0, so Eq. 13 replaces the third term
    # by max(0, m − d_12): the two positives are too close for unrelated items.
    want = max(0, m + d(0, 1) - d(0, 3)) + max(0, m + d(0, 2) - d(0, 3)) + max(0, m - d(1, 2))
    assert m - d(1, 2) > 0
    got = LSDHLoss(margin=m, mining="all").terms(labels, h)["semantic"]
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_lsdh_l1_is_semantic_plus_lambda_l1():
    h = codes((8, 4), seed=4).astype(np.float32)
    loss = LSDHL1Loss(quantization_weight=0.7, mining="all")
    assert loss.isometric_weight == 0.0
    for labels in (SINGLE, MULTI):
        terms = numpy_terms(loss.terms(labels, h))
        assert terms["isometric"] > 0  # still reported
        assert terms["loss"] == pytest.approx(terms["semantic"] + 0.7 * terms["quantization"])
        full = numpy_terms(LSDHLoss(quantization_weight=0.7, mining="all").terms(labels, h))
        assert full["loss"] > terms["loss"]


@pytest.mark.parametrize("cls", [LSDHLoss, TripletLoss])
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [4, 4, 4, 4], np.zeros((4, 3))])
def test_no_valid_tuple_gives_zero_loss_and_gradient(cls, labels):
    h = tf.Variable(codes((4, 3), seed=5), dtype=tf.float32)
    with tf.GradientTape() as tape:
        terms = cls(mining="all").terms(np.asarray(labels), h)
    assert numpy_terms(terms) == {
        "loss": 0.0,
        "semantic": 0.0,
        "quantization": 0.0,
        "isometric": 0.0,
    }
    np.testing.assert_array_equal(tape.gradient(terms["loss"], h).numpy(), 0.0)


# ---------------------------------------------------------------- gradients


def tau(condition):
    return 1.0 if condition else 0.0


def eq14_gradient(h, quads, s, m):
    """Σ over quadruplets of Eq. 14 (Eq. 9 when every s_jk = 1), term by term.

    Eq. 14 as printed has ``+ 2 s_jk (h_j − h_k) τ`` in ∂L/∂h_k; differentiating
    Eq. 13 (and Eq. 9, its s_jk = 1 case) gives ``− 2 s_jk (h_j − h_k) τ``, used here.
    """
    g = np.zeros_like(h)
    for i, j, k, n in quads:
        hi, hj, hk, hn = h[i], h[j], h[k], h[n]
        d_in = sq(hi, hn)
        t_ijn = tau(m + sq(hi, hj) > d_in)
        t_ikn = tau(m + sq(hi, hk) > d_in)
        t_ijkn = tau(m + sq(hj, hk) > d_in)
        t_jk = tau(m - sq(hj, hk) > 0)
        sjk = s[j, k]
        g[i] += 2 * (hn - hj) * t_ijn + 2 * (hn - hk) * t_ikn - 2 * sjk * (hi - hn) * t_ijkn
        g[j] += (
            -2 * (hi - hj) * t_ijn + 2 * sjk * (hj - hk) * t_ijkn - 2 * (1 - sjk) * (hj - hk) * t_jk
        )
        g[k] += (
            -2 * (hi - hk) * t_ikn - 2 * sjk * (hj - hk) * t_ijkn + 2 * (1 - sjk) * (hj - hk) * t_jk
        )
        g[n] += 2 * (hi - hn) * (t_ijn + t_ikn + sjk * t_ijkn)
    return g


def assert_no_kinks(h, quads, m):
    for i, j, k, n in quads:
        d_in = sq(h[i], h[n])
        for arg in (
            m + sq(h[i], h[j]) - d_in,
            m + sq(h[i], h[k]) - d_in,
            m + sq(h[j], h[k]) - d_in,
            m - sq(h[j], h[k]),
        ):
            assert abs(arg) > 1e-6


def tf_gradient(fn, h):
    h = tf.Variable(h)
    with tf.GradientTape() as tape:
        value = fn(h)
    return tape.gradient(value, h).numpy()


@pytest.mark.parametrize("multi_label", [False, True])
def test_quadruplet_gradient_matches_eq9_and_eq14(multi_label):
    rng = np.random.default_rng(6)
    bsz, k_bits, m = 7, 3, 2.0
    h = codes((bsz, k_bits), seed=6)  # float64
    s = rng.random((bsz, bsz)) < 0.5 if multi_label else np.ones((bsz, bsz), bool)
    s = s & s.T
    # Explicit quadruplets with distinct members; repeats and shared members on purpose.
    quads = [tuple(rng.choice(bsz, 4, replace=False)) for _ in range(40)]
    assert_no_kinks(h, quads, m)
    if multi_label:
        assert {s[j, k] for _, j, k, _ in quads} == {True, False}

    def summed(hv):
        return tf.reduce_sum(
            quadruplet_loss(squared_distances(hv), tf.constant(s), tf.constant(quads, tf.int32), m)
        )

    np.testing.assert_allclose(
        tf_gradient(summed, h), eq14_gradient(h, quads, s.astype(float), m), rtol=1e-10, atol=1e-12
    )


def test_triplet_gradient_matches_first_two_terms_of_eq9():
    rng = np.random.default_rng(7)
    h = codes((6, 4), seed=7)
    m = 2.0
    triplets = [tuple(rng.choice(6, 3, replace=False)) for _ in range(25)]
    want = np.zeros_like(h)
    for i, j, n in triplets:
        arg = m + sq(h[i], h[j]) - sq(h[i], h[n])
        assert abs(arg) > 1e-6
        t = tau(arg > 0)
        want[i] += 2 * (h[n] - h[j]) * t
        want[j] += -2 * (h[i] - h[j]) * t
        want[n] += 2 * (h[i] - h[n]) * t

    def summed(hv):
        return tf.reduce_sum(
            triplet_loss(squared_distances(hv), tf.constant(triplets, tf.int32), m)
        )

    np.testing.assert_allclose(tf_gradient(summed, h), want, rtol=1e-10, atol=1e-12)


def delta(x):
    """The paper's δ of Eq. 12."""
    return np.where(((-1 <= x) & (x <= 0)) | (x >= 1), 1.0, -1.0)


def test_quantization_gradient_matches_eq12():
    rng = np.random.default_rng(8)
    # Values beyond ±1 too, to exercise every branch of δ (h need not come from tanh here).
    h = rng.uniform(-1.6, 1.6, size=(6, 5))
    assert np.all(np.abs(h) > 1e-3) and np.all(np.abs(np.abs(h) - 1) > 1e-3)
    mu = 0.75
    pairs = [tuple(rng.choice(6, 2, replace=False)) for _ in range(12)]
    b = sgn(h)
    want = np.zeros_like(h)
    for i, j in pairs:
        gap = sq(h[i], h[j]) - sq(b[i], b[j])
        assert abs(gap) > 1e-6
        want[i] += delta(h[i]) + 2 * mu * (h[i] - h[j]) * np.sign(gap)
        want[j] += delta(h[j]) - 2 * mu * (h[i] - h[j]) * np.sign(gap)

    def summed(hv):
        l1, iso = hamming_isometric(hv, squared_distances(hv))
        index = tf.constant(pairs, tf.int32)
        return tf.reduce_sum(tf.gather_nd(l1, index) + mu * tf.gather_nd(iso, index))

    np.testing.assert_allclose(tf_gradient(summed, h), want, rtol=1e-10, atol=1e-12)


def test_class_gradient_is_the_averaged_paper_gradient():
    """The class's total: Eq. 14 / Q + λ · Eq. 12 / P, over the mined quadruplets and pairs."""
    h = codes((8, 4), seed=9)
    m, lam, mu = 1.0, 0.8, 0.75
    loss = LSDHLoss(margin=m, quantization_weight=lam, isometric_weight=mu, mining="all")
    s = np.array([[relevant(MULTI, a, c) for c in range(8)] for a in range(8)])
    quads = [tuple(q) for q in losses.mine_quadruplets(tf.constant(s), "all").numpy()]
    pairs = {tuple(sorted(p)) for i, j, k, n in quads for p in ((i, j), (i, k), (j, k), (i, n))}
    assert_no_kinks(h, quads, m)
    b = sgn(h)
    quant = np.zeros_like(h)
    for i, j in pairs:
        gap = sq(h[i], h[j]) - sq(b[i], b[j])
        quant[i] += delta(h[i]) + 2 * mu * (h[i] - h[j]) * np.sign(gap)
        quant[j] += delta(h[j]) - 2 * mu * (h[i] - h[j]) * np.sign(gap)
    want = eq14_gradient(h, quads, s.astype(float), m) / len(quads) + lam * quant / len(pairs)
    got = tf_gradient(lambda hv: loss.terms(MULTI, hv)["loss"], h.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Keras API


ALL_CLASSES = [LSDHLoss, LSDHL1Loss, TripletLoss]


def test_registry():
    assert {m: losses.METHODS[m] for m in RANKING} == {
        "lsdh": LSDHLoss,
        "lsdh_l1": LSDHL1Loss,
        "triplet": TripletLoss,
    }
    # The view holds the registry's Keras methods, not its shallow ones.
    assert "itq" in methods.REGISTRY and "itq" not in losses.METHODS
    assert set(losses.METHODS) == {n for n, m in methods.REGISTRY.items() if m.kind == "keras"}
    loss = losses.get("triplet", margin=3.0, mining="all")
    assert isinstance(loss, TripletLoss) and loss.margin == 3.0 and loss.name == "triplet"
    with pytest.raises(
        UsageError, match="^unknown method 'nope': choose one of lsdh, lsdh_l1, triplet, cnnh, "
    ):
        losses.get("nope")
    with pytest.raises(UsageError, match="itq is a shallow method with no Keras loss"):
        losses.get("itq")


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_config_round_trip(cls):
    kwargs = dict(
        margin=2.5,
        quantization_weight=0.3,
        mining="all",
        quadruplets_per_anchor=7,
        seed=5,
        name="custom",
    )
    if cls is not LSDHL1Loss:
        kwargs["isometric_weight"] = 0.4
    loss = cls(**kwargs)
    config = loss.get_config()
    assert config == dict(
        kwargs,
        isometric_weight=kwargs.get("isometric_weight", 0.0),
        reduction="sum_over_batch_size",
    )
    again = cls.from_config(config)
    assert type(again) is cls and again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls and restored.get_config() == config
    assert keras.losses.get(keras.losses.serialize(loss)).get_config() == config


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_defaults(cls):
    loss = cls()
    assert (loss.margin, loss.quantization_weight, loss.mining, loss.quadruplets_per_anchor) == (
        None,
        0.8,
        "random",
        128,
    )
    assert loss.supports_jit and not cls(mining="all").supports_jit
    assert cls(seed=None).seed is None


def test_keras_call_paths():
    h = codes((8, 5), seed=10).astype(np.float32)
    want = float(LSDHLoss(mining="all").terms(SINGLE, h)["loss"])
    for reduction in ("sum_over_batch_size", "sum", "mean", None):
        loss = LSDHLoss(mining="all", reduction=reduction)
        assert float(loss(SINGLE, h)) == pytest.approx(want)
        assert float(loss(SINGLE[:, None], h, sample_weight=None)) == pytest.approx(want)
    value = LSDHLoss(mining="all")(SINGLE, h.astype(np.float16))
    assert value.dtype == tf.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(margin=0), "margin must be a finite positive number, got 0"),
        (dict(margin=-1.0), "margin must be a finite positive number, got -1.0"),
        (dict(margin=float("nan")), "margin must be a finite positive number"),
        (dict(margin="big"), "margin must be a finite positive number, got 'big'"),
        (
            dict(quantization_weight=-0.1),
            "quantization_weight must be a finite non-negative number",
        ),
        (dict(isometric_weight=-1), "isometric_weight must be a finite non-negative number"),
        (dict(mining="hard"), "mining must be one of all, random, got 'hard'"),
        (dict(quadruplets_per_anchor=0), "quadruplets_per_anchor must be an integer of at least 1"),
        (dict(seed="x"), "seed must be an integer or None, got 'x'"),
    ],
)
@pytest.mark.parametrize("method", RANKING)
def test_bad_arguments(method, kwargs, message):
    if method == "lsdh_l1" and "isometric_weight" in kwargs:
        message = "lsdh_l1 has no isometric term, got isometric_weight=-1"
    with pytest.raises(UsageError) as error:
        losses.get(method, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_lsdh_l1_rejects_an_isometric_weight():
    assert LSDHL1Loss(isometric_weight=None).isometric_weight == 0.0
    with pytest.raises(UsageError, match="lsdh_l1 has no isometric term"):
        losses.get("lsdh_l1", isometric_weight=0.25)


def test_bad_shapes():
    loss = LSDHLoss()
    with pytest.raises(UsageError, match=r"labels must be class ids \[B\] or \[B, 1\]"):
        loss.terms(np.zeros((2, 2, 2)), np.zeros((2, 3), np.float32))
    with pytest.raises(UsageError, match=r"y_pred must be relaxed codes \[B, K\]"):
        loss.terms(np.zeros(3), np.zeros(3, np.float32))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_margin_none_is_half_the_code_length(cls):
    # K = 4 codes, one class of three and one other: the hinges are active at m = 2 (K/2) and
    # inactive at m = 1 on some tuples, so the two margins give different semantic terms.
    labels = tf.constant([0, 0, 0, 1])
    h = tf.constant(
        [
            [0.9, 0.8, -0.2, 0.5],
            [0.7, 0.9, 0.1, -0.3],
            [0.8, -0.6, 0.4, 0.2],
            [-0.9, -0.7, 0.3, 0.6],
        ]
    )
    default = cls(mining="all").terms(labels, h)
    half = cls(mining="all", margin=2.0).terms(labels, h)
    one = cls(mining="all", margin=1.0).terms(labels, h)
    for name in default:
        np.testing.assert_allclose(float(default[name]), float(half[name]), rtol=1e-6)
    assert float(one["semantic"]) != pytest.approx(float(half["semantic"]))
    assert cls(mining="all").margin_for(h) == 2.0 and cls(margin=3.0).margin_for(h) == 3.0
    assert (
        cls().get_config()["margin"] is None and cls.from_config(cls().get_config()).margin is None
    )


def test_triplet_margin_none_by_hand():
    # Triplets (anchor, positive, negative) of two items of class 0 and one of class 1, K = 2:
    # d(0, 1) = 0.08, d(0, 2) = 0.5, d(1, 2) = 0.18; m = K/2 = 1:
    # max(0, 1 + 0.08 − 0.5) = 0.58 and max(0, 1 + 0.08 − 0.18) = 0.9, mean 0.74.
    h = tf.constant([[0.5, 0.5], [0.3, 0.3], [0.0, 0.0]])
    got = TripletLoss(mining="all").terms(tf.constant([0, 0, 1]), h)["semantic"]
    assert float(got) == pytest.approx(0.74, rel=1e-5)
