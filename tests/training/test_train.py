"""`python -m tfhash.train`: end-to-end runs, the run directory, resume after a kill, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.train import TrainConfig, train
from tfhash.training import callbacks

from helpers import as_flags, train_settings
from helpers import map_of as _map_of
from helpers import run_cli as _cli
from helpers import train_config as _config

pytestmark = pytest.mark.slow  # trains networks and starts the command


def test_a_run_fills_its_directory_and_reports_map_above_chance(tmp_path, folder):
    run_dir = tmp_path / "run"
    # 18 steps: on seeds 0, 1, 2 the query MAP was 0.97-1.0 (TF 2.21, Keras 3.15), so the
    # bound has a wide margin; with 9 steps and a 10x head learning rate it ranged 0.27-0.62.
    metrics = train(_config(run_dir, folder, epochs=3, steps_per_epoch=6))
    for name in (
        "flags.json",
        "flags.cfg",
        "split/train.npy",
        "split/query.npy",
        "checkpoints/best.keras",
        "checkpoints/latest.keras",
        "history.csv",
        "codes/query_codes.npy",
        "codes/database_codes.npy",
        "metrics.json",
    ):
        assert (run_dir / name).exists(), name
    assert os.listdir(run_dir / "logs")  # TensorBoard event files
    assert json.loads((run_dir / "checkpoints" / "latest.keras.json").read_text()) == {"epoch": 3}
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert _map_of(metrics) > 0.5  # four colour classes: chance is about 0.25

    # The saved codes are the sign of the best checkpoint's relaxed codes on the query images.
    model = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    from tfhash import data

    collection = data.load_collection("folder", str(folder))
    query = np.load(run_dir / "split" / "query.npy")
    codes, _, _ = callbacks.encode(model, data.eval_dataset(collection, query, 32, 64))
    np.testing.assert_array_equal(codes, np.load(run_dir / "codes" / "query_codes.npy"))
    assert set(np.unique(codes)) <= {-1, 1}

    # A finished run is never retrained or overwritten: it reports its metrics.
    before = (run_dir / "checkpoints" / "best.keras").stat().st_mtime
    assert train(_config(run_dir, folder, epochs=3, steps_per_epoch=6)) == on_disk
    assert (run_dir / "checkpoints" / "best.keras").stat().st_mtime == before


def test_every_loss_term_is_in_the_history(tmp_path, folder):
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, epochs=1))
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    for term in ("loss", "semantic", "quantization", "isometric", "val_map"):
        assert term in header


def test_mixed_bfloat16_run_trains_with_float32_codes(tmp_path, folder):
    try:
        metrics = train(
            _config(tmp_path / "run", folder, epochs=1, mixed_precision="mixed_bfloat16")
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(_map_of(metrics))
    assert np.load(tmp_path / "run" / "codes" / "query_embedding.npy").dtype == np.float32


def test_resume_after_a_kill_continues_from_the_last_epoch(tmp_path, folder):
    run_dir = tmp_path / "run"
    settings = train_settings(run_dir, folder, epochs=6, steps_per_epoch=4, eval_every=100)
    process = subprocess.Popen(
        [sys.executable, "-m", "tfhash.train", *as_flags(settings)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metadata = run_dir / "checkpoints" / "latest.keras.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "metrics.json").exists(), "the run finished before it was killed"
    done_before = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done_before < 6
    rows_before = len((run_dir / "history.csv").read_text().splitlines())

    # The same command again (in this process: TrainConfig's defaults are the command's).
    train(TrainConfig(**settings))
    rows = (run_dir / "history.csv").read_text().splitlines()
    epochs_after = [int(row.split(",")[0]) for row in rows[rows_before:]]
    assert epochs_after == list(range(done_before, 6))  # resumed, not restarted
    assert (run_dir / "metrics.json").exists()


def test_a_run_with_its_margin_spelled_out_resumes_under_a_config_that_leaves_it_unset(
    tmp_path, folder
):
    """The per-length configs before margin=None meant K/2 wrote --margin=24 into flags.json; the
    per-method config that replaced them leaves the margin unset. Resuming takes the run's."""
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, method="lsdh", margin=2.0, epochs=1, steps_per_epoch=2))
    metrics = train(_config(run_dir, folder, method="lsdh", epochs=2, steps_per_epoch=2))
    assert json.loads((run_dir / "flags.json").read_text())["margin"] == 2.0
    assert json.loads((run_dir / "checkpoints" / "latest.keras.json").read_text()) == {"epoch": 2}
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    # A value set on the command line is still compared: a different margin is refused.
    with pytest.raises(UsageError, match="margin=2.0 there vs 3.0 now"):
        train(_config(run_dir, folder, method="lsdh", margin=3.0, epochs=3, steps_per_epoch=2))


