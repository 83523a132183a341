"""Precision and recall: @k curves of the ranking, and hash lookup within a Hamming radius.

For one query with ranked items ``i = 1, 2, …``, relevance ``rel_i`` (shares a label) and R
relevant items in the database:

* ``P@k = (1/k) Σ_{i≤k} rel_i``, ``R@k = (1/R) Σ_{i≤k} rel_i`` (:class:`PrecisionRecallAtK`,
  ``p@k``);
* hash lookup within radius r: the items at Hamming distance ≤ r are retrieved,
  ``P = |relevant ∩ ball| / |ball|``, ``R = |relevant ∩ ball| / R``
  (:class:`PrecisionRecallWithinRadius`, ``p@rR``; over every radius,
  :class:`PrecisionRecallCurve`, ``pr``).

Example:

>>> PrecisionRecallWithinRadius(2).name, default_ks(1000)
('p@r2', [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])
"""

import numpy as np

from tfhash.errors import UsageError
from tfhash.evaluation import ties
from tfhash.evaluation.metric_base import (
    RetrievalMetric,
    check_k,
    json_number,
    undefined_ratio,
)


def default_ks(num_items):
    """The precision@k grid: 1, 2, 5, 10, 20, 50, … up to the database size."""
    ks = [m * 10**e for e in range(len(str(num_items))) for m in (1, 2, 5)]
    return [k for k in ks if k <= num_items]


class PrecisionRecallAtK(RetrievalMetric):
    """Precision@k and recall@k curves: ``P@k = hits(k)/k``, ``R@k = hits(k)/R``.

    Args:
        ks: the cut-offs, or ``None`` for :func:`default_ks` of the database.
    """

    name = "p@k"

    def __init__(self, ks=None):
        self.ks = None if ks is None else sorted({check_k(k, self.name) for k in ks})

    def check(self, num_items, bits):
        if self.ks is not None and self.ks[-1] > num_items:
            raise UsageError(
                f"p@k: k={self.ks[-1]} is larger than the database ({num_items} items)"
            )

    def _ks(self, num_items):
        return self.ks or default_ks(num_items)

    def ranking_depth(self, num_items):
        return self._ks(num_items)[-1]

    def per_query(self, batch):
        ks = self._ks(batch.num_items)
        if batch.groups is not None:
            hits = np.stack([ties.expected_hits(batch.groups, k) for k in ks], 1)
        else:
            hits = np.stack([np.count_nonzero(batch.ranked_relevant[:, :k], axis=1) for k in ks], 1)
        recall = undefined_ratio(hits, batch.num_relevant[:, None])
        return np.concatenate(
            [hits / np.array(ks), batch.conventions.for_empty_queries(recall)], axis=1
        )

    def summarize(self, means, num_items):
        ks = self._ks(num_items)
        return {
            "k": ks,
            "precision": [json_number(v) for v in means[: len(ks)]],
            "recall": [json_number(v) for v in means[len(ks) :]],
        }


def _within_radius(batch):
    """Per query and radius r = 0..K: retrieved items (distance ≤ r) and relevant ones."""
    return np.cumsum(batch.bins.size, axis=1), np.cumsum(batch.bins.hits, axis=1)


class _HammingMetric(RetrievalMetric):
    needs_hamming = True

    def check(self, num_items, bits):
        if bits is None:
            raise UsageError(
                f"{self.name} is a Hamming-radius metric and needs binary codes "
                "(distance='hamming')"
            )


class PrecisionRecallWithinRadius(_HammingMetric):
    """Hash lookup: precision and recall of the items within Hamming radius r.

    Ties cannot matter: the ball is a set. An empty ball has no precision; the
    ``empty_ball`` convention counts it as 0 or leaves it out, and the report
    gives the fraction of queries with an empty ball.

    Args:
        radius: r, 0..K (2 is the usual hash lookup).
    """

    def __init__(self, radius=2):
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
            raise UsageError(f"p@r: the radius must be a non-negative integer, got {radius!r}")
        self.radius = int(radius)
        self.name = f"p@r{self.radius}"

    def check(self, num_items, bits):
        super().check(num_items, bits)
        if self.radius > bits:
            raise UsageError(
                f"{self.name}: radius {self.radius} exceeds the code length ({bits} bits)"
            )

    def per_query(self, batch):
        retrieved, hits = (a[:, self.radius] for a in _within_radius(batch))
        conventions = batch.conventions
        return np.stack(
            [
                conventions.for_empty_ball(undefined_ratio(hits, retrieved)),
                conventions.for_empty_queries(undefined_ratio(hits, batch.num_relevant)),
                retrieved == 0,
            ],
            axis=1,
        )

    def summarize(self, means, num_items):
        precision, recall, empty = (json_number(v) for v in means)
        return {
            "radius": self.radius,
            "precision": precision,
            "recall": recall,
            "empty_ball_fraction": empty,
        }


class PrecisionRecallCurve(_HammingMetric):
    """The precision–recall curve of hash lookup over the radii 0..K."""

    name = "pr"

    def per_query(self, batch):
        retrieved, hits = _within_radius(batch)
        conventions = batch.conventions
        return np.concatenate(
            [
                conventions.for_empty_ball(undefined_ratio(hits, retrieved)),
                conventions.for_empty_queries(undefined_ratio(hits, batch.num_relevant[:, None])),
            ],
            axis=1,
        )

    def summarize(self, means, num_items):
        radii = len(means) // 2
        return {
            "radius": list(range(radii)),
            "precision": [json_number(v) for v in means[:radii]],
            "recall": [json_number(v) for v in means[radii:]],
        }
