r"""Hamming search over packed codes: FAISS in-process, Milvus for a cluster.

An index holds packed binary codes (uint8 ``[N, ⌈K/8⌉]``, ``np.packbits`` order, as
``python -m tfhash.encode`` writes them) with each item's id, path and, when known, its labels.
Two engines store and search them; this package only moves codes and item records in and out
of them, with one tie rule for both: results are ordered by (distance, position), position
being insertion order (:mod:`.base`).

* :mod:`.codes`  packing and checking codes, item records (:class:`Items`) and results
  (:class:`Hits`); the one owner of encode's file names (``<name>_codes.npy`` …, read and
  written there);
* :mod:`.store`  the index directory: manifest, atomic writes, the writer's lock, class names,
  :func:`open_index`;
* :mod:`.base`   :class:`SearchIndex`, the backends' shared operations, checks and tie rule;
* :mod:`.faiss`  :class:`FaissIndex` (``IndexBinaryFlat``, or ``IndexBinaryMultiHash`` for
  radius search), saved in a directory;
* :mod:`.milvus` :class:`MilvusIndex`, a collection on a Milvus server or in a Milvus Lite file;
* :mod:`.milvus_client` Milvus's client, its connection errors and the collections' schemas;
* :mod:`.build`  :func:`update_index`, what ``python -m tfhash.index`` does;
* :mod:`.query`  the queries, hits and report of ``python -m tfhash.search``.

Queries by image go through :mod:`tfhash.serving.encoding` (re-exported here as
:func:`encode_image_files` and :func:`image_files`; TensorFlow is imported only when called).

Example:

>>> codes = np.packbits(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], bool), axis=1)
>>> index = FaissIndex(bits=4)
>>> index.add(codes, item_ids=["a", "b", "c"])
>>> hits = index.search(codes[:1], k=2)[0]
>>> hits.item_ids.tolist(), hits.distances.tolist()   # "a" and "c" tie at 0: "a" was added first
(['a', 'c'], [0, 0])

Imports NumPy and the engine's client only. See ``docs/search.md``.
"""

import numpy as np  # noqa: F401  (the example above)

from tfhash.retrieval.base import TIE_RULE, SearchIndex
from tfhash.retrieval.build import update_index
from tfhash.retrieval.codes import (
    Hits,
    Items,
    as_packed,
    check_k,
    check_radius,
    describe_length,
    label_sets,
    read_encoded,
    read_info,
)
from tfhash.retrieval.faiss import KINDS, FaissIndex
from tfhash.retrieval.milvus import MILVUS_MAX_K, MilvusIndex
from tfhash.retrieval.store import (
    BACKENDS,
    DEFAULT_COLLECTION,
    FORMAT,
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    IndexLock,
    check_index_dir,
    is_milvus_uri,
    lock_index,
    open_index,
    read_class_names,
    read_manifest,
)

# Image queries are the serving package's (it imports this one): re-exported lazily, so that
# importing either package first works.
_FROM_ENCODING = ("IMAGE_EXTENSIONS", "encode_image_files", "graph_error_reason", "image_files")


def __getattr__(name):
    if name in _FROM_ENCODING:
        from tfhash.serving import encoding

        return getattr(encoding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "DEFAULT_COLLECTION",
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGE_EXTENSIONS",
    "KINDS",
    "LOCK",
    "MANIFEST",
    "MILVUS_MAX_K",
    "TIE_RULE",
    "FaissIndex",
    "Hits",
    "IndexLock",
    "Items",
    "MilvusIndex",
    "SearchIndex",
    "as_packed",
    "check_index_dir",
    "check_k",
    "check_radius",
    "describe_length",
    "encode_image_files",
    "graph_error_reason",
    "image_files",
    "is_milvus_uri",
    "label_sets",
    "lock_index",
    "open_index",
    "read_class_names",
    "read_encoded",
    "read_info",
    "read_manifest",
    "update_index",
]
