"""LSDH's Hamming-isometric quantization (Eqs. 10–12), pair by pair.

For a pair of relaxed codes and their binary codes ``b = sign(h)``,

    Q_Ham(h_i, h_j) = |h_i − b_i|₁ + |h_j − b_j|₁                    (L1 part, Eq. 10)
                      + μ · | |h_i − h_j|² − |b_i − b_j|² |           (isometric part, Eq. 11)

The L1 part pulls each code towards its sign; the isometric part asks the
squared distance of the relaxed pair to equal that of its binary codes
(``4 · Hamming``), so that ranking by Hamming distance after quantization
keeps the ranking learned on relaxed codes.

``b`` is a constant with respect to ``h`` (``stop_gradient``), so the gradients
are Eq. 12's: ``∂|h − b|₁/∂h = δ(h)`` (the paper's δ, except at the measure-zero
point ``h = 0``, where tfhash's ``sign(0) = +1`` gives −1 and the paper's
``sign(0) = −1`` gives +1), and the isometric part contributes
``2μ (h_i − h_j) · sign(|h_i − h_j|² − |b_i − b_j|²)`` to ``h_i``.
"""

import tensorflow as tf

from tfhash.losses.pairwise import squared_distances
from tfhash.models.layers import sign


def hamming_isometric(h, distances):
    """The two parts of ``Q_Ham`` (Eq. 11) for every pair of a batch, unweighted.

    Args:
        h: relaxed codes ``[B, K]``.
        distances: ``squared_distances(h)``, ``[B, B]`` (passed in so that the
            losses use one distance matrix).

    Returns:
        ``(l1, isometric)``, two ``[B, B]`` tensors of ``h``'s dtype:
        ``l1[i, j] = |h_i − b_i|₁ + |h_j − b_j|₁`` and
        ``isometric[i, j] = | |h_i − h_j|² − |b_i − b_j|² |``, so that
        ``Q_Ham(h_i, h_j) = l1[i, j] + μ · isometric[i, j]``.
    """
    h = tf.convert_to_tensor(h)
    b = tf.stop_gradient(sign(h, h.dtype))
    per_item = tf.reduce_sum(tf.abs(h - b), axis=1)
    l1 = per_item[:, None] + per_item[None, :]
    isometric = tf.abs(distances - squared_distances(b))
    return l1, isometric


def pair_mask(tuples, pairs, batch_size, keep=None):
    """The distinct unordered pairs that a set of mined tuples uses, as a mask.

    Args:
        tuples: int ``[Q, T]`` batch indices (e.g. LSDH's ``(i, j, k, n)``).
        pairs: the column pairs of a tuple whose distances the loss uses, e.g.
            ``((0, 1), (0, 2), (1, 2), (0, 3))`` for LSDH.
        batch_size: B.
        keep: optional float32 ``[Q]``, 0 for a tuple whose pairs do not count.

    Returns:
        float32 ``[B, B]``, 1 at ``[i, j]`` with ``i < j`` for each pair used at
        least once, 0 elsewhere.
    """
    ends = tf.concat([tf.gather(tuples, list(pair), axis=1) for pair in pairs], axis=0)
    ends = tf.sort(ends, axis=1)  # unordered pairs as (smaller, larger)
    weights = tf.ones(tf.shape(ends)[:1]) if keep is None else tf.tile(keep, [len(pairs)])
    hits = tf.scatter_nd(ends, weights, (batch_size, batch_size))
    return tf.cast(hits > 0.0, tf.float32)


def pair_quantization(h, distances, used):
    """The two parts of ``Q_Ham`` averaged over the pairs a loss uses (as RankingLoss does).

    Args:
        h: relaxed codes ``[B, K]``.
        distances: ``squared_distances(h)``.
        used: float32 ``[B, B]``, 1 at ``[i, j]`` (``i < j``) for each pair used (e.g.
            :func:`pair_mask`, or every pair of the batch).

    Returns:
        ``(quantization, isometric)``: the means over the used pairs of
        ``|h_i − b_i|₁ + |h_j − b_j|₁`` and ``| |h_i − h_j|² − |b_i − b_j|² |``
        (0 when no pair is used).
    """
    num_pairs = tf.maximum(tf.reduce_sum(used), 1.0)
    l1, isometric = hamming_isometric(h, distances)
    return tf.reduce_sum(used * l1) / num_pairs, tf.reduce_sum(used * isometric) / num_pairs


def all_pairs(batch_size):
    """float32 ``[B, B]``: 1 above the diagonal, every unordered pair of the batch once."""
    ones = tf.ones((batch_size, batch_size))
    return tf.linalg.band_part(ones, 0, -1) - tf.linalg.band_part(ones, 0, 0)
