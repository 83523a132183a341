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

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command's flags; only when run as a program (``cli.run``), so that importing
    this module defines none."""
    flags.DEFINE_string("index", None, "The index: a directory written by python -m "
                        "tfhash.index, or a Milvus URI (http://host:19530 or a .db file).")
    flags.DEFINE_string("collection", None, "Milvus collection (default: the directory's, or "
                        "tfhash).")
    flags.DEFINE_float("timeout", 10.0, "Seconds to wait for a Milvus server to answer.")
    flags.DEFINE_string("query_codes", None, "Query codes .npy: packed uint8 rows (encode's "
                        "<name>_codes.npy) or ±1 / 0/1 columns.")
    flags.DEFINE_string("query_labels", None, "Query labels .npy (class ids or multi-hot), to "
                        "frame the gallery; default: <name>_labels.npy next to --query_codes.")
    flags.DEFINE_string("images", None, "Query images: comma-separated files or a folder "
                        "(searched recursively), encoded by --model.")
    flags.DEFINE_string("model", None, "Exported model (python -m tfhash.export's --export_dir, "
                        "or one version) for --images.")
    flags.DEFINE_string("image_root", None, "Directory the query item ids are relative to, to "
                        "draw --query_codes queries in the gallery.")
    flags.DEFINE_integer("k", 10, "Results per query, nearest first.")
    flags.DEFINE_integer("radius", None, "Return every item within this Hamming distance "
                         "instead of the top --k (capped at --k when --k is given too).")
    flags.DEFINE_string("out", None, "Results JSON file (an existing one is refused unless "
                        "--overwrite).")
    flags.DEFINE_string("gallery", None, "Optional PNG: each query with its results, relevant "
                        "ones framed green, others red (an existing one is refused unless "
                        "--overwrite).")
    flags.DEFINE_integer("gallery_queries", 10, "Queries drawn in the gallery.")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --out and --gallery.")
    flags.DEFINE_integer("batch_size", 64, "Images per model call for --images.")


def _sibling(query_codes, part):
    """encode's ``<name>_<part>.npy`` next to ``<name>_codes.npy``, if there is one."""
    if query_codes.endswith("_codes.npy"):
        path = query_codes[:-len("codes.npy")] + f"{part}.npy"
        if os.path.isfile(path):
            return path
    return None


def folder_labels(files, class_names):
    """Per image file, ``[class id]`` when its folder is named after one of ``class_names``
    (``photos/cat/x.jpg`` → cat's id), else ``None``; ``None`` for all without names.

    >>> folder_labels(["q/cat/1.jpg", "q/2.jpg", "dog/3.png"], ["cat", "dog"])
    [[0], None, [1]]
    """
    if not class_names:
        return None
    ids = {str(name): i for i, name in enumerate(class_names)}
    labels = [[ids[folder]] if (folder := os.path.basename(os.path.dirname(
        os.path.abspath(f)))) in ids else None for f in files]
    return labels if any(label is not None for label in labels) else None


def queries_from_flags(query_codes=None, images=None, model=None, query_labels=None,
                       image_root=None, batch_size=64, class_names=None):
    """``(codes, bits or None, ids, image paths or None, label sets or None)`` of the queries.

    A query image's label is the class its folder is named after (``class_names``: the
    index's), where it is one (:func:`folder_labels`); codes take encode's labels beside them.
    """
    import numpy as np

    from tfhash import retrieval
    from tfhash.encode import read_info

    if bool(query_codes) == bool(images):
        raise UsageError("give exactly one of --query_codes (a .npy of codes) and --images "
                         "(files or a folder, with --model)")
    if images:
        if not model:
            raise UsageError("--images needs --model: the exported model that encodes them "
                             "(python -m tfhash.export's --export_dir)")
        files = retrieval.image_files(images)
        codes, bits = retrieval.encode_image_files(model, files, batch_size)
        ids, paths = list(files), list(files)
    else:
        codes, bits = cli.load_array(query_codes, "query_codes"), read_info(
            query_codes).get("bits")
        ids_path = _sibling(query_codes, "item_ids")
        ids = ([str(i) for i in np.load(ids_path)] if ids_path
               else [f"query {i}" for i in range(len(codes))])
        if len(ids) != len(codes):
            ids = [f"query {i}" for i in range(len(codes))]
        paths = None
        if image_root and ids_path:
            paths = [os.path.join(image_root, i) for i in ids]
        elif (paths_path := _sibling(query_codes, "paths")):  # encode's, for image files
            paths = [str(p) for p in cli.load_array(paths_path, "query_codes")]
            paths = paths if len(paths) == len(codes) else None
    labels_path = query_labels or (_sibling(query_codes, "labels") if query_codes else None)
    labels = folder_labels(paths, class_names) if images else None
    if labels_path:
        labels = cli.load_array(labels_path, "query_labels")
        if len(labels) != len(codes):
            raise UsageError(f"--query_labels has {len(labels)} rows for {len(codes)} queries; "
                             "give one label (or label row) per query")
        labels = retrieval.label_sets(labels)
    return codes, bits, ids, paths, labels


