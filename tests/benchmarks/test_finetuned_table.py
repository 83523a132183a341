"""benchmarks/finetuned_table.py: the plan, each run's command, the scores and packed codes of a
finished run, and the report's choice by validation MAP (fabricated runs, no training)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from tfhash import evaluation

from helpers import load_benchmark


@pytest.fixture(scope="module")
def ft():
    return load_benchmark("finetuned_table")


def test_the_plan_covers_the_issue_runs_and_each_rate(ft, capsys):
    args = ft.parse_args(["--only=lsdh,dsh", "--learning_rates=1e-4,3e-4"])
    runs = ft.planned(args)
    assert {(r.method, r.protocol, r.bits) for r in runs} == {
        ("lsdh", "cifar10", 48),
        ("lsdh", "cifar10", 12),
        ("dsh", "cifar10", 48),
        ("dsh", "cifar10-1", 48),
    }
    assert len(runs) == 8 and {r.learning_rate for r in runs} == {"1e-4", "3e-4"}
    theirs = ft.planned(ft.parse_args(["--protocols=deephash-cifar10,cifar10-1"]))
    assert {(r.method, r.protocol) for r in theirs} == {
        ("hashnet", "deephash-cifar10"),
        ("dhn", "deephash-cifar10"),
        ("dsh", "cifar10-1"),
        ("lcdsh", "cifar10-1"),
    }
    only_48 = ft.planned(ft.parse_args(["--only=lsdh", "--bits=48", "--learning_rates=3e-4"]))
    assert [(r.method, r.protocol, r.bits, r.learning_rate) for r in only_48] == [
        ("lsdh", "cifar10", 48, "3e-4")
    ]
    seeded = ft.planned(ft.parse_args(["--only=lsdh", "--bits=12", "--seeds=0,2"]))
    assert [(r.seed, r.name) for r in seeded] == [
        (0, "cifar10_lsdh_e2e_12"),
        (2, "cifar10_lsdh_e2e_12_seed2"),
    ]
    assert ft.command(ft.parse_args([]), seeded[1])[-2:] == [
        "--seed=2",
        "--run_dir=runs/cifar10_lsdh_e2e_12_seed2",
    ]
    assert not any(f.startswith("--seed") for f in ft.command(ft.parse_args([]), seeded[0]))
    # --trainable_blocks widens the search; the base config's own count is its run, not another
    blocks = ft.planned(
        ft.parse_args(
            ["--only=lsdh", "--bits=48", "--learning_rates=3e-4", "--trainable_blocks=8,12"]
        )
    )
    assert ft.BASE_BLOCKS == "8"
    assert [r.name for r in blocks] == [
        "cifar10_lsdh_e2e_48_lr3e-4",
        "cifar10_lsdh_e2e_48_lr3e-4_12blocks",
    ]
    assert ft.command(ft.parse_args([]), blocks[1])[-3:] == [
        "--learning_rate=3e-4",
        "--trainable_blocks=12",
        "--run_dir=runs/cifar10_lsdh_e2e_48_lr3e-4_12blocks",
    ]
    assert not any("--trainable_blocks" in f for f in ft.command(ft.parse_args([]), blocks[0]))
    # --quantization_weights searches λ beside them; unset, the loss's own
    weights = ft.planned(
        ft.parse_args(
            ["--only=lsdh", "--bits=12", "--trainable_blocks=12", "--quantization_weights=0.2"]
        )
    )
    assert [r.name for r in weights] == ["cifar10_lsdh_e2e_12_12blocks_lambda0.2"]
    assert ft.command(ft.parse_args([]), weights[0])[-3:] == [
        "--trainable_blocks=12",
        "--quantization_weight=0.2",
        "--run_dir=runs/cifar10_lsdh_e2e_12_12blocks_lambda0.2",
    ]
    assert not any("--quantization_weight" in f for f in ft.command(ft.parse_args([]), blocks[1]))
    # and --margins the margin, each pair of values one run
    margins = ft.planned(
        ft.parse_args(["--only=lsdh", "--bits=12", "--quantization_weights=0.05", "--margins=6,12"])
    )
    assert [r.name for r in margins] == [
        "cifar10_lsdh_e2e_12_lambda0.05_m6",
        "cifar10_lsdh_e2e_12_lambda0.05_m12",
    ]
    assert ft.command(ft.parse_args([]), margins[1])[-3:] == [
        "--quantization_weight=0.05",
        "--margin=12",
        "--run_dir=runs/cifar10_lsdh_e2e_12_lambda0.05_m12",
    ]
    for typo in (
        "--protocols=cifar10_1",
        "--bits=16",
        "--seeds=one",
        "--seeds=",
        "--trainable_blocks=0",  # every layer: not a count of last blocks
        "--trainable_blocks=twelve",
        "--quantization_weights=-0.2",
        "--quantization_weights=low",
        "--bits=12 --quantization_weights=0.2",  # HashNet at 12 bits has no λ
        "--only=lsdh --margins=0",
        "--only=lsdh --margins=wide",
        "--only=lsdh,dhn --margins=12",  # DHN's loss has no margin
    ):
        # refused, not an empty plan
        with pytest.raises(SystemExit) as error:
            ft.parse_args(typo.split())
        assert error.value.code == 2
    refusals = capsys.readouterr().err
    assert "the loss of hashnet has no quantization weight" in refusals
    assert "--margins: 'wide' is not a list of numbers > 0; e.g. --margins=6,12" in refusals
    assert "--margins: the loss of dhn has no margin; choose the methods" in refusals
    lsdh = ft.Run("lsdh", "cifar10", 48, "")
    command = ft.command(ft.parse_args([]), lsdh)
    assert command[:3] == ["-m", "tfhash.train", "--flagfile=configs/cifar10_e2e_base.cfg"]
    assert "--bits=48" in command and command[-1] == "--run_dir=runs/cifar10_lsdh_e2e_48"
    assert not any(f.startswith("--margin") for f in command)  # K/2 is the loss's default
    dsh = ft.Run("dsh", "cifar10-1", 48, "3e-4")
    assert ft.command(ft.parse_args([]), dsh)[-2:] == [
        "--learning_rate=3e-4",
        "--run_dir=runs/cifar10_dsh_e2e_48_cifar10_1_lr3e-4",
    ]


def test_the_readme_command_is_the_lsdh_row_the_table_chose(ft):
    """The README's command for the LSDH row, its config, is the table's run at the setting the
    committed records choose, in the same run directory: the table reports a run the README
    made, and a search that chooses another setting fails here until the config follows it."""
    with open(os.path.join(ft.ROOT, "README.md")) as f:
        assert "--flagfile=configs/cifar10_lsdh_e2e.cfg --bits=48" in f.read()
    with open(os.path.join(ft.ROOT, "configs", "cifar10_lsdh_e2e.cfg")) as f:
        config = dict(line.split("=", 1) for line in f.read().splitlines() if line[:2] == "--")
    assert config.pop("--flagfile") == ft.BASE and config.pop("--method") == "lsdh"
    run_dir = config.pop("--run_dir").format(bits=48)
    assert set(config) <= {"--learning_rate", "--trainable_blocks"}
    chosen = ft.Run(
        "lsdh", "cifar10", 48, config["--learning_rate"], 0, config.get("--trainable_blocks", "")
    )
    settings = [f"{flag}={value}" for flag, value in config.items()]
    assert sorted(ft.command(ft.parse_args([]), chosen)[-len(config) - 1 :]) == sorted(
        settings + [f"--run_dir={run_dir}"]
    )
    rows, index = ft.searched(ft.load_records(ft.parse_args([]).out_dir))[("lsdh", "cifar10", 48)]
    assert rows[index][0] == chosen


def test_the_configs_12_bit_command_is_the_lsdh_row_the_table_chose(ft):
    """The 12-bit command that configs/cifar10_lsdh_e2e.cfg gives in its comment is the table's
    run at the setting the committed records choose at 12 bits, in the table's run directory."""
    with open(os.path.join(ft.ROOT, "configs", "cifar10_lsdh_e2e.cfg")) as f:
        comment = " ".join(line.lstrip("# ").rstrip(" \\\n") for line in f if line[:1] == "#")
    start = comment.index(
        "python -m tfhash.train --flagfile=configs/cifar10_e2e_base.cfg --method=lsdh --bits=12"
    )
    words = comment[start:].split()
    end = next(i for i, word in enumerate(words) if word.startswith("--run_dir=")) + 1
    flags = dict(word[2:].split("=", 1) for word in words[3:end])
    rows, index = ft.searched(ft.load_records(ft.parse_args([]).out_dir))[("lsdh", "cifar10", 12)]
    chosen = rows[index][0]
    assert flags.pop("run_dir") == f"runs/{chosen.name}"
    assert (
        ft.Run(
            flags.pop("method"),
            "cifar10",
            int(flags.pop("bits")),
            flags.pop("learning_rate", ""),
            0,
            flags.pop("trainable_blocks", ""),
            flags.pop("quantization_weight", ""),
            flags.pop("margin", ""),
        )
        == chosen
    )
    assert flags == {"flagfile": ft.BASE}


