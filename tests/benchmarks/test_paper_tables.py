"""benchmarks/paper_tables.py and benchmarks/_tables.py: the plan, the scoring and the report
from fabricated finished runs (no training here), and a refused run directory surfaced."""

import json
import os
import sys

import numpy as np
import pytest

from helpers import load_benchmark


@pytest.fixture(scope="module")
def pt():
    return load_benchmark("paper_tables")


@pytest.fixture(scope="module")
def shared():
    return load_benchmark("_tables")


def arguments(pt, tmp_path, *extra):
    return pt.parse_args(
        [
            f"--runs_dir={tmp_path / 'runs'}",
            f"--out_dir={tmp_path / 'out'}",
            f"--results={tmp_path / 'RESULTS.md'}",
            *extra,
        ]
    )


def report(value):
    """A report shaped like evaluate_codes's, with a chosen MAP."""
    return {
        "map": value,
        "p@k": {"k": [100, 500], "precision": [value + 0.1, value + 0.05]},
        "p@r2": {"precision": value + 0.02},
        "pr": {"recall": [0.1, 0.5], "precision": [0.9, value]},
    }


def value_of(pt, run):
    """MAP of a fabricated run: 0.01·(the method's row) + bits/1000 + seed/100."""
    return 0.01 * (pt.DEEP + pt.SHALLOW).index(run.method) + run.bits / 1000 + run.seed / 100


def fabricate(pt, args, runs):
    """A scored JSON for each run, with the command the script plans for it."""
    for run in runs:
        v = value_of(pt, run)
        record = {
            "name": run.name,
            "command": pt.command(args, run),
            "wall_seconds": 120.0,
            "machine": "test cpu",
            "train_seconds": 100.0,
        }
        if run.part == "table":
            record.update(
                signs=report(v),
                codes={"distinct_codes": 1000, "constant_bits": 0},
                relaxed=report(v + 0.5) if run.method in pt.PAPER_RELAXED else None,
            )
        elif run.part == "grid":
            lam, mu = (value for _, value in run.extra)
            record.update(map=0.5 + lam / 10, val_map=0.6 - lam / 10 + mu / 100)
        else:
            record.update({m: v for m in pt.MIML_METRICS})
        path = pt.record_path(args, run)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(record, f)


def section(pt, args):
    runs = pt.report_runs(args)
    records = pt.collect(args, runs, train=False)
    return pt.markdown(args, records, runs, []), records


def test_the_plan_has_every_method_length_seed_grid_cell_and_miml_run(pt, tmp_path):
    args = arguments(pt, tmp_path)
    runs = pt.planned_runs(args.only, args.methods, args.bits, args.seeds)
    methods = pt.DEEP + pt.SHALLOW
    assert len(methods) == 19 and {"ssdh", "dmssph", "cnnh", "sdh"} <= set(methods)
    table = [r for r in runs if r.part == "table"]
    assert len(table) == 19 * 4 + 19 * 2  # seed 0 at 12/24/32/48, seeds 1 and 2 at 48
    assert {r.seed for r in table if r.bits != 48} == {0}
    assert len([r for r in runs if r.part == "grid"]) == len(pt.LAMBDAS) * len(pt.MUS)
    assert len([r for r in runs if r.part == "miml"]) == 19
    assert len(set(r.name for r in runs)) == len(runs)
    partial = pt.planned_runs(["table1"], ["itq", "lsh"], [12], 3)
    assert [r.name for r in partial] == ["lsh_12bits_seed0", "itq_12bits_seed0"]


def test_commands_share_one_base_config_and_the_per_method_flags(pt, tmp_path):
    args = arguments(pt, tmp_path)
    lsdh = pt.command(args, pt.Run("table", "lsdh", 24, 1))
    assert lsdh[:3] == ["-m", "tfhash.train", "--flagfile=configs/cifar10_pretrained_base.cfg"]
    assert "--seed=1" in lsdh and "--bits=24" in lsdh
    assert lsdh[-1].startswith("--run_dir=") and lsdh[-1].endswith("lsdh_24bits_seed1")
    # The margin follows the code length inside the loss (K/2): no command spells it.
    assert not any(
        f.startswith("--margin")
        for f in lsdh
        + pt.command(args, pt.Run("table", "triplet", 48))
        + pt.command(args, pt.Run("table", "dsh", 24))
    )
    ssdh = pt.command(args, pt.Run("table", "ssdh", 48))
    assert "--images_per_class=8" in ssdh and "--labelled_ratio=0.5" in ssdh
    grid = pt.command(
        args,
        pt.Run("grid", "lsdh", 12, 0, (("quantization_weight", 0.2), ("isometric_weight", 0.0))),
    )
    assert "--quantization_weight=0.2" in grid and "--isometric_weight=0" in grid
    tuned = arguments(pt, tmp_path, "--finetuned", "--epochs=5")
    assert "--flagfile=configs/cifar10_finetuned_base.cfg" in pt.command(
        tuned, pt.Run("table", "hashnet", 12)
    )
    itq = pt.command(tuned, pt.Run("table", "itq", 12))  # shallow: frozen features, no epochs
    assert "--flagfile=configs/cifar10_pretrained_base.cfg" in itq
    assert not any(f.startswith("--epochs") for f in itq)
    miml = pt.command(args, pt.Run("miml", "ssdh", 12))
    assert miml[:2] == ["benchmarks/miml_lists.py", "--methods=ssdh"]
    assert "--freeze_backbone=true" in miml and "--backbone=efficientnet_lite0" in miml
    assert "--batch_size=128" in miml and "--labelled_ratio=0.3125" in miml
    assert not any(f.startswith(("--dataset=", "--protocol=", "--flagfile")) for f in miml)


