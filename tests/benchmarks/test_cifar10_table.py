"""benchmarks/cifar10_table.py: the table it writes from finished runs (no training here)."""

import json
import os

import numpy as np
import pytest

from helpers import load_benchmark


@pytest.fixture(scope="module")
def table():
    return load_benchmark("cifar10_table")


def report(map_value, lookup=None):
    """A report shaped like evaluate_codes's, with a chosen MAP and precision@500."""
    out = {
        "map": map_value,
        "p@k": {"k": [100, 500], "precision": [map_value + 0.1, map_value + 0.05]},
        "pr": {"recall": [0.1, 0.5], "precision": [0.9, map_value]},
    }
    if lookup is not None:
        out["p@r2"] = {"precision": lookup}
    return out


def write_runs(table, out_dir, bits=(12, 48), seeds=3):
    """One JSON per planned run; MAP = 0.1·index of the method + bits/1000 + seed/100."""
    args = type("Args", (), {"bits": list(bits), "seeds": seeds, "out_dir": str(out_dir)})
    for method, b, seed in table.planned_runs(args):
        value = 0.1 * list(table.TRAINED).index(method) + b / 1000 + seed / 100
        record = {
            "method": method,
            "bits": b,
            "seed": seed,
            "epochs": 3,
            "wall_seconds": 60.0,
            "train_seconds": 50.0,
            "machine": "test cpu",
            "signs": report(value, 0.5),
            "relaxed": report(value + 0.001) if method == "lsdh" else None,
            "codes": {"distinct_codes": 100 * (seed + 1), "constant_bits": seed, "tanh_slope": 0.5},
        }
        with open(os.path.join(out_dir, table.run_name(method, b, seed) + ".json"), "w") as f:
            json.dump(record, f)
    return args


def test_the_table_has_every_row_and_the_seed_mean_and_deviation(table, tmp_path):
    args = write_runs(table, tmp_path)
    records = table.load_records(args)
    assert len(records) == 2 * 3 + 2 * 3  # 3 methods at 12 bits, 3 methods x 3 seeds at 48
    text = table.markdown(args, records)
    # LSDH at 48 bits: 0.048 + {0, 0.01, 0.02} -> mean 0.058, sample std 0.010.
    seeds = [0.048 + s / 100 for s in range(3)]
    assert f"| LSDH | 0.012 | {np.mean(seeds):.3f} ± {np.std(seeds, ddof=1):.3f} |" in text
    assert "| LSDH-C | 0.013 |" in text  # the relaxed codes' report
    assert "| Triplet | 0.212 |" in text
    assert "| LSDH-L1 | 0.722 | 0.738 | 0.766 | 0.771 |" in text  # the paper's Table I
    assert "| LSDH-C | – | – |" in text  # no Hamming ball around relaxed codes
    # Code statistics at 48 bits over seeds 0-2: distinct 100/200/300, constant bits 0/1/2.
    assert "| LSDH | 200 ± 100 | 1.0 ± 1.0 | 0.5000 ± 0.0000 |" in text
    assert "`python benchmarks/cifar10_table.py --epochs=3 --bits=12,48 --seeds=3`" in text


def test_runs_trained_for_other_epochs_are_refused_not_mixed_in(table, tmp_path):
    args = write_runs(table, tmp_path)  # their JSONs say 3 epochs
    args.epochs, args.runs_dir = 12, str(tmp_path / "runs")
    with pytest.raises(SystemExit, match="trained for 3 epochs, not --epochs=12"):
        table.run_table(args, train_missing=False)
    args.epochs = 3
    table.run_table(args, train_missing=False)  # every run finished: nothing to do


def test_results_section_is_replaced_not_appended(table, tmp_path):
    args = write_runs(table, tmp_path)
    args.results = str(tmp_path / "RESULTS.md")
    with open(args.results, "w") as f:
        f.write("# Results\n\nkept\n")
    records = table.load_records(args)
    table.write_results(args, records)
    table.write_results(args, records)
    text = open(args.results).read()
    assert text.startswith("# Results\n\nkept\n")
    assert text.count(table.BEGIN) == 1 and text.count(table.END) == 1


def test_figures_are_drawn(table, tmp_path):
    pytest.importorskip("matplotlib")
    args = write_runs(table, tmp_path)
    table.draw(args, table.load_records(args))
    for name in table.FIGURES:
        assert os.path.getsize(tmp_path / f"{name}.png") > 1000
