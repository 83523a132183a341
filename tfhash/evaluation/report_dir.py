"""The directory an evaluation report goes in (``tfhash.evaluate``'s ``out``): checked and
cleared of an earlier report before any scoring, then ``metrics.json`` written into it; and the
one line per report a person reads. NumPy-free, like the rest of :mod:`tfhash.evaluation`."""

import json
import os

from tfhash.errors import UsageError
from tfhash.evaluation import plots


def prepare(out, overwrite=False):
    """Checks ``out`` before any scoring: a directory (created later if missing) that holds no
    earlier report, whose files (``metrics.json``, the plots) are removed with ``overwrite``."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"out={out} is a file; pass a directory (created if missing)")
    earlier = [
        name
        for name in (os.listdir(out) if os.path.isdir(out) else [])
        if name == "metrics.json" or name in plots.FIGURE_FILES or plots.is_figure_file(name)
    ]
    if earlier and not overwrite:
        raise UsageError(
            f"out={out} already holds a report ({', '.join(sorted(earlier))}); "
            "pass a new `out`, or `overwrite` to replace it"
        )
    for name in earlier:
        os.remove(os.path.join(out, name))


def write_metrics(reports, out):
    """Writes ``out/metrics.json``: the one report, or ``{"reports": [...]}`` for several code
    lengths; returns its path."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "metrics.json")
    with open(path, "w") as f:
        json.dump(reports[0] if len(reports) == 1 else {"reports": reports}, f, indent=2)
    return path


def scores_line(report):
    """``48 bits: map=0.7000, …`` — a report's code length and its scalar scores, with the
    precision of each hash lookup."""
    data = report["data"]
    size = f"{data['bits']} bits" if "bits" in data else f"{data['dimensions']} dimensions"
    scalars = [f"{k}={v:.4f}" for k, v in report.items() if isinstance(v, float)]
    lookups = [
        f"{k} precision={v['precision']:.4f}"
        for k, v in report.items()
        if k.startswith("p@r") and v["precision"] is not None
    ]
    return f"{size}: " + ", ".join(scalars + lookups)
