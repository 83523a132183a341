"""SSDH-ZP: the online graph, the loss by hand, unlabelled labels never read, the semi-supervised
sampler, the labelled-per-class split, bad input, and a run through tfhash.train."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfhash import data, losses, methods
from tfhash.data.pipeline import (
    _decode_table,
    feature_semi_supervised_dataset,
    semi_supervised_dataset,
)
from tfhash.errors import UsageError
from tfhash.losses import ssdh
from tfhash.losses.ssdh import SSDHLoss, graph_loss, graph_neighbours, unpack_labels
from tfhash.train import TrainConfig, train


def np_distances(x):
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def brute_force_ranks(d):
    """rank[i, j]: how many items come before j in i's list (closer, or as close with a smaller
    index): the ranking written out pair by pair."""
    b = len(d)
    rank = np.zeros((b, b), int)
    for i in range(b):
        for j in range(b):
            rank[i, j] = sum(d[i, m] < d[i, j] or (d[i, m] == d[i, j] and m < j) for m in range(b))
    return rank


# --- the online graph ---------------------------------------------------------------------


@pytest.mark.parametrize("batch,k,start,count", [(12, 3, 7, 4), (20, 8, 14, 5), (9, 1, 8, 1)])
def test_graph_picks_match_a_brute_force_ranking(batch, k, start, count):
    rng = np.random.default_rng(batch)
    s = rng.uniform(size=(batch, 6)).astype(np.float32)
    d = np_distances(s.astype(np.float64))
    rank = brute_force_ranks(d)
    seen_p, seen_n = set(), set()
    for seed in range(40):
        p, n = graph_neighbours(tf.constant(d, tf.float32), k, start, count, seed=seed)
        p_rank = rank[np.arange(batch), p.numpy()]
        n_rank = rank[np.arange(batch), n.numpy()]
        assert (p_rank < k).all() and ((n_rank >= start) & (n_rank < start + count)).all()
        seen_p.update(p_rank.tolist())
        seen_n.update(n_rank.tolist())
    # every rank of each window is drawn (uniform draws, not always the same one)
    assert seen_p == set(range(k)) and seen_n == set(range(start, start + count))


def test_the_anchor_is_its_own_nearest_neighbour_and_ties_go_by_index():
    d = np_distances(np.array([[0.0], [1.0], [1.0], [5.0]]))
    p, n = graph_neighbours(tf.constant(d, tf.float32), 1, 3, 1)
    # rank 0 is the anchor itself, except for item 2, whose duplicate 1 comes first by index
    assert p.numpy().tolist() == [0, 1, 1, 3]
    # anchor 1: 1 (0), 2 (0), 0 (1), 3 (16) -> rank 3 is item 3; anchor 3: 3, 1, 2, 0
    assert n.numpy().tolist() == [3, 3, 3, 0]


def test_graph_needs_the_window_in_the_batch():
    d = tf.zeros((10, 10))
    with pytest.raises(UsageError, match="at least 12 images, got 10"):
        graph_neighbours(d, 2, 8, 4)


# --- the loss by hand ---------------------------------------------------------------------


def reference_ssdh(h, labelled, labels, triplets, p, n, margin_r, margin_g, weight):
    """The objective written plainly in NumPy, on given triplets and graph picks."""
    s = (h.astype(np.float64) + 1) / 2
    d = np_distances(s)
    ranking = np.mean([max(0.0, margin_r + d[i, j] - d[i, m]) for i, j, m in triplets])
    graph = np.mean(
        [d[i, p[i]] + max(0.0, margin_g - np.sqrt(d[i, n[i]])) ** 2 for i in range(len(h))]
    )
    return ranking, graph, 0.5 * (ranking + weight * graph)


def batch_of(bits=48, labelled_count=64, size=128, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    h = np.tanh(rng.normal(size=(size, bits)) * 1.5).astype(np.float32)
    labelled = np.arange(size) < labelled_count
    labels = np.where(labelled, np.arange(size) % classes, rng.integers(0, classes, size))
    y = np.stack([labelled.astype(np.int64), labels], 1)
    return h, labelled, labels, y


@pytest.mark.parametrize("bits", [12, 48])
def test_loss_values_by_hand(bits):
    h, labelled, labels, y = batch_of(bits)
    loss = SSDHLoss(mining="all", seed=3)
    terms = loss.terms(tf.constant(y), tf.constant(h))
    # The same draws: triplets of labelled images, the graph's picks with the loss's seed.
    labelled_t, labels_t = unpack_labels(tf.constant(y))
    triplets, keep = ssdh.ranking_triplets(labelled_t, labels_t[:, 0], "all", 1, None)
    triplets = triplets.numpy()[keep.numpy() == 1]
    d = tf.constant(np_distances((h.astype(np.float64) + 1) / 2), tf.float32)
    p, n = graph_neighbours(
        d, 8, *ssdh.negative_window(bits), SSDHLoss(seed=3).seed_generator
    )  # the loss's first draw
    # every labelled triplet, and only those: i, j same class, m another, all labelled
    expected = {
        (i, j, m)
        for i in range(64)
        for j in range(64)
        for m in range(64)
        if i != j and labels[i] == labels[j] and labels[m] != labels[i]
    }
    assert set(map(tuple, triplets.tolist())) == expected
    margin_g = 2.5 if bits == 12 else 3.0
    ranking, graph, total = reference_ssdh(
        h, labelled, labels, triplets, p.numpy(), n.numpy(), 1.0, margin_g, 0.1
    )
    np.testing.assert_allclose(float(terms["ranking"]), ranking, rtol=1e-4)
    np.testing.assert_allclose(float(terms["graph"]), graph, rtol=1e-4)
    np.testing.assert_allclose(float(terms["loss"]), total, rtol=1e-4)


def test_graph_weight_zero_leaves_the_ranking_term_and_no_unlabelled_gradient():
    h, labelled, labels, y = batch_of(24)
    h = tf.Variable(h)
    with tf.GradientTape() as tape:
        loss = SSDHLoss(graph_weight=0.0, seed=1)(tf.constant(y), h)
    grad = tape.gradient(loss, h).numpy()
    assert np.abs(grad[~labelled]).max() == 0 and np.abs(grad[labelled]).max() > 0
    with tf.GradientTape() as tape:
        loss = SSDHLoss(seed=1)(tf.constant(y), h)
    assert np.abs(tape.gradient(loss, h).numpy()[~labelled]).max() > 0  # the graph reaches them


def test_unlabelled_labels_are_never_read():
    h, labelled, labels, y = batch_of(32, seed=5)
    scrambled = y.copy()
    rng = np.random.default_rng(9)
    scrambled[~labelled, 1] = rng.integers(-5, 100, (~labelled).sum())
    assert (scrambled[~labelled, 1] != y[~labelled, 1]).any()
    for mining in ("all", "random"):
        a = SSDHLoss(mining=mining, seed=7).terms(tf.constant(y), tf.constant(h))
        b = SSDHLoss(mining=mining, seed=7).terms(tf.constant(scrambled), tf.constant(h))
        for name in a:
            assert float(a[name]) == float(b[name]), name
    # ... whereas changing a labelled image's label does change the loss
    changed = y.copy()
    changed[0, 1] = 3 - changed[0, 1]
    c = SSDHLoss(mining="all", seed=7).terms(tf.constant(changed), tf.constant(h))
    assert float(c["ranking"]) != float(
        SSDHLoss(mining="all", seed=7).terms(tf.constant(y), tf.constant(h))["ranking"]
    )


def test_multi_hot_labels_with_a_mask():
    h, labelled, labels, _ = batch_of(48)
    multi = np.eye(4, dtype=np.float32)[labels]
    y = np.concatenate([labelled[:, None].astype(np.float32), multi], 1)
    y_single = np.stack([labelled.astype(np.int64), labels], 1)
    a = SSDHLoss(mining="all", seed=2).terms(tf.constant(y), tf.constant(h))
    b = SSDHLoss(mining="all", seed=2).terms(tf.constant(y_single), tf.constant(h))
    for name in a:  # one-hot rows relate items as their class ids do
        np.testing.assert_allclose(float(a[name]), float(b[name]), rtol=1e-6)


def test_graph_loss_by_hand_and_finite_at_zero_distance():
    s = tf.Variable([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    with tf.GradientTape() as tape:
        d = losses.squared_distances(s)
        values = graph_loss(d, tf.constant([2, 0, 2]), tf.constant([1, 0, 0]), 3.0)
        total = tf.reduce_sum(values)
    # D_02 + (3 − 0)², 0 + (3 − 0)², 0 + (3 − √2)²  (a duplicate negative: √0 clamped)
    np.testing.assert_allclose(values.numpy(), [11.0, 9.0, (3 - np.sqrt(2)) ** 2], rtol=1e-5)
    assert np.isfinite(tape.gradient(total, s).numpy()).all()


# --- the class ----------------------------------------------------------------------------


def test_config_round_trip_and_registry():
    loss = SSDHLoss(
        margin=2.0,
        graph_margin=4.0,
        graph_weight=0.3,
        neighbours=5,
        seed=4,
        mining="all",
        quadruplets_per_anchor=7,
    )
    again = SSDHLoss.from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    assert isinstance(losses.get("ssdh"), SSDHLoss)
    method = methods.get("ssdh")
    assert method.sampler == "semi_supervised" and method.min_batch_size == ssdh.MIN_BATCH_SIZE
    assert ssdh.MIN_BATCH_SIZE == 16 and method.head == "tanh"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(margin=0), "margin must be a finite positive"),
        (dict(graph_weight=-1), "graph_weight"),
        (dict(graph_margin=0), "graph_margin"),
        (dict(neighbours=0), r"neighbours \(k\) must be an integer in \[1, 114\]"),
        (dict(neighbours=115), "neighbours"),
        (dict(mining="some"), "mining"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        SSDHLoss(**kwargs)


def test_bad_batches():
    h, _, _, y = batch_of(12)
    with pytest.raises(UsageError, match=r"ssdh needs y_true = \[labelled mask, labels\]"):
        SSDHLoss().terms(tf.constant(y[:, 1]), tf.constant(h))
    # 8 images: the window would start at rank 7, inside the 8 nearest
    with pytest.raises(UsageError, match="rank 7 of a batch of 8, inside the k=8 nearest"):
        SSDHLoss().terms(tf.constant(y[:8]), tf.constant(h[:8]))


@pytest.mark.parametrize(
    "bits,batch,window",
    [
        (12, 128, (120, 4)),
        (48, 128, (114, 10)),  # the official solvers' ranks at its batch
        (12, 64, (60, 2)),
        (48, 64, (57, 5)),
        (24, 256, (228, 20)),
        (12, 16, (15, 1)),
        (48, 16, (14, 1)),  # at least one rank
    ],
)
def test_the_negative_window_is_the_official_one_scaled_to_the_batch(bits, batch, window):
    assert ssdh.negative_window(bits, batch) == window
    start, count = ssdh.negative_window(bits, tf.constant(batch))  # a batch of unknown size
    assert (int(start), int(count)) == window
    assert window[0] >= ssdh.DEFAULT_NEIGHBOURS and sum(window) <= batch


@pytest.mark.parametrize("anchor_as_positive", [False, True])
def test_the_loss_is_the_same_under_xla(anchor_as_positive):
    # Keras compiles the train step with XLA on a GPU (jit_compile="auto"); there, a
    # boolean_mask of the mined triplets once returned copies of the first one.
    # 16 images, 12 bits: the graph's window is rank 15 alone and k = 1 picks the anchor, so no
    # draw decides anything (XLA draws other random numbers); every triplet is mined.
    h, _, _, y = batch_of(12, labelled_count=8, size=16)
    make = lambda: SSDHLoss(  # noqa: E731
        seed=0,
        neighbours=1,
        anchor_as_positive=anchor_as_positive,
    )
    eager = make().terms(tf.constant(y), tf.constant(h))
    loss = make()
    xla = tf.function(tf.autograph.experimental.do_not_convert(loss.terms), jit_compile=True)(
        tf.constant(y), tf.constant(h)
    )
    for name in ("ranking", "graph", "loss"):
        np.testing.assert_allclose(float(xla[name]), float(eager[name]), rtol=1e-5)


def test_a_batch_of_unknown_size_takes_the_same_window():
    h, _, _, y = batch_of(48, labelled_count=32, size=64)
    static = SSDHLoss(seed=5).terms(tf.constant(y), tf.constant(h))
    loss = SSDHLoss(seed=5)  # a fresh seed generator: the same draws as the static call
    dynamic = tf.function(
        lambda y, h: loss.terms(y, h),
        input_signature=[tf.TensorSpec([None, 2], tf.int64), tf.TensorSpec([None, 48], tf.float32)],
    )
    for name, value in dynamic(tf.constant(y), tf.constant(h)).items():
        np.testing.assert_allclose(value.numpy(), static[name].numpy(), rtol=1e-5)


# --- the semi-supervised sampler ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    collection = data.load_collection("digits")
    return collection, data.make_split(collection, "digits", seed=0)


@pytest.mark.parametrize("ratio,per_class", [(0.5, 8), (0.25, 4)])
def test_sampler_ratio_masks_and_labels(digits, ratio, per_class):
    collection, split = digits
    ds = semi_supervised_dataset(
        collection, split.train, split.unlabeled, 32, 64, per_class, ratio, augment="none", seed=1
    )
    labelled_count = round(ratio * 64)
    for images, y in ds.take(3):
        images, y = images.numpy(), y.numpy()
        assert images.shape == (64, 32, 32, 3) and y.shape == (64, 2)
        assert y[:labelled_count, 0].tolist() == [1] * labelled_count
        assert (y[labelled_count:] == 0).all()  # unlabelled rows: mask 0, no label
        classes, counts = np.unique(y[:labelled_count, 1], return_counts=True)
        assert len(classes) == labelled_count // per_class and (counts == per_class).all()
        assert len({im.tobytes() for im in images}) == 64  # 64 distinct images
    # the labelled rows are training images with those labels, the rest unlabelled images
    train_px = _decode_table(collection, split.train, 32).astype(np.float32)
    unl_px = _decode_table(collection, split.unlabeled, 32).astype(np.float32)
    lookup_train = {im.tobytes(): i for i, im in enumerate(train_px)}
    lookup_unl = {im.tobytes() for im in unl_px}
    images, y = next(iter(ds))
    for row in range(64):
        key = images[row].numpy().tobytes()
        if row < labelled_count:
            assert collection.labels[split.train[lookup_train[key]]] == y[row, 1]
        else:
            assert key in lookup_unl


def test_sampler_is_deterministic_and_features_give_the_same_batches(digits):
    collection, split = digits
    rng = np.random.default_rng(0)
    f_train = rng.normal(size=(len(split.train), 5)).astype(np.float32)
    f_unl = rng.normal(size=(len(split.unlabeled), 5)).astype(np.float32)
    a = feature_semi_supervised_dataset(
        collection, split.train, split.unlabeled, f_train, f_unl, 64, 8, 0.5, seed=3, start_step=2
    )
    b = feature_semi_supervised_dataset(
        collection, split.train, split.unlabeled, f_train, f_unl, 64, 8, 0.5, seed=3
    )
    ((xa, ya),) = a.take(1)
    ((xb, yb),) = b.skip(2).take(1)
    np.testing.assert_array_equal(xa.numpy(), xb.numpy())
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    rows = {r.tobytes(): i for i, r in enumerate(f_train)}
    unl_rows = {r.tobytes() for r in f_unl}
    xa, ya = xa.numpy(), ya.numpy()
    assert all(collection.labels[split.train[rows[xa[i].tobytes()]]] == ya[i, 1] for i in range(32))
    assert all(xa[i].tobytes() in unl_rows for i in range(32, 64))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(labelled_ratio=1.0), r"`labelled_ratio` must be in \(0, 1\)"),
        (dict(labelled_ratio=0.0), r"`labelled_ratio` must be in \(0, 1\)"),
        (dict(labelled_ratio=0.3), "gives 19 labelled and 45 unlabelled"),
        (dict(labelled_ratio=0.1), "at least two classes"),
        (dict(unlabelled=np.array([], np.int64)), "has no unlabelled images"),
        (dict(unlabelled=np.arange(10)), "takes 32 unlabelled images but the split has 10"),
    ],
)
def test_sampler_bad_input(digits, kwargs, message):
    collection, split = digits
    settings = dict(
        labelled=split.train,
        unlabelled=split.unlabeled,
        image_size=32,
        batch_size=64,
        images_per_class=8,
        labelled_ratio=0.5,
    )
    settings.update(kwargs)
    with pytest.raises(UsageError, match=message):
        semi_supervised_dataset(collection, **settings)


# --- few labels: keep_labelled -------------------------------------------------------------


def test_keep_labelled_per_class(digits):
    collection, split = digits
    few = data.keep_labelled(collection, split, 20, seed=1)
    counts = np.bincount(collection.labels[few.train], minlength=10)
    assert (counts == 20).all()
    assert np.isin(few.train, split.train).all()
    np.testing.assert_array_equal(
        few.unlabeled, np.union1d(split.unlabeled, np.setdiff1d(split.train, few.train))
    )
    np.testing.assert_array_equal(few.val, split.val)
    np.testing.assert_array_equal(few.query, split.query)
    again = data.keep_labelled(collection, split, 20, seed=1)
    np.testing.assert_array_equal(again.train, few.train)  # seeded
    assert not np.array_equal(data.keep_labelled(collection, split, 20, seed=2).train, few.train)
    everything = data.keep_labelled(collection, split, 1000)  # more than a class has: all
    np.testing.assert_array_equal(everything.train, split.train)
    with pytest.raises(UsageError, match="`labelled_per_class` must be a whole number"):
        data.keep_labelled(collection, split, 0)


# --- the driver: settings and a run ---------------------------------------------------------


def _config(run_dir, **overrides):
    settings = dict(
        run_dir=str(run_dir),
        dataset="digits",
        protocol="digits",
        method="ssdh",
        bits=12,
        batch_size=128,
        images_per_class=8,
        labelled_per_class=20,
        epochs=1,
        steps_per_epoch=2,
        eval_every=1,
        eval_batch_size=512,
        verbose=0,
        learning_rate=0.01,
        head_lr_multiplier=1.0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(labelled_ratio=1.0), r"`labelled_ratio` must be in \(0, 1\)"),
        (dict(labelled_ratio=0.0), r"`labelled_ratio` must be in \(0, 1\)"),
        (
            dict(batch_size=8, labelled_ratio=0.5, images_per_class=2),
            "method=ssdh needs batches of at least 16 images",
        ),
        (dict(labelled_ratio=0.3), "gives 38 labelled images per batch"),
        (dict(labelled_per_class=5), "labelled_per_class=5 is fewer than images_per_class=8"),
        (dict(labelled_per_class=-1), "`labelled_per_class` must be >= 0"),
        (dict(protocol="fraction", labelled_per_class=0), "leaving no unlabelled images"),
        (dict(method="lsdh", labelled_ratio=2.0), r"`labelled_ratio` must be in \(0, 1\)"),
    ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, overrides, message):
    with pytest.raises(UsageError, match=message) as error:
        _config(tmp_path / "run", **overrides).validate()
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_cli_exits_2_on_a_batch_too_small_for_the_window(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.train",
            f"--run_dir={tmp_path / 'r'}",
            "--method=ssdh",
            "--batch_size=8",
            "--images_per_class=2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs batches of at least 16 images" in lines[0]


def test_digits_keeps_20_labels_per_class_for_a_semi_supervised_method(tmp_path):
    ssdh_config = _config(tmp_path / "a", labelled_per_class=0)
    assert ssdh_config.labelled_per_class_for(methods.get("ssdh")) == 20
    assert ssdh_config.labelled_per_class_for(methods.get("lsdh")) == 0  # the others: all
    assert _config(tmp_path / "b").labelled_per_class_for(methods.get("ssdh")) == 20
    assert (
        _config(tmp_path / "c", labelled_per_class=50).labelled_per_class_for(methods.get("ssdh"))
        == 50
    )
    assert (
        _config(tmp_path / "d", protocol="cifar10", labelled_per_class=0).labelled_per_class_for(
            methods.get("ssdh")
        )
        == 0
    )


@pytest.mark.slow
def test_a_run_trains_on_few_labels_and_the_unlabelled_images(tmp_path):
    run_dir = tmp_path / "run"
    # the quickstart's batch of 64 and the digits protocol's own 20 labels per class
    metrics = train(_config(run_dir, batch_size=64, labelled_per_class=0))
    assert 0 < next(v for k, v in metrics.items() if k.startswith("map")) <= 1
    split = data.Split.load(str(run_dir / "split"))
    assert len(split.train) == 200 and len(split.val) == 100  # 20 per class kept labelled
    assert len(split.unlabeled) == 1797 - 300 - 200 - 100
    header, *rows = (run_dir / "history.csv").read_text().splitlines()
    assert {"ranking", "graph"} <= set(header.split(",")) and len(rows) == 1
    settings = json.loads((run_dir / "flags.json").read_text())
    assert settings["labelled_per_class"] == 0 and settings["labelled_ratio"] == 0.5
