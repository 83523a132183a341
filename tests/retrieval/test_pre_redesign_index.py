"""An index written before the retrieval package (commit cbc203f, by
tests/fixtures/pre_redesign_index/make.py) opens, searches as the old code did, and takes appends."""

import json
import os
import shutil

import numpy as np
import pytest

from tfhash import retrieval

pytest.importorskip("faiss", reason="the faiss backend needs faiss-cpu (a core dependency)")

FIXTURE = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "pre_redesign_index")


@pytest.fixture(scope="module")
def expected():
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("kind", ["flat", "multihash"])
def test_the_old_index_searches_as_the_old_code_did(kind, expected):
    queries = np.load(os.path.join(FIXTURE, "queries.npy"))
    index = retrieval.open_index(os.path.join(FIXTURE, kind))
    assert isinstance(index, retrieval.FaissIndex) and index.kind == kind
    assert index.describe() == expected[kind]["describe"]
    assert [h.records() for h in index.search(queries, 5)] == expected[kind]["top5"]
    assert [h.records() for h in index.radius_search(queries, 2)] == expected[kind]["radius2"]
    assert retrieval.read_class_names(os.path.join(FIXTURE, kind)) == ["ant", "bee", "cat"]


def test_the_old_index_takes_an_append_and_a_delete(tmp_path):
    out = str(tmp_path / "flat")
    shutil.copytree(os.path.join(FIXTURE, "flat"), out)
    before = retrieval.open_index(out)
    queries = np.load(os.path.join(FIXTURE, "queries.npy"))
    np.save(tmp_path / "new_codes.npy", queries[:2])  # two queries as items, at distance 0
    np.save(tmp_path / "new_item_ids.npy", np.array(["new/0.png", "new/1.png"]))
    np.save(tmp_path / "new_labels.npy", np.array([0, 1]))
    index, added, deleted = retrieval.update_index(
        str(tmp_path / "new_codes.npy"), out, delete="c0/00.png"
    )
    assert (added, deleted, index.size) == (2, 1, 39 + 2 - 1)
    after = retrieval.open_index(out)
    kept = before.item_ids != "c0/00.png"
    assert after.item_ids.tolist() == before.item_ids[kept].tolist() + ["new/0.png", "new/1.png"]
    # The tie rule over the old positions and the new: a stable ranking by distance.
    distances = np.unpackbits(after.codes() ^ queries[0], axis=1).sum(axis=1)
    order = np.argsort(distances, kind="stable")[:12]
    hits = after.search(queries[:1], 12)[0]
    assert hits.item_ids.tolist() == after.item_ids[order].tolist()
    assert hits.distances.tolist() == distances[order].tolist()
    assert len([n for n in os.listdir(out) if n.startswith(("codes-", "items-"))]) == 2
