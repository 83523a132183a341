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

β follows the official schedule ``β = (1 + 0.005 t)^0.5``, t the training iteration, updated
every 200 iterations (t is rounded down to a multiple of 200). The iteration is the optimizer's
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


def beta_schedule(iterations, step=DEFAULT_BETA_STEP, power=DEFAULT_BETA_POWER,
                  every=DEFAULT_BETA_EVERY):
    """HashNet's continuation: ``β = (1 + step · t)^power``, t rounded down to a multiple of
    ``every``. ``iterations`` is a number or a scalar tensor (``None``: 0, β = 1)."""
    t = tf.cast(0 if iterations is None else iterations, tf.float32)
    t = tf.floor(t / every) * every
    return tf.pow(1.0 + step * t, power)


def hashnet_likelihood(h, similarity, alpha):
    """The weighted negative log-likelihood (Eq. 6) over the ordered pairs ``i ≠ j``, averaged.

    Args:
        h: float32 ``[B, K]`` relaxed codes (``tanh(β z)``).
        similarity: boolean ``[B, B]``.
        alpha: α, the inner product's scale.

    A batch with only similar (or only dissimilar) pairs has nothing to balance: the weight
    of its one kind is ``|S| / |S| = 1`` and the loss is the plain mean.
    """
    batch = tf.shape(h)[0]
    off_diagonal = 1.0 - tf.eye(batch)
    s = tf.cast(similarity, tf.float32)
    theta = alpha * tf.matmul(h, h, transpose_b=True)
    nll = tf.nn.softplus(theta) - s * theta
    num_pairs = tf.reduce_sum(off_diagonal)
    num_similar = tf.reduce_sum(off_diagonal * s)
    num_dissimilar = num_pairs - num_similar
    weights = off_diagonal * (s * num_pairs / tf.maximum(num_similar, 1.0)
                              + (1.0 - s) * num_pairs / tf.maximum(num_dissimilar, 1.0))
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

    def __init__(self, alpha=None, beta_step=DEFAULT_BETA_STEP, beta_power=DEFAULT_BETA_POWER,
                 beta_every=DEFAULT_BETA_EVERY, name="hashnet", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.alpha = None if alpha is None else _number("alpha", alpha, positive=True)
        self.beta_step = _number("beta_step", beta_step)
        self.beta_power = _number("beta_power", beta_power)
        if isinstance(beta_every, bool) or not isinstance(beta_every, int) or beta_every < 1:
            raise UsageError(f"beta_every must be an integer of at least 1 (iterations between "
                             f"updates of β; HashNet's 200), got {beta_every!r}")
        self.beta_every = beta_every

    def beta(self, iterations):
        """β after ``iterations`` training iterations."""
        return beta_schedule(iterations, self.beta_step, self.beta_power, self.beta_every)

    def terms(self, y_true, y_pred, iterations=None):
        z = tf.cast(y_pred, tf.float32)
        if z.shape.rank != 2:
            raise UsageError(f"y_pred must be codes [B, K], got shape {z.shape}")
        beta = self.beta(iterations)
        h = tf.tanh(beta * z)
        alpha = self.alpha if self.alpha is not None else (
            DEFAULT_SCALE / tf.cast(tf.shape(z)[1], tf.float32))
        likelihood = hashnet_likelihood(h, self.similarity(y_true), alpha)
        return {"loss": likelihood, "likelihood": likelihood, "beta": beta}

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, beta_step=self.beta_step, beta_power=self.beta_power,
                      beta_every=self.beta_every)
        return config

