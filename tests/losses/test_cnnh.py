"""CNNH: stage 1's target codes (NumPy) and stage 2 through the training command."""

import itertools
import json

import numpy as np
import pytest

from tfhash import methods
from tfhash.errors import UsageError
from tfhash.losses import cnnh

from helpers import train_config as _config
from helpers import write_folder as _write_folder


def brute_force_minimum(similarity, bits):
    """The smallest ‖S − (1/q) H Hᵀ‖²_F over every H in {±1}^{n×q}."""
    n = len(similarity)
    best = np.inf
    for flat in itertools.product((-1, 1), repeat=n * bits):
        best = min(best, cnnh.objective(similarity, np.reshape(flat, (n, bits))))
    return best


def test_the_objective_is_the_frobenius_residual():
    s = cnnh.similarity_matrix(np.array([0, 1, 0]))
    h = np.array([[1, 1], [1, -1], [-1, -1]])
    expected = sum((s[i, j] - h[i] @ h[j] / 2) ** 2 for i in range(3) for j in range(3))
    assert cnnh.objective(s, h) == pytest.approx(expected)


@pytest.mark.parametrize(
    "labels,bits",
    [([0, 0, 1, 1], 2), ([0, 1, 2, 0, 1], 2), ([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], 3)],
)
def test_stage_one_reaches_the_brute_force_optimum_on_tiny_problems(labels, bits):
    s = cnnh.similarity_matrix(np.array(labels))
    found = min(
        cnnh.objective(s, cnnh.target_codes(s, bits, sweeps=20, seed=seed)[0]) for seed in range(3)
    )
    assert found == pytest.approx(brute_force_minimum(s, bits))


def test_stage_one_descends_monotonically_and_fits_the_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    s = cnnh.similarity_matrix(labels)
    codes, residuals = cnnh.target_codes(s, 16, sweeps=8, seed=1)
    assert all(b <= a for a, b in zip(residuals, residuals[1:]))
    assert residuals[-1] < 0.75 * residuals[0]  # 5 classes in 16 bits cannot reach 0
    assert codes.dtype == np.int8 and set(np.unique(codes)) == {-1, 1}
    same = labels[:, None] == labels[None, :]
    agreement = codes.astype(float) @ codes.T / 16
    # The best one can do: equal codes within a class, about −1/4 (a simplex) across 5 classes.
    assert agreement[same].mean() > 0.95 and agreement[~same].mean() < -0.15


def test_the_registry_entry_declares_the_prepare_step_and_its_run_dir_file():
    entry = methods.get("cnnh")
    assert entry.prepare_function() is cnnh.prepare
    assert entry.run_dir_files == (cnnh.TARGETS_FILE,) and entry.loss_class() is cnnh.CNNHLoss


@pytest.mark.slow
def test_cnnh_trains_through_the_command_and_resume_reuses_stage_one(tmp_path):
    from tfhash.train import train

    folder = _write_folder(tmp_path / "colours")
    run_dir = tmp_path / "run"
    metrics = train(_config(run_dir, folder, method="cnnh", epochs=2, steps_per_epoch=6))
    assert metrics["map"] > 0.5  # four colour classes: chance is about 0.25
    saved = np.load(run_dir / "cnnh_targets.npz")
    assert saved["codes"].shape == (len(np.load(run_dir / "split" / "train.npy")), 8)
    header = (run_dir / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,regression,val_map"
    # Extended, the run reads its targets back; targets for other bits are refused.
    before = (run_dir / "cnnh_targets.npz").stat().st_mtime
    train(_config(run_dir, folder, method="cnnh", epochs=3, steps_per_epoch=6))
    assert (run_dir / "cnnh_targets.npz").stat().st_mtime == before
    config = json.loads((run_dir / "flags.json").read_text())
    split = type("Split", (), {"train": np.arange(3)})
    with pytest.raises(UsageError, match="other training images or another `bits`"):
        cnnh.prepare(type("C", (), {"bits": config["bits"], "seed": 0}), None, split, str(run_dir))
