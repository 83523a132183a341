"""Sources: digits, TFDS (through tfds.testing.mock_data), image folders and list files."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfhash import data
from tfhash.data import sources
from tfhash.errors import UsageError


def write_image(path, pixels):
    """Writes uint8 ``[H, W, C]`` pixels as PNG or JPEG (by extension)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = tf.constant(pixels, tf.uint8)
    encoded = tf.io.encode_png(pixels) if path.endswith(".png") else tf.io.encode_jpeg(pixels)
    tf.io.write_file(path, encoded)


def solid(value, height=6, width=6, channels=3):
    return np.full((height, width, channels), value, np.uint8)


# Digits ---------------------------------------------------------------------------------------


def test_digits_are_the_1797_sklearn_images_scaled_to_rgb():
    from sklearn.datasets import load_digits

    reference = load_digits()
    collection = data.load_collection("digits")
    assert len(collection) == 1797
    assert collection.class_names == [str(d) for d in range(10)]
    assert not collection.multi_label
    np.testing.assert_array_equal(collection.labels, reference.target)
    assert collection.pixels.shape == (1797, 8, 8, 3) and collection.pixels.dtype == np.uint8
    # 0..16 -> 0..255, grey repeated on the three channels.
    expected = np.rint(reference.images[5] * 255 / 16)
    for channel in range(3):
        np.testing.assert_array_equal(collection.pixels[5, :, :, channel], expected)
    assert collection.pixels.max() == 255
    assert collection.item_ids[7] == "digits/7"


def test_digits_rejects_a_data_dir(tmp_path):
    with pytest.raises(UsageError, match="drop `data_dir`"):
        data.load_collection("digits", str(tmp_path))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(UsageError, match="unknown dataset 'mnist'.*cifar10.*nuswide21"):
        data.load_collection("mnist")


# TFDS -----------------------------------------------------------------------------------------


def _mock_examples(name, n, keys):
    """What the mocked tfds.load yields for ``name`` (deterministic under mock_data)."""
    ds = tfds.load(name, split="train+test", download=False)
    rows = list(tfds.as_numpy(ds.batch(n)))[0]
    return [rows[k] for k in keys]


def test_cifar10_loads_through_tfds_mock_data():
    with tfds.testing.mock_data(num_examples=40):
        collection = data.load_collection("cifar10", "/nonexistent/tfds")
        images, labels = _mock_examples("cifar10", 40, ["image", "label"])
    assert len(collection) == 40 and collection.pixels.shape == (40, 32, 32, 3)
    np.testing.assert_array_equal(collection.pixels, images)
    np.testing.assert_array_equal(collection.labels, labels)
    assert len(collection.class_names) == 10
    assert collection.item_ids[3] == "cifar10/3"


def test_cifar20_uses_the_coarse_labels():
    with tfds.testing.mock_data(num_examples=60):
        collection = data.load_collection("cifar20")
        coarse, fine = _mock_examples("cifar100", 60, ["coarse_label", "label"])
    assert len(collection.class_names) == 20
    np.testing.assert_array_equal(collection.labels, coarse)
    assert not np.array_equal(collection.labels, fine)


def test_tfds_dataset_not_prepared_names_the_command(tmp_path):
    with pytest.raises(
        UsageError,
        match=r"cifar10 is not in TFDS data_dir .*tfds build cifar10"
        r".*dataset=folder",
    ):
        data.load_collection("cifar10", str(tmp_path))


def _sun397_mock(counts):
    """A mock ``_as_dataset`` yielding SUN397 examples with ``counts[label]`` images per label.

    Each image is a tiny PNG whose colour is its label, so tests can see which bytes were kept.
    """
    pngs = {label: tf.io.encode_png(solid(label % 256, 2, 3)).numpy() for label in counts}
    labels = np.concatenate([np.full(n, label, np.int64) for label, n in counts.items()])
    labels = np.random.default_rng(0).permutation(labels)  # interleave the categories

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, split, read_config, shuffle_files
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding)
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": [pngs[label] for label in labels],
                "label": labels,
                "file_name": [f"img_{i}.jpg" for i in range(len(labels))],
            }
        )

    return as_dataset, labels


def test_sun397_keeps_the_29_largest_categories_with_600_images():
    # 29 categories with 600..628 images, then three smaller ones, at scattered label ids.
    big = {int(label): 600 + i for i, label in enumerate(range(3, 3 + 29 * 13, 13))}
    counts = {**big, 1: 599, 2: 5, 396: 1}
    as_dataset, pooled_labels = _sun397_mock(counts)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        collection = data.load_collection("sun397")
        names = tfds.builder("sun397/tfds").info.features["label"].names
    kept = sorted(big)
    assert len(collection) == sum(big.values())
    assert collection.class_names == [names[k] for k in kept]
    np.testing.assert_array_equal(np.bincount(collection.labels), [big[k] for k in kept])
    # item ids point back to the pooled TFDS order; labels and bytes follow them.
    positions = np.array([int(i.split("/")[1]) for i in collection.item_ids])
    np.testing.assert_array_equal(np.array(kept)[collection.labels], pooled_labels[positions])
    first = tf.io.decode_png(collection.encoded[0]).numpy()
    assert first[0, 0, 0] == pooled_labels[positions[0]] % 256


