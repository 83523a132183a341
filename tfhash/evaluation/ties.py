r"""Ties in a ranking: the four tie policies, and exact expected values under random tie order.

Hamming distances take only K + 1 values, so a query's ranking is a sequence of
*tie groups*: all items at distance 0, then all at distance 1, and so on. A
metric's value depends on how each group is ordered, and evaluators disagree
because each takes whatever order its sort leaves. The policies:

* ``"index"``: tied items in database order, as a stable sort leaves them;
* ``"optimistic"``: relevant items first in each group (higher gain first for
  graded relevance);
* ``"pessimistic"``: relevant items last (lower gain first);
* ``"average"``: the exact expected value over all orders of the tied items
  (McSherry and Najork, "Computing information retrieval performance measures
  efficiently in the presence of tied scores", ECIR 2008).

The first three produce an explicit ranking (:func:`rank`). ``"average"`` needs
no ranking at all: per query, the size ``n``, number of relevant items ``r``
and gain sum ``G`` of each group (:class:`Groups`) give every metric in closed
form, derived below.

**The expected AP of a group.** Let a group occupy ranks ``b + 1 .. b + n``
(``b`` items ranked before it, with gain sum ``S``), and take its first ``m``
slots. Write ``hit_j`` for "slot ``j`` holds a relevant item" and ``g_j`` for
its gain. The group's part of the AP numerator is

    Σ_{j=1..m} hit_j · (S + Σ_{l<j} g_l + g_j) / (b + j).

Under a uniformly random order every slot is alike: with ``a = P(hit_j)``,
``c = P(hit_j, hit_l)`` for ``j ≠ l`` and ``μ`` the mean gain of a relevant item,
``E[hit_j (S + Σ_{l<j} g_l + g_j)] = a (S + μ) + (j - 1) c μ``. Summing with
``Σ_{j=1..m} 1/(b + j) = H(b + m) - H(b) =: ΔH`` (harmonic numbers) and
``Σ_{j=1..m} (j - 1)/(b + j) = m - (b + 1) ΔH``:

    E = a (S + μ) ΔH + c μ (m - (b + 1) ΔH).                          (1)

Over all orders, ``a = r/n``, ``c = r(r-1) / (n(n-1))`` and ``μ = G/r``. Binary
relevance is ``G = r``, ``μ = 1``, and (1) is McSherry and Najork's expected
precision sum. Summed over the groups it is the expected AP numerator; AP@ALL
divides it by the fixed number of relevant items R, AP@k by ``min(R, k)``.

**AP@k over the relevant items retrieved.** Widely used code divides AP@k by
the number ``X`` of relevant items in the top k instead. ``X`` is random when
the group straddling rank k is cut at ``m < n`` slots: it holds ``y`` relevant
items with the hypergeometric probability ``P(y)`` of drawing ``y`` of the ``r``
relevant among ``m`` of the ``n``. Given ``y`` the ``m`` slots are again
exchangeable, with ``a = y/m``, ``c = y(y-1) / (m(m-1))``, ``μ = G/r``, so

    E[AP@k] = Σ_y P(y) · (E_full + E(1 | y)) / (R_before + y),         (2)

``E_full`` being (1) summed over the groups wholly inside the top k and
``R_before`` their relevant items; a term with no relevant item is 0.
Precision, recall, ACG and DCG are linear in the order, so their expectations
need only each group's mean gain times the slots (or discounts) it fills.

Note that AP@k with the ``X`` denominator is not monotone in the ranking:
moving a relevant item from rank k + 1 to rank k can lower it. So
``optimistic`` and ``pessimistic`` bound ``average`` for every metric except that
one, where they are just the two orders they name.
"""

import dataclasses

import numpy as np

TIE_POLICIES = ("average", "index", "optimistic", "pessimistic")

_BINCOUNT_BLOCK = 1 << 15


@dataclasses.dataclass
class Groups:
    """The tie groups of a batch of queries, in rank order: arrays ``[queries, groups]``.

    Empty groups (``size == 0``) are allowed anywhere and contribute nothing.

    Attributes:
        size: items in each group, n.
        hits: relevant items (gain > 0) in each group, r.
        gain: sum of the graded gains g, or ``None`` for binary relevance.
        dcg_gain: sum of ``2^g - 1`` (the DCG gain), or ``None``.
    """

    size: np.ndarray
    hits: np.ndarray
    gain: np.ndarray | None = None
    dcg_gain: np.ndarray | None = None


