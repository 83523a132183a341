"""What the paper-table runners (cifar10_table.py, paper_tables.py) share.

* :func:`run_logged`: one training command in its own process, resumable, its output appended
  to ``<run_dir>.log`` and its wall-clock summed over attempts in ``<run_dir>.wall_seconds``;
  a failure (a refused run directory included) stops the runner with the command's own error.
* :func:`score`: a finished run's codes scored for the tables and Fig. 5 (sign codes in
  Hamming distance; optionally the relaxed codes in Euclidean distance, the "-C" rows), and
  :func:`code_statistics` of its database codes.
* :func:`draw_fig5`: the LSDH paper's Fig. 5 (four PNGs) for any set of curves.
* :func:`mean_cell`, :func:`precision_at`, :func:`write_section`, :func:`machine`: the
  markdown's cells, and the section between two markers of ``benchmarks/RESULTS.md``.
"""

import os
import platform
import subprocess
import sys
import time

import numpy as np

from tfhash import evaluation
from tfhash.evaluation import plots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P_AT_K = [1, 10, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
# A bit counts as constant when at least 99 % of the database has the same sign there.
CONSTANT = 0.01
FIGURES = [
    "precision_radius2_vs_bits",
    "precision_at_500_vs_bits",
    "precision_at_k_48bits",
    "pr_curve_48bits",
]


def machine():
    """The CPU model and core count that the runs trained on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def run_logged(command, run_dir):
    """Runs ``command`` (argument list, in the repository root) for ``run_dir``; returns the
    wall-clock seconds of all its attempts.

    Raises:
        SystemExit: the command failed; the message holds its last ``error:`` line (e.g.
            tfhash.train refusing a run directory made with other settings), or else its
            last line, and the log.
    """
    os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)
    wall_file, log_file = run_dir + ".wall_seconds", run_dir + ".log"
    earlier = float(open(wall_file).read()) if os.path.isfile(wall_file) else 0.0
    start = time.time()
    with open(log_file, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        attempt = log.tell()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = earlier + time.time() - start
    with open(wall_file, "w") as f:
        f.write(f"{seconds:.1f}")
    if code != 0:
        with open(log_file) as f:
            f.seek(attempt)
            lines = [line.strip() for line in f if line.strip()]
        # A command's one-line error, else the last line it wrote (an exception's).
        errors = [line[len("error:") :].strip() for line in lines if line.startswith("error:")]
        reason = (errors or lines or [f"exit {code}"])[-1]
        sys.exit(
            f"error: {os.path.basename(run_dir)} failed: {reason} (log: {log_file}); "
            "fix it and rerun this command to resume"
        )
    return seconds


def code_statistics(codes, relaxed):
    """How much of the code a run uses: the database's distinct codes, the bits that are
    (nearly) constant over it, and the mean tanh slope 1 − h² that every gradient to the
    backbone is multiplied by (small when training has saturated the hashing layer)."""
    return {
        "distinct_codes": int(len(np.unique(codes, axis=0))),
        "constant_bits": int(np.sum(np.abs(np.mean(codes, axis=0)) >= 1 - 2 * CONSTANT)),
        "tanh_slope": float(np.mean(1.0 - np.square(relaxed))),
    }


def score(run_dir, relaxed=False):
    """``(signs, relaxed report or None, code statistics)`` of a finished run's codes/.

    The sign codes: MAP@ALL, precision@k at :data:`P_AT_K`, precision within Hamming radius
    2 and the PR curve over radii. With ``relaxed``: MAP and precision@k of the relaxed codes
    (``*_embedding.npy``) ranked by Euclidean distance.
    """
    arrays = {
        name: np.load(os.path.join(run_dir, "codes", name + ".npy"))
        for name in (
            "query_codes",
            "query_labels",
            "database_codes",
            "database_labels",
            "query_embedding",
            "database_embedding",
        )
    }
    query_labels, database_labels = arrays["query_labels"], arrays["database_labels"]
    signs = evaluation.evaluate_codes(
        arrays["query_codes"],
        query_labels,
        arrays["database_codes"],
        database_labels,
        metrics=["map", evaluation.PrecisionRecallAtK(P_AT_K), "p@r2", "pr"],
    )
    report = None
    if relaxed:
        report = evaluation.evaluate_codes(
            arrays["query_embedding"],
            query_labels,
            arrays["database_embedding"],
            database_labels,
            metrics=["map", evaluation.PrecisionRecallAtK(P_AT_K)],
            distance="euclidean",
        )
    return signs, report, code_statistics(arrays["database_codes"], arrays["database_embedding"])


def precision_at(report, k):
    return report["p@k"]["precision"][report["p@k"]["k"].index(k)]


def mean_cell(values, digits=1, missing="–"):
    """One value, or the mean ± sample standard deviation of several; ``missing`` for none."""
    if not values:
        return missing
    if len(values) == 1:
        return f"{values[0]:,.{digits}f}"
    return f"{np.mean(values):,.{digits}f} ± {np.std(values, ddof=1):,.{digits}f}"


def write_section(path, begin, end, heading, section):
    """Replaces the text between ``begin`` and ``end`` in ``path`` with ``section`` (which
    holds both markers), or appends ``heading`` and the section."""
    text = open(path).read() if os.path.isfile(path) else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text += f"\n{heading}\n\n{section}\n"
    with open(path, "w") as f:
        f.write(text)


def draw_fig5(out_dir, bits, series, suffix="", title="CIFAR-10"):
    """The paper's Fig. 5: :data:`FIGURES` as ``<name><suffix>.png`` in ``out_dir``.

    Args:
        bits: the code lengths, ascending; the last is the P@k and PR figures' length.
        series: one curve each: ``(label, {bits: [reports over seeds]}, matplotlib style,
            hamming)``; ``hamming`` False for real-valued codes (no Hamming ball, no PR over
            radii).

    Returns:
        The paths written.
    """
    longest = bits[-1]

    def mean(reports, key, field):
        return np.mean([r[key][field] for r in reports], axis=0)

    paths = []
    for name in FIGURES:
        figure, axes = plots.new_figure()
        for label, reports, style, hamming in series:
            if not hamming and name in ("precision_radius2_vs_bits", "pr_curve_48bits"):
                continue
            if name.endswith("_vs_bits"):
                have = [b for b in bits if reports.get(b)]
                if name == "precision_radius2_vs_bits":
                    values = [np.mean([r["p@r2"]["precision"] for r in reports[b]]) for b in have]
                    ylabel = "precision (Hamming radius 2)"
                else:
                    values = [np.mean([precision_at(r, 500) for r in reports[b]]) for b in have]
                    ylabel = "precision@500"
                if have:
                    axes.plot(have, values, marker="o", label=label, **style)
                axes.set(xlabel="number of bits", ylabel=ylabel, xticks=bits, ylim=(0, 1.02))
            elif reports.get(longest):
                at = reports[longest]
                if name == "precision_at_k_48bits":
                    axes.plot(
                        at[0]["p@k"]["k"],
                        mean(at, "p@k", "precision"),
                        marker=".",
                        label=label,
                        **style,
                    )
                    axes.set(xlabel="k (top items returned)", ylabel="precision@k", ylim=(0, 1.02))
                else:
                    axes.plot(
                        mean(at, "pr", "recall"),
                        mean(at, "pr", "precision"),
                        marker=".",
                        label=label,
                        **style,
                    )
                    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        heading = {
            "precision_radius2_vs_bits": "Precision within Hamming radius 2",
            "precision_at_500_vs_bits": "Precision@500",
            "precision_at_k_48bits": f"Precision@k, {longest} bits",
            "pr_curve_48bits": f"Precision-recall over Hamming radii, {longest} bits",
        }[name]
        paths.append(
            plots.save_figure(figure, axes, out_dir, f"{name}{suffix}.png", f"{title}: {heading}")
        )
    return paths
