"""Class-balanced batch sampling as pure TF ops: which rows of an in-memory table make batch ``t``.

The batch streams of :mod:`tfhash.data.pipeline` are built here, over any table of inputs
(decoded images, cached features): :func:`balanced_batches` draws ``groups`` classes (labels,
for multi-label data) and ``images_per_class`` images of each, :func:`semi_supervised_batches`
adds unlabelled rows drawn uniformly. Batch ``t`` is a function of ``(seed, t)`` alone, through
stateless random numbers, so a resumed run sees the batches it would have seen.
"""

import numpy as np
import tensorflow as tf

from tfhash.errors import UsageError


def check_indices(collection, indices):
    indices = np.asarray(indices, np.int64).reshape(-1)
    if len(indices) == 0:
        raise UsageError(
            f"no images selected from {collection.name}: the split part is empty "
            "(e.g. val with val_fraction=0); choose a split that has some"
        )
    if indices.min() < 0 or indices.max() >= len(collection):
        raise UsageError(
            f"image indices must lie in [0, {len(collection)}) for "
            f"{collection.name}, got [{indices.min()}, {indices.max()}]"
        )
    return indices


def label_tensor(collection, indices):
    """int64 ``[n]`` class ids or float32 ``[n, C]`` multi-hot rows."""
    labels = collection.labels[indices]
    return tf.constant(labels.astype(np.float32 if collection.multi_label else np.int64))


def balanced_groups(collection, indices, batch_size, images_per_class, fewer_classes=False):
    """Validates the batch shape; returns (members [C, max_count], counts [C], groups).

    With ``fewer_classes``, a collection with fewer classes (with ``images_per_class``
    training images) than a batch has places for fills its batches with every one of them,
    at least two: ``eligible x images_per_class`` images, fewer than ``batch_size`` (a folder
    of three classes trains with the batch shape a folder of ten does)."""
    if images_per_class < 2:
        raise UsageError(
            f"`images_per_class` must be at least 2 so every image has a "
            f"positive in its batch, got {images_per_class}"
        )
    if batch_size % images_per_class:
        raise UsageError(
            f"batch_size={batch_size} is not a multiple of images_per_class={images_per_class}"
        )
    groups = batch_size // images_per_class
    if groups < 2:
        raise UsageError(
            f"batch_size={batch_size} with images_per_class="
            f"{images_per_class} gives one class per batch, so no negatives; "
            "use a batch of at least two classes"
        )
    membership = collection.membership(indices)
    counts = membership.sum(axis=0)
    eligible = int((counts >= images_per_class).sum())
    kind = "labels" if collection.multi_label else "classes"
    if fewer_classes and 2 <= eligible < groups:
        groups = eligible
    if eligible < groups:
        fix = (
            "lower `images_per_class`"
            if fewer_classes
            else "lower `images_per_class` or `batch_size`"
        )
        raise UsageError(
            f"a batch of {batch_size} with {images_per_class} images per class needs "
            f"{2 if fewer_classes else groups} {kind} with at least "
            f"{images_per_class} training images, but {collection.name} has {eligible}; {fix}"
        )
    members = np.zeros((membership.shape[1], max(1, counts.max())), np.int32)
    for c in range(membership.shape[1]):
        rows = np.flatnonzero(membership[:, c])
        members[c, : len(rows)] = rows
    return members, counts, groups


def sample_positions(seed, members, counts, num_images, groups, images_per_class):
    """Positions (rows of the training table) of one balanced batch, as pure TF ops.

    Draws ``groups`` distinct labels uniformly among those carried by at least
    ``images_per_class`` training images, then for each label ``images_per_class``
    distinct images carrying it, uniformly among those not yet in the batch. For
    multi-label data an image carrying two chosen labels is taken twice only when a
    label has too few other images left.

    Args:
        seed: stateless seed, int64 ``[2]``.
        members: int32 ``[C, M]``; row ``c`` lists the table rows carrying label ``c``,
            padded after its ``counts[c]`` entries.
        counts: int ``[C]``.
        num_images: rows in the training table.
    """
    num_labels, max_count = members.shape
    seeds = tf.random.experimental.stateless_split(seed, groups + 1)
    eligible = tf.cast(counts >= images_per_class, tf.float32)
    # Uniform scores in [0, 1) lifted by 2 for eligible labels: top_k picks eligible ones.
    label_score = tf.random.stateless_uniform([num_labels], seeds[0]) + 2.0 * eligible
    chosen = tf.math.top_k(label_score, groups).indices
    in_batch = tf.zeros([num_images], tf.bool)
    picks = []
    for g in range(groups):
        row = tf.gather(members, chosen[g])
        valid = tf.range(max_count) < tf.gather(counts, chosen[g])
        fresh = tf.logical_and(valid, tf.logical_not(tf.gather(in_batch, row)))
        # Fresh images score in [2, 3), images already in the batch in [1, 2), padding [0, 1).
        score = (
            tf.random.stateless_uniform([max_count], seeds[g + 1])
            + tf.cast(valid, tf.float32)
            + tf.cast(fresh, tf.float32)
        )
        pick = tf.gather(row, tf.math.top_k(score, images_per_class).indices)
        in_batch = tf.tensor_scatter_nd_update(
            in_batch, pick[:, None], tf.ones([images_per_class], tf.bool)
        )
        picks.append(pick)
    return tf.concat(picks, 0)


