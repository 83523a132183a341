"""The method registry: what the training command needs to know of each method, TensorFlow-free.

A method names its loss (a ``keras.losses.Loss`` class, imported only when a run builds it)
and what it asks of the batches; :mod:`tfhash.train` reads this table and never inspects a
loss. Adding a method is one module in ``tfhash/losses/`` and one line here::

    register(Method("my_method", "my_package.my_loss:MyLoss", "what it is"))

``tfhash.losses.get(name)`` then returns its loss and ``python -m tfhash.train
--method=my_method`` trains it. Because this module imports no TensorFlow, the command checks
``--method`` (and prints ``--help``) instantly.
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
            the loss (a two-stage method's first stage: CNNH's target codes, say, which it
            saves in ``run_dir`` and reuses on resume); ``None`` for most methods.
        kind: ``"keras"``, a loss trained on images (by :func:`tfhash.training.trainer.fit`); or ``"shallow"``, a
            NumPy method of :mod:`tfhash.shallow` fitted once on features
            (:mod:`tfhash.shallow.run`).
        sampler: the training batches: ``"balanced"`` (class-balanced labelled images,
            ``tfhash.data.train_dataset``) or ``"semi_supervised"`` (those and unlabelled
            images, with a labelled mask: ``tfhash.data.semi_supervised_dataset``).
        min_batch_size: the smallest batch the loss works on (SSDH's graph draws negatives
            from far ranks of the batch).
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

    def loss_class(self):
        return _resolve(self.loss)

    def prepare_function(self):
        return _resolve(self.prepare)


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


register(Method("lsdh", "tfhash.losses.lsdh:LSDHLoss", "LSDH: quadruplet loss (Eq. 8 / 13) + "
                "Hamming-isometric quantization (Eq. 11)", images_per_class=3))
register(Method("lsdh_l1", "tfhash.losses.lsdh:LSDHL1Loss", "LSDH with mu = 0: L1 quantization "
                "only (the paper's ablation)", images_per_class=3))
register(Method("triplet", "tfhash.losses.triplet:TripletLoss", "triplet ranking (the first two "
                "terms of Eq. 8) with LSDH's quantization"))
register(Method("cnnh", "tfhash.losses.cnnh:CNNHLoss", "CNNH: stage-1 target codes from the "
                "similarity matrix, then the network regresses them", prepare="tfhash.cnnh:prepare"))
for _name, _summary in [("lsh", "random hyperplanes through the mean"),
                        ("sh", "spectral hashing, Weiss et al. 2008"),
                        ("itq", "iterative quantization, Gong & Lazebnik 2011"),
                        ("ksh", "kernel-based supervised hashing, Liu et al. 2012"),
                        ("sdh", "supervised discrete hashing, Shen et al. 2015")]:
    register(Method(_name, None, f"shallow: {_summary}, on features (--backbone, --features)",
                    kind="shallow"))
register(Method("dsh", "tfhash.losses.dsh:DSHLoss", "DSH, Liu et al. 2016: contrastive loss, "
                "margin 2K, + alpha L1 regulariser (Eq. 5)", head="linear"))
register(Method("hashnet", "tfhash.losses.hashnet:HashNetLoss", "HashNet, Cao et al. 2017: "
                "weighted pairwise likelihood on tanh(beta z), beta by continuation",
                head="linear"))
register(Method("dhn", "tfhash.losses.dhn:DHNLoss", "DHN, Zhu et al. 2016: pairwise "
                "cross-entropy on inner products + lambda log cosh quantization"))
register(Method("lifted", "tfhash.losses.lifted:LiftedStructuredLoss", "lifted structured "
                "loss, Song et al. 2016, + the triplet baseline's quantization (Fig. 11)"))
register(Method("quadruplet_chen", "tfhash.losses.quadruplet_chen:ChenQuadrupletLoss",
                "quadruplet loss of Chen et al. 2017 ('Beyond triplet'), + the triplet "
                "baseline's quantization (Fig. 11)"))
register(Method("angular", "tfhash.losses.angular:AngularLoss", "angular loss, Wang et al. "
                "2017, + the triplet baseline's quantization (Fig. 11)"))
register(Method("dnnh", "tfhash.losses.dnnh:DNNHLoss", "DNNH, Lai et al. 2015: triplet ranking "
                "on the divide-and-encode head's [0, 1] codes (in-batch triplets)",
                head="divide_encode"))
register(Method("lcdsh", "tfhash.losses.lcdsh:LCDSHLoss", "LCDSH, Zhu & Gao 2017 (the public "
                "code's form): pairwise likelihood + lambda = 3 locality constraint",
                head="linear"))
register(Method("dmssph", "tfhash.losses.dmssph:DMSSPHLoss", "DMSSPH, Wu et al. 2017 "
                "(reconstructed from the abstract): Hamming distance follows the Jaccard "
                "similarity level"))
register(Method("ssdh", "tfhash.losses.ssdh:SSDHLoss", "SSDH-ZP, Zhang & Peng 2017 "
                "(semi-supervised): triplet ranking on labelled images + an online kNN-graph "
                "embedding over labelled and unlabelled ones", sampler="semi_supervised",
                min_batch_size=16))  # ssdh.MIN_BATCH_SIZE: its far window lies past the 8 nearest
