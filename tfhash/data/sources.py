"""Dataset sources: one name (``--dataset``) and one path (``--data_dir``) to a :class:`Collection`.

=============  ==============================================================================
``digits``     scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, 10 classes,
               shipped inside the scikit-learn wheel (no download).
``cifar10``    TFDS ``cifar10``, train and test pooled: 60,000 32x32 images, 10 classes.
``cifar20``    TFDS ``cifar100`` with its 20 coarse superclasses (``coarse_label``).
``sun397``     TFDS ``sun397/tfds``, all splits pooled, the LSDH subset: the 29 largest
               categories, each with at least 600 images.
``folder``     an image folder ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``
               (splits pooled); class ids follow the sorted class folder names.
``list``       a list file (or a directory holding exactly one ``*.txt``): one line per image,
               ``relative/path.jpg 0 1 0 … 1``, the format of the public deep-hashing code
               (NUS-WIDE, MS-COCO). Paths are relative to the list file's directory.
``nuswide21``  a list file with the 21 most frequent NUS-WIDE concepts, in the order of
               :data:`NUSWIDE21_CONCEPTS`.
=============  ==============================================================================

For TFDS datasets ``data_dir`` is the TFDS data directory; nothing is downloaded.
A list file whose every line carries exactly one label is read as single-label data
(class ids), otherwise as multi-hot labels.
"""

import os

import numpy as np

from tfhash.data.collection import Collection
from tfhash.errors import UsageError

DATASETS = ("digits", "cifar10", "cifar20", "sun397", "folder", "list", "nuswide21")

# The 21 most frequent NUS-WIDE concepts (each on at least 5,000 images), in the alphabetical
# order that the public list files use for their label vectors.
NUSWIDE21_CONCEPTS = (
    "animal",
    "beach",
    "buildings",
    "clouds",
    "flowers",
    "grass",
    "lake",
    "mountain",
    "ocean",
    "person",
    "plants",
    "reflection",
    "road",
    "rocks",
    "sky",
    "snow",
    "sunset",
    "tree",
    "vehicle",
    "water",
    "window",
)

# LSDH Sec. IV.A: "the 29 largest categories, in which each category consists of at least 600
# images".
SUN397_CATEGORIES = 29
SUN397_MIN_IMAGES = 600

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

_TFDS_BATCH = 4096

# The training augmentations a run may choose (tfhash.data.augment applies them): none, a random
# crop of the zero-padded image, and that crop flipped left-right with probability 1/2.
AUGMENTATIONS = ("none", "crop", "crop_flip")

# The augmentation that suits each source (``--augment=auto``). Handwritten digits are glyphs:
# a mirrored 2 or 7 is another symbol, so they are never flipped. Every other source holds
# photographs, for which a mirror image is an image of the same class.
_AUGMENTATION = {"digits": "none"}


def default_augmentation(dataset):
    """The training augmentation that suits ``dataset``: ``"none"`` for handwritten digits,
    ``"crop_flip"`` (random crop and horizontal flip) for photographs."""
    return _AUGMENTATION.get(dataset, "crop_flip")


def load_collection(dataset, data_dir=None):
    """Loads the images and labels of ``dataset`` as a :class:`Collection`.

    Args:
        dataset: one of :data:`DATASETS`.
        data_dir: TFDS data directory for ``cifar10``/``cifar20``/``sun397`` (default: TFDS's
            own), the image folder for ``folder``, the list file (or its directory) for
            ``list``/``nuswide21``; not used by ``digits``.

    Returns:
        A :class:`Collection`.

    Raises:
        UsageError: unknown dataset, missing or empty data, a TFDS dataset that is not
            prepared locally, or labels that do not match the images.

    Example:

    >>> digits = load_collection("digits")
    >>> len(digits), len(digits.class_names)
    (1797, 10)
    """
    data_dir = check_source(dataset, data_dir)
    if dataset == "digits":
        return _digits()
    if dataset == "cifar10":
        return _tfds_pixels("cifar10", "cifar10", "label", data_dir)
    if dataset == "cifar20":
        return _tfds_pixels("cifar20", "cifar100", "coarse_label", data_dir)
    if dataset == "sun397":
        return _sun397(data_dir)
    if dataset == "folder":
        return _folder(data_dir)
    if dataset == "list":
        return _list_file(dataset, data_dir)
    return _list_file(dataset, data_dir, NUSWIDE21_CONCEPTS)


