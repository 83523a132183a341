"""The fine-tuned table: every method fine-tuned end to end on CIFAR-10, beside the published figures.

    python benchmarks/finetuned_table.py [--only=lsdh,hashnet] [--protocols=cifar10-1] [--bits=48]
                                         [--learning_rates=1e-4,3e-4] [--trainable_blocks=8,12]
                                         [--quantization_weights=0.2] [--margins=12]
                                         [--seeds=0,1,2]
    python benchmarks/finetuned_table.py --report_only

Each run is ``python -m tfhash.train --flagfile=configs/cifar10_e2e_base.cfg`` with the method,
code length, protocol and learning rate (ImageNet EfficientNet-Lite0, its last blocks fine-tuned
on augmented images after a head warm-up; the config says why). Every method gets the same
budget and, with several ``--learning_rates`` (or ``--trainable_blocks``, or for a loss that has
them ``--quantization_weights``, λ, and ``--margins``, m), the same search: the setting with the
best *validation* MAP is reported, never one chosen on the queries. More
``--seeds`` (each its own split of the protocol, batches and initial weights) repeat a row at its
chosen setting: the report gives their mean and spread beside seed 0's figure, the one the search
chose on. The runs are the LSDH paper's protocol (``cifar10``: Table I) and DeepHash-pytorch's
(``cifar10-1`` for its DSH and LCDSH figures, ``deephash-cifar10`` for HashNet and DHN), each
scored with tfhash's conventions (ties averaged) and with DeepHash-pytorch's
(``--preset=deephash``: ties by index).

Resumable: a run directory that finished is reported, not retrained (``tfhash.train`` resumes an
interrupted one); each finished run leaves ``records/<run>.json`` (its command, wall-clock, the
load average before and after, the scores) and ``codes/<run>.npz`` (packed query and database
codes and labels, to re-score) under ``--out_dir``; the report replaces its section of
benchmarks/RESULTS.md.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfhash import evaluation  # noqa: E402
from tfhash.evaluation.conventions import PRESETS  # noqa: E402
from tfhash.evaluation.distances import Hamming  # noqa: E402

from benchmarks._tables import ROOT, machine, run_logged, write_section  # noqa: E402
from benchmarks.paper_tables import BITS, LABELS, METHOD_FLAGS, PAPER, best_val_map, flag_value  # noqa: E402

BASE = "configs/cifar10_e2e_base.cfg"
# (method, protocol, bits): the paper's Table I methods at 48 bits, LSDH and HashNet at 12, and
# DeepHash-pytorch's four on its own protocols.
RUNS = [
    (m, "cifar10", 48)
    for m in ("lsdh", "lsdh_l1", "triplet", "hashnet", "dsh", "dhn", "lcdsh", "cnnh", "dnnh")
]
RUNS += [
    ("lsdh", "cifar10", 12),
    ("hashnet", "cifar10", 12),
    ("hashnet", "deephash-cifar10", 48),
    ("dhn", "deephash-cifar10", 48),
    ("dsh", "cifar10-1", 48),
    ("lcdsh", "cifar10-1", 48),
]
# Published MAP and where it comes from (../shared/research/methods.md): the LSDH paper's Table
# I (VGG-16 fine-tuned) for its protocol, DeepHash-pytorch's README (AlexNet) for its own.
PUBLISHED = {
    (m, "cifar10", b): (values[BITS.index(b)], "LSDH paper, Table I: " + source)
    for m, (values, source) in PAPER.items()
    for b in BITS
}
PUBLISHED.update(
    {
        ("hashnet", "deephash-cifar10", 48): (0.782, "DeepHash-pytorch README"),
        ("dhn", "deephash-cifar10", 48): (0.781, "DeepHash-pytorch README"),
        ("dsh", "cifar10-1", 48): (0.800, "DeepHash-pytorch README"),
        ("lcdsh", "cifar10-1", 48): (0.798, "DeepHash-pytorch, the run in its LCDSH.py"),
    }
)
with open(os.path.join(ROOT, BASE)) as _config:
    _BASE_FLAGS = dict(line.strip()[2:].split("=", 1) for line in _config if line[:2] == "--")
BASE_LEARNING_RATE = _BASE_FLAGS["learning_rate"]
BASE_BLOCKS = _BASE_FLAGS["trainable_blocks"]
BEGIN, END = "<!-- finetuned-table:begin -->", "<!-- finetuned-table:end -->"
HEADING = "## CIFAR-10 fine-tuned end to end (issue 25)"


@dataclasses.dataclass(frozen=True)
class Run:
    method: str
    protocol: str
    bits: int
    learning_rate: str  # "" for the base config's
    seed: int = 0
    trainable_blocks: str = ""  # "" for the base config's
    quantization_weight: str = ""  # λ; "" for the loss's own
    margin: str = ""  # m; "" for the loss's own

    @property
    def name(self):
        lr = f"_lr{self.learning_rate}" if self.learning_rate else ""
        protocol = "" if self.protocol == "cifar10" else "_" + self.protocol.replace("-", "_")
        blocks = f"_{self.trainable_blocks}blocks" if self.trainable_blocks else ""
        weight = f"_lambda{self.quantization_weight}" if self.quantization_weight else ""
        margin = f"_m{self.margin}" if self.margin else ""
        seed = f"_seed{self.seed}" if self.seed else ""
        return f"cifar10_{self.method}_e2e_{self.bits}{protocol}{lr}{blocks}{weight}{margin}{seed}"

    @property
    def setting(self):
        """What the search chooses between: the learning rate, the trainable blocks, λ and m."""
        return self.learning_rate, self.trainable_blocks, self.quantization_weight, self.margin


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="Methods to run (comma-separated); all: ''.")
    parser.add_argument(
        "--protocols",
        default="",
        help="Protocols to run (comma-separated, e.g. deephash-cifar10,cifar10-1); all: ''.",
    )
    parser.add_argument(
        "--bits", default="", help="Code lengths to run (comma-separated); all: ''."
    )
    parser.add_argument(
        "--learning_rates",
        default="",
        help="Learning rates each method tries (best by validation MAP); '': the base config's.",
    )
    parser.add_argument(
        "--trainable_blocks",
        default="",
        help="Trainable blocks each method tries (best by validation MAP); '': the base config's.",
    )
    parser.add_argument(
        "--quantization_weights",
        default="",
        help="Quantization weights (λ) each method tries (best by validation MAP); '': the "
        "loss's own.",
    )
    parser.add_argument(
        "--margins",
        default="",
        help="Margins (m) each method tries (best by validation MAP); '': the loss's own.",
    )
    parser.add_argument(
        "--seeds",
        default="0",
        help="Seeds each run is made with (comma-separated); seed 0 is the one rates are chosen on.",
    )
    parser.add_argument("--epochs", type=int, default=0, help="Override the config's epochs.")
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="Write the report from the records; train nothing.",
    )
    parser.add_argument("--runs_dir", default=os.path.join(ROOT, "runs"))
    parser.add_argument("--out_dir", default=os.path.join(ROOT, "benchmarks", "finetuned_table"))
    parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    args = parser.parse_args(argv)
    # Each list is parsed once here; planned() and the checks below read the parsed values.
    for flag, known in (
        ("only", {m for m, _, _ in RUNS}),
        ("protocols", {p for _, p, _ in RUNS}),
        ("bits", {str(b) for _, _, b in RUNS}),
    ):
        wanted = set(_items(getattr(args, flag)))
        unknown = sorted(wanted - known)
        if unknown:
            parser.error(
                f"--{flag}: no planned run has {', '.join(unknown)}; one of {', '.join(sorted(known))}"
            )
        setattr(args, flag, wanted)  # empty: every one
    args.learning_rates = _items(args.learning_rates) or [""]
    blocks = _items(args.trainable_blocks)
    if not all(b.isdigit() and int(b) > 0 for b in blocks):
        parser.error(
            f"--trainable_blocks: {args.trainable_blocks!r} is not a list of block counts; "
            "e.g. --trainable_blocks=8,12"
        )
    # The base config's own count is its run (no suffix), not a second run of the same setting.
    args.trainable_blocks = [b if b != BASE_BLOCKS else "" for b in blocks] or [""]
    # The loss's own arguments a search may set: (flag, the loss's argument, the bound its values
    # keep, an example, the check of one value)
    searched_arguments = (
        ("quantization_weights", "quantization_weight", ">= 0", "0.2,0.8", lambda w: w >= 0),
        ("margins", "margin", "> 0", "6,12", lambda m: m > 0),
    )
    methods = {m for m, p, b in RUNS if _selected(args, m, p, b)}
    for flag, argument, bound, example, valid in searched_arguments:
        values = _items(getattr(args, flag))
        if not all(valid(_number(v)) for v in values):
            parser.error(
                f"--{flag}: {getattr(args, flag)!r} is not a list of numbers {bound}; "
                f"e.g. --{flag}={example}"
            )
        setattr(args, flag, values or [""])
        if values:
            from tfhash import losses  # TensorFlow: imported only where an argument is checked

            without = sorted(m for m in methods if argument not in losses.arguments(m))
            if without:
                parser.error(
                    f"--{flag}: the loss of {', '.join(without)} has no "
                    f"{argument.replace('_', ' ')}; choose the methods that have one with "
                    "--only, e.g. --only=lsdh"
                )
    seeds = _items(args.seeds)
    if not seeds or not all(s.isdigit() for s in seeds):
        parser.error(f"--seeds: {args.seeds!r} is not a list of seeds; e.g. --seeds=0,1,2")
    args.seeds = [int(s) for s in seeds]
    return args


def _items(text):
    """A comma-separated flag's items, empty ones dropped."""
    return [item for item in text.split(",") if item]


