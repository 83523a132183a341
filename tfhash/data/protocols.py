"""Evaluation protocols as named presets: how many queries and training images, which metrics.

A protocol says how many query and training images to draw and which metrics the papers
report with it; :mod:`tfhash.data.splits` draws its split for a seed
(:func:`~tfhash.data.splits.make_split`).

====================  ===============================  ===========================  ===========
preset                queries                          training draw (from the db)  MAP
====================  ===============================  ===========================  ===========
``cifar10``           1,000 per class (LSDH)           500 per class                MAP@ALL
``cifar10-dhn``       100 per class (DHN, HashNet)     500 per class                MAP@ALL
``cifar10-1``         100 per class (DeepHash-pytorch) 500 per class                MAP@ALL
``deephash-cifar10``  100 per class (DeepHash-pytorch) 500 per class, not ranked    MAP@ALL
``cifar20``           100 per class                    500 per class                MAP@ALL
``sun397-29``         1,000 in total                   5,000 in total               MAP@ALL
``nuswide21``         100 per concept                  500 per concept              MAP@5000
``digits``            30 per class                     100 per class                MAP@ALL
``fraction``          10% (``fraction:query=Q``)       all (``train=T``: a fraction)  MAP@ALL
====================  ===============================  ===========================  ===========

``cifar10-1`` is ``cifar10-dhn`` under DeepHash-pytorch's name; ``deephash-cifar10`` ranks a
database without the training draw (54,000 images), as that code's ``cifar10`` does.
"""

import dataclasses

from tfhash.errors import UsageError

SAMPLINGS = ("per_class", "total", "fraction")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A named split recipe and the metric settings its papers report with.

    Args:
        name: the preset name (``--protocol``).
        sampling: ``"per_class"`` (``queries``/``train`` images per class, drawn
            class by class), ``"total"`` (that many images in all) or ``"fraction"``
            (``queries`` of the collection, ``train`` of the remaining database).
        queries: the number (or fraction) of query images.
        train: the number (or fraction) of training images, drawn from the database.
        map_top_k: MAP over the top ``k`` returned items; ``None`` ranks the whole
            database (MAP@ALL).
        precision_at_k: cut-offs for precision@k (LSDH reports precision@500 and
            precision@k curves).
        hamming_radius: radius of the hash-lookup precision (LSDH: precision@R=2).
        report_database: ``"all"``, the report ranks the whole database (every non-query
            image, training images included); ``"untrained"``, the database less the
            training draw (``train`` and ``val``), as DeepHash-pytorch's ``cifar10``
            (:meth:`~tfhash.data.splits.Split.report_database`).
        semi_supervised_per_class: labelled training images per class that a semi-supervised
            method keeps when ``--labelled_per_class`` is not given (the rest of the training
            draw joins ``unlabeled``, :func:`~tfhash.data.splits.keep_labelled`); 0: the whole
            training draw.
        description: where the preset comes from.
    """

    name: str
    sampling: str
    queries: float
    train: float
    map_top_k: int | None = None
    precision_at_k: tuple = (100, 500, 1000)
    hamming_radius: int = 2
    report_database: str = "all"
    semi_supervised_per_class: int = 0
    description: str = ""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config):
        config = dict(config)  # a split saved before report_database existed: "all"
        config["precision_at_k"] = tuple(config["precision_at_k"])
        return cls(**config)


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol(
            "cifar10",
            "per_class",
            1000,
            500,
            description="LSDH: 1,000 queries per class, 500 training images per class "
            "from the rest",
        ),
        Protocol(
            "cifar10-dhn",
            "per_class",
            100,
            500,
            description="DHN/HashNet: 100 queries per class, 500 training images per "
            "class from the rest",
        ),
        # DeepHash-pytorch's CIFAR-10 splits (utils/tools.py), drawn per class; its DSH and
        # LCDSH figures are on cifar10-1, its HashNet and DHN figures on cifar10.
        Protocol(
            "cifar10-1",
            "per_class",
            100,
            500,
            description="DeepHash-pytorch's cifar10-1 (the same split as cifar10-dhn): "
            "100 queries per class, 500 training images per class from the "
            "rest, database every non-query image (59,000)",
        ),
        Protocol(
            "deephash-cifar10",
            "per_class",
            100,
            500,
            report_database="untrained",
            description="DeepHash-pytorch's cifar10: 100 queries per class, 500 training "
            "images per class, database the other 54,000 images",
        ),
        Protocol(
            "cifar20",
            "per_class",
            100,
            500,
            description="LSDH: 100 queries per superclass, 500 training images per "
            "superclass from the rest",
        ),
        Protocol(
            "sun397-29",
            "total",
            1000,
            5000,
            description="LSDH: 1,000 queries, 5,000 training images from the rest",
        ),
        Protocol(
            "nuswide21",
            "per_class",
            100,
            500,
            map_top_k=5000,
            description="LSDH: 100 queries per concept, 500 training images per "
            "concept from the rest, MAP@5000",
        ),
        Protocol(
            "digits",
            "per_class",
            30,
            100,
            semi_supervised_per_class=20,
            description="quickstart: 30 queries per class, 100 training images per "
            "class from the rest (a semi-supervised method: 20 of them "
            "labelled, the other 1,197 database images unlabelled)",
        ),
    )
}

_FRACTION_DEFAULTS = {"query": 0.1, "train": 1.0}


def get_protocol(name):
    """The :class:`Protocol` called ``name``.

    ``name`` is a preset of :data:`PROTOCOLS` or ``fraction`` with optional settings,
    ``fraction:query=0.2,train=0.5`` (defaults ``query=0.1``: 10% of the images are
    queries; ``train=1.0``: every non-query image is a training image).

    Example:

    >>> get_protocol("nuswide21").map_top_k
    5000
    >>> get_protocol("fraction:query=0.2").queries
    0.2
    """
    if isinstance(name, Protocol):
        return name
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    if name == "fraction" or str(name).startswith("fraction:"):
        return _fraction_protocol(name)
    raise UsageError(
        f"unknown protocol {name!r}; choose `protocol` from "
        f"{', '.join(PROTOCOLS)}, fraction or fraction:query=Q,train=T"
    )


def _fraction_protocol(name):
    settings = dict(_FRACTION_DEFAULTS)
    _, _, options = name.partition(":")
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if key not in settings or not 0 < number <= 1 or (key == "query" and number == 1):
            raise UsageError(
                f"bad protocol={name}: write fraction:query=Q,train=T with 0 < Q < 1 and 0 < T <= 1"
            )
        settings[key] = number
    return Protocol(
        f"fraction:query={settings['query']:g},train={settings['train']:g}",
        "fraction",
        settings["query"],
        settings["train"],
        description="a fraction of the images as queries, a fraction of the rest for training",
    )
