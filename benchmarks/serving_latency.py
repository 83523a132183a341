"""Encode latency and throughput through an exported SavedModel, as a server would run it.

    python benchmarks/serving_latency.py [--data_dir=../shared/data/cifar10] [--requests=300]

Exports the default model (``resnet_small``, 48 bits, 32×32; random weights: the
cost does not depend on them) with ``tfhash.serving.export_model``, loads it back
with ``tf.saved_model.load`` (no Keras model in the loop) and prints, for both
signatures:

  * latency of one image per call (batch 1): p50 and p99 over ``--requests`` calls;
  * throughput at batch 64: images/s over ``--batches`` calls.

``serving_default`` gets float32 pixels; ``encode_images`` gets the JPEG files of
``--data_dir`` (CIFAR-10 test images; synthetic JPEGs where the folder is absent),
so its figures include decoding. The load average is printed beside the figures:
on a shared machine, other work shows up in p99 first.
"""

import glob
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string(
    "data_dir",
    "../shared/data/cifar10",
    "Image folder whose JPEGs feed encode_images; synthetic JPEGs if absent.",
)
flags.DEFINE_string("backbone", "resnet_small", "Backbone of the exported model.")
flags.DEFINE_integer("bits", 48, "Code length.")
flags.DEFINE_integer("image_size", 32, "Input side S.")
flags.DEFINE_integer("requests", 300, "Timed batch-1 calls per signature.")
flags.DEFINE_integer("batches", 30, "Timed batch-64 calls per signature.")
FLAGS = flags.FLAGS

BATCH = 64


def _jpeg_files(count, size):
    import numpy as np
    import tensorflow as tf

    paths = sorted(glob.glob(os.path.join(FLAGS.data_dir, "test", "*", "*.jpg")))
    if len(paths) >= count:
        step = len(paths) // count
        return [open(p, "rb").read() for p in paths[::step][:count]], FLAGS.data_dir
    rng = np.random.default_rng(0)
    files = [
        tf.io.encode_jpeg(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).numpy()
        for _ in range(count)
    ]
    return files, "synthetic JPEGs"


def _latencies_ms(function, batches):
    """Wall time of each call in ms, after 20 untimed warm-up calls."""
    for batch in batches[:20]:
        function(batch)
    times = []
    for batch in batches:
        start = time.perf_counter()
        function(batch)
        times.append(1000 * (time.perf_counter() - start))
    return times


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import keras
    import numpy as np
    import tensorflow as tf

    from tfhash import models, serving

    load_before = os.getloadavg()[0]
    keras.utils.set_random_seed(0)
    model = models.build_model(FLAGS.backbone, FLAGS.bits, FLAGS.image_size)
    with tempfile.TemporaryDirectory() as export_dir:
        signatures = tf.saved_model.load(serving.export_model(model, export_dir)).signatures
        pixels_fn, bytes_fn = signatures["serving_default"], signatures["encode_images"]
        rng = np.random.default_rng(0)
        size = FLAGS.image_size
        pixels = rng.uniform(0, 255, (BATCH, size, size, 3)).astype(np.float32)
        files, source = _jpeg_files(BATCH, size)

        def run_pixels(batch):
            return pixels_fn(images=batch)["packed"].numpy()

        def run_bytes(batch):
            return bytes_fn(image_bytes=batch)["packed"].numpy()

        rows = []
        for name, run, data in [
            ("serving_default", run_pixels, pixels),
            ("encode_images", run_bytes, np.array(files, dtype=object)),
        ]:
            singles = [tf.constant(data[i % BATCH : i % BATCH + 1]) for i in range(FLAGS.requests)]
            latency = _latencies_ms(run, singles)
            full = tf.constant(data)
            batch_times = _latencies_ms(run, [full] * FLAGS.batches)
            rows.append(
                (
                    name,
                    np.percentile(latency, 50),
                    np.percentile(latency, 99),
                    BATCH * len(batch_times) / (sum(batch_times) / 1000),
                )
            )
    load_after = os.getloadavg()[0]

    print(
        f"{FLAGS.backbone}, {FLAGS.bits} bits, {FLAGS.image_size}x{FLAGS.image_size}, "
        f"{model.count_params():,} parameters; {os.cpu_count()} CPU cores, TensorFlow "
        f"{tf.__version__}; load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"encode_images input: {source}")
    print(f"{'signature':<16} {'batch 1 p50':>12} {'batch 1 p99':>12} {'batch 64':>16}")
    for name, p50, p99, throughput in rows:
        print(f"{name:<16} {p50:9.2f} ms {p99:9.2f} ms {throughput:9.0f} img/s")


if __name__ == "__main__":
    app.run(main)
