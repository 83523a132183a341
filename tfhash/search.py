r"""Searches a Hamming index by codes or by images: ``python -m tfhash.search``.

    python -m tfhash.search --index=indexes/cifar10_48 --query_codes=codes/query_codes.npy \
        --k=10 --out=results.json
    python -m tfhash.search --index=indexes/cifar10_48 --images=photos/ \
        --model=models/cifar10_48 --radius=2 --out=results.json --gallery=gallery.png
    python -m tfhash.search --index=http://milvus:19530 --collection=cifar10_48 ...

returns, for each query, its top ``--k`` items by Hamming distance, or with
``--radius=r`` every item within distance r (the first ``--k`` of them when
``--k`` is given too), ordered by distance and then by position in the index
(insertion order: the tie rule, the same for both backends). ``results.json``
holds per query its id and the results' rank, item id, path, distance and
labels; ``--gallery`` draws each query image with its results, relevant ones
(sharing a label with the query) framed green, others red, captioned with their
class names. An existing ``--out`` or ``--gallery`` is refused unless ``--overwrite``.

Queries by code read packed uint8 rows (encode's ``<name>_codes.npy``; its
``<name>_item_ids.npy`` and ``<name>_labels.npy`` next to it name the queries
and frame the gallery) or ±1 / 0/1 columns. Queries by image run the files
through the exported model's ``encode_images`` signature (TensorFlow is
imported only then); a query image in a folder named after one of the index's
classes (``photos/cat/x.jpg``; the names come from encode through ``python -m
tfhash.index``) is labelled with that class, so its results are framed and
scored as relevant or not. See ``docs/search.md``.
"""

from absl import flags

from tfhash import cli
from tfhash.retrieval import query

# Their home before the library held them.
folder_labels, queries_from_flags, search, report, check_outputs = (
    query.folder_labels,
    query.read_queries,
    query.search,
    query.report,
    query.check_outputs,
)

FLAGS = flags.FLAGS


def define_flags():
    """search's flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_string(
        "index",
        None,
        "The index: a directory written by python -m "
        "tfhash.index, or a Milvus URI (http://host:19530 or a .db file).",
    )
    cli.define_milvus(None, "Milvus collection (default: the directory's, or tfhash).")
    flags.DEFINE_string(
        "query_codes",
        None,
        "Query codes .npy: packed uint8 rows (encode's <name>_codes.npy) or ±1 / 0/1 columns.",
    )
    flags.DEFINE_string(
        "query_labels",
        None,
        "Query labels .npy (class ids or multi-hot), to "
        "frame the gallery; default: <name>_labels.npy next to --query_codes.",
    )
    flags.DEFINE_string(
        "images",
        None,
        "Query images: comma-separated files or a folder "
        "(searched recursively), encoded by --model.",
    )
    flags.DEFINE_string(
        "model",
        None,
        "Exported model (python -m tfhash.export's --export_dir, or one version) for --images.",
    )
    flags.DEFINE_string(
        "image_root",
        None,
        "Directory the query item ids are relative to, to "
        "draw --query_codes queries in the gallery.",
    )
    flags.DEFINE_integer("k", 10, "Results per query, nearest first.")
    flags.DEFINE_integer(
        "radius",
        None,
        "Return every item within this Hamming distance "
        "instead of the top --k (capped at --k when --k is given too).",
    )
    flags.DEFINE_string(
        "gallery",
        None,
        "Optional PNG: each query with its results, relevant "
        "ones framed green, others red (an existing one is refused unless "
        "--overwrite).",
    )
    flags.DEFINE_integer("gallery_queries", 10, "Queries drawn in the gallery.")
    cli.define_out(
        "Results JSON file (an existing one is refused unless --overwrite).",
        overwrite="Replace an existing --out and --gallery.",
    )
    flags.DEFINE_integer("batch_size", 64, "Images per model call for --images.")


def main(argv):
    query.search_to_file(
        FLAGS.index,
        FLAGS.out,
        query_codes=FLAGS.query_codes,
        images=FLAGS.images,
        model=FLAGS.model,
        query_labels=FLAGS.query_labels,
        image_root=FLAGS.image_root,
        batch_size=FLAGS.batch_size,
        k=FLAGS.k,
        radius=FLAGS.radius,
        k_given=FLAGS["k"].present,
        gallery=FLAGS.gallery,
        gallery_queries=FLAGS.gallery_queries,
        collection=FLAGS.collection,
        timeout=FLAGS.timeout,
        overwrite=FLAGS.overwrite,
        echo=print,
    )


if __name__ == "__main__":
    cli.run(main, define_flags)
