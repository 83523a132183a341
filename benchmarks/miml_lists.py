r"""Multi-label retrieval on the MIML list files as given: train on train.txt, query test.txt
against database.txt, score MAP and the graded multi-label criteria.

The split is the data set's own (``../shared/data/miml``: 400 queries, a 1,600-image database,
1,000 training images drawn from it), not one of tfhash's protocol presets, which draw their own
split: this script builds that :class:`tfhash.data.Split` from the list files and hands it to
:func:`tfhash.train.train` in place of ``data.make_split``; everything else is the training
command's (its validation part is ``--val_fraction`` of train.txt). The run's query and
database codes are then scored with :func:`tfhash.evaluation.evaluate_codes`.

    python benchmarks/miml_lists.py --methods=lsdh,dmssph,dnnh,lcdsh --epochs=10 \
        --out=runs/miml [--data_dir=../shared/data/miml] [--flag=value ...]

Extra ``--flag=value`` arguments are :class:`tfhash.train.TrainConfig` fields.
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfhash import data, evaluation  # noqa: E402
from tfhash import train as train_lib  # noqa: E402
from tfhash.data import protocols, splits  # noqa: E402

METRICS = (
    "map",
    "map:jaccard>=0.5",
    "ndcg@100:shared",
    "ndcg@100:jaccard",
    "acg@100:shared",
    "acg@100:jaccard",
    "wap@100:shared",
    "wap@100:jaccard",
)


def list_split(collection, data_dir, seed=0, val_fraction=0.1):
    """The :class:`tfhash.data.Split` of the list files train.txt / test.txt / database.txt."""
    position = {item: i for i, item in enumerate(collection.item_ids)}

    def read(name):
        with open(os.path.join(data_dir, name)) as f:
            return np.array(sorted(position[line.split()[0]] for line in f if line.strip()))

    train, query, database = read("train.txt"), read("test.txt"), read("database.txt")
    rng = np.random.default_rng(seed)
    val = np.sort(rng.choice(train, int(round(val_fraction * len(train))), replace=False))
    protocol = protocols.Protocol(
        "lists",
        "total",
        len(query),
        len(train),
        description="the list files as given: train.txt, test.txt (queries), database.txt",
    )
    return data.Split(
        train=np.setdiff1d(train, val),
        val=val,
        query=query,
        database=database,
        unlabeled=np.setdiff1d(database, train),
        protocol=protocol,
        seed=seed,
        val_fraction=val_fraction,
        collection=splits._describe(collection),
    )


def run(method, out, data_dir, overrides):
    settings = dict(
        run_dir=os.path.join(out, method),
        dataset="list",
        protocol="lists",
        data_dir=os.path.join(data_dir, "all.txt"),
        method=method,
        bits=12,
        image_size=32,
        batch_size=40,
        images_per_class=8,
        epochs=10,
        learning_rate=0.01,
        head_lr_multiplier=1.0,
        eval_every=5,
        verbose=2,
    )
    settings.update(overrides)
    config = train_lib.TrainConfig(**settings)
    split = list_split(
        data.load_collection(config.dataset, config.data_dir),
        data_dir,
        config.seed,
        config.val_fraction,
    )
    # Known by name too, for the settings' checks (a semi-supervised method's unlabelled part).
    protocols.PROTOCOLS.setdefault("lists", split.protocol)
    original = data.make_split
    data.make_split = lambda *args, **kwargs: split
    try:
        train_lib.train(config)
    finally:
        data.make_split = original
    codes = os.path.join(config.run_dir, "codes")
    load = lambda name: np.load(os.path.join(codes, name + ".npy"))  # noqa: E731
    report = evaluation.evaluate_codes(
        load("query_codes"),
        load("query_labels"),
        load("database_codes"),
        load("database_labels"),
        metrics=METRICS,
    )
    with open(os.path.join(config.run_dir, "metrics.json")) as f:
        seconds = json.load(f)["run"]["train_seconds"]
    return {
        "method": method,
        "train_seconds": seconds,
        "config": dataclasses.asdict(config),
        **{m: report[m] for m in METRICS},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="lsdh,dmssph,dnnh,lcdsh")
    parser.add_argument("--out", default="runs/miml")
    parser.add_argument("--data_dir", default="../shared/data/miml")
    args, rest = parser.parse_known_args()
    fields = {f.name: f.type for f in dataclasses.fields(train_lib.TrainConfig)}
    overrides = {}
    for item in rest:
        name, _, value = item.lstrip("-").partition("=")
        overrides[name] = {"int": int, "float": float}.get(
            getattr(fields[name], "__name__", fields[name]), str
        )(value)
    rows = [run(m, args.out, args.data_dir, overrides) for m in args.methods.split(",")]
    os.makedirs(args.out, exist_ok=True)  # --run_dir may put the runs elsewhere
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(
        "| method | MAP | MAP (J ≥ 0.5) | NDCG@100 shared | NDCG@100 Jaccard | ACG@100 shared "
        "| ACG@100 Jaccard | wAP@100 shared | train s |"
    )
    print("|---|" + "---|" * 8)
    for r in rows:
        print(
            f"| {r['method']} | "
            + " | ".join(f"{r[m]:.4f}" for m in METRICS[:7])
            + f" | {r['train_seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
