"""Searching an index as ``python -m tfhash.search`` does: the queries, the hits, the report.

Queries come as codes (encode's ``<name>_codes.npy``, whose item ids, labels and paths beside it
name the queries and frame the gallery, or ±1 / 0/1 columns) or as image files run through an
exported model (:func:`tfhash.serving.encoding.encode_image_files`; TensorFlow only then).
"""

import os

import numpy as np

from tfhash.errors import UsageError
from tfhash.retrieval import codes as encoded
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
