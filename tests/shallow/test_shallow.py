"""Shallow hashing baselines (tfhash.shallow): NumPy only, checked against hand computations.

This file must not import TensorFlow: tfhash.shallow is usable without it.
"""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfhash import evaluation, shallow
from tfhash.errors import UsageError
from tfhash.shallow import base, itq, sh

# Small settings so that every method fits in well under a second.
SMALL = {"lsh": {}, "sh": {}, "itq": {}, "ksh": {"anchors": 30}, "sdh": {"anchors": 40}}


def clusters(num_classes=4, per_class=60, dim=16, spread=1.0, seed=0):
    """Well-separated Gaussian classes: centres 12 apart on the axes, unit spread."""
    rng = np.random.default_rng(seed)
    centres = 12.0 * np.eye(num_classes, dim)
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    order = rng.permutation(len(labels))
    return features[order], labels[order]


def fitted(name, bits=8, seed=0):
    x, y = clusters()
    model = shallow.get(name, bits=bits, seed=seed, **SMALL[name])
    return model.fit(x, y if model.supervised else None), x, y


def test_importing_tfhash_shallow_does_not_import_tensorflow():
    code = (
        "import sys, tfhash.shallow, tfhash.shallow.ksh, tfhash.shallow.sdh; "
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules), "
        "'TensorFlow was imported'"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ---------------------------------------------------------------------------------------------
# LSH


def test_lsh_collision_rate_is_one_minus_angle_over_pi():
    """P[bit equal] = 1 − θ/π for a Gaussian hyperplane through the mean, pair by pair."""
    rng = np.random.default_rng(3)
    half = rng.normal(size=(20, 6))
    x = np.r_[half, -half]  # mean zero, so LSH's centring leaves the vectors as they are
    bits = 20000
    model = shallow.get("lsh", bits=bits, seed=1).fit(x)
    np.testing.assert_allclose(model.arrays["mean"], 0.0, atol=1e-15)
    codes = model.encode(x)
    pairs = rng.choice(len(x), size=(30, 2), replace=True)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    for i, j in pairs:
        cosine = x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j])
        expected = 1.0 - np.arccos(np.clip(cosine, -1, 1)) / np.pi
        observed = np.mean(codes[i] == codes[j])
        tolerance = 5.0 * np.sqrt(max(expected * (1 - expected), 1e-4) / bits)
        assert abs(observed - expected) < tolerance, (i, j, observed, expected)


def test_lsh_is_the_sign_of_centred_gaussian_projections():
    model, x, _ = fitted("lsh")
    w = model.arrays["projection"]
    assert w.shape == (x.shape[1], 8)
    np.testing.assert_array_equal(model.arrays["mean"], x.mean(axis=0))
    by_hand = np.where((x - x.mean(axis=0)) @ w >= 0, 1, -1)
    np.testing.assert_array_equal(model.encode(x), by_hand)
    # Standard normal entries: a draw of 8 x 8 = 64 has mean ~0 and variance ~1.
    assert abs(w.mean()) < 0.5 and 0.5 < w.var() < 1.6


def test_seeds_decide_the_random_draws():
    a, x, _ = fitted("lsh", seed=0)
    b, _, _ = fitted("lsh", seed=0)
    c, _, _ = fitted("lsh", seed=1)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    assert not np.array_equal(a.arrays["projection"], c.arrays["projection"])


# ---------------------------------------------------------------------------------------------
# ITQ


def test_itq_quantization_loss_never_increases_and_rotation_is_orthogonal():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))  # correlated features
    model = shallow.get("itq", bits=6, seed=2).fit(x)
    loss = np.array(model.info["quantization_loss"])
    assert len(loss) == 51  # the start and 50 iterations
    assert np.all(np.diff(loss) <= 1e-9 * loss[0]), np.diff(loss).max()
    assert loss[-1] < loss[0]  # the random start is not already optimal
    rotation = model.arrays["rotation"]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(6), atol=1e-12)


def test_itq_pca_and_encoding_by_hand():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0]) + 7.0
    model = shallow.get("itq", bits=3, seed=0, iterations=10).fit(x)
    pca, mean, rotation = (model.arrays[k] for k in ("pca", "mean", "rotation"))
    # The leading principal directions: the top eigenvectors of the sample covariance.
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    top = vectors[:, ::-1][:, :3]
    np.testing.assert_allclose(np.abs(top.T @ pca), np.eye(3), atol=1e-10)
    v = (x - mean) @ pca
    np.testing.assert_allclose(v.var(axis=0, ddof=1), values[::-1][:3], rtol=1e-10)
    np.testing.assert_array_equal(model.encode(x), np.where(v @ rotation >= 0, 1, -1))
    # The last rotation update is the Procrustes solution for the codes before it:
    # it maximises tr(Bᵀ V R) over rotations, so no random rotation does better.
    b = np.where(v @ rotation >= 0, 1.0, -1.0)
    best = np.trace(b.T @ v @ itq.itq_rotation(v, rotation, 1)[0])
    for seed in range(20):
        assert np.trace(b.T @ v @ itq.random_rotation(3, np.random.default_rng(seed))) <= best