def _number(text):
    """``text`` as a float; NaN (which no bound admits) where it is not a number."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _selected(args, method, protocol, bits):
    """Whether ``--only``, ``--protocols`` and ``--bits`` (parsed) select this row of the plan."""
    return all(
        not wanted or value in wanted
        for value, wanted in (
            (method, args.only),
            (protocol, args.protocols),
            (str(bits), args.bits),
        )
    )


def planned(args):
    return [
        Run(m, p, b, lr, seed, n, q, margin)
        for m, p, b in RUNS
        if _selected(args, m, p, b)
        for lr in args.learning_rates
        for n in args.trainable_blocks
        for q in args.quantization_weights
        for margin in args.margins
        for seed in args.seeds
    ]


def command(args, run):
    """The run's command after ``python`` (paths relative to the repository root)."""
    flags = [f"--{k}={flag_value(v)}" for k, v in METHOD_FLAGS.get(run.method, {}).items()]
    extra = [f"--learning_rate={run.learning_rate}"] if run.learning_rate else []
    extra += [f"--trainable_blocks={run.trainable_blocks}"] if run.trainable_blocks else []
    extra += [f"--quantization_weight={run.quantization_weight}"] if run.quantization_weight else []
    extra += [f"--margin={run.margin}"] if run.margin else []
    extra += [f"--seed={run.seed}"] if run.seed else []
    extra += [f"--epochs={args.epochs}"] if args.epochs else []
    run_dir = os.path.relpath(os.path.join(args.runs_dir, run.name), ROOT)
    return [
        "-m",
        "tfhash.train",
        f"--flagfile={BASE}",
        f"--method={run.method}",
        f"--bits={run.bits}",
        f"--protocol={run.protocol}",
        *flags,
        *extra,
        f"--run_dir={run_dir}",
    ]


