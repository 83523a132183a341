"""Faults a user's machine suffers (issue 28): a full disk under train, export and index (one
line, the earlier state intact, no partial files), and bad batches sent to the SavedModel (an
empty one, an image too small or not an image)."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tfhash import errors, retrieval, serving
from tfhash.errors import UsageError

from helpers import train_config as _config
from helpers import write_folder as _write_folder

pytestmark = pytest.mark.slow  # kills and resumes training runs


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs: a disk that fills up. Mounting needs root (CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, and mounting one needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()[:100]})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk, leave):
    """Fills ``disk`` up to ``leave`` free bytes; returns the filler file (remove it to free)."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def _command(function, capsys):
    """Runs ``function`` as a command's main does (tfhash.cli.run's error handling); returns
    (exit status, stderr lines)."""
    with pytest.raises(SystemExit) as exit_info:
        errors.exit_on_usage_error(lambda argv: function())(["command"])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def _partial_files(root):
    return [str(p) for p in root.rglob("*") if ".partial" in p.name]


def test_a_full_disk_stops_training_in_one_line_and_keeps_the_last_epoch(
    small_disk, tmp_path, capsys
):
    from tfhash.train import train
    from tfhash.training import run_dir as run_dir_module

    folder = _write_folder(tmp_path / "colours")
    run_dir = small_disk / "run"
    config = _config(run_dir, folder, epochs=3, steps_per_epoch=1)
    # 16 MB hold epoch 1's two checkpoints (best.keras and latest.keras, 5-6 MB each) but not
    # a third file of that size beside them: epoch 2's first checkpoint write fills the disk.
    status, lines = _command(lambda: train(config), capsys)
    assert status == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: no space left on the device")
    assert "run the same command again" in lines[0]
    assert run_dir_module.RunDir(str(run_dir)).completed_epochs() == 1  # intact, readable
    assert not _partial_files(run_dir)

    moved = tmp_path / "run"  # more space: the same run, elsewhere
    subprocess.run(["cp", "-a", str(run_dir), str(moved)], check=True)
    train(_config(moved, folder, epochs=3, steps_per_epoch=1))
    assert (moved / "metrics.json").exists()
    assert run_dir_module.RunDir(str(moved)).completed_epochs() == 3


def test_a_full_disk_stops_an_index_append_in_one_line_and_keeps_the_index(small_disk, capsys):
    from tfhash import index as index_command

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (40000, 8), dtype=np.uint8)
    ids = np.array([f"item{i:05d}" for i in range(len(codes))])
    encoded = small_disk / "codes"
    encoded.mkdir()
    for name, part in (("first", slice(0, 20000)), ("second", slice(20000, None))):
        np.save(encoded / f"{name}_codes.npy", codes[part])
        np.save(encoded / f"{name}_item_ids.npy", ids[part])
    out = small_disk / "index"
    index_command.build(str(encoded), out=str(out), name="first")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    filler = _fill(small_disk, leave=100_000)  # the new generation needs about 1 MB

    status, lines = _command(
        lambda: index_command.build(str(encoded), out=str(out), name="second"), capsys
    )
    assert (
        status == 1
        and len(lines) == 1
        and lines[0].startswith("error: no space left on the device")
    ), lines
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial file either
    assert retrieval.open_index(str(out)).size == 20000

    filler.unlink()
    index_command.build(str(encoded), out=str(out), name="second")
    np.testing.assert_array_equal(retrieval.open_index(str(out)).item_ids, ids)


def test_a_full_disk_stops_an_export_in_one_line_and_leaves_no_partial_version(
    small_disk, model, capsys
):
    export_dir = small_disk / "models"
    export_dir.mkdir()
    _fill(small_disk, leave=200_000)  # the SavedModel needs a few MB
    status, lines = _command(lambda: serving.export_model(model, str(export_dir)), capsys)
    assert (
        status == 1
        and len(lines) == 1
        and lines[0].startswith("error: no space left on the device")
    ), lines
    assert os.listdir(export_dir) == []  # neither a version nor a .partial- directory


# ---------------------------------------------------------------------------------------------
# The SavedModel's encode_images signature, and queries by image.


def _png(height, width):
    pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def test_an_empty_batch_gets_empty_outputs(version_dir):
    signatures = tf.saved_model.load(version_dir).signatures
    for name, inputs in (
        (serving.IMAGES_SIGNATURE, {"images": tf.zeros([0, 32, 32, 3])}),
        (serving.BYTES_SIGNATURE, {"image_bytes": tf.constant([], tf.string)}),
    ):
        outputs = signatures[name](**inputs)  # failed: "Incompatible shapes: [32] vs. [0,32,32,3]"
        assert outputs["codes"].shape == (0, 12) and outputs["codes"].dtype == tf.int8, name
        assert outputs["packed"].shape == (0, 2) and outputs["embedding"].shape == (0, 12), name


def test_an_image_too_small_is_refused_and_the_smallest_accepted(version_dir):
    encode = tf.saved_model.load(version_dir).signatures[serving.BYTES_SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than 8 x 8 pixels"):
        encode(image_bytes=tf.constant([_png(1, 1)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than 8 x 8 pixels"):
        encode(image_bytes=tf.constant([_png(40, 7)]))
    codes = encode(image_bytes=tf.constant([_png(8, 8), _png(40, 30)]))["codes"].numpy()
    assert codes.shape == (2, 12) and set(np.unique(codes)) <= {-1, 1}


def test_a_query_image_the_model_cannot_take_is_named_with_the_reason(version_dir, tmp_path):
    good, bad, tiny = tmp_path / "good.png", tmp_path / "bad.png", tmp_path / "tiny.png"
    good.write_bytes(_png(32, 32))
    bad.write_bytes(b"not an image at all")
    tiny.write_bytes(_png(1, 1))
    with pytest.raises(UsageError) as refusal:  # was: "(Graph execution error:)"
        retrieval.encode_image_files(version_dir, [str(good), str(bad)])
    message = str(refusal.value)
    assert f"cannot decode {bad} (Unknown image file format" in message and "\n" not in message
    with pytest.raises(UsageError, match=f"{tiny} is smaller than 8 x 8 pixels"):
        retrieval.encode_image_files(version_dir, [str(tiny), str(good)])
    packed, bits = retrieval.encode_image_files(version_dir, [str(good)])
    assert packed.shape == (1, 2) and bits == 12
