"""The fine-tuned table on one large GPU: train there, encode and score here.

    # here: the LSDH protocol's training and validation images, 32x32 uint8 (15 MB), into .gpu/
    python benchmarks/gpu_finetune.py pack --out=.gpu/cifar10_train.npz
    # on the GPU (the device tool: carry .gpu): every method at 224 px, mixed_float16; resumable
    python benchmarks/gpu_finetune.py train --data=.gpu/cifar10_train.npz --out=$OUT \
        [--methods=lsdh,hashnet] [--backbone=efficientnet_lite2] [--budget_minutes=11]
    # here: encode the 60,000 images with each trained network and score it like tfhash.train
    python benchmarks/gpu_finetune.py encode --model=<OUT>/lsdh_48.npz --run_dir=runs/gpu_lsdh_48

``train`` reads the recipe from ``configs/cifar10_e2e_base.cfg`` (head warm-up on the backbone's
features, frozen batch normalisation, AdamW with warm-up and cosine decay, crop and flip) and
changes only what a GPU affords: ``--image_size`` (224), every block training
(``--trainable_blocks=0``) and the precision. It first times a training step in float32 and in
mixed_float16 (printed, and written to ``throughput.json``), then trains each method in turn,
each at most ``--budget_minutes / methods``; a method whose result is already in ``--work`` (a
machine still warm from an earlier call) is not trained again. A trained network leaves
``<method>_<bits>.npz``: its Keras config and weights as float16 (EfficientNet-Lite2's under
the device tool's 16 MiB per file), and the best validation MAP.

``encode`` rebuilds that network here, runs the protocol's 10,000 queries and 50,000 database
images through it and writes a run directory (``codes/``, ``metrics.json``) that
``benchmarks/finetuned_table.py``'s scoring and ``tfhash.evaluate`` read. Without a GPU, the
same three steps run on the CPU at a tiny setting (tests/benchmarks/test_gpu_finetune.py).
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._tables import ROOT  # noqa: E402
from benchmarks.paper_tables import METHOD_FLAGS, flag_value, flagfile_settings  # noqa: E402

BASE = "configs/cifar10_e2e_base.cfg"
TABLE_METHODS = ("lsdh", "lsdh_l1", "triplet", "hashnet", "dsh", "dhn", "lcdsh", "dnnh")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="Pack the protocol's training images (here).")
    pack.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
    pack.add_argument("--dataset", default="folder")
    pack.add_argument("--protocol", default="cifar10")
    pack.add_argument("--seed", type=int, default=0)
    pack.add_argument("--size", type=int, default=32, help="Side the images are kept at.")
    pack.add_argument("--out", required=True)
    train = sub.add_parser("train", help="Train every method (on the GPU).")
    train.add_argument("--data", required=True)
    train.add_argument("--out", required=True, help="Where the results go ($OUT).")
    train.add_argument(
        "--work",
        default="/tmp/gpu_finetune",
        help="Results kept between calls on one machine (resume).",
    )
    train.add_argument("--methods", default=",".join(TABLE_METHODS))
    train.add_argument("--bits", type=int, default=48)
    train.add_argument("--backbone", default="efficientnet_lite0")
    train.add_argument("--weights", default="imagenet")
    train.add_argument("--image_size", type=int, default=224)
    train.add_argument("--precision", default="mixed_float16")
    train.add_argument(
        "--override",
        default="",
        help="name=value,... replacing the base config's settings (e.g. epochs=30).",
    )
    train.add_argument("--budget_minutes", type=float, default=11.0)
    train.add_argument("--throughput_steps", type=int, default=10)
    encode = sub.add_parser("encode", help="Encode the 60,000 images and score (here).")
    encode.add_argument("--model", required=True)
    encode.add_argument("--run_dir", required=True)
    encode.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
    encode.add_argument("--dataset", default="folder")
    encode.add_argument("--protocol", default="cifar10")
    encode.add_argument("--seed", type=int, default=0)
    encode.add_argument("--batch_size", type=int, default=256)
    return parser.parse_args(argv)


def pack(args):
    """The split's training and validation images at their own size, with their labels."""
    from tfhash import data

    collection = data.load_collection(args.dataset, args.data_dir)
    split = data.make_split(collection, args.protocol, seed=args.seed)
    parts = {}
    for part in ("train", "val"):
        indices = getattr(split, part)
        parts[f"{part}_images"] = np.concatenate(
            [
                x.numpy().astype(np.uint8)
                for x, _ in data.eval_dataset(collection, indices, args.size, 512)
            ]
        )
        parts[f"{part}_labels"] = collection.labels[indices]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(
        args.out,
        class_names=np.array(collection.class_names),
        protocol=args.protocol,
        seed=args.seed,
        **parts,
    )
    print(
        f"{args.out}: {len(parts['train_images'])} training and {len(parts['val_images'])} "
        f"validation images, {os.path.getsize(args.out) / 1e6:.1f} MB"
    )


