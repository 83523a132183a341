"""The LSDH paper's CIFAR-10 Table I and Fig. 5, redone on real images on this machine.

Rows: LSDH (λ = 0.8, μ = 0.25), LSDH-L1 (μ = 0), LSDH-C (the LSDH runs ranked by
their relaxed codes h in Euclidean distance instead of the signs), and the
triplet ranking baseline (Eq. 8's first two terms, same quantization), at 12,
24, 32 and 48 bits; at 48 bits three seeds, reported as mean ± standard
deviation. Every row trains with ``configs/cifar10_base.cfg`` (the small ResNet
from scratch, the cifar10 protocol: 1,000 queries per class, 500 training
images per class of which 10 % are held out to choose the best epoch, the
database is everything but the queries) and the same ``--epochs``.

Each run is one ``python -m tfhash.train`` process with its run directory under
``--runs_dir`` (beside it ``<run>.log``, and ``<run>.wall_seconds``: the
wall-clock time summed over attempts). A finished run is skipped when the
script is run again; an interrupted one resumes from its last epoch. After
training, each run is scored into one JSON in ``--out_dir``; at the end the
script writes the table into ``benchmarks/RESULTS.md`` (between the
``cifar10-table`` markers) and the Fig. 5 PNGs into ``--out_dir``.

    python benchmarks/cifar10_table.py                      # the whole table
    python benchmarks/cifar10_table.py --report_only        # redraw from the JSONs
"""

import argparse
import json
import os
import sys

# The working tree's tfhash, and benchmarks/_tables.py, whatever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._tables import (  # noqa: E402
    FIGURES,
    ROOT,
    draw_fig5,
    machine,
    mean_cell,
    precision_at,
    run_logged,
    score,
    write_section,
)

TRAINED = {"lsdh": "LSDH", "lsdh_l1": "LSDH-L1", "triplet": "Triplet"}
ROWS = ["LSDH", "LSDH-L1", "LSDH-C", "Triplet"]
# The paper's Table I (CIFAR-10, MAP, ImageNet-pretrained VGG-16), 12/24/32/48 bits.
PAPER = {"LSDH": (0.746, 0.752, 0.779, 0.782), "LSDH-L1": (0.722, 0.738, 0.766, 0.771)}
BEGIN, END = "<!-- cifar10-table:begin -->", "<!-- cifar10-table:end -->"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_dir",
        default=os.path.join(ROOT, "..", "shared", "data", "cifar10"),
        help="CIFAR-10 as an image folder: <dir>/{train,test}/<class>/*.jpg.",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=12,
        help="Training epochs of every run (12 fits the table in 150 minutes of a 2-core CPU).",
    )
    parser.add_argument("--bits", default="12,24,32,48", help="Code lengths.")
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="Seeds at the longest code length (the others use seed 0).",
    )
    parser.add_argument(
        "--runs_dir",
        default=os.path.join(ROOT, "runs", "cifar10_table"),
        help="Run directories (checkpoints, codes, logs); not committed.",
    )
    parser.add_argument(
        "--out_dir",
        default=os.path.join(ROOT, "benchmarks", "cifar10_table"),
        help="One JSON per finished run and the Fig. 5 PNGs.",
    )
    parser.add_argument(
        "--results",
        default=os.path.join(ROOT, "benchmarks", "RESULTS.md"),
        help="Markdown file whose cifar10-table section is (re)written.",
    )
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="Do not train: score the finished runs, write the table and figures.",
    )
    args = parser.parse_args()
    try:
        args.bits = sorted(int(b) for b in args.bits.split(","))
    except ValueError:
        parser.error(f"--bits must be comma-separated integers, got {args.bits!r}")
    if args.epochs < 1 or args.seeds < 1:
        parser.error("--epochs and --seeds must be at least 1")
    return args


def planned_runs(args):
    """(method, bits, seed): every code length at seed 0 first, then the extra seeds."""
    runs = [(m, b, 0) for b in args.bits for m in TRAINED]
    runs += [(m, args.bits[-1], s) for s in range(1, args.seeds) for m in TRAINED]
    return runs


def run_name(method, bits, seed):
    return f"{method}_{bits}bits_seed{seed}"


