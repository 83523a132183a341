"""The run directory across failures: a failed start, a NaN, an extension, a kill mid-validation."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.train import train
from tfhash.training import callbacks
from tfhash.training import run_dir as run_dir_module

from helpers import train_config as _config
from helpers import write_folder as _write_folder

pytestmark = pytest.mark.slow  # trains networks and starts commands


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("colours"))


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_corrupt_image_then_the_corrected_command_goes_through(tmp_path, folder):
    broken = tmp_path / "images"
    for name in ("red", "green", "blue", "grey"):
        os.makedirs(broken / name)
        for image in sorted(os.listdir(folder / name))[:12]:
            (broken / name / image).write_bytes((folder / name / image).read_bytes())
    (broken / "grey" / "000.png").write_bytes(b"not a png")
    run_dir = tmp_path / "run"
    with pytest.raises(UsageError, match="cannot decode image .*000.png"):
        train(_config(run_dir, broken))
    assert run_dir.exists()  # the failed start left its flags and split behind

    (broken / "grey" / "000.png").write_bytes((folder / "grey" / "000.png").read_bytes())
    metrics = train(_config(run_dir, broken, bits=12, epochs=1))  # other settings too
    assert metrics["data"]["bits"] == 12
    assert json.loads((run_dir / "flags.json").read_text())["bits"] == 12


def test_too_few_images_per_class_then_a_smaller_batch_goes_through(tmp_path, folder):
    run_dir = tmp_path / "run"
    with pytest.raises(UsageError, match="images, but folder has 0; lower `images_per_class`"):
        train(_config(run_dir, folder, batch_size=80, images_per_class=40))
    train(_config(run_dir, folder, epochs=1, steps_per_epoch=1))
    assert (run_dir / "metrics.json").exists()


def test_a_finished_run_is_extended_by_more_epochs_with_a_recorded_change(tmp_path, folder):
    run_dir = tmp_path / "run"
    first = train(_config(run_dir, folder, epochs=2))
    second = train(_config(run_dir, folder, epochs=3, learning_rate=0.005))
    assert [int(row["epoch"]) for row in _history(run_dir)] == [0, 1, 2]
    kept = json.loads((run_dir / "finished_at_2" / "metrics.json").read_text())
    assert kept == json.loads(json.dumps(first))
    assert (run_dir / "finished_at_2" / "codes" / "query_codes.npy").exists()
    assert second["run"]["epochs"] == 3
    changes = json.loads((run_dir / "changes.json").read_text())
    assert changes[0]["from_epoch"] == 2
    assert changes[0]["changed"] == {"epochs": [2, 3], "learning_rate": [0.01, 0.005]}
    assert json.loads((run_dir / "flags.json").read_text())["learning_rate"] == 0.005
    # Settings that define the run still may not change.
    with pytest.raises(UsageError, match="bits=8 there vs 16 now"):
        train(_config(run_dir, folder, epochs=4, bits=16))


def test_a_kill_during_validation_repeats_that_epoch_and_keeps_its_row(
    tmp_path, folder, monkeypatch
):
    run_dir = tmp_path / "run"
    original = callbacks.ValidationMAP.on_epoch_end

    def killed_at_epoch_2(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # what a kill does to the process: nothing after it runs
        return original(self, epoch, logs)

    monkeypatch.setattr(callbacks.ValidationMAP, "on_epoch_end", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(_config(run_dir, folder, epochs=3))
    assert [row["epoch"] for row in _history(run_dir)] == ["0"]

    monkeypatch.setattr(callbacks.ValidationMAP, "on_epoch_end", original)
    train(_config(run_dir, folder, epochs=3))
    rows = _history(run_dir)
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert all(row["val_map"] for row in rows)


def test_history_has_val_map_when_validating_every_few_epochs(tmp_path, folder):
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, epochs=3, eval_every=2, steps_per_epoch=1))
    rows = _history(run_dir)
    assert list(rows[0]) == ["epoch", "loss", "semantic", "quantization", "isometric", "val_map"]
    assert [bool(row["val_map"]) for row in rows] == [False, True, True]  # epoch 2 and the last
    assert not any(key.startswith("val_") and key != "val_map" for key in rows[0])


def test_a_resumed_run_continues_the_batch_sequence():
    from tfhash import data

    collection = data.Collection(
        name="c",
        labels=np.repeat(np.arange(4), 6),
        class_names=list("abcd"),
        item_ids=np.array([f"i{i}" for i in range(24)]),
        pixels=np.random.default_rng(0).integers(0, 255, (24, 32, 32, 3), dtype=np.uint8),
    )
    args = (collection, np.arange(24), 32, 8, 2)
    whole = [labels.numpy() for _, labels in data.train_dataset(*args, seed=3).take(5)]
    resumed = [
        labels.numpy() for _, labels in data.train_dataset(*args, seed=3, start_step=3).take(2)
    ]
    np.testing.assert_array_equal(np.stack(whole[3:]), np.stack(resumed))


def test_a_directory_with_checkpoints_but_no_flags_is_refused(tmp_path, folder):
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, epochs=1, steps_per_epoch=1))
    os.remove(run_dir / "flags.json")
    with pytest.raises(UsageError, match="no flags.json"):
        train(_config(run_dir, folder, epochs=1, steps_per_epoch=1))
    assert (run_dir / "checkpoints" / "latest.keras").exists()


def test_commands_are_quiet_and_check_their_data_before_importing_tensorflow(tmp_path, folder):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.train",
            f"--run_dir={tmp_path / 'run'}",
            "--dataset=folder",
            f"--data_dir={folder}",
            "--protocol=fraction",
            "--bits=8",
            "--batch_size=16",
            "--images_per_class=4",
            "--epochs=1",
            "--steps_per_epoch=1",
            "--verbose=0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # no TensorFlow start-up lines, no Keras warnings
    probe = (
        "import sys\nfrom tfhash.train import TrainConfig\n"
        "try:\n    TrainConfig(run_dir='r', dataset='folder', data_dir='/no/such').validate()\n"
        "except Exception as e:\n    print(e)\nprint('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    ).stdout.splitlines()
    assert out == [
        "`data_dir` /no/such does not exist; point it at an image folder <root>/<class>/<image>",
        "False",
    ]


def test_hashing_losses_refuse_sample_weights_and_misspelt_arguments():
    from tfhash import losses

    loss = losses.get("lsdh")
    with pytest.raises(UsageError, match="drop sample_weight"):
        loss(tf.constant([0, 0, 1, 1]), tf.zeros((4, 8)), sample_weight=tf.zeros(4))
    with pytest.raises(UsageError, match="takes no argument 'margn'"):
        losses.get("lsdh", margn=1.0)


# ---------------------------------------------------------------------------------------------
# Faults (issue 28): a kill at the exact moment, damaged or missing files, a moved directory, a
# second command. Every resumed run is compared with one run of the same command uninterrupted.

# Random mining, the default, sampling: 8 of each anchor's 36 quadruplets.
FAULT_RUN = dict(epochs=3, steps_per_epoch=2, eval_every=1, quadruplets_per_anchor=8)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, folder):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    metrics = train(_config(run_dir, folder, **FAULT_RUN))
    return run_dir, metrics


def _weights(run_dir):
    """The latest checkpoint's weights and optimizer variables, by name, and its record."""
    import zipfile

    import h5py

    with zipfile.ZipFile(run_dir / "checkpoints" / "latest.keras") as archive:
        record = json.loads(archive.read(run_dir_module.CHECKPOINT_RECORD))
        with archive.open("model.weights.h5") as f, h5py.File(f, "r") as weights:
            arrays = {}
            weights.visititems(
                lambda name, item: (
                    arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
                )
            )
    return arrays, record


