r"""Retrieval metrics as named objects, computed per query from a ranking or its tie groups.

Each metric turns a :class:`QueryBatch` (a few queries' rankings, or their tie
groups under ``ties="average"``) into per-query values; the evaluator averages
them over all queries. The names are what ``evaluate_codes(metrics=...)`` and
the CLI's ``--metrics`` accept (:func:`from_name`).

For one query with ranked items ``i = 1, 2, …``, relevance ``rel_i`` (shares a
label), graded gain ``g_i`` and R relevant items in the database:

* ``P@k = (1/k) Σ_{i≤k} rel_i``, ``R@k = (1/R) Σ_{i≤k} rel_i``;
* ``AP@k = (1/D) Σ_{i≤k} rel_i · P@i``, ``D = min(R, k)`` or the relevant
  items in the top k (the ``ap_denominator`` convention); AP = AP@N;
* hash lookup within radius r: the items at Hamming distance ≤ r are
  retrieved, ``P = |relevant ∩ ball| / |ball|``, ``R = |relevant ∩ ball| / R``;
* ``ACG@k = (1/k) Σ_{i≤k} g_i``;
* ``NDCG@k = DCG@k / IDCG@k``, ``DCG@k = Σ_{i≤k} (2^{g_i} - 1) / log2(i + 1)``
  and IDCG the DCG of the ideal order (DSRH, Zhao et al., CVPR 2015);
* weighted ``wAP@k = (1/D) Σ_{i≤k} [g_i > 0] · ACG@i``, which is AP@k when
  the gains are 0/1;
* ``map:jaccard>=t``: MAP with relevance ``J(q, i) ≥ t``, ``J`` the Jaccard
  coefficient of the label sets (DMSSPH's criterion, ICMR 2017, as tfhash reads it).

A graded metric's name may end in ``:shared`` or ``:jaccard`` to fix its gain
whatever the ``gain`` convention (``ndcg@100:jaccard``), so one report holds both.

Example:

>>> metrics = [from_name("map@1000", top_k=None), NormalizedDCG(k=100)]
>>> [m.name for m in metrics]
['map@1000', 'ndcg@100']
"""

import dataclasses
import math
import re

import numpy as np

from tfhash.errors import UsageError
from tfhash.evaluation import ties
from tfhash.evaluation.conventions import GAINS, Conventions


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


