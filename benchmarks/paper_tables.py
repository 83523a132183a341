"""The LSDH paper's tables and figures redone: every method on one pretrained backbone (issue 19).

Every row is a method trained by tfhash's own command, one ``python -m tfhash.train`` process
per run, on the same data (``../shared/data/cifar10`` under the LSDH protocol: 10,000 queries,
5,000 training images of which 500 validate, the database everything but the queries), the
same backbone (ImageNet-pretrained EfficientNet-Lite0 at 160 px, frozen:
``configs/cifar10_pretrained_base.cfg``, its features cached once in runs/cache/features; with
``--finetuned`` its last 2 blocks train too: ``configs/cifar10_finetuned_base.cfg``) and the
same evaluator. The shallow methods (LSH, SH, ITQ, KSH, SDH) fit on the frozen backbone's
cached features, in both cases. Per-method flags are :data:`METHOD_FLAGS`, nothing else.

Parts (``--only``):

* ``table1``: MAP@ALL of every method at 12/24/32/48 bits, 3 seeds at 48 bits (mean ± std);
  precision@500 and within Hamming radius 2 beside it; the paper's Table I.
* ``table5``: LSDH, LSDH-C, LSDH-L1, LSDH-L1-C ("-C": the relaxed codes, ``codes/*_embedding
  .npy``, ranked by Euclidean distance).
* ``fig5``: P@r≤2 and P@500 against bits, P@k and PR at 48 bits, one facet of methods a PNG.
* ``fig11``: the metric-learning losses (triplet, lifted, quadruplet, angular) against LSDH.
* ``fig12``: LSDH's MAP at 12 bits over λ × μ, chosen on validation MAP (the best val_map of
  the run's history.csv); the query MAP beside it, never used to choose.
* ``miml``: the MIML photos (``../shared/data/miml``, its own list split, through
  ``benchmarks/miml_lists.py``): MAP, NDCG@100 and ACG@100 with shared and Jaccard gains.

Each run's directory is ``--runs_dir/<run>`` with ``<run>.log`` and ``<run>.wall_seconds``
beside it. A scored run leaves ``--out_dir/records/<run>.json`` holding its command; it is
skipped while the command is the same. Otherwise tfhash.train is asked again, and it resumes the run,
extends it or refuses a directory made with other settings: that error stops this script.
The report (``benchmarks/RESULTS.md`` between the ``paper-tables`` markers, PNGs in
``--out_dir``) always covers the whole table and marks what is not finished as missing.

Time on a 2-core CPU (measured, benchmarks/RESULTS.md): a frozen head run alone takes about a
minute and a shallow fit 20-40 s, scoring included; with ``--epochs=8`` all 142 runs (84 deep
and 30 shallow for the tables, 9 for Fig. 12, 19 on MIML) took 98 minutes for the CIFAR-10 part
plus 6 for MIML, with two runners on disjoint ``--methods`` sharing the cores (a run is one
record, so runners on different methods never collide; two on the same run would). A partial
run (``--only``, ``--methods``, ``--bits``, ``--seeds``, ``--epochs``) is the way through it in
pieces; the report covers everything finished.

    python benchmarks/paper_tables.py                                 # everything
    python benchmarks/paper_tables.py --only=table1 --methods=itq,lsh --bits=12
    python benchmarks/paper_tables.py --report_only                   # redraw from the JSONs
"""

import argparse
import csv
import dataclasses
import json
import os
import sys

import numpy as np

# The working tree's tfhash, and benchmarks/_tables.py, whatever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfhash import methods  # noqa: E402

from benchmarks._tables import (  # noqa: E402
    ROOT,
    draw_fig5,
    machine,
    mean_cell,
    precision_at,
    run_logged,
    score,
    write_section,
)

