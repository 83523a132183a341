r"""Builds, appends to and edits a Hamming index of codes: ``python -m tfhash.index``.

    python -m tfhash.index --codes=codes/ --name=database --image_root=data/cifar10 \
        --out=indexes/cifar10_48                       # FAISS, exact (IndexBinaryFlat)
    python -m tfhash.index --codes=more_codes/ --out=indexes/cifar10_48     # appends
    python -m tfhash.index --out=indexes/cifar10_48 --delete=ids.txt        # deletes by id
    python -m tfhash.index --codes=codes/ --backend=milvus --uri=http://milvus:19530 \
        --collection=cifar10_48 [--out=indexes/cifar10_48_milvus]

reads ``python -m tfhash.encode``'s ``<name>_codes.npy`` (packed codes),
``<name>_item_ids.npy`` and ``<name>_labels.npy`` and adds them, with each
item's path (``--image_root``/item id, for the gallery), to the index at
``--out`` (FAISS) or ``--uri`` (Milvus; ``--out`` then only writes a small
directory pointing to the collection, so ``python -m tfhash.search
--index=<dir>`` reads either backend). An existing index is appended to; an
item id it already holds is refused unless ``--replace`` (the item is deleted
and added again, at the end of the position order that breaks ties).

A FAISS index is written to new files and switched to by replacing its
manifest with one rename, so an interrupted build leaves the previous index
as it was. See ``docs/search.md``.

Imports NumPy and the engine's client only; never TensorFlow.
"""

import json
import os

from absl import flags