def scores(run_dir):
    """MAP@ALL and precision within radius 2 with tfhash's conventions, MAP with
    DeepHash-pytorch's, and the packed codes and labels to commit."""
    arrays = {
        name: np.load(os.path.join(run_dir, "codes", name + ".npy"))
        for name in ("query_codes", "query_labels", "database_codes", "database_labels")
    }
    codes = (
        arrays["query_codes"],
        arrays["query_labels"],
        arrays["database_codes"],
        arrays["database_labels"],
    )
    ours = evaluation.evaluate_codes(*codes, metrics=["map", "p@r2"])
    theirs = evaluation.evaluate_codes(*codes, metrics=["map"], **PRESETS["deephash"])
    packed = {
        name: np.packbits(array > 0, axis=1) if name.endswith("codes") else array.astype(np.uint8)
        for name, array in arrays.items()
    }
    return {
        "map": ours["map"],
        "p@r2": ours["p@r2"]["precision"],
        "map_deephash": theirs["map"],
    }, packed


def code_structure(packed, bits):
    """Where a run's bits go, from its packed codes (single-label data; ``None`` otherwise).

    A class's centre is the majority code of its database items. Returns the database's
    distinct codes, its constant bits, the Hamming distance of the closest two class centres
    and their mean distance, how far an item lies from its own class's centre (the mean over
    the database: how tightly a class is packed), and the queries' nearest-centre accuracy (a
    query tied between centres counts 1/ties if its class is among them): a ranking loss may
    classify as well as a pairwise one yet leave two classes' centres a few bits apart, and
    MAP@ALL ranks the other class's items among the query's own.
    """
    labels = packed["database_labels"]
    if labels.ndim != 1:
        return None
    database = np.unpackbits(packed["database_codes"], axis=1, count=bits).astype(np.int32)
    queries = np.unpackbits(packed["query_codes"], axis=1, count=bits).astype(np.int32)
    classes = np.unique(labels)
    centres = np.stack([database[labels == c].mean(axis=0) > 0.5 for c in classes])
    centres = centres.astype(np.int32)
    to_centre = Hamming(centres)
    between = to_centre(to_centre.prepare(centres, "centres"))[np.triu_indices(len(classes), 1)]
    to_centres = to_centre(to_centre.prepare(queries, "query_codes"))
    nearest = to_centres == to_centres.min(axis=1, keepdims=True)
    own = np.searchsorted(classes, packed["query_labels"])
    mean_bit = database.mean(axis=0)
    own_centre = centres[np.searchsorted(classes, labels)]
    return {
        "distinct_codes": int(len(np.unique(packed["database_codes"], axis=0))),
        "constant_bits": int(np.sum((mean_bit == 0) | (mean_bit == 1))),
        "closest_centres": int(between.min()),
        "mean_centre_distance": float(between.mean()),
        "spread": float(np.abs(database - own_centre).sum(axis=1).mean()),
        "centre_accuracy": float(np.mean(nearest[np.arange(len(own)), own] / nearest.sum(axis=1))),
    }


