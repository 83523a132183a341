r"""Trains a deep hashing network: ``python -m tfhash.train --flagfile=configs/<name>.cfg``.

The path of the data, top to bottom in this file:

    flagfile ─► TrainConfig ─► data.load_collection ─► data.make_split (saved in run_dir/split)
      ─► data.train_dataset (class-balanced batches) ─► models.build_model ─► losses.get(method)
      ─► model.fit (validation MAP, checkpoints, resume) ─► codes of queries and database
      ─► evaluation.evaluate_codes ─► run_dir/metrics.json

Any flag can be overridden after the flagfile, e.g. ``--bits=12 --run_dir=runs/x``.
An existing run directory is resumed from its last completed epoch, never
overwritten; a finished one reports its metrics and exits.
"""

import dataclasses
import json
import os
import sys
import time

from absl import app, flags

from tfhash.errors import UsageError, exit_on_usage_error, parse_flags

# ---------------------------------------------------------------------------------------------
# Flags. Importing TensorFlow is left to `train()`, so `--help` and flag errors are instant.

def define_flags():
    """Defines the command's flags; only when run as a program, so that importing this module
    (for :func:`train`) leaves absl's global flags to whoever runs it."""
    flags.DEFINE_string("run_dir", None, "Directory for checkpoints, logs, the split, codes and "
                        "metrics.json. An existing run directory is resumed.")
    flags.DEFINE_string("dataset", "digits", "Data source: digits (scikit-learn's bundled "
                        "handwritten digits, no download), cifar10, cifar20, sun397 (TFDS), folder "
                        "(--data_dir=root/<class>/*), list or nuswide21 (--data_dir=list file).")
    flags.DEFINE_string("data_dir", None, "Image folder, list file, or TFDS data_dir, by --dataset.")
    flags.DEFINE_string("protocol", "digits", "Named query/train/database split preset: cifar10 "
                        "(LSDH paper), cifar10-dhn, cifar20, sun397-29, nuswide21, digits, fraction.")
    flags.DEFINE_float("val_fraction", 0.1, "Part of the training images held out to choose the "
                       "best checkpoint by validation MAP (the queries are never used for that).")
    flags.DEFINE_integer("seed", 0, "Seed of the split, the batch sampler and the weights.")

    flags.DEFINE_string("method", "lsdh", "Hashing method (its loss): lsdh, lsdh_l1, triplet.")
    flags.DEFINE_integer("bits", 48, "Code length K.")
    flags.DEFINE_float("margin", None, "Ranking margin m of Eq. 8 in squared Euclidean units of "
                       "the relaxed codes; default: the loss's own default.")
    flags.DEFINE_float("quantization_weight", 0.8, "λ of Eq. 15, the weight of the quantization loss.")
    flags.DEFINE_float("isometric_weight", None, "μ of Eq. 11, the weight of the Hamming-isometric "
                       "term; default: the paper's 0.25 (single-label) or 0.75 (multi-label).")
    flags.DEFINE_enum("mining", "random", ["all", "random"], "In-batch quadruplets: all valid "
                      "ones, or a random sample of --quadruplets_per_anchor per anchor.")
    flags.DEFINE_integer("quadruplets_per_anchor", 64, "Quadruplets sampled per anchor "
                         "(--mining=random).")

    flags.DEFINE_string("backbone", "resnet_small", "Feature extractor: resnet_small (from scratch, "
                        "32x32), vgg16 (the paper's, 224x224), resnet50, mobilenetv3.")
    flags.DEFINE_string("weights", "none", "Backbone weights: none, imagenet (Keras download), or "
                        "the path of a local weights file.")
    flags.DEFINE_integer("image_size", 32, "Side of the square input images, in pixels.")
    flags.DEFINE_float("head_lr_multiplier", 10.0, "Learning rate of the hashing layer relative to "
                       "the backbone's (the paper: 10).")

    flags.DEFINE_integer("batch_size", 128, "Images per batch.")
    flags.DEFINE_integer("images_per_class", 16, "Images of each class in a batch (at least 2, so "
                         "every anchor has a positive); batch_size / images_per_class classes.")
    flags.DEFINE_integer("epochs", 30, "Training epochs.")
    flags.DEFINE_integer("steps_per_epoch", 0, "Batches per epoch; 0: training images / batch_size.")
    flags.DEFINE_float("learning_rate", 0.01, "Peak SGD learning rate of the backbone (cosine decay "
                       "to 0 over the run). Much above 0.01 the tanh codes saturate early and stop "
                       "learning.")
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    flags.DEFINE_float("weight_decay", 5e-4, "Decoupled weight decay (the paper: 0.0005).")
    flags.DEFINE_boolean("augment", True, "Random crop and horizontal flip of training images.")
    flags.DEFINE_enum("mixed_precision", "none", ["none", "mixed_float16", "mixed_bfloat16"],
                      "Keras mixed precision policy (mixed_float16 on GPU, mixed_bfloat16 on CPU). "
                      "Relaxed codes and losses stay float32.")

    flags.DEFINE_integer("eval_every", 5, "Compute validation MAP every this many epochs (and at "
                         "the last).")
    flags.DEFINE_integer("eval_batch_size", 256, "Images per batch when encoding.")
    flags.DEFINE_integer("verbose", 1, "Keras progress output: 0 silent, 1 progress bar, 2 a line "
                         "per epoch.")