def assert_same_run(run_dir, reference):
    """The run in ``run_dir`` is bit for bit the uninterrupted one: weights, optimizer state,
    random state, every history value, the codes of the final report."""
    weights, record = _weights(run_dir)
    expected, expected_record = _weights(reference)
    assert record == expected_record
    assert sorted(weights) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(weights[name], expected[name], err_msg=name)
    assert _history(run_dir) == _history(reference)
    for name in ("query_codes", "database_codes", "query_embedding"):
        np.testing.assert_array_equal(
            np.load(run_dir / "codes" / f"{name}.npy"), np.load(reference / "codes" / f"{name}.npy")
        )


def _kill_at(monkeypatch, target, name, when):
    """Makes ``target.name`` raise KeyboardInterrupt (what a kill does: nothing after it runs)
    on the first call for which ``when(*args)`` holds; other calls run as before."""
    original = getattr(target, name)

    def killed(*args, **kwargs):
        if when(*args, **kwargs):
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, killed)


def test_a_resumed_run_is_the_uninterrupted_run_with_random_mining(
    tmp_path, folder, uninterrupted, monkeypatch
):
    run_dir = tmp_path / "run"
    _kill_at(
        monkeypatch,
        callbacks.ValidationMAP,
        "on_epoch_end",
        lambda self, epoch, logs=None: epoch == 1,
    )  # during epoch 2's validation
    with pytest.raises(KeyboardInterrupt):
        train(_config(run_dir, folder, **FAULT_RUN))
    monkeypatch.undo()
    assert _weights(run_dir)[1]["epoch"] == 1
    # The loss's mining state moved on during epoch 1 and is saved with the checkpoint.
    assert _weights(run_dir)[1]["random_state"][0][1] > 0
    train(_config(run_dir, folder, **FAULT_RUN))
    assert_same_run(run_dir, uninterrupted[0])