# What --data_dir must be for the sources read from the user's files.
_PATHS = {
    "folder": "an image folder <root>/<class>/<image>",
    "list": "a list file",
    "nuswide21": "the NUS-WIDE list file",
}


def check_source(dataset, data_dir=None):
    """Checks ``dataset`` and ``data_dir`` without reading any data; returns ``data_dir`` with
    ``~`` expanded.

    Raises:
        UsageError: an unknown dataset, a missing or non-existent path for the sources read
            from files, or a ``data_dir`` for ``digits`` (which reads none).
    """
    if dataset not in DATASETS:
        raise UsageError(
            f"unknown dataset {dataset!r}; choose `dataset` from {', '.join(DATASETS)}"
        )
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    if dataset == "digits" and data_dir:
        raise UsageError(
            "dataset=digits ships with scikit-learn and reads no files; "
            "drop `data_dir` (or use dataset=folder/list for your own images)"
        )
    if dataset in _PATHS:
        if not data_dir:
            raise UsageError(f"dataset={dataset} needs data_dir=<{_PATHS[dataset]}>")
        if not os.path.exists(data_dir):
            raise UsageError(f"`data_dir` {data_dir} does not exist; point it at {_PATHS[dataset]}")
    return data_dir


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixels are 0..16; scale to 0..255 and repeat the grey channel as RGB.
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    pixels = np.repeat(grey[..., None], 3, axis=-1)
    return Collection(
        name="digits",
        labels=digits.target.astype(np.int64),
        class_names=[str(c) for c in digits.target_names],
        item_ids=np.array([f"digits/{i}" for i in range(len(pixels))]),
        pixels=pixels,
    )


