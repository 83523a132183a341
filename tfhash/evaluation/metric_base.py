"""What every retrieval metric shares: the batch of queries it sees and its base class.

A metric (:mod:`tfhash.evaluation.metrics`, :mod:`tfhash.evaluation.precision_recall`) turns
a :class:`QueryBatch` into per-query values with NaN where a value is undefined; the evaluator
averages them over the queries and the metric's :meth:`~RetrievalMetric.summarize` makes the
report entry.
"""

import dataclasses
import math

import numpy as np

from tfhash.errors import UsageError
from tfhash.evaluation import ties
from tfhash.evaluation.conventions import Conventions


@dataclasses.dataclass
class QueryBatch:
    """What a metric sees of a batch of queries.

    Under ``ties="average"``, ``groups`` is set; under the other policies,
    ``ranked_relevant`` (and ``ranked_gains`` when a graded metric is asked
    for) hold each query's explicit ranking, deep enough for every metric.

    Attributes:
        conventions: the :class:`~tfhash.evaluation.conventions.Conventions`.
        num_items: N, the database size.
        num_relevant: ``[queries]`` R, relevant items in the database.
        groups: ``ties.Groups`` in rank order, or ``None``.
        ranked_relevant: ``bool [queries, depth]``, or ``None``.
        ranked_gains: ``float [queries, depth]``, or ``None``.
        ideal_gains: ``float [queries, depth]`` each query's gains sorted
            descending (for IDCG), or ``None``.
        bins: ``ties.Groups`` by Hamming distance 0..K, or ``None``.
        discount_sums: ``D[i] = Σ_{j≤i} 1/log2(j + 1)`` for i = 0..N, or ``None``.
    """

    conventions: Conventions
    num_items: int
    num_relevant: np.ndarray
    groups: ties.Groups | None = None
    ranked_relevant: np.ndarray | None = None
    ranked_gains: np.ndarray | None = None
    ideal_gains: np.ndarray | None = None
    bins: ties.Groups | None = None
    discount_sums: np.ndarray | None = None


def undefined_ratio(numerator, denominator):
    """``numerator / denominator`` with NaN (undefined) where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    out = np.full(numerator.shape, np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def check_k(k, name):
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"{name}: k must be a positive integer, got {k!r}")
    return int(k)


class RetrievalMetric:
    """Base class of the metrics: a name, checks, per-query values and a summary.

    Subclasses implement :meth:`per_query`, returning ``[queries, values]``
    with NaN where a value is undefined for a query (left out of the mean),
    and :meth:`summarize`, turning the means over queries into the report entry.

    Attributes:
        name: the report key, e.g. ``"map@1000"``.
        graded: uses graded gains rather than binary relevance.
        needs_hamming: needs Hamming distance bins (hash lookup).
    """

    name = None
    graded = False
    needs_hamming = False
    #: A graded metric's own gain, ``"shared"`` or ``"jaccard"``; ``None``: the convention's.
    gain = None
    #: Relevance ``Jaccard ≥ jaccard_threshold`` instead of "shares a label"; ``None``: the latter.
    jaccard_threshold = None

    def check(self, num_items, bits):
        """Raises ``UsageError`` if the metric cannot be computed (bits: None for embeddings)."""

    def ranking_depth(self, num_items):
        """How many top ranks an explicit ranking must hold for this metric (0: none)."""
        return 0

    def per_query(self, batch):
        raise NotImplementedError

    def summarize(self, means, num_items):
        """The report entry from the means over queries (NaN: no query defined it)."""
        return json_number(means[0])

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


def json_number(value):
    return None if math.isnan(value) else float(value)
