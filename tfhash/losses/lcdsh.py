"""LCDSH: pairwise likelihood + a locality constraint between relaxed and binary codes.

Zhu, Gao, "Locality Constrained Deep Supervised Hashing for Image Retrieval", IJCAI 2017
(Hao Zhu and Shenghua Gao; the abstract in ``shared/papers`` is not this paper's). The
paper's equations are not available here. tfhash implements, exactly, the only concrete
published form, that of the public DeepHash-pytorch code (which PaddleClas copies): with
relaxed codes ``u`` from a linear head (no tanh), binary codes ``b = sign(u)`` held
constant, for every ordered pair ``(i, j)`` of the batch, ``i = j`` included,

    Θ_ij  = ½ u_iᵀu_j, clipped to [−50, 50]
    Θᵇ_ij = ½ b_iᵀb_j
    s̃_ij  = +1 if i and j share a label, else −1

    L = (1/B²) Σ_ij log(1 + exp(−s̃_ij Θ_ij))  +  λ · (1/B²) Σ_ij (σ(Θ_ij) − σ(Θᵇ_ij))²

with λ = 3. The first term is the negative log-likelihood of the pairwise labels given
the codes (DPSH's); the second, the locality constraint, asks each pair's similarity
probability from the relaxed codes to equal the one from their binary codes, so that
quantization keeps the similarity structure. Its gradient flows through ``Θ`` only; the
clip at ±50 stops the gradient of pairs beyond it (the code's ``clamp``).
"""

import keras
import tensorflow as tf

from tfhash.losses.base import HashingLoss, _number, relaxed_codes
from tfhash.models.layers import sign

DEFAULT_LOCALITY_WEIGHT = 3.0  # λ of the public code
THETA_CLIP = 50.0


def lcdsh_terms(u, similarity):
    """The two LCDSH terms of a batch, unweighted: (likelihood, locality).

    Args:
        u: float32 relaxed codes ``[B, K]`` of a linear head.
        similarity: boolean ``[B, B]``, which pairs share a label.

    Returns:
        Two scalars: ``mean_ij log(1 + exp(−s̃_ij Θ_ij))`` and
        ``mean_ij (σ(Θ_ij) − σ(Θᵇ_ij))²`` over all ``B²`` ordered pairs.

    Example:

    >>> u = tf.constant([[2.0, 2.0], [2.0, 2.0]])
    >>> likelihood, locality = lcdsh_terms(u, tf.ones((2, 2), bool))
    >>> round(float(likelihood), 4), round(float(locality), 4)
    (0.0181, 0.063)
    """
    b = tf.stop_gradient(sign(u, u.dtype))
    theta = tf.clip_by_value(0.5 * tf.matmul(u, u, transpose_b=True), -THETA_CLIP, THETA_CLIP)
    theta_b = 0.5 * tf.matmul(b, b, transpose_b=True)
    s = 2.0 * tf.cast(similarity, u.dtype) - 1.0
    likelihood = tf.reduce_mean(tf.nn.softplus(-s * theta))
    locality = tf.reduce_mean(tf.square(tf.sigmoid(theta) - tf.sigmoid(theta_b)))
    return likelihood, locality


@keras.saving.register_keras_serializable(package="tfhash")
class LCDSHLoss(HashingLoss):
    """LCDSH's loss (the public code's form): ``likelihood + λ · locality`` over all B² pairs.

    See the module docstring for the equations. Train it on a linear head
    (``tfhash.methods`` registers ``lcdsh`` with ``head="linear"``): ``u`` is unbounded,
    and its sign is the code.

    :meth:`terms` reports ``"likelihood"`` and ``"locality"`` unweighted.

    Args:
        quantization_weight: λ ≥ 0, the weight of the locality constraint (default 3, the
            public code's). Named as every method's quantization weight, so that one
            ``--quantization_weight`` flag sets it: the constraint is LCDSH's answer to the
            quantization error.
        name, reduction: as :class:`~tfhash.losses.HashingLoss`.

    Example:

    >>> loss = LCDSHLoss()
    >>> terms = loss.terms(tf.constant([0, 0, 1]), tf.constant([[3.0, 1], [2, 2], [-2, -1]]))
    >>> sorted(terms)
    ['likelihood', 'locality', 'loss']
    """

    term_names = ("likelihood", "locality")

    def __init__(
        self,
        quantization_weight=DEFAULT_LOCALITY_WEIGHT,
        name="lcdsh",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.quantization_weight = _number("quantization_weight", quantization_weight)

    def terms(self, y_true, y_pred):
        u = relaxed_codes(y_pred)
        likelihood, locality = lcdsh_terms(u, self.similarity(tf.convert_to_tensor(y_true)))
        return {
            "loss": likelihood + self.quantization_weight * locality,
            "likelihood": likelihood,
            "locality": locality,
        }

    def get_config(self):
        config = super().get_config()
        config.update(quantization_weight=self.quantization_weight)
        return config
