"""Searching an index as ``python -m tfhash.search`` does: the queries, the hits, the report.

Queries come as codes (encode's ``<name>_codes.npy``, whose item ids, labels and paths beside it
name the queries and frame the gallery, or ±1 / 0/1 columns) or as image files run through an
exported model (:func:`tfhash.serving.encoding.encode_image_files`; TensorFlow only then).
"""

import json
import os

import numpy as np

from tfhash.errors import UsageError
from tfhash.retrieval import codes as encoded
from tfhash.retrieval import store
from tfhash.retrieval.base import TIE_RULE
from tfhash.retrieval.codes import check_radius, label_sets


def folder_labels(files, class_names):
    """Per image file, ``[class id]`` when its folder is named after one of ``class_names``
    (``photos/cat/x.jpg`` → cat's id), else ``None``; ``None`` for all without names.

    >>> folder_labels(["q/cat/1.jpg", "q/2.jpg", "dog/3.png"], ["cat", "dog"])
    [[0], None, [1]]
    """
    if not class_names:
        return None
    ids = {str(name): i for i, name in enumerate(class_names)}
    labels = [
        [ids[folder]]
        if (folder := os.path.basename(os.path.dirname(os.path.abspath(f)))) in ids
        else None
        for f in files
    ]
    return labels if any(label is not None for label in labels) else None


def read_queries(
    query_codes=None,
    images=None,
    model=None,
    query_labels=None,
    image_root=None,
    batch_size=64,
    class_names=None,
):
    """``(codes, bits or None, ids, image paths or None, label sets or None)`` of the queries.

    A query image's label is the class its folder is named after (``class_names``: the
    index's), where it is one (:func:`folder_labels`); codes take encode's labels beside them.
    """
    if bool(query_codes) == bool(images):
        raise UsageError(
            "give exactly one of `query_codes` (a .npy of codes) and `images` "
            "(files or a folder, with `model`)"
        )
    if images:
        from tfhash.serving import encoding

        if not model:
            raise UsageError(
                "`images` needs `model`: the exported model that encodes them "
                "(python -m tfhash.export's export directory)"
            )
        files = encoding.image_files(images)
        codes, bits = encoding.encode_image_files(model, files, batch_size)
        ids, paths = list(files), list(files)
    else:
        codes = encoded.load_array(query_codes, "`query_codes`")
        bits = encoded.read_info(query_codes).get("bits")
        ids_path = encoded.beside(query_codes, "item_ids")
        ids = (
            [str(i) for i in np.load(ids_path)]
            if ids_path
            else [f"query {i}" for i in range(len(codes))]
        )
        if len(ids) != len(codes):
            ids = [f"query {i}" for i in range(len(codes))]
        paths = None
        if image_root and ids_path:
            paths = [os.path.join(image_root, i) for i in ids]
        elif paths_path := encoded.beside(query_codes, "paths"):  # encode's, for image files
            paths = [str(p) for p in encoded.load_array(paths_path, "`query_codes`")]
            paths = paths if len(paths) == len(codes) else None
    labels_path = query_labels or (encoded.beside(query_codes, "labels") if query_codes else None)
    labels = folder_labels(paths, class_names) if images else None
    if labels_path:
        labels = encoded.load_array(labels_path, "`query_labels`")
        if len(labels) != len(codes):
            raise UsageError(
                f"`query_labels` has {len(labels)} rows for {len(codes)} queries; "
                "give one label (or label row) per query"
            )
        labels = label_sets(labels)
    return codes, bits, ids, paths, labels


def search(index, codes, k=10, radius=None, k_given=True, bits=None):
    """Top-k (or radius) hits of the queries in ``index``; checks the code length first.

    With ``radius``, every item within it, the first ``k`` of them when ``k_given``."""
    if bits and index.bits and bits != index.bits:
        raise UsageError(
            f"`model` makes {bits}-bit codes but the index holds {index.bits}-bit "
            "codes; query with the model the index was built from"
        )
    if radius is None:
        return index.search(codes, k)
    check_radius(radius)
    if k_given and k is not None and k < 1:
        raise UsageError(f"`k` must be at least 1, got {k}")
    hits = index.radius_search(codes, radius)
    if k_given and k is not None:
        hits = [h.first(k) for h in hits]
    return hits


