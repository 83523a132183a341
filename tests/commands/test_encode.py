"""python -m tfhash.encode: a collection through an exported model into packed codes on disk."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfhash import data, evaluation
from tfhash.errors import UsageError
from tfhash.serving.encoding import encode_collection

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

BITS = 12  # the conftest's shared model
SIZE = 32


@pytest.fixture(scope="module")
def export_dir(version_dir):
    return os.path.dirname(version_dir)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An image folder root/<class>/<image>: 2 classes, PNG and JPEG files of several sizes."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(8)
    for cls, names in [("cat", ["0.png", "1.jpg", "2.png"]), ("dog", ["0.jpg", "1.png"])]:
        (root / cls).mkdir()
        for name in names:
            pixels = rng.integers(
                0, 256, (rng.integers(20, 50), rng.integers(20, 50), 3), dtype=np.uint8
            )
            encode = tf.io.encode_png if name.endswith(".png") else tf.io.encode_jpeg
            (root / cls / name).write_bytes(encode(pixels).numpy())
    return root


def expected_packed(model, paths):
    """Packed codes of image files, from the Keras model on the training decode."""
    images = np.stack([data.decode_image(open(p, "rb").read(), SIZE) for p in paths])
    h = model.predict(images, verbose=0)
    return np.packbits(np.where(h >= 0, 1, -1) > 0, axis=1)


def test_encodes_an_image_folder(model, export_dir, folder, tmp_path):
    result = encode_collection(
        export_dir, str(folder), str(tmp_path / "codes"), batch_size=2, verbose=False
    )
    item_ids = ["cat/0.png", "cat/1.jpg", "cat/2.png", "dog/0.jpg", "dog/1.png"]
    expected = {
        "codes": expected_packed(model, [folder / i for i in item_ids]),
        "labels": np.array([0, 0, 0, 1, 1]),
        "item_ids": np.array(item_ids),
    }
    assert result["bits"] == BITS
    assert result["prefix"] == str(tmp_path / "codes" / "all")
    for key, value in expected.items():
        saved = np.load(tmp_path / "codes" / f"all_{key}.npy")
        np.testing.assert_array_equal(saved, value, err_msg=key)
    assert np.load(tmp_path / "codes" / "all_codes.npy").dtype == np.uint8


def test_encodes_a_list_file_subset_with_multi_hot_labels(model, export_dir, folder, tmp_path):
    lines = ["cat/0.png 1 0 1", "cat/1.jpg 0 1 0", "dog/0.jpg 1 1 0", "dog/1.png 0 0 1"]
    list_file = folder / "list.txt"
    list_file.write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "query.npy", np.array([3, 0], np.int64))
    result = encode_collection(
        export_dir,
        str(list_file),
        str(tmp_path / "codes"),
        indices=str(tmp_path / "query.npy"),
        verbose=False,
    )
    assert result["prefix"] == str(tmp_path / "codes" / "query")
    np.testing.assert_array_equal(
        np.load(tmp_path / "codes" / "query_item_ids.npy"), ["dog/1.png", "cat/0.png"]
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "codes" / "query_labels.npy"), [[0, 0, 1], [1, 0, 1]]
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "codes" / "query_codes.npy"),
        expected_packed(model, [folder / "dog/1.png", folder / "cat/0.png"]),
    )


def test_encode_then_the_evaluate_cli(model, export_dir, tmp_path):
    """encode's files go straight into python -m tfhash.evaluate (packed codes with --bits)."""
    out = tmp_path / "codes"
    np.save(tmp_path / "query.npy", np.arange(0, 10))
    np.save(tmp_path / "database.npy", np.arange(10, 50))
    parts = encode_collection(
        export_dir,
        "digits",
        str(out),
        verbose=False,
        indices=[str(tmp_path / "query.npy"), str(tmp_path / "database.npy")],
    )
    assert [part["prefix"] for part in parts] == [str(out / "query"), str(out / "database")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.evaluate",
            f"--query_codes={out / 'query_codes.npy'}",
            f"--query_labels={out / 'query_labels.npy'}",
            f"--db_codes={out / 'database_codes.npy'}",
            f"--db_labels={out / 'database_labels.npy'}",
            f"--bits={BITS}",
            "--metrics=map",
            "--noplots",
            f"--out={tmp_path / 'report'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "report" / "metrics.json") as f:
        report = json.load(f)

    digits = data.load_collection("digits")
    images = np.concatenate([x for x, _ in data.eval_dataset(digits, np.arange(50), SIZE, 50)])
    codes = np.where(model.predict(images, verbose=0) >= 0, 1, -1)
    reference = evaluation.evaluate_codes(
        codes[:10], digits.labels[:10], codes[10:50], digits.labels[10:50], metrics=["map"]
    )
    assert report["data"]["bits"] == BITS
    assert report["map"] == reference["map"]


def test_bad_arguments_are_usage_errors(export_dir, folder, tmp_path):
    out = str(tmp_path / "codes")
    with pytest.raises(UsageError, match=r"no SavedModel in .*; export one"):
        encode_collection(str(tmp_path), str(folder), out)
    with pytest.raises(UsageError, match=r"indices=.*missing.npy does not exist"):
        encode_collection(export_dir, str(folder), out, indices=str(tmp_path / "missing.npy"))
    np.save(tmp_path / "far.npy", np.array([0, 5]))
    with pytest.raises(UsageError, match=r"indices=.*far.npy holds indices outside \[0, 5\)"):
        encode_collection(export_dir, str(folder), out, indices=str(tmp_path / "far.npy"))
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"out=.*file is a file; pass a directory"):
        encode_collection(export_dir, str(folder), str(tmp_path / "file"))
    with pytest.raises(UsageError, match="`data` is required"):
        encode_collection(export_dir, "", out)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfhash.encode", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def test_cli(export_dir, folder, tmp_path):
    result = run_cli(f"--model={export_dir}", f"--data={folder}", f"--out={tmp_path}", "--name=db")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"5 images → {BITS}-bit packed codes: {tmp_path / 'db'}_{{codes,labels,"
        "item_ids}.npy" in result.stdout
    )
    assert np.load(tmp_path / "db_codes.npy").shape == (5, 2)

    result = run_cli(f"--model={tmp_path}", f"--data={folder}", f"--out={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no SavedModel in {tmp_path} (no saved_model.pb and no integer version "
        "directories); export one with python -m tfhash.export"
    ]