FLAGS = flags.FLAGS

# Flags that may differ when a run directory is resumed: they change how long or how loudly a
# run goes, not what it learns.
_RESUMABLE_CHANGES = ("epochs", "eval_every", "eval_batch_size", "verbose")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to ``run_dir/flags.json``."""

    run_dir: str
    dataset: str = "digits"
    data_dir: str | None = None
    protocol: str = "digits"
    val_fraction: float = 0.1
    seed: int = 0
    method: str = "lsdh"
    bits: int = 48
    margin: float | None = None
    quantization_weight: float = 0.8
    isometric_weight: float | None = None
    mining: str = "random"
    quadruplets_per_anchor: int = 64
    backbone: str = "resnet_small"
    weights: str = "none"
    image_size: int = 32
    head_lr_multiplier: float = 10.0
    batch_size: int = 128
    images_per_class: int = 16
    epochs: int = 30
    steps_per_epoch: int = 0
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    mixed_precision: str = "none"
    eval_every: int = 5
    eval_batch_size: int = 256
    verbose: int = 1

    def validate(self):
        """Raises :class:`UsageError` on the first invalid value, naming the flag."""
        checks = [
            (self.run_dir, "--run_dir is required: the directory for this run's outputs"),
            (self.bits >= 1, f"--bits must be at least 1, got {self.bits}"),
            (self.quantization_weight >= 0,
             f"--quantization_weight (λ) must be >= 0, got {self.quantization_weight}"),
            (self.isometric_weight is None or self.isometric_weight >= 0,
             f"--isometric_weight (μ) must be >= 0, got {self.isometric_weight}"),
            (self.margin is None or self.margin > 0, f"--margin must be > 0, got {self.margin}"),
            (self.quadruplets_per_anchor >= 1,
             f"--quadruplets_per_anchor must be >= 1, got {self.quadruplets_per_anchor}"),
            (self.images_per_class >= 2,
             f"--images_per_class must be at least 2 so every anchor has a positive, got "
             f"{self.images_per_class}"),
            (self.batch_size >= 2 * self.images_per_class,
             f"--batch_size={self.batch_size} holds fewer than two classes of "
             f"--images_per_class={self.images_per_class}: no anchor would have a negative; "
             "raise --batch_size or lower --images_per_class"),
            (self.batch_size % self.images_per_class == 0,
             f"--batch_size={self.batch_size} is not a multiple of "
             f"--images_per_class={self.images_per_class}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.steps_per_epoch >= 0,
             f"--steps_per_epoch must be >= 0 (0: automatic), got {self.steps_per_epoch}"),
            (self.learning_rate > 0, f"--learning_rate must be > 0, got {self.learning_rate}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight_decay must be >= 0, got {self.weight_decay}"),
            (self.head_lr_multiplier > 0,
             f"--head_lr_multiplier must be > 0, got {self.head_lr_multiplier}"),
            (0 < self.val_fraction < 1,
             f"--val_fraction must be in (0, 1), got {self.val_fraction}"),
            (self.eval_every >= 1, f"--eval_every must be at least 1, got {self.eval_every}"),
            (self.eval_batch_size >= 1,
             f"--eval_batch_size must be at least 1, got {self.eval_batch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def loss_kwargs(self):
        kwargs = dict(quantization_weight=self.quantization_weight, mining=self.mining,
                      quadruplets_per_anchor=self.quadruplets_per_anchor, seed=self.seed)
        if self.margin is not None:
            kwargs["margin"] = self.margin
        if self.isometric_weight is not None:
            kwargs["isometric_weight"] = self.isometric_weight
        return kwargs


# ---------------------------------------------------------------------------------------------
# The run directory.

def _paths(run_dir):
    return {
        "flags": os.path.join(run_dir, "flags.json"),
        "flagfile": os.path.join(run_dir, "flags.cfg"),
        "split": os.path.join(run_dir, "split"),
        "best": os.path.join(run_dir, "checkpoints", "best.keras"),
        "latest": os.path.join(run_dir, "checkpoints", "latest.keras"),
        "backup": os.path.join(run_dir, "backup"),
        "logs": os.path.join(run_dir, "logs"),
        "history": os.path.join(run_dir, "history.csv"),
        "codes": os.path.join(run_dir, "codes"),
        "metrics": os.path.join(run_dir, "metrics.json"),
    }


def _open_run_dir(config):
    """Creates a new run directory, or checks that an existing one is this run's.

    Returns:
        True if the run directory already held this run (a resume).
    """
    paths = _paths(config.run_dir)
    if os.path.exists(config.run_dir) and not os.path.isdir(config.run_dir):
        raise UsageError(f"--run_dir={config.run_dir} is a file; pass a directory")
    if os.path.isfile(paths["flags"]):
        with open(paths["flags"]) as f:
            saved = json.load(f)
        current = dataclasses.asdict(config)
        changed = sorted(k for k in current
                         if k not in _RESUMABLE_CHANGES and saved.get(k) != current[k])
        if changed:
            diffs = ", ".join(f"--{k}={saved.get(k)!r} there vs {current[k]!r} now"
                              for k in changed)
            raise UsageError(f"run directory {config.run_dir} holds a run with other settings "
                             f"({diffs}); pass a new --run_dir, or the same flags to resume it")
        return True
    if os.path.isdir(config.run_dir) and os.listdir(config.run_dir):
        raise UsageError(f"--run_dir={config.run_dir} exists, is not empty and holds no "
                         "tfhash run (no flags.json); pass a new or empty directory")
    os.makedirs(os.path.dirname(paths["best"]), exist_ok=True)
    return False


def _write_config(config):
    paths = _paths(config.run_dir)
    with open(paths["flags"], "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    with open(paths["flagfile"], "w") as f:
        for key, value in dataclasses.asdict(config).items():
            if value is not None:
                f.write(f"--{key}={str(value).lower() if isinstance(value, bool) else value}\n")


# ---------------------------------------------------------------------------------------------
# The run.

def train(config):
    """Trains, evaluates and writes a run directory for ``config``; returns the metrics dict."""
    config.validate()
    resumed = _open_run_dir(config)
    paths = _paths(config.run_dir)
    if os.path.isfile(paths["metrics"]):
        with open(paths["metrics"]) as f:
            metrics = json.load(f)
        print(f"{config.run_dir} is already finished; its metrics are in {paths['metrics']}")
        _print_summary(metrics)
        return metrics

    import keras  # Heavy imports after the cheap checks above.
    import numpy as np

    from tfhash import callbacks, data, evaluation, losses, models

    # The loss first: it says how many images of a class a batch needs.
    loss = losses.get(config.method, **config.loss_kwargs())
    positives = max(max(pair) for pair in loss.pairs) - 1  # tuple = anchor, positives, negative
    if config.images_per_class < positives + 1:
        raise UsageError(f"--method={config.method} needs {positives} positives per anchor: "
                         f"raise --images_per_class to at least {positives + 1}")

    # Data: the collection, its protocol split (reused on resume), the batch pipelines.
    collection = data.load_collection(config.dataset, config.data_dir)
    if resumed and os.path.isdir(paths["split"]):
        split = data.Split.load(paths["split"], collection)
    else:
        split = data.make_split(collection, config.protocol, seed=config.seed,
                                val_fraction=config.val_fraction)
        split.save(paths["split"])
    _write_config(config)
    print(f"{config.dataset}: {len(collection)} images; protocol {config.protocol}: "
          f"{len(split.train)} train, {len(split.val)} validation, {len(split.query)} queries, "
          f"{len(split.database)} database")

    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(
        "float32" if config.mixed_precision == "none" else config.mixed_precision)

    train_ds = data.train_dataset(collection, split.train, config.image_size, config.batch_size,
                                  config.images_per_class, augment=config.augment,
                                  seed=config.seed)

    def ordered(indices):
        return data.eval_dataset(collection, indices, config.image_size, config.eval_batch_size)

    # Model and loss.
    model = models.build_model(config.backbone, config.bits, config.image_size, config.weights,
                               head_learning_rate_multiplier=config.head_lr_multiplier)
    steps = config.steps_per_epoch or max(1, len(split.train) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate,
                                                      decay_steps=steps * config.epochs)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=config.momentum,
                                                 weight_decay=config.weight_decay),
                  loss=loss)

    top_k = split.protocol.map_top_k
    fit_callbacks = [
        callbacks.StopOnNaN(),
        keras.callbacks.BackupAndRestore(paths["backup"]),
        callbacks.ValidationMAP(ordered(split.val), ordered(split.train),
                                every_n_epochs=config.eval_every, top_k=top_k),
        callbacks.BestCheckpoint(paths["best"]),
        keras.callbacks.ModelCheckpoint(paths["latest"]),
        keras.callbacks.CSVLogger(paths["history"], append=True),
        keras.callbacks.TensorBoard(paths["logs"]),
    ]
    start = time.time()
    try:
        model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps,
                  callbacks=fit_callbacks, verbose=config.verbose)
    except callbacks.NaNLossError as e:
        raise TrainingStopped(
            f"{e}; training stopped and the last good state is kept in {paths['backup']} and "
            f"{os.path.dirname(paths['best'])}: lower --learning_rate and rerun the same "
            "command to resume") from e
    train_seconds = time.time() - start

    # The final report: the best checkpoint (by validation MAP) encodes queries and database.
    if os.path.isfile(paths["best"]):
        model = keras.saving.load_model(paths["best"])
    query_codes, query_h, query_labels = callbacks.encode(model, ordered(split.query))
    db_codes, db_h, db_labels = callbacks.encode(model, ordered(split.database))
    os.makedirs(paths["codes"], exist_ok=True)
    for name, array in [("query_codes", query_codes), ("query_labels", query_labels),
                        ("database_codes", db_codes), ("database_labels", db_labels),
                        ("query_embedding", query_h), ("database_embedding", db_h)]:
        np.save(os.path.join(paths["codes"], name + ".npy"), array)

    metrics = evaluation.evaluate_codes(query_codes, query_labels, db_codes, db_labels,
                                        top_k=top_k)
    metrics["run"] = {"dataset": config.dataset, "protocol": config.protocol,
                      "method": config.method, "bits": config.bits,
                      "backbone": config.backbone, "train_seconds": round(train_seconds, 1)}
    with open(paths["metrics"], "w") as f:
        json.dump(metrics, f, indent=2)
    _print_summary(metrics)
    print(f"metrics: {paths['metrics']}; codes: {paths['codes']}")
    return metrics


class TrainingStopped(RuntimeError):
    """Training could not go on (a NaN loss); the run directory can be resumed."""


def _print_summary(metrics):
    """One line a person reads: the query set's MAP, its conventions and hash-lookup precision."""
    data, conventions = metrics["data"], metrics["conventions"]
    maps = ", ".join(f"{k.upper()} {v:.4f}" for k, v in metrics.items()
                     if k.startswith("map") and isinstance(v, float))
    lookup = metrics.get("p@r2", {}).get("precision")
    print(f"query set: {maps} (ties={conventions['ties']}) over {data['queries']} queries x "
          f"{data['database']} database items, {data['bits']} bits"
          + ("" if lookup is None else f"; precision within Hamming radius 2: {lookup:.4f}"))


# ---------------------------------------------------------------------------------------------
# Command line.

def config_from_flags():
    """The :class:`TrainConfig` the parsed flags describe (flagfile and overrides applied)."""
    values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**values)


@exit_on_usage_error
def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    try:
        train(config_from_flags())
    except TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