def test_sun397_with_too_few_large_categories_is_a_usage_error():
    counts = {label: 600 for label in range(28)}
    counts[28] = 599
    as_dataset, _ = _sun397_mock(counts)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        with pytest.raises(
            UsageError,
            match="has 28 categories with at least 600 images.*needs 29.*tfds build sun397/tfds",
        ):
            data.load_collection("sun397")


# Image folders --------------------------------------------------------------------------------


def test_folder_with_class_subfolders(tmp_path):
    write_image(str(tmp_path / "cat" / "a.png"), solid(10))
    write_image(str(tmp_path / "cat" / "b.jpg"), solid(20, 9, 5, 1))  # grey, other size
    write_image(str(tmp_path / "ant" / "c.PNG"), solid(30))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    os.makedirs(tmp_path / "empty")
    collection = data.load_collection("folder", str(tmp_path))
    assert collection.class_names == ["ant", "cat"]
    assert collection.item_ids.tolist() == ["ant/c.PNG", "cat/a.png", "cat/b.jpg"]
    assert collection.labels.tolist() == [0, 1, 1]
    assert collection.files[1] == os.path.join(str(tmp_path), "cat", "a.png")


def test_folder_with_splits_pools_them(tmp_path):
    write_image(str(tmp_path / "train" / "dog" / "1.png"), solid(1))
    write_image(str(tmp_path / "train" / "cat" / "2.png"), solid(2))
    write_image(str(tmp_path / "test" / "dog" / "3.png"), solid(3))
    write_image(str(tmp_path / "test" / "emu" / "4.png"), solid(4))
    collection = data.load_collection("folder", str(tmp_path))
    assert collection.class_names == ["cat", "dog", "emu"]
    assert dict(zip(collection.item_ids, collection.labels)) == {
        "test/dog/3.png": 1,
        "test/emu/4.png": 2,
        "train/cat/2.png": 0,
        "train/dog/1.png": 1,
    }


def test_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="needs data_dir=<"):
        data.load_collection("folder")
    with pytest.raises(UsageError, match="does not exist"):
        data.load_collection("folder", str(tmp_path / "missing"))
    os.makedirs(tmp_path / "cat")
    (tmp_path / "cat" / "x.txt").write_text("")
    with pytest.raises(UsageError, match="no images .* found in"):
        data.load_collection("folder", str(tmp_path))


# List files -----------------------------------------------------------------------------------


def write_list(path, rows):
    path.write_text("".join(f"{p} {' '.join(str(v) for v in vector)}\n" for p, vector in rows))
    return str(path)


def test_list_file_multi_label(tmp_path):
    for i in range(4):
        write_image(str(tmp_path / "imgs" / f"{i}.jpg"), solid(i))
    rows = [
        ("imgs/0.jpg", [1, 0, 1]),
        ("imgs/1.jpg", [0, 1, 0]),
        ("imgs/2.jpg", [0, 0, 0]),
        ("imgs/3.jpg", [1, 1, 1]),
    ]
    collection = data.load_collection("list", write_list(tmp_path / "db.txt", rows))
    assert collection.multi_label
    assert collection.labels.dtype == np.uint8
    np.testing.assert_array_equal(collection.labels, [v for _, v in rows])
    assert collection.item_ids.tolist() == [p for p, _ in rows]
    assert collection.files[3] == os.path.join(str(tmp_path), "imgs", "3.jpg")
    assert collection.class_names == ["0", "1", "2"]
    # A directory holding exactly one list file works too.
    assert len(data.load_collection("list", str(tmp_path))) == 4


def test_list_file_with_one_label_per_line_is_single_label(tmp_path):
    for i in range(3):
        write_image(str(tmp_path / f"{i}.png"), solid(i))
    rows = [("0.png", [0, 1]), ("1.png", [1, 0]), ("2.png", [0, 1])]
    collection = data.load_collection("list", write_list(tmp_path / "l.txt", rows))
    assert not collection.multi_label
    assert collection.labels.tolist() == [1, 0, 1]


def test_list_file_errors(tmp_path):
    write_image(str(tmp_path / "a.png"), solid(1))
    write_image(str(tmp_path / "b.png"), solid(2))
    bad_length = write_list(tmp_path / "bad.txt", [("a.png", [1, 0, 1]), ("b.png", [1, 0])])
    with pytest.raises(
        UsageError, match="line 2 of .*bad.txt has 2 label values, the first line has 3"
    ):
        data.load_collection("list", bad_length)
    not_binary = write_list(tmp_path / "nb.txt", [("a.png", [1, 2])])
    with pytest.raises(UsageError, match="label values must be 0 or 1"):
        data.load_collection("list", not_binary)
    missing = write_list(tmp_path / "m.txt", [("a.png", [1, 0]), ("gone.png", [0, 1])])
    with pytest.raises(UsageError, match="1 of 2 images listed .* do not exist .*gone.png"):
        data.load_collection("list", missing)
    empty = tmp_path / "e.txt"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        data.load_collection("list", str(empty))
    with pytest.raises(UsageError, match="exactly one list file.*bad.txt, e.txt, m.txt, nb.txt"):
        data.load_collection("list", str(tmp_path))