def test_a_kill_between_the_checkpoint_and_its_description_then_a_move_resumes_exactly(
    tmp_path, folder, uninterrupted, monkeypatch
):
    """Killed after epoch 2's checkpoint is renamed into place, before latest.keras.json says
    so (the issue: the rerun trained epoch 3 twice), and moved to another directory."""
    run_dir = tmp_path / "run"
    _kill_at(
        monkeypatch,
        callbacks,
        "_write_json",
        lambda path, value: path.endswith("latest.keras.json") and value["epoch"] == 2,
    )
    with pytest.raises(KeyboardInterrupt):
        train(_config(run_dir, folder, **FAULT_RUN))
    monkeypatch.undo()
    description = run_dir / "checkpoints" / "latest.keras.json"
    assert json.loads(description.read_text()) == {"epoch": 1}  # behind the checkpoint
    assert _weights(run_dir)[1]["epoch"] == 2

    moved = tmp_path / "elsewhere" / "run"
    shutil.move(run_dir, moved)
    train(_config(moved, folder, **FAULT_RUN))
    assert_same_run(moved, uninterrupted[0])  # epoch 3 trained once: the same optimizer count
    assert json.loads((moved / "checkpoints" / "latest.keras.json").read_text()) == {"epoch": 3}
    assert json.loads((moved / "flags.json").read_text())["run_dir"] == str(moved)
    assert not (moved / "changes.json").exists()  # a new place is not a change of the run