def train(args, runs):
    """Trains each planned run that has no record yet and records it."""
    for run in runs:
        path = os.path.join(args.out_dir, "records", run.name + ".json")
        if os.path.isfile(path):
            continue
        run_dir = os.path.join(args.runs_dir, run.name)
        load_before = os.getloadavg()[0]
        seconds = run_logged([sys.executable, *command(args, run)], run_dir)
        record, packed = scores(run_dir)
        record.update(
            run=dataclasses.asdict(run),
            val_map=best_val_map(run_dir),
            command="python " + " ".join(command(args, run)),
            wall_seconds=round(seconds, 1),
            machine=machine(),
            load_before=round(load_before, 2),
            load_after=round(os.getloadavg()[0], 2),
            date=time.strftime("%Y-%m-%d"),
        )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.makedirs(os.path.join(args.out_dir, "codes"), exist_ok=True)
        np.savez_compressed(os.path.join(args.out_dir, "codes", run.name + ".npz"), **packed)
        with open(path, "w") as f:
            json.dump(record, f, indent=2)


def load_records(out_dir):
    """Every recorded run of the plan under ``out_dir`` (whatever a command ran: the report
    always shows the whole table), with its code structure from the committed codes, as a
    reader re-scores them."""
    records = {}
    folder = os.path.join(out_dir, "records")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(folder, name)) as f:
            record = json.load(f)
        run = Run(**record["run"])
        if (run.method, run.protocol, run.bits) not in RUNS:
            continue
        codes = os.path.join(out_dir, "codes", run.name + ".npz")
        if os.path.isfile(codes):
            record["structure"] = code_structure(np.load(codes), run.bits)
        records[run] = record
    return records


