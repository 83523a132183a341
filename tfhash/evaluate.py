r"""Score binary codes from ``.npy`` files: ``python -m tfhash.evaluate``.

    python -m tfhash.evaluate --query_codes=codes/query_codes.npy \
        --query_labels=codes/query_labels.npy --db_codes=codes/database_codes.npy \
        --db_labels=codes/database_labels.npy --bits=12 \
        --metrics=map,map@1000,p@k,p@r2,pr --ties=average --out=report/

writes ``report/metrics.json`` (the report of
:func:`tfhash.evaluation.evaluate_codes`) and PNG plots: the precision–recall
curve over Hamming radii and the precision@k curve. Given codes of several
lengths (comma-separated ``--query_codes`` and ``--db_codes``, paired in order,
sharing the label files), ``metrics.json`` holds ``{"reports": [...]}``, one per
length, and two more plots show precision within radius 2 and MAP against the
number of bits (the LSDH paper's Fig. 5).

Packed codes (``python -m tfhash.encode``'s) need their length K: ``--bits=12``, or
without it the ``<name>_info.json`` that encode writes beside them. ``--gallery`` draws
queries of every class in turn (one of each before a second of any), captioned with the class
names encode recorded.

Imports NumPy, SciPy and absl only (matplotlib for plots); never TensorFlow.
See ``docs/evaluation.md``.
"""

from absl import flags

from tfhash import cli, evaluation
from tfhash.errors import UsageError
from tfhash.evaluation import conventions, distances, files

FLAGS = flags.FLAGS


def define_flags():
    """evaluate's flags, defined by ``cli.run`` (importing the module defines none)."""
    flags.DEFINE_list(
        "query_codes",
        None,
        "Query codes .npy: [Q, K] ±1 or 0/1, or packed uint8 "
        "with --bits. Several files (comma-separated) score several code lengths.",
    )
    flags.DEFINE_list(
        "db_codes", None, "Database codes .npy, one per --query_codes file, in the same order."
    )
    flags.DEFINE_string(
        "query_labels", None, "Query labels .npy: class ids [Q] or multi-hot [Q, C]."
    )
    flags.DEFINE_string(
        "db_labels", None, "Database labels .npy: class ids [N] or multi-hot [N, C]."
    )
    flags.DEFINE_list(
        "bits",
        [],
        "Code length of packed uint8 codes, one per code file (0 for a file "
        "of ±1 or 0/1 codes); unset: encode's <name>_info.json beside packed "
        "codes says it, and other files are not packed.",
    )
    flags.DEFINE_list(
        "metrics",
        list(evaluation.DEFAULT_METRICS),
        "Metrics: map, map@K, wap, wap@K, "
        "ndcg@K, acg@K, p@k (precision/recall@k curves), p@rR (hash lookup within "
        "radius R), pr (precision-recall over radii). Unset with a real-valued "
        "--distance: the ranking metrics of the default (map, p@k).",
    )
    flags.DEFINE_integer(
        "top_k",
        None,
        "Cut-off of map, wap, ndcg, acg written without @K; unset: the whole ranking.",
    )
    flags.DEFINE_enum(
        "ties",
        "average",
        evaluation.TIE_POLICIES,
        "Order of items at equal distance: "
        "average (exact expected value over all orders), index (database order), "
        "optimistic (relevant first), pessimistic (relevant last).",
    )
    flags.DEFINE_enum(
        "ap_denominator",
        "min_r_k",
        conventions.AP_DENOMINATORS,
        "AP@k divided by min(R, k) or by the relevant items in the top k.",
    )
    flags.DEFINE_enum(
        "empty_queries",
        "skip",
        conventions.EMPTY_POLICIES,
        "Queries with no relevant "
        "database item: left out of AP, recall and NDCG (skip) or counted as 0 (zero).",
    )
    flags.DEFINE_enum(
        "empty_ball",
        "zero",
        conventions.EMPTY_POLICIES,
        "Hash lookups with nothing within the radius: precision 0 (zero) or left out (skip).",
    )
    flags.DEFINE_enum(
        "gain",
        "shared",
        conventions.GAINS,
        "Graded relevance of ndcg, acg and wap: "
        "number of shared labels, or their Jaccard similarity.",
    )
    flags.DEFINE_enum(
        "preset",
        None,
        list(conventions.PRESETS),
        "Conventions of widely used code: "
        "deephash = --ties=index --ap_denominator=relevant_in_top_k "
        "--empty_queries=zero.",
    )
    flags.DEFINE_enum(
        "distance",
        "hamming",
        distances.DISTANCES,
        "hamming for binary codes; "
        "euclidean or cosine to rank real-valued embeddings (e.g. relaxed codes).",
    )
    cli.define_out(
        "Output directory (created if missing). One that holds an "
        "earlier report is refused unless --overwrite.",
        overwrite="Replace the report (metrics.json and the plots) "
        "already in --out; the earlier one's files are removed first, so the two "
        "are never mixed.",
    )
    flags.DEFINE_boolean("plots", True, "Write PNG plots.")
    flags.DEFINE_boolean(
        "gallery",
        False,
        "Also draw gallery.png: queries of every class in turn, "
        "with their top results, relevant ones framed green, others red. Needs "
        "the image paths that encode writes beside the codes "
        "(<name>_paths.npy, for image folders and list files).",
    )


def main(argv):
    for name in ("query_codes", "db_codes", "query_labels", "db_labels", "out"):
        if not FLAGS[name].value:
            raise UsageError(f"--{name} is required; see --help")
    written = files.evaluate_files(
        FLAGS.query_codes,
        FLAGS.db_codes,
        FLAGS.query_labels,
        FLAGS.db_labels,
        FLAGS.out,
        bits=FLAGS.bits,
        metrics=FLAGS.metrics if FLAGS["metrics"].present else None,
        top_k=FLAGS.top_k,
        distance=FLAGS.distance,
        preset=FLAGS.preset,
        settings={name: FLAGS[name].value for name in files.CONVENTIONS},
        given=[name for name in files.CONVENTIONS if FLAGS[name].present],
        overwrite=FLAGS.overwrite,
        draw_plots=FLAGS.plots,
        gallery=FLAGS.gallery,
        echo=print,
    )
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    cli.run(main, define_flags)