def test_scores_and_packed_codes_of_a_finished_run(ft, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "query_codes": np.sign(rng.normal(size=(20, 12))).astype(np.int8),
        "query_labels": rng.integers(0, 3, 20),
        "database_codes": np.sign(rng.normal(size=(50, 12))).astype(np.int8),
        "database_labels": rng.integers(0, 3, 50),
    }
    os.makedirs(tmp_path / "codes")
    for name, array in arrays.items():
        np.save(tmp_path / "codes" / f"{name}.npy", array)
    record, packed = ft.scores(str(tmp_path))
    codes = [
        arrays[n] for n in ("query_codes", "query_labels", "database_codes", "database_labels")
    ]
    assert record["map"] == evaluation.evaluate_codes(*codes, metrics=["map"])["map"]
    by_index = evaluation.evaluate_codes(
        *codes,
        metrics=["map"],
        ties="index",
        ap_denominator="relevant_in_top_k",
        empty_queries="zero",
    )
    assert record["map_deephash"] == pytest.approx(by_index["map"])
    unpacked = np.unpackbits(packed["database_codes"], axis=1, count=12)
    np.testing.assert_array_equal(unpacked.astype(np.int8) * 2 - 1, arrays["database_codes"])
    np.testing.assert_array_equal(packed["query_labels"], arrays["query_labels"])


