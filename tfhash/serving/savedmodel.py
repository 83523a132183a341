"""The serving graph of a trained hashing model, and the versioned SavedModel layout.

An exported model is a TensorFlow SavedModel in ``export_dir/<version>/`` — the
layout TensorFlow Serving watches: it loads the highest integer version and
ignores every other name. It has two signatures (method
``tensorflow/serving/predict``, any batch size B):

* ``serving_default``: ``images`` float32 [B, S, S, 3], RGB pixels in [0, 255]
  (the model normalises them itself);
* ``encode_images``: ``image_bytes`` string [B], JPEG or PNG files of any size
  from 8 x 8 pixels (:data:`MIN_IMAGE_SIDE`, or the model's input side where that is
  smaller; a smaller one fails the call, named),
  grey or RGB, decoded and resized in the graph as ``tfhash.data.decode_image``
  does, the function training uses;

and the same three outputs (empty for an empty batch):

* ``embedding`` float32 [B, K]: the relaxed codes h ∈ (−1, 1) (LSDH Eq. 4, the
  model's output), for asymmetric "-C" ranking and re-ranking;
* ``codes`` int8 [B, K]: ``b = sign(h)`` with sign(0) = +1 (LSDH Eq. 5);
* ``packed`` uint8 [B, ⌈K/8⌉]: ``np.packbits(b > 0, axis=1)`` — bit ``k`` of a
  code is bit ``7 − k mod 8`` of byte ``⌊k/8⌋``, zero padded.

Outputs are cast to these dtypes inside the graph, so they hold under any
mixed-precision policy. Shapes are checked at run time by ``EnsureShape``: a
wrong rank or channel count fails with ``InvalidArgumentError: Shape of tensor
images [...] is not compatible with expected shape [?,S,S,3]`` instead of
reaching a convolution kernel (which, through the C++ session TF Serving uses,
aborts the server process).

Example::

    model = tfhash.models.build_model("resnet_small", bits=48)
    version_dir = export_model(model, "models/cifar10")      # models/cifar10/1
    encode = tf.saved_model.load(version_dir).signatures["serving_default"]
    packed = encode(images=tf.zeros([2, 32, 32, 3]))["packed"]   # uint8 [2, 6]

TensorFlow is imported by the functions that need it, so the command lines can
check their paths (:func:`resolve_version_dir`, :func:`next_version`) before
paying for it.
"""

import os

from tfhash.errors import UsageError

IMAGES_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "encode_images"
# Smaller images are refused by ``encode_images`` (or than the model's input, where that is
# smaller): a 1 x 1 image (a tracking pixel) would be encoded as a flat colour, silently. 8 is
# the side of the smallest photographs tfhash trains on (scikit-learn's digits).
MIN_IMAGE_SIDE = 8

