"""DSH: Deep Supervised Hashing (Liu, Wang, Shan, Chen, CVPR 2016), the LSDH tables' "DSP".

On real-valued outputs ``u`` (the linear head, ``Method.head = "linear"``; the code is
``sign(u)``), for a pair with ``y_ij = 0`` if the images are similar and 1 otherwise, and
``D_ij = |u_i − u_j|²``, the relaxed pair loss (Eq. 5) is

    L_r(u_i, u_j, y_ij) = ½ (1 − y_ij) D_ij + ½ y_ij max(m − D_ij, 0)
                          + α (‖|u_i| − 1‖₁ + ‖|u_j| − 1‖₁)                    (Eq. 5)

with the margin ``m = 2K`` and ``α = 0.01`` (the paper's and its official code's). The first
two terms are a contrastive loss; the third pulls every entry towards ±1.

tfhash averages Eq. 5 over the batch's ordered pairs ``i ≠ j``. The official Caffe layer
(lhmRyan/deep-supervised-hashing-DSH, ``HashingLossLayer``) reports ``Σ_{i<j} [D_ij or
max(m − D_ij, 0)] / (n (n − 1)) + α Σ_i ‖|u_i| − 1‖₁ / n``: the same contrastive value as
tfhash's, and half its regulariser. The gradient it writes is half the gradient of tfhash's loss
at the same α (for the contrastive part, half the derivative of its own forward value): the same
direction, so tfhash at α = 0.01 and half the learning rate takes the official layer's SGD steps.

DeepHash-pytorch's ``α · mean |1 − |u||`` is a mean over the ``B · K`` entries, where tfhash's
regulariser is ``2 · mean_i Σ_k``: its objective is tfhash's with ``α = α_dhp / (2K)`` (its
0.1 is 0.1 / (2K) here). Its pairs run against a detached memory bank of outputs, so only the
batch's side of each pair gets a gradient, half of the contrastive gradient of the same
objective: its training direction is tfhash's at ``α = α_dhp / K``.
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss, _number
from tfhash.losses.pairwise import squared_distances

DEFAULT_ALPHA = 0.01


def dsh_terms(u, similarity, margin, alpha):
    """DSH's Eq. 5 on a batch, averaged over the ordered pairs ``i ≠ j``.

    Args:
        u: float32 ``[B, K]`` real-valued outputs.
        similarity: boolean ``[B, B]`` (``y_ij = 0`` where true).
        margin: m (the paper: ``2K``).
        alpha: α.

    Returns:
        ``(loss, contrastive, regularizer)``: the total, the mean of the first two terms of
        Eq. 5 and the mean of ``‖|u_i| − 1‖₁ + ‖|u_j| − 1‖₁`` over the pairs (unweighted).
    """
    batch = tf.shape(u)[0]
    distances = squared_distances(u)
    y = 1.0 - tf.cast(similarity, u.dtype)  # 0 similar, 1 dissimilar
    off_diagonal = 1.0 - tf.eye(batch, dtype=u.dtype)
    num_pairs = tf.maximum(tf.reduce_sum(off_diagonal), 1.0)
    pair = 0.5 * (1.0 - y) * distances + 0.5 * y * tf.nn.relu(margin - distances)
    contrastive = tf.reduce_sum(off_diagonal * pair) / num_pairs
    per_item = tf.reduce_sum(tf.abs(tf.abs(u) - 1.0), axis=1)
    # Over the ordered pairs i ≠ j each item is i in B − 1 of them and j in B − 1: the mean of
    # r_i + r_j is twice the mean of r_i.
    regularizer = 2.0 * tf.reduce_mean(per_item)
    return contrastive + alpha * regularizer, contrastive, regularizer


@keras.saving.register_keras_serializable(package="tfhash")
class DSHLoss(HashingLoss):
    """DSH's loss (Eq. 5): contrastive loss with margin ``m = 2K`` + α · L1 regulariser.

    On real-valued codes ``u`` (``[B, K]``, the linear head) and labels (class ids or
    multi-hot; similar = shares a label),

        loss = mean_{i≠j} [ ½ (1 − y_ij) D_ij + ½ y_ij max(m − D_ij, 0) ]
               + α · mean_{i≠j} [ ‖|u_i| − 1‖₁ + ‖|u_j| − 1‖₁ ]

    :meth:`terms` reports ``"contrastive"`` and ``"regularizer"`` (unweighted) and the total
    as ``"loss"``. The regulariser's sub-gradient is ``sign(|u| − 1) · sign(u)`` (0 at the
    measure-zero points ``u = 0`` and ``|u| = 1``; the official layer uses +1 at ``u = 0``).

    Args:
        margin: m > 0 in squared-Euclidean units of ``u``; ``None`` (default) for the paper's
            ``2K``, K read from the codes.
        alpha: α > 0, the regulariser's weight (default 0.01, the paper's and the official
            code's; DeepHash-pytorch's 0.1 is ``0.1 / (2K)`` here, see the module docstring).
        name, reduction: as :class:`~tfhash.losses.base.HashingLoss`.

    Example:

    >>> loss = DSHLoss()
    >>> terms = loss.terms(tf.constant([0, 0, 1]),
    ...                    tf.constant([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]]))
    >>> float(terms["loss"])  # similar pairs coincide, dissimilar at D = 8 ≥ m = 4, all ±1
    0.0

    In training: ``python -m tfhash.train --method=dsh`` (``--method_args=alpha=0.1``).
    """

    term_names = ("contrastive", "regularizer")

    def __init__(
        self, margin=None, alpha=DEFAULT_ALPHA, name="dsh", reduction="sum_over_batch_size"
    ):
        super().__init__(name=name, reduction=reduction)
        self.margin = None if margin is None else _number("margin", margin, positive=True)
        self.alpha = _number("alpha", alpha, positive=True)

    def terms(self, y_true, y_pred):
        u = tf.cast(y_pred, tf.float32)
        if u.shape.rank != 2:
            raise UsageError(f"y_pred must be codes [B, K], got shape {u.shape}")
        margin = (
            self.margin if self.margin is not None else 2.0 * tf.cast(tf.shape(u)[1], tf.float32)
        )
        loss, contrastive, regularizer = dsh_terms(u, self.similarity(y_true), margin, self.alpha)
        return {"loss": loss, "contrastive": contrastive, "regularizer": regularizer}

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, alpha=self.alpha)
        return config
