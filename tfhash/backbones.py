"""Feature extractors: a name → a Keras model from raw pixels to a feature vector.

Every backbone takes float32 RGB images in ``[0, 255]`` and does its own
normalisation inside, so a trained (and exported) model takes raw pixels.

====================  ==========  ===================================================
name                  input       features
====================  ==========  ===================================================
``resnet_small``      any ≥ 32    a 0.7 M-parameter CIFAR ResNet, trained from scratch
``vgg16``             224 × 224   fc7 (4096-d), the LSDH paper's network
``resnet50``          any ≥ 32    global average pool (2048-d)
``mobilenetv3``       any ≥ 32    MobileNetV3-Large global average pool (960-d)
====================  ==========  ===================================================

``weights`` is ``"none"`` (random init), ``"imagenet"`` (Keras's own download,
for the ``keras.applications`` backbones) or the path of a local weights file
saved with ``backbone.save_weights(path)`` (``.weights.h5``) or the Keras
applications ``.h5`` release files.
"""

import os

import keras
from keras import layers, ops

from tfhash.errors import UsageError

# Per-channel means of ImageNet in RGB order, as the Caffe-trained VGG/ResNet weights expect.
_IMAGENET_RGB_MEAN = (123.68, 116.779, 103.939)


@keras.saving.register_keras_serializable(package="tfhash")
class Preprocess(keras.layers.Layer):
    """Normalises raw RGB pixels in ``[0, 255]`` the way a backbone was trained.

    Modes:
        ``"caffe"``: RGB → BGR and subtract the ImageNet mean (VGG16, ResNet50 weights).
        ``"symmetric"``: ``x / 127.5 − 1``, to ``[−1, 1]`` (the small ResNet).
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "symmetric"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "symmetric":
            return images / 127.5 - 1.0
        mean = ops.convert_to_tensor(_IMAGENET_RGB_MEAN[::-1], dtype=self.compute_dtype)
        return ops.flip(images, axis=-1) - mean

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


def _batch_norm(name):
    # Momentum 0.9 (Keras's default is 0.99): the moving statistics must follow a network that
    # trains from scratch in a few hundred steps, or inference sees stale statistics.
    return layers.BatchNormalization(momentum=0.9, name=name)


def _residual_block(x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, stride, "same", use_bias=False, name=f"{name}_conv1")(x)
    y = _batch_norm(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, 1, "same", use_bias=False, name=f"{name}_conv2")(y)
    y = _batch_norm(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = _batch_norm(name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet_small(image_size, widths=(32, 64, 128), blocks_per_stage=2):
    """A small ResNet for 32 × 32 images (He et al. 2016, CIFAR variant), 0.7 M parameters.

    A 3 × 3 stem, three stages of ``blocks_per_stage`` basic residual blocks with
    ``widths`` filters (stride 2 between stages), global average pooling and a
    batch normalisation of the pooled features (see the comment there). Sized
    to train from scratch on a 2-core CPU in minutes.
    """
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = Preprocess("symmetric", name="preprocess")(inputs)
    x = layers.Conv2D(widths[0], 3, 1, "same", use_bias=False, name="stem_conv")(x)
    x = _batch_norm(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, filters, stride, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    # Pooled ReLU features are all positive with a large shared mean, so at initialisation every
    # image would get nearly the same relaxed code; identical codes are a stationary point of the
    # ranking losses (all distance gradients vanish) and the quantization loss then drives every
    # code to the same corner. Centring the features makes the initial codes diverse.
    x = _batch_norm(name="pool_bn")(x)
    return keras.Model(inputs, x, name="resnet_small")


def _vgg16(image_size, weights):
    if image_size != 224:
        raise UsageError(
            f"vgg16 uses its fc7 features and needs --image_size=224, got {image_size}"
        )
    vgg = keras.applications.VGG16(include_top=True, weights=weights)
    inputs = keras.Input((224, 224, 3), name="images")
    x = Preprocess("caffe", name="preprocess")(inputs)
    # The paper's hashing layer follows the second fully connected layer (fc7, "fc2" in Keras).
    features = keras.Model(vgg.inputs, vgg.get_layer("fc2").output, name="vgg16_fc7")(x)
    return keras.Model(inputs, features, name="vgg16")


def _resnet50(image_size, weights):
    net = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3), pooling="avg"
    )
    inputs = keras.Input((image_size, image_size, 3), name="images")
    features = net(Preprocess("caffe", name="preprocess")(inputs))
    return keras.Model(inputs, features, name="resnet50")


def _mobilenetv3(image_size, weights):
    # MobileNetV3 normalises raw [0, 255] pixels itself (include_preprocessing=True).
    return keras.applications.MobileNetV3Large(
        input_shape=(image_size, image_size, 3),
        include_top=False,
        weights=weights,
        pooling="avg",
        include_preprocessing=True,
    )


_APPLICATIONS = {"vgg16": _vgg16, "resnet50": _resnet50, "mobilenetv3": _mobilenetv3}
BACKBONES = ("resnet_small",) + tuple(_APPLICATIONS)


def build_backbone(name, image_size, weights="none"):
    """Returns a Keras model from raw ``[0, 255]`` images to features.

    Args:
        name: one of :data:`BACKBONES`.
        image_size: side S of the square input images.
        weights: ``"none"``, ``"imagenet"``, or a path to a local weights file.

    Raises:
        UsageError: unknown name, an impossible image size, ImageNet weights for
            a backbone that has none, a missing weights file, or a failed download.
    """
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if image_size < 32:
        raise UsageError(f"--image_size must be at least 32, got {image_size}")
    weights = weights or "none"
    if weights not in ("none", "imagenet") and not os.path.isfile(weights):
        raise UsageError(
            f"weights file {weights!r} does not exist; pass an existing file, "
            "--weights=imagenet or --weights=none"
        )
    if name == "resnet_small":
        if weights == "imagenet":
            raise UsageError(
                "resnet_small has no ImageNet weights; use --weights=none or a local weights file"
            )
        backbone = resnet_small(image_size)
        if weights != "none":
            _load_weights(backbone, weights)
        return backbone
    try:
        return _APPLICATIONS[name](image_size, None if weights == "none" else weights)
    except UsageError:
        raise
    except Exception as e:  # Keras's download or its weights-file loading failed.
        if weights == "imagenet":
            raise UsageError(
                f"could not get ImageNet weights for {name} ({type(e).__name__}; no network?): "
                "pass a local file with --weights=<path> or train from scratch with --weights=none"
            ) from e
        raise UsageError(f"could not load weights file {weights!r} into {name}: {e}") from e


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as e:
        raise UsageError(f"could not load weights file {path!r} into {model.name}: {e}") from e
