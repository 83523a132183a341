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
used at training time.
"""

import json
import os
import sys

from absl import flags

from tfhash import cli, serving
from tfhash.errors import UsageError

def define_flags():
    """Defines the command's flags; only when run as a program, so that importing this module
    defines none."""
    flags.DEFINE_string("model", None, "Exported model: the --export_dir of python -m tfhash.export "
                        "(its highest version is used) or one version directory.")
    flags.DEFINE_string("data", None, "Images to encode: a dataset name (digits, cifar10, cifar20, "
                        "sun397, nuswide21), an image folder (one subfolder per class) or a list file.")
    flags.DEFINE_string("data_dir", None, "TFDS data_dir for a dataset name in --data.")
    flags.DEFINE_list("indices", None, "Optional .npy files of int indices into the collection "
                      "(e.g. run_dir/split/query.npy,run_dir/split/database.npy): encode only "
                      "these, in this order, each part into files named after it.")
    flags.DEFINE_string("out", None, "Output directory (created if missing).")
    flags.DEFINE_boolean("overwrite", False, "Replace codes of the same names already in --out "
                         "(refused without it).")
    flags.DEFINE_string("name", None, "Prefix of the output files; default: the stem of --indices, "
                        "or 'all'.")
    flags.DEFINE_integer("batch_size", 256, "Images per batch.")

FLAGS = flags.FLAGS


def collection_source(data, data_dir=None):
    """``(dataset, data_dir)`` for ``data.load_collection`` from the ``--data`` value."""
    from tfhash.data import sources

    if not data:
        raise UsageError("--data is required: a dataset name, an image folder or a list file")
    if os.path.isdir(data):
        return "folder", data
    if os.path.isfile(data) and data.lower().endswith(sources.IMAGE_EXTENSIONS):
        raise UsageError(f"--data={data} is one image; encode takes an image folder "
                         "(<root>/<class>/<image>) or a list file. To find the images nearest "
                         "to it: python -m tfhash.search --index=<index> --images="
                         f"{data} --model=<model>")
    if os.path.isfile(data):
        return "list", data
    if data not in sources.DATASETS or data in ("folder", "list"):
        names = ", ".join(d for d in sources.DATASETS if d not in ("folder", "list"))
        raise UsageError(f"--data={data}: no such image folder or list file, and not a dataset "
                         f"name ({names}); check the path")
    return data, data_dir


_OUTPUTS = ("codes", "labels", "item_ids", "paths")
INFO = "info.json"  # <name>_info.json


def read_info(codes_path):
    """The ``<name>_info.json`` beside encode's ``<name>_codes.npy`` (``bits``, ``class_names``,
    ``model``, ``data``), or ``{}`` where there is none (codes from elsewhere)."""
    if not str(codes_path).endswith("_codes.npy"):
        return {}
    path = str(codes_path)[:-len("codes.npy")] + INFO
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not readable JSON ({e}); encode the images again") from None
    return info if isinstance(info, dict) else {}


def encode_collection(model, data, out, data_dir=None, indices=None, name=None,
                      batch_size=256, verbose=True, overwrite=False):
    """Encodes the images of ``data`` with the exported ``model``; writes and returns the arrays.

    Args:
        model: an export directory or a SavedModel version directory.
        data: a dataset name, an image folder or a list file (see ``collection_source``).
        out: the output directory.
        data_dir: TFDS ``data_dir`` for a dataset name.
        indices: path of a ``.npy`` of indices into the collection, or a list of such paths
            (e.g. a run's ``split/query.npy`` and ``split/database.npy``: one pass over the
            model for all); default: all images.
        name: prefix of the output files, with one ``indices`` file at most; default: the
            stem of each ``indices`` file, or ``"all"``.
        batch_size: images per batch.
        verbose: show a progress bar.
        overwrite: replace output files of the same names; without it they are refused.

    Returns:
        A dict with the written ``codes`` (packed uint8 [N, ⌈K/8⌉]), ``labels`` and
        ``item_ids``, the code length ``bits`` (K) and the files' ``prefix``; for a list of
        ``indices``, a list of such dicts in its order.
    """
    if not model:
        raise UsageError("--model is required: the --export_dir of python -m tfhash.export")
    if not out:
        raise UsageError("--out is required: the directory for the codes")
    if os.path.isfile(out):
        raise UsageError(f"--out={out} is a file; pass a directory (created if missing)")
    if batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {batch_size}")
    several = isinstance(indices, (list, tuple))
    index_files = list(indices) if several else [indices]
    for path in index_files:
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"--indices={path} does not exist; pass a .npy of indices, e.g. "
                             "run_dir/split/query.npy")
    if name is not None and len(index_files) > 1:
        raise UsageError("--name names the files of one --indices file; drop it to name each "
                         "part after its file")
    names = [name] if name is not None else [
        os.path.splitext(os.path.basename(p))[0] if p else "all" for p in index_files]
    if len(set(names)) < len(names):
        raise UsageError(f"--indices files {index_files} share a name; rename one")
    existing = [path for n in names
                for path in [f"{os.path.join(out, n)}_{key}.npy" for key in _OUTPUTS]
                + [f"{os.path.join(out, n)}_{INFO}"] if os.path.exists(path)]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} already exists; pass another --out or --name, or "
                         "--overwrite to replace it")
    dataset, dataset_dir = collection_source(data, data_dir)
    version_dir = serving.resolve_version_dir(model)

    tf = cli.import_tensorflow()  # heavy imports after the cheap checks above
    import keras
    import numpy as np

    from tfhash import data as tfhash_data

    encode = tf.saved_model.load(version_dir).signatures[serving.IMAGES_SIGNATURE]
    image_size = encode.structured_input_signature[1]["images"].shape[1]
    bits = encode.structured_outputs["codes"].shape[1]

    collection = tfhash_data.load_collection(dataset, dataset_dir)
    orders = []
    for path in index_files:
        if path is None:
            orders.append(np.arange(len(collection)))
            continue
        order = np.load(path).astype(np.int64).reshape(-1)
        if order.size and (order.min() < 0 or order.max() >= len(collection)):
            raise UsageError(f"--indices={path} holds indices outside [0, {len(collection)}) "
                             f"of --data={data}; pass the split of a run on this collection")
        orders.append(order)

    results = []
    os.makedirs(out, exist_ok=True)
    # Keras's bar writes colour codes and redraws with carriage returns: for a terminal only.
    bar = verbose and sys.stdout.isatty()
    for part, order in zip(names, orders):
        progress = keras.utils.Progbar(len(order), unit_name="image", verbose=1 if bar else 0)
        codes = []
        for images, _ in tfhash_data.eval_dataset(collection, order, image_size, batch_size):
            codes.append(encode(images=images)["packed"].numpy())
            progress.add(len(codes[-1]))
        result = {
            "codes": np.concatenate(codes),
            "labels": np.asarray(collection.labels)[order],
            "item_ids": np.asarray(collection.item_ids)[order],
        }
        if collection.files is not None:  # image files: their paths, for an index or gallery
            result["paths"] = np.array([os.path.abspath(p) for p in collection.files[order]])
        prefix = os.path.join(out, part)
        for key, array in result.items():
            np.save(f"{prefix}_{key}.npy", array)
        info = {"bits": int(bits), "class_names": [str(c) for c in collection.class_names],
                "multi_label": bool(collection.multi_label), "count": len(order),
                "model": os.path.abspath(version_dir), "data": data}
        with open(f"{prefix}_{INFO}", "w") as f:
            json.dump(info, f, indent=1)
        results.append(dict(result, bits=bits, prefix=prefix))
    return results if several else results[0]


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    results = encode_collection(FLAGS.model, FLAGS.data, FLAGS.out, FLAGS.data_dir,
                                FLAGS.indices or [None], FLAGS.name, FLAGS.batch_size,
                                overwrite=FLAGS.overwrite)
    for result in results:
        print(f"{len(result['codes'])} images → {result['bits']}-bit packed codes: "
              f"{result['prefix']}_{{codes,labels,item_ids}}.npy")


if __name__ == "__main__":
    cli.run(main, define_flags)