def rate_value(run):
    """The run's learning rate (the base config's where the run set none)."""
    return float(run.learning_rate or BASE_LEARNING_RATE)


def rate_label(run):
    """The run's learning rate as ``1e-4``."""
    mantissa, exponent = f"{rate_value(run):e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def setting_label(run):
    """The run's setting as ``3e-4``, with ``, last 12 blocks`` where its trainable blocks are
    not the base config's and ``, λ = 0.2`` or ``, m = 12`` where its quantization weight or
    margin is not the loss's."""
    blocks = f", last {run.trainable_blocks} blocks" if run.trainable_blocks else ""
    weight = f", λ = {run.quantization_weight}" if run.quantization_weight else ""
    margin = f", m = {run.margin}" if run.margin else ""
    return rate_label(run) + blocks + weight + margin


def searched(records):
    """Per (method, protocol, bits), its settings' seed-0 runs (by learning rate, blocks, λ, m),
    each with the validation MAPs and MAP@ALLs of all its seeds (seed 0 first), and the setting
    chosen: the best validation MAP averaged over the seeds it was run with (one seed's
    validation MAP on 500 images moves by about 0.01, more than two settings may differ by).

    Returns:
        ``{key: ([(run, record, val_maps, maps), ...], chosen_index)}``.
    """
    by_setting = sorted(
        records.items(),
        key=lambda item: (
            rate_value(item[0]),
            int(item[0].trainable_blocks or 0),
            float(item[0].quantization_weight or -1),
            float(item[0].margin or -1),
            item[0].seed,
        ),
    )
    seeds = {}  # (method, protocol, bits, setting) -> validation MAPs and MAP@ALLs by seed
    tried = {}  # (method, protocol, bits) -> its settings' seed-0 runs
    for run, record in by_setting:
        key = (run.method, run.protocol, run.bits)
        seeds.setdefault(key + (run.setting,), []).append((record["val_map"] or 0, record["map"]))
        if not run.seed:
            tried.setdefault(key, []).append((run, record))
    table = {}
    for key, runs in tried.items():
        rows = []
        for run, record in runs:
            val_maps, maps = zip(*seeds[key + (run.setting,)])
            rows.append((run, record, list(val_maps), list(maps)))
        means = [np.mean(val_maps) for _, _, val_maps, _ in rows]
        table[key] = rows, int(np.argmax(means))
    return table


