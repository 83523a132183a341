"""python -m tfhash.search: queries by code and by image (through the exported model) on an index
of an encoded image folder, the results JSON, the gallery, and the error paths (exit 2)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfhash import gallery, retrieval
from tfhash.errors import UsageError
from tfhash.serving.encoding import encode_collection

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

pytest.importorskip("faiss", reason="the faiss backend needs faiss-cpu (a core dependency)")

BITS = 12  # the conftest's shared model
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def export_dir(version_dir):
    return os.path.dirname(version_dir)


@pytest.fixture(scope="module")
def collection(tmp_path_factory, export_dir):
    """An image folder root/<class>/<image> (3 classes, PNG and JPEG of several sizes), encoded
    by the exported model and indexed with FAISS."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for c, cls in enumerate(["cat", "dog", "owl"]):
        (root / cls).mkdir()
        for i in range(8):
            size = rng.integers(24, 48, 2)
            pixels = np.clip(rng.normal(60 + 70 * c, 50, (*size, 3)), 0, 255).astype(np.uint8)
            encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
            (root / cls / f"{i}.{'png' if i % 2 else 'jpg'}").write_bytes(encode(pixels).numpy())
    codes = tmp_path_factory.mktemp("codes")
    encoded = encode_collection(
        export_dir, str(root), str(codes), name="db", batch_size=7, verbose=False
    )
    index_dir = str(tmp_path_factory.mktemp("index") / "faiss")
    index = retrieval.FaissIndex(bits=encoded["bits"])
    index.add(
        encoded["codes"],
        encoded["item_ids"],
        paths=[str(root / i) for i in encoded["item_ids"]],
        labels=encoded["labels"],
    )
    index.save(index_dir)
    return {"root": root, "codes_dir": codes, "index": index_dir, **encoded}


