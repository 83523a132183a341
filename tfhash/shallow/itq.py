r"""ITQ: iterative quantization (Gong & Lazebnik, CVPR 2011; TPAMI 2013).

Centre the features, project them on their ``K`` leading principal directions
``W`` (``V = (X − μ) W``, ``[n, K]``), then look for the rotation ``R`` of the
PCA space whose rotated data lie closest to the vertices of the hypercube:

.. math::

    \min_{B \in \{-1, 1\}^{n \times K},\; R^\top R = I}\; Q(B, R) = \lVert B - V R \rVert_F^2 .

From a random orthogonal ``R`` (the orthogonal factor of a Gaussian ``K × K``
matrix), alternate

* ``B = sign(V R)`` (0 → +1), the best codes for a fixed rotation;
* ``R = Ŝ Uᵀ`` where ``U Σ Ŝᵀ = Bᵀ V`` is an SVD: the orthogonal Procrustes
  solution, the best rotation for fixed codes.

Each half-step minimises ``Q`` over one block, so ``Q`` never increases; the
fit records ``Q(sign(V R), R)`` before the first and after every iteration in
``info["quantization_loss"]``. Encode: ``b(x) = sign((x − μ) W R)``.

Defaults (the authors' ``ITQ.m``): 50 iterations (their loop ``0:n_iter``
makes 51 passes; here ``iterations`` counts rotation updates). PCA to ``K``
needs ``K ≤ d`` and at least ``K`` samples.

Example:

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(200, 16))
>>> model = ITQ(bits=8).fit(x)
>>> loss = model.info["quantization_loss"]
>>> len(loss), loss[-1] <= loss[0]
(51, True)
"""

import numpy as np

from tfhash.errors import UsageError
from tfhash.shallow.base import ShallowHash, pca_directions


def random_rotation(k, rng):
    """A random ``k × k`` orthogonal matrix: the ``U`` factor of the SVD of a Gaussian matrix."""
    u, _, _ = np.linalg.svd(rng.standard_normal((k, k)))
    return u


def quantization_loss(v, rotation):
    """``Q(sign(V R), R) = ‖sign(V R) − V R‖²_F`` with sign(0) = +1."""
    projected = v @ rotation
    return float(np.sum((np.where(projected >= 0, 1.0, -1.0) - projected) ** 2))


def itq_rotation(v, rotation, iterations):
    """Runs ``iterations`` ITQ updates from ``rotation``; returns ``(R, losses)``."""
    losses = [quantization_loss(v, rotation)]
    for _ in range(iterations):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(b.T @ v)
        rotation = wt.T @ u.T
        losses.append(quantization_loss(v, rotation))
    return rotation, losses


def fit_itq(x, bits, rng, iterations=50):
    """``({"mean", "pca", "rotation"}, losses)``: ITQ on ``x [n, d]`` with ``bits ≤ d``."""
    mean = x.mean(axis=0)
    pca = pca_directions(x, bits)
    rotation, losses = itq_rotation((x - mean) @ pca, random_rotation(bits, rng), iterations)
    return {"mean": mean, "pca": pca, "rotation": rotation}, losses


class ITQ(ShallowHash):
    """Iterative quantization (:func:`fit_itq`); unsupervised."""

    name = "itq"
    defaults = {"iterations": 50}

    def _check_params(self):
        if self.params["iterations"] < 0:
            raise UsageError(
                f"itq parameter iterations must be >= 0, got {self.params['iterations']}"
            )

    def min_samples(self):
        return max(2, self.bits)

    def _check_fit_shape(self, n, d):
        if self.bits > d:
            raise UsageError(
                f"itq projects on {self.bits} principal directions but the "
                f"features have only {d} dimensions; use `bits` <= {d}"
            )

    def _fit(self, x, y, rng):
        arrays, losses = fit_itq(x, self.bits, rng, self.params["iterations"])
        return arrays, {"quantization_loss": losses}

    def _steps(self, a):
        return [
            ("subtract", {"mean": a["mean"]}),
            ("project", {"matrix": a["pca"]}),
            ("project", {"matrix": a["rotation"]}),
        ]
