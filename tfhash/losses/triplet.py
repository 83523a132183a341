"""The triplet ranking baseline of the LSDH paper, with LSDH's quantization.

Only the first two terms of LSDH's Eq. 8: for a triplet ``(i, j, n)`` — anchor
``i``, positive ``j``, negative ``n`` — with ``d_ab = |h_a − h_b|²``,

    max(0, m + d_ij − d_in)

averaged over the triplets mined in the batch, plus the same
``λ · Q_Ham`` as LSDH over the distinct pairs ``{i, j}, {i, n}`` they use. It
isolates what LSDH's third (positive-positive) term adds.
"""

import keras
import tensorflow as tf

from tfhash.losses.base import RankingLoss, gather_pairs
from tfhash.losses.mining import mine_triplets


def triplet_loss(distances, triplets, margin):
    """The ranking loss of each triplet, ``max(0, m + d_ij − d_in)``.

    Args:
        distances: ``[B, B]`` squared distances.
        triplets: int32 ``[Q, 3]``, columns ``i, j, n``.
        margin: m.

    Returns:
        ``[Q]`` tensor of ``distances``' dtype.
    """
    i, j, n = tf.unstack(triplets, num=3, axis=1)
    return tf.nn.relu(margin + gather_pairs(distances, i, j) - gather_pairs(distances, i, n))


@keras.saving.register_keras_serializable(package="tfhash")
class TripletLoss(RankingLoss):
    """Triplet ranking loss + λ · Hamming-isometric quantization (the paper's baseline).

    Same arguments, defaults, terms and normalisation as
    :class:`~tfhash.losses.lsdh.LSDHLoss`, with triplets instead of
    quadruplets: ``quadruplets_per_anchor`` is the number of triplets per
    anchor for ``"random"`` mining (one name, so that one training flag drives
    every method).

    Example:

    >>> import tfhash
    >>> loss = tfhash.losses.TripletLoss(mining="all", margin=1.0)
    >>> h = tf.constant([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    >>> float(loss.terms(tf.constant([0, 0, 1]), h)["semantic"])
    0.0
    """

    pairs = ((0, 1), (0, 2))

    def __init__(self, *args, name="triplet", **kwargs):
        super().__init__(*args, name=name, **kwargs)

    def mine(self, similarity):
        return mine_triplets(
            similarity, self.mining, self.quadruplets_per_anchor, self.seed_generator
        )

    def tuple_loss(self, distances, similarity, tuples, margin):
        return triplet_loss(distances, tuples, margin)
