r"""KSH: supervised hashing with kernels (Liu, Wang, Ji, Jiang & Chang, CVPR 2012).

**Kernel features.** ``m`` anchors ``a_j`` are drawn from the training
samples; ``k(x) = exp(−‖x − a_j‖² / (2σ))`` with ``σ`` the mean squared
distance of the training samples to the anchors, centred by its training mean:
``k̄(x) = k(x) − μ``. Bit ``k`` is ``b_k(x) = sign(a_kᵀ k̄(x))``.

**Objective.** On ``l`` labelled samples (kernel rows ``K̄_l``, ``[l, m]``) with
pairwise labels ``S_ij = +1`` if ``i`` and ``j`` share a label and ``−1``
otherwise, code inner products should match ``K S``:

.. math::

    \min_{B_l \in \{-1,1\}^{l \times K}} \big\lVert B_l B_l^\top - K S \big\rVert_F^2,
    \qquad B_l = \operatorname{sign}(\bar K_l A).

**Greedy, bit by bit.** With the residual ``R_0 = K S``, bit ``k`` maximises
``yᵀ R_{k−1} y`` for ``y = sign(K̄_l a)``, then ``R_k = R_{k−1} − y yᵀ``:

1. *spectral start*: ``a⁰`` is the top generalised eigenvector of
   ``(K̄_lᵀ R K̄_l, K̄_lᵀ K̄_l)``, scaled so that ``a⁰ᵀ K̄_lᵀ K̄_l a⁰ = l``;
2. *sigmoid refinement*: maximise the smooth surrogate
   ``φ(K̄_l a)ᵀ R φ(K̄_l a)``, ``φ(t) = 2/(1 + e^{−t}) − 1``, from ``a⁰`` by
   Nesterov's accelerated gradient with backtracking, at most ``max_iter``
   iterations, stopping when the surrogate changes by at most ``tol`` relatively;
3. keep whichever of ``a⁰`` and the refined ``a`` has the larger ``yᵀ R y``.

Defaults (the authors' ``KSH_demo.m``): ``anchors = 300``, ``labelled = 2000``
(capped at the number of samples), ``max_iter = 500``, ``tol = 1e-2``. The
generalised eigenproblem gets a ridge of ``1e-8 · mean diag(K̄_lᵀ K̄_l)`` so
that duplicated anchors cannot make it singular.

Example:

>>> rng = np.random.default_rng(0)
>>> x = np.r_[rng.normal(-3, 1, (40, 5)), rng.normal(3, 1, (40, 5))]
>>> y = np.r_[np.zeros(40, int), np.ones(40, int)]
>>> codes = KSH(bits=4, anchors=20).fit(x, y).encode(x)
>>> len(np.unique(codes[:40], axis=0)), len(np.unique(codes[40:], axis=0))
(1, 1)
"""

import numpy as np
import scipy.linalg

from tfhash.errors import UsageError
from tfhash.shallow.base import AnchoredHash, random_anchors, squared_distances


def kernel_width(x, anchors):
    """KSH's ``σ``: the mean squared distance from the samples to the anchors."""
    return float(squared_distances(x, anchors).mean())


def _surrogate(a, kernel, residual):
    """``(f, ∇f)`` of ``f(a) = −φ(K̄ a)ᵀ R φ(K̄ a)`` (minimised), ``φ(t) = tanh(t/2)``."""
    y = np.tanh(0.5 * (kernel @ a))
    ry = residual @ y
    return -float(y @ ry), -(kernel.T @ (ry * (1.0 - y * y)))


