"""Fine-tuning a pretrained backbone end to end on a CPU: what each speed lever is worth.

    python benchmarks/finetune_speed.py [--quick] [--backbone=efficientnet_lite0] [--steps=8]

Prints, for each lever, training images/s (the step ``tfhash.train`` runs: ``tfhash.training.trainer``'s
step on :func:`tfhash.models.fine_tuning_model`, LSDH at 48 bits, batch 128 of 8 classes x 16,
batch normalisation frozen) and encoding images/s (the forward pass that encodes the database),
each the best of ``--repeats`` timings of ``--steps`` batches after a warm-up. The batches are
fixed random images in memory, so the figures time the network, not the input pipeline; the
last rows time the pipeline alone (``tfhash.data.train_dataset``: decoded once into memory,
then a gather and augmentation per batch) against decoding and resizing every JPEG per batch.

Levers (each changes one thing from the baseline: 128 px, the whole backbone trains, float32,
no XLA, TensorFlow's default threads): image size 96/112/160, the first blocks frozen
(``--trainable_blocks``: backpropagation stops at the first trainable block), ``mixed_bfloat16``,
XLA (``jit_compile``), one inter-op thread. Every lever runs in its own process: precision
policies and thread pools are set once per process. ``--quick`` times three levers at 96 px with
fewer steps (under 2 minutes). Figures and the levers kept: benchmarks/RESULTS.md.
"""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_boolean("quick", False, "Three levers at 96 px, fewer steps: under 2 minutes.")
flags.DEFINE_string("backbone", "efficientnet_lite0", "Pretrained backbone to time.")
flags.DEFINE_integer("steps", 8, "Timed training steps per measurement.")
flags.DEFINE_integer("repeats", 2, "Timings per figure; the best is reported.")
flags.DEFINE_integer("batch_size", 128, "Images per training batch.")
flags.DEFINE_integer(
    "lever_timeout",
    600,
    "Seconds a lever may take (XLA's compilation of the training step can take longer on a CPU).",
)
flags.DEFINE_string("one", None, "Internal: time one lever (JSON settings) and print JSON.")
FLAGS = flags.FLAGS

BASELINE = {
    "image_size": 128,
    "trainable_blocks": 0,
    "precision": "float32",
    "jit": False,
    "inter_op_threads": 0,
}
LEVERS = [
    ("baseline: 128 px, whole backbone, float32", {}),
    ("96 px", {"image_size": 96}),
    ("112 px", {"image_size": 112}),
    ("160 px", {"image_size": 160}),
    ("last 12 of 16 blocks train", {"trainable_blocks": 12}),
    ("last 8 of 16 blocks train", {"trainable_blocks": 8}),
    ("mixed_bfloat16", {"precision": "mixed_bfloat16"}),
    ("XLA (jit_compile)", {"jit": True}),
    ("1 inter-op thread", {"inter_op_threads": 1}),
]
QUICK = [
    ("baseline at 96 px", {"image_size": 96}),
    ("96 px, last 8 blocks train", {"image_size": 96, "trainable_blocks": 8}),
    ("96 px, mixed_bfloat16", {"image_size": 96, "precision": "mixed_bfloat16"}),
]