PARTS = ("table1", "table5", "fig5", "fig11", "fig12", "miml")
BITS = (12, 24, 32, 48)
SEEDS = 3  # at SEEDS_AT bits; the other lengths are seed 0
SEEDS_AT = 48
BASE = {False: "configs/cifar10_pretrained_base.cfg", True: "configs/cifar10_finetuned_base.cfg"}
DEEP = [m for m, spec in methods.REGISTRY.items() if spec.kind == "keras"]
SHALLOW = [m for m, spec in methods.REGISTRY.items() if spec.kind == "shallow"]
# Per-method flags on top of the base config, as the methods' CIFAR-10 configs set them: SSDH's
# semi-supervised batch of 8 classes x 8 labelled + 64 unlabelled (the protocol's other 45,500
# database images; configs/cifar10_ssdh_pretrained.cfg). The others at their losses' defaults
# (the ranking losses' margin is K/2 there): LCDSH's λ = 3 and DMSSPH's λ = 0.1 in their configs
# are those defaults, and quadruplet_chen's 64 tuples per anchor there match cifar10_base.cfg's
# LSDH and triplet, which on the pretrained configs take the default 128, so it does too.
METHOD_FLAGS = {"ssdh": {"images_per_class": 8, "labelled_ratio": 0.5}}
# MIML: miml_lists.py's label-balanced batch of 5 labels x 8 = 40 (the base config's batch
# flags are dropped); SSDH: the official batch of 128, 40 labelled + 88 unlabelled.
# SDH's 1,000 anchors need 1,000 training images, and MIML trains on 900: 300, KSH's default.
MIML_FLAGS = {
    "ssdh": {"batch_size": 128, "labelled_ratio": 0.3125},
    "sdh": {"shallow_params": "anchors=300"},
}
MIML_DROPPED = ("dataset", "data_dir", "protocol", "batch_size", "images_per_class")
MIML_BITS = 12
MIML_METRICS = ("map", "ndcg@100:shared", "ndcg@100:jaccard", "acg@100:shared", "acg@100:jaccard")
LAMBDAS, MUS = (0.2, 0.8, 1.6), (0.0, 0.25, 0.75)  # Fig. 12: quantization × isometric weight
GRID_BITS = 12
FIG11 = ["lsdh", "triplet", "lifted", "quadruplet_chen", "angular"]
LABELS = {
    "lsdh": "LSDH",
    "lsdh_l1": "LSDH-L1",
    "triplet": "Triplet",
    "cnnh": "CNNH",
    "dsh": "DSH",
    "hashnet": "HashNet",
    "dhn": "DHN",
    "lifted": "Lifted structured",
    "quadruplet_chen": "Quadruplet (Chen)",
    "angular": "Angular",
    "dnnh": "DNNH",
    "lcdsh": "LCDSH",
    "dmssph": "DMSSPH",
    "ssdh": "SSDH",
    "lsh": "LSH",
    "sh": "SH",
    "itq": "ITQ",
    "ksh": "KSH",
    "sdh": "SDH",
}
# Fig. 5's facets, LSDH in each for reference; a method in none goes to a facet "other".
FACETS = {
    "ranking": [
        "lsdh",
        "lsdh_l1",
        "triplet",
        "lifted",
        "quadruplet_chen",
        "angular",
        "dnnh",
        "ssdh",
    ],
    "pairwise": ["lsdh", "dsh", "dhn", "hashnet", "lcdsh", "dmssph", "cnnh"],
    "shallow": ["lsdh", *SHALLOW],
}
# ../shared/research/methods.md part D: the paper's CIFAR-10 MAP at 12/24/32/48 bits (VGG-16
# fine-tuned at 224 px; shallow rows on 512-d GIST, "-CNN" rows on VGG-16 features) and where
# each row came from (D4: several rows equal earlier papers' under their own protocols).
PAPER = {
    "lsdh": ((0.746, 0.752, 0.779, 0.782), "LSDH's run"),
    "lsdh_l1": ((0.722, 0.738, 0.766, 0.771), "LSDH's run"),
    "hashnet": ((0.668, 0.737, 0.755, 0.766), "LSDH's run"),
    "dhn": ((0.620, 0.633, 0.644, 0.657), "LSDH's (not the DHN paper's 0.555-0.621)"),
    "dsh": ((0.601, 0.629, 0.662, 0.689), 'LSDH\'s run ("DSP")'),
    "dnnh": ((0.552, 0.566, 0.558, 0.581), "copied: DNNH paper, 100 queries/class"),
    "cnnh": ((0.465, 0.521, 0.521, 0.532), "copied: CNNH paper's CNNH+ row"),
    "ksh": (
        (0.470, 0.524, 0.539, 0.547),
        "KSH-CNN, VGG-16 features (GIST row, copied from DNNH paper: 0.303-0.356)",
    ),
    "sdh": ((0.280, 0.550, 0.567, 0.569), "SDH-CNN, VGG-16 features (GIST: 0.203-0.351)"),
    "sh": ((0.131, 0.135, 0.133, 0.130), "GIST, copied: DNNH paper"),
    "itq": ((0.162, 0.169, 0.172, 0.175), "GIST, copied: DNNH paper"),
    "lsh": ((0.121, 0.126, 0.120, 0.120), "GIST, copied: DNNH paper"),
}
PAPER_RELAXED = {"lsdh": (0.753, 0.762, 0.769, 0.765), "lsdh_l1": (0.749, 0.760, 0.767, 0.761)}
# Fig. 11: LSDH's lead in MAP points, mean of 10 runs over the code lengths, CIFAR-10.
PAPER_FIG11 = {"lifted": 5.21, "quadruplet_chen": 3.30, "angular": 1.95}
# The nearest the paper has to a multi-label table: NUS-WIDE, MAP@5000 at 12 bits (SH's "0.33"
# is read as 0.433; the DHN, DNNH, CNNH, KSH, ITQ, SH, LSH rows are copied from DHN/DNNH).
PAPER_NUSWIDE_12 = {
    "lsdh": 0.813,
    "lsdh_l1": 0.800,
    "hashnet": 0.782,
    "dhn": 0.708,
    "dsh": 0.709,
    "dnnh": 0.674,
    "cnnh": 0.611,
    "ksh": 0.556,
    "sdh": 0.530,
    "sh": 0.433,
    "itq": 0.452,
    "lsh": 0.403,
}
MISSING = "missing"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: its part of the report, method, code length, seed and extra flags."""

    part: str  # "table" (Table I, Table V, Fig. 5, Fig. 11), "grid" (Fig. 12) or "miml"
    method: str
    bits: int
    seed: int = 0
    extra: tuple = ()  # ((flag, value), ...)

    @property
    def name(self):
        short = {"quantization_weight": "lambda", "isometric_weight": "mu"}
        suffix = "".join(f"_{short.get(k, k)}{v:g}" for k, v in self.extra)
        prefix = "miml_" if self.part == "miml" else ""
        return f"{prefix}{self.method}_{self.bits}bits_seed{self.seed}{suffix}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"Parts to train now, comma-separated: {', '.join(PARTS)} (the "
        "report always covers every part).",
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEEP + SHALLOW),
        help="Methods to train now (registry names); default: all.",
    )
    parser.add_argument("--bits", default=",".join(map(str, BITS)), help="Code lengths.")
    parser.add_argument(
        "--seeds",
        type=int,
        default=SEEDS,
        help=f"Seeds of the {SEEDS_AT}-bit runs (the others are seed 0).",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="Epochs of every deep run; default: the base config's (15 of 100 steps).",
    )
    parser.add_argument(
        "--finetuned",
        action="store_true",
        help=f"Deep rows partially fine-tuned ({BASE[True]}) instead of "
        f"frozen ({BASE[False]}); the shallow rows stay on frozen "
        "features.",
    )
    parser.add_argument(
        "--runs_dir",
        default=None,
        help="Run directories and their logs; default: runs/paper_tables "
        "(runs/paper_tables_finetuned).",
    )
    parser.add_argument(
        "--out_dir",
        default=None,
        help="The JSON of each scored run (records/) and the PNGs; default: "
        "benchmarks/paper_tables (benchmarks/paper_tables/finetuned).",
    )
    parser.add_argument(
        "--results",
        default=os.path.join(ROOT, "benchmarks", "RESULTS.md"),
        help="Markdown file whose paper-tables section is (re)written.",
    )
    parser.add_argument(
        "--miml_dir",
        default=os.path.join(ROOT, "..", "shared", "data", "miml"),
        help="The MIML list files (all.txt, train.txt, test.txt, database.txt).",
    )
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="Train nothing: write the report from the scored runs' JSONs.",
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.only = [p for p in args.only.split(",") if p]
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [p for p in args.only if p not in PARTS] + [
        m for m in args.methods if m not in methods.REGISTRY
    ]
    if unknown:
        parser.error(
            f"unknown part or method {', '.join(unknown)}; parts: {', '.join(PARTS)}; "
            f"methods: {', '.join(methods.REGISTRY)}"
        )
    try:
        args.bits = sorted(int(b) for b in args.bits.split(","))
    except ValueError:
        parser.error(f"--bits must be comma-separated integers, got {args.bits!r}")
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds and --epochs must be at least 1")
    tail = "_finetuned" if args.finetuned else ""
    args.runs_dir = args.runs_dir or os.path.join(ROOT, "runs", "paper_tables" + tail)
    args.out_dir = args.out_dir or os.path.join(
        ROOT, "benchmarks", "paper_tables", *(["finetuned"] if args.finetuned else [])
    )
    return args


# ---------------------------------------------------------------------------------------------
# The runs.


def table_runs(method_names, bits, seeds):
    """Seed 0 at every length, then the extra seeds at SEEDS_AT bits."""
    runs = [Run("table", m, b) for b in bits for m in method_names]
    return runs + [
        Run("table", m, SEEDS_AT, s)
        for s in range(1, seeds)
        for m in method_names
        if SEEDS_AT in bits
    ]


def planned_runs(parts, method_names, bits, seeds):
    """The runs the parts need, in order, once each."""
    wanted = {
        "table1": DEEP + SHALLOW,
        "fig5": DEEP + SHALLOW,
        "table5": ["lsdh", "lsdh_l1"],
        "fig11": FIG11,
    }
    runs = []
    for part in parts:
        if part in wanted:
            runs += table_runs([m for m in wanted[part] if m in method_names], bits, seeds)
        elif part == "fig12" and "lsdh" in method_names and GRID_BITS in bits:
            runs += [
                Run(
                    "grid",
                    "lsdh",
                    GRID_BITS,
                    0,
                    (("quantization_weight", lam), ("isometric_weight", mu)),
                )
                for lam in LAMBDAS
                for mu in MUS
            ]
        elif part == "miml" and MIML_BITS in bits:
            runs += [Run("miml", m, MIML_BITS) for m in DEEP + SHALLOW if m in method_names]
    return list(dict.fromkeys(runs))


def flagfile_settings(path):
    """The ``name: value`` settings of a flagfile (nested --flagfile lines expanded; a bare
    ``--flag`` is ``true``)."""
    settings = {}
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("--"):
                continue
            name, equals, value = line[2:].partition("=")
            if name == "flagfile":
                settings.update(flagfile_settings(value))
            else:
                settings[name] = value if equals else "true"
    return settings


def flags_of(run):
    """The method's flags (:data:`METHOD_FLAGS`, :data:`MIML_FLAGS`) and the run's extra ones."""
    flags = dict(METHOD_FLAGS.get(run.method, {}))
    if run.part == "miml":
        flags.update(MIML_FLAGS.get(run.method, {}))
    flags.update(run.extra)
    return [f"--{k}={flag_value(v)}" for k, v in flags.items()]


def flag_value(value):
    """``value`` as a flag's text: a float without trailing zeros."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def command(args, run):
    """The run's command after ``python`` (paths relative to the repository root)."""
    deep = methods.get(run.method).kind == "keras"
    run_dir = os.path.relpath(os.path.join(args.runs_dir, run.name), ROOT)
    base = BASE[args.finetuned and deep]
    epochs = [f"--epochs={args.epochs}"] if deep and args.epochs else []
    common = [
        f"--method={run.method}",
        f"--bits={run.bits}",
        f"--seed={run.seed}",
        *flags_of(run),
        *epochs,
        f"--run_dir={run_dir}",
    ]
    if run.part != "miml":
        return ["-m", "tfhash.train", f"--flagfile={base}", *common]
    settings = {k: v for k, v in flagfile_settings(base).items() if k not in MIML_DROPPED}
    return [
        "benchmarks/miml_lists.py",
        f"--methods={run.method}",
        f"--out={os.path.relpath(os.path.join(args.runs_dir, 'miml'), ROOT)}",
        f"--data_dir={os.path.relpath(args.miml_dir, ROOT)}",
        *[f"--{k}={v}" for k, v in settings.items()],
        *common,
    ]