def test_scoring_a_finished_run_and_the_relaxed_codes_against_brute_force(pt, tmp_path):
    rng = np.random.default_rng(0)
    query_labels, database_labels = rng.integers(0, 3, 20), rng.integers(0, 3, 1000)
    query_h, database_h = rng.normal(size=(20, 8)), rng.normal(size=(1000, 8))
    run_dir = tmp_path / "lsdh_12bits_seed0"
    os.makedirs(run_dir / "codes")
    for name, array in [
        ("query_labels", query_labels),
        ("database_labels", database_labels),
        ("query_embedding", np.tanh(query_h)),
        ("database_embedding", np.tanh(database_h)),
        ("query_codes", np.where(query_h > 0, 1, -1).astype(np.int8)),
        ("database_codes", np.where(database_h > 0, 1, -1).astype(np.int8)),
    ]:
        np.save(run_dir / "codes" / f"{name}.npy", array)
    with open(run_dir / "metrics.json", "w") as f:
        json.dump({"map": 0.4, "run": {"train_seconds": 12.5}}, f)
    record = pt.score_run(pt.Run("table", "lsdh", 12), str(run_dir))
    # Brute force: each query ranks the database by Euclidean distance of the relaxed codes.
    precisions = []
    for h, label in zip(np.tanh(query_h), query_labels):
        order = np.argsort(np.linalg.norm(np.tanh(database_h) - h, axis=1))
        hits = database_labels[order] == label
        precisions.append(np.mean(np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)))
    assert record["relaxed"]["map"] == pytest.approx(np.mean(precisions))
    assert 0 < record["signs"]["map"] < 1 and "p@r2" in record["signs"]
    assert record["train_seconds"] == 12.5 and record["codes"]["distinct_codes"] <= 256
    with open(run_dir / "history.csv", "w") as f:
        f.write("epoch,loss,val_map\n0,1.0,\n4,0.5,0.31\n9,0.4,0.29\n")
    grid = pt.score_run(
        pt.Run("grid", "lsdh", 12, 0, (("quantization_weight", 0.8),)), str(run_dir)
    )
    assert grid == {"train_seconds": 12.5, "map": 0.4, "val_map": 0.31}  # the best epoch's


def test_the_report_from_finished_runs(pt, tmp_path):
    args = arguments(pt, tmp_path)
    fabricate(pt, args, pt.report_runs(args))
    text, records = section(pt, args)
    seeds = [0.048 + s / 100 for s in range(3)]
    mean = f"{np.mean(seeds):.3f} ± {np.std(seeds, ddof=1):.3f}"
    assert (
        f"| LSDH | 0.012 | 0.024 | 0.032 | {mean} | 0.746 / 0.752 / 0.779 / 0.782 | LSDH's run |"
    ) in text
    assert "| LSDH-C | 0.512 | 0.524 | 0.532 |" in text  # Table V: the relaxed reports
    assert "0.753 / 0.762 / 0.769 / 0.765" in text  # the paper's LSDH-C
    assert "copied: DNNH paper" in text and "| Triplet | 0.032 |" in text
    assert "| 48 bits (3 seeds) |" in text and MISSING_CELL not in text
    # Fig. 11: LSDH (row 0) is 0.01·row below each loss here, so it trails.
    row = pt.DEEP.index("angular")
    assert f"| Angular | {0.01 * row + 0.012:.3f} |" in text and f"{-row:+.2f} | +1.95 |" in text
    assert "LSDH does not win" in text
    # Fig. 12: chosen by validation MAP (λ = 0.2, μ = 0.75), whose query MAP is the lowest.
    assert "Chosen on validation: λ = 0.2, μ = 0.75: query MAP 0.520" in text
    miml = 0.01 * pt.DEEP.index("ssdh") + 0.012
    assert f"| SSDH | {miml:.4f} | {miml:.4f} |" in text  # the MIML table
    assert f"Finished: {len(records)} of {len(records)} runs" in text
    assert "training budget (15 epochs of 100 batches)" in text  # the base config's


def test_the_report_states_the_epochs_the_runs_trained_not_its_own_flag(pt, tmp_path):
    trained = arguments(pt, tmp_path, "--epochs=8")
    fabricate(pt, trained, pt.report_runs(trained))
    text, _ = section(pt, arguments(pt, tmp_path, "--epochs=8"))
    assert "training budget (8 epochs of 100 batches)" in text
    runs = pt.report_runs(trained)
    records = {run: {"command": pt.command(trained, run)} for run in runs}
    records[runs[0]] = {"command": pt.command(arguments(pt, tmp_path, "--epochs=5"), runs[0])}
    assert pt.trained_epochs(arguments(pt, tmp_path), records) == "5-8"