def brute_force_topk(database, queries, k):
    d = np.unpackbits(queries[:, None, :] ^ database[None, :, :], axis=2).sum(axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def run_search(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfhash.search", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def test_query_by_image_equals_query_by_their_encoded_codes(collection, export_dir):
    item_ids = collection["item_ids"]
    picked = [0, 9, 17, 23]
    files = [str(collection["root"] / item_ids[i]) for i in picked]
    codes, bits = retrieval.encode_image_files(export_dir, files, batch_size=3)
    assert bits == BITS
    np.testing.assert_array_equal(codes, collection["codes"][picked])  # the same as encode's

    index = retrieval.open_index(collection["index"])
    by_image = index.search(codes, 6)
    by_code = index.search(collection["codes"][picked], 6)
    distances, positions = brute_force_topk(collection["codes"], collection["codes"][picked], 6)
    for a, b, d, p in zip(by_image, by_code, distances, positions):
        assert a.records() == b.records()
        np.testing.assert_array_equal(a.distances, d)
        np.testing.assert_array_equal(a.item_ids, item_ids[p])


def test_cli_by_image_writes_results_and_the_gallery(collection, export_dir, tmp_path):
    out, picture = tmp_path / "results.json", tmp_path / "gallery.png"
    images = f"{collection['root'] / 'dog'},{collection['root'] / 'cat' / '1.png'}"
    np.save(tmp_path / "ql.npy", np.array([1] * 8 + [0]))
    result = run_search(
        f"--index={collection['index']}",
        f"--images={images}",
        f"--model={export_dir}",
        "--k=5",
        f"--out={out}",
        f"--gallery={picture}",
        f"--query_labels={tmp_path / 'ql.npy'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        f"9 queries, 45 results from faiss: 24 items, 12-bit codes: {out}",
        f"gallery: {picture}",
    ]
    with open(out) as f:
        report = json.load(f)
    assert (report["mode"], report["k"], report["bits"]) == ("top-k", 5, BITS)
    assert report["tie_rule"] == retrieval.TIE_RULE
    files = sorted(str(p) for p in (collection["root"] / "dog").iterdir())
    assert [q["id"] for q in report["queries"]] == files + [
        str(collection["root"] / "cat" / "1.png")
    ]

    codes = collection["codes"]
    rows = [
        list(collection["item_ids"]).index(os.path.relpath(f, collection["root"]))
        for f in files + [str(collection["root"] / "cat" / "1.png")]
    ]
    distances, positions = brute_force_topk(codes, codes[rows], 5)
    for query, d, p in zip(report["queries"], distances, positions):
        assert [r["distance"] for r in query["results"]] == d.tolist()
        assert [r["item_id"] for r in query["results"]] == collection["item_ids"][p].tolist()
        assert [r["path"] for r in query["results"]] == [
            str(collection["root"] / i) for i in collection["item_ids"][p]
        ]
        assert [r["labels"] for r in query["results"]] == [
            [int(c)] for c in collection["labels"][p]
        ]
        assert [r["rank"] for r in query["results"]] == [1, 2, 3, 4, 5]
    assert picture.read_bytes().startswith(PNG_MAGIC)


def test_cli_by_codes_radius_with_encode_siblings(collection, tmp_path):
    out = tmp_path / "results.json"
    query_codes = collection["codes_dir"] / "db_codes.npy"  # db_item_ids, db_labels next to it
    result = run_search(
        f"--index={collection['index']}",
        f"--query_codes={query_codes}",
        "--radius=2",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out) as f:
        report = json.load(f)
    assert report["mode"] == "radius" and report["radius"] == 2
    codes = collection["codes"]
    d = np.unpackbits(codes[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
    for i, query in enumerate(report["queries"]):
        assert query["id"] == collection["item_ids"][i]
        assert query["labels"] == [int(collection["labels"][i])]
        inside = np.flatnonzero(d[i] <= 2)
        inside = inside[np.argsort(d[i][inside], kind="stable")]
        assert [r["item_id"] for r in query["results"]] == collection["item_ids"][inside].tolist()


def test_gallery_frames_relevant_results_green_and_others_red(collection, tmp_path):
    index = retrieval.open_index(collection["index"])
    hits = index.search(collection["codes"][:3], 4)
    labels = retrieval.label_sets(collection["labels"][:3])
    relevant = [gallery.relevance(q, h.labels) for q, h in zip(labels, hits)]
    assert relevant[0] == [
        int(c) == int(collection["labels"][0]) for c in [h[0] for h in hits[0].labels]
    ]
    queries = [(str(collection["root"] / i), i) for i in collection["item_ids"][:3]]
    path = gallery.draw_gallery(str(tmp_path / "g.png"), queries, hits, relevant, thumbnail=40)
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)

    def share(colour):
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        return np.mean(np.abs(pixels - rgb).sum(axis=1) < 30)

    assert share(gallery.GREEN) > 0.002 if any(sum(r) for r in relevant) else True
    assert share(gallery.RED) > 0.002 if not all(all(r) for r in relevant) else True
    assert image.size[1] > image.size[0] / 5 * 3 / 2  # 3 rows of 5 tiles
    # Without labels, every frame is grey; a missing image is a placeholder tile.
    gallery.draw_gallery(str(tmp_path / "plain.png"), [(None, "q")], hits[:1], None)
    assert (tmp_path / "plain.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--index={index}", "--query_codes={codes}", "--k=0"],
            "error: --k must be at least 1, got 0",
        ),
        (
            ["--index={index}", "--query_codes={codes}", "--k=25"],
            "error: --k=25 is larger than the index (24 items); ask for at most 24",
        ),
        (
            ["--index={index}", "--query_codes={codes}", "--radius=-1"],
            "error: --radius must be 0 or more (Hamming distance), got -1",
        ),
        (
            ["--index={index}", "--query_codes={wide}"],
            "error: query codes are 3-byte codes (up to 24 bits) but the index holds 12-bit codes",
        ),
        (
            ["--index={plain}", "--query_codes={codes}"],
            "error: {plain} is not a tfhash index (no tfhash_index.json); build one with python -m "
            "tfhash.index",
        ),
        (["--index={index}", "--images={bad}"], "error: --images needs --model"),
        (["--index={index}"], "error: give exactly one of --query_codes"),
        (
            [
                "--index={index}",
                "--query_codes={codes}",
                "--gallery={gallery}",
                "--gallery_queries=0",
            ],
            "error: --gallery_queries must be at least 1, got 0",
        ),
        (
            ["--index=http://127.0.0.1:1", "--query_codes={codes}", "--timeout=2"],
            "error: Milvus at http://127.0.0.1:1 does not answer within 2 s",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(collection, export_dir, tmp_path, args, message):
    if "Milvus" in message:
        pytest.importorskip("pymilvus", reason="Milvus client not installed")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    np.save(tmp_path / "wide.npy", np.zeros((2, 3), np.uint8))
    (tmp_path / "bad.png").write_text("not an image")
    fill = {
        "index": collection["index"],
        "codes": collection["codes_dir"] / "db_codes.npy",
        "wide": tmp_path / "wide.npy",
        "plain": plain,
        "bad": tmp_path / "bad.png",
        "model": export_dir,
        "gallery": tmp_path / "g.png",
    }
    result = run_search(*[a.format(**fill) for a in args], f"--out={tmp_path / 'r.json'}")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**fill)), lines
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "g.png").exists()


def test_images_the_model_cannot_take(export_dir, collection, tmp_path):
    """In-process (the command turns the same UsageError into one line and exit 2)."""
    (tmp_path / "bad.png").write_text("not an image")
    files = [str(collection["root"] / "cat" / "0.jpg"), str(tmp_path / "bad.png")]
    with pytest.raises(
        UsageError,
        match=r"`images`: the model cannot decode .*bad.png \(.*\); "
        "pass JPEG, PNG, BMP, GIF or WebP images",
    ):
        retrieval.encode_image_files(export_dir, files)