# ---------------------------------------------------------------------------------------------
# SH


def brute_force_modes(widths, bits, max_mode=12):
    """Every mode vector (m_1..m_p) in {0..max_mode}^p; keeps single-dimension ones (exactly
    one m_j > 0), ranks them by the uniform-box eigenvalue 1 − exp(−ε²/2 · Σ (m_j π / R_j)²)
    (ε = 1), ties by enumeration order (lower direction first), and returns the first `bits`."""
    found = []
    for vector in itertools.product(range(max_mode + 1), repeat=len(widths)):
        vector = np.array(vector)
        if np.count_nonzero(vector) != 1:
            continue
        omega_squared = np.sum((vector * np.pi / widths) ** 2)
        dim = int(np.flatnonzero(vector)[0])
        found.append((1.0 - np.exp(-0.5 * omega_squared), dim, int(vector[dim])))
    found.sort(key=lambda item: (item[0], item[1]))
    return np.array([f[1] for f in found[:bits]]), np.array([f[2] for f in found[:bits]])


@pytest.mark.parametrize(
    "widths, bits",
    [
        ([3.0, 2.0, 1.1], 8),  # ω = π for (0, 3) and (1, 2): a tie, lower direction first
        ([1.0, 1.0, 1.0], 7),  # a cube: all directions tie mode by mode
        ([5.0, 0.5, 0.2], 6),  # one dominant direction takes every bit
        ([2.7, 2.2, 1.3, 0.9], 10),
    ],
)
def test_sh_modes_are_the_lowest_eigenvalues_of_the_box(widths, bits):
    widths = np.array(widths)
    dims, modes = sh.lowest_modes(widths, bits)
    expected_dims, expected_modes = brute_force_modes(widths, bits)
    np.testing.assert_array_equal(dims, expected_dims)
    np.testing.assert_array_equal(modes, expected_modes)


