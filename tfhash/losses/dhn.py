"""DHN: Deep Hashing Network (Zhu, Long, Wang, Cao, AAAI 2016).

On relaxed codes ``u ∈ (−1, 1)^K`` (the tanh head, as the first author's code) with
``s_ij = 1`` for a similar pair and 0 otherwise, DHN maximises the likelihood of the pairwise
labels given the codes' inner products and penalises the distance of each entry from ±1
smoothly:

    θ_ij = c ⟨u_i, u_j⟩
    L = Σ_{i,j} ( log(1 + exp(θ_ij)) − s_ij θ_ij )                     (pairwise cross-entropy)
        + λ Σ_{i,j} Σ_k ( log cosh(|u_ik| − 1) + log cosh(|u_jk| − 1) )  (smooth quantization)

**The ½.** The first author's Caffe code uses the full inner product, ``c = 1`` (tfhash's
default); the public PyTorch version (DeepHash-pytorch) uses ``θ = ½ ⟨u_i, u_j⟩``:
``inner_product_scale=0.5`` reproduces it.

tfhash averages the cross-entropy over the batch's ordered pairs ``i ≠ j`` (the official
code also averages the N² pairs with ``i = j``, whose ``s_ii = 1`` only pushes ``|u_i|`` up).

**The quantization's strength.** By default (``quantization_reduction="mean"``) the
quantization is averaged over the ``B · K`` entries, ``λ · mean log cosh(|u| − 1)`` with
λ = 0.1, as DeepHash-pytorch's DHN (its ``alpha``), the public version whose published
figures tfhash's comparisons cite. The first author's Caffe code (zhuhan1236/dhn-caffe), where λ = 0.1 comes
from (``q_gamma``), applies ``(λ / N) · sign(u) · tanh(|u| − 1)`` to each entry in its backward
pass: a mean over the samples of a *sum* over the K bits, K times the default's gradient
(its forward pass reports the ``B · K`` mean, unweighted). ``quantization_reduction=
"sum_over_bits"`` trains with that strength, ``λ · mean_i Σ_k log cosh(|u_ik| − 1)``.
``log cosh`` is computed stably, ``log cosh x = |x| + softplus(−2|x|) − log 2``.
"""

import math

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss, _number, relaxed_codes

DEFAULT_QUANTIZATION_WEIGHT = 0.1  # λ: q_gamma of the first author's code, DeepHash-pytorch's alpha
#: ``"mean"``: over the B · K entries (DeepHash-pytorch); ``"sum_over_bits"``: over the samples
#: of the sum over the K bits (the first author's Caffe backward pass, K times stronger).
QUANTIZATION_REDUCTIONS = ("mean", "sum_over_bits")


def log_cosh(x):
    """``log cosh x``, stable for any ``x``."""
    x = tf.abs(x)
    return x + tf.nn.softplus(-2.0 * x) - math.log(2.0)


def pairwise_cross_entropy(u, similarity, scale=1.0):
    """Mean over the ordered pairs ``i ≠ j`` of ``log(1 + exp θ_ij) − s_ij θ_ij``,
    ``θ = scale · u uᵀ``."""
    off_diagonal = 1.0 - tf.eye(tf.shape(u)[0])
    s = tf.cast(similarity, tf.float32)
    theta = scale * tf.matmul(u, u, transpose_b=True)
    nll = tf.nn.softplus(theta) - s * theta
    return tf.reduce_sum(off_diagonal * nll) / tf.maximum(tf.reduce_sum(off_diagonal), 1.0)


@keras.saving.register_keras_serializable(package="tfhash")
class DHNLoss(HashingLoss):
    """DHN's loss: pairwise cross-entropy on inner products + λ · mean log cosh(|u| − 1).

    :meth:`terms` reports ``"cross_entropy"`` and ``"quantization"`` (unweighted, as
    ``quantization_reduction`` reduces it) and the total ``cross_entropy + λ · quantization``
    as ``"loss"``.

    Args:
        quantization_weight: λ ≥ 0 (default 0.1, the first author's code's and
            DeepHash-pytorch's; 0 drops the term).
        inner_product_scale: c > 0 in ``θ = c ⟨u_i, u_j⟩``: 1 (default, the first author's
            code, no ½) or 0.5 (the public PyTorch version).
        quantization_reduction: ``"mean"`` (default): ``mean log cosh(|u| − 1)`` over the
            ``B · K`` entries, DeepHash-pytorch's strength; ``"sum_over_bits"``: the mean over
            the B samples of the sum over the K bits, the first author's Caffe code's gradient
            (K times the default's).
        name, reduction: as :class:`~tfhash.losses.base.HashingLoss`.

    Example:

    >>> loss = DHNLoss()
    >>> terms = loss.terms(tf.constant([0, 0, 1]), tf.constant([[.9, .9], [.8, .9], [-.9, -.8]]))
    >>> sorted(terms)
    ['cross_entropy', 'loss', 'quantization']
    """

    term_names = ("cross_entropy", "quantization")

    def __init__(
        self,
        quantization_weight=DEFAULT_QUANTIZATION_WEIGHT,
        inner_product_scale=1.0,
        quantization_reduction="mean",
        name="dhn",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.quantization_weight = _number("quantization_weight", quantization_weight)
        self.inner_product_scale = _number(
            "inner_product_scale", inner_product_scale, positive=True
        )
        if quantization_reduction not in QUANTIZATION_REDUCTIONS:
            raise UsageError(
                f"quantization_reduction must be {' or '.join(QUANTIZATION_REDUCTIONS)} (the "
                f"first author's strength: sum_over_bits), got {quantization_reduction!r}"
            )
        self.quantization_reduction = quantization_reduction

    def terms(self, y_true, y_pred):
        u = relaxed_codes(y_pred)
        cross_entropy = pairwise_cross_entropy(u, self.similarity(y_true), self.inner_product_scale)
        entries = log_cosh(tf.abs(u) - 1.0)
        if self.quantization_reduction == "sum_over_bits":
            quantization = tf.reduce_mean(tf.reduce_sum(entries, axis=1))
        else:
            quantization = tf.reduce_mean(entries)
        return {
            "loss": cross_entropy + self.quantization_weight * quantization,
            "cross_entropy": cross_entropy,
            "quantization": quantization,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            quantization_weight=self.quantization_weight,
            inner_product_scale=self.inner_product_scale,
            quantization_reduction=self.quantization_reduction,
        )
        return config