def test_an_image_or_a_binary_file_as_a_list_file_is_one_clear_error(tmp_path):
    """``--data=query.jpg`` used to be read as text: a UnicodeDecodeError traceback."""
    write_image(str(tmp_path / "query.jpg"), np.arange(108, dtype=np.uint8).reshape(6, 6, 3))
    with pytest.raises(
        UsageError,
        match=r"query.jpg is an image, not a list file .* pass an "
        r"image folder <root>/<class>/<image> or a list file",
    ):
        data.load_collection("list", str(tmp_path / "query.jpg"))
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)))
    with pytest.raises(UsageError, match=r"blob.txt is not text, not a list file"):
        data.load_collection("list", str(tmp_path / "blob.txt"))


def test_nuswide21_reads_21_concepts(tmp_path):
    write_image(str(tmp_path / "x.jpg"), solid(5))
    write_image(str(tmp_path / "y.jpg"), solid(6))
    vectors = np.zeros((2, 21), int)
    vectors[0, [0, 14]] = 1  # animal, sky
    vectors[1, 20] = 1  # window
    path = write_list(tmp_path / "nus.txt", [("x.jpg", vectors[0]), ("y.jpg", vectors[1])])
    collection = data.load_collection("nuswide21", path)
    assert collection.class_names == list(sources.NUSWIDE21_CONCEPTS)
    assert collection.class_names[14] == "sky"
    np.testing.assert_array_equal(collection.labels, vectors)
    short = write_list(tmp_path / "short.txt", [("x.jpg", [1] + [0] * 19)])
    with pytest.raises(UsageError, match="has 20 label values, the nuswide21 layout has 21"):
        data.load_collection("nuswide21", short)


# Collections built in code ----------------------------------------------------------------------


def test_collection_checks_labels_against_images():
    with pytest.raises(UsageError, match="has 3 images but 2 labels"):
        data.Collection(
            "mine",
            labels=np.array([0, 1]),
            class_names=["a", "b"],
            item_ids=np.array(["0", "1", "2"]),
            pixels=np.zeros((3, 4, 4, 3), np.uint8),
        )
    with pytest.raises(UsageError, match=r"class ids must lie in \[0, 2\)"):
        data.Collection(
            "mine",
            labels=np.array([0, 2]),
            class_names=["a", "b"],
            item_ids=np.array(["0", "1"]),
            pixels=np.zeros((2, 4, 4, 3), np.uint8),
        )


# One class; a collection written out as a folder ------------------------------------------------


def test_a_folder_of_one_class_is_told_to_add_classes_not_to_lower_the_batch(tmp_path):
    for i in range(12):
        write_image(str(tmp_path / "cats" / f"{i}.png"), solid(i))
    collection = data.load_collection("folder", str(tmp_path))
    with pytest.raises(
        UsageError,
        match=r"folder holds images of one class only \('cats'\): "
        r".* at least two \(an image folder holds one "
        r"subfolder per class: <root>/<class>/<image>\)",
    ):
        data.make_split(collection, "fraction")


def test_write_folder_gives_back_the_same_images_and_labels(tmp_path):
    digits = data.load_collection("digits")
    picked = np.array([3, 0, 17, 1796])
    assert sources.write_folder(digits, str(tmp_path / "d"), picked) == 4
    folder = data.load_collection("folder", str(tmp_path / "d"))
    assert folder.item_ids.tolist() == ["0/0000.png", "3/0003.png", "7/0017.png", "8/1796.png"]
    by_index = {int(i.split("/")[1][:4]): n for n, i in enumerate(folder.item_ids)}
    for i in picked:  # the same class (by name) and, PNG being lossless, the same pixels
        n = by_index[i]
        assert folder.class_names[folder.labels[n]] == digits.class_names[digits.labels[i]]
        decoded = tf.io.decode_png(tf.io.read_file(folder.files[n]), channels=3).numpy()
        np.testing.assert_array_equal(decoded, digits.pixels[i])
    with pytest.raises(UsageError, match="exists and is not an empty directory"):
        sources.write_folder(digits, str(tmp_path / "d"), picked)
    assert len(os.listdir(tmp_path / "d" / "0")) == 1  # nothing overwritten
    multi = data.Collection(
        "multi",
        labels=np.array([[1, 1], [0, 1]], np.uint8),
        class_names=["a", "b"],
        item_ids=np.array(["m/0", "m/1"]),
        pixels=np.zeros((2, 4, 4, 3), np.uint8),
    )
    with pytest.raises(UsageError, match="multi is multi-label: an image has no one class"):
        sources.write_folder(multi, str(tmp_path / "m"))