def _time_one(settings):
    """Training and encoding images/s of one lever, in this process."""
    import keras
    import numpy as np
    import tensorflow as tf

    if settings["inter_op_threads"]:
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter_op_threads"])
    keras.mixed_precision.set_global_policy(settings["precision"])
    from tfhash import losses, models
    from tfhash.training import trainer

    size, batch = settings["image_size"], FLAGS.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, size, size, 3)).astype(np.float32)
    labels = np.repeat(np.arange(batch // 16), 16)
    head = models.build_head(rng.normal(size=(64, 1280)).astype(np.float32), 48, hidden=512)
    model = models.fine_tuning_model(
        head, FLAGS.backbone, size, "imagenet", trainable_blocks=settings["trainable_blocks"]
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-5),
        loss=losses.get("lsdh", margin=24.0),
        jit_compile=settings["jit"],
    )
    strategy = tf.distribute.get_strategy()
    step = trainer.make_step(model, strategy)
    batches = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())

    def train_rate():
        float(step(next(batches))["loss"])  # trace and warm up
        best = 0.0
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                loss = step(next(batches))["loss"]
            float(loss)
            best = max(best, FLAGS.steps * batch / (time.perf_counter() - start))
        return best

    forward = tf.function(lambda x: model(x, training=False), jit_compile=settings["jit"])

    def encode_rate():
        eval_batch = tf.constant(np.concatenate([images, images]))  # 256, as --eval_batch_size
        forward(eval_batch).numpy()
        best = 0.0
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            for _ in range(max(2, FLAGS.steps // 2)):
                out = forward(eval_batch)
            out.numpy()
            best = max(
                best, max(2, FLAGS.steps // 2) * len(eval_batch) / (time.perf_counter() - start)
            )
        return best

    return {
        "train_images_per_s": round(train_rate(), 1),
        "encode_images_per_s": round(encode_rate(), 1),
    }


def _pipeline_rates(image_size, steps):
    """Batches/s of the training pipeline as tfhash builds it, and of decoding every JPEG per
    batch, on generated JPEG files (images/s)."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    from tfhash import data

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        for c in range(8):
            os.makedirs(os.path.join(root, f"c{c}"))
            for i in range(64):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                tf.io.write_file(os.path.join(root, f"c{c}", f"{i}.jpg"), tf.io.encode_jpeg(pixels))
        collection = data.load_collection("folder", root)
        indices = np.arange(len(collection))
        cached = data.train_dataset(
            collection, indices, image_size, FLAGS.batch_size, 16, augment="crop_flip"
        )
        paths = tf.constant(list(collection.files))

        def decode_every_step(position):
            return data.decode_image(tf.io.read_file(paths[position]), image_size)

        per_step = (
            tf.data.Dataset.range(len(paths))
            .repeat()
            .shuffle(512, seed=0)
            .map(decode_every_step, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(FLAGS.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        rates = {}
        for name, dataset in (
            ("decoded once, gathered and augmented per batch", cached),
            ("JPEG decoded and resized per batch", per_step),
        ):
            batches = iter(dataset)
            next(batches)
            start = time.perf_counter()
            for _ in range(steps):
                next(batches)[0].numpy()
            rates[name] = round(steps * FLAGS.batch_size / (time.perf_counter() - start), 1)
        return rates


def main(argv):
    del argv
    if FLAGS.one:
        print(json.dumps(_time_one(json.loads(FLAGS.one))), flush=True)
        return
    levers = QUICK if FLAGS.quick else LEVERS
    steps = 3 if FLAGS.quick else FLAGS.steps
    load = os.getloadavg()[0]
    print(
        f"{FLAGS.backbone}, LSDH 48 bits, batch {FLAGS.batch_size}; load average before: "
        f"{load:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'lever':45s} {'train img/s':>12s} {'encode img/s':>13s}")
    for name, change in levers:
        settings = dict(BASELINE, **change)
        command = [
            sys.executable,
            __file__,
            "--one=" + json.dumps(settings),
            f"--steps={steps}",
            f"--repeats={1 if FLAGS.quick else FLAGS.repeats}",
            f"--batch_size={FLAGS.batch_size}",
            f"--backbone={FLAGS.backbone}",
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=FLAGS.lever_timeout
            )
        except subprocess.TimeoutExpired:
            print(
                f"{name:45s} not done in {FLAGS.lever_timeout} s (trace, compile and "
                "timing): rejected",
                flush=True,
            )
            continue
        if result.returncode:
            errors = [
                line
                for line in result.stderr.splitlines()
                if "Error" in line or line.startswith("error")
            ]
            print(
                f"{name:45s} failed (exit {result.returncode}): "
                f"{(errors or ['see its stderr'])[-1][:120]}",
                flush=True,
            )
            continue
        rates = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"{name:45s} {rates['train_images_per_s']:12.1f} {rates['encode_images_per_s']:13.1f}",
            flush=True,
        )
    size = 96 if FLAGS.quick else BASELINE["image_size"]
    for name, rate in _pipeline_rates(size, 4 if FLAGS.quick else 20).items():
        print(f"input pipeline at {size} px, {name}: {rate:.0f} images/s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    app.run(main)
