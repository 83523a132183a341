"""HashNet: deep learning to hash by continuation (Cao, Long, Wang, Yu, ICCV 2017).

The network's last layer is linear (``z``, the linear head, ``Method.head = "linear"``);
HashNet's activation is a scaled tanh whose scale β grows during training, so that the
relaxed codes approach ``sign(z)`` (continuation):

    h = tanh(β z)                                                            (Eq. 7)
    θ_ij = α ⟨h_i, h_j⟩,  α = 10 / K  (the official code's ``sigmoid_param``)
    L = Σ_{s_ij ∈ S} w_ij ( log(1 + exp(θ_ij)) − s_ij θ_ij )                 (Eq. 6, weighted ML)
    w_ij = |S| / |S₁| if s_ij = 1,  |S| / |S₀| if s_ij = 0                    (Eq. 5, c_ij = 1)

with S the pairs used, S₁ / S₀ its similar / dissimilar ones. tfhash uses the batch's ordered
pairs ``i ≠ j`` and averages (``L / |S|``), computing ``log(1 + exp θ)`` as a stable softplus.

**Weighting.** The default is the paper's Eq. 5 (``c_ij = 1``), which balances the two kinds of
pair whatever the batch holds; tfhash's CIFAR-10 figures are measured with it. Both official
implementations (thuml/HashNet, PyTorch ``pairwise_loss`` and Caffe ``PairwiseLoss``) weight
instead every similar pair by a constant ``class_num`` and every dissimilar pair by 1, and
normalise by the weighted count:

    L = ( class_num · Σ_{S₁} ℓ_ij + Σ_{S₀} ℓ_ij ) / ( class_num · |S₁| + |S₀| )

``official_weighting=True`` trains that (``class_num``: 1 in its PyTorch ``pairwise_loss`` and README, 5, 100
and 1 in its Caffe configurations for NUS-WIDE-81, ImageNet and COCO; its author suggests the
number of classes, 10, for CIFAR-10, thuml/HashNet#28). The two differ most on small batches
whose pairs are far from balanced.

β follows the official schedule ``β = (1 + 0.005 t)^0.5``, t the training iteration counted
from 1, as the official PyTorch code counts it, updated every 200 iterations (t is rounded
down to a multiple of 200): the step after ``n`` completed ones is iteration ``t = n + 1``, so
β changes on the 200th step, as there. The iteration comes from the optimizer's
``iterations`` (handed over by :class:`tfhash.models.HashingModel`), which is saved with the
checkpoint: a resumed run continues with the β it had, with no other state to save. Because
``sign(tanh(β z)) = sign(z)``, the exported codes are the same for every β (the exported
embedding is ``z``).
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss, _number

DEFAULT_SCALE = 10.0  # α = 10 / K
DEFAULT_BETA_STEP = 0.005
DEFAULT_BETA_POWER = 0.5
DEFAULT_BETA_EVERY = 200
DEFAULT_CLASS_NUM = 1.0  # the official PyTorch pairwise_loss's default weight of similar pairs


def beta_schedule(
    iterations, step=DEFAULT_BETA_STEP, power=DEFAULT_BETA_POWER, every=DEFAULT_BETA_EVERY
):
    """HashNet's continuation in the step after ``iterations`` completed ones:
    ``β = (1 + step · t)^power``, ``t = iterations + 1`` (the official count, from 1) rounded
    down to a multiple of ``every``. ``iterations`` is a number or a scalar tensor (``None``:
    no training step, β = 1)."""
    if iterations is None:
        return tf.constant(1.0)
    t = tf.cast(iterations, tf.float32) + 1.0
    t = tf.floor(t / every) * every
    return tf.pow(1.0 + step * t, power)


def hashnet_likelihood(h, similarity, alpha, class_num=None):
    """The weighted negative log-likelihood (Eq. 6) over the ordered pairs ``i ≠ j``, averaged.

    Args:
        h: float32 ``[B, K]`` relaxed codes (``tanh(β z)``).
        similarity: boolean ``[B, B]``.
        alpha: α, the inner product's scale.
        class_num: ``None`` for the paper's balanced weights (Eq. 5); a number for the
            official code's: similar pairs weighted ``class_num``, dissimilar 1, the sum
            divided by ``class_num · |S₁| + |S₀|``.

    A batch with only similar (or only dissimilar) pairs has nothing to balance: the weight
    of its one kind is ``|S| / |S| = 1`` and the loss is the plain mean (under either
    weighting).
    """
    batch = tf.shape(h)[0]
    off_diagonal = 1.0 - tf.eye(batch)
    s = tf.cast(similarity, tf.float32)
    theta = alpha * tf.matmul(h, h, transpose_b=True)
    nll = tf.nn.softplus(theta) - s * theta
    num_pairs = tf.reduce_sum(off_diagonal)
    num_similar = tf.reduce_sum(off_diagonal * s)
    num_dissimilar = num_pairs - num_similar
    if class_num is not None:
        weights = off_diagonal * (class_num * s + (1.0 - s))
        return tf.reduce_sum(weights * nll) / tf.maximum(tf.reduce_sum(weights), 1e-12)
    weights = off_diagonal * (
        s * num_pairs / tf.maximum(num_similar, 1.0)
        + (1.0 - s) * num_pairs / tf.maximum(num_dissimilar, 1.0)
    )
    return tf.reduce_sum(weights * nll) / tf.maximum(num_pairs, 1.0)


@keras.saving.register_keras_serializable(package="tfhash")
class HashNetLoss(HashingLoss):
    """HashNet's weighted maximum likelihood on ``h = tanh(β z)`` with β by continuation.

    ``y_pred`` is the linear head's ``z`` (``[B, K]``); the loss applies ``tanh(β z)`` itself.
    :meth:`terms` (``y_true, y_pred, iterations=None``) reports ``"likelihood"`` (the loss)
    and ``"beta"`` (the β it used, logged so that the schedule can be read in
    ``history.csv``); ``iterations`` is the optimizer's iteration count, which
    :class:`tfhash.models.HashingModel` passes to a loss whose ``uses_iterations`` is true.
    Called without it (e.g. under a plain ``keras.Model``) β stays 1.

    Args:
        alpha: α > 0 of ``θ = α ⟨h_i, h_j⟩``; ``None`` (default) for the official ``10 / K``.
        beta_step, beta_power: the schedule's ``β = (1 + beta_step · t)^beta_power``
            (defaults 0.005 and 0.5, the official code's); ``beta_step ≥ 0`` and
            ``beta_power ≥ 0`` (0 for either keeps β = 1: no continuation).
        beta_every: β is updated every this many iterations (default 200, the official
            code's; an integer ≥ 1).
        official_weighting: ``False`` (default): the paper's balanced weights (Eq. 5);
            ``True``: the official code's, similar pairs weighted ``class_num``.
        class_num: the official weighting's weight of a similar pair, > 0 (default 1, the
            official PyTorch ``pairwise_loss``'s; its author suggests the number of classes for
            CIFAR-10); only with ``official_weighting=True``.
        name, reduction: as :class:`~tfhash.losses.base.HashingLoss`.

    Example:

    >>> loss = HashNetLoss()
    >>> round(float(loss.beta(1000)), 4)  # (1 + 0.005 · 1000)^0.5
    2.4495
    >>> sorted(loss.terms(tf.constant([0, 0, 1]), tf.ones((3, 4)), iterations=450))
    ['beta', 'likelihood', 'loss']
    """

    term_names = ("likelihood", "beta")
    uses_iterations = True

    def __init__(
        self,
        alpha=None,
        beta_step=DEFAULT_BETA_STEP,
        beta_power=DEFAULT_BETA_POWER,
        beta_every=DEFAULT_BETA_EVERY,
        official_weighting=False,
        class_num=DEFAULT_CLASS_NUM,
        name="hashnet",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.alpha = None if alpha is None else _number("alpha", alpha, positive=True)
        self.beta_step = _number("beta_step", beta_step)
        self.beta_power = _number("beta_power", beta_power)
        if isinstance(beta_every, bool) or not isinstance(beta_every, int) or beta_every < 1:
            raise UsageError(
                f"beta_every must be an integer of at least 1 (iterations between "
                f"updates of β; HashNet's 200), got {beta_every!r}"
            )
        self.beta_every = beta_every
        if not isinstance(official_weighting, bool):
            raise UsageError(
                f"official_weighting must be True or False (the official code's "
                f"class_num weighting), got {official_weighting!r}"
            )
        self.official_weighting = official_weighting
        self.class_num = _number("class_num", class_num, positive=True)
        if not official_weighting and self.class_num != DEFAULT_CLASS_NUM:
            raise UsageError(
                f"class_num={class_num!r} weights similar pairs only under the "
                "official weighting: add official_weighting=True"
            )

    def beta(self, iterations):
        """β in the training step that follows ``iterations`` completed ones."""
        return beta_schedule(iterations, self.beta_step, self.beta_power, self.beta_every)

    def terms(self, y_true, y_pred, iterations=None):
        z = tf.cast(y_pred, tf.float32)
        if z.shape.rank != 2:
            raise UsageError(f"y_pred must be codes [B, K], got shape {z.shape}")
        beta = self.beta(iterations)
        h = tf.tanh(beta * z)
        alpha = (
            self.alpha
            if self.alpha is not None
            else (DEFAULT_SCALE / tf.cast(tf.shape(z)[1], tf.float32))
        )
        likelihood = hashnet_likelihood(
            h, self.similarity(y_true), alpha, self.class_num if self.official_weighting else None
        )
        return {"loss": likelihood, "likelihood": likelihood, "beta": beta}

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            beta_step=self.beta_step,
            beta_power=self.beta_power,
            beta_every=self.beta_every,
            official_weighting=self.official_weighting,
            class_num=self.class_num,
        )
        return config
