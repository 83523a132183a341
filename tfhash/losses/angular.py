"""Angular loss (Wang, Zhou, Wen, Liu, Lin, ICCV 2017), on relaxed codes.

One of the metric-learning rows of the LSDH paper's Fig. 11. For a triplet ``(a, p, n)`` the
angular loss bounds the angle at the negative of the triangle it forms (Eq. 5):

    l_ang(a, p, n) = max(0, |x_a − x_p|² − 4 tan²α |x_n − x_c|²),   x_c = (x_a + x_p) / 2

and its batch form (Eqs. 7–8), which compares every anchor-positive pair with all the
negatives of the batch through a smooth log-sum-exp,

    f_{a,p,n} = 4 tan²α (x_a + x_p)ᵀ x_n − 2 (1 + tan²α) x_aᵀ x_p
    l_ang(B) = 1/|P| Σ_{(a,p) ∈ P} log(1 + Σ_{n: y_n ≠ y_a, y_p} exp f_{a,p,n})     (Eq. 8)

with α = 45° by default. tfhash implements the batch form with P every ordered pair of
similar items (class-balanced batches have many positives per anchor; the paper's N-pair
batches have one), on L2-normalised codes ``x = h / |h|`` — the same signs, so the same binary
codes, and ``f`` bounded, so ``exp f`` cannot overflow on 48-bit codes; the paper's batch form
works on normalised embeddings too (from memory of the paper, not re-read). It adds the triplet
baseline's quantization ``λ · (Q_L1 + μ · Q_iso)`` on ``h`` over every pair of the batch
(:class:`~tfhash.losses.base.PairQuantizedLoss`). The paper's combination with the N-pair loss
(``l_npair + λ_ang · l_ang``) is not included: this is the angular loss alone.
"""

import math

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import PairQuantizedLoss

DEFAULT_ANGLE = 45.0  # degrees
_MASKED = -1e9


def angular_loss(h, similarity, angle=DEFAULT_ANGLE):
    """The batch angular loss ``l_ang(B)`` (Eq. 8) on L2-normalised ``h``.

    Args:
        h: ``[B, K]`` codes (normalised here).
        similarity: boolean ``[B, B]``.
        angle: α in degrees, in (0, 90).

    Returns:
        A scalar; 0 for a batch without a positive pair.
    """
    x = tf.math.l2_normalize(h, axis=1)
    batch = tf.shape(x)[0]
    others = tf.logical_not(tf.eye(batch, dtype=tf.bool))
    tan2 = math.tan(math.radians(angle)) ** 2
    gram = tf.matmul(x, x, transpose_b=True)
    # f[a, p, n] = 4 tan²α (x_a·x_n + x_p·x_n) − 2 (1 + tan²α) x_a·x_p
    f = 4.0 * tan2 * (gram[:, None, :] + gram[None, :, :]) - 2.0 * (1.0 + tan2) * gram[:, :, None]
    negatives = tf.logical_not(similarity) & others
    valid = negatives[:, None, :] & negatives[None, :, :]
    per_pair = tf.nn.softplus(tf.reduce_logsumexp(tf.where(valid, f, _MASKED), axis=2))
    positives = tf.cast(similarity & others, x.dtype)
    return tf.reduce_sum(positives * per_pair) / tf.maximum(tf.reduce_sum(positives), 1.0)


@keras.saving.register_keras_serializable(package="tfhash")
class AngularLoss(PairQuantizedLoss):
    """The batch angular loss (Eq. 8) + λ · the triplet baseline's quantization, on ``h``.

    :meth:`terms` reports ``"semantic"`` (``l_ang(B)``), ``"quantization"`` and
    ``"isometric"`` (unweighted) and the total as ``"loss"``. Memory: one ``[B, B, B]``
    tensor (B³ floats).

    Args:
        angle: α in degrees, ``0 < α < 90`` (default 45).
        quantization_weight, isometric_weight, name, reduction: as
            :class:`~tfhash.losses.base.PairQuantizedLoss` (λ = 0.8, μ = 0.25 / 0.75).

    Example:

    >>> loss = AngularLoss(angle=40)
    >>> terms = loss.terms(tf.constant([0, 0, 1]), tf.constant([[.9, .9], [.8, .9], [-.9, -.8]]))
    >>> sorted(terms)
    ['isometric', 'loss', 'quantization', 'semantic']
    """

    def __init__(self, angle=DEFAULT_ANGLE, name="angular", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0 < angle < 90:
            raise UsageError(
                f"angle must be in degrees between 0 and 90 (the angular loss's α, "
                f"default 45), got {angle!r}"
            )
        self.angle = float(angle)

    def semantic(self, h, distances, similarity):
        return angular_loss(h, similarity, self.angle)

    def get_config(self):
        config = super().get_config()
        config.update(angle=self.angle)
        return config
