"""Training augmentation of uint8 image batches, as TF ops driven by a stateless seed.

The names a user chooses from are :data:`tfhash.data.AUGMENTATIONS`;
:func:`tfhash.data.default_augmentation` gives the one that suits a source.
"""

import tensorflow as tf

from tfhash.data.sources import AUGMENTATIONS
from tfhash.errors import UsageError


def resolve_augmentation(augment):
    """The augmentation name for ``augment`` (a name, or True/False for crop_flip/none)."""
    if augment is True:
        return "crop_flip"
    if augment is False or augment is None:
        return "none"
    if augment not in AUGMENTATIONS:
        raise UsageError(
            f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}"
        )
    return augment


def augment_batch(images, seed, flip):
    """CIFAR-style augmentation of uint8 ``[B, S, S, 3]``: zero-pad by ``S // 8`` (4 pixels
    at 32x32), crop ``S x S`` at a random offset, and with ``flip`` flip left-right with
    probability 1/2.

    The crop is two batched gathers (rows, then columns); a flipped image reads its
    columns in reverse order, so flipping costs nothing extra.
    """
    batch, size = tf.shape(images)[0], images.shape[1]
    pad = max(1, size // 8)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [batch, 2], crop_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32
    )
    steps = tf.range(size)[None, :]
    rows = offsets[:, :1] + steps
    cols = offsets[:, 1:] + steps
    if flip:
        flipped = tf.random.stateless_uniform([batch, 1], flip_seed) < 0.5
        cols = offsets[:, 1:] + tf.where(flipped, size - 1 - steps, steps)
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def image_inputs(table, augment):
    """``inputs(positions, augment_seed)`` of the batch samplers for a uint8 image table: the
    rows, augmented, as float32."""

    def images(positions, augment_seed):
        batch = tf.gather(table, positions)
        if augment != "none":
            batch = augment_batch(batch, augment_seed, flip=augment == "crop_flip")
        return tf.cast(batch, tf.float32)

    return images
