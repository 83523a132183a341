r"""Retrieval metrics as named objects, computed per query from a ranking or its tie groups.

Each metric turns a :class:`QueryBatch` (a few queries' rankings, or their tie
groups under ``ties="average"``) into per-query values; the evaluator averages
them over all queries. The names are what ``evaluate_codes(metrics=...)`` and
the CLI's ``--metrics`` accept (:func:`from_name`). The batch and the base class are in
:mod:`~tfhash.evaluation.metric_base`, the precision and recall metrics (``p@k``, ``p@rR``,
``pr``) in :mod:`~tfhash.evaluation.precision_recall`; this module holds the ranked ones
(MAP, the graded and the Jaccard metrics) and re-exports the others.

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

import math
import re

import numpy as np

from tfhash.errors import UsageError
from tfhash.evaluation import ties
from tfhash.evaluation.conventions import GAINS
from tfhash.evaluation.metric_base import (
    QueryBatch,
    RetrievalMetric,
    check_k,
    undefined_ratio,
)
from tfhash.evaluation.precision_recall import (
    PrecisionRecallAtK,
    PrecisionRecallCurve,
    PrecisionRecallWithinRadius,
    default_ks,
)

__all__ = [
    "AverageCumulativeGain",
    "JaccardMeanAveragePrecision",
    "MeanAveragePrecision",
    "NormalizedDCG",
    "PrecisionRecallAtK",
    "PrecisionRecallCurve",
    "PrecisionRecallWithinRadius",
    "QueryBatch",
    "RetrievalMetric",
    "WeightedAveragePrecision",
    "default_ks",
    "from_name",
]


class _CutoffMetric(RetrievalMetric):
    """A metric of the top k of the ranking; ``k=None`` is the whole ranking."""

    prefix = None

    def __init__(self, k=None, gain=None):
        self.k = check_k(k, self.prefix)
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
        return batch.conventions.for_empty_queries(undefined_ratio(dcg, ideal))[:, None]


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