def record(val_map, query_map, lr=""):
    """A fabricated finished run's record."""
    return {
        "map": query_map,
        "map_deephash": query_map,
        "p@r2": 0.5,
        "val_map": val_map,
        "wall_seconds": 600,
        "load_before": 2.0,
        "load_after": 2.1,
        "machine": "cpu",
        "command": f"python -m tfhash.train --learning_rate={lr}",
    }


def test_the_report_shows_the_rate_with_the_best_validation_map(ft):
    records = {
        ft.Run("lsdh", "cifar10", 48, "1e-4"): record(0.80, 0.70, "1e-4"),
        ft.Run("lsdh", "cifar10", 48, "3e-4"): record(0.85, 0.60, "3e-4"),
    }
    section = ft.report(records)
    row, searched = [line for line in section.splitlines() if line.startswith("| LSDH")]
    assert "**0.600**" in row and "3e-4" in row and "0.782 (LSDH paper" in row
    assert "| **0.600** | – |" in row  # one seed: no spread
    assert searched.endswith("| 1e-4: 0.800 / 0.700, 3e-4: 0.850 / 0.600 (chosen) |")
    assert "--learning_rate=1e-4" in section  # every run's command, not only the chosen one's
    assert "Not run yet:" in section and json.dumps(section)


def test_the_report_reads_every_record_on_disk(ft, tmp_path):
    """``--only=dsh`` must not shrink the table to DSH: the report is built from every record,
    a base-config run shows the base config's rate, and a record outside the plan is left out."""
    os.makedirs(tmp_path / "records")
    for run, val_map in (
        (ft.Run("dsh", "cifar10", 48, ""), 0.8),
        (ft.Run("lsdh", "cifar10", 48, "3e-5"), 0.7),
        (ft.Run("dsh", "cifar10", 24, ""), 0.9),  # no such planned run
    ):
        with open(tmp_path / "records" / f"{run.name}.json", "w") as f:
            json.dump({"run": dataclasses.asdict(run), "val_map": val_map}, f)
    records = ft.load_records(str(tmp_path))
    assert sorted(r.name for r in records) == ["cifar10_dsh_e2e_48", "cifar10_lsdh_e2e_48_lr3e-5"]
    assert [ft.rate_label(r) for r in sorted(records, key=lambda r: r.name)] == ["1e-4", "3e-5"]
    assert ft.load_records(str(tmp_path / "nothing")) == {}


