"""CNNH's second stage: the network regresses the target codes of the first (Xia et al., AAAI 2014).

Stage 1 (:mod:`tfhash.cnnh`, NumPy) finds target codes ``H ∈ {±1}^{n×q}`` with
``(1/q) H Hᵀ ≈ S``; in a tfhash run the batches of the training images then carry each image's
target code in place of its labels. This loss fits the relaxed codes to them::

    L = mean_{b, k} (h_bk − H_bk)²

The paper does not give its stage-2 loss or output nonlinearity (probably sigmoid outputs with
cross-entropy against 0/1 targets; ``../shared/research/methods.md`` B4). tfhash uses its tanh
head and the squared error against the ±1 targets — on ``s = (h + 1)/2`` that is the squared
error against 0/1 targets, up to a factor 4 — as DeepHash-pytorch's re-implementation does
(there with a linear output). CNNH+'s extra class outputs are not built.
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss


def target_regression(h, targets):
    """``mean (h − H)²`` over the batch and the bits."""
    return tf.reduce_mean(tf.square(h - targets))


@keras.saving.register_keras_serializable(package="tfhash")
class CNNHLoss(HashingLoss):
    """Squared error between the relaxed codes and the stage-1 target codes (CNNH, stage 2).

    ``y_true`` is the batch's target codes ``[B, K]`` of ±1 (from :func:`tfhash.cnnh.prepare`,
    which ``python -m tfhash.train --method=cnnh`` runs before training), not labels.

    Example:

    >>> loss = CNNHLoss()
    >>> float(loss(tf.constant([[1.0, -1.0]]), tf.constant([[0.5, -1.0]])))
    0.125
    """

    term_names = ("regression",)

    def __init__(self, name="cnnh", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def terms(self, y_true, y_pred):
        h = tf.cast(y_pred, tf.float32)
        targets = tf.cast(y_true, tf.float32)
        if targets.shape.rank != 2 or targets.shape[-1] != h.shape[-1]:
            raise UsageError(f"CNNHLoss takes target codes [B, {h.shape[-1]}] as y_true (from "
                             f"tfhash.cnnh), got shape {targets.shape}; train it with "
                             "--method=cnnh")
        regression = target_regression(h, targets)
        return {"loss": regression, "regression": regression}