def report(records):
    """The table: per (method, protocol, bits), the chosen setting (:func:`searched`), its seed-0
    run's query scores, the MAP@ALL of every seed at that setting (mean and sample standard
    deviation) and the published figure."""
    table = searched(records)
    best = {key: rows[chosen] for key, (rows, chosen) in table.items()}
    lines = [
        BEGIN,
        "",
        "| method | protocol | bits | MAP@ALL | over seeds: mean ± s.d. (n) | MAP, DeepHash-pytorch's "
        "conventions | P@r≤2 | published | val MAP | setting | wall-clock | load "
        "before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(best, key=lambda k: (k[1], -k[2], RUNS.index(k) if k in RUNS else 99))
    for key in order:
        run, r, _, maps = best[key]
        published = PUBLISHED.get(key)
        cell = f"{published[0]:.3f} ({published[1]})" if published else "–"
        spread = (
            f"{np.mean(maps):.3f} ± {np.std(maps, ddof=1):.3f} ({len(maps)})"
            if len(maps) > 1
            else "–"
        )
        lines.append(
            f"| {LABELS[run.method]} | `{run.protocol}` | {run.bits} | **{r['map']:.3f}** | "
            f"{spread} | {r['map_deephash']:.3f} | {r['p@r2']:.3f} | {cell} | {r['val_map'] or 0:.3f} | "
            f"{setting_label(run)} | {r['wall_seconds'] / 60:.0f} min | "
            f"{r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    structured = [key for key in order if best[key][1].get("structure")]
    if structured:
        lines += [
            "",
            "Where the bits go (the same runs' database codes; a class's centre is the majority "
            "code of its items):",
            "",
            "| method | protocol | bits | distinct codes | constant bits | closest class centres "
            "(bits apart) | mean centre distance | an item's distance to its class's centre "
            "(mean) | nearest-centre accuracy |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for key in structured:
        run, r = best[key][:2]
        c = r["structure"]
        lines.append(
            f"| {LABELS[run.method]} | `{run.protocol}` | {run.bits} | {c['distinct_codes']:,} | "
            f"{c['constant_bits']} | {c['closest_centres']} | {c['mean_centre_distance']:.1f} | "
            f"{c['spread']:.1f} | {c['centre_accuracy']:.3f} |"
        )
    several = [key for key in order if len(table[key][0]) > 1]
    if several:
        lines += [
            "",
            "Settings searched (validation MAP chooses the row above, averaged over a setting's "
            "seeds where it has several; the queries' MAP@ALL stands beside it and chooses "
            f"nothing; the last {BASE_BLOCKS} blocks train unless another number is given, and λ "
            "and m are the loss's own unless given):",
            "",
            "| method | protocol | bits | setting: validation MAP / MAP@ALL |",
            "|---|---|---|---|",
        ]
    for key in several:
        rows, chosen = table[key]
        cells = ", ".join(
            f"{setting_label(run)}: {val_maps[0]:.3f} / {maps[0]:.3f}"
            + (
                f" (mean of {len(maps)} seeds: {np.mean(val_maps):.3f} / {np.mean(maps):.3f})"
                if len(maps) > 1
                else ""
            )
            + (" (chosen)" if i == chosen else "")
            for i, (run, _, val_maps, maps) in enumerate(rows)
        )
        lines.append(f"| {LABELS[key[0]]} | `{key[1]}` | {key[2]} | {cells} |")
    missing = [k for k in RUNS if k not in best]
    if missing:
        lines += [
            "",
            "Not run yet: " + ", ".join(f"{LABELS[m]} `{p}` {b}" for m, p, b in missing) + ".",
        ]
    commands = sorted({r["command"] for r in records.values()})
    lines += ["", "Commands (each resumable; `benchmarks/finetuned_table.py` runs them):", ""]
    lines += [f"    {c}" for c in commands]
    notes = [
        f"{LABELS[run.method]} `{run.protocol}` {run.bits}"
        + (f" at {setting_label(run)}" if (run.method, run.protocol, run.bits) in several else "")
        + (f", seed {run.seed}" if run.seed else "")
        + f": {r['note']}"
        for run, r in records.items()
        if r.get("note")
    ]
    if notes:
        lines += [""] + [f"* {note}" for note in notes]
    machines = sorted({r["machine"] for r in records.values()})
    lines += [
        "",
        f"Machine: {'; '.join(machines) or '–'}. Codes of every run: "
        "`benchmarks/finetuned_table/codes/<run>.npz` (packed with `np.packbits`).",
        "",
        END,
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if not args.report_only:
        train(args, planned(args))
    records = load_records(args.out_dir)
    section = report(records)
    write_section(args.results, BEGIN, END, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()
