"""Lifted structured loss (Song, Xiang, Jegelka, Savarese, CVPR 2016), on relaxed codes.

One of the metric-learning rows of the LSDH paper's Fig. 11. With Euclidean distances
``D_ij = |h_i − h_j|`` (not squared), P the batch's positive pairs and N its negative pairs,
every positive pair is compared with every negative pair of either of its ends:

    J̃_ij = log( Σ_{(i,k) ∈ N} exp(α − D_ik) + Σ_{(j,l) ∈ N} exp(α − D_jl) ) + D_ij   (Eq. 4)
    J̃ = 1 / (2 |P|) Σ_{(i,j) ∈ P} max(0, J̃_ij)²

with the margin α = 1 (the paper's). tfhash computes the log-sum-exp stably and adds the
triplet baseline's quantization ``λ · (Q_L1 + μ · Q_iso)`` over every pair of the batch
(:class:`~tfhash.losses.base.PairQuantizedLoss`), so that Fig. 11's comparison with LSDH and
the triplet baseline differs only in the ranking term. P counts each unordered pair once.
"""

import keras
import tensorflow as tf

from tfhash.losses.base import PairQuantizedLoss, _number

DEFAULT_MARGIN = 1.0  # α of Eq. 4, in Euclidean units of h (one bit apart: 2)
_MASKED = -1e9  # a logit that contributes nothing to a log-sum-exp, with a finite gradient


def lifted_structured_loss(distances, similarity, margin=DEFAULT_MARGIN):
    """The lifted structured loss ``J̃`` of a batch.

    Args:
        distances: ``[B, B]`` squared distances ``|h_i − h_j|²`` (their square roots are
            taken here; a zero distance gets a zero gradient, never NaN).
        similarity: boolean ``[B, B]``.
        margin: α.

    Returns:
        A scalar; 0 for a batch without a positive pair.
    """
    batch = tf.shape(distances)[0]
    others = tf.logical_not(tf.eye(batch, dtype=tf.bool))
    euclidean = tf.sqrt(tf.maximum(distances, 1e-12))
    negatives = tf.logical_not(similarity) & others
    logits = tf.where(negatives, margin - euclidean, _MASKED)
    per_item = tf.reduce_logsumexp(logits, axis=1)  # log Σ_k exp(α − D_ik) over i's negatives
    a, b = per_item[:, None], per_item[None, :]
    top = tf.maximum(a, b)
    both = top + tf.math.log(tf.exp(a - top) + tf.exp(b - top))
    j = both + euclidean
    upper = tf.cast(tf.linalg.band_part(tf.ones((batch, batch)), 0, -1), tf.bool) & others
    positives = tf.cast(similarity & upper, distances.dtype)
    num_positive = tf.reduce_sum(positives)
    return tf.reduce_sum(positives * tf.square(tf.nn.relu(j))) / (
        2.0 * tf.maximum(num_positive, 1.0)
    )


@keras.saving.register_keras_serializable(package="tfhash")
class LiftedStructuredLoss(PairQuantizedLoss):
    """Lifted structured loss (Eq. 4) + λ · the triplet baseline's quantization, on ``h``.

    :meth:`terms` reports ``"semantic"`` (``J̃``), ``"quantization"`` and ``"isometric"``
    (unweighted, over every pair of the batch) and the total as ``"loss"``.

    Args:
        margin: α > 0 of Eq. 4 in Euclidean units of ``h`` (default 1.0, the paper's; codes
            one bit apart are 2 apart).
        quantization_weight, isometric_weight, name, reduction: as
            :class:`~tfhash.losses.base.PairQuantizedLoss` (λ = 0.8, μ = 0.25 / 0.75).

    Example:

    >>> loss = LiftedStructuredLoss()
    >>> terms = loss.terms(tf.constant([0, 0, 1]), tf.constant([[.9, .9], [.8, .9], [-.9, -.8]]))
    >>> sorted(terms)
    ['isometric', 'loss', 'quantization', 'semantic']
    """

    def __init__(self, margin=DEFAULT_MARGIN, name="lifted", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = _number("margin", margin, positive=True)

    def semantic(self, h, distances, similarity):
        return lifted_structured_loss(distances, similarity, self.margin)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin)
        return config
