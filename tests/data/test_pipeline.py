"""decode_image, balanced training batches and ordered evaluation batches."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tfhash import data
from tfhash.data import pipeline
from tfhash.errors import UsageError


def random_pixels(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def pixel_collection(labels, pixels, class_names=None):
    labels = np.asarray(labels)
    num_classes = labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1
    return data.Collection(
        "toy",
        labels=labels,
        class_names=class_names or [f"c{c}" for c in range(num_classes)],
        item_ids=np.array([f"toy/{i}" for i in range(len(labels))]),
        pixels=pixels,
    )


def file_collection(tmp_path, labels, pixels):
    """The same images written as PNG files (lossless), one file per image."""
    files = []
    for i, image in enumerate(pixels):
        path = str(tmp_path / f"{i:03d}.png")
        tf.io.write_file(path, tf.io.encode_png(image))
        files.append(path)
    return data.Collection(
        "files",
        labels=np.asarray(labels),
        class_names=[f"c{c}" for c in range(int(np.max(labels)) + 1)],
        item_ids=np.array([os.path.basename(f) for f in files]),
        files=np.array(files),
    )


def batches(ds, count):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


# decode_image -----------------------------------------------------------------------------------


def test_decode_png_rgb_and_grey_keep_exact_pixels():
    rgb = random_pixels(1, 12)[0]
    out = data.decode_image(tf.io.encode_png(rgb), 12)
    assert out.dtype == tf.float32 and out.shape == (12, 12, 3)
    np.testing.assert_array_equal(out.numpy(), rgb.astype(np.float32))
    grey = rgb[:, :, :1]
    out = data.decode_image(tf.io.encode_png(grey), 12).numpy()
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey[:, :, 0])


def test_decode_jpeg_any_size_to_square_float_pixels():
    colour = np.array([200, 40, 90], np.uint8)
    image = np.broadcast_to(colour, (30, 50, 3))
    jpeg = tf.io.encode_jpeg(image, quality=100)
    for size in (8, 30, 64):
        out = data.decode_image(jpeg, size).numpy()
        assert out.shape == (size, size, 3) and out.dtype == np.float32
        # A solid colour stays that colour (JPEG rounding aside) through any resize.
        assert np.abs(out - colour).max() <= 3
    grey_jpeg = tf.io.encode_jpeg(np.full((7, 9, 1), 77, np.uint8), quality=100)
    np.testing.assert_allclose(data.decode_image(grey_jpeg, 5).numpy(), 77, atol=2)


def test_resize_is_antialiased_bilinear_rounded_to_whole_pixels():
    image = random_pixels(1, 4, seed=11)[0]
    out = data.decode_image(tf.io.encode_png(image), 2).numpy()
    # Halving with a triangle kernel two input pixels wide: output pixel 0 is centred at
    # input coordinate 1.0, so pixels 0, 1, 2 weigh 0.75, 0.75, 0.25 (normalised: 3/7, 3/7,
    # 1/7); output pixel 1 mirrors it. Separable over rows and columns.
    weights = np.array([[3, 3, 1, 0], [0, 1, 3, 3]]) / 7
    reference = np.einsum("ai,bj,ijc->abc", weights, weights, image.astype(np.float64))
    np.testing.assert_array_equal(out, np.round(out))
    assert np.abs(out - reference).max() <= 0.5 + 1e-4


def test_decode_image_works_inside_a_serving_function():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(encoded):
        return tf.map_fn(
            lambda b: data.decode_image(b, 16), encoded, fn_output_signature=tf.float32
        )

    images = random_pixels(2, 16)
    out = serve(tf.stack([tf.io.encode_png(images[0]), tf.io.encode_png(images[1])]))
    np.testing.assert_array_equal(out.numpy(), images.astype(np.float32))


def test_in_memory_and_file_sources_give_the_pixels_decode_image_gives(tmp_path):
    pixels = random_pixels(5, 10, seed=3)
    labels = [0, 1, 0, 1, 1]
    expected = np.stack([data.decode_image(tf.io.encode_png(p), 24).numpy() for p in pixels])
    for collection in (pixel_collection(labels, pixels), file_collection(tmp_path, labels, pixels)):
        ((images, _),) = batches(data.eval_dataset(collection, np.arange(5), 24, 8), 1)
        np.testing.assert_array_equal(images, expected)


# eval_dataset -----------------------------------------------------------------------------------


def test_eval_dataset_is_finite_ordered_and_labelled(tmp_path):
    pixels = random_pixels(7, 8, seed=4)
    labels = np.array([2, 0, 1, 2, 1, 0, 2])
    indices = np.array([6, 0, 3, 4, 1])
    for collection in (pixel_collection(labels, pixels), file_collection(tmp_path, labels, pixels)):
        got = batches(data.eval_dataset(collection, indices, 8, 2), 10)
        assert [len(x) for x, _ in got] == [2, 2, 1]
        np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), pixels[indices])
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels[indices])
        assert got[0][1].dtype == np.int64


def test_eval_dataset_streams_when_too_big_to_cache(tmp_path, monkeypatch):
    pixels = random_pixels(6, 8, seed=5)
    collection = file_collection(tmp_path, [0, 1, 2, 0, 1, 2], pixels)
    cached = batches(data.eval_dataset(collection, np.arange(6), 12, 4), 5)
    monkeypatch.setattr(pipeline, "EVAL_CACHE_BYTES", 0)
    streamed = batches(data.eval_dataset(collection, np.arange(6), 12, 4), 5)
    assert len(cached) == len(streamed) == 2
    for (x1, y1), (x2, y2) in zip(cached, streamed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_multi_label_batches_carry_float_multi_hot_rows():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.uint8)
    collection = pixel_collection(labels, random_pixels(3, 4))
    ((_, y),) = batches(data.eval_dataset(collection, [2, 0], 4, 8), 1)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, labels[[2, 0]])


# train_dataset: single label --------------------------------------------------------------------


def identify(batch_images, pixels):
    """Index of each (un-augmented) batch image in ``pixels``, by exact match."""
    flat = pixels.reshape(len(pixels), -1).astype(np.float32)
    found = []
    for image in batch_images:
        matches = np.flatnonzero((flat == image.reshape(-1)).all(axis=1))
        assert len(matches) == 1
        found.append(matches[0])
    return np.array(found)


def test_batches_hold_p_classes_times_k_images_of_the_training_set():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 120)
    pixels = random_pixels(120, 4, seed=1)
    collection = pixel_collection(labels, pixels)
    train = np.sort(rng.choice(120, 80, replace=False))
    ds = data.train_dataset(
        collection, train, 4, batch_size=12, images_per_class=3, augment=False, seed=0
    )
    seen_classes = set()
    for images, batch_labels in batches(ds, 25):
        assert images.shape == (12, 4, 4, 3) and batch_labels.dtype == np.int64
        items = identify(images, pixels)
        assert np.isin(items, train).all()  # only training images
        assert len(set(items)) == 12  # no image twice
        np.testing.assert_array_equal(labels[items], batch_labels)
        groups = batch_labels.reshape(4, 3)  # 4 classes x 3 images
        assert (groups == groups[:, :1]).all()
        assert len(set(groups[:, 0])) == 4
        seen_classes.update(groups[:, 0])
    assert seen_classes == set(range(6))


def test_classes_with_too_few_training_images_are_not_drawn():
    labels = np.array([0] * 5 + [1] * 5 + [2] * 2 + [3] * 5)
    collection = pixel_collection(labels, random_pixels(len(labels), 2))
    ds = data.train_dataset(
        collection, np.arange(len(labels)), 2, batch_size=9, images_per_class=3, augment=False
    )
    for _, batch_labels in batches(ds, 10):
        assert sorted(set(batch_labels)) == [0, 1, 3]


def test_same_seed_same_batches_other_seed_other_batches():
    labels = np.repeat(np.arange(5), 10)
    collection = pixel_collection(labels, random_pixels(50, 6, seed=2))

    def first(seed):
        ds = data.train_dataset(collection, np.arange(50), 6, 8, 4, augment=True, seed=seed)
        return np.concatenate([x for x, _ in batches(ds, 4)])

    np.testing.assert_array_equal(first(1), first(1))
    assert not np.array_equal(first(1), first(2))


@pytest.mark.parametrize(
    "augment,flips", [(True, {False, True}), ("crop_flip", {False, True}), ("crop", {False})]
)
def test_augmentation_is_a_padded_random_crop_and_flip(augment, flips):
    size, pad = 8, 1  # pad = size // 8
    pixels = random_pixels(6, size, seed=7)
    collection = pixel_collection(np.repeat(np.arange(3), 2), pixels)
    padded = np.pad(pixels, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    # Every crop offset and flip of every image, brute force.
    candidates = {}
    for i in range(len(pixels)):
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[i, dy : dy + size, dx : dx + size]
                candidates[crop.tobytes()] = (i, dy, dx, False)
                candidates[crop[:, ::-1].tobytes()] = (i, dy, dx, True)
    ds = data.train_dataset(collection, np.arange(6), size, 4, 2, augment=augment, seed=3)
    seen = []
    for images, batch_labels in batches(ds, 30):
        for image, label in zip(images, batch_labels):
            i, dy, dx, flipped = candidates[image.astype(np.uint8).tobytes()]
            assert label == i // 2
            seen.append((dy, dx, flipped))
    assert len({(dy, dx) for dy, dx, _ in seen}) == 9  # every offset occurs
    assert {f for _, _, f in seen} == flips  # "crop" never mirrors an image


def test_digits_are_never_flipped_by_default():
    assert data.default_augmentation("digits") == "none"  # a mirrored digit is another glyph
    assert data.default_augmentation("cifar10") == "crop_flip"
    with pytest.raises(UsageError, match="unknown augmentation 'flip'"):
        data.train_dataset(
            pixel_collection(np.repeat(np.arange(2), 2), random_pixels(4, 8, 0)),
            np.arange(4),
            8,
            4,
            2,
            augment="flip",
        )


def test_training_from_image_files_upscaled(tmp_path):
    pixels = random_pixels(8, 5, seed=8)
    labels = [0, 0, 1, 1, 2, 2, 0, 1]
    collection = file_collection(tmp_path, labels, pixels)
    expected = np.stack([data.decode_image(tf.io.encode_png(p), 16).numpy() for p in pixels])
    ds = data.train_dataset(collection, np.arange(8), 16, 6, 2, augment=False)
    for images, batch_labels in batches(ds, 5):
        items = identify(images, expected)
        np.testing.assert_array_equal(np.array(labels)[items], batch_labels)


# train_dataset: multi label ---------------------------------------------------------------------


def test_multi_label_batches_give_every_item_a_positive():
    rng = np.random.default_rng(4)
    labels = np.zeros((90, 7), np.uint8)
    for row in labels:
        row[rng.choice(7, rng.integers(1, 4), replace=False)] = 1
    pixels = random_pixels(90, 3, seed=9)
    collection = pixel_collection(labels, pixels)
    ds = data.train_dataset(
        collection, np.arange(90), 3, batch_size=16, images_per_class=4, augment=False, seed=1
    )
    for images, batch_labels in batches(ds, 20):
        assert batch_labels.shape == (16, 7) and batch_labels.dtype == np.float32
        items = identify(images, pixels)
        np.testing.assert_array_equal(labels[items], batch_labels)
        # Four groups of four images; each group shares a label, the groups' labels differ.
        shared = [np.flatnonzero(batch_labels[g * 4 : (g + 1) * 4].min(axis=0)) for g in range(4)]
        assert all(len(s) for s in shared)
        # Every item shares at least one label with another item in the batch.
        overlap = batch_labels @ batch_labels.T
        np.fill_diagonal(overlap, 0)
        assert (overlap.max(axis=1) >= 1).all()


def test_multi_label_batches_avoid_repeating_images_when_they_can():
    # Label 0 on images 0-5, label 1 on images 0-2 and 6-8: images 0-2 carry both.
    labels = np.zeros((9, 2), np.uint8)
    labels[:6, 0] = 1
    labels[[0, 1, 2, 6, 7, 8], 1] = 1
    collection = pixel_collection(labels, random_pixels(9, 2, seed=10))
    ds = data.train_dataset(
        collection, np.arange(9), 2, batch_size=6, images_per_class=3, augment=False, seed=0
    )
    for images, _ in batches(ds, 15):
        assert len(np.unique(images.reshape(6, -1), axis=0)) == 6


# Errors -----------------------------------------------------------------------------------------


def test_impossible_batch_shapes_are_usage_errors():
    collection = pixel_collection(np.repeat(np.arange(3), 4), random_pixels(12, 2))
    train = np.arange(12)
    with pytest.raises(UsageError, match="`images_per_class` must be at least 2"):
        data.train_dataset(collection, train, 2, 8, 1)
    with pytest.raises(UsageError, match="batch_size=10 is not a multiple of images_per_class=4"):
        data.train_dataset(collection, train, 2, 10, 4)
    with pytest.raises(UsageError, match="one class per batch"):
        data.train_dataset(collection, train, 2, 4, 4)
    with pytest.raises(
        UsageError,
        match="needs 2 classes with at least 5 training images, but "
        "toy has 0; lower `images_per_class`",
    ):
        data.train_dataset(collection, train, 2, 10, 5)
    with pytest.raises(UsageError, match=r"indices must lie in \[0, 12\)"):
        data.eval_dataset(collection, [3, 12], 2, 4)


def test_fewer_classes_than_a_batch_has_places_for_fill_it_with_all_of_them():
    """A batch of 4 classes x 3 over a collection of 3 classes: every batch holds the 3
    classes, 3 images each (a folder of any number of classes trains with one config);
    the semi-supervised sampler, whose batch mixes in unlabelled images, still refuses."""
    collection = pixel_collection(np.repeat(np.arange(3), 4), random_pixels(12, 2))
    ds = data.train_dataset(collection, np.arange(12), 2, 12, 3, augment=False, seed=0)
    for _, labels in batches(ds, 5):
        assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    collection = pixel_collection(np.repeat(np.arange(3), 5), random_pixels(15, 2))
    labelled = np.array([0, 1, 2, 5, 6, 7, 10, 11, 12])
    with pytest.raises(
        UsageError,
        match="needs 4 classes with at least 3 training images, but "
        "toy has 3; lower `images_per_class` or `batch_size`",
    ):
        data.semi_supervised_dataset(
            collection,
            labelled,
            np.setdiff1d(np.arange(15), labelled),
            2,
            16,
            3,
            0.75,
            augment=False,
            seed=0,
        )


def test_corrupt_image_file_is_named(tmp_path):
    pixels = random_pixels(4, 6)
    collection = file_collection(tmp_path, [0, 0, 1, 1], pixels)
    jpeg = tf.io.encode_jpeg(pixels[2]).numpy()
    (tmp_path / "002.png").write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    with pytest.raises(UsageError, match=r"cannot decode image .*002\.png \(.*JPEG"):
        data.train_dataset(collection, np.arange(4), 6, 4, 2)
    (tmp_path / "002.png").write_bytes(b"not an image")
    with pytest.raises(UsageError, match=r"cannot decode image .*002\.png \(Unknown image file"):
        data.eval_dataset(collection, np.arange(4), 6, 4)


def test_every_corrupt_image_is_named_at_once_without_libjpeg_noise(tmp_path, capfd, monkeypatch):
    """Two bad files far apart (a truncated JPEG early, text late, in another decode chunk):
    one error names both, so one fix and one rerun suffice; libjpeg's own line ("Improper call
    to JPEG library in state 201") does not reach stderr where the commands hide TF's lines."""
    monkeypatch.setattr(pipeline, "_DECODE_CHUNK", 4)
    pixels = random_pixels(10, 16)
    collection = file_collection(tmp_path, [0] * 5 + [1] * 5, pixels)
    jpeg = tf.io.encode_jpeg(pixels[1]).numpy()
    (tmp_path / "001.png").write_bytes(jpeg[: len(jpeg) // 3])
    (tmp_path / "008.png").write_bytes(b"not an image")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    capfd.readouterr()
    with pytest.raises(UsageError) as error:
        data.eval_dataset(collection, np.arange(10), 6, 4)
    message = str(error.value)
    assert message.startswith("cannot decode 2 images: ")
    assert re.search(r"001\.png \(.*JPEG.*\); .*008\.png \(Unknown image file format", message)
    assert message.endswith("; replace or remove those files")
    assert "JPEG library" not in capfd.readouterr().err