def hamming_groups(distances, relevant, gains, bits):
    """Groups by Hamming distance 0..K: one ``bincount`` per query, no sort.

    Args:
        distances: ``uint8/uint16 [queries, N]`` Hamming distances.
        relevant: ``bool [queries, N]``.
        gains: ``float [queries, N]`` graded gains, or ``None``.
        bits: K.
    """
    num_groups = bits + 1
    queries, num_items = distances.shape
    size = np.empty((queries, num_groups), np.int64)
    hits = np.empty_like(size)
    graded = gains is not None
    gain = np.empty((queries, num_groups)) if graded else None
    dcg_gain = np.empty_like(gain) if graded else None
    # One bincount counts items and relevant items together, key = distance +
    # (K + 1) · relevant; by blocks, as bincount copies its input to intp.
    key_dtype = np.uint8 if 2 * num_groups <= 256 else np.uint32
    key = np.empty(min(num_items, _BINCOUNT_BLOCK), key_dtype)
    for i in range(queries):
        counts = np.zeros(2 * num_groups, np.int64)
        for start in range(0, num_items, len(key)):
            part = slice(start, start + len(key))
            block_key = key[: len(distances[i, part])]
            np.multiply(relevant[i, part].view(np.uint8), key_dtype(num_groups), out=block_key)
            np.add(block_key, distances[i, part], out=block_key)
            counts += np.bincount(block_key, minlength=2 * num_groups)
        hits[i] = counts[num_groups:]
        size[i] = counts[:num_groups] + hits[i]
        if graded:
            gain[i] = np.bincount(distances[i], gains[i], num_groups)
            dcg_gain[i] = np.bincount(distances[i], np.exp2(gains[i]) - 1.0, num_groups)
    return Groups(size, hits, gain, dcg_gain)


