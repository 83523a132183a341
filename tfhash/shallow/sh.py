r"""SH: spectral hashing (Weiss, Torralba & Fergus, NIPS 2008).

Spectral hashing wants codes whose Hamming distances follow a Gaussian
affinity, balanced and uncorrelated bits: the relaxation is the graph
Laplacian's eigenvectors, and their continuum limit for data spread uniformly
on a box is known in closed form. With ``p = min(K, d)`` principal directions
(the data projected on them, ``z = x W``) and the box ``[o_j, o_j + R_j]`` they
span on the training data, the one-dimensional eigenfunctions are

.. math::

    \Phi_{j,m}(z) = \sin\!\Big(\frac{\pi}{2} + \frac{m\pi}{R_j}(z_j - o_j)\Big)
                  = \cos\big(\omega_{j,m} (z_j - o_j)\big), \qquad
    \omega_{j,m} = \frac{m\pi}{R_j},

with eigenvalues ``λ_{j,m} = 1 − exp(−ε²/2 · ω²_{j,m})``: the smaller the
frequency, the smaller the eigenvalue, the smoother the bit. SH keeps the
``K`` lowest-frequency modes among all single-dimension ones (``m ≥ 1``;
products of modes are not used) and sets bit ``k`` to ``sign Φ_{j_k, m_k}(z)``.

As in the authors' ``trainSH.m``: the PCA projection is not centred (the box
offset ``o`` absorbs the mean); ``o_j = min z_j − eps`` and
``R_j = max z_j − min z_j + 2 eps``; the modes enumerated on direction ``j``
are ``m = 1 … ⌈(K+1) R_j / max R⌉ − 1``, which always contains the ``K``
lowest; ties of ``ω`` keep the lower direction first (MATLAB's stable sort).
The authors' bit is ``Φ > 0``; here ``Φ ≥ 0`` (sign(0) = +1, the package
contract). No parameters.

Example:

>>> lowest_modes(np.array([4.0, 2.0]), 3)   # widths 4 and 2: ω = π/4, 2π/4 (twice)
(array([0, 0, 1]), array([1, 2, 1]))
"""

import numpy as np

from tfhash.shallow.base import ShallowHash, pca_directions


def lowest_modes(widths, bits):
    """The ``bits`` lowest-frequency single-dimension modes of a box of side ``widths [p]``.

    Returns:
        ``(dims, modes)``, int64 ``[bits]`` each: mode ``k`` is ``cos(modes[k] π / widths[dims[k]]
        · (z − o))`` on direction ``dims[k]``, in increasing frequency.
    """
    widths = np.asarray(widths, np.float64)
    max_mode = np.ceil((bits + 1) * widths / widths.max()).astype(np.int64)
    dims = np.concatenate([np.full(mm - 1, j) for j, mm in enumerate(max_mode)])
    modes = np.concatenate([np.arange(1, mm) for mm in max_mode])
    omega_squared = (modes * np.pi / widths[dims]) ** 2
    order = np.argsort(omega_squared, kind="stable")[:bits]  # enumeration: by direction, then m
    return dims[order], modes[order]


def fit_sh(x, bits):
    """``{"pca", "dims", "modes", "offset", "omega"}``: SH on ``x [n, d]``."""
    pca = pca_directions(x, min(bits, x.shape[1]))
    z = x @ pca
    eps = np.finfo(np.float64).eps
    low, high = z.min(axis=0) - eps, z.max(axis=0) + eps
    widths = high - low
    dims, modes = lowest_modes(widths, bits)
    return {
        "pca": pca,
        "dims": dims,
        "modes": modes,
        "offset": low[dims],
        "omega": modes * np.pi / widths[dims],
        "widths": widths,
    }


class SH(ShallowHash):
    """Spectral hashing (:func:`fit_sh`); unsupervised, no parameters."""

    name = "sh"

    def min_samples(self):
        return max(2, self.bits)

    def _fit(self, x, y, rng):
        return fit_sh(x, self.bits), {}

    def _steps(self, a):
        return [
            ("project", {"matrix": a["pca"]}),
            ("cosine", {"dims": a["dims"], "offset": a["offset"], "omega": a["omega"]}),
        ]
