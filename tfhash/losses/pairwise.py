"""Pairwise building blocks of the losses: squared distances and label similarity.

Every loss in :mod:`tfhash.losses` computes one ``[B, B]`` matrix of squared
Euclidean distances between the relaxed codes of a batch, and one ``[B, B]``
boolean matrix saying which items are relevant to each other; the mined tuples
then only gather entries of these two matrices, so gradients flow through a
single distance matrix. Both also take a separate set of keys (``[B, N]``: a memory
bank of earlier codes, or the codes gathered from every replica) for a loss that ranks
the batch's items against more than the batch.
"""

import tensorflow as tf

from tfhash.errors import UsageError


def squared_distances(h, keys=None):
    """All squared Euclidean distances ``|h_i − h_j|²`` of a batch of codes, or from a set of
    queries to a set of keys.

    Computed as ``|h_i|² + |k_j|² − 2 h_i·k_j`` (one matmul, ``O(B²)`` memory,
    whose gradient with respect to ``h_i`` is exactly ``2 (h_i − k_j)``), then
    clipped at 0 against rounding; within one batch (no ``keys``) with an exact zero
    diagonal.

    For binary codes ``b ∈ {−1, +1}^K`` the result is exact in float32 and
    equals ``4 · Hamming(b_i, b_j)``.

    Args:
        h: float tensor ``[B, K]``, the queries.
        keys: optional float tensor ``[N, K]`` of the same dtype, e.g. a memory bank of
            earlier batches' codes or the codes gathered from every replica; default ``h``.

    Returns:
        ``[B, B]`` (``[B, N]`` with ``keys``) tensor of ``h``'s dtype.

    Example:

    >>> d = squared_distances(tf.constant([[1.0, -1.0], [1.0, 1.0]]))
    >>> d.numpy().tolist()
    [[0.0, 4.0], [4.0, 0.0]]
    >>> squared_distances(tf.constant([[1.0, -1.0]]), tf.constant([[1.0, 1.0], [-1.0, 1.0]])
    ...                   ).numpy().tolist()
    [[4.0, 8.0]]
    """
    h = tf.convert_to_tensor(h)
    k = h if keys is None else tf.convert_to_tensor(keys)
    norms, key_norms = tf.reduce_sum(tf.square(h), axis=1), tf.reduce_sum(tf.square(k), axis=1)
    d = tf.maximum(
        norms[:, None] + key_norms[None, :] - 2.0 * tf.matmul(h, k, transpose_b=True), 0.0
    )
    return tf.linalg.set_diag(d, tf.zeros_like(norms)) if keys is None else d


def is_multi_label(labels):
    """Whether ``labels`` are multi-hot ``[B, C]`` (``C > 1``) rather than class ids.

    Decided from the static shape, so it is known when a ``tf.function`` traces:
    ``[B]`` and ``[B, 1]`` are integer class ids; ``[B, C]`` with ``C > 1`` is
    multi-hot (one-hot included).

    Raises:
        UsageError: for any other shape, or a ``[B, C]`` whose ``C`` is unknown.
    """
    shape = tf.TensorShape(labels.shape)
    if shape.rank == 1:
        return False
    if shape.rank == 2 and shape[1] is not None:
        return shape[1] > 1
    raise UsageError(
        f"labels must be class ids [B] or [B, 1], or multi-hot [B, C] with a known C, "
        f"got shape {shape}"
    )


def label_similarity(labels, key_labels=None):
    """Which items of a batch are relevant to each other: they share a label; or which keys
    are relevant to each query, with ``key_labels``.

    The package's relevance rule: single-label items are similar iff their class
    ids are equal; multi-label items iff their multi-hot rows share at least one
    label (``y_i · y_j > 0``; LSDH's ``s_jk`` of Eq. 13). One-hot rows give the
    same relation as their class ids. An item without any label is similar to
    nothing, itself included.

    Args:
        labels: class ids ``[B]`` or ``[B, 1]`` (any numeric dtype), or multi-hot
            ``[B, C]``: the queries'.
        key_labels: optional labels of a set of keys (``[N]`` / ``[N, 1]``, or ``[N, C]``
            when ``labels`` are multi-hot), e.g. a memory bank's; default ``labels``.

    Returns:
        Boolean ``[B, B]`` tensor, symmetric (``[B, N]`` with ``key_labels``).

    Example:

    >>> label_similarity(tf.constant([3, 1, 3])).numpy().astype(int).tolist()
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    >>> label_similarity(tf.constant([3, 1]), tf.constant([1, 1, 3])).numpy().tolist()
    [[False, False, True], [True, True, False]]
    """
    labels = tf.convert_to_tensor(labels)
    keys = labels if key_labels is None else tf.convert_to_tensor(key_labels)
    if is_multi_label(labels):
        y, k = tf.cast(labels, tf.float32), tf.cast(keys, tf.float32)
        return tf.matmul(y, k, transpose_b=True) > 0.0
    ids, key_ids = tf.reshape(labels, [-1]), tf.reshape(keys, [-1])
    return tf.equal(ids[:, None], tf.cast(key_ids, ids.dtype)[None, :])
