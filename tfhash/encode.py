r"""Encodes an image collection with an exported model: ``python -m tfhash.encode``.

    python -m tfhash.encode --model=models/cifar10_48 --data=cifar10 \
        --indices=runs/cifar10_48/split/query.npy,runs/cifar10_48/split/database.npy \
        --out=codes/

runs every image of the collection (or each ``--indices`` subset, in its order)
through the exported model's ``serving_default`` signature — the highest
version under ``--model`` — in batches, with a progress bar, and writes

    <out>/<name>_codes.npy      packed codes, uint8 [N, ⌈K/8⌉] (np.packbits order)
    <out>/<name>_labels.npy     labels, int [N] or multi-hot [N, C]
    <out>/<name>_item_ids.npy   the collection's item ids [N]
    <out>/<name>_paths.npy      absolute image paths [N] (image folders and list files)
    <out>/<name>_info.json      the code length K, the class names, the model and the data

where ``<name>`` is ``--name``, by default the stem of ``--indices`` ("query",
"database") or ``all``. Encoding a run's query and database splits gives what
``python -m tfhash.evaluate`` scores (packed codes: it reads K from ``<name>_info.json``, or
``--bits=K``); ``python -m tfhash.index`` reads K and the class names from it too. Files of
the same names already in ``--out`` are refused unless ``--overwrite``. The progress bar is
drawn on a terminal only; redirected output gets the summary lines alone.

Images are decoded and resized by ``tfhash.data.eval_dataset``, the pipeline
used at training time (:func:`tfhash.serving.encoding.encode_collection`); the file names are
:mod:`tfhash.retrieval.codes`'s.
"""

from absl import flags

from tfhash import cli
from tfhash.retrieval.codes import read_info  # noqa: F401  (its home before)
from tfhash.serving.encoding import collection_source, encode_collection  # noqa: F401


def define_flags():
    """encode's flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string(
        "model",
        None,
        "Exported model: the --export_dir of python -m tfhash.export "
        "(its highest version is used) or one version directory.",
    )
    flags.DEFINE_string(
        "data",
        None,
        "Images to encode: a dataset name (digits, cifar10, cifar20, "
        "sun397, nuswide21), an image folder (one subfolder per class) or a list file.",
    )
    cli.define_source(
        "TFDS data_dir for a dataset name in --data.",
        "Optional .npy files of int indices into the collection "
        "(e.g. run_dir/split/query.npy,run_dir/split/database.npy): encode only "
        "these, in this order, each part into files named after it.",
    )
    cli.define_out(
        "Output directory (created if missing).",
        overwrite="Replace codes of the same names already in --out (refused without it).",
    )
    flags.DEFINE_string(
        "name", None, "Prefix of the output files; default: the stem of --indices, or 'all'."
    )
    flags.DEFINE_integer("batch_size", 256, "Images per batch.")


FLAGS = flags.FLAGS


def main(argv):
    results = encode_collection(
        FLAGS.model,
        FLAGS.data,
        FLAGS.out,
        FLAGS.data_dir,
        FLAGS.indices or [None],
        FLAGS.name,
        FLAGS.batch_size,
        overwrite=FLAGS.overwrite,
    )
    for result in results:
        print(
            f"{len(result['codes'])} images → {result['bits']}-bit packed codes: "
            f"{result['prefix']}_{{codes,labels,item_ids}}.npy"
        )


if __name__ == "__main__":
    cli.run(main, define_flags)
