"""The quadruplet loss of "Beyond triplet loss" (Chen, Chen, Zhang, Huang, CVPR 2017).

One of the metric-learning rows of the LSDH paper's Fig. 11 ("BeyondTriplet"). A quadruplet
``(i, j, k, l)`` has an anchor ``i``, a positive ``j`` (``s_i = s_j``), a negative ``k``
(``s_k ≠ s_i``) and a fourth item ``l`` of yet another class (``s_l ≠ s_i``, ``s_l ≠ s_k``);
with ``d_ab = |h_a − h_b|²``,

    L = Σ [d_ij − d_ik + α₁]₊ + Σ [d_ij − d_lk + α₂]₊                              (Eq. 4)

The first term is the triplet loss; the second asks every positive pair to be closer than a
negative pair that does not share the anchor, which shrinks the intra-class variation
relative to the inter-class one. Margins α₁ = 1 and α₂ = α₁ / 2 = 0.5 (the paper's weaker
second constraint; its values are from memory of the paper, not re-read).

Deviations from the paper: the distance is the squared Euclidean distance of the relaxed
codes, not a learned metric network ``g``; the margins are fixed (the paper's adaptive margin
and its margin-based hard-negative mining are not used); quadruplets come from tfhash's
in-batch triplet mining (:func:`tfhash.losses.mining.mine_triplets`, ``"random"`` or
``"all"``) with, for each triplet, one ``l`` drawn uniformly among the batch items dissimilar
to both ``i`` and ``k`` (a triplet without such an ``l`` counts nowhere). Both terms are
averaged over the quadruplets, and the triplet baseline's quantization ``λ · (Q_L1 + μ · Q_iso)`` is
added over the pairs ``{i, j}, {i, k}, {l, k}`` they use
(:class:`~tfhash.losses.base.RankingLoss`).
"""

import keras
import tensorflow as tf

from tfhash.losses.base import DEFAULT_MARGIN, RankingLoss, _number, gather_pairs
from tfhash.losses.mining import mine_triplets

DEFAULT_SECOND_MARGIN = 0.5  # α₂


def chen_quadruplet_loss(distances, quadruplets, margin, second_margin):
    """Eq. 4 for each quadruplet, ``[Q]``: ``[d_ij − d_ik + α₁]₊ + [d_ij − d_lk + α₂]₊``.

    Args:
        distances: ``[B, B]`` squared distances.
        quadruplets: int32 ``[Q, 4]``, columns ``i, j, k, l``.
        margin, second_margin: α₁, α₂.
    """
    i, j, k, fourth = tf.unstack(quadruplets, num=4, axis=1)
    d_ij = gather_pairs(distances, i, j)
    return tf.nn.relu(d_ij - gather_pairs(distances, i, k) + margin) + tf.nn.relu(
        d_ij - gather_pairs(distances, fourth, k) + second_margin
    )


def mine_chen_quadruplets(similarity, mining, per_anchor, seed):
    """Triplets ``(i, j, k)`` mined as the triplet baseline's, each with one uniformly drawn
    ``l`` dissimilar to ``i`` and to ``k``.

    A triplet without such an ``l`` is kept but marked, not dropped: a second ``boolean_mask``
    on the mined set's data-dependent shape returns copies of its first row under XLA
    (TensorFlow 2.21; Keras's default on a GPU).

    Returns:
        ``(quadruplets, keep)``: int32 ``[Q, 4]`` (an unmarked row's ``l`` is arbitrary) and
        float32 ``[Q]``, 1 where the triplet has an ``l``, else 0.
    """
    triplets = mine_triplets(similarity, mining, per_anchor, seed)
    similarity = tf.convert_to_tensor(similarity)
    others = tf.logical_not(tf.eye(tf.shape(similarity)[0], dtype=tf.bool))
    dissimilar = tf.logical_not(similarity) & others
    i, k = triplets[:, 0], triplets[:, 2]
    valid = tf.gather(dissimilar, i) & tf.gather(dissimilar, k)  # [Q, B]: candidates for l
    count = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    uniform = keras.random.uniform(tf.shape(count), dtype="float32", seed=seed)
    rank = tf.minimum(
        tf.cast(uniform * tf.cast(count, tf.float32), tf.int32), tf.maximum(count - 1, 0)
    )
    ranked = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), axis=1, stable=True)
    fourth = tf.gather(ranked, rank, batch_dims=1)
    quadruplets = tf.concat([triplets, tf.cast(fourth, tf.int32)[:, None]], axis=1)
    return quadruplets, tf.cast(count > 0, tf.float32)


@keras.saving.register_keras_serializable(package="tfhash")
class ChenQuadrupletLoss(RankingLoss):
    """Chen et al.'s quadruplet loss (Eq. 4) + λ · the triplet baseline's quantization.

    Same arguments, defaults, terms and normalisation as
    :class:`~tfhash.losses.triplet.TripletLoss` (``margin`` is α₁, default 1.0;
    ``quadruplets_per_anchor`` is the number of triplets per anchor that each get an ``l``),
    plus ``second_margin``: α₂ > 0 (default 0.5).

    Example:

    >>> loss = ChenQuadrupletLoss(mining="all")
    >>> h = tf.constant([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    >>> float(loss.terms(tf.constant([0, 0, 1, 2]), h)["semantic"])
    0.0
    """

    pairs = ((0, 1), (0, 2), (3, 2))

    def __init__(
        self,
        margin=DEFAULT_MARGIN,
        *args,
        second_margin=DEFAULT_SECOND_MARGIN,
        name="quadruplet_chen",
        **kwargs,
    ):
        # α₁ is the paper's fixed 1.0, not K/2: Chen et al. give no rule in the code length.
        super().__init__(margin, *args, name=name, **kwargs)
        self.second_margin = _number("second_margin", second_margin, positive=True)

    def mine(self, similarity):
        return mine_chen_quadruplets(
            similarity, self.mining, self.quadruplets_per_anchor, self.seed_generator
        )

    def tuple_loss(self, distances, similarity, tuples, margin):
        return chen_quadruplet_loss(distances, tuples, margin, self.second_margin)

    def get_config(self):
        config = super().get_config()
        config.update(second_margin=self.second_margin)
        return config