def _tfds_load(name, split, data_dir, **kwargs):
    """``tfds.load(..., download=False)`` with a UsageError for data that is not prepared."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            name, split=split, data_dir=data_dir, download=False, shuffle_files=False, **kwargs
        )
    # TFDS's "could not find data in <data_dir>"; a KeyError ("splits is empty") where a
    # version folder exists but holds no prepared data (an interrupted `tfds build`).
    except (AssertionError, KeyError) as e:
        where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise UsageError(
            f"{name} is not in TFDS data_dir {where}; run `tfds build {name}` with network "
            "access (then pass data_dir=<its data_dir>) or pass dataset=folder "
            "data_dir=<image folder>"
        ) from e


def _tfds_pixels(dataset, tfds_name, label_key, data_dir):
    """A TFDS dataset of fixed-size images, train+test pooled, held as a uint8 array."""
    import tensorflow_datasets as tfds

    ds = _tfds_load(tfds_name, "train+test", data_dir)
    images, labels = [], []
    for batch in tfds.as_numpy(ds.map(lambda ex: (ex["image"], ex[label_key])).batch(_TFDS_BATCH)):
        images.append(batch[0])
        labels.append(batch[1])
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    pixels = np.concatenate(images)
    return Collection(
        name=dataset,
        labels=np.concatenate(labels).astype(np.int64),
        class_names=builder.info.features[label_key].names,
        item_ids=np.array([f"{dataset}/{i}" for i in range(len(pixels))]),
        pixels=pixels,
    )


def _sun397(data_dir):
    """TFDS ``sun397/tfds``, all splits pooled, keeping the LSDH subset of 29 categories.

    Images keep their encoded JPEG bytes (they differ in size); the pipeline decodes them.
    The first pass reads labels only, the second keeps the bytes of the chosen categories.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    skip = {"image": tfds.decode.SkipDecoding()}
    ds = _tfds_load("sun397/tfds", "train+validation+test", data_dir, decoders=skip)
    all_labels = np.concatenate(
        list(tfds.as_numpy(ds.map(lambda ex: ex["label"]).batch(_TFDS_BATCH)))
    )
    counts = np.bincount(all_labels)
    # Largest first; ties broken by the smaller label id so the choice is deterministic.
    order = np.lexsort((np.arange(len(counts)), -counts))
    keep = np.sort(order[:SUN397_CATEGORIES])
    if len(keep) < SUN397_CATEGORIES or counts[keep].min() < SUN397_MIN_IMAGES:
        enough = int((counts >= SUN397_MIN_IMAGES).sum())
        raise UsageError(
            f"sun397 in {data_dir or 'the TFDS data_dir'} has {enough} categories with at least "
            f"{SUN397_MIN_IMAGES} images, the LSDH subset needs {SUN397_CATEGORIES}; rebuild it "
            "with `tfds build sun397/tfds`"
        )
    positions = np.flatnonzero(np.isin(all_labels, keep))
    keep_t = tf.constant(keep, tf.int64)
    chosen = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["label"], keep_t)))
    encoded = []
    for batch in tfds.as_numpy(chosen.map(lambda ex: ex["image"]).batch(_TFDS_BATCH)):
        encoded.extend(batch)
    remap = np.full(len(counts), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    names = tfds.builder("sun397/tfds", data_dir=data_dir).info.features["label"].names
    return Collection(
        name="sun397",
        labels=remap[all_labels[positions]],
        class_names=[names[k] for k in keep],
        item_ids=np.array([f"sun397/{i}" for i in positions]),
        encoded=np.array(encoded, dtype=object),
    )


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _image_names(directory):
    return sorted(e.name for e in os.scandir(directory) if e.is_file() and _is_image(e.name))


def _subdirs(directory):
    return sorted(e.name for e in os.scandir(directory) if e.is_dir())


def _folder(root):
    """``root/<class>/<image>`` or ``root/<split>/<class>/<image>`` (splits pooled)."""
    if not os.path.isdir(root):
        raise UsageError(
            f"`data_dir` {root} is not a directory; dataset=folder needs "
            "<root>/<class>/<image> or <root>/<split>/<class>/<image>"
        )
    top = _subdirs(root)
    # A top-level folder that holds images directly is a class; otherwise they are splits.
    images = {(d,): _image_names(os.path.join(root, d)) for d in top}
    if not any(images.values()):
        images = {
            (split, c): _image_names(os.path.join(root, split, c))
            for split in top
            for c in _subdirs(os.path.join(root, split))
        }
    images = {folder: names for folder, names in images.items() if names}
    if not images:
        raise UsageError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}; dataset=folder needs "
            "<root>/<class>/<image> or <root>/<split>/<class>/<image>"
        )
    class_names = sorted({folder[-1] for folder in images})
    class_id = {c: i for i, c in enumerate(class_names)}
    item_ids, labels = [], []
    for folder in sorted(images):
        item_ids.extend("/".join(folder + (name,)) for name in images[folder])
        labels.extend([class_id[folder[-1]]] * len(images[folder]))
    return Collection(
        name="folder",
        labels=np.array(labels, np.int64),
        class_names=class_names,
        item_ids=np.array(item_ids),
        files=np.array([os.path.join(os.path.abspath(root), i) for i in item_ids]),
    )


def _find_list_file(path):
    if os.path.isfile(path):
        return path
    lists = sorted(n for n in os.listdir(path) if n.endswith(".txt"))
    if len(lists) != 1:
        found = ", ".join(lists) if lists else "none"
        raise UsageError(
            f"`data_dir` {path} must hold exactly one list file (*.txt), found "
            f"{found}; pass the list file itself as `data_dir`"
        )
    return os.path.join(path, lists[0])


