"""LSDH: local semantic-aware quadruplet loss + Hamming-isometric quantization.

Wang, Liang, Cao, Sun, "Local Semantic-Aware Deep Hashing With Hamming-Isometric
Quantization", IEEE TIP 28(6), 2019. For a quadruplet ``(i, j, k, n)`` — anchor
``i``, positives ``j`` and ``k``, negative ``n`` — with ``d_ab = |h_a − h_b|²``,
the relaxed semantic-aware loss (Eq. 8) is

    max(0, m + d_ij − d_in) + max(0, m + d_ik − d_in) + max(0, m + d_jk − d_in)

The first two terms rank each positive above the negative; the third asks the
positive-positive pair to be closer than the anchor-negative pair (the local
structure). With multi-label data the positives ``j`` and ``k`` may share no
label; with ``s_jk = 1`` if they do and 0 otherwise, Eq. 13 weights the third
term by ``s_jk`` and adds ``(1 − s_jk) · max(0, m − d_jk)``, pushing such a pair
apart. Single-label positives always share their class (``s_jk = 1``), so one
formula serves both. The overall objective (Eq. 15) adds ``λ · Q_Ham`` over the
pairs the quadruplets use, see :class:`~tfhash.losses.base.RankingLoss`.

LSDH-L1, the paper's ablation, keeps only the L1 part of the quantization
(``μ = 0``).
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import RankingLoss, gather_pairs
from tfhash.losses.mining import mine_quadruplets


def quadruplet_loss(distances, similarity, quadruplets, margin):
    """The semantic-aware loss of each quadruplet (Eq. 13; Eq. 8 when ``s_jk = 1``).

    Args:
        distances: ``[B, B]`` squared distances ``|h_a − h_b|²``.
        similarity: boolean ``[B, B]``; gives ``s_jk``.
        quadruplets: int32 ``[Q, 4]``, columns ``i, j, k, n``.
        margin: m.

    Returns:
        ``[Q]`` tensor of ``distances``' dtype.
    """
    i, j, k, n = tf.unstack(quadruplets, num=4, axis=1)
    d_ij = gather_pairs(distances, i, j)
    d_ik = gather_pairs(distances, i, k)
    d_jk = gather_pairs(distances, j, k)
    d_in = gather_pairs(distances, i, n)
    s_jk = tf.cast(gather_pairs(similarity, j, k), distances.dtype)
    return (
        tf.nn.relu(margin + d_ij - d_in)
        + tf.nn.relu(margin + d_ik - d_in)
        + s_jk * tf.nn.relu(margin + d_jk - d_in)
        + (1.0 - s_jk) * tf.nn.relu(margin - d_jk)
    )


@keras.saving.register_keras_serializable(package="tfhash")
class LSDHLoss(RankingLoss):
    """LSDH's objective: semantic-aware quadruplet loss + λ · Hamming-isometric quantization.

    On a batch of relaxed codes ``h`` (``[B, K]``, from
    :class:`tfhash.models.layers.HashingLayer`) and labels (class ids ``[B]`` or
    multi-hot ``[B, C]``), quadruplets are mined in the batch
    (:func:`tfhash.losses.mining.mine_quadruplets`) and

        loss = mean over quadruplets of Eq. 13
               + λ · (mean over used pairs of |h_i − b_i|₁ + |h_j − b_j|₁
                      + μ · mean over used pairs of | |h_i − h_j|² − |b_i − b_j|² |)

    where the used pairs are the distinct ``{i, j}, {i, k}, {j, k}, {i, n}`` of
    the quadruplets (Eqs. 11 and 15). :meth:`terms` reports ``"semantic"``,
    ``"quantization"`` (the L1 part) and ``"isometric"`` unweighted, and the
    total as ``"loss"``. Gradients are the paper's Eqs. 9, 12 and 14 (averaged).

    Args: see :class:`~tfhash.losses.base.RankingLoss` (``margin``,
    ``quantization_weight``, ``isometric_weight``, ``mining``,
    ``quadruplets_per_anchor``, ``seed``, ``name``, ``reduction``).

    Hooks a subclass may override: :meth:`similarity` (relevance from labels;
    also gives ``s_jk``), :meth:`mine`, :meth:`tuple_loss`.

    Example:

    >>> import tfhash
    >>> loss = tfhash.losses.LSDHLoss(mining="all")
    >>> terms = loss.terms(tf.constant([0, 0, 0, 1]),
    ...                    tf.constant([[.9, .8], [.7, .9], [.8, .6], [-.9, -.7]]))
    >>> sorted(terms)
    ['isometric', 'loss', 'quantization', 'semantic']

    In training: ``model.compile(optimizer="sgd", loss=LSDHLoss())``.
    """

    pairs = ((0, 1), (0, 2), (1, 2), (0, 3))

    def __init__(self, *args, name="lsdh", **kwargs):
        super().__init__(*args, name=name, **kwargs)

    def mine(self, similarity):
        return mine_quadruplets(
            similarity, self.mining, self.quadruplets_per_anchor, self.seed_generator
        )

    def tuple_loss(self, distances, similarity, tuples, margin):
        return quadruplet_loss(distances, similarity, tuples, margin)


@keras.saving.register_keras_serializable(package="tfhash")
class LSDHL1Loss(LSDHLoss):
    """LSDH-L1, the paper's ablation: LSDH with only the L1 quantization (μ = 0).

    ``loss = semantic + λ · quantization``; the ``"isometric"`` term is still
    reported, unweighted, to compare how isometric the codes end up.

    Args: as :class:`LSDHLoss`, keyword-only; ``isometric_weight`` may only be
    ``None`` or 0.
    """

    def __init__(self, *, isometric_weight=0.0, name="lsdh_l1", **kwargs):
        if isometric_weight not in (None, 0):
            raise UsageError(
                f"lsdh_l1 has no isometric term, got isometric_weight={isometric_weight!r}: "
                "leave it unset or use method lsdh"
            )
        super().__init__(isometric_weight=0.0, name=name, **kwargs)