def test_image_files_lists_folders_recursively_and_refuses_missing(collection):
    files = retrieval.image_files(str(collection["root"]))
    assert len(files) == 24 and files == sorted(files)
    with pytest.raises(UsageError, match="does not exist"):
        retrieval.image_files(str(collection["root"] / "nope.png"))


# The index built by the command's function from encode's output ------------------------------


@pytest.fixture(scope="module")
def built(collection, tmp_path_factory):
    """The collection's codes indexed by ``tfhash.retrieval.update_index`` from encode's --out: the code
    length and the class names come from encode's db_info.json."""

    out = str(tmp_path_factory.mktemp("built") / "index")
    retrieval.update_index(str(collection["codes_dir"]), out)
    return out


def test_an_index_of_encode_output_knows_its_bits_and_class_names(built):
    """12-bit codes fill 2 bytes: the index said "2-byte codes (up to 16 bits)", results.json
    "bits": null."""

    index = retrieval.open_index(built)
    assert index.bits == BITS
    assert index.describe() == f"faiss: 24 items, {BITS}-bit codes"
    assert retrieval.read_class_names(built) == ["cat", "dog", "owl"]


def test_query_images_in_a_class_folder_are_labelled_framed_and_captioned(
    built, collection, export_dir, tmp_path
):
    stray = tmp_path / "mine" / "x.png"  # a folder that names no class: no label, grey frames
    stray.parent.mkdir()
    stray.write_bytes((collection["root"] / "owl" / "1.png").read_bytes())
    out, picture = tmp_path / "r.json", tmp_path / "g.png"
    result = run_search(
        f"--index={built}",
        f"--images={collection['root'] / 'dog'},{stray}",
        f"--model={export_dir}",
        "--k=4",
        f"--out={out}",
        f"--gallery={picture}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bits"] == BITS and report["class_names"] == ["cat", "dog", "owl"]
    assert [q.get("labels") for q in report["queries"]] == [[1]] * 8 + [None]
    from PIL import Image

    with Image.open(picture) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    framed = [
        np.mean(np.abs(pixels - [int(c[i : i + 2], 16) for i in (1, 3, 5)]).sum(axis=1) < 30)
        for c in (gallery.GREEN, gallery.RED)
    ]
    assert sum(framed) > 0.002  # the dog queries' results are framed green or red, not grey


def test_existing_results_and_gallery_are_refused_unless_overwrite(built, collection, tmp_path):
    out, picture = tmp_path / "r.json", tmp_path / "g.png"
    out.write_text("earlier results")
    args = [
        f"--index={built}",
        f"--query_codes={collection['codes_dir'] / 'db_codes.npy'}",
        "--k=3",
        f"--out={out}",
    ]
    result = run_search(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --out={out} already exists; pass another name, or --overwrite to replace"
    ]
    assert out.read_text() == "earlier results"
    out.unlink()
    picture.write_bytes(b"earlier picture")
    result = run_search(*args, f"--gallery={picture}")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: --gallery={picture} already exists; pass another name, or --overwrite to replace"
    ]
    assert not out.exists() and picture.read_bytes() == b"earlier picture"
    result = run_search(*args, f"--gallery={picture}", "--overwrite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["k"] == 3 and picture.read_bytes()[:8] == PNG_MAGIC


def test_index_kind_of_an_existing_index_is_refused_not_ignored(built, collection, tmp_path):
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(built, copy)
    manifest = (copy / retrieval.MANIFEST).read_text()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.index",
            f"--codes={collection['codes_dir']}",
            f"--out={copy}",
            "--kind=multihash",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --kind=multihash: {copy} holds a flat index (faiss: 24 items, {BITS}-bit "
        "codes), which an append keeps; build the new kind in a new --out, or drop the flag "
        "to append"
    ]
    assert (copy / retrieval.MANIFEST).read_text() == manifest

    with pytest.raises(UsageError, match="nflip=2: .* holds a flat index"):
        retrieval.update_index(str(collection["codes_dir"]), str(copy), nflip=2)
    mixed = tmp_path / "codes"
    mixed.mkdir()
    for part in ("codes", "labels", "item_ids"):
        shutil.copy(collection["codes_dir"] / f"db_{part}.npy", mixed / f"other_{part}.npy")
    info = json.loads((collection["codes_dir"] / "db_info.json").read_text())
    (mixed / "other_info.json").write_text(json.dumps(dict(info, class_names=["a", "b", "c"])))
    with pytest.raises(UsageError, match="`codes` name their 3 classes a, b, c… but the index"):
        retrieval.update_index(str(mixed), str(copy), replace=True)
    assert (copy / retrieval.MANIFEST).read_text() == manifest
