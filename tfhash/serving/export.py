"""A trained run directory exported for serving: its best checkpoint (or the shallow method
fitted there) as a versioned SavedModel (:mod:`tfhash.serving.savedmodel`). The ``tfhash.export``
command is this module's flags.

Every training method exports the same way: the checkpoint is loaded without its training
configuration (loss, optimizer), which serving does not need. TensorFlow is imported only
after the cheap checks of the arguments.
"""

import os

from tfhash.errors import UsageError
from tfhash.serving.savedmodel import export_model, new_version_dir
from tfhash.tf_import import import_tensorflow


def checkpoint_path(run_dir):
    """The checkpoint of ``run_dir`` to export; a :class:`UsageError` naming what is missing."""
    if not run_dir:
        raise UsageError("`run_dir` is required: a training run directory")
    if not os.path.isdir(run_dir):
        raise UsageError(
            f"run_dir={run_dir} is not a directory; pass a training run "
            "directory written by python -m tfhash.train"
        )
    path = os.path.join(run_dir, "checkpoints", "best.keras")
    if not os.path.isfile(path):
        raise UsageError(
            f"no checkpoint at {path}; train the run first (python -m tfhash.train "
            f"run_dir={run_dir}) or pass the directory of a trained run"
        )
    return path


def export_run(run_dir, export_dir, version=None):
    """Exports the best checkpoint of ``run_dir`` (or the shallow method fitted there) into
    ``export_dir/<version>/`` (the next free version when ``version`` is None); returns the
    written version directory."""
    if os.path.isfile(os.path.join(run_dir or "", "shallow", "model.json")):
        import_tensorflow()
        from tfhash.shallow import export as shallow_export

        return shallow_export.export_run(run_dir, export_dir, version)
    path = checkpoint_path(run_dir)
    if not export_dir:
        raise UsageError("`export_dir` is required: the base directory of the exported model")
    new_version_dir(export_dir, version)  # its errors before the slow imports

    import_tensorflow()
    import keras

    import tfhash.models  # noqa: F401  (registers HashingModel for load_model)
    from tfhash import methods

    for method in methods.REGISTRY.values():  # the run's loss class, e.g. HashNetLoss: a
        if method.kind == "keras":  # frozen backbone's head saves it with the model
            method.loss_class()
    model = keras.saving.load_model(path, compile=False)
    return export_model(model, export_dir, version)