def train(args, method, bits, seed):
    """Trains one run in its own process (resuming it if it was interrupted); returns seconds."""
    run_dir = os.path.join(args.runs_dir, run_name(method, bits, seed))
    command = [
        sys.executable,
        "-m",
        "tfhash.train",
        f"--flagfile={os.path.join(ROOT, 'configs', 'cifar10_base.cfg')}",
        "--dataset=folder",
        f"--data_dir={args.data_dir}",
        f"--method={method}",
        f"--bits={bits}",
        f"--seed={seed}",
        f"--epochs={args.epochs}",
        f"--eval_every={max(1, args.epochs // 3)}",
        f"--run_dir={run_dir}",
        "--verbose=2",
    ]
    return run_logged(command, run_dir)


def run_table(args, train_missing=True):
    """Trains every planned run that has not finished (unless told not to) and scores it.

    A scored run leaves ``--out_dir/<run>.json`` and is skipped from then on.
    """
    os.makedirs(args.out_dir, exist_ok=True)
    runs = planned_runs(args)
    for i, (method, bits, seed) in enumerate(runs, 1):
        name = run_name(method, bits, seed)
        run_dir = os.path.join(args.runs_dir, name)
        out = os.path.join(args.out_dir, name + ".json")
        if os.path.isfile(out):
            with open(out) as f:
                epochs = json.load(f)["epochs"]
            if epochs != args.epochs:
                sys.exit(
                    f"error: {out} was trained for {epochs} epochs, not --epochs="
                    f"{args.epochs}; pass --epochs={epochs}, or new --runs_dir and --out_dir"
                )
            continue
        if not os.path.isfile(os.path.join(run_dir, "metrics.json")):
            if not train_missing:
                continue
            print(f"[{i}/{len(runs)}] {name}: training", flush=True)
            train(args, method, bits, seed)
        signs, relaxed, statistics = score(run_dir, relaxed=method == "lsdh")
        with open(os.path.join(run_dir, "metrics.json")) as f:
            train_seconds = json.load(f)["run"]["train_seconds"]
        with open(run_dir + ".wall_seconds") as f:
            wall_seconds = float(f.read())
        record = {
            "method": method,
            "bits": bits,
            "seed": seed,
            "epochs": args.epochs,
            "wall_seconds": wall_seconds,
            "train_seconds": train_seconds,
            "machine": machine(),
            "signs": signs,
            "relaxed": relaxed,
            "codes": statistics,
        }
        with open(out, "w") as f:
            json.dump(record, f, indent=1)
        print(
            f"[{i}/{len(runs)}] {name}: MAP {signs['map']:.4f}"
            + ("" if relaxed is None else f" (relaxed codes {relaxed['map']:.4f})")
            + f", {wall_seconds / 60:.1f} min",
            flush=True,
        )


# ---------------------------------------------------------------------------------------------
# The report.


def load_records(args):
    records = {}
    for method, bits, seed in planned_runs(args):
        path = os.path.join(args.out_dir, run_name(method, bits, seed) + ".json")
        if os.path.isfile(path):
            with open(path) as f:
                records[method, bits, seed] = json.load(f)
    return records


def row_reports(records, row, bits):
    """The reports of a table row at a code length, one per seed."""
    method = {v: k for k, v in TRAINED.items()}.get(row, "lsdh")
    part = "relaxed" if row == "LSDH-C" else "signs"
    return [r[part] for (m, b, _), r in sorted(records.items()) if m == method and b == bits]


# Each table: its title and the value of one report (None where the row has no such value).
MEASURES = [
    ("MAP@ALL (ties = average: the expected AP over all orders of tied items)", lambda r: r["map"]),
    ("Precision@500", lambda r: precision_at(r, 500)),
    (
        "Precision within Hamming radius 2 (a query with an empty ball scores 0)",
        lambda r: r["p@r2"]["precision"] if "p@r2" in r else None,
    ),
]


def cell(values):
    if values and values[0] is None:
        return "–"
    return mean_cell(values, 3)


