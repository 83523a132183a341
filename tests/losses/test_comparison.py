"""The LSDH paper's comparison methods (DSH, HashNet, DHN; lifted structured, Chen et al.'s
quadruplet and angular losses of its Fig. 11) against their formulas written out in NumPy
(float64), their settings, serialisation, HashNet's β schedule and resume, and short runs."""

import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash.losses as losses
from tfhash import methods
from tfhash.errors import UsageError
from tfhash.losses.angular import AngularLoss
from tfhash.losses.dhn import DHNLoss
from tfhash.losses.dsh import DSHLoss
from tfhash.losses.hashnet import HashNetLoss
from tfhash.losses.lifted import LiftedStructuredLoss
from tfhash.losses.quadruplet_chen import ChenQuadrupletLoss, chen_quadruplet_loss
from tfhash.models import HashingModel
from tfhash.models.layers import HashingLayer
from tfhash.train import train

from helpers import map_of as _map_of
from helpers import train_config as _config
from helpers import write_folder as _write_folder

NEW = ("dsh", "hashnet", "dhn", "lifted", "quadruplet_chen", "angular")


def batch(seed=0, n=10, bits=6, classes=3, scale=1.0):
    """Class ids and float32 codes; the NumPy references use their float64 values."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    u = (scale * rng.normal(size=(n, bits))).astype(np.float32)
    return y, u


def value_and_gradient(loss, y, u, **kwargs):
    u = tf.constant(u)
    with tf.GradientTape() as tape:
        tape.watch(u)
        terms = loss.terms(tf.constant(y), u, **kwargs)
    return terms, tape.gradient(terms["loss"], u).numpy()


def sim_of(y):
    return (y[:, None] == y[None, :]).astype(np.float64)


def softplus(x):
    return np.logaddexp(0.0, x)


# ---------------------------------------------------------------------------------------------
# DSH


def dsh_reference(y, u, alpha):
    """Eq. 5 averaged over ordered pairs i ≠ j, and its gradient, by hand."""
    u = u.astype(np.float64)
    n, k = u.shape
    m = 2.0 * k
    loss, grad = 0.0, np.zeros_like(u)
    for i, j in itertools.permutations(range(n), 2):
        diff = u[i] - u[j]
        d = diff @ diff
        r_i, r_j = np.abs(np.abs(u[i]) - 1).sum(), np.abs(np.abs(u[j]) - 1).sum()
        if y[i] == y[j]:
            loss += 0.5 * d
            grad[i] += diff
            grad[j] -= diff
        else:
            loss += 0.5 * max(m - d, 0.0)
            if d < m:
                grad[i] -= diff
                grad[j] += diff
        loss += alpha * (r_i + r_j)
        for a in (i, j):
            grad[a] += alpha * np.sign(np.abs(u[a]) - 1) * np.sign(u[a])
    pairs = n * (n - 1)
    return loss / pairs, grad / pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsh_value_and_gradient_match_eq5_by_hand(seed):
    y, u = batch(seed, scale=1.5)
    terms, grad = value_and_gradient(DSHLoss(alpha=0.05), y, u)
    ref_loss, ref_grad = dsh_reference(y, u, 0.05)
    np.testing.assert_allclose(float(terms["loss"]), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_dsh_defaults_are_the_papers():
    loss = losses.get("dsh")
    assert loss.alpha == 0.01 and loss.margin is None  # m = 2K from the codes
    y, u = batch(bits=4, scale=3.0)  # some dissimilar pairs beyond m = 8, some inside
    ref, _ = dsh_reference(y, u, 0.01)
    np.testing.assert_allclose(float(loss.terms(y, u)["loss"]), ref, rtol=1e-5)
    assert methods.get("dsh").head == "linear"


# ---------------------------------------------------------------------------------------------
# HashNet


def hashnet_reference(y, z, beta, alpha):
    """Weighted ML over ordered pairs i ≠ j on h = tanh(βz), and its gradient in z, by hand."""
    z = z.astype(np.float64)
    n, _ = z.shape
    h = np.tanh(beta * z)
    s = sim_of(y)
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2)]
    n1 = sum(s[i, j] for i, j in pairs)
    n0 = len(pairs) - n1
    loss, grad_h = 0.0, np.zeros_like(h)
    for i, j in pairs:
        w = len(pairs) / n1 if s[i, j] else len(pairs) / n0
        theta = alpha * h[i] @ h[j]
        loss += w * (softplus(theta) - s[i, j] * theta)
        dtheta = w * (1.0 / (1.0 + np.exp(-theta)) - s[i, j])
        grad_h[i] += dtheta * alpha * h[j]
        grad_h[j] += dtheta * alpha * h[i]
    return loss / len(pairs), grad_h * beta * (1.0 - h**2) / len(pairs)


@pytest.mark.parametrize("seed,iterations", [(0, 0), (1, 450), (2, 5000)])
def test_hashnet_value_and_gradient_match_weighted_ml_by_hand(seed, iterations):
    y, z = batch(seed, n=9, bits=8, classes=3)
    loss = HashNetLoss()
    terms, grad = value_and_gradient(loss, y, z, iterations=iterations)
    beta = (1 + 0.005 * ((iterations + 1) // 200 * 200)) ** 0.5
    ref_loss, ref_grad = hashnet_reference(y, z, beta, 10.0 / 8)
    np.testing.assert_allclose(float(terms["beta"]), beta, rtol=1e-6)
    np.testing.assert_allclose(float(terms["loss"]), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_hashnet_is_stable_for_large_inner_products():
    y, z = batch(0, bits=48, scale=50.0)  # |θ| up to α K = 10 at saturation
    terms = HashNetLoss(alpha=5.0).terms(y, z, iterations=10**6)
    assert np.isfinite(float(terms["loss"]))


def test_hashnet_batch_with_one_kind_of_pair_is_the_plain_mean():
    _, z = batch(0, n=5)
    y = np.zeros(5, int)  # only similar pairs: nothing to balance, weights 1
    h = np.tanh(z.astype(np.float64))
    theta = (10 / 6) * h @ h.T
    expected = np.mean(
        [softplus(theta[i, j]) - theta[i, j] for i, j in itertools.permutations(range(5), 2)]
    )
    np.testing.assert_allclose(float(HashNetLoss().terms(y, z)["loss"]), expected, rtol=1e-5)


def official_pytorch_betas(steps, every=200, step=0.005, power=0.5):
    """β of each training step in thuml/HashNet's PyTorch network: ``iter_num`` is raised
    before the forward pass and β recomputed when it is a multiple of ``step_size``."""
    scale, iter_num, betas = 1.0, 0, []
    for _ in range(steps):
        iter_num += 1
        if iter_num % every == 0:
            scale = (1 + step * iter_num) ** power
        betas.append(scale)
    return betas


def test_hashnet_beta_schedule():
    loss = HashNetLoss()
    # The step after t completed ones (the optimizer's iterations = t) is the official
    # iteration t + 1: β changes on the 200th step (t = 199), as in the official code.
    for t, t_used in [
        (0, 0),
        (198, 0),
        (199, 200),
        (200, 200),
        (398, 200),
        (399, 400),
        (1000, 1000),
        (10_123, 10_000),
    ]:
        np.testing.assert_allclose(float(loss.beta(t)), math.sqrt(1 + 0.005 * t_used), rtol=1e-6)
    official = official_pytorch_betas(1000)
    np.testing.assert_allclose([float(loss.beta(t)) for t in range(1000)], official, rtol=1e-6)
    custom = HashNetLoss(beta_step=0.1, beta_power=1.0, beta_every=10)
    np.testing.assert_allclose(float(custom.beta(25)), 1 + 0.1 * 20, rtol=1e-6)
    assert float(HashNetLoss(beta_step=0.0).beta(10**5)) == 1.0
    assert float(HashNetLoss(beta_every=1).beta(None)) == 1.0  # no training step: β = 1


def tiny_hashnet_model(bits=6, features=12):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = HashingModel(inputs, HashingLayer(bits, activation="linear")(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=HashNetLoss(beta_every=2))
    return model


def test_hashnet_beta_follows_the_optimizer_and_survives_resume(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 12)).astype(np.float32)
    y = np.arange(32) % 4
    model = tiny_hashnet_model()
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    # Epoch 2 runs the steps after 4..7 completed ones, official iterations 5..8: β of 4, 6, 6, 8.
    expected = np.mean([math.sqrt(1 + 0.005 * t) for t in (4, 6, 6, 8)])
    np.testing.assert_allclose(history.history["beta"][1], expected, rtol=1e-5)
    path = str(tmp_path / "latest.keras")
    model.save(path)

    loaded = keras.saving.load_model(path)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 8
    np.testing.assert_allclose(
        float(loaded.loss.beta(loaded.optimizer.iterations)),
        float(model.loss.beta(model.optimizer.iterations)),
    )
    # The way tfhash.train resumes: a fresh model, its optimizer built, the weights loaded.
    fresh = tiny_hashnet_model()
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(path)
    assert int(fresh.optimizer.iterations) == 8
    resumed = fresh.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    continued = np.mean([math.sqrt(1 + 0.005 * t) for t in (8, 10, 10, 12)])
    np.testing.assert_allclose(resumed.history["beta"][0], continued, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# DHN


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_dhn_matches_cross_entropy_plus_log_cosh(scale):
    y, u = batch(3, n=8, bits=5)
    u = np.tanh(u)
    loss = DHNLoss(quantization_weight=0.3, inner_product_scale=scale)
    s = sim_of(y)
    u64 = u.astype(np.float64)
    ce = np.mean(
        [
            softplus(scale * u64[i] @ u64[j]) - s[i, j] * scale * u64[i] @ u64[j]
            for i, j in itertools.permutations(range(8), 2)
        ]
    )
    quant = np.mean(np.log(np.cosh(np.abs(u64) - 1)))
    terms = loss.terms(y, u)
    np.testing.assert_allclose(float(terms["cross_entropy"]), ce, rtol=1e-5)
    np.testing.assert_allclose(float(terms["quantization"]), quant, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), ce + 0.3 * quant, rtol=1e-5)


def test_dhn_log_cosh_is_stable():
    from tfhash.losses.dhn import log_cosh

    np.testing.assert_allclose(
        log_cosh(tf.constant([0.0, 1.0, 100.0, -1000.0])).numpy(),
        [0.0, math.log(math.cosh(1.0)), 100 - math.log(2), 1000 - math.log(2)],
        rtol=1e-6,
    )
    assert losses.get("dhn").quantization_weight == 0.1


# ---------------------------------------------------------------------------------------------
# Fig. 11: lifted structured, Chen et al.'s quadruplet, angular


def quantization_reference(h, pairs, mu):
    """The triplet baseline's λ-weighted part over the given unordered pairs: (L1, isometric)."""
    h = h.astype(np.float64)
    b = np.where(h >= 0, 1.0, -1.0)
    l1 = [np.abs(h[i] - b[i]).sum() + np.abs(h[j] - b[j]).sum() for i, j in pairs]
    iso = [abs(((h[i] - h[j]) ** 2).sum() - ((b[i] - b[j]) ** 2).sum()) for i, j in pairs]
    return np.mean(l1), np.mean(iso)


