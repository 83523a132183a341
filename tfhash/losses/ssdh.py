"""SSDH-ZP: semi-supervised deep hashing with an online graph over labelled and unlabelled images.

Zhang and Peng, "SSDH: Semi-supervised Deep Hashing for Large Scale Image Retrieval", IEEE
TCSVT 2017 (arXiv 1607.08477). Not the two other methods called SSDH (Yang, Lin, Chen's
*Supervised Semantics-preserving* Deep Hashing, TPAMI 2018; Yang et al.'s *Semantic
Structure-based* unsupervised Deep Hashing, IJCAI 2018): tfhash calls this one SSDH-ZP and
registers it as ``ssdh``.

The paper's abstract gives the objective's shape (an empirical error on the labelled images
plus an embedding error on all images, the embedding's graph built online in each batch from
the evolving features); its equations here are those of the official Caffe code (the
``SemiRankLoss`` layer), which is the implementable reference. On a batch of ``B`` images,
``b`` of them labelled, with hash outputs ``s_i = σ(z_i) ∈ (0, 1)^K`` and
``D_ij = |s_i − s_j|²``:

* **Ranking (empirical) error, labelled anchors only.** Triplets ``(i, p, n)`` of labelled
  images, ``p`` sharing a label with ``i`` and ``n`` none:

      ℓʳ(i, p, n) = max(0, m_r + D_ip − D_in),       m_r = 1

* **Embedding error from the online graph, every anchor.** Each anchor ``i`` (labelled or
  not) ranks the whole batch, itself included (its rank 0), by ``D_ij`` of the current hash
  outputs; a positive ``p`` is drawn uniformly among ranks ``0 … k − 1`` (``k = 8``) and a
  negative ``n`` uniformly among the far ranks ``[r₀, r₁)``: in the official code's batch of
  128, ``[120, 124)`` at 12 bits and ``[114, 124)`` above (its solvers' ``knn_neg_idx_start``
  / ``_range``); in a batch of ``B``, the same place in the ranking,
  ``[⌊120·B/128⌋, ⌊124·B/128⌋)`` and ``[⌊114·B/128⌋, ⌊124·B/128⌋)`` (at least one rank):

      ℓᵍ(i) = D_ip + max(0, m_g − √D_in)²,           m_g = 2.5 at 12 bits, 3.0 above

  The graph is rebuilt at every batch from the outputs as they are (no global graph); the
  ranks carry no gradient. The window must lie beyond the ``k`` nearest: a batch needs at
  least :data:`MIN_BATCH_SIZE` = 16 images (at 16 the window is rank 14, or 15 at 12 bits),
  and a smaller one is refused.

* **Total** (the code's normalisation: each term is half a squared distance)::

      L = ½ · mean over triplets of ℓʳ + λ · ½ · mean over anchors of ℓᵍ,     λ = 0.1

Unlabelled images enter the graph term only; their labels are never read (the loss replaces
them by constants before anything uses them).

Deviations from the official code, stated:

* The head is tfhash's tanh head, ``h = tanh(u)``; the loss works on ``s = (h + 1) / 2 =
  σ(2u)``, the code's sigmoid outputs with the factor 2 absorbed into the layer, so
  ``sign(h)`` is the code's bit ``[s ≥ 0.5]`` and export needs nothing special.
* The official window is fixed in ranks for its batch of 128; here it is scaled to the batch
  (the same ranks at 128), so the method runs on smaller batches, such as the quickstart's 64.
* Ranking triplets are mined like the triplet baseline's (``mining``,
  ``quadruplets_per_anchor``: 128 per labelled anchor by default) rather than the code's one
  (p, n) pair per anchor (drawn by up to 10 tries), and averaged over the triplets, not per
  anchor: the same mean only when every labelled anchor has as many triplets, as in a
  class-balanced labelled batch. For multi-label data tfhash does not ask ``p`` and ``n`` to
  share no label with each other.
* The code's candidate positives of a labelled anchor include the anchor itself (its loop runs
  over every ``j``, ``j = i`` too), drawn with probability ``1 / (|Pᵢ| + 1)``, which adds
  triplets ``(i, i, n)`` of loss ``max(0, m_r − D_in)``; by default tfhash's positives are the
  other images only. ``anchor_as_positive=True`` computes the code's expectation instead: per
  labelled anchor (with a labelled negative), the positive uniform over ``Pᵢ ∪ {i}``, the
  negative uniform, the anchors weighted equally.
* The graph is built on the hash outputs, as the released configuration (``feature_index:
  0``); the code's fc7 option (the paper's "deep features") is not offered, since the loss
  sees only the head's outputs.
* The code's pseudo-label term and auxiliary classifier branch are not implemented
  (docs/losses.md).
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import (
    DEFAULT_PER_ANCHOR,
    HashingLoss,
    _number,
    gather_pairs,
    relaxed_codes,
    set_mining,
)
from tfhash.losses.mining import mine_triplets
from tfhash.losses.pairwise import is_multi_label, label_similarity, squared_distances
from tfhash.losses.triplet import triplet_loss

DEFAULT_MARGIN = 1.0  # m_r, the official solvers'
DEFAULT_GRAPH_WEIGHT = 0.1  # λ
DEFAULT_NEIGHBOURS = 8  # k: the positive is one of the k nearest, the anchor included
#: Code lengths up to this use the official 12-bit settings, longer codes the 24/32/48-bit ones.
SHORT_CODE_BITS = 12
#: The official code's batch, in which its negative windows below are given.
OFFICIAL_BATCH_SIZE = 128
#: ``(first rank, number of ranks)`` of the negative window in a batch of 128, official solvers.
NEGATIVE_WINDOW_SHORT = (120, 4)
NEGATIVE_WINDOW = (114, 10)
GRAPH_MARGIN_SHORT = 2.5  # m_g at 12 bits
GRAPH_MARGIN = 3.0  # m_g at 24, 32, 48 bits
#: The smallest batch: twice k, so the scaled window (from rank ⌊114·B/128⌋) starts well past
#: the k = 8 nearest.
MIN_BATCH_SIZE = 2 * DEFAULT_NEIGHBOURS


def negative_window(bits, batch_size=OFFICIAL_BATCH_SIZE):
    """``(first rank, count)`` of the graph's negatives for a ``bits``-bit code and a batch.

    The official window (:data:`NEGATIVE_WINDOW_SHORT` up to 12 bits, :data:`NEGATIVE_WINDOW`
    above, given for a batch of 128) at the same place in a ranking of ``batch_size`` items:
    ``[⌊r₀·B/128⌋, ⌊r₁·B/128⌋)``, at least one rank. ``batch_size`` is an int or a scalar
    int tensor (a batch of unknown static size).

    >>> negative_window(12), negative_window(48), negative_window(48, 64)
    ((120, 4), (114, 10), (57, 5))
    """
    first, count = NEGATIVE_WINDOW_SHORT if bits <= SHORT_CODE_BITS else NEGATIVE_WINDOW
    start = first * batch_size // OFFICIAL_BATCH_SIZE
    end = (first + count) * batch_size // OFFICIAL_BATCH_SIZE
    if isinstance(batch_size, int):
        return start, max(end, start + 1) - start
    return start, tf.maximum(end, start + 1) - start


def default_graph_margin(bits):
    """m_g for a ``bits``-bit code: 2.5 up to 12 bits, 3.0 above (the official solvers')."""
    return GRAPH_MARGIN_SHORT if bits <= SHORT_CODE_BITS else GRAPH_MARGIN


def unpack_labels(y_true):
    """Splits the semi-supervised batches' ``y_true`` into ``(labelled, labels)``.

    ``y_true`` is ``[B, 1 + L]``: column 0 is 1 for a labelled image and 0 for an unlabelled
    one, the other columns its labels (a class id, ``L = 1``, or a multi-hot row), as
    :func:`tfhash.data.semi_supervised_dataset` yields them. The unlabelled rows' labels are
    replaced by zeros here, so nothing downstream can read them.

    Returns:
        ``(bool [B], labels [B, L])``.

    Example:

    >>> labelled, labels = unpack_labels(tf.constant([[1, 3], [0, 7]]))
    >>> labelled.numpy().tolist(), labels.numpy().tolist()
    ([True, False], [[3], [0]])
    """
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank != 2 or y_true.shape[1] is None or y_true.shape[1] < 2:
        raise UsageError(
            f"ssdh needs y_true = [labelled mask, labels] of shape [B, 1 + L], got shape "
            f"{y_true.shape}: train it on tfhash.data.semi_supervised_dataset batches"
        )
    labelled = y_true[:, 0] > 0
    labels = tf.where(labelled[:, None], y_true[:, 1:], tf.zeros_like(y_true[:, 1:]))
    return labelled, labels


def labelled_similarity(labelled, labels):
    """``[B, B]`` relevance among labelled images only: both labelled and sharing a label."""
    both = labelled[:, None] & labelled[None, :]
    return label_similarity(labels) & both


def ranking_triplets(labelled, labels, mining, per_anchor, seed):
    """Triplets ``(i, p, n)`` of labelled images only: ``p`` shares a label with ``i``,
    ``n`` shares none.

    Mined with :func:`tfhash.losses.mining.mine_triplets` on :func:`labelled_similarity`
    (an unlabelled image is relevant to nothing, so it is never an anchor or a positive);
    a triplet whose negative is unlabelled is mined too but marked not kept. (Kept as a mask,
    not dropped: a second ``boolean_mask`` on the mined set's data-dependent shape returns
    copies of its first row under XLA, TensorFlow 2.21, the default on a GPU.)

    Returns:
        ``(triplets, keep)``: int32 ``[Q, 3]`` and float32 ``[Q]``, 1 where the negative
        is labelled, else 0.
    """
    triplets = mine_triplets(labelled_similarity(labelled, labels), mining, per_anchor, seed)
    return triplets, tf.cast(tf.gather(labelled, triplets[:, 2]), tf.float32)


def official_ranking(distances, labelled, labels, triplets, keep, margin):
    """The official ``SemiRankLoss``'s ranking term in expectation, the anchor among its own
    candidate positives.

    Each labelled anchor ``i`` with a labelled negative draws ``p`` uniformly from ``Pᵢ ∪ {i}``
    (``Pᵢ``: the other labelled images sharing a label) and ``n`` uniformly from ``Nᵢ`` (the
    labelled images sharing none); the term is the mean over those anchors of
    ``E max(0, m + D_ip − D_in)``:

        rᵢ = ( |Pᵢ| · mean over i's mined triplets + mean_{n ∈ Nᵢ} max(0, m − D_in) ) / (|Pᵢ| + 1)

    (``D_ii = 0``). The mined triplets kept (:func:`ranking_triplets`) estimate the mean over
    ``Pᵢ × Nᵢ`` (exactly with ``mining="all"``); the self part is exact.

    Returns:
        A scalar; 0 (with zero gradient) when no anchor qualifies.
    """
    batch = tf.shape(distances)[0]
    others = tf.logical_not(tf.eye(batch, dtype=tf.bool))
    similar = labelled_similarity(labelled, labels)
    negatives = labelled[:, None] & labelled[None, :] & tf.logical_not(similar) & others
    num_pos = tf.reduce_sum(tf.cast(similar & others, distances.dtype), axis=1)
    negative = tf.cast(negatives, distances.dtype)
    num_neg = tf.reduce_sum(negative, axis=1)
    self_part = tf.reduce_sum(negative * tf.nn.relu(margin - distances), axis=1) / tf.maximum(
        num_neg, 1.0
    )
    values = keep * triplet_loss(distances, triplets, margin)
    anchors = triplets[:, 0]
    mined_sum = tf.math.unsorted_segment_sum(values, anchors, batch)
    mined_count = tf.math.unsorted_segment_sum(keep, anchors, batch)
    mined_mean = mined_sum / tf.maximum(mined_count, 1.0)
    per_anchor = (num_pos * mined_mean + self_part) / (num_pos + 1.0)
    valid = tf.cast(labelled & (num_neg > 0), distances.dtype)
    return tf.reduce_sum(valid * per_anchor) / tf.maximum(tf.reduce_sum(valid), 1.0)


def graph_neighbours(distances, neighbours, negative_start, negative_count, seed=None):
    """The online graph's positive and negative of every anchor of the batch.

    Anchor ``i`` ranks every item ``j`` of the batch, itself included, by ``distances[i, j]``
    (ties by index, so ``i`` is rank 0 unless a duplicate ties it); ``p_i`` is uniform among
    ranks ``0 … neighbours − 1`` and ``n_i`` uniform among ranks
    ``negative_start … negative_start + negative_count − 1``.

    Args:
        distances: ``[B, B]`` squared distances of the graph's features (the hash outputs).
        neighbours: k ≥ 1.
        negative_start, negative_count: the negative window; it needs
            ``B ≥ negative_start + negative_count``.
        seed: an int, a ``keras.random.SeedGenerator`` (a new draw each call) or ``None``.

    Returns:
        ``(p, n)``, int32 ``[B]`` each.

    Raises:
        UsageError: a batch (of static size) too small for the window.

    Example:

    >>> d = squared_distances(tf.constant([[0.0], [1.0], [3.0]]))
    >>> p, n = graph_neighbours(d, 1, 2, 1)
    >>> p.numpy().tolist(), n.numpy().tolist()
    ([0, 1, 2], [2, 2, 0])
    """
    distances = tf.stop_gradient(tf.convert_to_tensor(distances))
    batch = distances.shape[0]
    if batch is not None and batch < negative_start + negative_count:
        raise UsageError(
            f"ssdh's graph negatives come from ranks {negative_start}-"
            f"{negative_start + negative_count - 1} of each anchor's neighbours, so a batch "
            f"needs at least {negative_start + negative_count} images, got {batch}: raise "
            "`batch_size`"
        )
    order = tf.argsort(distances, axis=1, stable=True)
    uniform = keras.random.uniform((tf.shape(distances)[0], 2), seed=seed)
    rank_p = tf.minimum(tf.cast(uniform[:, 0] * neighbours, tf.int32), neighbours - 1)
    rank_n = negative_start + tf.minimum(
        tf.cast(uniform[:, 1] * tf.cast(negative_count, uniform.dtype), tf.int32),
        negative_count - 1,
    )
    return (tf.gather(order, rank_p, batch_dims=1), tf.gather(order, rank_n, batch_dims=1))


def graph_loss(distances, positives, negatives, margin):
    """``ℓᵍ(i) = D_ip + max(0, m_g − √D_in)²`` of every anchor, ``[B]``.

    ``√D`` is taken of ``max(D, 1e-12)``, so a zero distance gives no infinite gradient.

    Example:

    >>> d = tf.constant([[0.0, 1.0, 4.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    >>> graph_loss(d, tf.constant([1, 1, 2]), tf.constant([2, 0, 0]), 3.0).numpy().tolist()
    [2.0, 4.0, 1.0]
    """
    anchors = tf.range(tf.shape(distances)[0])
    d_ip = gather_pairs(distances, anchors, positives)
    d_in = gather_pairs(distances, anchors, negatives)
    return d_ip + tf.square(tf.nn.relu(margin - tf.sqrt(tf.maximum(d_in, 1e-12))))


@keras.saving.register_keras_serializable(package="tfhash")
class SSDHLoss(HashingLoss):
    """SSDH-ZP (Zhang & Peng, TCSVT 2017): labelled triplet ranking + an online-graph embedding.

    On a batch of head outputs ``h ∈ (−1, 1)^K`` (tfhash's tanh head), read as the paper's
    sigmoid outputs ``s = (h + 1) / 2``, and ``y_true = [labelled mask, labels]``
    (:func:`unpack_labels`; the semi-supervised sampler, ``tfhash.data.semi_supervised_dataset``,
    makes it):

        D = squared distances of s
        ranking = mean over labelled triplets (i, p, n) of max(0, m_r + D_ip − D_in)
                  (anchor_as_positive: the official code's expectation, p = i included)
        graph   = mean over all anchors i of D_ip + max(0, m_g − √D_in)²
                  (p among i's k nearest in the batch, n from the far rank window)
        loss    = ½ · ranking + λ · ½ · graph

    :meth:`terms` reports ``"ranking"`` and ``"graph"`` unweighted. ``graph_weight=0`` leaves
    the ranking term alone: the same method trained on its labelled images only.

    Args:
        margin: m_r > 0 of the ranking term, in squared distances of ``s`` (one bit is 1;
            the official 1).
        graph_margin: m_g > 0 of the graph term, a Euclidean distance of ``s``; ``None``: the
            official 2.5 for codes up to 12 bits, 3.0 above.
        graph_weight: λ ≥ 0 (official: 0.1).
        neighbours: k, the positive's ranks ``0 … k − 1`` (official: 8, the anchor itself
            being rank 0); at most the window's first rank.
        mining, quadruplets_per_anchor, seed: the ranking triplets' mining, as
            :class:`~tfhash.losses.TripletLoss` (``"random"``, 128 per anchor); ``seed`` also
            drives the graph's draws.
        anchor_as_positive: ``False`` (default, tfhash's figures): a labelled anchor's
            positives are the other labelled images sharing a label, the ranking term the
            mean over the mined triplets; ``True``: the official code's, the anchor itself
            one of its candidate positives, each anchor weighted equally
            (:func:`official_ranking`).
        name, reduction: as :class:`~tfhash.losses.HashingLoss`.

    The graph's negative window is the official one for the code length, scaled to the batch
    (:func:`negative_window`): batches need at least :data:`MIN_BATCH_SIZE` = 16 images.

    Example:

    >>> loss = SSDHLoss(seed=0)
    >>> labels = tf.constant([[1, c] for c in range(4)] * 16 + [[0, 0]] * 64)
    >>> h = tf.tanh(tf.random.stateless_normal((128, 12), seed=(0, 0)))
    >>> sorted(loss.terms(labels, h))
    ['graph', 'loss', 'ranking']
    """

    term_names = ("ranking", "graph")

    def __init__(
        self,
        margin=DEFAULT_MARGIN,
        graph_margin=None,
        graph_weight=DEFAULT_GRAPH_WEIGHT,
        neighbours=DEFAULT_NEIGHBOURS,
        mining="random",
        quadruplets_per_anchor=DEFAULT_PER_ANCHOR,
        seed=None,
        anchor_as_positive=False,
        name="ssdh",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.margin = _number("margin", margin, positive=True)
        self.graph_margin = (
            None if graph_margin is None else _number("graph_margin", graph_margin, positive=True)
        )
        self.graph_weight = _number("graph_weight", graph_weight)
        first_rank = min(NEGATIVE_WINDOW_SHORT[0], NEGATIVE_WINDOW[0])
        if (
            isinstance(neighbours, bool)
            or not isinstance(neighbours, int)
            or not 1 <= neighbours <= first_rank
        ):
            raise UsageError(
                f"neighbours (k) must be an integer in [1, {first_rank}] (the "
                f"negative window starts at rank {first_rank}), got {neighbours!r}"
            )
        self.neighbours = neighbours
        set_mining(self, mining, quadruplets_per_anchor, seed)
        if not isinstance(anchor_as_positive, bool):
            raise UsageError(
                f"anchor_as_positive must be True or False (the official code's "
                f"anchor among its own positives), got {anchor_as_positive!r}"
            )
        self.anchor_as_positive = anchor_as_positive

    def terms(self, y_true, y_pred):
        h = relaxed_codes(y_pred)
        bits = h.shape[1]
        labelled, labels = unpack_labels(y_true)
        if not is_multi_label(labels):
            labels = labels[:, 0]
        distances = squared_distances((h + 1.0) / 2.0)
        triplets, keep = ranking_triplets(
            labelled, labels, self.mining, self.quadruplets_per_anchor, self.seed_generator
        )
        if self.anchor_as_positive:
            ranking = official_ranking(distances, labelled, labels, triplets, keep, self.margin)
        else:
            ranking = tf.reduce_sum(
                keep * triplet_loss(distances, triplets, self.margin)
            ) / tf.maximum(tf.reduce_sum(keep), 1.0)
        batch = h.shape[0]
        start, count = negative_window(bits, tf.shape(h)[0] if batch is None else batch)
        if batch is not None and start < self.neighbours:
            raise UsageError(
                f"ssdh's graph negatives come from rank {start} of a batch of {batch}, inside "
                f"the k={self.neighbours} nearest its positives come from: use batches of at "
                f"least {MIN_BATCH_SIZE} images (`batch_size`)"
            )
        positives, negatives = graph_neighbours(
            distances, self.neighbours, start, count, self.seed_generator
        )
        margin = default_graph_margin(bits) if self.graph_margin is None else self.graph_margin
        graph = tf.reduce_mean(graph_loss(distances, positives, negatives, margin))
        return {
            "loss": 0.5 * (ranking + self.graph_weight * graph),
            "ranking": ranking,
            "graph": graph,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            margin=self.margin,
            graph_margin=self.graph_margin,
            graph_weight=self.graph_weight,
            neighbours=self.neighbours,
            mining=self.mining,
            quadruplets_per_anchor=self.quadruplets_per_anchor,
            seed=self.seed,
            anchor_as_positive=self.anchor_as_positive,
        )
        return config
