"""The one method table: every method tfhash trains, and what the run needs to know of it.

TensorFlow-free. A method names its loss (a ``keras.losses.Loss`` class, imported only when a
run builds it), its head, its batches, and, where it has them, a prepare step run once before
training and the files that step keeps in the run directory. The training driver
(:mod:`tfhash.training.run`) reads this table and never branches on a method's name; the
command checks ``--method`` and prints ``--help`` without importing TensorFlow.
:data:`tfhash.losses.METHODS` and :data:`tfhash.shallow.METHODS` are views of this table.

Adding a method is one module and one line here::

    register(Method("my_method", "my_package.my_loss:MyLoss", "what it is"))
    register(Method("two_stage", "my_package.two_stage:Loss", "what it is",
                    prepare="my_package.two_stage:prepare", run_dir_files=("two_stage.npz",)))

``tfhash.losses.get(name)`` then returns its loss and ``python -m tfhash.train
--method=my_method`` trains it.
"""

import dataclasses
import importlib

from tfhash.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the ``--method`` value.
        loss: ``"module:Class"`` of its loss, a :class:`tfhash.losses.HashingLoss` subclass
            (``None`` for a shallow method).
        summary: one line for ``--help``.
        images_per_class: the fewest images of a class a batch must hold (an LSDH quadruplet
            needs an anchor and two positives: 3).
        head: the hashing layer's activation (``tfhash.models.layers.HashingLayer``): ``"tanh"``
            or ``"linear"``, or ``"divide_encode"`` (DNNH's ``DivideAndEncode``); every
            head's output has the binary code as its sign (``tfhash.models.layers.HEADS``).
        prepare: ``"module:function"`` run once before training, as
            ``function(config, collection, split, run_dir)``, returning further arguments of
            the loss, and under ``"train_targets"`` what the training batches carry instead of
            labels (a two-stage method's first stage: CNNH's target codes). It keeps its result
            in ``run_dir`` (in :attr:`run_dir_files`) and reads it back on resume; ``None``
            for most methods.
        kind: ``"keras"``, a loss trained on images (by :func:`tfhash.training.trainer.fit`); or
            ``"shallow"``, a NumPy method of :mod:`tfhash.shallow` fitted once on features
            (:mod:`tfhash.shallow.run`).
        sampler: the training batches: ``"balanced"`` (class-balanced labelled images,
            ``tfhash.data.train_dataset``) or ``"semi_supervised"`` (those and unlabelled
            images, with a labelled mask: ``tfhash.data.semi_supervised_dataset``).
        min_batch_size: the smallest batch the loss works on (SSDH's graph draws negatives
            from far ranks of the batch).
        run_dir_files: the names of the files (or folders) the method itself writes in a
            run directory (its prepare step's); a run directory holding them is still a
            tfhash run (:mod:`tfhash.training.run_dir`).
        model: a shallow method's ``"module:Class"``, a :class:`tfhash.shallow.ShallowHash`
            subclass (``None`` for a Keras method).
    """

    name: str
    loss: str | None
    summary: str
    images_per_class: int = 2
    head: str = "tanh"
    prepare: str | None = None
    kind: str = "keras"
    sampler: str = "balanced"
    min_batch_size: int = 2
    run_dir_files: tuple = ()
    model: str | None = None

    def loss_class(self):
        return _resolve(self.loss)

    def prepare_function(self):
        return _resolve(self.prepare)

    def model_class(self):
        return _resolve(self.model)

    def labelled_per_class(self, labelled_per_class, protocol):
        """Labelled training images kept per class: ``labelled_per_class``, or for a
        semi-supervised method where it is 0 the protocol's ``semi_supervised_per_class``
        (``protocol`` a :class:`tfhash.data.Protocol`, asked only then); 0: all."""
        if labelled_per_class or self.sampler != "semi_supervised":
            return labelled_per_class
        return protocol().semi_supervised_per_class

    def checks(self, config, protocol):
        """``(ok, message)`` pairs: whether ``config`` (a :class:`tfhash.config.TrainConfig`)
        gives this method the batches it needs, its messages naming the settings as the
        command's flags; ``protocol()`` returns the run's :class:`tfhash.data.Protocol`."""
        checks = [
            (
                config.images_per_class >= self.images_per_class,
                f"method={self.name} needs {self.images_per_class - 1} positives per anchor: "
                f"raise `images_per_class` to at least {self.images_per_class}",
            )
        ]
        if self.sampler != "semi_supervised":
            return checks
        labelled = round(config.labelled_ratio * config.batch_size)
        ipc = config.images_per_class
        kept = self.labelled_per_class(config.labelled_per_class, protocol)
        split = protocol()
        return checks + [
            (
                config.batch_size >= self.min_batch_size,
                f"method={self.name} needs batches of at least {self.min_batch_size} images "
                f"(its graph's negatives come from far ranks of the batch), got "
                f"batch_size={config.batch_size}",
            ),
            (
                labelled % ipc == 0 and 2 * ipc <= labelled < config.batch_size,
                f"labelled_ratio={config.labelled_ratio} of batch_size={config.batch_size} gives "
                f"{labelled} labelled images per batch: make it at least two classes of "
                f"images_per_class={ipc} (a multiple of it), with some unlabelled",
            ),
            (
                kept or split.sampling != "fraction" or split.train < 1,
                f"protocol={config.protocol} trains on the whole database, leaving no unlabelled "
                f"images for method={self.name}: keep fewer labelled (labelled_per_class=N) "
                "or draw fewer (protocol=fraction:train=0.5)",
            ),
        ]


def _resolve(path):
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


REGISTRY = {}


def register(method):
    """Adds ``method`` to the registry (a name may be registered once)."""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    REGISTRY[method.name] = method
    return method


def get(name):
    """The registered :class:`Method` called ``name``; a :class:`UsageError` otherwise."""
    if name not in REGISTRY:
        raise UsageError(f"unknown method {name!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names(kind):
    """The registered methods of ``kind`` (``"keras"`` or ``"shallow"``), in order."""
    return [name for name, method in REGISTRY.items() if method.kind == kind]


def run_dir_files():
    """Every file name a registered method keeps in its run directories."""
    return {name for method in REGISTRY.values() for name in method.run_dir_files}


def hyperparameters():
    """Every registered method's hyperparameters and their defaults, one ``"name: a=1, b=2"``
    line per method: the arguments of its loss (``method_args``; ``None``: the loss decides
    from the data or the code length, see docs/losses.md) or a shallow method's parameters.
    Imports the losses, hence TensorFlow."""
    from tfhash import losses

    set_elsewhere = ("name", "reduction", "seed")  # the loss's own name; the run's seed
    lines = []
    for name, method in REGISTRY.items():
        if method.kind == "shallow":
            values = method.model_class().defaults
        else:
            values = {k: v for k, v in losses.defaults(name).items() if k not in set_elsewhere}
        lines.append(f"{name}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "none"))
    return lines


register(
    Method(
        "lsdh",
        "tfhash.losses.lsdh:LSDHLoss",
        "LSDH: quadruplet loss (Eq. 8 / 13) + Hamming-isometric quantization (Eq. 11)",
        images_per_class=3,
    )
)
register(
    Method(
        "lsdh_l1",
        "tfhash.losses.lsdh:LSDHL1Loss",
        "LSDH with mu = 0: L1 quantization only (the paper's ablation)",
        images_per_class=3,
    )
)
register(
    Method(
        "triplet",
        "tfhash.losses.triplet:TripletLoss",
        "triplet ranking (the first two terms of Eq. 8) with LSDH's quantization",
    )
)
register(
    Method(
        "cnnh",
        "tfhash.losses.cnnh:CNNHLoss",
        "CNNH: stage-1 target codes from the similarity matrix, then the network regresses them",
        prepare="tfhash.losses.cnnh:prepare",
        run_dir_files=("cnnh_targets.npz",),
    )
)
for _name, _class, _summary in [
    ("lsh", "lsh:LSH", "random hyperplanes through the mean"),
    ("sh", "sh:SH", "spectral hashing, Weiss et al. 2008"),
    ("itq", "itq:ITQ", "iterative quantization, Gong & Lazebnik 2011"),
    ("ksh", "ksh:KSH", "kernel-based supervised hashing, Liu et al. 2012"),
    ("sdh", "sdh:SDH", "supervised discrete hashing, Shen et al. 2015"),
]:
    register(
        Method(
            _name,
            None,
            f"shallow: {_summary}, on features (--backbone, --features)",
            kind="shallow",
            model=f"tfhash.shallow.{_class}",
        )
    )
register(
    Method(
        "dsh",
        "tfhash.losses.dsh:DSHLoss",
        "DSH, Liu et al. 2016: contrastive loss, margin 2K, + alpha L1 regulariser (Eq. 5)",
        head="linear",
    )
)
register(
    Method(
        "hashnet",
        "tfhash.losses.hashnet:HashNetLoss",
        "HashNet, Cao et al. 2017: "
        "weighted pairwise likelihood on tanh(beta z), beta by continuation",
        head="linear",
    )
)
register(
    Method(
        "dhn",
        "tfhash.losses.dhn:DHNLoss",
        "DHN, Zhu et al. 2016: pairwise "
        "cross-entropy on inner products + lambda log cosh quantization",
    )
)
register(
    Method(
        "lifted",
        "tfhash.losses.lifted:LiftedStructuredLoss",
        "lifted structured loss, Song et al. 2016, + the triplet baseline's quantization (Fig. 11)",
    )
)
register(
    Method(
        "quadruplet_chen",
        "tfhash.losses.quadruplet_chen:ChenQuadrupletLoss",
        "quadruplet loss of Chen et al. 2017 ('Beyond triplet'), + the triplet "
        "baseline's quantization (Fig. 11)",
    )
)
register(
    Method(
        "angular",
        "tfhash.losses.angular:AngularLoss",
        "angular loss, Wang et al. 2017, + the triplet baseline's quantization (Fig. 11)",
    )
)
register(
    Method(
        "dnnh",
        "tfhash.losses.dnnh:DNNHLoss",
        "DNNH, Lai et al. 2015: triplet ranking "
        "on the divide-and-encode head's [0, 1] codes (in-batch triplets)",
        head="divide_encode",
    )
)
register(
    Method(
        "lcdsh",
        "tfhash.losses.lcdsh:LCDSHLoss",
        "LCDSH, Zhu & Gao 2017 (the public "
        "code's form): pairwise likelihood + lambda = 3 locality constraint",
        head="linear",
    )
)
register(
    Method(
        "dmssph",
        "tfhash.losses.dmssph:DMSSPHLoss",
        "DMSSPH, Wu et al. 2017 "
        "(reconstructed from the abstract): Hamming distance follows the Jaccard "
        "similarity level",
    )
)
register(
    Method(
        "ssdh",
        "tfhash.losses.ssdh:SSDHLoss",
        "SSDH-ZP, Zhang & Peng 2017 "
        "(semi-supervised): triplet ranking on labelled images + an online kNN-graph "
        "embedding over labelled and unlabelled ones",
        sampler="semi_supervised",
        min_batch_size=16,
    )
)  # ssdh.MIN_BATCH_SIZE: its far window lies past the 8 nearest
