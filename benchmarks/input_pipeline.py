"""Input pipeline throughput from an image folder and from a list file.

    python benchmarks/input_pipeline.py [--data_dir=../shared/data/cifar10] [--batches=200]

For each source it prints the one-time costs (listing the files, drawing the split, and
the parallel decode of the training images into the in-memory table that
``data.train_dataset`` builds) and then the images/s that the class-balanced training
pipeline delivers with augmentation, excluding that warm-up. The list-file source
reads the same JPEGs through a generated multi-label list (each image carries its
class plus random extra concepts), so it also times label-balanced sampling.

Without ``--data_dir`` (or when it does not exist) a folder of random JPEGs with the
CIFAR-10 layout is generated in a temporary directory.
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string(
    "data_dir",
    "../shared/data/cifar10",
    "Image folder <root>/<split>/<class>/<image>; generated if absent.",
)
flags.DEFINE_integer("image_size", 32, "Image side S.")
flags.DEFINE_integer("batch_size", 128, "Images per batch.")
flags.DEFINE_integer("images_per_class", 16, "Images per class (label) in a batch.")
flags.DEFINE_integer("batches", 200, "Timed batches per source.")
flags.DEFINE_float(
    "training_rate",
    240.0,
    "Images/s that training consumes (the default small ResNet on this CPU); "
    "the pipeline target is 3x this.",
)
FLAGS = flags.FLAGS

# The same split recipe for both sources: 10% queries, 10% of the rest for training
# (5,400 drawn from CIFAR-10's 60,000, 4,860 after validation; LSDH trains on 5,000).
PROTOCOL = "fraction:query=0.1,train=0.1"


def _generate_folder(root, per_class=600, size=32):
    """A CIFAR-10-shaped folder of random JPEGs: root/train/<class>/<n>.jpg."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for c in range(10):
        directory = os.path.join(root, "train", f"class{c}")
        os.makedirs(directory)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            tf.io.write_file(os.path.join(directory, f"{i:04d}.jpg"), tf.io.encode_jpeg(pixels))
    return root


def _write_list(folder, path, extra_concepts=3):
    """A multi-label list over the folder's images: class one-hot plus random extra concepts."""
    import numpy as np

    from tfhash import data

    collection = data.load_collection("folder", folder)
    rng = np.random.default_rng(0)
    num_classes = len(collection.class_names)
    with open(path, "w") as f:
        for file, label in zip(collection.files, collection.labels):
            vector = np.zeros(num_classes + extra_concepts, int)
            vector[label] = 1
            vector[num_classes:] = rng.random(extra_concepts) < 0.3
            f.write(file + " " + " ".join(map(str, vector)) + "\n")
    return path


def _measure(name, dataset, data_dir, protocol):
    from tfhash import data

    start = time.perf_counter()
    collection = data.load_collection(dataset, data_dir)
    split = data.make_split(collection, protocol, seed=0)
    listed = time.perf_counter() - start
    start = time.perf_counter()
    pipeline = data.train_dataset(
        collection,
        split.train,
        FLAGS.image_size,
        FLAGS.batch_size,
        FLAGS.images_per_class,
        augment=True,
        seed=0,
    )
    iterator = iter(pipeline)
    next(iterator)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    rate = FLAGS.batches * FLAGS.batch_size / (time.perf_counter() - start)
    target = 3 * FLAGS.training_rate
    kind = "multi-label" if collection.multi_label else "single-label"
    print(
        f"{name}: {len(collection)} images ({kind}), protocol {protocol}, "
        f"{len(split.train)} training images"
    )
    print(f"  list + split:          {listed:8.2f} s")
    print(
        f"  decode/cache warm-up:  {warm_up:8.2f} s  ({len(split.train) / warm_up:.0f} "
        "images/s decoded, first batch included)"
    )
    print(
        f"  delivered:             {rate:8.0f} images/s with augmentation "
        f"(target >= {target:.0f})  {'OK' if rate >= target else 'MISSED'}"
    )


def main(argv):
    del argv
    print(
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start; "
        f"S={FLAGS.image_size}, batch {FLAGS.batch_size} = "
        f"{FLAGS.batch_size // FLAGS.images_per_class} classes x {FLAGS.images_per_class}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = FLAGS.data_dir
        if not os.path.isdir(folder):
            print(f"{folder} not found: generating a folder of random JPEGs")
            folder = _generate_folder(os.path.join(scratch, "images"))
        _measure(f"image folder {folder}", "folder", folder, PROTOCOL)
        list_file = _write_list(folder, os.path.join(scratch, "list.txt"))
        _measure("list file over the same images", "list", list_file, PROTOCOL)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (the CPU is shared)")


if __name__ == "__main__":
    app.run(main)
