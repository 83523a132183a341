"""tf.data pipelines: one decode function, class-balanced training batches, ordered eval batches.

Images enter a model as float32 ``[B, S, S, 3]`` RGB pixels in ``[0, 255]``.

* :func:`decode_image` is the one decode+resize function, used for image files, for
  encoded bytes and (through the same resize) for in-memory arrays; the SavedModel
  export calls it too, so serving sees exactly the pixels training saw.
* :func:`train_dataset` yields endless class-balanced batches: ``P = batch_size //
  images_per_class`` classes (labels, for multi-label data), ``images_per_class`` images
  each, so every image has positives in its batch (with ``images_per_class >= 3`` every
  anchor has the two positives and the negatives of an LSDH quadruplet, Eq. 6).
  Training images are decoded once (in parallel) into a uint8 table held in memory
  (``n x S x S x 3`` bytes: 5,000 CIFAR images at 32x32 are 15 MB, at 224x224 750 MB);
  a batch is then a gather from that table plus a CIFAR-style augmentation, all TF
  ops driven by stateless random numbers keyed on ``(seed, step)``: the same seed
  gives the same batches.
* :func:`semi_supervised_dataset` (and :func:`feature_semi_supervised_dataset`) yields batches
  mixing class-balanced labelled images with unlabelled ones, and a labelled mask (SSDH).
* :func:`eval_dataset` yields the given images once, in order, without augmentation.

The sampling of a batch's rows lives in :mod:`tfhash.data.sampling`, the augmentation in
:mod:`tfhash.data.augment`; this module decodes the images and puts the pieces together.
"""

import os
import re
import sys

import numpy as np
import tensorflow as tf

from tfhash.data.augment import image_inputs, resolve_augmentation
from tfhash.data.sampling import (
    balanced_batches,
    balanced_groups,
    check_indices,
    label_tensor,
    semi_supervised_batches,
    semi_supervised_shape,
)
from tfhash.data.sources import AUGMENTATIONS  # noqa: F401  (read as pipeline.AUGMENTATIONS)
from tfhash.errors import UsageError

# File/byte sources whose decoded evaluation images fit in this many bytes are decoded once
# and kept; larger ones (e.g. a NUS-WIDE database at 224x224) are decoded on every pass.
EVAL_CACHE_BYTES = 2 << 30

_DECODE_CHUNK = 512


def _fit(images, image_size):
    """uint8 ``[..., H, W, 3]`` -> uint8 ``[..., S, S, 3]``.

    Unchanged when ``H == W == S``; otherwise antialiased bilinear resampling (aspect
    ratio not kept) rounded back to uint8, so that decoded pixels are the same whether
    they are cached as uint8 or computed on the fly.
    """

    def resample():
        resized = tf.image.resize(
            images, (image_size, image_size), method="bilinear", antialias=True
        )
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    height, width = images.shape[-3], images.shape[-2]
    if height is not None and width is not None:
        return images if height == width == image_size else resample()
    shape = tf.shape(images)
    same = tf.logical_and(tf.equal(shape[-3], image_size), tf.equal(shape[-2], image_size))
    fitted = tf.cond(same, lambda: images, resample)
    return tf.ensure_shape(fitted, images.shape[:-3] + (image_size, image_size, 3))


def decode_image(image_bytes, image_size):
    """Decodes one JPEG/PNG/BMP/GIF/WebP image to float32 ``[S, S, 3]`` RGB in ``[0, 255]``.

    Grey images are repeated to RGB, alpha is dropped; an image of another size is
    resized with antialiased bilinear resampling and rounded to whole pixel values
    (the same resize as in-memory arrays get).

    Args:
        image_bytes: a scalar ``tf.string`` tensor holding the encoded image.
        image_size: ``S``, a Python int.

    Returns:
        float32 tensor ``[S, S, 3]``.

    Example:

    >>> png = tf.io.encode_png(tf.zeros((10, 20, 1), tf.uint8))
    >>> decode_image(png, 32).shape
    TensorShape([32, 32, 3])
    """
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.cast(_fit(image, image_size), tf.float32)