def record_path(args, run):
    return os.path.join(args.out_dir, "records", run.name + ".json")


def best_val_map(run_dir):
    """The best validation MAP in the run's history.csv (None if it was never validated)."""
    with open(os.path.join(run_dir, "history.csv")) as f:
        values = [float(row["val_map"]) for row in csv.DictReader(f) if row.get("val_map")]
    return max(values) if values else None


def score_run(run, run_dir):
    """What the report needs of a finished run."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    out = {"train_seconds": metrics["run"]["train_seconds"]}
    if run.part == "table":
        signs, relaxed, statistics = score(run_dir, relaxed=run.method in PAPER_RELAXED)
        out.update(signs=signs, relaxed=relaxed, codes=statistics)
    elif run.part == "grid":
        out.update(map=metrics["map"], val_map=best_val_map(run_dir))
    else:
        out.update({m: metrics[m] for m in MIML_METRICS})
    return out


def collect(args, runs, train):
    """``{run: record}`` of the runs scored with their current command; with ``train``, those
    not yet scored are trained (or resumed, or refused by tfhash.train) and scored first."""
    records = {}
    for i, run in enumerate(runs, 1):
        path, cmd = record_path(args, run), command(args, run)
        if os.path.isfile(path):
            with open(path) as f:
                record = json.load(f)
            if record["command"] == cmd:
                records[run] = record
                continue
        if not train:
            continue
        print(f"[{i}/{len(runs)}] {run.name}: python {' '.join(cmd)}", flush=True)
        run_dir = os.path.join(args.runs_dir, run.name)
        wall = run_logged([sys.executable, *cmd], run_dir)
        record = {
            "name": run.name,
            "command": cmd,
            "wall_seconds": wall,
            "machine": machine(),
            **score_run(run, run_dir),
        }
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
        records[run] = record
        print(f"[{i}/{len(runs)}] {run.name}: {wall / 60:.1f} min", flush=True)
    return records


# ---------------------------------------------------------------------------------------------
# The report.


def report_bits(args):
    return sorted(set(BITS) | set(args.bits))


def report_runs(args):
    return planned_runs(PARTS, DEEP + SHALLOW, report_bits(args), max(SEEDS, args.seeds))


def reports_of(records, method, bits, part="signs"):
    return [
        r[part]
        for run, r in sorted(records.items(), key=lambda item: item[0].seed)
        if run.part == "table"
        and run.method == method
        and run.bits == bits
        and r.get(part) is not None
    ]


def seeds_cell(values, planned, digits=3):
    """The mean ± std, saying how many of the planned seeds it has; ``missing`` for none."""
    text = mean_cell(values, digits, MISSING)
    return text + (f" ({len(values)} of {planned} seeds)" if 0 < len(values) < planned else "")


def measure_rows(args, records, method_names, value, part="signs", label=None, digits=3):
    """One markdown row per method: ``value(report)`` at each code length."""
    bits, seeds = report_bits(args), max(SEEDS, args.seeds)
    rows = []
    for m in method_names:
        cells = [
            seeds_cell(
                [value(r) for r in reports_of(records, m, b, part)],
                seeds if b == SEEDS_AT else 1,
                digits,
            )
            for b in bits
        ]
        rows.append([(label or LABELS.get)(m, m), *cells])
    return rows


def table(header, rows):
    return [
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
        *["| " + " | ".join(map(str, row)) + " |" for row in rows],
        "",
    ]


def paper_cells(values):
    return " / ".join(f"{v:.3f}" for v in values) if values else "–"


def bit_header(args, first="Method"):
    seeds = max(SEEDS, args.seeds)
    return [
        first,
        *[
            f"{b} bits" + (f" ({seeds} seeds)" if b == SEEDS_AT and seeds > 1 else "")
            for b in report_bits(args)
        ],
    ]


def mean_map(records, method, bits):
    maps = [r["map"] for r in reports_of(records, method, bits)]
    return np.mean(maps) if maps else None


def ordering(records, bits):
    """A sentence: the methods by MAP at ``bits``, and where LSDH is not first."""
    scored = sorted(
        (
            (mean_map(records, m, bits), m)
            for m in DEEP + SHALLOW
            if mean_map(records, m, bits) is not None
        ),
        reverse=True,
    )
    if not scored:
        return f"No run at {bits} bits has finished yet."
    text = (
        f"Ordering by MAP at {bits} bits: "
        + " > ".join(f"{LABELS.get(m, m)} {v:.3f}" for v, m in scored)
        + "."
    )
    lsdh = mean_map(records, "lsdh", bits)
    if lsdh is not None:
        ahead = [LABELS.get(m, m) for v, m in scored if v > lsdh]
        text += (
            " LSDH is first."
            if not ahead
            else f" LSDH does not win: {', '.join(ahead)} {'is' if len(ahead) == 1 else 'are'}"
            " ahead of it."
        )
    return text


def grid_cells(records):
    """``{(λ, μ): record}`` of the finished Fig. 12 runs."""
    return {tuple(v for _, v in run.extra): r for run, r in records.items() if run.part == "grid"}


def chosen_cell(cells):
    """The (λ, μ) with the highest validation MAP (never the query MAP)."""
    valid = {key: r["val_map"] for key, r in cells.items() if r.get("val_map") is not None}
    return max(valid, key=valid.get) if valid else None


def markdown(args, records, runs, figures):
    """The section of RESULTS.md (between its markers)."""
    begin, end = markers(args)
    bits, seeds = report_bits(args), max(SEEDS, args.seeds)
    finished = [r for r in runs if r in records]
    missing = [r.name for r in runs if r not in records]
    minutes = sum(r["wall_seconds"] for r in records.values()) / 60
    any_machine = next((r["machine"] for r in records.values()), "–")
    lines = [
        begin,
        "",
        f"Command: `python benchmarks/paper_tables.py{' --finetuned' if args.finetuned else ''}"
        f"` (this report drawn by `{' '.join(['python benchmarks/paper_tables.py', *args.argv])}`"
        f"); each run's own `python -m tfhash.train` command is in "
        f"`{os.path.relpath(args.out_dir, ROOT)}/records/<run>.json`, its output in "
        f"`<runs_dir>/<run>.log`. Machine: {any_machine}. Deep rows: `{BASE[args.finetuned]}` "
        "(EfficientNet-Lite0, ImageNet weights, 160 px, "
        + ("its last 2 blocks fine-tuned with the head" if args.finetuned else "frozen")
        + ") with `--method`, `--bits`, `--seed` and the per-method flags of "
        "`METHOD_FLAGS` (ranking losses at their default m = K/2; SSDH 8 classes x 8 "
        "labelled + 64 unlabelled per batch, from the protocol's 45,500 unlabelled "
        "database images); "
        f"shallow rows: `{BASE[False]}`'s cached features. Protocol `cifar10`: 10,000 "
        "queries, 4,500 training + 500 validation images, database 50,000; MAP@ALL with "
        f"tied distances averaged. {seeds} seeds at {SEEDS_AT} bits (mean ± sample std), "
        f"seed 0 elsewhere. Finished: {len(finished)} of {len(runs)} runs, "
        f"{minutes:.0f} minutes of wall-clock.",
        "",
    ]

    lines += ["**Table I: MAP@ALL**", ""]
    rows = measure_rows(args, records, DEEP + SHALLOW, lambda r: r["map"])
    lines += table(
        bit_header(args) + ["paper 12 / 24 / 32 / 48", "the paper's row"],
        [
            row
            + [paper_cells(PAPER.get(m, ((), ""))[0]), PAPER.get(m, ((), "not in the paper"))[1]]
            for row, m in zip(rows, DEEP + SHALLOW)
        ],
    )
    lines += [ordering(records, SEEDS_AT), ""]
    for title, value in [
        ("Precision@500", lambda r: precision_at(r, 500)),
        (
            "Precision within Hamming radius 2 (an empty ball scores 0)",
            lambda r: r["p@r2"]["precision"],
        ),
    ]:
        lines += [f"**{title}** (the paper: figures only)", ""]
        lines += table(bit_header(args), measure_rows(args, records, DEEP + SHALLOW, value))

    lines += [
        "**Table V: sign codes against relaxed codes (-C: Euclidean on the tanh outputs)**",
        "",
    ]
    table5 = []
    for m in PAPER_RELAXED:
        table5 += [
            measure_rows(args, records, [m], lambda r: r["map"])[0] + [paper_cells(PAPER[m][0])],
            measure_rows(
                args, records, [m], lambda r: r["map"], "relaxed", lambda n, _: LABELS[n] + "-C"
            )[0]
            + [paper_cells(PAPER_RELAXED[m])],
        ]
    lines += table(bit_header(args) + ["paper 12 / 24 / 32 / 48"], table5)

    lines += ["**Fig. 11: the metric-learning losses against LSDH (MAP)**", ""]
    fig11 = []
    for row, m in zip(measure_rows(args, records, FIG11, lambda r: r["map"]), FIG11):
        gaps = [
            100 * (mean_map(records, "lsdh", b) - mean_map(records, m, b))
            for b in bits
            if mean_map(records, "lsdh", b) is not None and mean_map(records, m, b) is not None
        ]
        lead = (
            f"{np.mean(gaps):+.2f}"
            + (f" ({len(gaps)} of {len(bits)} lengths)" if len(gaps) < len(bits) else "")
            if gaps
            else MISSING
        )
        fig11.append(
            row
            + ["–" if m == "lsdh" else lead, f"{PAPER_FIG11[m]:+.2f}" if m in PAPER_FIG11 else "–"]
        )
    lines += table(
        bit_header(args)
        + ["LSDH ahead by (MAP points, mean over lengths)", "paper (mean of 10 runs)"],
        fig11,
    )

    cells = grid_cells(records)
    chosen = chosen_cell(cells)
    lines += [
        f"**Fig. 12: LSDH at {GRID_BITS} bits over λ (quantization_weight) x μ "
        "(isometric_weight)**: validation MAP (best epoch; chooses) | query MAP (shown, "
        "never used to choose)",
        "",
    ]
    grid = []
    for lam in LAMBDAS:
        row = [f"λ = {lam:g}"]
        for key in ("val_map", "map"):
            for mu in MUS:
                r = cells.get((lam, mu))
                text = MISSING if r is None or r[key] is None else f"{r[key]:.3f}"
                row.append(f"**{text}**" if (lam, mu) == chosen else text)
        grid.append(row)
    lines += table(
        ["", *[f"val μ = {mu:g}" for mu in MUS], *[f"query μ = {mu:g}" for mu in MUS]], grid
    )
    lines += [
        (
            "Chosen on validation: "
            + (
                f"λ = {chosen[0]:g}, μ = {chosen[1]:g}: query MAP {cells[chosen]['map']:.3f}"
                if chosen
                else "none yet"
            )
        )
        + "; the paper's λ = 0.8, μ = 0.25.",
        "",
    ]

    lines += [
        f"**Multi-label: MIML** (`{os.path.relpath(args.miml_dir, ROOT)}`, its list split: "
        f"1,000 training images of which 100 validate, 400 queries, 1,600 database; "
        f"{MIML_BITS} bits, seed 0, the same backbone and head; relevance: shares a "
        "label; gains per docs/evaluation.md). The paper has no MIML table: beside it, "
        "its NUS-WIDE MAP@5000 at 12 bits, another data set.",
        "",
    ]
    miml = {run.method: r for run, r in records.items() if run.part == "miml"}
    lines += table(
        [
            "Method",
            "MAP",
            "NDCG@100 shared",
            "NDCG@100 Jaccard",
            "ACG@100 shared",
            "ACG@100 Jaccard",
            "wall (min)",
            "paper NUS-WIDE 12 bits",
        ],
        [
            [
                LABELS.get(m, m),
                *(
                    [f"{miml[m][k]:.4f}" for k in MIML_METRICS]
                    + [f"{miml[m]['wall_seconds'] / 60:.1f}"]
                    if m in miml
                    else [MISSING] * 6
                ),
                f"{PAPER_NUSWIDE_12[m]:.3f}" if m in PAPER_NUSWIDE_12 else "–",
            ]
            for m in DEEP + SHALLOW
        ],
    )

    lines += [
        "**Wall-clock per run** (minutes of the tfhash.train process: start-up, reading the "
        "cached features, training, encoding and its own scoring)",
        "",
    ]
    lines += table(
        bit_header(args),
        measure_rows(args, records, DEEP + SHALLOW, lambda r: r / 60, "wall_seconds", digits=1),
    )
    lines += [
        f"**The database codes at {SEEDS_AT} bits** (distinct codes of 50,000; bits "
        "with 99 % of one sign)",
        "",
    ]
    lines += table(
        ["Method", "distinct codes", "constant bits"],
        [
            [
                LABELS.get(m, m),
                *[
                    mean_cell([c[k] for c in reports_of(records, m, SEEDS_AT, "codes")], 0, MISSING)
                    for k in ("distinct_codes", "constant_bits")
                ],
            ]
            for m in DEEP + SHALLOW
        ],
    )

    lines += [
        "**Why ours differ from the paper.** The paper fine-tunes VGG-16 at 224 px with "
        'each method and runs the shallow methods on 512-d GIST (its "-CNN" rows on '
        "VGG-16 features); here every method shares one EfficientNet-Lite0 at 160 px, "
        + ("its last 2 blocks fine-tuned" if args.finetuned else "frozen, only the head training")
        + ", and the shallow methods fit on its 1280-d features, so they "
        "are comparable with the paper's -CNN rows, not its GIST rows. The paper's DNNH, "
        "CNNH (CNNH+), KSH, SH, ITQ and LSH rows are copied from earlier papers with 100 "
        "queries per class and other networks (methods.md D4); here every row is one "
        "protocol (10,000 queries, MAP@ALL with ties averaged), one evaluator and one "
        f"training budget ({trained_epochs(args, records)} epochs of 100 batches), not "
        "each paper's own schedule.",
        "",
    ]
    lines += [
        "Figures (Fig. 5 in facets, LSDH in each): "
        + ", ".join(
            f"[{name}]({os.path.relpath(path, os.path.dirname(os.path.abspath(args.results)))})"
            for name, path in figures
        )
        if figures
        else "Figures: none drawn (nothing finished).",
        "",
    ]
    if missing:
        lines += [
            f"**Missing** ({len(missing)} runs not finished, their cells say "
            f'"{MISSING}"): ' + ", ".join(missing),
            "",
        ]
    return "\n".join(lines + [end])


def trained_epochs(args, records):
    """The deep runs' epochs as their commands give them (e.g. "8"; "5-15" when they differ),
    so a --report_only report states what was trained, not this command's --epochs."""
    default = flagfile_settings(BASE[args.finetuned])["epochs"]
    found = set()
    for run, record in records.items():
        if methods.get(run.method).kind == "keras":
            given = [a.split("=", 1)[1] for a in record["command"] if a.startswith("--epochs=")]
            found.add(int(given[-1] if given else default))
    if not found:
        return args.epochs or default
    return str(min(found)) if len(found) == 1 else f"{min(found)}-{max(found)}"


