"""Training throughput: an LSDH step against a softmax step on the same backbone, and the input pipeline.

    python benchmarks/train_throughput.py [--data_dir=../shared/data/cifar10] [--steps=30]

Prints images/s for
  * LSDH training (48 bits, batch 128, the default in-batch quadruplet mining) by ``model.fit``,
  * the same backbone trained with plain softmax cross-entropy, same batch size,
  * LSDH training by the loop ``tfhash.train`` runs (``tfhash.training.trainer``), on one device and
    under ``MirroredStrategy`` on 2 logical CPU devices (the global batch split in two, the
    loss on the gathered batch, synchronised batch normalisation), with the step time of each,
  * the class-balanced input pipeline alone (decoding, augmentation, batching),
and checks the targets: the LSDH step costs at most 10% more than the softmax step, and the
pipeline delivers at least 3x what LSDH training consumes. The training steps read the same
fixed batch from memory, so they time the step, not the pipeline. The two logical devices
share the machine's cores (and are configured, before anything else runs, for every figure).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string(
    "data_dir",
    "../shared/data/cifar10",
    "CIFAR-10 image folder for the pipeline figure; digits if it is absent.",
)
flags.DEFINE_string("backbone", "resnet_small", "Backbone to time.")
flags.DEFINE_integer("batch_size", 128, "Images per batch.")
flags.DEFINE_integer("bits", 48, "Code length.")
flags.DEFINE_integer("steps", 30, "Timed training steps per measurement.")
flags.DEFINE_integer("repeats", 3, "Measurements per figure; the best is reported.")
FLAGS = flags.FLAGS


def _images_per_second(model, batch, steps, repeats):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        best = max(best, steps * FLAGS.batch_size / (time.perf_counter() - start))
    return best


def _trainer_images_per_second(build, strategy, batch, steps, repeats):
    """images/s and s/step of ``tfhash.training.trainer``'s step under ``strategy``."""
    import tensorflow as tf

    from tfhash.training import trainer

    with strategy.scope():
        model = build()
    step = trainer.make_step(model, strategy)
    batches = iter(
        strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat())
    )
    for _ in range(3):  # trace and warm up
        float(step(next(batches))["loss"])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(next(batches))["loss"]
        float(loss)
        best = max(best, steps * FLAGS.batch_size / (time.perf_counter() - start))
    return best, FLAGS.batch_size / best


def main(argv):
    del argv
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    from tfhash import data, losses
    from tfhash.models import build_model
    from tfhash.models.backbones import build_backbone

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (FLAGS.batch_size, 32, 32, 3)).astype("float32")
    labels = np.repeat(np.arange(FLAGS.batch_size // 16), 16).astype("int64")

    def lsdh_model():
        keras.utils.set_random_seed(0)
        model = build_model(FLAGS.backbone, FLAGS.bits, 32)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=losses.get("lsdh", seed=0)
        )
        return model

    lsdh = _images_per_second(lsdh_model(), (images, labels), FLAGS.steps, FLAGS.repeats)
    one, one_step = _trainer_images_per_second(
        lsdh_model, tf.distribute.get_strategy(), (images, labels), FLAGS.steps, FLAGS.repeats
    )
    mirrored, mirrored_step = _trainer_images_per_second(
        lsdh_model,
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
        (images, labels),
        FLAGS.steps,
        FLAGS.repeats,
    )

    inputs = keras.Input((32, 32, 3))
    logits = keras.layers.Dense(10)(build_backbone(FLAGS.backbone, 32)(inputs))
    softmax_model = keras.Model(inputs, logits)
    softmax_model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    softmax = _images_per_second(softmax_model, (images, labels), FLAGS.steps, FLAGS.repeats)

    if os.path.isdir(FLAGS.data_dir):
        collection, source = data.load_collection("folder", FLAGS.data_dir), FLAGS.data_dir
    else:
        collection, source = data.load_collection("digits"), "digits"
    split = data.make_split(collection, "cifar10" if source != "digits" else "digits", seed=0)
    start = time.perf_counter()  # train_dataset() decodes the training images once, here
    pipeline = data.train_dataset(
        collection, split.train, 32, FLAGS.batch_size, 16, augment=True, seed=0
    )
    iterator = iter(pipeline)
    next(iterator)
    warm_up = time.perf_counter() - start
    batches = 200
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    delivered = batches * FLAGS.batch_size / (time.perf_counter() - start)

    overhead = softmax / lsdh - 1
    print(
        f"backbone {FLAGS.backbone}, batch {FLAGS.batch_size}, {FLAGS.bits} bits, "
        f"{os.cpu_count()} CPU cores"
    )
    print(f"LSDH training:        {lsdh:8.1f} images/s  (model.fit)")
    print(f"softmax training:     {softmax:8.1f} images/s")
    print(
        f"LSDH, tfhash.training.trainer: {one:8.1f} images/s  ({1000 * one_step:.0f} ms/step, 1 device)"
    )
    print(
        f"LSDH, mirrored:       {mirrored:8.1f} images/s  ({1000 * mirrored_step:.0f} ms/step, "
        "2 logical CPU devices)"
    )
    print(
        f"LSDH step overhead:   {100 * overhead:+8.1f} %   (target <= +10 %)  "
        f"{'OK' if overhead <= 0.10 else 'MISSED'}"
    )
    print(
        f"input pipeline:       {delivered:8.1f} images/s from {source} with augmentation, "
        f"after a {warm_up:.1f} s decode/cache warm-up"
    )
    print(
        f"pipeline / training:  {delivered / lsdh:8.1f} x    (target >= 3 x)  "
        f"{'OK' if delivered >= 3 * lsdh else 'MISSED'}"
    )


if __name__ == "__main__":
    app.run(main)
