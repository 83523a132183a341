r"""LSH: random hyperplanes through the data mean (sign random projections).

Charikar's random-hyperplane hashing, cited as LSH (Gionis, Indyk, Motwani,
VLDB 1999) by the hashing literature:

.. math::

    b(x) = \operatorname{sign}\big(W^\top (x - \mu)\big), \qquad W_{jk} \sim \mathcal N(0, 1)
    \text{ i.i.d.}, \quad \mu = \tfrac1n \textstyle\sum_i x_i .

For one Gaussian hyperplane ``w`` and two centred vectors at angle θ,
``P[sign(w·x) = sign(w·y)] = 1 − θ/π``, so the expected Hamming distance is
``K θ / π``: codes preserve angles around the mean. Nothing is learned but
``μ``; there are no parameters.

Example:

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(50, 6))
>>> LSH(bits=8, seed=1).fit(x).encode(x[:1])
array([[-1, -1, -1, -1,  1,  1,  1,  1]], dtype=int8)
"""

from tfhash.shallow.base import ShallowHash


def fit_lsh(x, bits, rng):
    """``{"mean": μ [d], "projection": W [d, K]}`` with ``W`` standard normal."""
    return {"mean": x.mean(axis=0), "projection": rng.standard_normal((x.shape[1], bits))}


class LSH(ShallowHash):
    """Random hyperplanes through the mean (:func:`fit_lsh`); unsupervised, no parameters."""

    name = "lsh"

    def _fit(self, x, y, rng):
        return fit_lsh(x, self.bits, rng), {}

    def _steps(self, a):
        return [("subtract", {"mean": a["mean"]}), ("project", {"matrix": a["projection"]})]