def search(index, codes, k=10, radius=None, k_given=True, bits=None):
    """Top-k (or radius) hits of the queries in ``index``; checks the code length first."""
    from tfhash import retrieval

    if bits and index.bits and bits != index.bits:
        raise UsageError(f"--model makes {bits}-bit codes but the index holds {index.bits}-bit "
                         "codes; query with the model the index was built from")
    if radius is None:
        return index.search(codes, k)
    retrieval.check_radius(radius)
    if k_given and k is not None and k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    hits = index.radius_search(codes, radius)
    if k_given and k is not None:
        hits = [retrieval.Hits(h.distances[:k], h.positions[:k], h.item_ids[:k], h.paths[:k],
                               None if h.labels is None else h.labels[:k]) for h in hits]
    return hits


def report(index, hits, ids, labels, k, radius):
    """The results JSON."""
    from tfhash import retrieval

    queries = []
    for i, found in enumerate(hits):
        entry = {"query": i, "id": ids[i]}
        if labels is not None and labels[i] is not None:
            entry["labels"] = labels[i]
        entry["results"] = found.records()
        queries.append(entry)
    mode = {"mode": "top-k", "k": k} if radius is None else {"mode": "radius", "radius": radius}
    return {"index": index.describe(), "backend": index.backend, "bits": index.bits,
            **mode, "tie_rule": retrieval.TIE_RULE, "queries": queries}


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
    existing = [f"--{flag}={path}" for flag, path in (("out", out), ("gallery", gallery))
                if path and os.path.exists(path)]
    if existing and not overwrite:
        raise UsageError(f"{' and '.join(existing)} already exist{'s' * (len(existing) == 1)}; "
                         "pass another name, or --overwrite to replace")


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    check_outputs(FLAGS.out, FLAGS.gallery, FLAGS.overwrite)
    if FLAGS.radius is None and FLAGS.k < 1:
        raise UsageError(f"--k must be at least 1, got {FLAGS.k}")
    if FLAGS.radius is not None and FLAGS.radius < 0:
        raise UsageError(f"--radius must be 0 or more (Hamming distance), got {FLAGS.radius}")
    if bool(FLAGS.query_codes) == bool(FLAGS.images):
        raise UsageError("give exactly one of --query_codes (a .npy of codes) and --images "
                         "(files or a folder, with --model)")
    if FLAGS.gallery_queries < 1:
        raise UsageError(f"--gallery_queries must be at least 1, got {FLAGS.gallery_queries}")
    if FLAGS.gallery:
        from tfhash.evaluation import plots

        plots.require_matplotlib()
    from tfhash import retrieval
    from tfhash.index import read_class_names

    index = retrieval.open_index(FLAGS.index, FLAGS.collection, FLAGS.timeout)
    class_names = read_class_names(FLAGS.index if os.path.isdir(FLAGS.index) else None)
    codes, bits, ids, paths, labels = queries_from_flags(
        FLAGS.query_codes, FLAGS.images, FLAGS.model, FLAGS.query_labels, FLAGS.image_root,
        FLAGS.batch_size, class_names)
    hits = search(index, codes, FLAGS.k, FLAGS.radius, FLAGS["k"].present, bits)
    result = report(index, hits, ids, labels, FLAGS.k, FLAGS.radius)
    if class_names:
        result["class_names"] = class_names
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1)
    found = sum(len(h) for h in hits)
    print(f"{len(hits)} queries, {found} results from {index.describe()}: {FLAGS.out}")
    if FLAGS.gallery:
        from tfhash import gallery

        relevant = None if labels is None else [gallery.relevance(q, h.labels)
                                                 for q, h in zip(labels, hits)]
        queries = [(None if paths is None else paths[i], os.path.basename(str(ids[i]))[:18])
                   for i in range(len(hits))]
        gallery.draw_gallery(FLAGS.gallery, queries, hits, relevant,
                             max_queries=FLAGS.gallery_queries,
                             max_results=FLAGS.k if FLAGS.radius is None else 10,
                             class_names=class_names, query_labels=labels)
        print(f"gallery: {FLAGS.gallery}")


if __name__ == "__main__":
    cli.run(main, define_flags)