def sorted_groups(distances, relevant, gains):
    """Groups of exactly equal real-valued distances, found by sorting each query's row.

    Rows have different numbers of groups; shorter rows are padded with empty
    groups at the end.
    """
    rows = []
    for i, row in enumerate(distances):
        # Any sort will do: a group's statistics are sums over its items, so the order inside a
        # group does not matter, and NumPy's default (SIMD) sort is several times a stable one's.
        order = np.argsort(row)
        ordered = row[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        stats = [
            np.diff(np.r_[starts, len(row)]),
            np.add.reduceat(relevant[i, order].astype(np.int64), starts),
        ]
        if gains is not None:
            stats += [
                np.add.reduceat(gains[i, order], starts),
                np.add.reduceat(np.exp2(gains[i, order]) - 1.0, starts),
            ]
        rows.append(stats)
    width = max(len(stats[0]) for stats in rows)
    padded = [np.zeros((len(rows), width), dtype=array.dtype) for array in rows[0]]
    for i, stats in enumerate(rows):
        for out, array in zip(padded, stats):
            out[i, : len(array)] = array
    return Groups(*padded)


def _cut(size, k):
    """Items before each group, and how many of its items make the top k."""
    before = np.cumsum(size, axis=-1) - size
    return before, np.clip(k - before, 0, size)


def ratio(numerator, denominator):
    """``numerator / denominator``, 0 where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(numerator, denominator)
    out = np.zeros(numerator.shape)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


def _harmonic_gap(before, taken):
    """``H(before + taken) - H(before)``, ``H`` the harmonic numbers, for item counts.

    From a table of ``H`` up to the largest count (a cumulative sum, far faster
    than the digamma function on every group).
    """
    before, taken = np.broadcast_arrays(np.asarray(before), np.asarray(taken))
    before = before.astype(np.int64)
    end = before + taken.astype(np.int64)
    harmonic = np.zeros(int(end.max(initial=0)) + 1)
    np.cumsum(1.0 / np.arange(1, len(harmonic)), out=harmonic[1:])
    return harmonic[end] - harmonic[before]


def _expected_precision_sum(before, gain_before, taken, p_hit, p_pair, mean_gain):
    """Eq. (1): the expected AP numerator of the first ``taken`` slots of a group."""
    gap = _harmonic_gap(before, taken)
    return p_hit * (gain_before + mean_gain) * gap + p_pair * mean_gain * (
        taken - (before + 1.0) * gap
    )


def expected_hits(groups, k):
    """Expected number of relevant items in the top k: ``Σ_groups taken · r / n``."""
    _, taken = _cut(groups.size, k)
    return (taken * ratio(groups.hits, groups.size)).sum(-1)


def expected_gain(groups, k):
    """Expected sum of gains in the top k: ``Σ_groups taken · G / n``."""
    _, taken = _cut(groups.size, k)
    return (taken * ratio(groups.gain, groups.size)).sum(-1)


def expected_dcg(groups, k, discount_sums):
    """Expected DCG@k: each group's mean DCG gain times the discounts of the ranks it fills.

    Args:
        discount_sums: ``D[i] = Σ_{j=1..i} 1 / log2(j + 1)``, at least N + 1 long.
    """
    before, taken = _cut(groups.size, k)
    filled = discount_sums[before + taken] - discount_sums[before]
    return (ratio(groups.dcg_gain, groups.size) * filled).sum(-1)


def expected_average_precision(groups, k, denominator, graded=False):
    """Exact expected AP@k (or weighted AP@k) over all orders of tied items, Eq. (1)-(2).

    Args:
        groups: :class:`Groups` of a batch of queries.
        k: the cut-off; N for the whole ranking.
        denominator: ``"min_r_k"`` (divide by min(R, k)) or
            ``"relevant_in_top_k"`` (divide by the relevant items retrieved).
        graded: weighted AP with the groups' graded gains instead of binary AP.

    Returns:
        ``[queries]`` expected values; NaN for a query with no relevant item.
    """
    size, hits = groups.size, groups.hits
    gain = groups.gain if graded else hits
    before, taken = _cut(size, k)
    gain_before = np.cumsum(gain, axis=-1) - gain
    terms = _expected_precision_sum(
        before,
        gain_before,
        taken,
        ratio(hits, size),
        ratio(hits * (hits - 1), size * (size - 1)),
        ratio(gain, hits),
    )
    num_relevant = hits.sum(-1)
    if denominator == "min_r_k":
        values = ratio(terms.sum(-1), np.minimum(num_relevant, k))
    else:
        values = _expected_over_retrieved(size, hits, gain, before, gain_before, taken, terms)
    values[num_relevant == 0] = np.nan
    return values


def _expected_over_retrieved(size, hits, gain, before, gain_before, taken, terms):
    """Eq. (2): AP@k divided by the number of relevant items in the top k."""
    from scipy import stats  # only this convention needs it; it is slow to import

    whole = taken == size
    full_terms = np.where(whole, terms, 0.0).sum(-1)
    full_hits = np.where(whole, hits, 0).sum(-1)
    values = ratio(full_terms, full_hits)
    partial = (taken > 0) & (taken < size)  # at most one group per query: the one at rank k
    rows = np.flatnonzero(partial.any(-1))
    if rows.size:
        column = partial[rows].argmax(-1)
        n, r, g, m, b, s = (
            a[rows, column][:, None] for a in (size, hits, gain, taken, before, gain_before)
        )
        y = np.arange(np.minimum(m, r).max() + 1)[None, :]
        probability = stats.hypergeom.pmf(y, n, r, m)
        conditional = _expected_precision_sum(
            b, s, m, y / m, ratio(y * (y - 1), m * (m - 1)), ratio(g, r)
        )
        values[rows] = (
            probability * ratio(full_terms[rows, None] + conditional, full_hits[rows, None] + y)
        ).sum(-1)
    return values


def tie_key(policy, relevant, gains=None):
    """The secondary sort key of a policy for one query's row (``None`` for ``"index"``).

    Sorting ascending by ``(distance, key, index)`` puts relevant items (or
    higher gains) first for ``"optimistic"`` and last for ``"pessimistic"``.
    """
    if policy == "index":
        return None
    if gains is None:
        return ~relevant if policy == "optimistic" else relevant
    return -gains if policy == "optimistic" else gains


def rank(distances, k, key=None):
    """Database indices of one query's k nearest items, nearest first.

    Ties in distance are ordered by ``key`` (ascending), then by database index.
    Only the items up to the k-th smallest distance are sorted. For Hamming
    distances the sort is NumPy's stable sort of 8- or 16-bit integers, which
    is a radix (counting) sort, not a comparison sort; real-valued distances
    and graded keys fall back to ``np.lexsort``.

    Args:
        distances: ``[N]`` one query's distances.
        k: how many items to rank, at most N.
        key: ``[N]`` tie key from :func:`tie_key`, or ``None`` for index order.
    """
    candidates = None
    if k < len(distances):
        if distances.dtype.kind == "u":
            kth = np.searchsorted(np.cumsum(np.bincount(distances)), k)
        else:
            kth = np.partition(distances, k - 1)[k - 1]
        candidates = np.flatnonzero(distances <= kth)
        distances = distances[candidates]
        key = None if key is None else key[candidates]
    if key is None:
        order = np.argsort(distances, kind="stable")
    elif key.dtype == bool and distances.dtype == np.uint8:
        order = np.argsort((distances.astype(np.uint16) << 1) | key, kind="stable")
    else:
        order = np.lexsort((key, distances))
    order = order[:k]
    return order if candidates is None else candidates[order]