MISSING_CELL = "| missing"


def test_missing_cells_are_shown_as_missing_and_stale_records_not_mixed_in(pt, tmp_path):
    args = arguments(pt, tmp_path)
    runs = pt.report_runs(args)
    done = [r for r in runs if r.part == "table" and r.method == "lsdh" and r.seed < 2]
    fabricate(pt, args, done)
    # A JSON where this plan's itq run would be, made by another command: not used.
    stale = pt.Run("table", "itq", 12)
    fabricate(pt, args, [stale])
    with open(pt.record_path(args, stale)) as f:
        record = json.load(f)
    record["command"] = record["command"] + ["--shallow_params=anchors=500"]
    with open(pt.record_path(args, stale), "w") as f:
        json.dump(record, f)
    text, records = section(pt, args)
    assert stale not in records and len(records) == len(done)
    assert "| LSDH | 0.012 | 0.024 | 0.032 | 0.053 ± 0.007 (2 of 3 seeds) |" in text
    assert "| ITQ | missing | missing | missing | missing |" in text
    assert "Chosen on validation: none yet" in text
    assert f"**Missing** ({len(runs) - len(done)} runs not finished" in text
    assert "itq_12bits_seed0" in text.split("**Missing**")[1]


def test_results_section_is_replaced_not_appended(pt, shared, tmp_path):
    args = arguments(pt, tmp_path)
    with open(args.results, "w") as f:
        f.write("# Results\n\nkept\n")
    begin, end = pt.markers(args)
    for _ in range(2):
        shared.write_section(args.results, begin, end, "## heading", section(pt, args)[0])
    text = open(args.results).read()
    assert text.startswith("# Results\n\nkept\n\n## heading\n\n" + begin)
    assert text.count(begin) == 1 and text.count(end) == 1 and text.count("## heading") == 1


def test_the_command_writes_the_report_and_draws_every_figure(pt, shared, tmp_path):
    pytest.importorskip("matplotlib")
    args = arguments(pt, tmp_path, "--report_only", "--only=table1")
    fabricate(pt, args, pt.report_runs(args))
    pt.main(args.argv)
    text = open(args.results).read()
    names = [f"{f}_{facet}" for f in shared.FIGURES for facet in pt.FACETS]
    for name in names + ["fig11_metric_learning", "fig12_lambda_mu"]:
        assert os.path.getsize(tmp_path / "out" / f"{name}.png") > 1000
        assert f"(out/{name}.png)" in text
    assert "--report_only --only=table1" in text


def test_code_statistics_count_distinct_codes_constant_bits_and_the_tanh_slope(shared):
    codes = np.ones((200, 3), np.int8)
    codes[:100, 0] = -1  # bit 0 balanced
    codes[:2, 1] = -1  # bit 1: 99 % the same sign, constant
    codes[:3, 2] = -1  # bit 2: 98.5 %, not constant
    stats = shared.code_statistics(codes, np.full((200, 3), 0.5, np.float32))
    assert stats == {
        "distinct_codes": len({tuple(c) for c in codes}),
        "constant_bits": 1,
        "tanh_slope": pytest.approx(0.75),
    }


def test_a_run_directory_with_other_settings_is_refused_by_tfhash_train(shared, tmp_path):
    run_dir = tmp_path / "itq_12bits_seed0"
    os.makedirs(run_dir)
    settings = {
        "run_dir": str(run_dir),
        "dataset": "digits",
        "data_dir": None,
        "protocol": "digits",
        "val_fraction": 0.1,
        "seed": 0,
        "method": "itq",
        "bits": 16,
        "backbone": "pixels",
        "weights": "none",
        "image_size": 8,
        "features": None,
        "shallow_params": {},
    }
    with open(run_dir / "flags.json", "w") as f:
        json.dump(settings, f)
    with open(run_dir / "metrics.json", "w") as f:
        json.dump({"map": 0.5}, f)
    command = [
        sys.executable,
        "-m",
        "tfhash.train",
        "--method=itq",
        "--dataset=digits",
        "--protocol=digits",
        "--backbone=pixels",
        "--image_size=8",
        "--bits=12",
        f"--run_dir={run_dir}",
    ]
    with pytest.raises(
        SystemExit,
        match=r"itq_12bits_seed0 failed: run directory .* "
        r"other settings \(--bits=16 there vs 12 now\)",
    ):
        shared.run_logged(command, str(run_dir))
    assert float(open(f"{run_dir}.wall_seconds").read()) > 0
    assert "$ " in open(f"{run_dir}.log").read()


def test_a_failure_without_an_error_line_shows_its_last_line(shared, tmp_path):
    run_dir = str(tmp_path / "crash")
    crash = [sys.executable, "-c", "raise ValueError('unknown protocol lists')"]
    with pytest.raises(SystemExit, match="crash failed: ValueError: unknown protocol lists"):
        shared.run_logged(crash, run_dir)