def report(index, hits, ids, labels, k, radius):
    """The results JSON: per query its id (and labels) and its ranked results."""
    queries = []
    for i, found in enumerate(hits):
        entry = {"query": i, "id": ids[i]}
        if labels is not None and labels[i] is not None:
            entry["labels"] = labels[i]
        entry["results"] = found.records()
        queries.append(entry)
    mode = {"mode": "top-k", "k": k} if radius is None else {"mode": "radius", "radius": radius}
    return {
        "index": index.describe(),
        "backend": index.backend,
        "bits": index.bits,
        **mode,
        "tie_rule": TIE_RULE,
        "queries": queries,
    }


def check_outputs(out, gallery=None, overwrite=False):
    """Refuses, before any work, an ``out`` that is a directory and an existing ``out`` or
    ``gallery`` without ``overwrite`` (earlier results are never replaced silently)."""
    if not out:
        raise UsageError("`out` is required: the results JSON file")
    if os.path.isdir(out):
        raise UsageError(f"out={out} is a directory; pass a .json file name")
    if gallery and os.path.isdir(gallery):
        raise UsageError(f"gallery={gallery} is a directory; pass a .png file name")
    if gallery and os.path.abspath(gallery) == os.path.abspath(out):
        raise UsageError(f"`gallery` and `out` are the same file {out}; give two names")
    existing = [
        f"{name}={path}"
        for name, path in (("out", out), ("gallery", gallery))
        if path and os.path.exists(path)
    ]
    if existing and not overwrite:
        raise UsageError(
            f"{' and '.join(existing)} already exist{'s' * (len(existing) == 1)}; "
            "pass another name, or `overwrite` to replace"
        )


def search_to_file(
    location,
    out,
    query_codes=None,
    images=None,
    model=None,
    query_labels=None,
    image_root=None,
    batch_size=64,
    k=10,
    radius=None,
    k_given=True,
    gallery=None,
    gallery_queries=10,
    collection=None,
    timeout=10.0,
    overwrite=False,
    echo=None,
):
    """Searches the index at ``location`` (:func:`~tfhash.retrieval.store.open_index`) for the
    queries (:func:`read_queries`) and writes the results JSON (:func:`report`) to ``out``,
    then, with ``gallery``, the PNG of its first ``gallery_queries`` queries and their results.

    Every argument is checked before the index is opened; ``echo`` is called with a line that
    says what was written as soon as it is. Returns ``(index, hits)``.
    """
    check_outputs(out, gallery, overwrite)
    if radius is None and k < 1:
        raise UsageError(f"`k` must be at least 1, got {k}")
    if radius is not None:
        check_radius(radius)
    if bool(query_codes) == bool(images):
        raise UsageError(
            "give exactly one of `query_codes` (a .npy of codes) and `images` "
            "(files or a folder, with `model`)"
        )
    if gallery_queries < 1:
        raise UsageError(f"`gallery_queries` must be at least 1, got {gallery_queries}")
    if gallery:
        from tfhash.evaluation import plots

        plots.require_matplotlib()
    index = store.open_index(location, collection, timeout)
    class_names = store.read_class_names(location if os.path.isdir(location) else None)
    codes, bits, ids, paths, labels = read_queries(
        query_codes, images, model, query_labels, image_root, batch_size, class_names
    )
    hits = search(index, codes, k, radius, k_given, bits)
    result = report(index, hits, ids, labels, k, radius)
    if class_names:
        result["class_names"] = class_names
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    if echo:
        found = sum(len(h) for h in hits)
        echo(f"{len(hits)} queries, {found} results from {index.describe()}: {out}")
    if gallery:
        from tfhash import gallery as figures

        figures.draw_search_gallery(
            gallery,
            hits,
            ids,
            paths,
            labels,
            class_names,
            gallery_queries,
            k if radius is None else 10,
        )
        if echo:
            echo(f"gallery: {gallery}")
    return index, hits
