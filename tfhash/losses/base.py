"""Base classes of the tfhash losses.

* :class:`HashingLoss`: any batch loss on relaxed codes that reports its terms.
* :class:`RankingLoss`: a margin ranking loss on tuples mined inside the batch,
  plus LSDH's Hamming-isometric quantization over the pairs those tuples use.
  LSDH and the triplet baseline are small subclasses of it.
"""

import math

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.mining import validate_mining
from tfhash.losses.pairwise import is_multi_label, label_similarity, squared_distances
from tfhash.losses.quantization import all_pairs, hamming_isometric, pair_mask, pair_quantization

# The paper's settings (LSDH, Section IV-C), in squared-Euclidean units on h ∈ (−1, 1)^K.
# Margin: on binary codes squared distances are multiples of 4 (one bit), so any
# margin in (0, 4] asks exactly what Eq. 6's Hamming margin of 1 asks: one bit
# between a positive and a negative pair; 1 is the paper's relaxed value (Eq. 8).
DEFAULT_MARGIN = 1.0
# What margin=None means for a ranking loss: K/2, half the code length, which grows with the
# distances' range [0, 4K] (the margin tfhash's CIFAR-10 configs used, typed per code length).
MARGIN_PER_BIT = 0.5
DEFAULT_QUANTIZATION_WEIGHT = 0.8  # λ
SINGLE_LABEL_ISOMETRIC_WEIGHT = 0.25  # μ for class-id labels
MULTI_LABEL_ISOMETRIC_WEIGHT = 0.75  # μ for multi-hot labels
# Tuples per anchor for "random" mining: about the number of negatives of an anchor
# in a 128-image batch of 8 classes × 16, so each step reaches most of them.
DEFAULT_PER_ANCHOR = 128


class HashingLoss(keras.losses.Loss):
    """Base class of the tfhash losses: a batch loss on relaxed codes with named terms.

    A hashing loss looks at the whole batch (its pairs, triplets, quadruplets),
    so it returns one scalar per batch rather than one value per sample. It
    computes in float32 whatever the mixed precision policy.

    Subclasses implement :meth:`terms` and may override :meth:`similarity`.
    ``call`` returns ``terms(...)["loss"]``; Keras's reductions leave a scalar
    unchanged, so any ``reduction`` works. Sample weights are not supported
    (there is no per-sample loss to weight): a ``sample_weight`` (or Keras's
    ``class_weight``) raises :class:`~tfhash.errors.UsageError`.

    Its terms are logged (progress bar, History, TensorBoard) when the model is a
    :class:`tfhash.models.HashingModel`; under a plain ``keras.Model`` it trains
    on the total alone.

    Args:
        name: the loss's name.
        reduction: passed to ``keras.losses.Loss``; no effect on a scalar.
    """

    #: The names of the terms :meth:`terms` reports besides ``"loss"``, in order; known
    #: without running the loss (the model logs one metric per term).
    term_names = ()

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction, dtype="float32")

    @property
    def supports_jit(self):
        """Whether a train step with this loss can be XLA-compiled.

        ``"all"`` mining (a loss that mines, :func:`set_mining`) makes a data-dependent
        number of tuples, which XLA cannot compile: train with
        ``model.compile(..., jit_compile=False)``.
        """
        return getattr(self, "mining", None) != "all"

    def similarity(self, y_true):
        """Hook: which items of the batch are relevant to each other.

        Args:
            y_true: the batch's labels: class ids ``[B]`` / ``[B, 1]`` or
                multi-hot ``[B, C]``, any numeric dtype.

        Returns:
            Boolean ``[B, B]``, symmetric. The default shares-a-label rule is
            :func:`tfhash.losses.pairwise.label_similarity`; override it for
            another notion of relevance (e.g. a Jaccard threshold).
        """
        return label_similarity(y_true)

    def terms(self, y_true, y_pred):
        """The loss and its terms on one batch.

        Returns:
            dict of scalar float32 tensors: the weighted total under ``"loss"``
            and each unweighted term under its own name.
        """
        raise NotImplementedError

    def call(self, y_true, y_pred):
        return self.terms(y_true, y_pred)["loss"]

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise UsageError(
                f"{type(self).__name__} is a loss of the whole batch (its pairs and tuples), "
                "with no per-sample value to weight: drop sample_weight (and class_weight); to "
                "weight items, subclass it and weight its tuples"
            )
        return super().__call__(y_true, y_pred)


