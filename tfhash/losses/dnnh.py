"""DNNH: triplet ranking on the divide-and-encode head's codes in [0, 1].

Lai, Pan, Liu, Yan, "Simultaneous Feature Learning and Hash Coding with Deep Neural
Networks", CVPR 2015 (arXiv 1504.03410). For a triplet ``(I, I⁺, I⁻)`` — an image, one
more similar to it and one less similar — with codes ``b = F(I) ∈ [0, 1]^q`` from the
divide-and-encode module (:class:`tfhash.models.layers.DivideAndEncode`), the relaxed triplet
ranking loss is

    ℓ(b, b⁺, b⁻) = max(0, 1 + |b − b⁺|² − |b − b⁻|²)

the Hamming hinge ``max(0, 1 − (|b − b⁻|_H − |b − b⁺|_H))`` with the Hamming distance of
0/1 codes replaced by the squared Euclidean one. Its sub-gradients where it is active are
``2(b⁻ − b⁺)``, ``2(b⁺ − b)`` and ``2(b − b⁻)``. There is no quantization term: the head's
piece-wise threshold binarises.

Deviations from the paper, stated:

* Triplets are mined inside each batch (:func:`tfhash.losses.mining.mine_triplets`: all
  valid ones, or a uniform sample per anchor) instead of the paper's offline triplets.
* Multi-label data: a positive shares at least one label with the anchor, a negative
  shares none (the paper's NUS-WIDE rule is not known).
* The head outputs ``h = 2·g(s) − 1`` so that its sign is the code, as every tfhash head;
  the loss works on ``b = (h + 1) / 2 = g(s)``, the paper's codes exactly.
* The mean over triplets replaces the paper's sum (a learning rate that does not depend
  on the batch size).
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import (
    DEFAULT_PER_ANCHOR,
    HashingLoss,
    _mean,
    _number,
    relaxed_codes,
    set_mining,
)
from tfhash.losses.mining import mine_triplets
from tfhash.losses.pairwise import squared_distances
from tfhash.losses.triplet import triplet_loss

DEFAULT_MARGIN = 1.0  # the paper's: one bit of a 0/1 code


def dnnh_loss(codes, triplets, margin=DEFAULT_MARGIN):
    """The DNNH triplet loss of each triplet on codes in ``[0, 1]^q``.

    Args:
        codes: float ``[B, q]`` in ``[0, 1]`` (``(h + 1) / 2`` of the head).
        triplets: int32 ``[Q, 3]``, columns anchor, positive, negative.
        margin: the hinge's 1.

    Returns:
        ``[Q]``: ``max(0, margin + |b − b⁺|² − |b − b⁻|²)``.

    Example:

    >>> b = tf.constant([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> dnnh_loss(b, tf.constant([[0, 1, 2]])).numpy().tolist()
    [0.0]
    """
    return triplet_loss(squared_distances(codes), triplets, margin)


@keras.saving.register_keras_serializable(package="tfhash")
class DNNHLoss(HashingLoss):
    """DNNH's triplet ranking loss, on in-batch triplets, for the divide-and-encode head.

    On a batch of head outputs ``h ∈ [−1, 1]^q`` (``tfhash.models.layers.DivideAndEncode``; any
    tfhash head works, its ``(h + 1) / 2`` being read as the ``[0, 1]`` codes):

        b = (h + 1) / 2
        loss = mean over mined triplets (i, j, n) of max(0, m + |b_i − b_j|² − |b_i − b_n|²)

    :meth:`terms` reports ``"ranking"`` (equal to the loss).

    Args:
        margin: m > 0, in squared Euclidean units of the ``[0, 1]`` codes (the paper: 1,
            one bit).
        mining: ``"random"`` (default) or ``"all"``, as :class:`~tfhash.losses.TripletLoss`.
        quadruplets_per_anchor: triplets per anchor for ``"random"`` (one name for every
            method's ``--quadruplets_per_anchor``; default 128).
        seed: int or ``None``, seeds ``"random"`` mining.
        quantization_weight: DNNH has no quantization term; accepted only as ``None`` or 0
            so that a shared ``--quantization_weight=0`` in a config can say so.
        name, reduction: as :class:`~tfhash.losses.HashingLoss`.

    Example:

    >>> loss = DNNHLoss(mining="all")
    >>> h = tf.constant([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    >>> float(loss(tf.constant([0, 0, 1]), h))
    0.0
    """

    term_names = ("ranking",)

    def __init__(
        self,
        margin=DEFAULT_MARGIN,
        mining="random",
        quadruplets_per_anchor=DEFAULT_PER_ANCHOR,
        seed=None,
        quantization_weight=None,
        name="dnnh",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        if quantization_weight not in (None, 0):
            raise UsageError(
                f"dnnh has no quantization term (its head's threshold binarises), "
                f"got quantization_weight={quantization_weight!r}: leave it unset "
                "or 0"
            )
        self.margin = _number("margin", margin, positive=True)
        set_mining(self, mining, quadruplets_per_anchor, seed)

    def terms(self, y_true, y_pred):
        h = relaxed_codes(y_pred)
        triplets = mine_triplets(
            self.similarity(tf.convert_to_tensor(y_true)),
            self.mining,
            self.quadruplets_per_anchor,
            self.seed_generator,
        )
        ranking = _mean(dnnh_loss((h + 1.0) / 2.0, triplets, self.margin))
        return {"loss": ranking, "ranking": ranking}

    def get_config(self):
        config = super().get_config()
        config.update(
            margin=self.margin,
            mining=self.mining,
            quadruplets_per_anchor=self.quadruplets_per_anchor,
            seed=self.seed,
            quantization_weight=None,
        )
        return config