def markdown(args, records):
    longest = args.bits[-1]
    seeds = len({s for (_, b, s) in records if b == longest})
    header = (
        "| Method | "
        + " | ".join(
            f"{b} bits" + (f" ({seeds} seeds)" if b == longest and seeds > 1 else "")
            for b in args.bits
        )
        + " |"
    )
    rule = "|---" * (len(args.bits) + 1) + "|"
    any_record = next(iter(records.values()))
    bits = ",".join(str(b) for b in args.bits)
    lines = [
        BEGIN,
        "",
        f"Command: `python benchmarks/cifar10_table.py --epochs={any_record['epochs']} "
        f"--bits={bits} --seeds={args.seeds}`. Machine: {any_record['machine']}. Every run: "
        "`configs/cifar10_base.cfg` (resnet_small from scratch, 32x32, SGD lr 0.01 cosine, "
        f"batch 128 = 8 classes x 16, margin K/2), {any_record['epochs']} epochs, best epoch "
        "by validation MAP on 500 held-out training images. Queries 10,000, database 50,000. "
        + (
            f"The {longest}-bit column is the mean ± standard deviation (n - 1) over seeds "
            f"0-{seeds - 1}; the other columns are seed 0. "
            if seeds > 1
            else "Seed 0. "
        )
        + "LSDH-C ranks the LSDH runs' relaxed codes by Euclidean distance, so it has no "
        "Hamming ball (–).",
        "",
    ]
    for title, value in MEASURES:
        lines += [f"**{title}**", "", header, rule]
        for row in ROWS:
            cells = [cell([value(r) for r in row_reports(records, row, b)]) for b in args.bits]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "**The paper's Table I** (MAP, CIFAR-10, ImageNet-pretrained VGG-16 at 224x224)",
        "",
        "| Method | 12 bits | 24 bits | 32 bits | 48 bits |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {row} | " + " | ".join(f"{v:.3f}" for v in values) + " |"
        for row, values in PAPER.items()
    ]
    lines += [
        "",
        "**Wall-clock per run** (training, encoding 60,000 images and scoring, minutes; "
        "LSDH-C reuses the LSDH runs)",
        "",
        header,
        rule,
    ]
    for method, row in TRAINED.items():
        cells = []
        for b in args.bits:
            minutes = [
                r["wall_seconds"] / 60
                for (m, bb, _), r in records.items()
                if m == method and bb == b
            ]
            cells.append(mean_cell(minutes))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"**The database codes at {longest} bits** (what the table's numbers are made of; "
        "a bit is constant when 99 % of the items have the same sign there, and 1 − h² is "
        "the tanh slope every gradient to the backbone is multiplied by)",
        "",
        "| Method | distinct codes of 50,000 | constant bits | mean 1 − h² |",
        "|---|---|---|---|",
    ]
    for method, row in TRAINED.items():
        stats = [
            r["codes"] for (m, b, _), r in sorted(records.items()) if m == method and b == longest
        ]
        lines.append(
            f"| {row} | "
            + " | ".join(
                mean_cell([s[key] for s in stats], digits)
                for key, digits in [("distinct_codes", 0), ("constant_bits", 1), ("tanh_slope", 4)]
            )
            + " |"
        )
    total = sum(r["wall_seconds"] for r in records.values()) / 60
    lines += [
        "",
        f"All {len(records)} runs: {total:.0f} minutes.",
        "",
        "Figures (the paper's Fig. 5): "
        + ", ".join(f"[{name}](cifar10_table/{name}.png)" for name in FIGURES),
        "",
        END,
    ]
    return "\n".join(lines)


def draw(args, records):
    """The paper's Fig. 5: four PNGs in --out_dir, one colour per row, LSDH-C dashed (it
    shares LSDH's training runs; no Hamming ball around its real-valued codes)."""
    draw_fig5(
        args.out_dir,
        args.bits,
        [
            (
                row,
                {b: row_reports(records, row, b) for b in args.bits},
                dict(color=f"C{i}", linestyle="--" if row == "LSDH-C" else "-"),
                row != "LSDH-C",
            )
            for i, row in enumerate(ROWS)
        ],
    )


def write_results(args, records):
    write_section(
        args.results,
        BEGIN,
        END,
        "## CIFAR-10: LSDH, its ablations and the triplet baseline (`benchmarks/cifar10_table.py`)",
        markdown(args, records),
    )


def main():
    args = parse_args()
    run_table(args, train_missing=not args.report_only)
    records = load_records(args)
    missing = len(planned_runs(args)) - len(records)
    if not records:
        sys.exit("error: no finished runs in --out_dir; run without --report_only first")
    if missing:
        print(f"{missing} runs are not finished; the table covers the {len(records)} that are")
    draw(args, records)
    write_results(args, records)
    print(f"table: {args.results}; figures: {args.out_dir}")


if __name__ == "__main__":
    main()
