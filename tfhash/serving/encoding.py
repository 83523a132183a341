r"""Images into packed codes through an exported SavedModel (TensorFlow imported on first use).

* :func:`encode_collection`: a whole collection (a dataset name, an image folder or a list
  file), decoded and resized by ``tfhash.data.eval_dataset`` as at training time, through the
  ``serving_default`` signature; its codes, labels, item ids and paths are written as
  ``python -m tfhash.encode``'s files (:mod:`tfhash.retrieval.codes`).
* :func:`encode_image_files`: image files (queries by image), whose bytes go to the
  ``encode_images`` signature, which decodes and resizes them in its graph exactly as
  training did, so the codes equal those :func:`encode_collection` writes for the same images.

Errors name the functions' arguments (``out=…``, ```images```); the commands reword them as
their flags.
"""

import os
import sys

import numpy as np

from tfhash.data.sources import IMAGE_EXTENSIONS
from tfhash.errors import UsageError
from tfhash.retrieval import codes as encoded
from tfhash.serving import savedmodel
from tfhash.tf_import import import_tensorflow


def collection_source(data, data_dir=None):
    """``(dataset, data_dir)`` for ``data.load_collection`` from the ``data`` value."""
    from tfhash.data import sources

    if not data:
        raise UsageError("`data` is required: a dataset name, an image folder or a list file")
    if os.path.isdir(data):
        return "folder", data
    if os.path.isfile(data) and data.lower().endswith(sources.IMAGE_EXTENSIONS):
        raise UsageError(
            f"data={data} is one image; encode takes an image folder "
            "(<root>/<class>/<image>) or a list file. To find the images nearest "
            "to it, give it to the search command as a query image, with an index "
            "and a model"
        )
    if os.path.isfile(data):
        return "list", data
    if data not in sources.DATASETS or data in ("folder", "list"):
        names = ", ".join(d for d in sources.DATASETS if d not in ("folder", "list"))
        raise UsageError(
            f"data={data}: no such image folder or list file, and not a dataset "
            f"name ({names}); check the path"
        )
    return data, data_dir


def encode_collection(
    model,
    data,
    out,
    data_dir=None,
    indices=None,
    name=None,
    batch_size=256,
    verbose=True,
    overwrite=False,
):
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
        raise UsageError("`model` is required: the export directory of python -m tfhash.export")
    if not out:
        raise UsageError("`out` is required: the directory for the codes")
    if os.path.isfile(out):
        raise UsageError(f"out={out} is a file; pass a directory (created if missing)")
    if batch_size < 1:
        raise UsageError(f"`batch_size` must be at least 1, got {batch_size}")
    several = isinstance(indices, (list, tuple))
    index_files = list(indices) if several else [indices]
    for path in index_files:
        if path is not None and not os.path.isfile(path):
            raise UsageError(
                f"indices={path} does not exist; pass a .npy of indices, e.g. "
                "run_dir/split/query.npy"
            )
    if name is not None and len(index_files) > 1:
        raise UsageError(
            "`name` names the files of one `indices` file; drop it to name each part after its file"
        )
    names = (
        [name]
        if name is not None
        else [os.path.splitext(os.path.basename(p))[0] if p else "all" for p in index_files]
    )
    if len(set(names)) < len(names):
        raise UsageError(f"`indices` files {index_files} share a name; rename one")
    existing = [
        path for n in names for path in encoded.output_files(out, n) if os.path.exists(path)
    ]
    if existing and not overwrite:
        raise UsageError(
            f"{existing[0]} already exists; pass another `out` or `name`, or "
            "`overwrite` to replace it"
        )
    dataset, dataset_dir = collection_source(data, data_dir)
    version_dir = savedmodel.resolve_version_dir(model)

    tf = import_tensorflow()  # heavy imports after the cheap checks above
    import keras

    from tfhash import data as tfhash_data

    encode = tf.saved_model.load(version_dir).signatures[savedmodel.IMAGES_SIGNATURE]
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
            raise UsageError(
                f"indices={path} holds indices outside [0, {len(collection)}) "
                f"of data={data}; pass the split of a run on this collection"
            )
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
        info = {
            "bits": int(bits),
            "class_names": [str(c) for c in collection.class_names],
            "multi_label": bool(collection.multi_label),
            "count": len(order),
            "model": os.path.abspath(version_dir),
            "data": data,
        }
        encoded.write_encoded(prefix, result, info)
        results.append(dict(result, bits=bits, prefix=prefix))
    return results if several else results[0]


def image_files(images):
    """The image files of ``images``: comma-separated files, or a folder (searched
    recursively, sorted by path)."""
    if not images:
        raise UsageError("`images` is empty; pass image files or a folder of images")
    entries = images if isinstance(images, (list, tuple)) else images.split(",")
    files = []
    for entry in entries:
        if os.path.isdir(entry):
            found = sorted(
                os.path.join(top, name)
                for top, _, names in os.walk(entry)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise UsageError(f"images={entry} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            raise UsageError(f"`images`: {entry} does not exist; pass image files or a folder")
    return files


def graph_error_reason(message):
    """The line of a TensorFlow graph error that says what went wrong (the first line is
    "Graph execution error:", then where, then the reason)."""
    lines = [line.strip() for line in message.strip().splitlines()]
    reasons = [
        line
        for line in lines
        if line
        and not line.startswith(
            ("Graph execution error", "Detected at node", "<stack traces", "[[")
        )
    ]
    return (reasons or lines or ["unknown error"])[0][:160]


def encode_image_files(model, files, batch_size=64):
    """Packed codes of image files through an exported model's ``encode_images`` signature.

    The files' bytes go to the SavedModel, which decodes and resizes them in its
    graph exactly as training did, so the codes equal those ``python -m
    tfhash.encode`` writes for the same images.

    Args:
        model: an export directory (its highest version) or a version directory.
        files: image file paths.
        batch_size: images per call.

    Returns:
        ``(packed uint8 [N, ⌈K/8⌉], K)``.

    Raises:
        UsageError: no SavedModel, or a file the model cannot decode (named).
    """
    version_dir = savedmodel.resolve_version_dir(model)
    tf = import_tensorflow()  # only queries by image need TensorFlow

    signatures = tf.saved_model.load(version_dir).signatures
    if savedmodel.BYTES_SIGNATURE not in signatures:
        raise UsageError(
            f"{version_dir} has no {savedmodel.BYTES_SIGNATURE} signature; export "
            "the model again with python -m tfhash.export"
        )
    encode = signatures[savedmodel.BYTES_SIGNATURE]
    bits = int(encode.structured_outputs["codes"].shape[1])

    def run(batch):
        contents = []
        for path in batch:
            with open(path, "rb") as f:
                contents.append(f.read())
        return encode(image_bytes=tf.constant(contents))["packed"].numpy()

    packed = []
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        try:
            packed.append(run(batch))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            for path in batch:  # name the file the model cannot take
                try:
                    run([path])
                except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
                    reason = graph_error_reason(e.message)
                    if "too small to encode" in reason:  # "image smaller than 8 x 8 pixels"
                        size = reason.split("smaller than ")[1].split(" pixels")[0]
                        raise UsageError(
                            f"`images`: {path} is smaller than {size} pixels, too "
                            "small to encode; leave it out"
                        ) from None
                    raise UsageError(
                        f"`images`: the model cannot decode {path} ({reason}); "
                        "pass JPEG, PNG, BMP, GIF or WebP images"
                    ) from None
            raise
    return np.concatenate(packed), bits
