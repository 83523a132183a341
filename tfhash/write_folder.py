r"""Writes a dataset as an image folder: ``python -m tfhash.write_folder``.

    python -m tfhash.write_folder --dataset=digits --out=digits_png/
    python -m tfhash.write_folder --dataset=digits --out=digits_png/ \
        --indices=runs/quickstart/split/query.npy,runs/quickstart/split/database.npy

writes every image (or each ``--indices`` part, into ``<out>/<stem of the file>/``) as
``<out>/<class>/<n>.png``: the layout of your own images (``--dataset=folder``). The bundled
digits become 1,797 real images in ten class folders, to try ``configs/images.cfg`` and
``python -m tfhash.search --images`` on without data of your own; a run's split written this
way gives the query images of step 5 of the README. Nothing is overwritten.
"""

import os

from absl import flags

from tfhash import cli
from tfhash.errors import UsageError

FLAGS = flags.FLAGS


def define_flags():
    """write_folder's flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string(
        "dataset",
        "digits",
        "Dataset to write: digits, cifar10, cifar20, "
        "sun397 (TFDS), folder or list (single-label) with --data_dir.",
    )
    cli.define_source(
        "TFDS data_dir, or the folder or list file, by --dataset.",
        "Optional .npy files of indices into the dataset (e.g. "
        "a run's split/query.npy,split/database.npy): each part is written into "
        "<out>/<stem of its file>/<class>/.",
    )
    cli.define_out("The folder to write (new or empty).")


def write(dataset, out, data_dir=None, indices=None):
    """Writes the folder(s); returns ``[(folder, images written)]``."""
    import numpy as np

    from tfhash.data import sources

    if not out:
        raise UsageError("--out is required: the folder to write")
    parts = [(out, None)]
    if indices:
        parts = [
            (
                os.path.join(out, os.path.splitext(os.path.basename(p))[0]),
                cli.load_array(p, "indices"),
            )
            for p in indices
        ]
        if len({folder for folder, _ in parts}) < len(parts):
            raise UsageError(f"--indices files {indices} share a name; rename one")
    for folder, _ in parts:  # every check before the first file
        if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
            raise UsageError(
                f"{folder} exists and is not an empty directory; pass a new --out "
                "(nothing is overwritten)"
            )
    collection = sources.load_collection(dataset, data_dir)
    return [
        (
            folder,
            sources.write_folder(collection, folder, None if part is None else np.asarray(part)),
        )
        for folder, part in parts
    ]


def main(argv):
    for folder, count in write(FLAGS.dataset, FLAGS.out, FLAGS.data_dir, FLAGS.indices):
        print(f"{count} images of {FLAGS.dataset} → {folder}/<class>/")


if __name__ == "__main__":
    cli.run(main, define_flags)
