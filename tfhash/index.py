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

from absl import flags

from tfhash import cli
from tfhash.retrieval.build import update_index
from tfhash.retrieval.store import read_class_names  # noqa: F401  (its home before)

build = update_index  # its name here before

FLAGS = flags.FLAGS
CODES_FLAGS = {  # the encoded set to add (tfhash.retrieval.codes.read_encoded's arguments)
    "codes": "Codes to add: the --out directory of python -m tfhash.encode, or one "
    "<name>_codes.npy in it.",
    "name": "Prefix of the encode files to add (e.g. database); needed when --codes holds "
    "several sets.",
    "image_root": "Directory the item ids are relative to (the image folder, or the list "
    "file's directory): paths become <image_root>/<id>. Default: "
    "<name>_paths.npy if encode wrote one, else the ids.",
}
MULTIHASH_FLAGS = {  # the settings of --kind=multihash, integers, None for their defaults
    "nhash": "multihash: number of hash tables (default K // 16).",
    "hash_bits": "multihash: bits per table (default K // nhash).",
    "nflip": "multihash: bits flipped per table when probing (default 1); radius search is "
    "exact up to nhash * (nflip + 1) - 1.",
}


def define_flags():
    """index's flags, defined by ``cli.run`` (importing the module defines none)."""
    for name, help in CODES_FLAGS.items():
        flags.DEFINE_string(name, None, help)
    flags.DEFINE_integer(
        "bits",
        None,
        "Code length K, when packed codes do not say it (12-bit "
        "codes fill 2 bytes); default: unknown, checked by bytes only.",
    )
    cli.define_out(
        "Index directory (faiss), created if missing; with "
        "--backend=milvus, an optional directory pointing to the collection."
    )
    flags.DEFINE_enum(
        "backend",
        "faiss",
        ["faiss", "milvus"],
        "faiss: in-process index saved in "
        "--out; milvus: a collection on the Milvus server (or Milvus Lite file) "
        "at --uri.",
    )
    flags.DEFINE_string(
        "uri",
        None,
        "Milvus URI: http://host:19530 for a server or cluster, or "
        "a local .db file for Milvus Lite.",
    )
    cli.define_milvus("tfhash", "Milvus collection name.")
    flags.DEFINE_enum(
        "kind",
        "flat",
        ["flat", "multihash"],
        "faiss index: flat (exact "
        "IndexBinaryFlat) or multihash (IndexBinaryMultiHash, for radius search; "
        "top-k stays exact). Only for a new index: an existing index of another "
        "kind is refused, never silently kept.",
    )
    for name, help in MULTIHASH_FLAGS.items():
        flags.DEFINE_integer(name, None, help)
    flags.DEFINE_string(
        "delete",
        None,
        "Item ids to delete: comma-separated, or a .txt (one id "
        "per line) or .npy file of ids. Applied before --codes are added.",
    )
    flags.DEFINE_boolean(
        "replace",
        False,
        "Re-add items whose id is already in the index (they "
        "move to the end of the tie order); without it they are refused.",
    )


def main(argv):
    index, added, deleted = update_index(
        FLAGS.codes,
        FLAGS.out,
        FLAGS.backend,
        FLAGS.uri,
        FLAGS.collection,
        FLAGS.name,
        FLAGS.image_root,
        FLAGS.bits,
        FLAGS.kind if FLAGS["kind"].present else None,
        FLAGS.nhash,
        FLAGS.hash_bits,
        FLAGS.nflip,
        FLAGS.delete,
        FLAGS.replace,
        FLAGS.timeout,
    )
    where = FLAGS.out if FLAGS.backend == "faiss" else f"{FLAGS.uri} ({FLAGS.collection})"
    print(f"added {added}, deleted {deleted}: {index.describe()} in {where}")


if __name__ == "__main__":
    cli.run(main, define_flags)