# Byte weights of bits 0..7 within a packed byte, most significant first (np.packbits order).
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def pack_codes(codes):
    """Packs ±1 codes [B, K] into uint8 [B, ⌈K/8⌉] as ``np.packbits(codes > 0, axis=1)``.

    Byte j of a row is ``Σ_{i=0..7} 2^(7−i) · [b_(8j+i) > 0]``, with the bits past K zero.
    K must be static.

    Example:

    >>> import tensorflow as tf
    >>> pack_codes(tf.constant([[1, -1, 1, 1, -1, -1, -1, -1, 1]], tf.int8)).numpy()
    array([[176, 128]], dtype=uint8)
    """
    import tensorflow as tf

    k = codes.shape[-1]  # static: the shapes of the outputs are part of the signatures
    bits = tf.pad(tf.cast(codes > 0, tf.int32), [[0, 0], [0, -k % 8]])
    groups = tf.reshape(bits, [-1, (k + 7) // 8, 8])
    return tf.cast(tf.reduce_sum(groups * tf.constant(_BIT_WEIGHTS), axis=-1), tf.uint8)


def serving_outputs(h):
    """The signature outputs for relaxed codes ``h``: embedding, codes and packed codes."""
    import tensorflow as tf

    from tfhash.models.layers import sign

    h = tf.cast(h, tf.float32)
    codes = sign(h, "int8")
    return {"embedding": h, "codes": codes, "packed": pack_codes(codes)}


def image_size_of(model):
    """The side S of the square images ``model`` takes (its input is [B, S, S, 3])."""
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise UsageError(
            f"the model's input must be [batch, S, S, 3] images, got {shape}; "
            "build it with tfhash.models.build_model"
        )
    return int(shape[1])


def export_model(model, export_dir, version=None):
    """Writes ``model`` as a SavedModel with both serving signatures into ``export_dir/<version>``.

    The SavedModel is written into a hidden sibling directory first and renamed
    into place, so a TensorFlow Serving instance polling ``export_dir`` never
    sees a half-written version.

    Args:
        model: a Keras model from raw pixels [B, S, S, 3] to relaxed codes [B, K].
        export_dir: the model's base path (created if missing).
        version: a positive integer; default, one more than the highest existing.

    Returns:
        The path of the written version directory.
    """
    version_dir = new_version_dir(export_dir, version)
    size = image_size_of(model)

    import keras
    import tensorflow as tf

    from tfhash.data import pipeline

    bits = int(model.outputs[0].shape[-1])
    smallest = min(MIN_IMAGE_SIDE, size)

    def relaxed(images):
        # An empty batch gets empty outputs without running the network: a convolution of
        # zero images fails inside batch normalisation ("Incompatible shapes: [32] vs. [0, …]").
        return tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(model(images, training=False), tf.float32),
            lambda: tf.zeros([0, bits], tf.float32),
        )

    def encode_pixels(images):
        images = tf.ensure_shape(tf.identity(images, name="images"), [None, size, size, 3])
        return serving_outputs(relaxed(images))

    def decode(image_bytes):
        # tfhash.data.decode_image, with the decoded image's size checked before the resize.
        image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
        check = tf.debugging.assert_greater_equal(
            tf.reduce_min(tf.shape(image)[:2]),
            smallest,
            message=f"image smaller than {smallest} x {smallest} pixels: too small to encode",
        )
        with tf.control_dependencies([check]):
            return tf.cast(pipeline._fit(image, size), tf.float32)

    def encode_bytes(image_bytes):
        image_bytes = tf.ensure_shape(tf.identity(image_bytes, name="image_bytes"), [None])
        images = tf.map_fn(
            decode, image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32)
        )
        return serving_outputs(relaxed(images))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        IMAGES_SIGNATURE,
        encode_pixels,
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")],
    )
    archive.add_endpoint(
        BYTES_SIGNATURE,
        encode_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    partial_dir = os.path.join(export_dir, ".partial-" + os.path.basename(version_dir))
    if os.path.exists(partial_dir):
        tf.io.gfile.rmtree(partial_dir)
    try:
        archive.write_out(partial_dir, verbose=False)
        os.rename(partial_dir, version_dir)
    except BaseException:  # a full disk, an interrupt: no partial version stays behind
        if os.path.exists(partial_dir):
            tf.io.gfile.rmtree(partial_dir)
        raise
    return version_dir


def new_version_dir(export_dir, version=None):
    """``export_dir/<version>`` for a new export; the next free version by default.

    Raises:
        UsageError: ``export_dir`` is a file, ``version`` is not positive or already exists.
    """
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise UsageError(
            f"`export_dir` {export_dir} is a file; pass a directory (created if missing)"
        )
    if version is None:
        version = next_version(export_dir)
    elif int(version) < 1:
        raise UsageError(f"`version` must be a positive integer, got {version}")
    version_dir = os.path.join(export_dir, str(int(version)))
    if os.path.exists(version_dir):
        raise UsageError(f"{version_dir} already exists; omit `version` to write the next free one")
    return version_dir


def versions(export_dir):
    """The integer versions under ``export_dir``, ascending; TF Serving ignores other names too."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir) if name.isdigit())


def next_version(export_dir):
    """One more than the highest version under ``export_dir``; 1 for a new one."""
    return max(versions(export_dir), default=0) + 1


def resolve_version_dir(model_dir):
    """A SavedModel directory: ``model_dir`` itself, or its highest integer version."""
    if os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    found = versions(model_dir)
    if not found:
        raise UsageError(
            f"no SavedModel in {model_dir} (no saved_model.pb and no integer version "
            "directories); export one with python -m tfhash.export"
        )
    return os.path.join(model_dir, str(found[-1]))
