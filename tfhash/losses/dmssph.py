"""DMSSPH: pairwise codes whose distance follows the multilevel similarity (a reconstruction).

Wu, Lin, Li, Ye, Wang, "Deep Supervised Hashing for Multi-label and Large-scale Image
Retrieval" (Deep Multilevel Semantic Similarity Preserving Hashing), ICMR 2017. Neither the
paper's text nor code is available; its abstract says that the method

1. preserves the *multilevel* semantic similarity of multi-label images (how many labels
   two images share);
2. learns from *pairwise* labels, to maximise the discriminability of the codes;
3. puts *direct constraints on the distance* between the codes of very similar images,
   where triplet methods only order them;
4. is evaluated with new criteria based on the Jaccard coefficient.

tfhash's loss is a reconstruction that does exactly that; every choice below is tfhash's,
not the paper's. For relaxed codes ``h ∈ (−1, 1)^K`` (tanh head), ``D_ij = |h_i − h_j|²``
(``4 ·`` Hamming distance on binary codes) and the similarity level of a pair, its
Jaccard coefficient ``s_ij = |y_i ∩ y_j| / |y_i ∪ y_j| ∈ [0, 1]`` (1 and 0 for class ids):

    target     D*_ij = (3m / 4) · (1 − s_ij)                      for s_ij > 0
    similar    S = mean over ordered pairs i ≠ j with s_ij > 0 of  ½ |D_ij − D*_ij|
    dissimilar N = mean over ordered pairs with s_ij = 0 of        ½ max(0, m − D_ij)
    quantization Q = mean over items of |h_i − sign(h_i)|₁
    loss = S + N + λ · Q

* Multilevel similarity as the Jaccard coefficient (point 1; the abstract's evaluation
  criteria use it, point 4): it does not reward an image for carrying many labels, and it
  gives identical label sets the level 1.
* The similar term is a two-sided constraint on the distance itself (point 3): a pair with
  identical labels is pulled to distance 0, a pair at Jaccard 0.5 to ``3m / 8``, and
  every similar pair stays below ``3m / 4``, short of the dissimilar pairs' margin ``m``;
  so the Hamming distance is asked to *follow* the level, not only to order it. (The
  band 3/4 and λ = 0.1 were picked on the generated data of
  ``benchmarks/multilevel_similarity.py``, seed 0, among 1/2, 3/4, 0.9 and 0.5, 0.1, 0.02.)
* Dissimilar pairs get a contrastive hinge at margin ``m`` (point 2's discriminability),
  default ``m = 2K``: half the bits differ, as far as random codes are.
* Similar and dissimilar pairs are averaged separately, so that each counts equally
  whatever the batch's share of similar pairs; ``|·|`` and the hinge are linear in
  ``D`` (the DSH form), so gradients stay bounded at any code length.
* ``Q`` is LSDH's L1 quantization (Eq. 10) per item, weight λ = 0.1 (tfhash's choice).
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss, _number
from tfhash.losses.pairwise import is_multi_label, squared_distances
from tfhash.models.layers import sign

DEFAULT_QUANTIZATION_WEIGHT = 0.1
# The similar pairs' targets span [0, SIMILAR_BAND · m): below the dissimilar margin m.
SIMILAR_BAND = 0.75


def jaccard_similarity(labels):
    """The Jaccard coefficient of every pair of a batch, float32 ``[B, B]``.

    Multi-hot ``[B, C]``: ``|y_i ∩ y_j| / |y_i ∪ y_j|`` (0 for two label-less items);
    class ids ``[B]`` / ``[B, 1]``: 1 for equal classes, 0 otherwise.

    Example:

    >>> jaccard_similarity(tf.constant([[1, 1, 0], [0, 1, 0], [0, 0, 1]])).numpy()[0].tolist()
    [1.0, 0.5, 0.0]
    """
    labels = tf.convert_to_tensor(labels)
    if not is_multi_label(labels):
        ids = tf.reshape(labels, [-1])
        return tf.cast(tf.equal(ids[:, None], ids[None, :]), tf.float32)
    y = tf.cast(labels > 0, tf.float32)
    shared = tf.matmul(y, y, transpose_b=True)
    counts = tf.reduce_sum(y, axis=1)
    union = counts[:, None] + counts[None, :] - shared
    return tf.math.divide_no_nan(shared, union)


def dmssph_terms(h, levels, margin):
    """The three DMSSPH terms of a batch, unweighted: (similar, dissimilar, quantization).

    Args:
        h: relaxed codes ``[B, K]``.
        levels: ``[B, B]`` similarity levels in ``[0, 1]`` (:func:`jaccard_similarity`).
        margin: m, in squared Euclidean units of ``h``.
    """
    distances = squared_distances(h)
    off_diagonal = 1.0 - tf.eye(tf.shape(h)[0], dtype=h.dtype)
    similar = tf.cast(levels > 0, h.dtype) * off_diagonal
    dissimilar = tf.cast(levels <= 0, h.dtype) * off_diagonal
    target = SIMILAR_BAND * margin * (1.0 - levels)
    similar_term = _masked_mean(0.5 * tf.abs(distances - target), similar)
    dissimilar_term = _masked_mean(0.5 * tf.nn.relu(margin - distances), dissimilar)
    b = tf.stop_gradient(sign(h, h.dtype))
    quantization = tf.reduce_mean(tf.reduce_sum(tf.abs(h - b), axis=1))
    return similar_term, dissimilar_term, quantization


def _masked_mean(values, mask):
    return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="tfhash")
class DMSSPHLoss(HashingLoss):
    """DMSSPH (reconstructed): Hamming distances that follow the Jaccard similarity level.

    ``loss = similar + dissimilar + λ · quantization``, see the module docstring; every
    choice there is a reconstruction from the paper's abstract. :meth:`terms` reports
    ``"similar"``, ``"dissimilar"`` and ``"quantization"`` unweighted.

    Single-label data is accepted: the levels are then 1 or 0 and the loss is a
    contrastive loss with a zero-distance target for same-class pairs.

    Args:
        margin: m > 0 in squared Euclidean units of ``h`` (``4 ·`` Hamming on binary
            codes), or ``None`` (default) for ``2K``: dissimilar pairs at least half the
            bits apart.
        quantization_weight: λ ≥ 0 (default 0.1).
        name, reduction: as :class:`~tfhash.losses.HashingLoss`.

    Example:

    >>> loss = DMSSPHLoss()
    >>> labels = tf.constant([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    >>> # 8 bits, m = 16: items 0 and 1 (Jaccard 0.5) one bit apart, D = 4, target
    >>> # (3 · 16 / 4) · 0.5 = 6, so ½ |4 − 6| = 1; item 2 (Jaccard 0) beyond the margin.
    >>> h = tf.constant([[1.0] * 8, [1.0] * 7 + [-1.0], [-1.0] * 8])
    >>> {k: round(float(v), 3) for k, v in loss.terms(labels, h).items()}
    {'loss': 1.0, 'similar': 1.0, 'dissimilar': 0.0, 'quantization': 0.0}
    """

    term_names = ("similar", "dissimilar", "quantization")

    def __init__(
        self,
        margin=None,
        quantization_weight=DEFAULT_QUANTIZATION_WEIGHT,
        name="dmssph",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.margin = None if margin is None else _number("margin", margin, positive=True)
        self.quantization_weight = _number("quantization_weight", quantization_weight)

    def similarity_levels(self, y_true):
        """Hook: the similarity level of every pair, ``[B, B]`` in ``[0, 1]`` (Jaccard)."""
        return jaccard_similarity(y_true)

    def terms(self, y_true, y_pred):
        h = tf.cast(y_pred, tf.float32)
        if h.shape.rank != 2 or h.shape[1] is None:
            raise UsageError(f"y_pred must be relaxed codes [B, K], got shape {h.shape}")
        margin = 2.0 * h.shape[1] if self.margin is None else self.margin
        similar, dissimilar, quantization = dmssph_terms(
            h, self.similarity_levels(tf.convert_to_tensor(y_true)), margin
        )
        return {
            "loss": similar + dissimilar + self.quantization_weight * quantization,
            "similar": similar,
            "dissimilar": dissimilar,
            "quantization": quantization,
        }

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, quantization_weight=self.quantization_weight)
        return config