def test_code_structure_against_hand_counted_codes(ft):
    def packed(rows):
        bits = np.array([[int(c) for c in row] for row in rows])
        return np.packbits(bits > 0, axis=1)

    # Centres (majority codes): class 0 11000, class 1 00110, class 2 11110 -- 4, 2 and 2
    # bits apart; the fifth bit is 0 throughout.
    database = ["11000", "11000", "11100", "00110", "00110", "01110", "11110", "11110", "10110"]
    queries = ["11000", "11010", "00110"]  # own class, tied between 0 and 2, the wrong class
    structure = ft.code_structure(
        {
            "database_codes": packed(database),
            "database_labels": np.array([0, 0, 0, 1, 1, 1, 2, 2, 2], np.uint8),
            "query_codes": packed(queries),
            "query_labels": np.array([0, 2, 0], np.uint8),
        },
        bits=5,
    )
    assert structure == {
        "distinct_codes": 6,
        "constant_bits": 1,
        "closest_centres": 2,
        "mean_centre_distance": pytest.approx(8 / 3),
        "spread": pytest.approx(3 / 9),  # 11100, 01110, 10110: one bit off their centres
        "centre_accuracy": pytest.approx((1 + 0.5 + 0) / 3),
    }
    multi_label = {"database_labels": np.ones((2, 3), np.uint8)}
    assert ft.code_structure(multi_label, bits=5) is None


def test_more_seeds_repeat_a_setting_and_their_mean_validation_map_chooses(ft):
    """A setting's seeds give the mean and sample standard deviation of MAP@ALL beside seed 0's
    figure, and their validation MAPs, averaged, choose between settings: one seed's edge on
    500 validation images does not, and the queries' MAP@ALL never does."""
    records = {
        ft.Run("dsh", "cifar10", 48, "1e-4"): record(0.86, 0.90),  # best seed 0, best queries
        ft.Run("dsh", "cifar10", 48, "1e-4", 1): record(0.70, 0.90),
        ft.Run("dsh", "cifar10", 48, "3e-4"): record(0.85, 0.60),
        ft.Run("dsh", "cifar10", 48, "3e-4", 1): record(0.84, 0.70),
        ft.Run("dsh", "cifar10", 48, "3e-4", 2): record(0.83, 0.80),
    }
    row, searched = [line for line in ft.report(records).splitlines() if line.startswith("| DSH")]
    assert "| **0.600** | 0.700 ± 0.100 (3) |" in row and "| 3e-4 |" in row
    assert searched.endswith(
        "| 1e-4: 0.860 / 0.900 (mean of 2 seeds: 0.780 / 0.900), "
        "3e-4: 0.850 / 0.600 (mean of 3 seeds: 0.840 / 0.700) (chosen) |"
    )
    # A seed with no seed-0 run of its setting is nobody's repeat and chooses nothing.
    records[ft.Run("dsh", "cifar10", 48, "1e-3", 1)] = record(0.99, 0.99)
    assert ft.searched(records)[("dsh", "cifar10", 48)][1] == 1


