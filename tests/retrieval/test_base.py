"""tfhash.retrieval.base.SearchIndex: the checks both backends share, written once, refuse the
same input with the same words on FAISS and on Milvus Lite."""

import importlib.util

import numpy as np
import pytest

from tfhash import retrieval
from tfhash.errors import UsageError

pytest.importorskip("faiss", reason="the faiss backend needs faiss-cpu (a core dependency)")

HAVE_MILVUS = (
    importlib.util.find_spec("pymilvus") is not None
    and importlib.util.find_spec("milvus_lite") is not None
)


@pytest.fixture(
    params=[
        "faiss",
        pytest.param(
            "milvus",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    not HAVE_MILVUS,
                    reason="Milvus Lite not installed: pip install 'tfhash[milvus]'",
                ),
            ],
        ),
    ]
)
def index(request, tmp_path):
    """Ten 12-bit codes in either backend, added as ``i0`` … ``i9``."""
    codes = np.packbits(np.random.default_rng(1).random((10, 12)) < 0.5, axis=1)
    if request.param == "faiss":
        found = retrieval.FaissIndex(bits=12)
    else:
        found = retrieval.MilvusIndex(str(tmp_path / "codes.db"), "base")
        found.create(bits=12)
    found.add(codes, [f"i{i}" for i in range(10)])
    yield found
    found.close()


def test_both_backends_are_search_indexes(index):
    assert isinstance(index, retrieval.SearchIndex)
    assert index.describe().startswith(index.backend) and index.describe().endswith(
        ": 10 items, 12-bit codes"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ix: ix.search(np.zeros((1, 2), np.uint8), 0), "`k` must be at least 1, got 0"),
        (
            lambda ix: ix.search(np.zeros((1, 2), np.uint8), 11),
            r"k=11 is larger than the index \(10 items\)",
        ),
        (lambda ix: ix.radius_search(np.zeros((1, 2), np.uint8), -1), "`radius` must be 0 or more"),
        (
            lambda ix: ix.search(np.zeros((1, 3), np.uint8), 1),
            "query codes are 3-byte codes .* but the index holds 12-bit codes",
        ),
        (lambda ix: ix.search(np.full((1, 2), 255, np.uint8), 1), "set bits past bit 12"),
        (
            lambda ix: ix.add(np.zeros((1, 2), np.uint8), ["i3"]),
            r"1 item ids are already in the index \(first: 'i3'\); pass `replace`",
        ),
        (lambda ix: ix.delete(["nope"]), r"1 item ids to delete are not in the index"),
    ],
)
def test_the_shared_checks_refuse_alike(index, call, message):
    with pytest.raises(UsageError, match=message):
        call(index)
    assert index.size == 10  # nothing changed


def test_a_backend_implements_only_its_own_part():
    """A subclass that leaves out a backend operation cannot be made at all."""

    class Half(retrieval.SearchIndex):
        backend = "half"

        def add(self, codes, item_ids, paths=None, labels=None, replace=False):
            pass

    with pytest.raises(TypeError, match="abstract"):
        Half()
