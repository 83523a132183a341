"""tfhash.retrieval.codes: encode's file names written and read in one place, and the checks
on packed codes."""

import json
import os

import numpy as np
import pytest

from tfhash.errors import UsageError
from tfhash.retrieval import codes


def test_what_write_encoded_writes_read_encoded_reads(tmp_path):
    packed = np.packbits(np.random.default_rng(0).random((5, 12)) < 0.5, axis=1)
    arrays = {
        "codes": packed,
        "labels": np.arange(5) % 2,
        "item_ids": np.array([f"x/{i}.png" for i in range(5)]),
        "paths": np.array([f"/images/x/{i}.png" for i in range(5)]),
    }
    info = {"bits": 12, "class_names": ["ant", "bee"]}
    codes.write_encoded(str(tmp_path / "db"), arrays, info)
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(p) for p in codes.output_files(str(tmp_path), "db")
    )

    for where in (str(tmp_path), str(tmp_path / "db_codes.npy")):  # the directory, or the file
        items = codes.read_encoded(where)
        np.testing.assert_array_equal(items.codes, packed)
        assert items.item_ids.tolist() == arrays["item_ids"].tolist()
        assert items.paths.tolist() == arrays["paths"].tolist()
        assert items.labels.tolist() == arrays["labels"].tolist()
        assert (items.bits, items.class_names) == (12, ["ant", "bee"])
    codes_path = str(tmp_path / "db_codes.npy")
    assert codes.read_info(codes_path) == info
    assert codes.beside(codes_path, "labels") == str(tmp_path / "db_labels.npy")
    assert codes.beside(codes_path, "info") == str(tmp_path / "db_info.json")
    root = tmp_path / "root"
    root.mkdir()
    items = codes.read_encoded(str(tmp_path), image_root=str(root))  # paths from image_root
    assert items.paths[0] == os.path.join(str(root), "x/0.png")


def test_a_set_without_the_optional_files(tmp_path):
    """Codes from elsewhere: no info, no paths, no labels; the ids stand for the paths."""
    np.save(tmp_path / "q_codes.npy", np.zeros((2, 2), np.uint8))
    np.save(tmp_path / "q_item_ids.npy", np.array(["a", "b"]))
    items = codes.read_encoded(str(tmp_path / "q_codes.npy"), bits=10)
    assert items.paths.tolist() == ["a", "b"] and items.labels is None and items.bits == 10
    assert codes.read_info(str(tmp_path / "q_codes.npy")) == {}
    assert codes.beside(str(tmp_path / "q_codes.npy"), "paths") is None
    assert codes.beside(str(tmp_path / "elsewhere.npy"), "labels") is None


def test_the_refusals_name_the_arguments(tmp_path):
    with pytest.raises(UsageError, match="^`codes` is required"):
        codes.read_encoded("")
    with pytest.raises(UsageError, match="^codes=.* holds no <name>_codes.npy"):
        codes.read_encoded(str(tmp_path))
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}_codes.npy", np.zeros((1, 1), np.uint8))
    with pytest.raises(UsageError, match=r"holds several sets \(a, b\); choose one with `name`"):
        codes.read_encoded(str(tmp_path))
    with pytest.raises(UsageError, match="a_item_ids.npy is missing"):
        codes.read_encoded(str(tmp_path), name="a")
    (tmp_path / "a_info.json").write_text("{not json")
    with pytest.raises(UsageError, match="a_info.json is not readable JSON"):
        codes.read_info(str(tmp_path / "a_codes.npy"))
    with pytest.raises(UsageError, match="^`query_codes`: no such file"):
        codes.load_array(str(tmp_path / "none.npy"), "`query_codes`")
    with pytest.raises(ValueError, match="unknown encode outputs"):
        codes.write_encoded(str(tmp_path / "c"), {"embeddings": np.zeros(1)}, {})


def test_as_packed_packs_columns_and_checks_the_length():
    columns = np.array([[1, -1, 1, 1, -1, -1, 1, -1, 1, 1]])
    packed = codes.as_packed(columns, "query codes", code_bytes=2, bits=10)
    np.testing.assert_array_equal(packed, np.packbits(columns > 0, axis=1))
    with pytest.raises(UsageError, match="must be binary"):
        codes.as_packed(np.array([[0, 2]]), "query codes")
    with pytest.raises(UsageError, match="are 10-bit codes but the index holds 12-bit codes"):
        codes.as_packed(columns, "query codes", code_bytes=2, bits=12)


def test_hits_first_and_records():
    hits = codes.Hits(
        np.array([0, 1, 1]),
        np.array([2, 0, 1]),
        np.array(["c", "a", "b"]),
        np.array(["/c", "/a", "/b"]),
        [[1], [0], [1]],
    )
    first = hits.first(2)
    assert len(first) == 2 and first.labels == [[1], [0]]
    assert json.loads(json.dumps(first.records())) == [
        {"rank": 1, "item_id": "c", "path": "/c", "distance": 0, "labels": [1]},
        {"rank": 2, "item_id": "a", "path": "/a", "distance": 1, "labels": [0]},
    ]
    distances, positions = codes.ordered([2, 1, 1], [0, 9, 3])
    assert distances.tolist() == [1, 1, 2] and positions.tolist() == [3, 9, 0]
