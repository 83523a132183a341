"""In-batch mining of LSDH quadruplets and ranking triplets.

LSDH trains on quadruplets ``(i, j, k, n)``: an anchor ``i``, two items ``j < k``
relevant to ``i`` and an item ``n`` irrelevant to ``i`` (Section III-A). Instead
of four forward passes per quadruplet, tfhash mines them inside each batch from
the batch's ``[B, B]`` label similarity; the input pipeline samples balanced
batches (P classes × M images, or label-balanced for multi-label data) so that
every anchor has positives and negatives.

A mined set is an int32 index tensor ``[Q, 4]`` (or ``[Q, 3]`` for triplets
``(i, j, n)``); a loss gathers the distances it needs from the batch's
``[B, B]`` squared-distance matrix, so memory is ``O(B² + Q)`` and no dense
``[B, B, B, B]`` tensor is ever built.

How the tuples are enumerated, vectorised: anchor ``i`` with ``p_i`` positives
and ``n_i`` negatives (the item itself is neither) has ``c_i = C(p_i, 2) · n_i``
quadruplets, numbered ``0 … c_i − 1`` as ``r = t · n_i + u``, where ``u`` picks
the ``u``-th negative and ``t`` the ``t``-th positive pair ``(a, b)``, ``a < b``,
in the order ``t = b (b − 1) / 2 + a``. Mining picks numbers ``r`` per anchor
(all of them, or a uniform sample) and decodes them with integer arithmetic, a
``searchsorted`` for ``b`` and two gathers. Triplets are the same with
``c_i = p_i · n_i`` and ``r = a · n_i + u``.

Two modes:

* ``"all"``: every valid tuple. For a P × M batch (``B = P·M``) there are
  ``Q = B · C(M−1, 2) · (B − M)`` quadruplets, e.g. 1,505,280 for
  ``B = 128, P = 8, M = 16``; triplets: ``Q = B · (M − 1) · (B − M)``.
* ``"random"``: per anchor, ``min(N, c_i)`` tuples: all of its tuples when
  ``c_i ≤ N`` (so small batches are mined exactly), otherwise ``N`` drawn
  uniformly *with replacement* among its ``c_i`` valid ones. ``Q ≤ B · N``.

Memory: besides the ``[B, B]`` matrices, mining holds a few int64 numbers per
tuple while decoding and returns 16 bytes (12 for triplets) per tuple; a loss
adds its gathered distances and their gradients, a fixed number of bytes per tuple
(``benchmarks/bench_losses.py`` measures it; benchmarks/RESULTS.md has the figures). So the
peak grows with the number of tuples:

* ``"all"``: ``B · C(M−1, 2) · (B − M)`` quadruplets for P × M batches, growing as
  ``B² M²`` (hundreds of MB at B = 128, P = 8, M = 16);
* ``"random"``: at most ``B · N``, whatever the labels.

Anchors without two positives (one for triplets) or without a negative
contribute no tuple; an empty set is a ``[0, 4]`` tensor.

Both modes run eagerly and inside ``tf.function`` (``model.fit``). ``"random"``
also compiles with XLA (``jit_compile=True``; its size is bounded by ``B · N``);
``"all"`` makes a data-dependent number of tuples and does not.
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError

MINING_MODES = ("all", "random")


def validate_mining(mining, per_anchor):
    """Checks a mining mode and a per-anchor count; raises ``UsageError``."""
    if mining not in MINING_MODES:
        raise UsageError(f"mining must be one of {', '.join(MINING_MODES)}, got {mining!r}")
    if isinstance(per_anchor, bool) or not isinstance(per_anchor, int) or per_anchor < 1:
        raise UsageError(
            f"quadruplets_per_anchor must be an integer of at least 1, got {per_anchor!r}"
        )


def mine_quadruplets(similarity, mining="random", per_anchor=128, seed=None):
    """LSDH quadruplets ``(i, j, k, n)`` of a batch: ``j < k`` relevant to ``i``, ``n`` not.

    Args:
        similarity: boolean ``[B, B]``, symmetric: which items are relevant to
            each other (the diagonal is ignored).
        mining: ``"all"`` or ``"random"`` (see the module docstring).
        per_anchor: N, the most quadruplets per anchor for ``"random"``.
        seed: for ``"random"``: an int (the same sample at every call) or a
            ``keras.random.SeedGenerator`` (a new sample at every call).

    Returns:
        int32 ``[Q, 4]`` tensor of batch indices, columns ``i, j, k, n``.

    Example:

    >>> sim = tf.constant([0, 0, 0, 1])[:, None] == tf.constant([0, 0, 0, 1])[None, :]
    >>> mine_quadruplets(sim, mining="all").numpy().tolist()
    [[0, 1, 2, 3], [1, 0, 2, 3], [2, 0, 1, 3]]
    """
    validate_mining(mining, per_anchor)
    positives, negatives = _positives_and_negatives(similarity)
    num_pos = tf.reduce_sum(tf.cast(positives, tf.int64), axis=1)
    num_neg = tf.reduce_sum(tf.cast(negatives, tf.int64), axis=1)
    counts = num_pos * (num_pos - 1) // 2 * num_neg
    anchors, number = _pick(counts, mining, per_anchor, seed)
    anchor_neg = tf.gather(num_neg, anchors)
    pair, u = number // anchor_neg, number % anchor_neg
    # Positive pair t ↦ (a, b) with a < b and t = b (b − 1) / 2 + a.
    batch = tf.shape(similarity, out_type=tf.int64)[0]
    second = tf.range(1, batch + 1, dtype=tf.int64)
    b = tf.searchsorted(second * (second - 1) // 2, pair, side="right", out_type=tf.int64)
    a = pair - b * (b - 1) // 2
    ranked_pos, ranked_neg = _true_first(positives), _true_first(negatives)
    return tf.stack(
        [
            anchors,
            _at(ranked_pos, anchors, a),
            _at(ranked_pos, anchors, b),
            _at(ranked_neg, anchors, u),
        ],
        axis=1,
    )


def mine_triplets(similarity, mining="random", per_anchor=128, seed=None):
    """Ranking triplets ``(i, j, n)`` of a batch: ``j`` relevant to ``i``, ``n`` not.

    Same arguments and modes as :func:`mine_quadruplets`; each anchor has
    ``p_i · n_i`` triplets.

    Returns:
        int32 ``[Q, 3]`` tensor of batch indices, columns ``i, j, n``.

    Example:

    >>> sim = tf.constant([0, 0, 1])[:, None] == tf.constant([0, 0, 1])[None, :]
    >>> mine_triplets(sim, mining="all").numpy().tolist()
    [[0, 1, 2], [1, 0, 2]]
    """
    validate_mining(mining, per_anchor)
    positives, negatives = _positives_and_negatives(similarity)
    num_pos = tf.reduce_sum(tf.cast(positives, tf.int64), axis=1)
    num_neg = tf.reduce_sum(tf.cast(negatives, tf.int64), axis=1)
    anchors, number = _pick(num_pos * num_neg, mining, per_anchor, seed)
    anchor_neg = tf.gather(num_neg, anchors)
    return tf.stack(
        [
            anchors,
            _at(_true_first(positives), anchors, number // anchor_neg),
            _at(_true_first(negatives), anchors, number % anchor_neg),
        ],
        axis=1,
    )


def _positives_and_negatives(similarity):
    """``[B, B]`` masks of each anchor's positives and negatives, never itself."""
    similarity = tf.convert_to_tensor(similarity)
    others = tf.logical_not(tf.eye(tf.shape(similarity)[0], dtype=tf.bool))
    return similarity & others, tf.logical_not(similarity) & others