def _collection(arrays, part):
    from tfhash import data

    labels = arrays[f"{part}_labels"].astype(np.int64)
    return data.Collection(
        part,
        labels=labels,
        class_names=list(arrays["class_names"]),
        item_ids=np.array([f"{part}/{i}" for i in range(len(labels))]),
        pixels=arrays[f"{part}_images"],
    )


def _settings(args, method):
    """The base config's settings for ``method``, with the GPU's changes."""
    settings = flagfile_settings(BASE)
    settings.update({k: flag_value(v) for k, v in METHOD_FLAGS.get(method, {}).items()})
    settings.update(
        image_size=str(args.image_size),
        trainable_blocks="0",
        backbone=args.backbone,
        weights=args.weights,
    )
    for item in filter(None, args.override.split(",")):
        name, _, value = item.partition("=")
        settings[name.strip()] = value.strip()
    return settings


def _build(args, method, settings, train_features, precision):
    """The fine-tuning network and its loss for ``method`` (as tfhash.train builds them)."""
    import keras

    from tfhash import losses, methods, models
    from tfhash.train import learning_rate_schedule

    keras.mixed_precision.set_global_policy(precision)
    spec = methods.get(method)
    kwargs = {k: float(settings[k]) for k in ("margin",) if k in settings}
    loss = losses.get(method, **kwargs)
    head = models.build_head(
        train_features,
        args.bits,
        int(settings["head_hidden"]),
        spec.head,
        float(settings["head_lr_multiplier"]),
        float(settings["head_dropout"]),
    )
    model = models.fine_tuning_model(
        head, args.backbone, args.image_size, args.weights, 0, settings["batch_norm"]
    )
    steps = int(settings["steps_per_epoch"])
    epochs = int(settings["epochs"])
    schedule = learning_rate_schedule(
        float(settings["learning_rate"]), steps * epochs, steps * int(settings["lr_warmup_epochs"])
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=float(settings["weight_decay"])),
        loss=loss,
    )
    return model, head, loss


def _throughput(args, arrays, settings, train_features):
    """Training images/s of the first method's step in float32 and in mixed_float16."""
    import tensorflow as tf

    from tfhash import data
    from tfhash.training import trainer

    collection = _collection(arrays, "train")
    rates = {}
    for precision in ("float32", "mixed_float16"):
        model, _, _ = _build(args, "lsdh", settings, train_features, precision)
        batches = iter(
            data.train_dataset(
                collection,
                np.arange(len(collection)),
                args.image_size,
                int(settings["batch_size"]),
                int(settings["images_per_class"]),
                augment="crop_flip",
            )
        )
        step = trainer.make_step(model, tf.distribute.get_strategy())
        float(step(next(batches))["loss"])
        start = time.perf_counter()
        for _ in range(args.throughput_steps):
            loss = step(next(batches))["loss"]
        float(loss)
        rates[precision] = round(
            args.throughput_steps * int(settings["batch_size"]) / (time.perf_counter() - start), 1
        )
    return rates


