"""The numba-compiled loops of :mod:`tfhash.evaluation.counting` (imported only from there)."""

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

# Interleaved histograms: consecutive items rarely increment the same counter,
# so the loop is not serialised on one memory location.
LANES = 8


@intrinsic
def _popcount(typingctx, x):
    """One ``popcnt`` instruction on a 64-bit word."""

    def codegen(context, builder, signature, args):
        function = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(function, args)

    return types.int64(types.uint64), codegen


@numba.njit(inline="always")
def _distance(database_words, j, query):
    d = 0
    for w in range(len(query)):
        d += _popcount(database_words[j, w] ^ query[w])
    return d


@numba.njit(inline="always")
def _count(database_words, start, stop, query, lanes):
    """``lanes[l, d]`` += items ``start .. stop - 1`` at distance d, spread over the lanes."""
    j = start
    if len(query) == 1:  # codes up to 64 bits: one word, no inner loop
        words = database_words.reshape(len(database_words))
        word = query[0]
        while j + LANES <= stop:
            for lane in range(LANES):
                lanes[lane, _popcount(words[j + lane] ^ word)] += 1
            j += LANES
    for j in range(j, stop):
        lanes[0, _distance(database_words, j, query)] += 1


@numba.njit(parallel=True, nogil=True, cache=True)
def class_counts(query_words, first, last, database_words, bits):
    """Database sorted by class: query q's relevant items are ``first[q] .. last[q] - 1``.

    One pass in three ranges: the items before the query's class, its class
    (counted into separate lanes: the hits), and the items after it.
    """
    num_queries, groups = len(query_words), bits + 1
    size = np.zeros((num_queries, groups), np.int64)
    hits = np.zeros((num_queries, groups), np.int64)
    for q in numba.prange(num_queries):
        query = query_words[q]
        other = np.zeros((LANES, groups), np.int32)
        relevant = np.zeros((LANES, groups), np.int32)
        _count(database_words, 0, first[q], query, other)
        _count(database_words, first[q], last[q], query, relevant)
        _count(database_words, last[q], len(database_words), query, other)
        for g in range(groups):
            found, total = 0, 0
            for lane in range(LANES):
                found += relevant[lane, g]
                total += other[lane, g]
            hits[q, g] = found
            size[q, g] = total + found
    return size, hits


@numba.njit(parallel=True, nogil=True, cache=True)
def label_counts(query_words, query_labels, database_words, database_labels, bits):
    """Relevant: the item's label words share a set bit with the query's."""
    num_queries, groups = len(query_words), bits + 1
    size = np.zeros((num_queries, groups), np.int64)
    hits = np.zeros((num_queries, groups), np.int64)
    for q in numba.prange(num_queries):
        query = query_words[q]
        counts = np.zeros(2 * groups, np.int64)  # [distance + groups · relevant]
        for j in range(len(database_words)):
            shared = 0
            for w in range(database_labels.shape[1]):
                shared |= database_labels[j, w] & query_labels[q, w]
            counts[_distance(database_words, j, query) + groups * (shared != 0)] += 1
        for g in range(groups):
            hits[q, g] = counts[groups + g]
            size[q, g] = counts[g] + counts[groups + g]
    return size, hits