from tfhash import cli
from tfhash.errors import UsageError

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command's flags; only when run as a program (``cli.run``), so that importing
    this module defines none."""
    flags.DEFINE_string("codes", None, "Codes to add: the --out directory of python -m "
                        "tfhash.encode, or one <name>_codes.npy in it.")
    flags.DEFINE_string("name", None, "Prefix of the encode files to add (e.g. database); needed "
                        "when --codes holds several sets.")
    flags.DEFINE_string("image_root", None, "Directory the item ids are relative to (the image "
                        "folder, or the list file's directory): paths become <image_root>/<id>. "
                        "Default: <name>_paths.npy if encode wrote one, else the ids.")
    flags.DEFINE_integer("bits", None, "Code length K, when packed codes do not say it (12-bit "
                         "codes fill 2 bytes); default: unknown, checked by bytes only.")
    flags.DEFINE_string("out", None, "Index directory (faiss), created if missing; with "
                        "--backend=milvus, an optional directory pointing to the collection.")
    flags.DEFINE_enum("backend", "faiss", ["faiss", "milvus"], "faiss: in-process index saved in "
                      "--out; milvus: a collection on the Milvus server (or Milvus Lite file) "
                      "at --uri.")
    flags.DEFINE_string("uri", None, "Milvus URI: http://host:19530 for a server or cluster, or "
                        "a local .db file for Milvus Lite.")
    flags.DEFINE_string("collection", "tfhash", "Milvus collection name.")
    flags.DEFINE_float("timeout", 10.0, "Seconds to wait for a Milvus server to answer.")
    flags.DEFINE_enum("kind", "flat", ["flat", "multihash"], "faiss index: flat (exact "
                      "IndexBinaryFlat) or multihash (IndexBinaryMultiHash, for radius search; "
                      "top-k stays exact). Only for a new index: an existing index of another "
                      "kind is refused, never silently kept.")
    flags.DEFINE_integer("nhash", None, "multihash: number of hash tables (default K // 16).")
    flags.DEFINE_integer("hash_bits", None, "multihash: bits per table (default K // nhash).")
    flags.DEFINE_integer("nflip", None, "multihash: bits flipped per table when probing "
                         "(default 1); radius search is exact up to nhash * (nflip + 1) - 1.")
    flags.DEFINE_string("delete", None, "Item ids to delete: comma-separated, or a .txt (one id "
                        "per line) or .npy file of ids. Applied before --codes are added.")
    flags.DEFINE_boolean("replace", False, "Re-add items whose id is already in the index (they "
                         "move to the end of the tie order); without it they are refused.")


def read_ids(value):
    """Item ids from ``--delete``: a .txt or .npy file of ids, or a comma-separated list."""
    import numpy as np

    if os.path.isfile(value):
        if value.endswith(".npy"):
            try:
                return np.load(value, allow_pickle=False).astype(str).reshape(-1).tolist()
            except (ValueError, OSError) as e:
                raise UsageError(f"--delete={value} is not a readable .npy array ({e})") from None
        with open(value, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return [v for v in value.split(",") if v]


CLASS_NAMES = "class_names.json"  # in --out: the names of the label ids, from encode's info


def read_class_names(directory):
    """The class names an index directory records (``class_names.json``), or ``None``."""
    path = os.path.join(directory, CLASS_NAMES) if directory else None
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            names = json.load(f)
    except (OSError, ValueError):
        return None  # only the gallery's captions and query labels depend on it
    return names if isinstance(names, list) else None


def _check_class_names(out, exists, items):
    """Refuses codes whose class names differ from those the index holds (their label ids
    would mean other classes)."""
    held = read_class_names(out) if exists else None
    if held and items is not None and items.class_names and items.class_names != held:
        raise UsageError(f"--codes name their {len(items.class_names)} classes "
                         f"{', '.join(items.class_names[:4])}… but the index at {out} holds "
                         f"codes of the classes {', '.join(held[:4])}… (another collection, whose "
                         "label ids mean other classes); add codes of the same collection, or "
                         "build a new index in another --out")


def _write_class_names(out, items):
    if not out or items is None or not items.class_names:
        return
    path = os.path.join(out, CLASS_NAMES)
    partial = os.path.join(out, f".partial-{os.getpid()}-{CLASS_NAMES}")
    with open(partial, "w") as f:
        json.dump(list(items.class_names), f)
    os.replace(partial, path)


def build(codes=None, out=None, backend="faiss", uri=None, collection="tfhash", name=None,
          image_root=None, bits=None, kind=None, nhash=None, hash_bits=None, nflip=None,
          delete=None, replace=False, timeout=10.0):
    """Creates or updates an index; the command's work, callable from Python.

    Args:
        codes: encode's output directory (or ``<name>_codes.npy``); ``None`` to only delete.
        out: the FAISS index directory, or (Milvus) an optional pointer directory.
        backend: ``"faiss"`` or ``"milvus"``.
        uri, collection, timeout: the Milvus server and collection.
        name, image_root, bits: see :func:`tfhash.retrieval.read_encoded`.
        kind, nhash, hash_bits, nflip: the FAISS index type, for a new index (default
            ``"flat"``); given for an existing index of another kind, refused.
        delete: item ids to delete first.
        replace: re-add items already in the index.

    Returns:
        ``(index, added, deleted)``.
    """
    from tfhash import retrieval

    if codes is None and not delete:
        raise UsageError("nothing to do: give --codes to add, or --delete ids")
    if backend == "faiss" and not out:
        raise UsageError("--out is required: the index directory")
    if backend == "faiss" and uri:
        raise UsageError("--uri is for --backend=milvus; a faiss index lives in --out")
    if backend == "milvus" and not uri:
        raise UsageError("--backend=milvus needs --uri: http://host:19530, or a .db file for "
                         "Milvus Lite")
    if out:
        retrieval.check_index_dir(out)
    # One writer at a time (its lock is released when it ends, however it ends); what the index
    # holds is read only once the lock is held.
    lock = retrieval.lock_index(out, uri if backend == "milvus" else None)
    try:
        exists = bool(out) and os.path.exists(os.path.join(out, retrieval.MANIFEST))
        if exists:
            manifest = retrieval.read_manifest(out)
            if manifest["backend"] != backend:
                raise UsageError(f"{out} holds a {manifest['backend']} index; pass "
                                 f"--backend={manifest['backend']}, or a new --out")
            if backend == "milvus" and (manifest["uri"], manifest["collection"]) != (
                    retrieval.MilvusIndex.normalise_uri(uri), collection):
                raise UsageError(f"{out} points to {manifest['collection']!r} at {manifest['uri']}; "
                                 "pass those --uri and --collection, or a new --out")
        items = None if codes is None else retrieval.read_encoded(codes, name, image_root, bits)
        _check_class_names(out, exists, items)

        if backend == "faiss":
            if exists:
                index = retrieval.FaissIndex.load(out)
                settings = {"kind": kind, "nhash": nhash, "hash_bits": hash_bits,
                            "nflip": nflip}
                held = dict(index.multihash or {}, kind=index.kind)
                changed = [f"--{k}={v}" for k, v in settings.items()
                           if v is not None and held.get(k) != v]
                if changed:
                    raise UsageError(f"{' '.join(changed)}: {out} holds a {index.kind} index "
                                     f"({index.describe()}), which an append keeps; build the "
                                     "new kind in a new --out, or drop the flag to append")
            elif items is None:
                raise UsageError(f"--out={out} is not an index yet; --delete needs an existing one")
            else:
                index = retrieval.FaissIndex(items.bits, kind or "flat", nhash, hash_bits,
                                             nflip, code_bytes=items.codes.shape[1])
        else:
            index = retrieval.MilvusIndex(uri, collection, timeout)
            if not index.exists():
                if items is None:
                    raise UsageError(f"Milvus at {uri} has no collection {collection!r}; --delete "
                                     "needs an existing index")
                index.create(items.bits, items.codes.shape[1])
        if items is not None and items.bits and index.bits and items.bits != index.bits:
            raise UsageError(f"--bits={items.bits} but the index holds {index.bits}-bit codes; add "
                             "codes of the model the index was built from")
        # Milvus: a delete commits with the append that follows it, in one manifest write.
        staged = {"commit": False} if items is not None and backend == "milvus" else {}
        deleted = index.delete(read_ids(delete), **staged) if delete else 0
        if items is not None:
            index.add(items, None, replace=replace)
        if backend == "faiss":
            index.save(out)
        elif out:
            index.save_pointer(out)
        _write_class_names(out, items)
        return index, 0 if items is None else len(items.codes), deleted
    finally:
        lock.release()


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    index, added, deleted = build(
        FLAGS.codes, FLAGS.out, FLAGS.backend, FLAGS.uri, FLAGS.collection, FLAGS.name,
        FLAGS.image_root, FLAGS.bits, FLAGS.kind if FLAGS["kind"].present else None,
        FLAGS.nhash, FLAGS.hash_bits, FLAGS.nflip,
        FLAGS.delete, FLAGS.replace, FLAGS.timeout)
    where = FLAGS.out if FLAGS.backend == "faiss" else f"{FLAGS.uri} ({FLAGS.collection})"
    print(f"added {added}, deleted {deleted}: {index.describe()} in {where}")


if __name__ == "__main__":
    cli.run(main, define_flags)