class RankingLoss(HashingLoss):
    """Margin ranking on mined tuples + Hamming-isometric quantization (LSDH Eq. 15).

    On a batch of relaxed codes ``h`` (float32 ``[B, K]``, in ``(−1, 1)``) with
    labels ``y``, :meth:`terms` computes

    * ``similarity = self.similarity(y)`` and one matrix of squared distances
      ``d[i, j] = |h_i − h_j|²``;
    * ``tuples = self.mine(similarity)``: int32 ``[Q, T]``, or ``(tuples, keep)``
      with ``keep`` float32 ``[Q]``, 0 for a tuple that counts nowhere (a loss that
      discards some mined tuples marks them so: a second ``boolean_mask`` on the mined
      set's data-dependent shape returns copies of its first row under XLA);
    * ``"semantic"``: the mean over the Q (kept) tuples of
      ``self.tuple_loss(d, similarity, tuples)`` (0 when Q = 0);
    * over the distinct pairs ``(i, j)`` that the tuples use (the columns in
      ``self.pairs``), the means of the two parts of ``Q_Ham`` (Eq. 11):
      ``"quantization"`` = mean of ``|h_i − b_i|₁ + |h_j − b_j|₁`` and
      ``"isometric"`` = mean of ``| |h_i − h_j|² − |b_i − b_j|² |``, with
      ``b = sign(h)`` a constant (0 when no pair is used);
    * ``"loss" = semantic + λ · (quantization + μ · isometric)``.

    Eq. 15 sums over quadruplets and pairs; tfhash averages instead, so that the
    loss and a good learning rate do not depend on the batch size or on the
    mining mode. The sums are ``Q ·`` semantic and ``P ·`` the pair means.

    Subclasses set ``pairs`` and implement :meth:`mine` and :meth:`tuple_loss`;
    :meth:`similarity` is the hook for another notion of relevance.

    Args:
        margin: m > 0, in squared-Euclidean units on ``h`` (the distances lie in
            ``[0, 4K]`` and one flipped bit moves a binary distance by 4), or
            ``None`` (default) for ``K/2``, resolved on the batch's code length
            (:meth:`margin_for`). The paper's relaxed value is 1.0: once codes are
            binary, any m in (0, 4] demands one bit of separation (Eq. 6's Hamming
            margin); a margin that grows with K ranks better.
        quantization_weight: λ ≥ 0 (paper: 0.8).
        isometric_weight: μ ≥ 0, or ``None`` for the paper's value for the
            batch's label type: 0.25 for class ids (``[B]``, ``[B, 1]``), 0.75
            for multi-hot ``[B, C]`` (one-hot included: pass μ explicitly, or
            class ids, to get 0.25 for single-label data stored one-hot).
        mining: ``"random"`` (default: at most N tuples per anchor, ``B · N`` in all,
            also under XLA) or ``"all"`` (every valid tuple: ``B · C(M−1, 2) · (B − M)``
            for P × M batches; cannot be XLA-compiled, see :attr:`supports_jit`). Memory
            grows with the number of tuples: see :mod:`tfhash.losses.mining`.
        quadruplets_per_anchor: N ≥ 1, tuples per anchor for ``"random"``
            (default 128: about the 112 negatives of an anchor in a batch of
            8 classes × 16 images, so each step reaches most of them, for
            16,384 quadruplets and a few ms per batch of 128 instead of 1.5 M).
        seed: int or ``None`` (random), seeds ``"random"`` mining; a new sample
            is drawn at every call.
        name, reduction: as :class:`HashingLoss`.
    """

    pairs = ()  # column pairs of a tuple whose distances tuple_loss uses
    term_names = ("semantic", "quantization", "isometric")

    def __init__(
        self,
        margin=None,
        quantization_weight=DEFAULT_QUANTIZATION_WEIGHT,
        isometric_weight=None,
        mining="random",
        quadruplets_per_anchor=DEFAULT_PER_ANCHOR,
        seed=None,
        name=None,
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.margin = None if margin is None else _number("margin", margin, positive=True)
        self.quantization_weight = _number("quantization_weight", quantization_weight)
        self.isometric_weight = (
            None if isometric_weight is None else _number("isometric_weight", isometric_weight)
        )
        set_mining(self, mining, quadruplets_per_anchor, seed)

    def margin_for(self, h):
        """m for relaxed codes ``h`` ``[B, K]``: the set margin, or ``K/2`` for ``None``."""
        if self.margin is not None:
            return self.margin
        bits = h.shape[-1]
        if bits is None:
            return MARGIN_PER_BIT * tf.cast(tf.shape(h)[-1], tf.float32)
        return MARGIN_PER_BIT * bits

    def mine(self, similarity):
        """Hook: the tuples of a batch, int32 ``[Q, T]`` batch indices, or ``(tuples, keep)``."""
        raise NotImplementedError

    def tuple_loss(self, distances, similarity, tuples, margin):
        """Hook: the ranking loss of each tuple, ``[Q]``.

        Args:
            distances: ``[B, B]`` squared distances of the relaxed codes.
            similarity: boolean ``[B, B]`` from :meth:`similarity`.
            tuples: int32 ``[Q, T]`` from :meth:`mine`.
            margin: m of this batch (:meth:`margin_for`).
        """
        raise NotImplementedError

    def isometric_weight_for(self, y_true):
        """μ for a batch with these labels: the set value, or the paper's for their type."""
        if self.isometric_weight is not None:
            return self.isometric_weight
        if is_multi_label(tf.convert_to_tensor(y_true)):
            return MULTI_LABEL_ISOMETRIC_WEIGHT
        return SINGLE_LABEL_ISOMETRIC_WEIGHT

    def terms(self, y_true, y_pred):
        """``{"loss", "semantic", "quantization", "isometric"}`` on one batch.

        Args:
            y_true: class ids ``[B]`` / ``[B, 1]`` or multi-hot ``[B, C]``.
            y_pred: relaxed codes ``[B, K]``, any float dtype (cast to float32).
        """
        h = relaxed_codes(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        isometric_weight = self.isometric_weight_for(y_true)
        similarity = self.similarity(y_true)
        distances = squared_distances(h)
        tuples = self.mine(similarity)
        tuples, keep = tuples if isinstance(tuples, tuple) else (tuples, None)
        values = self.tuple_loss(distances, similarity, tuples, self.margin_for(h))
        semantic = (
            _mean(values)
            if keep is None
            else (tf.reduce_sum(keep * values) / tf.maximum(tf.reduce_sum(keep), 1.0))
        )
        used = pair_mask(tuples, self.pairs, tf.shape(h)[0], keep)
        num_pairs = tf.maximum(tf.reduce_sum(used), 1.0)
        l1, isometric = hamming_isometric(h, distances)
        quantization = tf.reduce_sum(used * l1) / num_pairs
        isometric = tf.reduce_sum(used * isometric) / num_pairs
        loss = semantic + self.quantization_weight * (quantization + isometric_weight * isometric)
        return {
            "loss": loss,
            "semantic": semantic,
            "quantization": quantization,
            "isometric": isometric,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            margin=self.margin,
            quantization_weight=self.quantization_weight,
            isometric_weight=self.isometric_weight,
            mining=self.mining,
            quadruplets_per_anchor=self.quadruplets_per_anchor,
            seed=self.seed,
        )
        return config


class PairQuantizedLoss(HashingLoss):
    """A metric-learning loss on relaxed codes + the triplet baseline's quantization.

    For the metric-learning rows of the LSDH paper's Fig. 11 (lifted structured, angular):
    losses that look at every pair of the batch rather than at mined tuples. :meth:`terms`
    computes ``"semantic" = self.semantic(h, distances, similarity)`` and, over every pair
    ``i < j`` of the batch, the means ``"quantization"`` and ``"isometric"`` of
    :class:`RankingLoss`, and ``"loss" = semantic + λ · (quantization + μ · isometric)``.

    Args:
        quantization_weight: λ ≥ 0 (default 0.8, the triplet baseline's, LSDH's).
        isometric_weight: μ ≥ 0, or ``None`` for 0.25 (class ids) / 0.75 (multi-hot), as
            :class:`RankingLoss`.
        name, reduction: as :class:`HashingLoss`.
    """

    term_names = ("semantic", "quantization", "isometric")

    def __init__(
        self,
        quantization_weight=DEFAULT_QUANTIZATION_WEIGHT,
        isometric_weight=None,
        name=None,
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.quantization_weight = _number("quantization_weight", quantization_weight)
        self.isometric_weight = (
            None if isometric_weight is None else _number("isometric_weight", isometric_weight)
        )

    def semantic(self, h, distances, similarity):
        """Hook: the metric-learning loss of the batch, a scalar."""
        raise NotImplementedError

    isometric_weight_for = RankingLoss.isometric_weight_for

    def terms(self, y_true, y_pred):
        h = relaxed_codes(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        isometric_weight = self.isometric_weight_for(y_true)
        distances = squared_distances(h)
        semantic = self.semantic(h, distances, self.similarity(y_true))
        quantization, isometric = pair_quantization(h, distances, all_pairs(tf.shape(h)[0]))
        loss = semantic + self.quantization_weight * (quantization + isometric_weight * isometric)
        return {
            "loss": loss,
            "semantic": semantic,
            "quantization": quantization,
            "isometric": isometric,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            quantization_weight=self.quantization_weight, isometric_weight=self.isometric_weight
        )
        return config


def relaxed_codes(y_pred):
    """``y_pred`` as float32 relaxed codes ``[B, K]`` (whatever the mixed precision policy);
    a :class:`UsageError` for any other rank."""
    h = tf.cast(y_pred, tf.float32)
    if h.shape.rank != 2:
        raise UsageError(f"y_pred must be relaxed codes [B, K], got shape {h.shape}")
    return h


def set_mining(loss, mining, quadruplets_per_anchor, seed):
    """Validates and sets a mining loss's ``mining``, ``quadruplets_per_anchor``, ``seed`` and
    its ``seed_generator`` (shared by :class:`RankingLoss` and losses mining the same way)."""
    validate_mining(mining, quadruplets_per_anchor)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UsageError(f"seed must be an integer or None, got {seed!r}")
    loss.mining, loss.quadruplets_per_anchor, loss.seed = mining, quadruplets_per_anchor, seed
    loss.seed_generator = keras.random.SeedGenerator(seed)


def gather_pairs(matrix, rows, cols):
    """``matrix[rows[q], cols[q]]`` for every q: one entry of a ``[B, B]`` matrix per tuple."""
    return tf.gather_nd(matrix, tf.stack([rows, cols], axis=1))


def _mean(values):
    """Mean of a ``[Q]`` tensor, 0 (with zero gradient) when ``Q = 0``."""
    return tf.reduce_sum(values) / tf.maximum(tf.cast(tf.size(values), values.dtype), 1.0)


def _number(name, value, positive=False):
    """``value`` as a finite float, positive or non-negative; else ``UsageError``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if (
        isinstance(value, bool)
        or not math.isfinite(number)
        or number < 0
        or (positive and number == 0)
    ):
        kind = "positive" if positive else "non-negative"
        raise UsageError(f"{name} must be a finite {kind} number, got {value!r}")
    return number
