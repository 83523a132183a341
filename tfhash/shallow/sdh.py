r"""SDH: supervised discrete hashing (Shen, Shen, Liu & Shen, CVPR 2015).

Codes ``B ∈ {−1, 1}^{n×K}`` should predict the labels linearly and be
predicted by a linear map ``P`` of RBF features ``φ(x)``:

.. math::

    \min_{B, W, P}\; \lVert Y - B W \rVert_F^2 + \lambda \lVert W \rVert_F^2
                     + \nu \lVert B - \phi(X) P \rVert_F^2 ,

with ``Y`` the ``[n, C]`` one-hot (or multi-hot) labels and
``φ(x) = [exp(−‖x − a_j‖² / (2σ²))]_{j=1..m}`` followed by a constant 1 (a bias).
From random ``B``, each outer iteration makes three exact block updates:

* **G-step** ``W = (BᵀB + λI)⁻¹ BᵀY``;
* **F-step** ``P = (φᵀφ + δI)⁻¹ φᵀB``;
* **B-step** discrete cyclic coordinate descent: with ``Q = Y Wᵀ + ν φ P``,
  for each bit ``k`` in turn, holding the others (``B'``, ``W'``) fixed,
  ``b_k = sign(q_k − B' W' w_kᵀ)`` — the exact minimiser over that column,
  because ``b_kᵀ b_k = n`` is constant; at most ``inner`` sweeps, fewer once
  no bit changes. A zero keeps the bit's previous value.

A last F-step fits ``P`` to the final codes; encode: ``b(x) = sign(φ(x) P)``.

Defaults: ``anchors = 1000`` drawn from the training samples, ``λ = 1``,
``ν = 1e-5``, 5 outer iterations (the authors' demo and both public ports),
``δ = 0.01`` (a port's ridge), up to 10 inner sweeps. The authors fix
``σ = 0.4`` for unit-normalised GIST; features here have any scale, so the
default ``sigma`` is the mean distance from the samples to the anchors (pass
``sigma=…`` to fix it).

Example:

>>> rng = np.random.default_rng(0)
>>> x = np.r_[rng.normal(-3, 1, (40, 5)), rng.normal(3, 1, (40, 5))]
>>> y = np.r_[np.zeros(40, int), np.ones(40, int)]
>>> codes = SDH(bits=4, anchors=20).fit(x, y).encode(x)
>>> len(np.unique(codes[:40], axis=0)), len(np.unique(codes[40:], axis=0))
(1, 1)
"""

import numpy as np

from tfhash.errors import UsageError
from tfhash.shallow.base import AnchoredHash, random_anchors, squared_distances


def rbf_features(x, anchors, gamma):
    """``[n, m + 1]``: ``exp(−γ ‖x − a_j‖²)`` for each anchor, then a constant 1."""
    return np.concatenate(
        [np.exp(-gamma * squared_distances(x, anchors)), np.ones((len(x), 1))], axis=1
    )


def _ridge(a, b, weight):
    """``(aᵀa + weight·I)⁻¹ aᵀ b``."""
    return np.linalg.solve(a.T @ a + weight * np.eye(a.shape[1]), a.T @ b)


def _sign_keep(values, previous):
    return np.where(values > 0, 1.0, np.where(values < 0, -1.0, previous))


def discrete_cyclic_descent(b, w, q, sweeps):
    """SDH's B-step: minimises ``‖Y − B W‖² − 2ν tr(Bᵀ φP)`` over ``B``, one bit column at a time.

    ``q = Y Wᵀ + ν φ P``; returns the new codes and the number of sweeps made.
    """
    b = b.copy()
    done = 0
    for done in range(1, sweeps + 1):
        changed = False
        for k in range(b.shape[1]):
            others = np.arange(b.shape[1]) != k
            column = _sign_keep(q[:, k] - b[:, others] @ (w[others] @ w[k]), b[:, k])
            changed |= bool(np.any(column != b[:, k]))
            b[:, k] = column
        if not changed:
            break
    return b, done


def sdh_objective(b, w, p, y, phi, lam, nu):
    """The SDH objective of the current ``(B, W, P)``."""
    return float(np.sum((y - b @ w) ** 2) + lam * np.sum(w * w) + nu * np.sum((b - phi @ p) ** 2))


def fit_sdh(
    x, labels, bits, rng, anchors=1000, sigma=None, lam=1.0, nu=1e-5, outer=5, inner=10, ridge=1e-2
):
    """``({"anchors", "gamma", "projection"}, info)``: SDH on ``x [n, d]``, labels ``[n, C]``."""
    anchor_points = random_anchors(x, anchors, rng)
    if sigma is None:
        sigma = float(np.sqrt(squared_distances(x, anchor_points)).mean())
    gamma = 1.0 / (2.0 * sigma * sigma)
    phi = rbf_features(x, anchor_points, gamma)
    b = np.where(rng.random((len(x), bits)) < 0.5, -1.0, 1.0)
    objective, sweeps = [], []
    for _ in range(outer):
        w = _ridge(b, labels, lam)  # G-step
        p = _ridge(phi, b, ridge)  # F-step
        b, used = discrete_cyclic_descent(b, w, labels @ w.T + nu * (phi @ p), inner)  # B-step
        sweeps.append(used)
        objective.append(sdh_objective(b, w, p, labels, phi, lam, nu))
    p = _ridge(phi, b, ridge)
    info = {
        "sigma": sigma,
        "objective": objective,
        "inner_sweeps": sweeps,
        "train_bit_agreement": float(np.mean(np.where(phi @ p >= 0, 1.0, -1.0) == b)),
    }
    return {"anchors": anchor_points, "gamma": np.float64(gamma), "projection": p}, info


class SDH(AnchoredHash):
    """Supervised discrete hashing (:func:`fit_sdh`); needs labels."""

    name = "sdh"
    supervised = True
    defaults = {
        "anchors": 1000,
        "sigma": None,
        "lam": 1.0,
        "nu": 1e-5,
        "outer": 5,
        "inner": 10,
        "ridge": 1e-2,
    }

    def _check_params(self):
        p = self.params
        for key in ("anchors", "outer", "inner"):
            if p[key] < 1:
                raise UsageError(f"sdh parameter {key} must be at least 1, got {p[key]}")
        for key in ("lam", "nu", "ridge"):
            if not p[key] >= 0:
                raise UsageError(f"sdh parameter {key} must be >= 0, got {p[key]}")
        if p["sigma"] is not None and not (isinstance(p["sigma"], (int, float)) and p["sigma"] > 0):
            raise UsageError(
                f"sdh parameter sigma must be > 0 (or unset for the mean "
                f"distance), got {p['sigma']!r}"
            )

    def _fit(self, x, y, rng):
        p = self.params
        return fit_sdh(
            x,
            y,
            self.bits,
            rng,
            p["anchors"],
            p["sigma"],
            p["lam"],
            p["nu"],
            p["outer"],
            p["inner"],
            p["ridge"],
        )

    def _steps(self, a):
        return [
            ("rbf", {"anchors": a["anchors"], "gamma": a["gamma"]}),
            ("append_one", {}),
            ("project", {"matrix": a["projection"]}),
        ]