def lifted_reference(y, h, alpha):
    h = h.astype(np.float64)
    n = len(y)
    dist = np.sqrt(((h[:, None] - h[None]) ** 2).sum(-1))
    total, positives = 0.0, 0
    for i, j in itertools.combinations(range(n), 2):
        if y[i] != y[j]:
            continue
        positives += 1
        neg = sum(np.exp(alpha - dist[i, k]) for k in range(n) if y[k] != y[i])
        neg += sum(np.exp(alpha - dist[j, k]) for k in range(n) if y[k] != y[j])
        total += max(np.log(neg) + dist[i, j], 0.0) ** 2
    return total / (2 * positives)


def test_lifted_structured_matches_eq4_and_the_triplet_quantization():
    y, h = batch(4, n=9, bits=6)
    h = np.tanh(h)
    terms = LiftedStructuredLoss(margin=1.5, quantization_weight=0.7, isometric_weight=0.2).terms(
        y, h
    )
    semantic = lifted_reference(y, h, 1.5)
    l1, iso = quantization_reference(h, list(itertools.combinations(range(9), 2)), 0.2)
    np.testing.assert_allclose(float(terms["semantic"]), semantic, rtol=1e-5)
    np.testing.assert_allclose(float(terms["quantization"]), l1, rtol=1e-5)
    np.testing.assert_allclose(float(terms["isometric"]), iso, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), semantic + 0.7 * (l1 + 0.2 * iso), rtol=1e-5)


