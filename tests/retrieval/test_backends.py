"""tfhash.retrieval's backends and python -m tfhash.index: exact top-k and radius search against a brute-force
reference (FAISS, and Milvus Lite where installed), the tie rule on tie-heavy codes, persistence,
append, delete, atomic saves and the command's error paths (exit 2)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfhash import retrieval
from tfhash.errors import UsageError

pytest.importorskip("faiss", reason="the faiss backend needs faiss-cpu (a core dependency)")

HAVE_MILVUS = (
    importlib.util.find_spec("pymilvus") is not None
    and importlib.util.find_spec("milvus_lite") is not None
)
_no_milvus = pytest.mark.skipif(
    not HAVE_MILVUS, reason="Milvus Lite not installed: pip install 'tfhash[milvus]'"
)


def needs_milvus(test):
    """Runs ``test`` where Milvus Lite is installed; slow (it starts a Milvus Lite server)."""
    return pytest.mark.slow(_no_milvus(test))


def brute_force(database, queries):
    """Reference Hamming distances [Q, N] of packed uint8 codes, bit by bit."""
    return np.unpackbits(queries[:, None, :] ^ database[None, :, :], axis=2).sum(
        axis=2, dtype=np.int64
    )


def reference_topk(database, queries, k):
    """The first k of the stable ranking: by distance, then by item position."""
    d = brute_force(database, queries)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def reference_radius(database, queries, radius):
    d = brute_force(database, queries)
    out = []
    for row in d:
        inside = np.flatnonzero(row <= radius)
        inside = inside[np.argsort(row[inside], kind="stable")]
        out.append((row[inside], inside))
    return out


@pytest.fixture(scope="module")
def tied():
    """Tie-heavy 12-bit codes: 6 centres with 1-bit noise, so hundreds of items share each
    distance; queries are centres, items and random codes."""
    rng = np.random.default_rng(0)
    centres = rng.random((6, 12)) < 0.5
    bits = centres[rng.integers(0, 6, 1500)] ^ (rng.random((1500, 12)) < 0.08)
    codes = np.packbits(bits, axis=1)
    queries = np.concatenate(
        [np.packbits(centres, axis=1), codes[:4], np.packbits(rng.random((6, 12)) < 0.5, axis=1)]
    )
    ids = np.array([f"img/{i:04d}.png" for i in range(len(codes))])
    labels = rng.integers(0, 3, len(codes))
    return codes, queries, ids, labels


def faiss_index(codes, ids, labels=None, kind="flat"):
    index = retrieval.FaissIndex(bits=12, kind=kind)
    index.add(codes, ids, labels=labels)
    return index


def assert_hits_equal(hits, distances, positions, ids):
    assert len(hits) == len(distances)
    for found, d, p in zip(hits, distances, positions):
        np.testing.assert_array_equal(found.distances, d)
        np.testing.assert_array_equal(found.item_ids, ids[p])


def test_the_codes_are_tie_heavy(tied):
    codes, queries, _, _ = tied
    d = brute_force(codes, queries)
    # Far more items than distinct distances: every top-k below cuts through a tie group.
    assert max(len(np.unique(row)) for row in d) <= 13
    top, _ = reference_topk(codes, queries, 100)
    for row, kept in zip(d, top):  # the 100th distance is shared by items on both sides of the cut
        assert (row == kept[-1]).sum() > (kept == kept[-1]).sum() > 0


@pytest.mark.parametrize("kind", ["flat", "multihash"])
@pytest.mark.parametrize("k", [1, 7, 100, 1500])
def test_faiss_top_k_equals_brute_force_with_ties_by_position(tied, k, kind):
    codes, queries, ids, labels = tied
    hits = faiss_index(codes, ids, labels, kind).search(queries, k)
    distances, positions = reference_topk(codes, queries, k)
    assert_hits_equal(hits, distances, positions, ids)
    assert hits[0].labels == [[int(c)] for c in labels[positions[0]]]


def test_faiss_single_query_and_unpacked_queries(tied):
    codes, queries, ids, _ = tied
    index = faiss_index(codes, ids)
    distances, positions = reference_topk(codes, queries[:1], 50)
    assert_hits_equal(index.search(queries[:1], 50), distances, positions, ids)
    plus_minus = np.where(np.unpackbits(queries, axis=1)[:, :12] > 0, 1, -1).astype(np.int8)
    distances, positions = reference_topk(codes, queries, 20)
    assert_hits_equal(index.search(plus_minus, 20), distances, positions, ids)


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 12])
def test_faiss_radius_equals_brute_force(tied, radius):
    codes, queries, ids, _ = tied
    hits = faiss_index(codes, ids).radius_search(queries, radius)
    reference = reference_radius(codes, queries, radius)
    assert_hits_equal(hits, [d for d, _ in reference], [p for _, p in reference], ids)
    assert all(np.all(h.distances <= radius) for h in hits)


def test_multihash_radius_is_exact_within_its_guarantee_and_reports_what_it_finds(tied):
    codes, queries, ids, _ = tied
    # 12 bits in 3 tables of 4 bits, 0 flips: exact for radius <= 3 * (0 + 1) - 1 = 2.
    index = retrieval.FaissIndex(bits=12, kind="multihash", nhash=3, hash_bits=4, nflip=0)
    index.add(codes, ids)
    for radius in (0, 1, 2):
        reference = reference_radius(codes, queries, radius)
        hits = index.radius_search(queries, radius)
        assert_hits_equal(hits, [d for d, _ in reference], [p for _, p in reference], ids)
    # Beyond the guarantee it may miss items, never returns one outside the radius.
    reference = reference_radius(codes, queries, 6)
    hits = index.radius_search(queries, 6)
    for found, (_, positions) in zip(hits, reference):
        assert set(found.item_ids) <= set(ids[positions])
        assert np.all(found.distances <= 6)
    recall = sum(len(h) for h in hits) / sum(len(p) for _, p in reference)
    assert 0 < recall < 1


def test_persistence_append_delete_and_re_add(tied, tmp_path):
    codes, queries, ids, labels = tied
    out = str(tmp_path / "index")
    faiss_index(codes[:1000], ids[:1000], labels[:1000]).save(out)
    index = retrieval.open_index(out)
    assert isinstance(index, retrieval.FaissIndex) and index.size == 1000
    np.testing.assert_array_equal(index.codes(), codes[:1000])

    index.add(codes[1000:], ids[1000:], labels=labels[1000:])  # append
    gone = ids[[3, 10, 999, 1200]]
    assert index.delete(gone) == 4
    index.add(codes[[10]], ids[[10]], labels=labels[[10]])  # re-add: moves to the end
    index.save(out)

    order = [i for i in range(len(ids)) if ids[i] not in set(gone)] + [10]
    reloaded = retrieval.open_index(out)
    assert reloaded.size == len(order)
    distances, positions = reference_topk(codes[order], queries, 300)
    assert_hits_equal(reloaded.search(queries, 300), distances, positions, ids[order])
    reference = reference_radius(codes[order], queries, 3)
    assert_hits_equal(
        reloaded.radius_search(queries, 3),
        [d for d, _ in reference],
        [p for _, p in reference],
        ids[order],
    )
    assert sorted(os.listdir(out))[-1] == retrieval.MANIFEST
    assert len(os.listdir(out)) == 3  # the manifest and one generation: old files removed

    with pytest.raises(UsageError, match=r"1 item ids are already in the index .*`replace`"):
        reloaded.add(codes[:1], ids[:1], labels=labels[:1])
    reloaded.add(
        codes[1:2], ids[:1], labels=labels[:1], replace=True
    )  # a new code for an id: at the end
    assert reloaded.item_ids[-1] == ids[0] and reloaded.size == len(order)
    np.testing.assert_array_equal(reloaded.codes()[-1], codes[1])


def test_an_interrupted_save_leaves_the_previous_index(tied, tmp_path, monkeypatch):
    codes, queries, ids, _ = tied
    out = str(tmp_path / "index")
    faiss_index(codes[:500], ids[:500]).save(out)
    before = retrieval.open_index(out).search(queries, 20)

    bigger = retrieval.open_index(out)
    bigger.add(codes[500:], ids[500:])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    files = sorted(os.listdir(out))
    monkeypatch.setattr(np, "savez", interrupted)  # after the FAISS file, before the manifest
    with pytest.raises(KeyboardInterrupt):
        bigger.save(out)
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == files  # the interrupted save removed what it wrote
    after = retrieval.open_index(out)
    assert after.size == 500
    for a, b in zip(before, after.search(queries, 20)):
        np.testing.assert_array_equal(a.item_ids, b.item_ids)
    (tmp_path / "index" / ".partial-codes-0123.faissindex").write_bytes(b"x")  # what a kill
    (tmp_path / "index" / "items-0123.npz").write_bytes(b"x")  # -9 would have left
    bigger.save(out)  # the next save clears the leftovers
    assert retrieval.open_index(out).size == 1500 and len(os.listdir(out)) == 3


def test_bad_input(tied, tmp_path):
    codes, queries, ids, _ = tied
    index = faiss_index(codes, ids)
    with pytest.raises(UsageError, match=r"3-byte codes .* but the index holds 12-bit codes"):
        index.search(np.zeros((2, 3), np.uint8), 5)
    with pytest.raises(UsageError, match=r"are 16-bit codes but the index holds 12-bit"):
        index.search(np.ones((2, 16), np.int8), 5)
    with pytest.raises(UsageError, match="set bits past bit 12"):
        index.search(np.full((1, 2), 255, np.uint8), 5)
    with pytest.raises(UsageError, match="`k` must be at least 1, got 0"):
        index.search(queries, 0)
    with pytest.raises(UsageError, match=r"k=1501 is larger than the index \(1500 items\)"):
        index.search(queries, 1501)
    with pytest.raises(UsageError, match=r"`radius` must be 0 or more .* got -1"):
        index.radius_search(queries, -1)
    with pytest.raises(UsageError, match="item id 'a' appears 2 times"):
        index.add(codes[:2], ["a", "a"])
    with pytest.raises(
        UsageError,
        match=r"1 item ids to delete are not in the index \(first: "
        r"'nope'\)",
    ):
        index.delete(["nope"])
    with pytest.raises(
        UsageError,
        match=r"1 item ids are already in the index \(first: "
        r"'img/0000.png'\)",
    ):  # the id, not np.str_('img/0000.png')
        index.add(codes[:1], ids[:1])
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"plain is not a tfhash index \(no tfhash_index.json\)"):
        retrieval.open_index(str(tmp_path / "plain"))
    with pytest.raises(UsageError, match="exists and is not a tfhash index"):
        index.save(str(tmp_path / "plain"))
    with pytest.raises(UsageError, match="does not exist; build an index"):
        retrieval.open_index(str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------
# The command.


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, tied):
    """Files as python -m tfhash.encode writes them: database (first 1200) and more (the rest)."""
    codes, _, ids, labels = tied
    root = tmp_path_factory.mktemp("codes")
    for name, part in (("database", slice(0, 1200)), ("more", slice(1200, None))):
        directory = root / name
        directory.mkdir()
        np.save(directory / f"{name}_codes.npy", codes[part])
        np.save(directory / f"{name}_labels.npy", labels[part])
        np.save(directory / f"{name}_item_ids.npy", ids[part])
    return root


def run_index(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfhash.index", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # python -m tfhash.index in subprocesses
def test_cli_builds_appends_and_deletes(encoded, tied, tmp_path):
    codes, queries, ids, labels = tied
    out = tmp_path / "index"
    result = run_index(
        f"--codes={encoded / 'database'}", f"--out={out}", "--bits=12", f"--image_root={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.stdout.strip() == f"added 1200, deleted 0: faiss: 1200 items, 12-bit codes in {out}"
    )
    (tmp_path / "gone.txt").write_text(f"{ids[0]}\n{ids[5]}\n")
    result = run_index(
        f"--codes={encoded / 'more' / 'more_codes.npy'}",
        f"--out={out}",
        f"--delete={tmp_path / 'gone.txt'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("added 300, deleted 2: faiss: 1498 items")

    index = retrieval.open_index(str(out))
    keep = np.r_[1:5, 6:1500]
    np.testing.assert_array_equal(index.item_ids, ids[keep])
    assert index.paths[0] == f"{tmp_path}/{ids[1]}"
    assert index.paths[-1] == ids[-1]  # the appended set had no --image_root
    np.testing.assert_array_equal(index.labels, labels[keep])
    distances, positions = reference_topk(codes[keep], queries, 40)
    assert_hits_equal(index.search(queries, 40), distances, positions, ids[keep])
    with open(out / retrieval.MANIFEST) as f:
        manifest = json.load(f)
    assert manifest["size"] == 1498 and manifest["bits"] == 12 and manifest["kind"] == "flat"


@pytest.mark.slow  # python -m tfhash.index in subprocesses
@pytest.mark.parametrize(
    "args, message",
    [
        (["--out={out}"], "error: nothing to do: give --codes to add, or --delete ids"),
        (["--codes={codes}/database"], "error: --out is required: the index directory"),
        (
            ["--codes={codes}/database", "--out={plain}"],
            "error: --out={plain} exists and is not a tfhash index (it holds 'notes.txt' and no "
            "tfhash_index.json); pass a new or empty directory",
        ),
        (
            ["--codes={codes}", "--out={out}"],
            "error: --codes={codes} holds no <name>_codes.npy; pass the --out directory of python -m "
            "tfhash.encode",
        ),
        (
            ["--codes={codes}/database", "--out={out}", "--bits=10"],
            "error: codes set bits past bit 10",
        ),
        (
            ["--codes={codes}/database", "--out={out}", "--backend=milvus"],
            "error: --backend=milvus needs --uri: http://host:19530, or a .db file for Milvus Lite",
        ),
        (
            [
                "--codes={codes}/database",
                "--backend=milvus",
                "--uri=http://127.0.0.1:1",
                "--timeout=2",
            ],
            "error: Milvus at http://127.0.0.1:1 does not answer within 2 s",
        ),
        (
            [
                "--codes={codes}/database",
                "--out={out}",
                "--kind=multihash",
                "--nhash=4",
                "--hash_bits=4",
                "--bits=12",
            ],
            "error: --nhash=4 tables of --hash_bits=4 bits do not fit 12-bit codes",
        ),
        (
            ["--codes={codes}/database", "--out={out}", "--bogus=1"],
            "error: Unknown command line flag",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(encoded, tmp_path, args, message):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    if "milvus" in message.lower() and "does not answer" in message and not HAVE_MILVUS:
        pytest.skip("pymilvus not installed")
    fill = {"out": tmp_path / "index", "codes": encoded, "plain": plain}
    result = run_index(*[a.format(**fill) for a in args])
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**fill)), lines


@pytest.mark.slow  # python -m tfhash.index in subprocesses
def test_cli_refuses_codes_of_another_length(encoded, tmp_path):
    out = tmp_path / "index"
    assert run_index(f"--codes={encoded / 'database'}", f"--out={out}").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "x_codes.npy", np.zeros((3, 4), np.uint8))
    np.save(other / "x_item_ids.npy", np.array(["a", "b", "c"]))
    result = run_index(f"--codes={other}", f"--out={out}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: codes are 4-byte codes (up to 32 bits) but the index holds 2-byte codes (up to "
        "16 bits); query with codes of the model the index was built from"
    )
    assert retrieval.open_index(str(out)).size == 1200  # unchanged


# ---------------------------------------------------------------------------------------------
# Milvus Lite.


@needs_milvus
def test_milvus_lite_top_k_radius_persistence_append_delete(tied, tmp_path):
    codes, queries, ids, labels = tied
    uri = str(tmp_path / "codes.db")
    index = retrieval.MilvusIndex(uri, "tied")
    index.create(bits=12)
    index.add(codes[:1000], ids[:1000], labels=labels[:1000])
    index.add(codes[1000:], ids[1000:], labels=labels[1000:])  # append
    for k in (1, 100, 1500):  # k = N: every item, ties by position throughout
        distances, positions = reference_topk(codes, queries, k)
        assert_hits_equal(index.search(queries, k), distances, positions, ids)
    for radius in (0, 2, 5):
        reference = reference_radius(codes, queries, radius)
        assert_hits_equal(
            index.radius_search(queries, radius),
            [d for d, _ in reference],
            [p for _, p in reference],
            ids,
        )
    # The same as FAISS, records included.
    faiss_hits = faiss_index(codes, ids, labels).search(queries, 30)
    for a, b in zip(index.search(queries, 30), faiss_hits):
        assert a.records() == b.records()

    gone = ids[[3, 10, 1200]]
    assert index.delete(gone) == 3
    index.add(codes[[10]], ids[[10]], labels=labels[[10]])
    index.close()

    reopened = retrieval.open_index(uri, "tied")  # a new client on the same file
    order = [i for i in range(len(ids)) if ids[i] not in set(gone)] + [10]
    assert reopened.size == len(order)
    distances, positions = reference_topk(codes[order], queries, 200)
    assert_hits_equal(reopened.search(queries, 200), distances, positions, ids[order])
    with pytest.raises(UsageError, match="already in the index"):
        reopened.add(codes[:1], ids[:1])
    with pytest.raises(UsageError, match=r"k=1499 is larger than the index \(1498 items\)"):
        reopened.search(queries, 1499)
    with pytest.raises(UsageError, match=r"3-byte codes"):
        reopened.search(np.zeros((1, 3), np.uint8), 1)
    reopened.close()


@needs_milvus
def test_milvus_lite_interrupted_append_is_invisible(tied, tmp_path, monkeypatch):
    codes, queries, ids, _ = tied
    uri = str(tmp_path / "codes.db")
    index = retrieval.MilvusIndex(uri, "tied")
    index.create(bits=12)
    index.add(codes[:600], ids[:600])
    monkeypatch.setattr(
        index, "_commit", lambda manifest: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        index.add(codes[600:], ids[600:])  # rows inserted, manifest not committed
    monkeypatch.undo()
    index._manifest = None
    assert index.size == 600
    distances, positions = reference_topk(codes[:600], queries, 50)
    assert_hits_equal(index.search(queries, 50), distances, positions, ids)
    index.add(codes[600:], ids[600:])  # the retry clears the invisible rows first
    distances, positions = reference_topk(codes, queries, 50)
    assert_hits_equal(index.search(queries, 50), distances, positions, ids)
    index.close()


@needs_milvus
def test_milvus_cli_with_a_pointer_directory(encoded, tied, tmp_path):
    codes, queries, ids, _ = tied
    uri, out = tmp_path / "codes.db", tmp_path / "pointer"
    result = run_index(
        f"--codes={encoded / 'database'}",
        "--backend=milvus",
        f"--uri={uri}",
        "--collection=cli",
        f"--out={out}",
        "--bits=12",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("added 1200, deleted 0: milvus")
    index = retrieval.open_index(str(out))
    assert isinstance(index, retrieval.MilvusIndex) and index.collection == "cli"
    distances, positions = reference_topk(codes[:1200], queries, 25)
    assert_hits_equal(index.search(queries, 25), distances, positions, ids)
    index.close()


# ---------------------------------------------------------------------------------------------
# Faults (issue 28): two writers at once, a writer killed, a Milvus delete killed.


def _hold_lock(*args):
    """A process holding the index lock ``retrieval.lock_index(*args)``, until killed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tfhash import retrieval; "
            f"retrieval.lock_index(*{args!r}); print('locked', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow  # python -m tfhash.index in subprocesses