def _undefined_ratio(numerator, denominator):
    """``numerator / denominator`` with NaN (undefined) where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    out = np.full(numerator.shape, np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def _check_k(k, name):
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
        return _json_number(means[0])

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


def _json_number(value):
    return None if math.isnan(value) else float(value)


class _CutoffMetric(RetrievalMetric):
    """A metric of the top k of the ranking; ``k=None`` is the whole ranking."""

    prefix = None

    def __init__(self, k=None, gain=None):
        self.k = _check_k(k, self.prefix)
        self.name = self.prefix if self.k is None else f"{self.prefix}@{self.k}"
        if gain is not None:
            if not self.graded:
                raise UsageError(
                    f"{self.name} uses binary relevance and takes no gain; give "
                    "the gain to wap, ndcg or acg"
                )
            if gain not in GAINS:
                raise UsageError(
                    f"{self.name}: gain must be one of {', '.join(GAINS)}, got {gain!r}"
                )
            self.gain = gain
            self.name += f":{gain}"

    def check(self, num_items, bits):
        if self.k is not None and self.k > num_items:
            raise UsageError(
                f"{self.name}: k={self.k} is larger than the database ({num_items} items); "
                "use a smaller k"
            )

    def ranking_depth(self, num_items):
        return self.k or num_items


class MeanAveragePrecision(_CutoffMetric):
    """MAP@k: mean over queries of ``AP@k = (1/D) Σ_{i≤k} rel_i · P@i``.

    ``D`` follows the ``ap_denominator`` convention; with ``k=None`` (MAP over
    the whole ranking) it is R either way. Under ``ties="average"`` the value
    is the exact expectation over tie orders (``ties.expected_average_precision``).

    Args:
        k: cut-off, or ``None`` for the whole ranking.
    """

    prefix = "map"

    def per_query(self, batch):
        k = self.k or batch.num_items
        denominator = batch.conventions.ap_denominator
        if batch.groups is not None:
            values = ties.expected_average_precision(batch.groups, k, denominator, self.graded)
        else:
            ranked = batch.ranked_gains if self.graded else batch.ranked_relevant
            values = _ranked_average_precision(ranked, k, batch.num_relevant, denominator)
        return batch.conventions.for_empty_queries(values)[:, None]


class JaccardMeanAveragePrecision(MeanAveragePrecision):
    """MAP@k with relevance "Jaccard coefficient ≥ t": ``map:jaccard>=t``, ``map@k:jaccard>=t``.

    An item is relevant to a query when ``|L_q ∩ L_i| / |L_q ∪ L_i| ≥ t``, so a higher
    ``t`` asks for closer label sets (``t = 1``: the same labels); otherwise as
    :class:`MeanAveragePrecision` (a query with no item at ``J ≥ t`` is an empty query).
    With class ids it is MAP. The multi-label criterion DMSSPH (ICMR 2017) proposes, in
    tfhash's reading of its abstract.

    Args:
        threshold: t in (0, 1].
        k: cut-off, or ``None`` for the whole ranking.
    """

    def __init__(self, threshold=0.5, k=None):
        super().__init__(k)
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            threshold = math.nan
        if not 0.0 < threshold <= 1.0:
            raise UsageError(f"{self.name}:jaccard>=t needs t in (0, 1], got {threshold!r}")
        self.jaccard_threshold = threshold
        self.name += f":jaccard>={threshold:g}"


class WeightedAveragePrecision(MeanAveragePrecision):
    """Weighted MAP@k over graded gains: ``wAP@k = (1/D) Σ_{i≤k} [g_i > 0] · ACG@i``.

    The multi-label criterion of DSRH (Zhao et al., CVPR 2015); equal to MAP@k
    for single labels. ``D`` as for :class:`MeanAveragePrecision`.
    """

    prefix = "wap"
    graded = True


def _ranked_average_precision(ranked, k, num_relevant, denominator):
    """AP@k of explicit rankings (bool: binary relevance; float: graded gains)."""
    top = ranked[:, :k]
    if top.dtype == bool:
        # Only the relevant ranks matter: the t-th relevant item at rank i adds t / i.
        rows, columns = np.divmod(np.flatnonzero(top), top.shape[1])
        hits = np.bincount(rows, minlength=len(top))
        t = np.arange(1, len(rows) + 1) - np.repeat(np.cumsum(hits) - hits, hits)
        numerator = np.bincount(rows, t / (columns + 1.0), minlength=len(top))
    else:
        hit = top > 0
        hits = hit.sum(1)
        acg = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
        numerator = np.where(hit, acg, 0.0).sum(1)
    if denominator == "min_r_k":
        values = ties.ratio(numerator, np.minimum(num_relevant, k))
    else:
        values = ties.ratio(numerator, hits)
    values[num_relevant == 0] = np.nan
    return values


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
        self.ks = None if ks is None else sorted({_check_k(k, self.name) for k in ks})

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
        recall = _undefined_ratio(hits, batch.num_relevant[:, None])
        return np.concatenate(
            [hits / np.array(ks), batch.conventions.for_empty_queries(recall)], axis=1
        )

    def summarize(self, means, num_items):
        ks = self._ks(num_items)
        return {
            "k": ks,
            "precision": [_json_number(v) for v in means[: len(ks)]],
            "recall": [_json_number(v) for v in means[len(ks) :]],
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
                conventions.for_empty_ball(_undefined_ratio(hits, retrieved)),
                conventions.for_empty_queries(_undefined_ratio(hits, batch.num_relevant)),
                retrieved == 0,
            ],
            axis=1,
        )

    def summarize(self, means, num_items):
        precision, recall, empty = (_json_number(v) for v in means)
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
                conventions.for_empty_ball(_undefined_ratio(hits, retrieved)),
                conventions.for_empty_queries(_undefined_ratio(hits, batch.num_relevant[:, None])),
            ],
            axis=1,
        )

    def summarize(self, means, num_items):
        radii = len(means) // 2
        return {
            "radius": list(range(radii)),
            "precision": [_json_number(v) for v in means[:radii]],
            "recall": [_json_number(v) for v in means[radii:]],
        }


class NormalizedDCG(_CutoffMetric):
    """NDCG@k with graded gains: ``DCG@k / IDCG@k``.

    ``DCG@k = Σ_{i≤k} (2^{g_i} - 1) / log2(i + 1)``, and IDCG@k is the DCG@k of
    the gains sorted in decreasing order.

    Undefined (``empty_queries``) for a query with no relevant item.
    """

    prefix = "ndcg"
    graded = True

    def per_query(self, batch):
        k = self.k or batch.num_items
        discounts = np.diff(batch.discount_sums[: k + 1])
        ideal = ((np.exp2(batch.ideal_gains[:, :k]) - 1.0) * discounts).sum(1)
        if batch.groups is not None:
            dcg = ties.expected_dcg(batch.groups, k, batch.discount_sums)
        else:
            dcg = ((np.exp2(batch.ranked_gains[:, :k]) - 1.0) * discounts).sum(1)
        return batch.conventions.for_empty_queries(_undefined_ratio(dcg, ideal))[:, None]


class AverageCumulativeGain(_CutoffMetric):
    """ACG@k: the mean graded gain of the top k, ``(1/k) Σ_{i≤k} g_i``."""

    prefix = "acg"
    graded = True

    def per_query(self, batch):
        k = self.k or batch.num_items
        if batch.groups is not None:
            total = ties.expected_gain(batch.groups, k)
        else:
            total = batch.ranked_gains[:, :k].sum(1)
        return (total / k)[:, None]


_CUTOFF_METRICS = {
    cls.prefix: cls
    for cls in (
        MeanAveragePrecision,
        WeightedAveragePrecision,
        NormalizedDCG,
        AverageCumulativeGain,
    )
}


def from_name(name, top_k=None):
    """The metric a name stands for.

    Names: ``map``, ``map@K``, ``wap``, ``wap@K``, ``ndcg@K``, ``acg@K`` (without
    ``@K`` the cut-off is ``top_k``, ``None`` meaning the whole ranking; the last three
    may end in ``:shared`` or ``:jaccard``, their own gain), ``map:jaccard>=T`` and
    ``map@K:jaccard>=T`` (relevance: Jaccard coefficient ≥ T),
    ``p@k`` (precision and recall @k curves), ``p@rR`` (hash lookup within
    radius R) and ``pr`` (precision–recall over all radii). A
    :class:`RetrievalMetric` is returned unchanged.
    """
    if isinstance(name, RetrievalMetric):
        return name
    if name == PrecisionRecallAtK.name:
        return PrecisionRecallAtK()
    if name == PrecisionRecallCurve.name:
        return PrecisionRecallCurve()
    match = re.fullmatch(r"p@r(\d+)", str(name))
    if match:
        return PrecisionRecallWithinRadius(int(match[1]))
    match = re.fullmatch(r"(map|wap|ndcg|acg)(?:@(\d+))?(?::(shared|jaccard))?", str(name))
    if match:
        return _CUTOFF_METRICS[match[1]](int(match[2]) if match[2] else top_k, match[3])
    match = re.fullmatch(r"map(?:@(\d+))?:jaccard>=([0-9.eE+-]+)", str(name))
    if match:
        return JaccardMeanAveragePrecision(match[2], int(match[1]) if match[1] else top_k)
    raise UsageError(
        f"unknown metric {name!r}; use map, map@K, map:jaccard>=T, wap@K, ndcg@K, "
        "acg@K (these three may end in :shared or :jaccard), p@k, p@rR (e.g. "
        "p@r2) or pr"
    )
