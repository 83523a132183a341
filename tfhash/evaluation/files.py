"""Scoring encode's ``.npy`` files into a report directory, as ``python -m tfhash.evaluate``
does: the code files paired with their lengths, the conventions a preset fills in, one report
per code length, then ``metrics.json`` (:mod:`~tfhash.evaluation.report_dir`), the plots and
the gallery.

Every check that can refuse the files runs before any scoring, which takes minutes on large
sets. Importing this module imports NumPy only, like the rest of :mod:`tfhash.evaluation`: the
files are read through :mod:`tfhash.retrieval.codes`, and matplotlib is imported for the plots
and the gallery, each only when called.
"""

import os

from tfhash.errors import UsageError
from tfhash.evaluation import conventions, plots, report_dir
from tfhash.evaluation.report import DEFAULT_METRICS, evaluate_codes

# The conventions of scoring that a preset (conventions.PRESETS) may set.
CONVENTIONS = ("ties", "ap_denominator", "empty_queries", "empty_ball", "gain")


def code_files(query_codes, db_codes, bits=()):
    """``[(query file, database file, bits or None)]``: the files paired in order, each pair's
    code length from ``bits`` (integers, or strings of them; 0 for unpacked codes) or, without
    it, from encode's ``<name>_info.json`` beside packed codes."""
    from tfhash.retrieval.codes import encoded_bits

    if len(query_codes) != len(db_codes):
        raise UsageError(
            f"{len(query_codes)} `query_codes` files but {len(db_codes)} "
            "`db_codes` files; give one database file per query file"
        )
    if bits and len(bits) != len(query_codes):
        raise UsageError(
            f"`bits` has {len(bits)} values for {len(query_codes)} code "
            "files; give one per file, or none for unpacked codes"
        )
    try:
        lengths = [int(b) or None for b in bits]
    except ValueError:
        raise UsageError(f"`bits` must be integers, got {bits}") from None
    lengths = lengths or [encoded_bits(q, d) for q, d in zip(query_codes, db_codes)]
    return list(zip(query_codes, db_codes, lengths))


def apply_preset(preset, settings, given=()):
    """``settings`` (values of :data:`CONVENTIONS`) with those ``preset`` sets filled in; a
    convention named in ``given`` (set explicitly) to another value than the preset's is
    refused rather than silently replaced."""
    values = dict(settings)
    if preset:
        for name, value in conventions.PRESETS[preset].items():
            if name in given and values[name] != value:
                raise UsageError(
                    f"preset={preset} sets {name}={value}; drop {name}={values[name]} or the preset"
                )
            values[name] = value
    return values


def scored_metrics(metrics=None, distance="hamming"):
    """``metrics``, or without them the default's that ``distance`` can score (a real-valued
    distance has no hash lookup within a radius, and so no ``p@rR`` or ``pr``)."""
    if metrics is not None:
        return list(metrics)
    if distance == "hamming":
        return list(DEFAULT_METRICS)
    return [m for m in DEFAULT_METRICS if not (m == "pr" or m.startswith("p@r"))]


def evaluate_files(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    out,
    bits=(),
    metrics=None,
    top_k=None,
    distance="hamming",
    preset=None,
    settings=None,
    given=(),
    overwrite=False,
    draw_plots=True,
    gallery=False,
    echo=None,
):
    """Scores each pair of code files (:func:`code_files`) and writes the report into ``out``;
    returns the paths written (``metrics.json``, then the plots and ``gallery.png``).

    Args:
        query_codes, db_codes: lists of ``.npy`` files, paired in order, one per code length.
        query_labels, db_labels: the ``.npy`` label files all pairs share.
        out: the report directory (:func:`~tfhash.evaluation.report_dir.prepare`; an earlier
            report in it is refused unless ``overwrite``).
        bits, metrics, distance: see :func:`code_files` and :func:`scored_metrics`.
        top_k: the cut-off of metrics written without ``@K``.
        preset, settings, given: the conventions (:func:`apply_preset`).
        draw_plots: also write the PNG plots; ``gallery``: also draw ``gallery.png`` (queries of
            every class in turn with their top results) from the first pair's image paths.
        echo: called with each report's scores line as soon as it is scored.
    """
    from tfhash.retrieval.codes import load_array, read_info, read_paths

    files = code_files(query_codes, db_codes, bits)
    settings = apply_preset(preset, settings or {}, given)
    if draw_plots:  # these checks before minutes of scoring, not after
        plots.require_matplotlib()
    if gallery:
        gallery_paths = (
            read_paths(files[0][0], "`gallery`", "`query_codes`"),
            read_paths(files[0][1], "`gallery`", "`db_codes`"),
        )
    report_dir.prepare(out, overwrite)
    query_labels = load_array(query_labels, "`query_labels`")
    db_labels = load_array(db_labels, "`db_labels`")
    reports = []
    for query_path, db_path, length in files:
        try:
            report = evaluate_codes(
                load_array(query_path, "`query_codes`"),
                query_labels,
                load_array(db_path, "`db_codes`"),
                db_labels,
                metrics=scored_metrics(metrics, distance),
                top_k=top_k,
                distance=distance,
                bits=length,
                **settings,
            )
        except UsageError as e:
            raise UsageError(f"{query_path} against {db_path}: {e}") from None
        if echo:
            echo(report_dir.scores_line(report))
        reports.append(report)
    written = [report_dir.write_metrics(reports, out)]
    if draw_plots:
        written += plots.save_plots(reports, out)
    if gallery:
        from tfhash import gallery as figures

        query_path, db_path, length = files[0]
        written.append(
            figures.draw_evaluation_gallery(
                os.path.join(out, "gallery.png"),
                load_array(query_path, "`query_codes`"),
                query_labels,
                load_array(db_path, "`db_codes`"),
                db_labels,
                length,
                *gallery_paths,
                class_names=read_info(db_path).get("class_names"),
            )
        )
    return written
