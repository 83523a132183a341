"""Items and relevant items at each Hamming distance, counted by one compiled pass per query.

Under ``ties="average"`` and for hash lookup, a Hamming ranking is fully
described by two counts per query and distance d = 0..K: ``size[d]``, the
items at distance d, and ``hits[d]``, the relevant ones among them. NumPy
computes them with a distance matrix and a ``bincount`` (about 2 ns per
query-item pair here); this module fuses XOR, popcount and the counting into
one loop compiled by numba (about 0.3 ns per pair), and never forms the
distance or relevance matrices.

* Class-id labels: the database is sorted by class once, so a query's relevant
  items are one contiguous range; the loop counts all items, then that range,
  with no per-item label test.
* Multi-hot labels: relevance is ``(query_labels & item_labels) != 0`` on
  packed label words, tested per item.

numba is imported on first use, not with the package, and everything here has
a NumPy equivalent in :mod:`tfhash.evaluation.ties`; :func:`available` says
whether the compiled path can run. Graded gains (NDCG, ACG, weighted AP) and
the explicit rankings of the other tie policies stay in NumPy.
"""

import functools

import numpy as np

from tfhash.evaluation import ties


@functools.cache
def _kernels():
    """The compiled loops (:mod:`tfhash.evaluation._kernels`), or ``None`` without numba."""
    try:
        from tfhash.evaluation import _kernels
    except ImportError:
        return None
    return _kernels.class_counts, _kernels.label_counts


def available():
    """Whether the compiled counting can run (numba importable)."""
    return _kernels() is not None


class HammingCounts:
    """``ties.Groups`` by Hamming distance 0..K for batches of queries, without distance matrices.

    Args:
        database_words: ``uint64 [N, W]`` packed database codes, item-major.
        bits: K.
        relevance: the :class:`~tfhash.evaluation.inputs.Relevance` of the
            query and database labels.

    Example:

    >>> from tfhash.evaluation import inputs
    >>> words, bits = inputs.pack_codes(np.array([[1, 1], [1, -1], [-1, -1]]))
    >>> labels = np.array([0, 1, 0])
    >>> counts = HammingCounts(words, bits, inputs.Relevance(labels, labels, 3, 3))
    >>> groups = counts(words[:1], slice(0, 1))  # query 0 = item 0
    >>> groups.size.tolist(), groups.hits.tolist()
    ([[1, 1, 1]], [[1, 0, 1]])
    """

    def __init__(self, database_words, bits, relevance):
        self.bits = bits
        self._relevance = relevance
        if relevance.kind == "class ids":
            classes = relevance.database_labels
            order = np.argsort(classes, kind="stable")
            self._sorted_classes = classes[order]
            self._words = np.ascontiguousarray(database_words[order])
        else:
            self._words = np.ascontiguousarray(database_words)
            self._labels = np.ascontiguousarray(relevance.database_labels.T)  # [N, words]

    def __call__(self, query_words, rows):
        """Groups of the queries ``query_words`` (``rows`` of the query labels)."""
        class_counts, label_counts = _kernels()
        query_words = np.ascontiguousarray(query_words, np.uint64)
        if self._relevance.kind == "class ids":
            classes = self._relevance.query_labels[rows]
            first = np.searchsorted(self._sorted_classes, classes, "left")
            last = np.searchsorted(self._sorted_classes, classes, "right")
            size, hits = class_counts(query_words, first, last, self._words, self.bits)
        else:
            labels = np.ascontiguousarray(self._relevance.query_labels[rows])
            size, hits = label_counts(query_words, labels, self._words, self._labels, self.bits)
        return ties.Groups(size, hits)