def test_lifted_gradient_is_finite_with_identical_codes():
    h = tf.constant([[0.5, 0.5], [0.5, 0.5], [-0.5, 0.5]])
    with tf.GradientTape() as tape:
        tape.watch(h)
        loss = LiftedStructuredLoss().terms(tf.constant([0, 0, 1]), h)["loss"]
    assert np.all(np.isfinite(tape.gradient(loss, h).numpy()))


def angular_reference(y, h, angle):
    x = h.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    t2 = math.tan(math.radians(angle)) ** 2
    values = []
    for a, p in itertools.permutations(range(len(y)), 2):
        if y[a] != y[p]:
            continue
        f = [
            4 * t2 * (x[a] + x[p]) @ x[n] - 2 * (1 + t2) * x[a] @ x[p]
            for n in range(len(y))
            if y[n] != y[a]
        ]
        values.append(np.log(1 + np.sum(np.exp(f))))
    return np.mean(values)


@pytest.mark.parametrize("angle", [45.0, 36.0])
def test_angular_matches_the_batch_form(angle):
    y, h = batch(5, n=9, bits=6)
    h = np.tanh(h)
    terms = AngularLoss(angle=angle).terms(y, h)
    semantic = angular_reference(y, h, angle)
    l1, iso = quantization_reference(h, list(itertools.combinations(range(9), 2)), 0.25)
    np.testing.assert_allclose(float(terms["semantic"]), semantic, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), semantic + 0.8 * (l1 + 0.25 * iso), rtol=1e-5)