def _encoded_source(collection, indices):
    """(strings, reader): file paths read by ``tf.io.read_file``, or encoded bytes as they are."""
    if collection.files is not None:
        return tf.constant(collection.files[indices]), tf.io.read_file
    return tf.constant(list(collection.encoded[indices]), tf.string), tf.identity


def _decoded_stream(collection, indices, image_size):
    """A dataset of uint8 ``[S, S, 3]`` images decoded in parallel, in index order."""
    strings, read = _encoded_source(collection, indices)

    def load(string):
        image = tf.io.decode_image(
            read(string), channels=3, dtype=tf.uint8, expand_animations=False
        )
        return _fit(image, image_size)

    return tf.data.Dataset.from_tensor_slices(strings).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def _unreadable(collection, indices, image_size):
    """``[(item, reason)]`` of every image at ``indices`` that fails to decode (looked for only
    after a decode error, so that one run names them all, not the first of them)."""
    strings, read = _encoded_source(collection, indices)
    found = []
    for position, string in enumerate(strings):
        try:
            decode_image(read(string), image_size)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            where = (
                collection.files[indices[position]]
                if collection.files is not None
                else collection.item_ids[indices[position]]
            )
            # TF prefixes "{{function_node …}}" and appends "[Op:DecodeImage] …".
            reason = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", e.message).strip() or "unreadable"
            found.append((where, reason.splitlines()[0]))
    return found


class _QuietStderr:
    """File descriptor 2 to /dev/null while decoding, where the command hides TensorFlow's
    lines (``TF_CPP_MIN_LOG_LEVEL=3``): libjpeg writes "Improper call to JPEG library in state
    201" there for a corrupt file, before the error that names the file."""

    def __enter__(self):
        self.saved = None
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3":
            sys.stderr.flush()
            self.saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)


