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

import json
import os

from absl import flags

from tfhash import cli
from tfhash.errors import UsageError
from tfhash.retrieval import query, store

# Their home before the library held them.
folder_labels, queries_from_flags, search, report = (
    query.folder_labels,
    query.read_queries,
    query.search,
    query.report,
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


def check_outputs(out, gallery=None, overwrite=False):
    """Refuses, before any work, an ``--out`` that is a directory and an existing ``--out`` or
    ``--gallery`` without ``overwrite`` (earlier results are never replaced silently)."""
    if not out:
        raise UsageError("--out is required: the results JSON file")
    if os.path.isdir(out):
        raise UsageError(f"--out={out} is a directory; pass a .json file name")
    if gallery and os.path.isdir(gallery):
        raise UsageError(f"--gallery={gallery} is a directory; pass a .png file name")
    if gallery and os.path.abspath(gallery) == os.path.abspath(out):
        raise UsageError(f"--gallery and --out are the same file {out}; give two names")
    existing = [
        f"--{flag}={path}"
        for flag, path in (("out", out), ("gallery", gallery))
        if path and os.path.exists(path)
    ]
    if existing and not overwrite:
        raise UsageError(
            f"{' and '.join(existing)} already exist{'s' * (len(existing) == 1)}; "
            "pass another name, or --overwrite to replace"
        )


def main(argv):
    check_outputs(FLAGS.out, FLAGS.gallery, FLAGS.overwrite)
    if FLAGS.radius is None and FLAGS.k < 1:
        raise UsageError(f"--k must be at least 1, got {FLAGS.k}")
    if FLAGS.radius is not None and FLAGS.radius < 0:
        raise UsageError(f"--radius must be 0 or more (Hamming distance), got {FLAGS.radius}")
    if bool(FLAGS.query_codes) == bool(FLAGS.images):
        raise UsageError(
            "give exactly one of --query_codes (a .npy of codes) and --images "
            "(files or a folder, with --model)"
        )
    if FLAGS.gallery_queries < 1:
        raise UsageError(f"--gallery_queries must be at least 1, got {FLAGS.gallery_queries}")
    if FLAGS.gallery:
        from tfhash.evaluation import plots

        plots.require_matplotlib()
    index = store.open_index(FLAGS.index, FLAGS.collection, FLAGS.timeout)
    class_names = store.read_class_names(FLAGS.index if os.path.isdir(FLAGS.index) else None)
    codes, bits, ids, paths, labels = query.read_queries(
        FLAGS.query_codes,
        FLAGS.images,
        FLAGS.model,
        FLAGS.query_labels,
        FLAGS.image_root,
        FLAGS.batch_size,
        class_names,
    )
    hits = query.search(index, codes, FLAGS.k, FLAGS.radius, FLAGS["k"].present, bits)
    result = query.report(index, hits, ids, labels, FLAGS.k, FLAGS.radius)
    if class_names:
        result["class_names"] = class_names
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1)
    found = sum(len(h) for h in hits)
    print(f"{len(hits)} queries, {found} results from {index.describe()}: {FLAGS.out}")
    if FLAGS.gallery:
        from tfhash import gallery

        gallery.draw_search_gallery(
            FLAGS.gallery,
            hits,
            ids,
            paths,
            labels,
            class_names,
            FLAGS.gallery_queries,
            FLAGS.k if FLAGS.radius is None else 10,
        )
        print(f"gallery: {FLAGS.gallery}")


if __name__ == "__main__":
    cli.run(main, define_flags)