def refine_projection(a, kernel, residual, max_iter=500, tol=1e-2):
    """KSH's sigmoid refinement of one bit's projection ``a`` from its spectral start.

    Nesterov's accelerated gradient on ``f(a) = −φ(K̄ a)ᵀ R φ(K̄ a)`` with a
    backtracking estimate of the Lipschitz constant; returns the best ``a`` seen
    and the number of iterations run.
    """
    f_best, _ = _surrogate(a, kernel, residual)
    best = x = previous = a
    f_x, t, t_previous, lipschitz = f_best, 1.0, 1.0, 1.0
    iterations = 0
    for iterations in range(1, max_iter + 1):
        y = x + ((t_previous - 1.0) / t) * (x - previous)
        f_y, grad = _surrogate(y, kernel, residual)
        lipschitz = max(lipschitz / 2.0, 1e-12)
        while True:
            z = y - grad / lipschitz
            f_z, _ = _surrogate(z, kernel, residual)
            step = z - y
            if f_z <= f_y + grad @ step + 0.5 * lipschitz * (step @ step) or lipschitz > 1e30:
                break
            lipschitz *= 2.0
        previous, x = x, z
        t_previous, t = t, 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        if f_z < f_best:
            best, f_best = z, f_z
        converged = abs(f_z - f_x) <= tol * abs(f_x)
        f_x = f_z
        if converged:
            break
    return best, iterations


def _bit_score(a, kernel, residual):
    y = np.where(kernel @ a >= 0, 1.0, -1.0)
    return float(y @ residual @ y), y


def fit_ksh(x, labels, bits, rng, anchors=300, labelled=2000, max_iter=500, tol=1e-2):
    """``({"anchors", "gamma", "mean", "projection"}, info)``: KSH on ``x [n, d]``.

    ``labels`` is the ``[n, C]`` label matrix (:func:`tfhash.shallow.base.label_matrix`).
    """
    n = len(x)
    anchor_points = random_anchors(x, anchors, rng)
    distances = squared_distances(x, anchor_points)
    gamma = 1.0 / (2.0 * float(distances.mean()))
    features = np.exp(-gamma * distances)
    mean = features.mean(axis=0)
    chosen = np.sort(rng.choice(n, min(labelled, n), replace=False))
    kernel = features[chosen] - mean
    y = labels[chosen]
    residual = bits * np.where(y @ y.T > 0, 1.0, -1.0)
    gram = kernel.T @ kernel
    gram += 1e-8 * np.mean(np.diag(gram)) * np.eye(len(gram))
    projection = np.zeros((anchors, bits))
    refined_bits, iterations = 0, []
    for k in range(bits):
        target = kernel.T @ residual @ kernel
        _, vectors = scipy.linalg.eigh(
            (target + target.T) / 2, gram, subset_by_index=[anchors - 1, anchors - 1]
        )
        start = vectors[:, 0] * np.sqrt(len(chosen) / (vectors[:, 0] @ gram @ vectors[:, 0]))
        refined, used = refine_projection(start, kernel, residual, max_iter, tol)
        iterations.append(used)
        score_start, code_start = _bit_score(start, kernel, residual)
        score_refined, code_refined = _bit_score(refined, kernel, residual)
        if score_refined > score_start:
            projection[:, k], code, refined_bits = refined, code_refined, refined_bits + 1
        else:
            projection[:, k], code = start, code_start
        residual -= np.outer(code, code)
    info = {
        "labelled": len(chosen),
        "refined_bits": refined_bits,
        "refinement_iterations": iterations,
    }
    return {
        "anchors": anchor_points,
        "gamma": np.float64(gamma),
        "mean": mean,
        "projection": projection,
    }, info


class KSH(AnchoredHash):
    """Supervised hashing with kernels (:func:`fit_ksh`); needs labels."""

    name = "ksh"
    supervised = True
    defaults = {"anchors": 300, "labelled": 2000, "max_iter": 500, "tol": 1e-2}

    def _check_params(self):
        p = self.params
        for key in ("anchors", "labelled", "max_iter"):
            if p[key] < 1:
                raise UsageError(f"ksh parameter {key} must be at least 1, got {p[key]}")
        if not p["tol"] >= 0:
            raise UsageError(f"ksh parameter tol must be >= 0, got {p['tol']}")

    def _fit(self, x, y, rng):
        p = self.params
        return fit_ksh(x, y, self.bits, rng, p["anchors"], p["labelled"], p["max_iter"], p["tol"])

    def _steps(self, a):
        return [
            ("rbf", {"anchors": a["anchors"], "gamma": a["gamma"]}),
            ("subtract", {"mean": a["mean"]}),
            ("project", {"matrix": a["projection"]}),
        ]