def _pick(counts, mining, per_anchor, seed):
    """Which tuples to take: (anchor int32 [Q], tuple number int64 [Q]) pairs.

    Anchor ``i`` has tuples ``0 … counts[i] − 1``; ``"all"`` takes each once,
    ``"random"`` takes ``min(per_anchor, counts[i])`` of them (see the module).
    """
    if mining == "all":
        numbers = tf.ragged.range(counts)
        return tf.cast(numbers.value_rowids(), tf.int32), numbers.flat_values
    batch = tf.shape(counts)[0]
    slot = tf.range(per_anchor, dtype=tf.int64)[None, :]
    count = counts[:, None]
    uniform = keras.random.uniform((batch, per_anchor), dtype="float64", seed=seed)
    drawn = tf.cast(tf.floor(uniform * tf.cast(count, tf.float64)), tf.int64)
    number = tf.where(count <= per_anchor, slot, tf.minimum(drawn, count - 1))
    keep = slot < tf.minimum(count, per_anchor)
    anchor = tf.broadcast_to(tf.range(batch)[:, None], (batch, per_anchor))
    return tf.boolean_mask(anchor, keep), tf.boolean_mask(number, keep)


def _true_first(mask):
    """Per row, the column indices where ``mask`` is true, in increasing order, first."""
    return tf.argsort(tf.cast(tf.logical_not(mask), tf.int32), axis=1, stable=True)


def _at(ranked, rows, ranks):
    """``ranked[rows[q], ranks[q]]`` for every q, as int32."""
    return tf.gather_nd(ranked, tf.stack([rows, tf.cast(ranks, tf.int32)], axis=1))