def test_nan_loss_stops_training_and_keeps_the_last_good_state(tmp_path):
    step = tf.Variable(0)

    def loss(y_true, y_pred):  # finite for 4 steps (two epochs), then NaN
        step.assign_add(1)
        value = tf.reduce_mean(tf.square(y_pred))
        return tf.where(step > 4, tf.constant(np.nan), value)

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss=loss, run_eagerly=True)
    backup = tmp_path / "backup"
    latest = tmp_path / "latest.keras"
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    with pytest.raises(callbacks.NaNLossError, match="epoch 3, batch 1"):
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=5,
            verbose=0,
            callbacks=[
                callbacks.StopOnNaN(),
                keras.callbacks.BackupAndRestore(backup),
                keras.callbacks.ModelCheckpoint(latest),
            ],
        )
    saved = keras.saving.load_model(latest, compile=False)
    assert all(np.all(np.isfinite(w)) for w in saved.get_weights())
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2


def test_cli_nan_loss_exits_with_a_message_whose_advice_trains(tmp_path, folder):
    settings = train_settings(tmp_path / "run", folder, learning_rate=1e30)
    result = _cli(*as_flags(settings))
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the loss became nan") and "--learning_rate" in error
    advised = float(re.search(r"--learning_rate=([^ )]+)", error).group(1))
    assert advised < 1e30

    # The advice works: the same settings with the advised learning rate go through (in this
    # process: TrainConfig's defaults are the command's, so this is the corrected command).
    train(TrainConfig(**{**settings, "learning_rate": advised}))
    assert (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--no_such_flag=1"], "no_such_flag"),
        (["--bits=0"], "--bits must be at least 1"),
        (["--quantization_weight=-1"], "--quantization_weight"),
        (["--images_per_class=1"], "--images_per_class must be at least 2"),
        (["--batch_size=16", "--images_per_class=16"], "no anchor would have a negative"),
        (["--batch_size=30", "--images_per_class=4"], "not a multiple"),
        (["--mining=some"], "mining"),
        (["stray_argument"], "unexpected arguments"),
        (["--image_size=0"], "--image_size must be at least 32"),
        (["--image_size=-5"], "--image_size must be at least 32"),
        (["--method=lsdhh"], "unknown method 'lsdhh'"),
        (["--augment=flip"], "augment"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(tmp_path, args, message):
    result = _cli(f"--run_dir={tmp_path / 'run'}", *args, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_quadruplets_need_three_images_per_class(tmp_path, folder):
    with pytest.raises(Exception, match="`images_per_class` to at least 3"):
        train(_config(tmp_path / "run", folder, images_per_class=2))
    train(
        _config(
            tmp_path / "triplet",
            folder,
            method="triplet",
            batch_size=8,
            images_per_class=2,
            epochs=1,
            steps_per_epoch=1,
        )
    )  # a triplet needs one positive


def test_missing_data_directory_exits_2(tmp_path):
    result = _cli(
        f"--run_dir={tmp_path / 'run'}", "--dataset=folder", f"--data_dir={tmp_path / 'nothing'}"
    )
    assert result.returncode == 2
    # TensorFlow's own start-up log lines may precede it; our error is one line.
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing" in errors[0] and "Traceback" not in result.stderr


def test_a_run_directory_with_other_settings_is_not_overwritten(tmp_path, folder):
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, epochs=1))
    metrics = (run_dir / "metrics.json").read_text()
    with pytest.raises(Exception, match="bits=8 there vs 16 now"):
        train(_config(run_dir, folder, epochs=1, bits=16))
    assert (run_dir / "metrics.json").read_text() == metrics


def test_a_foreign_non_empty_directory_is_refused(tmp_path, folder):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(Exception, match="holds no tfhash run"):
        train(_config(tmp_path / "mine", folder))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_written_flagfile_reproduces_the_run(tmp_path, folder):
    """Rerunning with the run's own flags.cfg is recognised as the same (finished) run."""
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, epochs=1))
    result = _cli(f"--flagfile={run_dir / 'flags.cfg'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already finished" in result.stdout


def test_multi_label_list_file_trains_end_to_end_and_is_scored_by_map_at_k(tmp_path):
    """Multi-hot labels: LSDH's Eq. 13 form with mu = 0.75, scored by MAP@k, shared-label relevance."""
    from tfhash import evaluation, losses

    rng = np.random.default_rng(1)
    colours = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200)])
    lines = []
    for i in range(120):
        labels = np.zeros(4, int)
        labels[i % 3] = 1  # a colour concept
        labels[3] = int(i % 2 == 0)  # an extra concept (bright), on half the images
        pixels = rng.normal(colours[i % 3] * (1.2 if labels[3] else 0.8), 30, (12, 12, 3))
        tf.io.write_file(
            str(tmp_path / "images" / f"{i:03d}.png"),
            tf.io.encode_png(np.clip(pixels, 0, 255).astype(np.uint8)),
        )
        lines.append(f"images/{i:03d}.png " + " ".join(map(str, labels)))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")

    run_dir = tmp_path / "run"
    train(
        TrainConfig(
            run_dir=str(run_dir),
            dataset="list",
            data_dir=str(tmp_path / "train.txt"),
            protocol="fraction:query=0.2",
            bits=8,
            batch_size=16,
            images_per_class=4,
            epochs=3,
            steps_per_epoch=4,
            eval_every=1,
            verbose=0,
        )
    )
    codes = {
        name: np.load(run_dir / "codes" / f"{name}.npy")
        for name in ("query_codes", "query_labels", "database_codes", "database_labels")
    }
    assert codes["query_labels"].ndim == 2 and codes["query_labels"].shape[1] == 4
    report = json.loads((run_dir / "metrics.json").read_text())  # multi-label criteria too
    k = min(100, len(codes["database_labels"]))
    for name in ("map:jaccard>=0.5", f"ndcg@{k}:shared", f"ndcg@{k}:jaccard"):
        assert 0 <= report[name] <= 1, name
    assert report[f"acg@{k}:shared"] > 0  # mean shared labels of the top k
    assert losses.get("lsdh").isometric_weight_for(codes["query_labels"]) == 0.75
    map_at_10 = evaluation.mean_average_precision(
        codes["query_codes"],
        codes["query_labels"],
        codes["database_codes"],
        codes["database_labels"],
        top_k=10,
    )
    relevant = (codes["query_labels"] @ codes["database_labels"].T > 0).mean()
    assert map_at_10 > relevant  # better than a random ranking's precision


def test_a_shallow_method_trains_and_exports_through_the_commands(tmp_path):
    run_dir, models_dir = tmp_path / "itq", tmp_path / "models"
    result = _cli(
        f"--run_dir={run_dir}", "--method=itq", "--bits=32", "--backbone=pixels", "--image_size=8"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["method"] == "itq" and _map_of(metrics) > 0.4  # chance: about 0.1
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.export",
            f"--run_dir={run_dir}",
            f"--export_dir={models_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    from tfhash import data, shallow

    digits = data.load_collection("digits")
    query = np.load(run_dir / "split" / "query.npy")[:16]
    images = np.concatenate([x for x, _ in data.eval_dataset(digits, query, 8, 16)])
    served = tf.saved_model.load(str(models_dir / "1")).signatures["serving_default"]
    codes = served(images=tf.constant(images))["codes"].numpy()
    np.testing.assert_array_equal(codes, np.load(run_dir / "codes" / "query_codes.npy")[:16])
    assert shallow.load(str(run_dir / "shallow")).bits == 32