def test_sh_on_a_uniform_box_fits_its_sides_and_encodes_sinusoids():
    rng = np.random.default_rng(0)
    sides = np.array([8.0, 3.0, 1.5])
    x = rng.uniform(0, 1, size=(4000, 3)) * sides + np.array([1.0, -2.0, 3.0])
    model = shallow.get("sh", bits=5).fit(x)
    z = x @ model.arrays["pca"]
    np.testing.assert_allclose(np.abs(model.arrays["pca"]), np.eye(3), atol=0.05)  # the axes
    np.testing.assert_allclose(model.arrays["widths"], np.ptp(z, axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.arrays["widths"], sides, rtol=0.06)
    dims, modes = sh.lowest_modes(model.arrays["widths"], 5)
    np.testing.assert_array_equal(model.arrays["dims"], dims)
    np.testing.assert_array_equal(modes, [1, 2, 1, 3, 4])  # ω/π ≈ 1/8, 2/8, 1/3, 3/8, 4/8
    np.testing.assert_array_equal(dims, [0, 0, 1, 0, 0])
    # Bit k = [sin(π/2 + m_k π / R_j (z_j − min z_j)) ≥ 0] on the PCA coordinates z.
    low = z.min(axis=0)
    expected = np.stack(
        [
            np.sin(np.pi / 2 + m * np.pi / model.arrays["widths"][j] * (z[:, j] - low[j]))
            for j, m in zip(dims, modes)
        ],
        axis=1,
    )
    np.testing.assert_array_equal(model.encode(x), np.where(expected >= 0, 1, -1))
    # The lowest mode splits the widest side in half: balanced on uniform data.
    assert abs(model.encode(x)[:, 0].mean()) < 0.05


# ---------------------------------------------------------------------------------------------
# KSH and SDH


@pytest.mark.parametrize("name", ["ksh", "sdh"])
def test_supervised_methods_recover_separable_classes_exactly(name):
    x, y = clusters(num_classes=4, per_class=80)
    train, query = slice(0, 240), slice(240, None)
    model = shallow.get(name, bits=8, seed=0, **SMALL[name]).fit(x[train], y[train])
    codes = model.encode(x)
    # Pessimistic ties: every relevant item strictly ahead of every irrelevant one.
    report = evaluation.evaluate_codes(
        codes[query], y[query], codes[train], y[train], metrics=["map"], ties="pessimistic"
    )
    assert report["map"] == 1.0
    # On the training samples: one code per class, a different one for each class. (A held-out
    # sample may differ from its class's code in a low-margin bit; the MAP above says it is
    # still nearer its own class than any other.)
    train_codes, train_labels = codes[train], y[train]
    for c in range(4):
        assert len(np.unique(train_codes[train_labels == c], axis=0)) == 1
    assert len(np.unique(train_codes, axis=0)) == 4


def test_ksh_kernel_features_and_encoding_by_hand():
    model, x, _ = fitted("ksh")
    a = model.arrays
    d2 = ((x[:, None, :] - a["anchors"][None]) ** 2).sum(-1)
    assert a["gamma"] == pytest.approx(1.0 / (2.0 * d2.mean()), rel=1e-12)
    features = np.exp(-a["gamma"] * d2)
    np.testing.assert_allclose(a["mean"], features.mean(axis=0), atol=1e-12)
    expected = np.where((features - a["mean"]) @ a["projection"] >= 0, 1, -1)
    np.testing.assert_array_equal(model.encode(x), expected)
    # The anchors are training samples.
    assert all(np.any(np.all(x == anchor, axis=1)) for anchor in a["anchors"])


def test_ksh_refinement_does_not_lower_the_bit_objective():
    from tfhash.shallow import ksh

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(60, 10))
    y = rng.integers(0, 3, 60)
    residual = 4.0 * np.where(y[:, None] == y[None], 1.0, -1.0)
    start = rng.normal(size=10)
    refined, used = ksh.refine_projection(start, kernel, residual, max_iter=200, tol=1e-6)
    f_start, _ = ksh._surrogate(start, kernel, residual)
    f_refined, _ = ksh._surrogate(refined, kernel, residual)
    assert f_refined <= f_start and 1 <= used <= 200
    # The gradient is that of the surrogate (central differences).
    _, grad = ksh._surrogate(start, kernel, residual)
    step = 1e-6
    numeric = [
        (
            ksh._surrogate(start + step * e, kernel, residual)[0]
            - ksh._surrogate(start - step * e, kernel, residual)[0]
        )
        / (2 * step)
        for e in np.eye(10)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_sdh_b_step_is_the_exact_minimiser_of_each_bit():
    """Each DCC column update minimises ‖Y − BW‖² − 2ν tr(Bᵀ F) over that column (brute force)."""
    from tfhash.shallow import sdh

    rng = np.random.default_rng(0)
    n, bits, classes, nu = 6, 3, 2, 0.3
    y = np.eye(classes)[rng.integers(0, classes, n)]
    w = rng.normal(size=(bits, classes))
    f = rng.normal(size=(n, bits))
    b = np.where(rng.random((n, bits)) < 0.5, -1.0, 1.0)

    def objective(codes):
        return np.sum((y - codes @ w) ** 2) - 2 * nu * np.sum(codes * f)

    new, _ = sdh.discrete_cyclic_descent(b, w, y @ w.T + nu * f, sweeps=1)
    # Replay the sweep: after each column the objective is the best over all 2^n columns.
    current = b.copy()
    for k in range(bits):
        best = min(
            objective(np.c_[current[:, :k], np.array(col)[:, None], current[:, k + 1 :]])
            for col in itertools.product((-1.0, 1.0), repeat=n)
        )
        current[:, k] = new[:, k]
        assert objective(current) == pytest.approx(best, abs=1e-9)


def test_sdh_objective_decreases_and_codes_follow_the_labels():
    model, x, y = fitted("sdh")
    objective = model.info["objective"]
    assert objective[-1] <= objective[0]
    assert model.info["train_bit_agreement"] > 0.95
    assert model.arrays["projection"].shape == (40 + 1, 8)  # anchors + bias


# ---------------------------------------------------------------------------------------------
# The shared API: save/load, codes, parameters.


@pytest.mark.parametrize("name", list(shallow.METHODS))
def test_save_and_load_round_trip_exactly(name, tmp_path):
    model, x, _ = fitted(name, bits=12)
    model.save(str(tmp_path / name))
    meta = json.loads((tmp_path / name / "model.json").read_text())
    assert meta["method"] == name and meta["bits"] == 12 and meta["input_dim"] == x.shape[1]
    loaded = shallow.load(str(tmp_path / name))
    assert type(loaded) is type(model) and loaded.params == model.params
    assert loaded.info == model.info and loaded.seed == model.seed
    assert sorted(loaded.arrays) == sorted(model.arrays)
    for key, array in model.arrays.items():
        assert loaded.arrays[key].dtype == array.dtype
        np.testing.assert_array_equal(loaded.arrays[key], array)
    new = np.random.default_rng(9).normal(size=(30, x.shape[1])) * 5
    np.testing.assert_array_equal(loaded.encode(new), model.encode(new))
    np.testing.assert_array_equal(loaded.relaxed(new), model.relaxed(new))


@pytest.mark.parametrize("name", list(shallow.METHODS))
def test_codes_are_int8_plus_minus_one_and_signs_of_the_relaxed_codes(name):
    model, x, _ = fitted(name, bits=12)
    codes, relaxed = model.encode(x), model.relaxed(x)
    assert codes.dtype == np.int8 and codes.shape == (len(x), 12)
    assert relaxed.dtype == np.float32 and relaxed.shape == (len(x), 12)
    assert set(np.unique(codes)) <= {-1, 1}
    np.testing.assert_array_equal(codes, np.where(relaxed >= 0, 1, -1))
    np.testing.assert_array_equal(
        model.encode(x.astype(np.float32).tolist()), model.encode(x.astype(np.float32))
    )


def test_parameters_from_flag_strings_take_their_defaults_types():
    model = shallow.get("ksh", bits=4, **shallow.parse_params("anchors=50, tol=0.001"))
    assert model.params["anchors"] == 50 and isinstance(model.params["anchors"], int)
    assert model.params["tol"] == 0.001
    assert shallow.get("sdh", bits=4, sigma="2.5").params["sigma"] == 2.5
    assert shallow.get("sdh", bits=4).params["sigma"] is None


def one_line_error(call):
    with pytest.raises(UsageError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_bad_input_is_a_one_line_usage_error():
    x, y = clusters()
    with_nan, with_inf = x.copy(), x.copy()
    with_nan[3, 2], with_inf[5, 0] = np.nan, np.inf
    cases = [
        (lambda: shallow.get("itq", 8).fit(with_nan), "NaN or Inf"),
        (lambda: shallow.get("lsh", 8).fit(with_inf), "row 5"),
        (lambda: shallow.get("itq", 8).fit(x[:5]), "at least 8 training samples"),
        (lambda: shallow.get("sh", 8).fit(x[:5]), "at least 8 training samples"),
        (lambda: shallow.get("ksh", 8, anchors=30).fit(x[:20], y[:20]), "30 anchors"),
        (lambda: shallow.get("sdh", 8).fit(x, y), "1000 anchors"),
        (lambda: shallow.get("ksh", 8, anchors=30).fit(x), "needs labels"),
        (lambda: shallow.get("sdh", 8, anchors=30).fit(x), "needs labels"),
        (lambda: shallow.get("ksh", 8, anchors=30).fit(x, y[:-1]), "labels"),
        (lambda: shallow.get("itq", 17).fit(x), "use `bits` <= 16"),
        (lambda: shallow.get("pca", 8), "unknown shallow method"),
        (lambda: shallow.get("itq", 0), "positive integer"),
        (lambda: shallow.get("itq", 8, anchors=3), "no parameter anchors"),
        (lambda: shallow.get("ksh", 8, anchors="many"), "must be a int"),
        (lambda: shallow.get("ksh", 8, anchors=0), "at least 1"),
        (lambda: shallow.get("sdh", 8, sigma=-1.0), "sigma must be > 0"),
        (lambda: shallow.get("lsh", 8).encode(x), "not fitted"),
        (lambda: shallow.get("lsh", 8).fit(x).encode(x[:, :5]), "5 dimensions"),
        (lambda: shallow.get("lsh", 8).fit(x[0]), "[n, d]"),
        (lambda: shallow.get("lsh", 8).fit([["a", "b"]]), "numeric"),
        (lambda: shallow.parse_params("anchors"), "name=value"),
    ]
    for call, fragment in cases:
        message = one_line_error(call)
        assert fragment in message, (fragment, message)


def test_unsupervised_methods_ignore_labels_and_accept_multi_hot_for_supervised():
    x, y = clusters()
    a = shallow.get("itq", 4).fit(x).encode(x)
    b = shallow.get("itq", 4).fit(x, y).encode(x)
    np.testing.assert_array_equal(a, b)
    multi_hot = np.eye(4, dtype=np.uint8)[y]
    one = shallow.get("sdh", 4, anchors=40).fit(x, y).encode(x)
    two = shallow.get("sdh", 4, anchors=40).fit(x, multi_hot).encode(x)
    np.testing.assert_array_equal(one, two)


def test_load_refuses_a_directory_without_a_model(tmp_path):
    assert "no model.json" in one_line_error(lambda: shallow.load(str(tmp_path)))


def test_squared_distances_and_label_matrix_by_hand():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(base.squared_distances(x, x), [[0, 25], [25, 0]])
    np.testing.assert_array_equal(base.label_matrix([2, 5, 2], 3), [[1, 0], [0, 1], [1, 0]])
