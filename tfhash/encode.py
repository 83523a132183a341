r"""Encodes an image collection with an exported model: ``python -m tfhash.encode``.

    python -m tfhash.encode --model=models/cifar10_48 --data=cifar10 \
        --indices=runs/cifar10_48/split/query.npy --out=codes/

runs every image of the collection (or the ``--indices`` subset, in that order)
through the exported model's ``serving_default`` signature — the highest
version under ``--model`` — in batches, with a progress bar, and writes

    <out>/<name>_codes.npy      packed codes, uint8 [N, ⌈K/8⌉] (np.packbits order)
    <out>/<name>_labels.npy     labels, int [N] or multi-hot [N, C]
    <out>/<name>_item_ids.npy   the collection's item ids [N]

where ``<name>`` is ``--name``, by default the stem of ``--indices`` ("query",
"database") or ``all``. Encoding a run's query and database splits gives what
``python -m tfhash.evaluate`` scores.

Images are decoded and resized by ``tfhash.data.eval_dataset``, the pipeline
used at training time.
"""

import os

from absl import app, flags, logging

from tfhash import serving
from tfhash.errors import UsageError, exit_on_usage_error, parse_flags

flags.DEFINE_string("model", None, "Exported model: the --export_dir of python -m tfhash.export "
                    "(its highest version is used) or one version directory.")
flags.DEFINE_string("data", None, "Images to encode: a dataset name (digits, cifar10, cifar20, "
                    "sun397, nuswide21), an image folder (one subfolder per class) or a list file.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir for a dataset name in --data.")
flags.DEFINE_string("indices", None, "Optional .npy of int indices into the collection (e.g. "
                    "run_dir/split/query.npy): encode only these, in this order.")
flags.DEFINE_string("out", None, "Output directory (created if missing).")
flags.DEFINE_string("name", None, "Prefix of the output files; default: the stem of --indices, "
                    "or 'all'.")
flags.DEFINE_integer("batch_size", 256, "Images per batch.")

FLAGS = flags.FLAGS


def collection_source(data, data_dir=None):
    """``(dataset, data_dir)`` for ``data.load_collection`` from the ``--data`` value."""
    if not data:
        raise UsageError("--data is required: a dataset name, an image folder or a list file")
    if os.path.isdir(data):
        return "folder", data
    if os.path.isfile(data):
        return "list", data
    return data, data_dir


def encode_collection(model, data, out, data_dir=None, indices=None, name=None,
                      batch_size=256, verbose=True):
    """Encodes the images of ``data`` with the exported ``model``; writes and returns the arrays.

    Args:
        model: an export directory or a SavedModel version directory.
        data: a dataset name, an image folder or a list file (see ``collection_source``).
        out: the output directory.
        data_dir: TFDS ``data_dir`` for a dataset name.
        indices: path of a ``.npy`` of indices into the collection; default: all images.
        name: prefix of the output files; default: the stem of ``indices``, or ``"all"``.
        batch_size: images per batch.
        verbose: show a progress bar.

    Returns:
        A dict with the written ``codes`` (packed uint8 [N, ⌈K/8⌉]), ``labels`` and
        ``item_ids``, the code length ``bits`` (K) and the files' ``prefix``.
    """
    if not model:
        raise UsageError("--model is required: the --export_dir of python -m tfhash.export")
    if not out:
        raise UsageError("--out is required: the directory for the codes")
    if os.path.isfile(out):
        raise UsageError(f"--out={out} is a file; pass a directory (created if missing)")
    if batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {batch_size}")
    if indices is not None and not os.path.isfile(indices):
        raise UsageError(f"--indices={indices} does not exist; pass a .npy of indices, e.g. "
                         "run_dir/split/query.npy")
    if name is None:
        name = os.path.splitext(os.path.basename(indices))[0] if indices else "all"
    dataset, dataset_dir = collection_source(data, data_dir)
    version_dir = serving.resolve_version_dir(model)

    import keras  # Heavy imports after the cheap checks above.
    import numpy as np
    import tensorflow as tf

    from tfhash import data as tfhash_data

    encode = tf.saved_model.load(version_dir).signatures[serving.IMAGES_SIGNATURE]
    image_size = encode.structured_input_signature[1]["images"].shape[1]
    bits = encode.structured_outputs["codes"].shape[1]

    collection = tfhash_data.load_collection(dataset, dataset_dir)
    if indices is None:
        order = np.arange(len(collection))
    else:
        order = np.load(indices).astype(np.int64).reshape(-1)
        if order.size and (order.min() < 0 or order.max() >= len(collection)):
            raise UsageError(f"--indices={indices} holds indices outside [0, {len(collection)}) "
                             f"of --data={data}; pass the split of a run on this collection")

    progress = keras.utils.Progbar(len(order), unit_name="image", verbose=1 if verbose else 0)
    codes = []
    for images, _ in tfhash_data.eval_dataset(collection, order, image_size, batch_size):
        codes.append(encode(images=images)["packed"].numpy())
        progress.add(len(codes[-1]))
    result = {
        "codes": np.concatenate(codes),
        "labels": np.asarray(collection.labels)[order],
        "item_ids": np.asarray(collection.item_ids)[order],
    }
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, name)
    for key, array in result.items():
        np.save(f"{prefix}_{key}.npy", array)
    return dict(result, bits=bits, prefix=prefix)


@exit_on_usage_error
def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    if not FLAGS["verbosity"].present:  # TensorFlow's INFO lines about saving and loading
        logging.set_verbosity(logging.WARNING)
    result = encode_collection(FLAGS.model, FLAGS.data, FLAGS.out, FLAGS.data_dir,
                               FLAGS.indices, FLAGS.name, FLAGS.batch_size)
    print(f"{len(result['codes'])} images → {result['bits']}-bit packed codes: "
          f"{result['prefix']}_{{codes,labels,item_ids}}.npy")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