def _decode_table(collection, indices, image_size):
    """uint8 ``[n, S, S, 3]``: the images at ``indices``, decoded (or resized) once.

    Raises:
        UsageError: an unreadable or corrupt image file; the message names it.
    """
    indices = check_indices(collection, indices)
    if collection.pixels is not None:
        chunks = np.array_split(indices, max(1, len(indices) // 4096))
        return np.concatenate(
            [np.asarray(_fit(collection.pixels[chunk], image_size)) for chunk in chunks]
        )
    table = np.empty((len(indices), image_size, image_size, 3), np.uint8)
    stream = _decoded_stream(collection, indices, image_size).batch(_DECODE_CHUNK)
    start, bad = 0, None
    with _QuietStderr():
        try:
            for batch in stream:
                table[start : start + len(batch)] = batch.numpy()
                start += len(batch)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            bad = _unreadable(collection, indices[start:], image_size)
            if not bad:
                raise
            error = e
    if bad:
        if len(bad) == 1:
            raise UsageError(
                f"cannot decode image {bad[0][0]} ({bad[0][1]}); replace or remove that file"
            ) from error
        raise UsageError(
            f"cannot decode {len(bad)} images: "
            + "; ".join(f"{where} ({reason})" for where, reason in bad)
            + "; replace or remove those "
            "files"
        ) from error
    return table


def eval_dataset(collection, indices, image_size, batch_size):
    """A finite dataset of ``(images, labels)`` batches over ``indices``, in order.

    Args:
        collection: a :class:`Collection`.
        indices: int indices into the collection (a split part).
        image_size: ``S``.
        batch_size: images per batch (the last batch may be smaller).

    Returns:
        ``tf.data.Dataset`` of ``(float32 [B, S, S, 3] in [0, 255], labels)`` with labels
        int64 ``[B]`` (single-label) or float32 multi-hot ``[B, C]``.
    """
    indices = check_indices(collection, indices)
    labels = label_tensor(collection, indices)
    if collection.pixels is not None:
        pixels = tf.constant(collection.pixels[indices])  # resized batch by batch

        def batch_from_pixels(rows):
            images = _fit(tf.gather(pixels, rows), image_size)
            return tf.cast(images, tf.float32), tf.gather(labels, rows)

        ds = tf.data.Dataset.range(len(indices)).batch(batch_size).map(batch_from_pixels)
    elif len(indices) * image_size * image_size * 3 <= EVAL_CACHE_BYTES:
        table = tf.constant(_decode_table(collection, indices, image_size))
        ds = (
            tf.data.Dataset.range(len(indices))
            .batch(batch_size)
            .map(
                lambda rows: (tf.cast(tf.gather(table, rows), tf.float32), tf.gather(labels, rows))
            )
        )
    else:
        images = _decoded_stream(collection, indices, image_size).map(
            lambda image: tf.cast(image, tf.float32)
        )
        ds = tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(labels))
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_dataset(
    collection,
    indices,
    image_size,
    batch_size,
    images_per_class,
    augment=True,
    seed=0,
    start_step=0,
    targets=None,
):
    """An endless dataset of class-balanced ``(images, labels)`` training batches.

    Each batch holds ``P = batch_size // images_per_class`` distinct classes with
    ``images_per_class`` images each, so every image has at least
    ``images_per_class - 1`` positives and ``(P - 1) * images_per_class`` negatives in its
    batch. For multi-label data the batch is label-balanced: ``P`` labels, then
    ``images_per_class`` images carrying each. Classes are drawn uniformly (among those
    with enough training images), images uniformly within a class. Where fewer than ``P``
    (but at least two) classes have enough training images, each batch holds all of them,
    ``images_per_class`` images each.

    Args:
        collection: a :class:`Collection`.
        indices: the training images (``split.train``).
        image_size: ``S``.
        batch_size: ``B``, a multiple of ``images_per_class``.
        images_per_class: images per class (or label) in a batch, at least 2.
        augment: ``"crop"`` (a random crop of the zero-padded image), ``"crop_flip"``
            (and a horizontal flip, for natural images; ``True`` means this), or
            ``"none"`` (``False``). A flipped digit or letter is another glyph: see
            :func:`tfhash.data.default_augmentation`.
        seed: batch ``t`` depends only on ``(seed, t)``.
        start_step: the ``t`` of the first batch (a resumed run continues where it
            stopped instead of seeing its first batches again).
        targets: optional ``[len(indices), T]`` per-image targets (CNNH's stage-1 codes)
            that the batches carry in place of the labels; the sampling still balances
            the labels.

    Returns:
        ``tf.data.Dataset`` of ``(float32 [B, S, S, 3] in [0, 255], labels)``, labels
        int64 ``[B]`` or float32 multi-hot ``[B, C]``.

    Raises:
        UsageError: an impossible batch shape (``images_per_class < 2``, ``batch_size`` not
            a multiple of it, fewer than two classes per batch, or fewer classes with
            ``images_per_class`` training images than a batch needs) or an unreadable image.

    Example::

        ds = train_dataset(collection, split.train, 32, batch_size=64, images_per_class=8)
        images, labels = next(iter(ds))   # 8 classes x 8 images
    """
    augment = resolve_augmentation(augment)
    indices = check_indices(collection, indices)
    members, counts, groups = balanced_groups(
        collection, indices, batch_size, images_per_class, fewer_classes=True
    )
    table = tf.constant(_decode_table(collection, indices, image_size))
    return balanced_batches(
        collection,
        indices,
        members,
        counts,
        groups,
        images_per_class,
        image_inputs(table, augment),
        seed,
        start_step,
        targets,
    )


def feature_train_dataset(
    collection, indices, features, batch_size, images_per_class, seed=0, start_step=0, targets=None
):
    """:func:`train_dataset` over precomputed features: the same class-balanced sampling (the
    same batches for the same seed), yielding ``(float32 [B, d], labels)``.

    Args:
        features: float32 ``[len(indices), d]``, row ``i`` the features of image
            ``indices[i]`` (e.g. a frozen backbone's, from :mod:`tfhash.models.features`).
    """
    indices = check_indices(collection, indices)
    if len(features) != len(indices):
        raise UsageError(
            f"{len(features)} feature rows for {len(indices)} images; give one row per index"
        )
    members, counts, groups = balanced_groups(
        collection, indices, batch_size, images_per_class, fewer_classes=True
    )
    table = tf.constant(np.asarray(features, np.float32))
    return balanced_batches(
        collection,
        indices,
        members,
        counts,
        groups,
        images_per_class,
        lambda positions, _: tf.gather(table, positions),
        seed,
        start_step,
        targets,
    )


def feature_eval_dataset(collection, indices, features, batch_size):
    """:func:`eval_dataset` over precomputed features (row ``i`` for ``indices[i]``): finite
    ``(float32 [B, d], labels)`` batches in order."""
    indices = check_indices(collection, indices)
    labels = label_tensor(collection, indices)
    rows = tf.data.Dataset.from_tensor_slices((np.asarray(features, np.float32), labels))
    return rows.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def semi_supervised_dataset(
    collection,
    labelled,
    unlabelled,
    image_size,
    batch_size,
    images_per_class,
    labelled_ratio,
    augment=True,
    seed=0,
    start_step=0,
):
    """Endless training batches mixing labelled and unlabelled images (semi-supervised methods).

    A batch of ``B`` holds ``b = round(labelled_ratio · B)`` labelled images, class-balanced as
    :func:`train_dataset` draws them (``b / images_per_class`` classes of ``images_per_class``
    images), then ``B − b`` distinct unlabelled images drawn uniformly. The second element of a
    batch is ``[B, 1 + L]``: column 0 the labelled mask (1 for the ``b`` labelled rows, which
    come first; 0 for the others), then the labels of the labelled rows (the class id, int64,
    or the multi-hot row, float32); the unlabelled rows carry zeros there, since their labels
    never enter the dataset. ``tfhash.losses.ssdh.unpack_labels`` reads it.

    Args:
        collection: a :class:`Collection`.
        labelled: the labelled training images (``split.train``).
        unlabelled: the unlabelled ones (``split.unlabeled``).
        image_size, augment, seed, start_step: as :func:`train_dataset` (batch ``t`` depends
            only on ``(seed, t)``). Both parts are decoded once into memory.
        batch_size: ``B``.
        images_per_class: images per class among the labelled ones, at least 2.
        labelled_ratio: ``b / B``, in ``(0, 1)``.

    Returns:
        ``tf.data.Dataset`` of ``(float32 [B, S, S, 3] in [0, 255], [B, 1 + L])``.

    Raises:
        UsageError: a ratio outside ``(0, 1)``, no unlabelled images (or fewer than a batch
            takes), a labelled part that is not whole classes of ``images_per_class`` (at
            least two), or what :func:`train_dataset` refuses.

    Example::

        ds = semi_supervised_dataset(collection, split.train, split.unlabeled, 32,
                                     batch_size=128, images_per_class=8, labelled_ratio=0.5)
        images, y = next(iter(ds))   # 8 classes x 8 labelled images, 64 unlabelled
    """
    augment = resolve_augmentation(augment)
    shape = semi_supervised_shape(
        collection, labelled, unlabelled, batch_size, images_per_class, labelled_ratio
    )
    table = tf.constant(
        np.concatenate([_decode_table(collection, part, image_size) for part in shape[:2]])
    )
    return semi_supervised_batches(
        collection, *shape, images_per_class, image_inputs(table, augment), seed, start_step
    )


def feature_semi_supervised_dataset(
    collection,
    labelled,
    unlabelled,
    labelled_features,
    unlabelled_features,
    batch_size,
    images_per_class,
    labelled_ratio,
    seed=0,
    start_step=0,
):
    """:func:`semi_supervised_dataset` over precomputed features (row ``i`` of
    ``labelled_features`` for ``labelled[i]``, of ``unlabelled_features`` for ``unlabelled[i]``):
    the same batches for the same seed, yielding ``(float32 [B, d], [B, 1 + L])``."""
    shape = semi_supervised_shape(
        collection, labelled, unlabelled, batch_size, images_per_class, labelled_ratio
    )
    for part, rows in zip(shape[:2], (labelled_features, unlabelled_features)):
        if len(rows) != len(part):
            raise UsageError(
                f"{len(rows)} feature rows for {len(part)} images; give one row per index"
            )
    table = tf.constant(
        np.concatenate(
            [np.asarray(labelled_features, np.float32), np.asarray(unlabelled_features, np.float32)]
        )
    )
    return semi_supervised_batches(
        collection,
        *shape,
        images_per_class,
        lambda positions, _: tf.gather(table, positions),
        seed,
        start_step,
    )