def markers(args):
    tag = "paper-tables" + ("-finetuned" if args.finetuned else "")
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def draw(args, records):
    """The PNGs: Fig. 5 per facet, Fig. 11, Fig. 12; returns ``[(name, path)]``."""
    from tfhash.evaluation import plots

    os.makedirs(args.out_dir, exist_ok=True)
    bits, figures = report_bits(args), []
    facets = dict(FACETS)
    others = [m for m in DEEP + SHALLOW if not any(m in f for f in facets.values())]
    if others:
        facets["other"] = ["lsdh", *others]
    for facet, members in facets.items():
        series = [
            (
                LABELS.get(m, m),
                {b: reports_of(records, m, b) for b in bits},
                dict(color=f"C{i % 10}", linestyle="-" if i < 10 else "--"),
                True,
            )
            for i, m in enumerate(members)
        ]
        for path in draw_fig5(
            args.out_dir, bits, series, suffix=f"_{facet}", title=f"CIFAR-10 ({facet})"
        ):
            figures.append((os.path.basename(path)[:-4], path))
    figure, axes = plots.new_figure()
    for i, m in enumerate(FIG11):
        have = [b for b in bits if mean_map(records, m, b) is not None]
        axes.plot(
            have,
            [mean_map(records, m, b) for b in have],
            marker="o",
            label=LABELS[m],
            color=f"C{i}",
        )
    axes.set(xlabel="number of bits", ylabel="MAP@ALL", xticks=bits)
    path = plots.save_figure(
        figure,
        axes,
        args.out_dir,
        "fig11_metric_learning.png",
        "CIFAR-10: metric-learning losses against LSDH",
    )
    figures.append(("fig11_metric_learning", path))
    figures.append(("fig12_lambda_mu", draw_grid(args, grid_cells(records))))
    return figures