def test_chen_quadruplets_are_valid_and_score_eq4():
    y, h = batch(6, n=12, bits=6, classes=4)
    h = np.tanh(h)
    loss = ChenQuadrupletLoss(mining="all", margin=1.0, second_margin=0.5, seed=0)
    sim = losses.label_similarity(tf.constant(y))
    quads, keep = loss.mine(sim)
    assert keep.numpy().tolist() == [1.0] * len(quads)  # every triplet has an l here
    quads = quads.numpy()
    triplets = [
        (i, j, k)
        for i, j, k in itertools.permutations(range(12), 3)
        if y[i] == y[j] and y[k] != y[i]
    ]
    assert sorted(map(tuple, quads[:, :3])) == sorted(triplets)
    for i, j, k, q in quads:
        assert y[q] != y[i] and y[q] != y[k]
    d = ((h[:, None].astype(np.float64) - h[None]) ** 2).sum(-1)
    expected = np.mean(
        [max(d[i, j] - d[i, k] + 1.0, 0) + max(d[i, j] - d[q, k] + 0.5, 0) for i, j, k, q in quads]
    )
    got = chen_quadruplet_loss(
        losses.squared_distances(tf.constant(h)), tf.constant(quads), 1.0, 0.5
    )
    np.testing.assert_allclose(float(tf.reduce_mean(got)), expected, rtol=1e-5)
    pairs = sorted({tuple(sorted(p)) for i, j, k, q in quads for p in ((i, j), (i, k), (q, k))})
    l1, iso = quantization_reference(h, pairs, 0.25)
    terms = ChenQuadrupletLoss(mining="all", seed=0).terms(y, h)  # same seed: same l
    np.testing.assert_allclose(float(terms["semantic"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), expected + 0.8 * (l1 + 0.25 * iso), rtol=1e-5)


def test_chen_quadruplet_drops_triplets_without_a_fourth_class():
    loss = ChenQuadrupletLoss(mining="all")
    quads, keep = loss.mine(losses.label_similarity(tf.constant([0, 0, 1, 1])))
    assert quads.shape[0] == 8 and keep.numpy().tolist() == [0.0] * 8  # no l of a third class
    assert float(loss.terms(tf.constant([0, 0, 1, 1]), tf.ones((4, 3)) * 0.5)["loss"]) == 0.0


# Multi-hot labels where each of the 76 triplets has exactly one l (36) or none (40), so no
# draw decides anything (XLA draws other random numbers than eager TensorFlow).
ONE_OR_NO_FOURTH = np.array(
    [
        [0, 0, 1, 1],
        [1, 1, 1, 1],
        [0, 1, 1, 0],
        [0, 0, 0, 1],
        [0, 0, 1, 0],
        [1, 0, 1, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 0, 1, 1],
    ],
    np.float32,
)


def test_chen_quadruplet_mixes_kept_and_dropped_triplets_by_hand():
    y = ONE_OR_NO_FOURTH
    h = np.tanh(batch(8, n=10, bits=6)[1])
    s = (y @ y.T) > 0
    dissimilar = ~s & ~np.eye(10, dtype=bool)
    kept = [
        (i, j, k, int(np.flatnonzero(dissimilar[i] & dissimilar[k])[0]))
        for i, j, k in itertools.permutations(range(10), 3)
        if s[i, j] and dissimilar[i, k] and (dissimilar[i] & dissimilar[k]).any()
    ]
    dropped = [
        (i, j, k)
        for i, j, k in itertools.permutations(range(10), 3)
        if s[i, j] and dissimilar[i, k] and not (dissimilar[i] & dissimilar[k]).any()
    ]
    assert (len(kept), len(dropped)) == (36, 40)
    assert all(
        (dissimilar[i] & dissimilar[k]).sum() <= 1
        for i, j, k in itertools.permutations(range(10), 3)
    )
    d = ((h[:, None].astype(np.float64) - h[None]) ** 2).sum(-1)
    expected = np.mean(
        [max(d[i, j] - d[i, k] + 1.0, 0) + max(d[i, j] - d[q, k] + 0.5, 0) for i, j, k, q in kept]
    )
    pairs = sorted({tuple(sorted(p)) for i, j, k, q in kept for p in ((i, j), (i, k), (q, k))})
    l1, iso = quantization_reference(h, pairs, 0.75)  # multi-hot: μ = 0.75
    terms = ChenQuadrupletLoss(mining="all").terms(y, h)
    np.testing.assert_allclose(float(terms["semantic"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), expected + 0.8 * (l1 + 0.75 * iso), rtol=1e-5)


def test_chen_quadruplet_is_the_same_under_xla():
    # Keras compiles the train step with XLA on a GPU (jit_compile="auto"); there, a second
    # boolean_mask of the mined triplets once returned copies of one row (semantic 0 here).
    y, h = tf.constant(ONE_OR_NO_FOURTH), tf.constant(np.tanh(batch(8, n=10, bits=6)[1]))
    assert ChenQuadrupletLoss().supports_jit and not ChenQuadrupletLoss(mining="all").supports_jit
    eager_terms, eager_gradient = value_and_gradient(ChenQuadrupletLoss(seed=0), y, h)
    loss = ChenQuadrupletLoss(seed=0)

    @tf.function(jit_compile=True)
    def xla(y, h):
        with tf.GradientTape() as tape:
            tape.watch(h)
            terms = loss.terms(y, h)
        return terms, tape.gradient(terms["loss"], h)

    xla_terms, xla_gradient = xla(y, h)
    assert float(eager_terms["semantic"]) > 0.1
    for name in ("semantic", "quantization", "isometric", "loss"):
        np.testing.assert_allclose(float(xla_terms[name]), float(eager_terms[name]), rtol=1e-5)
    np.testing.assert_allclose(xla_gradient.numpy(), eager_gradient, rtol=1e-4, atol=1e-6)


def test_chen_quadruplets_mined_under_xla_are_all_distinct_and_valid():
    # The reported case: 4 classes × 4 images, 576 triplets, each with an l of a third class.
    y = np.repeat(np.arange(4), 4)
    loss = ChenQuadrupletLoss(seed=0)
    quads, keep = tf.function(loss.mine, jit_compile=True)(losses.label_similarity(y))
    quads = quads.numpy()
    assert keep.numpy().tolist() == [1.0] * 576
    triplets = [
        (i, j, k)
        for i, j, k in itertools.permutations(range(16), 3)
        if y[i] == y[j] and y[k] != y[i]
    ]
    assert sorted(map(tuple, quads[:, :3])) == sorted(triplets)
    assert all(y[q] != y[i] and y[q] != y[k] for i, j, k, q in quads)


# ---------------------------------------------------------------------------------------------
# Settings, serialisation, registry


@pytest.mark.parametrize("method", NEW)
def test_config_round_trip_and_serialisation(method):
    seeded = {"seed": 0} if "seed" in losses.arguments(method) else {}  # one random sample
    loss = losses.get(method, **seeded)
    again = type(loss).from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    y, u = batch(7)
    np.testing.assert_allclose(
        float(restored.terms(y, np.tanh(u))["loss"]),
        float(loss.terms(y, np.tanh(u))["loss"]),
        rtol=1e-6,
    )
    assert list(loss.term_names) == [k for k in loss.terms(y, np.tanh(u)) if k != "loss"]


@pytest.mark.parametrize(
    "method,kwargs,message",
    [
        ("dsh", {"alpha": 0}, "alpha must be a finite positive number"),
        ("dsh", {"alpha": -1}, "alpha must be"),
        ("dsh", {"margin": 0}, "margin must be"),
        ("hashnet", {"alpha": 0.0}, "alpha must be"),
        ("hashnet", {"beta_step": -0.1}, "beta_step must be a finite non-negative"),
        ("hashnet", {"beta_power": float("nan")}, "beta_power must be"),
        ("hashnet", {"beta_every": 0}, "beta_every must be an integer of at least 1"),
        ("dhn", {"quantization_weight": -0.1}, "quantization_weight must be a finite non-negative"),
        ("dhn", {"inner_product_scale": 0}, "inner_product_scale must be"),
        ("lifted", {"margin": -1}, "margin must be"),
        ("quadruplet_chen", {"second_margin": 0}, "second_margin must be"),
        ("angular", {"angle": 90}, "angle must be in degrees between 0 and 90"),
        ("angular", {"quantization_weight": -1}, "quantization_weight must be"),
        ("dsh", {"quantization_weight": 0.8}, "dsh takes no argument 'quantization_weight'"),
    ],
)
def test_bad_values_are_one_line_usage_errors(method, kwargs, message):
    with pytest.raises(UsageError, match=message) as error:
        losses.get(method, **kwargs)
    assert "\n" not in str(error.value)


def test_heads_of_the_registry():
    assert {m: methods.get(m).head for m in NEW} == {
        "dsh": "linear",
        "hashnet": "linear",
        "dhn": "tanh",
        "lifted": "tanh",
        "quadruplet_chen": "tanh",
        "angular": "tanh",
    }


# ---------------------------------------------------------------------------------------------
# Each method through tfhash.train, a few steps on tiny data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("colours"), per_class=24)


@pytest.mark.parametrize("method", NEW)
@pytest.mark.slow
def test_each_method_trains_through_tfhash_train(method, tmp_path, folder):
    metrics = train(_config(tmp_path / "run", folder, method=method, epochs=1, steps_per_epoch=4))
    assert 0.0 <= _map_of(metrics) <= 1.0
    codes = np.load(tmp_path / "run" / "codes" / "query_codes.npy")
    assert set(np.unique(codes)) <= {-1, 1}
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert set(losses.get(method).term_names) <= set(header)


def test_method_args_reach_the_loss(tmp_path, folder):
    config = _config(tmp_path / "run", folder, method="dsh", method_args="alpha=0.1,margin=4")
    assert config.loss_kwargs() == {"alpha": 0.1, "margin": 4}