def test_the_search_over_trainable_blocks_chooses_on_validation_too(ft):
    """More trainable blocks is one more setting of the same row, chosen on validation MAP like a
    rate; its label names the blocks."""
    more = "12"
    records = {
        ft.Run("lsdh", "cifar10", 48, "3e-4"): record(0.878, 0.70),
        ft.Run("lsdh", "cifar10", 48, "3e-4", 0, more): record(0.877, 0.80),  # better queries
    }
    row, searched = [line for line in ft.report(records).splitlines() if line.startswith("| LSDH")]
    assert "| **0.700** | – |" in row and "| 3e-4 |" in row
    assert searched.endswith(
        "| 3e-4: 0.878 / 0.700 (chosen), 3e-4, last 12 blocks: 0.877 / 0.800 |"
    )
    records[ft.Run("lsdh", "cifar10", 48, "3e-4", 1)] = record(0.86, 0.68)
    records[ft.Run("lsdh", "cifar10", 48, "3e-4", 1, more)] = record(0.87, 0.78)
    row, searched = [line for line in ft.report(records).splitlines() if line.startswith("| LSDH")]
    assert "| **0.800** | 0.790 ± 0.014 (2) |" in row and "| 3e-4, last 12 blocks |" in row
    assert searched.endswith("(mean of 2 seeds: 0.873 / 0.790) (chosen) |")


def test_the_search_over_the_quantization_weight_chooses_on_validation_too(ft):
    """λ is one more setting of the same row: the run whose loss kept its own λ and the one that
    set it are told apart by name and label, and validation MAP chooses between them."""
    records = {
        ft.Run("lsdh", "cifar10", 12, ""): record(0.786, 0.70),
        ft.Run("lsdh", "cifar10", 12, "", 0, "", "0.2"): record(0.80, 0.60),  # worse queries
        ft.Run("lsdh", "cifar10", 12, "", 0, "12", "0.2"): record(0.79, 0.80),
    }
    assert len({run.name for run in records}) == 3
    row, searched = [line for line in ft.report(records).splitlines() if line.startswith("| LSDH")]
    assert "| **0.600** | – |" in row and "| 1e-4, λ = 0.2 |" in row
    assert searched.endswith(
        "| 1e-4: 0.786 / 0.700, 1e-4, λ = 0.2: 0.800 / 0.600 (chosen), "
        "1e-4, last 12 blocks, λ = 0.2: 0.790 / 0.800 |"
    )


def test_the_search_over_the_margin_chooses_on_validation_too(ft):
    """m is one more setting of the same row, beside λ: named and labelled after both, and chosen
    on validation MAP."""
    records = {
        ft.Run("lsdh", "cifar10", 12, "", 0, "12", "0.05"): record(0.859, 0.735),
        ft.Run("lsdh", "cifar10", 12, "", 0, "12", "0.05", "16"): record(0.87, 0.70),
    }
    assert sorted(run.name for run in records) == [
        "cifar10_lsdh_e2e_12_12blocks_lambda0.05",
        "cifar10_lsdh_e2e_12_12blocks_lambda0.05_m16",
    ]
    row, searched = [line for line in ft.report(records).splitlines() if line.startswith("| LSDH")]
    assert "| **0.700** | – |" in row and "| 1e-4, last 12 blocks, λ = 0.05, m = 16 |" in row
    assert searched.endswith(
        "| 1e-4, last 12 blocks, λ = 0.05: 0.859 / 0.735, "
        "1e-4, last 12 blocks, λ = 0.05, m = 16: 0.870 / 0.700 (chosen) |"
    )