def balanced_batches(
    collection,
    indices,
    members,
    counts,
    groups,
    images_per_class,
    inputs,
    seed,
    start_step,
    targets=None,
):
    """The endless balanced batches: batch ``t`` samples its rows from ``(seed, t)`` and
    ``inputs(positions, augment_seed)`` turns them into the batch's inputs; the second element
    is the rows' labels, or their ``targets``."""
    if targets is None:
        labels = label_tensor(collection, indices)
    elif len(targets) != len(indices):
        raise UsageError(
            f"{len(targets)} targets for {len(indices)} training images; give one per image"
        )
    else:
        labels = tf.constant(np.asarray(targets, np.float32))
    members, counts = tf.constant(members), tf.constant(counts, tf.int32)

    def make_batch(step):
        batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
        sample_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(batch_seed, 2)
        )
        positions = sample_positions(
            sample_seed, members, counts, len(indices), groups, images_per_class
        )
        return inputs(positions, augment_seed), tf.gather(labels, positions)

    return (
        tf.data.Dataset.counter(start=start_step)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def semi_supervised_shape(
    collection, labelled, unlabelled, batch_size, images_per_class, labelled_ratio
):
    """Validates a semi-supervised batch; returns (labelled, unlabelled, members, counts,
    groups, unlabelled per batch)."""
    if not 0 < labelled_ratio < 1:
        raise UsageError(
            f"`labelled_ratio` must be in (0, 1): the part of each batch that is "
            f"labelled, got {labelled_ratio}"
        )
    if len(unlabelled) == 0:
        raise UsageError(
            f"the split of {collection.name} has no unlabelled images (its "
            "training draw is the whole database): keep fewer labelled with "
            "`labelled_per_class` or use a protocol with a smaller training draw"
        )
    unlabelled = check_indices(collection, unlabelled)
    num_labelled = round(labelled_ratio * batch_size)
    per_batch = batch_size - num_labelled
    if num_labelled % images_per_class or num_labelled < 2 * images_per_class or not per_batch:
        raise UsageError(
            f"labelled_ratio={labelled_ratio} of batch_size={batch_size} gives "
            f"{num_labelled} labelled and {per_batch} unlabelled images per batch: the "
            f"labelled ones must be at least two classes of images_per_class="
            f"{images_per_class} (a multiple of it), with some unlabelled; change the ratio"
        )
    if per_batch > len(unlabelled):
        raise UsageError(
            f"a batch takes {per_batch} unlabelled images but the split has "
            f"{len(unlabelled)}: raise `labelled_ratio` or lower `batch_size`"
        )
    labelled = check_indices(collection, labelled)
    members, counts, groups = balanced_groups(collection, labelled, num_labelled, images_per_class)
    return labelled, unlabelled, members, counts, groups, per_batch


def semi_supervised_batches(
    collection,
    labelled,
    unlabelled,
    members,
    counts,
    groups,
    per_batch,
    images_per_class,
    inputs,
    seed,
    start_step,
):
    """The endless mixed batches: rows ``0 … len(labelled) − 1`` of the table ``inputs`` reads
    are the labelled images, the rest the unlabelled ones."""
    labels = label_tensor(collection, labelled)
    if collection.multi_label:
        targets = tf.concat([tf.ones([len(labelled), 1]), labels], 1)
    else:
        targets = tf.stack([tf.ones([len(labelled)], tf.int64), labels], 1)
    unlabelled_targets = tf.zeros([per_batch, targets.shape[1]], targets.dtype)
    members, counts = tf.constant(members), tf.constant(counts, tf.int32)

    def make_batch(step):
        batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
        sample_seed, unlabelled_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(batch_seed, 3)
        )
        positions = sample_positions(
            sample_seed, members, counts, len(labelled), groups, images_per_class
        )
        scores = tf.random.stateless_uniform([len(unlabelled)], unlabelled_seed)
        others = len(labelled) + tf.math.top_k(scores, per_batch).indices
        rows = tf.concat([positions, others], 0)
        return (
            inputs(rows, augment_seed),
            tf.concat([tf.gather(targets, positions), unlabelled_targets], 0),
        )

    return (
        tf.data.Dataset.counter(start=start_step)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
