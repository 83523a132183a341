"""Protocol presets and splits: sizes, determinism, no overlaps, save/load round trips."""

import json
import os

import numpy as np
import pytest

from tfhash import data
from tfhash.errors import UsageError


def single_label(per_class, name="toy"):
    """A collection of ``sum(per_class)`` 1x1 images with ``per_class[c]`` images of class c."""
    labels = np.repeat(np.arange(len(per_class)), per_class)
    labels = np.random.default_rng(1).permutation(labels)
    class_names = [f"c{c}" for c in range(len(per_class))]
    return data.Collection(
        name,
        labels=labels,
        class_names=class_names,
        item_ids=np.array([f"{name}/{i}" for i in range(len(labels))]),
        pixels=np.zeros((len(labels), 1, 1, 3), np.uint8),
    )


def multi_label(n, num_labels, seed=2):
    """n images, each carrying 1 to 3 of ``num_labels`` labels at random."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, num_labels), np.uint8)
    for row in labels:
        row[rng.choice(num_labels, rng.integers(1, 4), replace=False)] = 1
    return data.Collection(
        "multi",
        labels=labels,
        class_names=[f"l{c}" for c in range(num_labels)],
        item_ids=np.array([f"m/{i}" for i in range(n)]),
        pixels=np.zeros((n, 1, 1, 3), np.uint8),
    )


def check_invariants(split, collection):
    """The structural rules every split obeys, checked plainly with numpy sets."""
    everything = np.arange(len(collection))
    drawn = np.union1d(split.train, split.val)
    assert len(drawn) == len(split.train) + len(split.val)  # train, val disjoint
    assert np.intersect1d(split.query, drawn).size == 0  # queries never trained on
    np.testing.assert_array_equal(split.database, np.setdiff1d(everything, split.query))
    assert np.isin(drawn, split.database).all()  # training from the db
    np.testing.assert_array_equal(split.unlabeled, np.setdiff1d(split.database, drawn))
    for part in (split.train, split.val, split.query, split.database, split.unlabeled):
        assert part.dtype == np.int64
        np.testing.assert_array_equal(part, np.unique(part))  # sorted, no repeats


# protocol name -> (collection factory, number of queries, size of the training draw)
CASES = {
    "cifar10": (lambda: single_label([1600] * 10), 10_000, 5_000),
    "cifar10-dhn": (lambda: single_label([700] * 10), 1_000, 5_000),
    "cifar20": (lambda: single_label([650] * 20), 2_000, 10_000),
    "sun397-29": (lambda: single_label([250] * 29), 1_000, 5_000),
    "nuswide21": (lambda: multi_label(30_000, 21), 2_100, 10_500),
    "digits": (lambda: data.load_collection("digits"), 300, 1_000),
    "fraction": (lambda: single_label([30, 50, 20]), 10, 90),
    "fraction:query=0.2,train=0.5": (lambda: single_label([30, 50, 20]), 20, 40),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make, n_query, n_drawn = CASES[request.param]
    return request.param, make(), n_query, n_drawn


def test_split_sizes_and_invariants(case):
    name, collection, n_query, n_drawn = case
    split = data.make_split(collection, name, seed=0, val_fraction=0.1)
    check_invariants(split, collection)
    assert len(split.query) == n_query
    assert len(split.train) + len(split.val) == n_drawn
    assert len(split.val) == round(0.1 * n_drawn)
    assert len(split.database) == len(collection) - n_query


@pytest.mark.parametrize(
    "name", [n for n in sorted(CASES) if data.get_protocol(n).sampling == "per_class"]
)
def test_per_class_protocols_draw_exactly_per_class(name):
    collection = CASES[name][0]()
    protocol = data.get_protocol(name)
    split = data.make_split(collection, name, seed=3)
    drawn = np.union1d(split.train, split.val)
    carried_by_queries = collection.membership(split.query).sum(axis=0)
    carried_by_drawn = collection.membership(drawn).sum(axis=0)
    if collection.multi_label:
        # Concept by concept, 100 (500) images carrying it; an image is drawn once.
        assert (carried_by_queries >= protocol.queries).all()
        assert (carried_by_drawn >= protocol.train).all()
    else:
        assert (carried_by_queries == protocol.queries).all()
        assert (carried_by_drawn == protocol.train).all()


def test_same_seed_same_split_other_seed_other_split(case):
    name, collection, _, _ = case
    a = data.make_split(collection, name, seed=5)
    b = data.make_split(collection, name, seed=5)
    c = data.make_split(collection, name, seed=6)
    for part in ("train", "val", "query", "database", "unlabeled"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.query, c.query)
    assert not np.array_equal(a.train, c.train)


def test_save_load_round_trip(case, tmp_path):
    name, collection, _, _ = case
    split = data.make_split(collection, name, seed=7, val_fraction=0.2)
    split.save(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [
        "database.npy",
        "protocol.json",
        "query.npy",
        "train.npy",
        "unlabeled.npy",
        "val.npy",
    ]
    loaded = data.Split.load(str(tmp_path), collection)
    for part in ("train", "val", "query", "database", "unlabeled"):
        np.testing.assert_array_equal(getattr(loaded, part), getattr(split, part))
        assert getattr(loaded, part).dtype == np.int64
    assert loaded.protocol == split.protocol
    assert (loaded.seed, loaded.val_fraction) == (7, 0.2)


def test_protocol_metric_settings():
    assert data.get_protocol("nuswide21").map_top_k == 5000
    for name in ("cifar10", "cifar10-dhn", "cifar20", "sun397-29", "digits", "fraction"):
        assert data.get_protocol(name).map_top_k is None
    protocol = data.get_protocol("cifar10")
    assert 500 in protocol.precision_at_k and protocol.hamming_radius == 2


def test_unlabeled_part_is_the_database_outside_the_training_draw():
    collection = single_label([700] * 10)
    split = data.make_split(collection, "cifar10-dhn", seed=0)
    assert len(split.unlabeled) == 7000 - 1000 - 5000
    assert np.intersect1d(split.unlabeled, split.query).size == 0


def test_load_rejects_another_collection(tmp_path):
    collection = single_label([40, 40])
    data.make_split(collection, "fraction", seed=0).save(str(tmp_path))
    other = single_label([40, 41])
    with pytest.raises(UsageError, match="was made for toy .*80 images.*not this toy .*81 images"):
        data.Split.load(str(tmp_path), other)
    relabelled = data.Collection(
        "toy",
        labels=1 - collection.labels,
        class_names=collection.class_names,
        item_ids=collection.item_ids,
        pixels=collection.pixels,
    )
    with pytest.raises(UsageError, match="fingerprint"):
        data.Split.load(str(tmp_path), relabelled)


def test_load_detects_damaged_or_missing_files(tmp_path):
    collection = single_label([40, 40])
    split = data.make_split(collection, "fraction", seed=0)
    split.save(str(tmp_path))
    np.save(tmp_path / "train.npy", np.append(split.train, split.query[0]))
    with pytest.raises(UsageError, match="queries overlap the training"):
        data.Split.load(str(tmp_path))
    os.remove(tmp_path / "val.npy")
    with pytest.raises(UsageError, match=r"no complete split .*missing val.npy"):
        data.Split.load(str(tmp_path))


def test_protocol_json_records_how_the_split_was_made(tmp_path):
    collection = single_label([40, 40])
    data.make_split(collection, "fraction:query=0.25", seed=4, val_fraction=0.0).save(str(tmp_path))
    meta = json.loads((tmp_path / "protocol.json").read_text())
    assert meta["seed"] == 4 and meta["val_fraction"] == 0.0
    assert meta["protocol"]["name"] == "fraction:query=0.25,train=1"
    assert meta["collection"] == {
        "name": "toy",
        "size": 80,
        "fingerprint": collection.fingerprint(),
    }


def test_too_small_collection_names_the_numbers():
    digits = data.load_collection("digits")
    with pytest.raises(
        UsageError,
        match=r"protocol cifar10 needs 1000 queries of class '0' but "
        r"only 178 are left .*protocol=fraction",
    ):
        data.make_split(digits, "cifar10")
    with pytest.raises(UsageError, match="protocol sun397-29 needs 1000 queries but 80 images"):
        data.make_split(single_label([40, 40]), "sun397-29")
    with pytest.raises(UsageError, match="needs 500 training images of class 'c1' but only 150"):
        data.make_split(single_label([700, 250]), "cifar10-dhn")


def test_bad_names_and_settings():
    with pytest.raises(UsageError, match="unknown protocol 'cifar100'.*nuswide21.*fraction"):
        data.get_protocol("cifar100")
    for bad in ("fraction:query=1", "fraction:train=0", "fraction:size=0.1", "fraction:query=abc"):
        with pytest.raises(UsageError, match="fraction:query=Q,train=T"):
            data.get_protocol(bad)
    collection = single_label([40, 40])
    with pytest.raises(UsageError, match=r"`val_fraction` must be in \[0, 1\)"):
        data.make_split(collection, "fraction", val_fraction=1.0)


def test_deephash_pytorch_protocols():
    """cifar10-1 is cifar10-dhn under DeepHash-pytorch's name (the same draw); its cifar10
    (deephash-cifar10) draws the same way and reports on the database less the training draw:
    54,000 of CIFAR-10's 60,000 images (here 10 classes x 700)."""
    collection = single_label([700] * 10)
    dhn, one = (data.make_split(collection, name, seed=3) for name in ("cifar10-dhn", "cifar10-1"))
    for part in ("train", "val", "query", "database", "unlabeled"):
        np.testing.assert_array_equal(getattr(dhn, part), getattr(one, part))
    np.testing.assert_array_equal(one.report_database, one.database)
    split = data.make_split(collection, "deephash-cifar10", seed=3)
    np.testing.assert_array_equal(split.train, dhn.train)
    assert len(split.query) == 1000 and len(split.database) == 6000
    assert len(split.report_database) == 1000  # 7,000 - 1,000 queries - 5,000 drawn
    np.testing.assert_array_equal(split.report_database, split.unlabeled)
    assert not np.intersect1d(split.report_database, np.concatenate([split.train, split.val])).size
