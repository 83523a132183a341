"""Creating and updating an index from encoded files: what ``python -m tfhash.index`` does.

:func:`update_index` reads encode's files (:func:`tfhash.retrieval.codes.read_encoded`),
deletes and appends under the index's lock (:func:`tfhash.retrieval.store.lock_index`), and
saves: a FAISS index atomically in its directory, a Milvus collection in one manifest commit
(a delete commits with the append that follows it). The class names encode recorded are kept
beside the index, and codes of another collection's classes are refused.
"""

import os

import numpy as np

from tfhash.errors import UsageError
from tfhash.retrieval import store
from tfhash.retrieval.codes import read_encoded


def read_ids(value):
    """Item ids from a ``delete`` value: a .txt (one id per line) or .npy file of ids, or a
    comma-separated list."""
    if os.path.isfile(value):
        if value.endswith(".npy"):
            try:
                return np.load(value, allow_pickle=False).astype(str).reshape(-1).tolist()
            except (ValueError, OSError) as e:
                raise UsageError(f"delete={value} is not a readable .npy array ({e})") from None
        with open(value, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return [v for v in value.split(",") if v]


def _check_class_names(out, exists, items):
    """Refuses codes whose class names differ from those the index holds (their label ids
    would mean other classes)."""
    held = store.read_class_names(out) if exists else None
    if held and items is not None and items.class_names and items.class_names != held:
        raise UsageError(
            f"`codes` name their {len(items.class_names)} classes "
            f"{', '.join(items.class_names[:4])}… but the index at {out} holds "
            f"codes of the classes {', '.join(held[:4])}… (another collection, whose "
            "label ids mean other classes); add codes of the same collection, or "
            "build a new index in another `out`"
        )


def _check_target(out, backend, uri, collection):
    """Whether ``out`` already holds an index, refusing one of another backend or collection."""
    exists = bool(out) and os.path.exists(os.path.join(out, store.MANIFEST))
    if exists:
        manifest = store.read_manifest(out)
        if manifest["backend"] != backend:
            raise UsageError(
                f"{out} holds a {manifest['backend']} index; pass "
                f"backend={manifest['backend']}, or a new `out`"
            )
        if backend == "milvus" and (manifest["uri"], manifest["collection"]) != (
            store.normalise_uri(uri),
            collection,
        ):
            raise UsageError(
                f"{out} points to {manifest['collection']!r} at {manifest['uri']}; "
                "pass those `uri` and `collection`, or a new `out`"
            )
    return exists


def _open_faiss(out, exists, items, settings):
    """The FAISS index to change: the one in ``out``, or a new one for ``items``."""
    from tfhash.retrieval.faiss import FaissIndex

    if exists:
        index = FaissIndex.load(out)
        held = dict(index.multihash or {}, kind=index.kind)
        changed = [f"{k}={v}" for k, v in settings.items() if v is not None and held.get(k) != v]
        if changed:
            raise UsageError(
                f"{' '.join(changed)}: {out} holds a {index.kind} index "
                f"({index.describe()}), which an append keeps; build the "
                "new kind in a new `out`, or drop the flag to append"
            )
        return index
    if items is None:
        raise UsageError(f"out={out} is not an index yet; `delete` needs an existing one")
    settings = dict(settings, kind=settings["kind"] or "flat")
    return FaissIndex(items.bits, code_bytes=items.codes.shape[1], **settings)


def _open_milvus(uri, collection, timeout, items):
    """The Milvus collection to change, created for ``items`` when it does not exist."""
    from tfhash.retrieval.milvus import MilvusIndex

    index = MilvusIndex(uri, collection, timeout)
    if not index.exists():
        if items is None:
            raise UsageError(
                f"Milvus at {uri} has no collection {collection!r}; `delete` "
                "needs an existing index"
            )
        index.create(items.bits, items.codes.shape[1])
    return index


def update_index(
    codes=None,
    out=None,
    backend="faiss",
    uri=None,
    collection="tfhash",
    name=None,
    image_root=None,
    bits=None,
    kind=None,
    nhash=None,
    hash_bits=None,
    nflip=None,
    delete=None,
    replace=False,
    timeout=10.0,
):
    """Creates or updates an index; ``python -m tfhash.index``'s work, callable from Python.

    Args:
        codes: encode's output directory (or ``<name>_codes.npy``); ``None`` to only delete.
        out: the FAISS index directory, or (Milvus) an optional pointer directory.
        backend: ``"faiss"`` or ``"milvus"``.
        uri, collection, timeout: the Milvus server and collection.
        name, image_root, bits: see :func:`tfhash.retrieval.codes.read_encoded`.
        kind, nhash, hash_bits, nflip: the FAISS index type, for a new index (default
            ``"flat"``); given for an existing index of another kind, refused.
        delete: item ids to delete first (see :func:`read_ids`).
        replace: re-add items already in the index.

    Returns:
        ``(index, added, deleted)``.
    """
    if codes is None and not delete:
        raise UsageError("nothing to do: give `codes` to add, or `delete` ids")
    if backend == "faiss" and not out:
        raise UsageError("`out` is required: the index directory")
    if backend == "faiss" and uri:
        raise UsageError("`uri` is for backend=milvus; a faiss index lives in `out`")
    if backend == "milvus" and not uri:
        raise UsageError(
            "backend=milvus needs `uri`: http://host:19530, or a .db file for Milvus Lite"
        )
    if out:
        store.check_index_dir(out)
    # One writer at a time (its lock is released when it ends, however it ends); what the index
    # holds is read only once the lock is held.
    with store.lock_index(out, uri if backend == "milvus" else None):
        exists = _check_target(out, backend, uri, collection)
        items = None if codes is None else read_encoded(codes, name, image_root, bits)
        _check_class_names(out, exists, items)
        if backend == "faiss":
            settings = {"kind": kind, "nhash": nhash, "hash_bits": hash_bits, "nflip": nflip}
            index = _open_faiss(out, exists, items, settings)
        else:
            index = _open_milvus(uri, collection, timeout, items)
        if items is not None and items.bits and index.bits and items.bits != index.bits:
            raise UsageError(
                f"bits={items.bits} but the index holds {index.bits}-bit codes; add "
                "codes of the model the index was built from"
            )
        # Milvus: a delete commits with the append that follows it, in one manifest write.
        staged = {"commit": False} if items is not None and backend == "milvus" else {}
        deleted = index.delete(read_ids(delete), **staged) if delete else 0
        if items is not None:
            index.add(items, None, replace=replace)
        if backend == "faiss" or out:
            index.save(out)
        if out and items is not None and items.class_names:
            store.write_class_names(out, items.class_names)
        return index, 0 if items is None else len(items.codes), deleted
