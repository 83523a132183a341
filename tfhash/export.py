r"""Exports a trained run for TensorFlow Serving: ``python -m tfhash.export``.

    python -m tfhash.export --run_dir=runs/cifar10_48 --export_dir=models/cifar10_48

loads ``run_dir/checkpoints/best.keras`` (the checkpoint with the best
validation MAP) and writes a SavedModel into ``export_dir/<version>/``, the next
free integer version unless ``--version`` is given. The SavedModel has two
signatures, ``serving_default`` (float32 pixels ``images`` [B, S, S, 3] in
[0, 255]) and ``encode_images`` (encoded JPEG/PNG files ``image_bytes`` [B]),
each returning ``codes`` int8 ±1 [B, K], ``packed`` uint8 [B, ⌈K/8⌉] and
``embedding`` float32 [B, K]; see :mod:`tfhash.serving`.

Every training method exports the same way: the checkpoint is loaded without
its training configuration (loss, optimizer), which serving does not need.
"""

import json
import os

from absl import flags

from tfhash import cli, serving
from tfhash.errors import UsageError

def define_flags():
    """export's flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string("run_dir", None, "Training run directory (written by python -m "
                        "tfhash.train); its checkpoints/best.keras is exported.")
    flags.DEFINE_string("export_dir", None, "Base directory of the exported model, the "
                        "--model_base_path of tensorflow_model_server; versions go in integer "
                        "subdirectories.")
    flags.DEFINE_integer("version", None, "Version number of the export; default: one more than "
                         "the highest version already in --export_dir (1 for a new one).")

FLAGS = flags.FLAGS


def checkpoint_path(run_dir):
    """The checkpoint of ``run_dir`` to export; a :class:`UsageError` naming what is missing."""
    if not run_dir:
        raise UsageError("--run_dir is required: a training run directory")
    if not os.path.isdir(run_dir):
        raise UsageError(f"--run_dir={run_dir} is not a directory; pass a training run "
                         "directory written by python -m tfhash.train")
    path = os.path.join(run_dir, "checkpoints", "best.keras")
    if not os.path.isfile(path):
        raise UsageError(f"no checkpoint at {path}; train the run first (python -m tfhash.train "
                         f"--run_dir={run_dir}) or pass the directory of a trained run")
    return path


def export_run(run_dir, export_dir, version=None):
    """Exports the best checkpoint of ``run_dir`` (or the shallow method fitted there); returns
    the written version directory."""
    if os.path.isfile(os.path.join(run_dir or "", "shallow", "model.json")):
        cli.import_tensorflow()
        from tfhash.shallow import export as shallow_export

        return shallow_export.export_run(run_dir, export_dir, version)
    path = checkpoint_path(run_dir)
    if not export_dir:
        raise UsageError("--export_dir is required: the base directory of the exported model")
    serving.new_version_dir(export_dir, version)  # its errors before the slow imports

    cli.import_tensorflow()
    import keras

    import tfhash.models  # noqa: F401  (registers HashingModel for load_model)
    from tfhash import methods

    for method in methods.REGISTRY.values():  # the run's loss class, e.g. HashNetLoss: a
        if method.kind == "keras":            # frozen backbone's head saves it with the model
            method.loss_class()
    model = keras.saving.load_model(path, compile=False)
    return serving.export_model(model, export_dir, version)


def main(argv):
    version_dir = export_run(FLAGS.run_dir, FLAGS.export_dir, FLAGS.version)
    flags_path = os.path.join(FLAGS.run_dir, "flags.json")
    if os.path.isfile(flags_path):
        with open(flags_path) as f:
            run = json.load(f)
        summary = ", ".join(f"{k}={run[k]}" for k in ("method", "backbone", "bits", "image_size",
                                                       "dataset") if k in run)
        print(f"{FLAGS.run_dir} ({summary})")
    print(f"exported to {version_dir}\n"
          f"serve it: tensorflow_model_server --rest_api_port=8501 --model_name=tfhash "
          f"--model_base_path={os.path.abspath(FLAGS.export_dir)}")


if __name__ == "__main__":
    cli.run(main, define_flags)