def train(args):
    import keras

    from tfhash import data
    from tfhash.models import features
    from tfhash.training import callbacks, trainer

    arrays = dict(np.load(args.data))
    train_set, val_set = _collection(arrays, "train"), _collection(arrays, "val")
    every_train, every_val = np.arange(len(train_set)), np.arange(len(val_set))
    os.makedirs(args.work, exist_ok=True)
    methods = args.methods.split(",")
    todo = [
        m for m in methods if not os.path.isfile(os.path.join(args.work, f"{m}_{args.bits}.npz"))
    ]
    if not todo:
        print("every method is done in an earlier call", flush=True)
        _copy_results(args)
        return
    base = _settings(args, methods[0])
    train_features = features.compute_features(
        train_set, every_train, args.backbone, args.weights, args.image_size, batch_size=256
    )
    throughput_path = os.path.join(args.work, "throughput.json")
    if not os.path.isfile(throughput_path):
        with open(throughput_path, "w") as f:
            json.dump(_throughput(args, arrays, base, train_features), f)
    with open(throughput_path) as f:
        print("training images/s:", json.load(f), flush=True)
    deadline = time.time() + 60 * args.budget_minutes
    for i, method in enumerate(methods):
        path = os.path.join(args.work, f"{method}_{args.bits}.npz")
        if os.path.isfile(path):
            print(f"{method}: done in an earlier call", flush=True)
            continue
        settings = _settings(args, method)
        keras.utils.set_random_seed(0)
        model, head, loss = _build(args, method, settings, train_features, args.precision)
        batch, per_class = int(settings["batch_size"]), int(settings["images_per_class"])
        steps, epochs = int(settings["steps_per_epoch"]), int(settings["epochs"])
        head.compile(
            optimizer=keras.optimizers.AdamW(
                float(settings["head_warmup_learning_rate"]),
                weight_decay=float(settings["weight_decay"]),
            ),
            loss=loss,
        )
        trainer.fit(
            head,
            data.feature_train_dataset(train_set, every_train, train_features, batch, per_class),
            strategy=trainer.make_strategy("default"),
            epochs=int(settings["head_warmup_epochs"]),
            steps_per_epoch=steps,
            verbose=0,
        )
        validation = callbacks.ValidationMAP(
            data.eval_dataset(val_set, every_val, args.image_size, 256),
            data.eval_dataset(train_set, every_train, args.image_size, 256),
            every_n_epochs=int(settings["eval_every"]),
        )
        best = {"val_map": -1.0}

        class KeepBest(keras.callbacks.Callback):
            """Keeps the weights of the best validation MAP; stops after the epoch that ends
            past ``deadline`` (this method's share of the budget)."""

            def __init__(self, deadline):
                super().__init__()
                self.deadline = deadline

            def on_epoch_end(self, epoch, logs=None):
                if "val_map" in logs and logs["val_map"] > best["val_map"]:
                    best.update(
                        val_map=float(logs["val_map"]),
                        epoch=epoch + 1,
                        weights=[np.asarray(w, np.float16) for w in self.model.get_weights()],
                    )
                if time.time() > self.deadline:
                    self.model.stop_training = True

        left = (deadline - time.time()) / (len(methods) - i)
        start = time.time()
        trainer.fit(
            model,
            data.train_dataset(
                train_set, every_train, args.image_size, batch, per_class, augment="crop_flip"
            ),
            strategy=trainer.make_strategy("default"),
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=[validation, KeepBest(start + left)],
            verbose=2,
        )
        config = json.dumps(keras.saving.serialize_keras_object(model))
        np.savez(
            path,
            config=config,
            val_map=best["val_map"],
            epoch=best.get("epoch", 0),
            seconds=time.time() - start,
            settings=json.dumps(settings),
            **{f"w{j}": w for j, w in enumerate(best.get("weights", []))},
        )
        print(
            f"{method}: best validation MAP {best['val_map']:.4f} at epoch "
            f"{best.get('epoch')}, {time.time() - start:.0f} s",
            flush=True,
        )
    _copy_results(args)


def _copy_results(args):
    """What ``--work`` holds, into ``--out`` (the device tool brings $OUT back)."""
    os.makedirs(args.out, exist_ok=True)
    for name in sorted(os.listdir(args.work)):
        if name.endswith((".npz", ".json")):
            shutil.copyfile(os.path.join(args.work, name), os.path.join(args.out, name))


def encode(args):
    """Rebuilds the trained network and writes a run directory's codes and metrics."""
    import keras

    from tfhash import data, evaluation, models  # noqa: F401  (models: registers)
    from tfhash.training import callbacks

    saved = np.load(args.model)
    model = keras.saving.deserialize_keras_object(json.loads(str(saved["config"])))
    weights = [saved[f"w{j}"] for j in range(len(model.get_weights()))]
    model.set_weights([w.astype(np.float32) for w in weights])
    size = model.input_shape[1]
    collection = data.load_collection(args.dataset, args.data_dir)
    split = data.make_split(collection, args.protocol, seed=args.seed)
    os.makedirs(os.path.join(args.run_dir, "codes"), exist_ok=True)
    out = {}
    for part, indices in (("query", split.query), ("database", split.report_database)):
        codes, relaxed, labels = callbacks.encode(
            model, data.eval_dataset(collection, indices, size, args.batch_size)
        )
        out[part] = (codes, labels)
        for name, array in (("codes", codes), ("labels", labels), ("embedding", relaxed)):
            np.save(os.path.join(args.run_dir, "codes", f"{part}_{name}.npy"), array)
    metrics = evaluation.evaluate_codes(
        *out["query"], *out["database"], metrics=evaluation.default_metrics(out["database"][1])
    )
    metrics["run"] = {
        "model": args.model,
        "val_map": float(saved["val_map"]),
        "epoch": int(saved["epoch"]),
        "train_seconds": float(saved["seconds"]),
    }
    with open(os.path.join(args.run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print("query set: " + evaluation.summary_line(metrics))


def main(argv=None):
    args = parse_args(argv)
    {"pack": pack, "train": train, "encode": encode}[args.command](args)


if __name__ == "__main__":
    main()