def draw_grid(args, cells):
    """Fig. 12: validation and query MAP over λ × μ, side by side, the chosen cell boxed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    chosen = chosen_cell(cells)
    for axes, key, title in zip(
        figure.subplots(1, 2),
        ("val_map", "map"),
        ("validation MAP (chooses)", "query MAP (never chooses)"),
    ):
        values = np.array(
            [
                [
                    np.nan
                    if (lam, mu) not in cells or cells[lam, mu][key] is None
                    else cells[lam, mu][key]
                    for mu in MUS
                ]
                for lam in LAMBDAS
            ]
        )
        image = axes.imshow(values, cmap="viridis", origin="lower")
        for (i, j), v in np.ndenumerate(values):
            axes.text(
                j,
                i,
                MISSING if np.isnan(v) else f"{v:.3f}",
                ha="center",
                va="center",
                color="w",
                fontweight="bold" if (LAMBDAS[i], MUS[j]) == chosen else None,
            )
        axes.set(
            xticks=range(len(MUS)),
            xticklabels=[f"{mu:g}" for mu in MUS],
            yticks=range(len(LAMBDAS)),
            yticklabels=[f"{lam:g}" for lam in LAMBDAS],
            xlabel="μ (isometric_weight)",
            ylabel="λ (quantization_weight)",
            title=f"LSDH {GRID_BITS} bits: {title}",
        )
        figure.colorbar(image, ax=axes)
    path = os.path.join(args.out_dir, "fig12_lambda_mu.png")
    figure.savefig(path, dpi=120)
    return path


def print_tables(section):
    """The tables of the section, as they will read in RESULTS.md."""
    print("\n".join(line for line in section.splitlines() if not line.startswith("<!--")))


def main(argv=None):
    args = parse_args(argv)
    plan = planned_runs(args.only, args.methods, args.bits, args.seeds)
    if not args.report_only:
        collect(args, plan, train=True)
    runs = report_runs(args)
    records = collect(args, runs, train=False)
    figures = draw(args, records) if records else []
    section = markdown(args, records, runs, figures)
    begin, end = markers(args)
    write_section(
        args.results,
        begin,
        end,
        "## The LSDH paper's tables on one pretrained "
        f"backbone{', partially fine-tuned' if args.finetuned else ''} "
        "(`benchmarks/paper_tables.py`)",
        section,
    )
    print_tables(section)
    print(
        f"report: {args.results}; figures: {args.out_dir}; "
        f"{sum(r in records for r in runs)} of {len(runs)} runs finished"
    )


if __name__ == "__main__":
    main()
