"""Pairwise building blocks of the losses: squared distances and label similarity.

Every loss in :mod:`tfhash.losses` computes one ``[B, B]`` matrix of squared
Euclidean distances between the relaxed codes of a batch, and one ``[B, B]``
boolean matrix saying which items are relevant to each other; the mined tuples
then only gather entries of these two matrices, so gradients flow through a
single distance matrix.
"""

import tensorflow as tf

from tfhash.errors import UsageError


def squared_distances(h):
    """All squared Euclidean distances ``|h_i − h_j|²`` of a batch of codes.

    Computed as ``|h_i|² + |h_j|² − 2 h_i·h_j`` (one matmul, ``O(B²)`` memory,
    whose gradient with respect to ``h_i`` is exactly ``2 (h_i − h_j)``), then
    clipped at 0 against rounding and with an exact zero diagonal.

    For binary codes ``b ∈ {−1, +1}^K`` the result is exact in float32 and
    equals ``4 · Hamming(b_i, b_j)``.

    Args:
        h: float tensor ``[B, K]``.

    Returns:
        ``[B, B]`` tensor of ``h``'s dtype.

    Example:

    >>> d = squared_distances(tf.constant([[1.0, -1.0], [1.0, 1.0]]))
    >>> d.numpy().tolist()
    [[0.0, 4.0], [4.0, 0.0]]
    """
    h = tf.convert_to_tensor(h)
    norms = tf.reduce_sum(tf.square(h), axis=1)
    d = norms[:, None] + norms[None, :] - 2.0 * tf.matmul(h, h, transpose_b=True)
    return tf.linalg.set_diag(tf.maximum(d, 0.0), tf.zeros_like(norms))


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


def label_similarity(labels):
    """Which items of a batch are relevant to each other: they share a label.

    The package's relevance rule: single-label items are similar iff their class
    ids are equal; multi-label items iff their multi-hot rows share at least one
    label (``y_i · y_j > 0``; LSDH's ``s_jk`` of Eq. 13). One-hot rows give the
    same relation as their class ids. An item without any label is similar to
    nothing, itself included.

    Args:
        labels: class ids ``[B]`` or ``[B, 1]`` (any numeric dtype), or multi-hot
            ``[B, C]``.

    Returns:
        Boolean ``[B, B]`` tensor, symmetric.

    Example:

    >>> label_similarity(tf.constant([3, 1, 3])).numpy().astype(int).tolist()
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    """
    labels = tf.convert_to_tensor(labels)
    if is_multi_label(labels):
        y = tf.cast(labels, tf.float32)
        return tf.matmul(y, y, transpose_b=True) > 0.0
    ids = tf.reshape(labels, [-1])
    return tf.equal(ids[:, None], ids[None, :])