def test_a_missing_data_path_is_named(export_dir, tmp_path):
    with pytest.raises(UsageError, match=r"data=.*nowhere: no such image folder or list file"):
        encode_collection(export_dir, str(tmp_path / "nowhere"), str(tmp_path / "codes"))


def test_existing_codes_are_never_overwritten_silently(export_dir, folder, tmp_path):
    out = tmp_path / "codes"
    first = encode_collection(export_dir, str(folder), str(out), verbose=False)
    before = np.load(out / "all_codes.npy")
    np.save(tmp_path / "two.npy", np.array([0, 1]))
    with pytest.raises(UsageError, match=r"all_codes.npy already exists.*`overwrite`"):
        encode_collection(
            export_dir, str(folder), str(out), name="all", indices=str(tmp_path / "two.npy")
        )
    np.testing.assert_array_equal(np.load(out / "all_codes.npy"), before)
    second = encode_collection(
        export_dir,
        str(folder),
        str(out),
        name="all",
        verbose=False,
        indices=str(tmp_path / "two.npy"),
        overwrite=True,
    )
    np.testing.assert_array_equal(second["codes"], first["codes"][:2])
    assert len(np.load(out / "all_codes.npy")) == 2
    # Image files are named by their paths, for an index or a gallery.
    assert np.load(out / "all_paths.npy")[0] == os.path.abspath(folder / second["item_ids"][0])


def test_one_image_as_data_is_one_line_pointing_to_search(export_dir, folder, tmp_path):
    """``--data=query.jpg`` was read as a list file: a 31-line UnicodeDecodeError."""
    result = run_cli(
        f"--model={export_dir}", f"--data={folder / 'cat' / '1.jpg'}", f"--out={tmp_path / 'codes'}"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --data={folder / 'cat' / '1.jpg'} is one image; encode takes an image folder "
        "(<root>/<class>/<image>) or a list file. To find the images nearest to it, give it to "
        "the search command as a query image, with an index and a model"
    ]
    assert not (tmp_path / "codes").exists()


def test_redirected_output_has_no_progress_bar_codes_and_the_info_names_bits_and_classes(
    export_dir, folder, tmp_path
):
    result = run_cli(
        f"--model={export_dir}", f"--data={folder}", f"--out={tmp_path}", "--batch_size=2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\x1b" not in result.stdout and "\r" not in result.stdout  # no colours, no redraws
    assert result.stdout.splitlines() == [
        f"5 images → {BITS}-bit packed codes: {tmp_path / 'all'}_{{codes,labels,item_ids}}.npy"
    ]
    info = json.loads((tmp_path / "all_info.json").read_text())
    assert (info["bits"], info["class_names"], info["count"]) == (BITS, ["cat", "dog"], 5)
    assert info["multi_label"] is False and info["data"] == str(folder)
    again = run_cli(f"--model={export_dir}", f"--data={folder}", f"--out={tmp_path}")
    assert again.returncode == 2 and "already exists" in again.stderr