def _list_file(dataset, path, class_names=None):
    """A list file: ``relative/path.jpg 0 1 0 … 1`` per line (path, then a 0/1 label vector)."""
    path = _find_list_file(path)
    base = os.path.dirname(os.path.abspath(path))
    expected = len(class_names) if class_names else None
    item_ids, rows = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError:
        kind = "an image" if path.lower().endswith(IMAGE_EXTENSIONS) else "not text"
        raise UsageError(
            f"{path} is {kind}, not a list file of 'relative/path.jpg 0 1 … 0' "
            "lines; pass an image folder <root>/<class>/<image> or a list "
            "file"
        ) from None
    for line_no, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        values = tokens[1:]
        if expected is None:
            expected = len(values)
            if expected == 0:
                raise UsageError(
                    f"line {line_no} of {path} has no labels; each line must be "
                    "'relative/path.jpg 0 1 … 0' (a path, then a 0/1 vector)"
                )
        if len(values) != expected:
            source = (
                f"the {dataset} layout has {expected}"
                if class_names
                else f"the first line has {expected}"
            )
            raise UsageError(
                f"line {line_no} of {path} has {len(values)} label values, "
                f"{source}; give every image a vector of the same length"
            )
        if any(v not in ("0", "1") for v in values):
            raise UsageError(
                f"line {line_no} of {path}: label values must be 0 or 1, got {' '.join(values)}"
            )
        item_ids.append(tokens[0])
        rows.append([v == "1" for v in values])
    if not item_ids:
        raise UsageError(
            f"list file {path} is empty; add one 'relative/path.jpg 0 1 … 0' line per image"
        )
    files = [os.path.normpath(os.path.join(base, i)) for i in item_ids]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise UsageError(
            f"{len(missing)} of {len(files)} images listed in {path} do not exist "
            f"(first: {missing[0]}); paths are relative to the list file's directory"
        )
    multi_hot = np.array(rows, np.uint8)
    if (multi_hot.sum(axis=1) == 1).all():
        labels = multi_hot.argmax(axis=1).astype(np.int64)  # one-hot rows: single-label data
    else:
        labels = multi_hot
    return Collection(
        name=dataset,
        labels=labels,
        class_names=list(class_names or [str(c) for c in range(expected)]),
        item_ids=np.array(item_ids),
        files=np.array(files),
    )


def write_folder(collection, out, indices=None):
    """Writes the images of ``collection`` (those at ``indices``, default all) as an image
    folder ``out/<class>/<name>``: what ``--dataset=folder --data_dir=out`` reads back with the
    same labels and, for lossless PNGs, the same pixels.

    In-memory pixels (digits, TFDS CIFAR) become PNG files named after the item's index
    (``0042.png``); encoded bytes (SUN397) and image files are written as they are, under
    their own names. It is how the bundled digits become a folder of real images to try
    ``configs/images.cfg`` or ``python -m tfhash.search --images`` on.

    Returns:
        The number of images written.

    Raises:
        UsageError: multi-label data (an image has no one class folder), an ``out`` that
            exists and is not empty, or indices outside the collection.
    """
    if collection.multi_label:
        raise UsageError(
            f"{collection.name} is multi-label: an image has no one class folder "
            "to go in; keep it as a list file"
        )
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UsageError(
            f"out={out} exists and is not an empty directory; pass a new one "
            "(nothing is overwritten)"
        )
    indices = (
        np.arange(len(collection)) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    )
    if indices.size and (indices.min() < 0 or indices.max() >= len(collection)):
        raise UsageError(
            f"indices outside [0, {len(collection)}) of {collection.name}; pass "
            "the split of a run on this collection"
        )
    from PIL import Image

    width = len(str(max(len(collection) - 1, 1)))
    folders = [str(name).replace(os.sep, "_") or "_" for name in collection.class_names]
    for i in indices:
        folder = os.path.join(out, folders[collection.labels[i]])
        os.makedirs(folder, exist_ok=True)
        if collection.pixels is not None:
            Image.fromarray(collection.pixels[i]).save(os.path.join(folder, f"{i:0{width}d}.png"))
        elif collection.encoded is not None:
            name = os.path.basename(str(collection.item_ids[i]))
            with open(os.path.join(folder, f"{name}.jpg"), "wb") as f:
                f.write(collection.encoded[i])
        else:
            import shutil

            shutil.copyfile(
                collection.files[i], os.path.join(folder, os.path.basename(collection.files[i]))
            )
    return len(indices)