def test_a_second_writer_is_refused_naming_the_first_and_a_killed_one_blocks_nothing(
    encoded, tied, tmp_path
):
    out = tmp_path / "index"
    assert run_index(f"--codes={encoded / 'database'}", f"--out={out}").returncode == 0
    holder = _hold_lock(str(out))
    try:
        result = run_index(f"--codes={encoded / 'more'}", f"--out={out}")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: index {out} is in use by pid {holder.pid} on ")
        assert "retrieval.lock_index" in lines[0] and "since 20" in lines[0]
    finally:
        holder.kill()  # SIGKILL: it never releases the lock itself
        holder.wait()
    result = run_index(f"--codes={encoded / 'more'}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(retrieval.open_index(str(out)).item_ids, tied[2])


@pytest.mark.slow  # python -m tfhash.index in subprocesses
def test_two_appends_at_once_lose_nothing(encoded, tied, tmp_path):
    """The issue's race: both printed "added" and the index held one of them. Now each either
    adds its items or is refused, and the index holds every item reported added."""
    out = tmp_path / "index"
    assert run_index(f"--codes={encoded / 'database'}", f"--out={out}").returncode == 0
    (tmp_path / "gone.txt").write_text("img/0000.png\n")
    commands = [
        [f"--codes={encoded / 'more'}", f"--out={out}"],
        [f"--delete={tmp_path / 'gone.txt'}", f"--out={out}"],
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tfhash.index", *c],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for command, (code, error) in zip(commands, results):
        assert code == 0 or (code == 2 and "is in use by pid" in error), error
        if code:  # refused: nothing written, so the same command again
            assert run_index(*command).returncode == 0
    index = retrieval.open_index(str(out))
    assert sorted(index.item_ids.tolist()) == sorted(tied[2][1:].tolist())


@needs_milvus
@pytest.mark.parametrize("moment", ["before_the_commit", "after_the_commit"])
def test_milvus_delete_killed_at_any_moment_is_recoverable(tied, tmp_path, monkeypatch, moment):
    """The issue: a kill during --delete left the manifest counting deleted rows, every top-k
    search crashing with IndexError and the count wrong after later appends."""
    codes, queries, ids, labels = tied
    uri = str(tmp_path / "codes.db")
    index = retrieval.MilvusIndex(uri, "tied")
    index.create(bits=12)
    index.add(codes[:1000], ids[:1000], labels=labels[:1000])
    gone = np.arange(0, 1000, 3)  # 334 items
    client = index.client
    original = client.delete

    def killed(collection, **kwargs):
        if collection == "tied" and "seq in" in kwargs.get("filter", ""):
            raise KeyboardInterrupt  # as the rows are being removed
        return original(collection, **kwargs)

    if moment == "before_the_commit":
        monkeypatch.setattr(
            index, "_commit", lambda manifest: (_ for _ in ()).throw(KeyboardInterrupt())
        )
    else:
        monkeypatch.setattr(client, "delete", killed)
    with pytest.raises(KeyboardInterrupt):
        index.delete(ids[gone])
    monkeypatch.undo()
    index.close()

    kept = np.setdiff1d(np.arange(1000), gone) if moment == "after_the_commit" else np.arange(1000)
    reopened = retrieval.MilvusIndex(uri, "tied")  # what the next command sees
    assert reopened.size == len(kept)
    for k in (1, 50, len(kept)):  # every item, ties by position: no IndexError, nothing extra
        distances, positions = reference_topk(codes[kept], queries, k)
        assert_hits_equal(reopened.search(queries, k), distances, positions, ids[kept])
    reference = reference_radius(codes[kept], queries, 3)
    assert_hits_equal(
        reopened.radius_search(queries, 3),
        [d for d, _ in reference],
        [p for _, p in reference],
        ids[kept],
    )

    reopened.add(codes[1000:1100], ids[1000:1100], labels=labels[1000:1100])  # recovers first
    assert reopened.manifest().get("pending") is None
    stored = reopened.client.query("tied", filter="seq >= 0", output_fields=["item_id"])
    assert sorted(r["item_id"] for r in stored) == sorted(ids[np.r_[kept, 1000:1100]])
    assert reopened.size == len(kept) + 100
    reopened.close()


@needs_milvus
def test_milvus_delete_and_append_commit_together(encoded, tied, tmp_path, monkeypatch):
    """--delete with --codes is one commit: a kill before it leaves both undone, so the same
    command runs again (the deleted ids are still there to delete)."""
    from tfhash import index as index_command

    codes, queries, ids, _ = tied
    uri = str(tmp_path / "codes.db")
    index_command.build(str(encoded / "database"), backend="milvus", uri=uri, bits=12)[0].close()
    commits = []
    monkeypatch.setattr(
        retrieval.MilvusIndex,
        "_commit",
        lambda self, manifest: (
            commits.append(manifest),
            (_ for _ in ()).throw(KeyboardInterrupt()),
        ),
    )
    with pytest.raises(KeyboardInterrupt):
        index_command.build(
            str(encoded / "more"), backend="milvus", uri=uri, delete=",".join(ids[:5])
        )
    monkeypatch.undo()
    assert len(commits) == 1 and commits[0]["size"] == 1200 - 5 + 300  # both in one write
    index, added, deleted = index_command.build(
        str(encoded / "more"), backend="milvus", uri=uri, delete=",".join(ids[:5])
    )
    assert (added, deleted, index.size) == (300, 5, 1495)
    distances, positions = reference_topk(codes[5:], queries, 40)
    assert_hits_equal(index.search(queries, 40), distances, positions, ids[5:])
    index.close()


@needs_milvus
def test_a_milvus_lite_file_being_written_refuses_a_second_command_in_one_line(encoded, tmp_path):
    from tfhash import index as index_command

    uri = str(tmp_path / "codes.db")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from tfhash import retrieval; "
            f"retrieval.lock_index(None, {uri!r}); retrieval.MilvusIndex({uri!r}); "
            "print('open', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(
            UsageError, match=f"Milvus Lite file {uri} is in use by pid {holder.pid}"
        ):
            index_command.build(str(encoded / "database"), backend="milvus", uri=uri)
        with pytest.raises(UsageError, match="lets one process at a time open a file"):
            retrieval.MilvusIndex(uri)  # a search
    finally:
        holder.kill()
        holder.wait()
    index, added, _ = index_command.build(str(encoded / "database"), backend="milvus", uri=uri)
    assert added == index.size == 1200
    index.close()
