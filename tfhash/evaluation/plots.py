"""Figures of evaluation reports: PR curve, precision@k, and metrics against code length.

matplotlib (a dependency of tfhash) is imported only here, and figures are
drawn on ``matplotlib.figure.Figure`` with the Agg canvas, so no GUI backend or global pyplot state is involved.
"""

import os
import re

from tfhash.errors import UsageError


def require_matplotlib():
    """Raises ``UsageError`` (with the fix) if matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "plots need matplotlib: pip install matplotlib, or turn plots off (`plots`=false)"
        ) from None


def new_figure():
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def save_figure(figure, axes, out_dir, filename, title):
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    path = os.path.join(out_dir, filename)
    figure.savefig(path, dpi=120)
    return path


# The figures of a report: save_plots's (the radius figures are precision_radius<r>_vs_bits.png)
# and evaluate's gallery.
FIGURE_FILES = ("pr_curve.png", "precision_at_k.png", "map_vs_bits.png", "gallery.png")


def is_figure_file(name):
    """Whether ``name`` is a file :func:`save_plots` writes."""
    return (
        name in FIGURE_FILES or re.fullmatch(r"precision_radius\d+_vs_bits\.png", name) is not None
    )


def _label(data):
    return f"{data['bits']} bits" if "bits" in data else f"{data['dimensions']} dimensions"


def _label_radii(axes, pr, most=8):
    """Writes the Hamming radius ``r`` beside its point of the curve, at most ``most`` of them
    (evenly spaced over the radii) so that long codes stay readable."""
    points = [
        (r, x, y)
        for r, x, y in zip(pr["radius"], pr["recall"], pr["precision"])
        if x is not None and y is not None
    ]
    step = max(1, -(-len(points) // most))
    for radius, recall, precision in points[::step]:
        axes.annotate(
            f"r={radius}",
            (recall, precision),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )


def save_plots(reports, out_dir):
    """Writes the figures the reports allow; returns their paths.

    * ``pr_curve.png``: precision against recall over Hamming radii (``pr``), each
      point labelled with its radius;
    * ``precision_at_k.png``: precision@k (``p@k``);
    and when there are several reports (codes of several lengths), the curves
    of the paper's Fig. 5:
    * ``precision_radius{r}_vs_bits.png``: hash-lookup precision (``p@r{r}``);
    * ``map_vs_bits.png``: every MAP entry against the number of bits.

    Args:
        reports: reports of :func:`~tfhash.evaluation.evaluate_codes`, one per
            code length (Hamming distance).
        out_dir: an existing directory.
    """
    paths = []
    labelled = [(_label(r["data"]), r) for r in reports]
    if all("pr" in r for r in reports):
        figure, axes = new_figure()
        for label, report in labelled:
            pr = report["pr"]
            axes.plot(pr["recall"], pr["precision"], marker=".", label=label)
            _label_radii(axes, pr)
        axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        paths.append(
            save_figure(
                figure, axes, out_dir, "pr_curve.png", "Precision-recall over Hamming radii"
            )
        )
    if all("p@k" in r for r in reports):
        figure, axes = new_figure()
        for label, report in labelled:
            axes.plot(report["p@k"]["k"], report["p@k"]["precision"], marker=".", label=label)
        axes.set(
            xscale="log", xlabel="k (top items returned)", ylabel="precision@k", ylim=(0, 1.02)
        )
        paths.append(save_figure(figure, axes, out_dir, "precision_at_k.png", "Precision@k"))
    if len(reports) < 2 or not all("bits" in r["data"] for r in reports):
        return paths
    bits = [r["data"]["bits"] for r in reports]
    radius_names = sorted(
        {n for n in reports[0] if n.startswith("p@r")}.intersection(*[set(r) for r in reports])
    )
    for name in radius_names:
        figure, axes = new_figure()
        axes.plot(bits, [r[name]["precision"] for r in reports], marker="o")
        axes.set(xlabel="number of bits", ylabel="precision", xticks=bits, ylim=(0, 1.02))
        radius = reports[0][name]["radius"]
        paths.append(
            save_figure(
                figure,
                axes,
                out_dir,
                f"precision_radius{radius}_vs_bits.png",
                f"Precision within Hamming radius {radius}",
            )
        )
    map_names = [n for n in reports[0] if n.startswith("map") and all(n in r for r in reports)]
    if map_names:
        figure, axes = new_figure()
        for name in map_names:
            axes.plot(bits, [r[name] for r in reports], marker="o", label=name.upper())
        axes.set(xlabel="number of bits", ylabel="MAP", xticks=bits, ylim=(0, 1.02))
        paths.append(
            save_figure(figure, axes, out_dir, "map_vs_bits.png", "MAP against code length")
        )
    return paths
