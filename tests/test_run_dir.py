"""The run directory across failures: a failed start, a NaN, an extension, a kill mid-validation."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfhash import callbacks
from tfhash.errors import UsageError
from tfhash.train import train

from test_train import _config, _write_folder


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
    with pytest.raises(UsageError, match="lower --images_per_class or --batch_size"):
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
    with pytest.raises(UsageError, match="--bits=8 there vs 16 now"):
        train(_config(run_dir, folder, epochs=4, bits=16))


def test_a_kill_during_validation_repeats_that_epoch_and_keeps_its_row(tmp_path, folder,
                                                                       monkeypatch):
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

    collection = data.Collection(name="c", labels=np.repeat(np.arange(4), 6),
                                 class_names=list("abcd"),
                                 item_ids=np.array([f"i{i}" for i in range(24)]),
                                 pixels=np.random.default_rng(0).integers(
                                     0, 255, (24, 32, 32, 3), dtype=np.uint8))
    args = (collection, np.arange(24), 32, 8, 2)
    whole = [labels.numpy() for _, labels in data.train_dataset(*args, seed=3).take(5)]
    resumed = [labels.numpy() for _, labels in
               data.train_dataset(*args, seed=3, start_step=3).take(2)]
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
        [sys.executable, "-m", "tfhash.train", f"--run_dir={tmp_path / 'run'}",
         "--dataset=folder", f"--data_dir={folder}", "--protocol=fraction", "--bits=8",
         "--batch_size=16", "--images_per_class=4", "--epochs=1", "--steps_per_epoch=1",
         "--verbose=0"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # no TensorFlow start-up lines, no Keras warnings
    probe = ("import sys\nfrom tfhash.train import TrainConfig\n"
             "try:\n    TrainConfig(run_dir='r', dataset='folder', data_dir='/no/such').validate()\n"
             "except Exception as e:\n    print(e)\nprint('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120).stdout.splitlines()
    assert out == ["--data_dir /no/such does not exist; point it at an image folder "
                   "<root>/<class>/<image>", "False"]


def test_hashing_losses_refuse_sample_weights_and_misspelt_arguments():
    from tfhash import losses

    loss = losses.get("lsdh")
    with pytest.raises(UsageError, match="drop sample_weight"):
        loss(tf.constant([0, 0, 1, 1]), tf.zeros((4, 8)), sample_weight=tf.zeros(4))
    with pytest.raises(UsageError, match="takes no argument 'margn'"):
        losses.get("lsdh", margn=1.0)