def _snapshot(run_dir):
    """Every file of a run directory and its bytes (the lock file aside)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def _refused(config, match):
    """train(config) raises a one-line UsageError matching ``match``."""
    with pytest.raises(UsageError, match=match) as refusal:
        train(config)
    assert "\n" not in str(refusal.value)
    return str(refusal.value)


@pytest.mark.parametrize(
    "damage,match",
    [
        ("latest_missing", r"holds a run that completed epochs .*latest.keras is missing"),
        ("latest_truncated", r"latest.keras is damaged \(BadZipFile"),
        ("flags_garbage", r"flags.json is damaged \(JSONDecodeError.*restore it"),
        ("old_checkpoint_without_description", r"does not say how many epochs it holds"),
    ],
)
def test_a_damaged_or_missing_file_is_refused_in_one_line_and_nothing_changes(
    tmp_path, folder, uninterrupted, damage, match
):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    latest = run_dir / "checkpoints" / "latest.keras"
    if damage == "latest_missing":
        latest.unlink()
    elif damage == "latest_truncated":
        latest.write_bytes(latest.read_bytes()[:5000])
    elif damage == "flags_garbage":
        (run_dir / "flags.json").write_text('{"bits": 8, "meth')
    else:  # a checkpoint of an earlier tfhash (no record inside) and its description lost
        _without_record(latest)
        (run_dir / "checkpoints" / "latest.keras.json").unlink()
    before = _snapshot(run_dir)
    for epochs in (3, 4):  # reported as finished, or extended
        _refused(_config(run_dir, folder, **dict(FAULT_RUN, epochs=epochs)), match)
    assert _snapshot(run_dir) == before


def _without_record(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = {
            name: archive.read(name)
            for name in archive.namelist()
            if name != run_dir_module.CHECKPOINT_RECORD
        }
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_a_lost_description_is_recovered_and_a_damaged_report_is_written_anew(
    tmp_path, folder, uninterrupted
):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    description = run_dir / "checkpoints" / "latest.keras.json"
    description.unlink()  # the checkpoint says its epoch itself
    assert train(_config(run_dir, folder, **FAULT_RUN)) == json.loads(
        (run_dir / "metrics.json").read_text()
    )
    assert json.loads(description.read_text()) == {"epoch": 3}

    report = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text((run_dir / "metrics.json").read_text()[:100])
    before = _snapshot(run_dir)
    message = _refused(_config(run_dir, folder, **FAULT_RUN), r"metrics.json is damaged")
    assert "remove it and run the same command again" in message
    assert _snapshot(run_dir) == before
    os.remove(run_dir / "metrics.json")  # what the message advises: the report, not training
    again = train(_config(run_dir, folder, **FAULT_RUN))
    for key in report:
        if key != "run":
            assert again[key] == report[key], key
    assert_same_run(run_dir, uninterrupted[0])


def test_a_second_command_on_a_run_directory_is_refused_naming_the_first(tmp_path, folder):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tfhash.training.run_dir import RunDir; "
            f"RunDir({str(run_dir)!r}).lock(); print('locked', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tfhash.train",
                f"--run_dir={run_dir}",
                "--dataset=folder",
                f"--data_dir={folder}",
                "--protocol=fraction",
                "--epochs=1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"error: run directory {run_dir} is in use by pid {holder.pid} on "
        ), lines
        assert "from tfhash.training.run_dir import RunDir" in lines[0]  # its command
        assert "since 20" in lines[0]
        with pytest.raises(UsageError, match=f"in use by pid {holder.pid}"):
            train(_config(run_dir, folder, epochs=1, steps_per_epoch=1))
    finally:
        holder.kill()  # SIGKILL: the holder never releases its lock itself
        holder.wait()
    assert os.listdir(run_dir) == ["lock"]  # the refused commands wrote nothing
    train(_config(run_dir, folder, epochs=1, steps_per_epoch=1))  # a stale lock blocks nothing
    assert (run_dir / "metrics.json").exists()


def test_the_nan_advice_is_a_learning_rate_that_can_train(tmp_path, folder):
    from tfhash.train import TrainingStopped

    with pytest.raises(
        TrainingStopped,
        match=r"rerun with a lower `learning_rate` \(e.g. "
        r"learning_rate=0.01\)",
    ):
        # The 1e6 diverges later; 1e30 at the first step: the advice was 1e+29.
        train(_config(tmp_path / "run", folder, epochs=1, steps_per_epoch=2, learning_rate=1e30))
