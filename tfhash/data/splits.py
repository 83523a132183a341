"""The seeded splits a protocol draws: queries, database, train, val and unlabeled.

:func:`make_split` draws, for a seed and a :class:`~tfhash.data.protocols.Protocol`:

1. **queries** — per class, in total, or as a fraction of the collection;
2. **database** — every image that is not a query;
3. **the training draw** — from the database, per class, in total or as a fraction;
4. **val** — ``val_fraction`` of the training draw, uniformly at random, held out of
   ``train``: training picks its best checkpoint on it, never on the queries;
5. **unlabeled** — database images outside the training draw (what unsupervised and
   semi-supervised methods may use besides ``train``); :func:`keep_labelled` moves all but
   N training images per class there.

Per-class draws go through the classes in label order and, for each class ``c``,
draw the protocol's number of not-yet-chosen images that carry ``c``. For single-label
data that is plain stratified sampling; for multi-label data (NUS-WIDE: "100 queries
per concept") an image with several concepts is drawn at most once, so the draw has
exactly ``C x per_class`` images, each concept carried by at least ``per_class`` of them.
"""

import dataclasses
import json
import os

import numpy as np

from tfhash.data.protocols import Protocol, get_protocol
from tfhash.errors import UsageError


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Index arrays (int64, sorted) into a :class:`Collection`, drawn by :func:`make_split`.

    Attributes:
        train: training images (the training draw minus ``val``).
        val: held-out training images for checkpoint selection.
        query: query images, used only for the final report.
        database: every non-query image (it includes ``train``, ``val`` and ``unlabeled``).
        unlabeled: database images outside the training draw.
        protocol: the :class:`Protocol` (its metric settings travel with the split).
        seed, val_fraction: how the split was drawn.
        collection: ``{"name", "size", "fingerprint"}`` of the collection it indexes.
    """

    train: np.ndarray
    val: np.ndarray
    query: np.ndarray
    database: np.ndarray
    unlabeled: np.ndarray
    protocol: Protocol
    seed: int
    val_fraction: float
    collection: dict

    _PARTS = ("train", "val", "query", "database", "unlabeled")

    def __post_init__(self):
        for part in self._PARTS:
            object.__setattr__(self, part, np.asarray(getattr(self, part), np.int64))
        self._check()

    def _check(self):
        size = self.collection["size"]
        for part in self._PARTS:
            indices = getattr(self, part)
            if indices.ndim != 1 or (len(indices) and (indices.min() < 0 or indices.max() >= size)):
                raise UsageError(
                    f"split part {part} holds indices outside [0, {size}); the "
                    "split files are damaged: delete them and draw a new split"
                )
            if len(np.unique(indices)) != len(indices):
                raise UsageError(
                    f"split part {part} repeats indices; the split files are "
                    "damaged: delete them and draw a new split"
                )
        expected_db = np.setdiff1d(np.arange(size), self.query)
        checks = [
            (
                np.intersect1d(self.query, np.concatenate([self.train, self.val])).size == 0,
                "queries overlap the training or validation images",
            ),
            (np.intersect1d(self.train, self.val).size == 0, "train and val overlap"),
            (
                np.array_equal(np.sort(self.database), expected_db),
                "the database is not the complement of the queries",
            ),
            (
                np.array_equal(
                    np.union1d(np.union1d(self.train, self.val), self.unlabeled),
                    np.sort(self.database),
                )
                and np.intersect1d(self.unlabeled, np.concatenate([self.train, self.val])).size
                == 0,
                "train, val and unlabeled do not partition the database",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise UsageError(
                    f"inconsistent split: {problem}; delete the split files and draw a new split"
                )

    @property
    def report_database(self):
        """The database the final report ranks: :attr:`database`, less the training draw
        where the protocol says so (``report_database="untrained"``)."""
        if self.protocol.report_database == "untrained":
            return np.setdiff1d(self.database, np.concatenate([self.train, self.val]))
        return self.database

    def save(self, directory):
        """Writes ``train.npy``, ``val.npy``, ``query.npy``, ``database.npy``, ``unlabeled.npy``
        and ``protocol.json`` (the protocol, seed, val_fraction and collection fingerprint)."""
        os.makedirs(directory, exist_ok=True)
        for part in self._PARTS:
            np.save(os.path.join(directory, f"{part}.npy"), getattr(self, part))
        meta = {
            "protocol": self.protocol.to_dict(),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "collection": self.collection,
        }
        with open(os.path.join(directory, "protocol.json"), "w") as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, directory, collection=None):
        """Reads a split written by :meth:`save`; checks it against ``collection`` if given.

        Raises:
            UsageError: missing files, inconsistent parts, or a split made for another
                collection (different size, item ids or labels).
        """
        meta_path = os.path.join(directory, "protocol.json")
        paths = [meta_path] + [os.path.join(directory, f"{p}.npy") for p in cls._PARTS]
        missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
        if missing:
            raise UsageError(
                f"no complete split in {directory} (missing {', '.join(missing)}); "
                "draw one with data.make_split or start a new run directory"
            )
        with open(meta_path) as f:
            meta = json.load(f)
        parts = {p: np.load(os.path.join(directory, f"{p}.npy")) for p in cls._PARTS}
        split = cls(
            protocol=Protocol.from_dict(meta["protocol"]),
            seed=meta["seed"],
            val_fraction=meta["val_fraction"],
            collection=meta["collection"],
            **parts,
        )
        if collection is not None:
            made_for = split.collection
            here = _describe(collection)
            if (made_for["size"], made_for["fingerprint"]) != (here["size"], here["fingerprint"]):
                raise UsageError(
                    f"the split in {directory} was made for {made_for['name']} "
                    f"({made_for['size']} images, fingerprint {made_for['fingerprint']}), not "
                    f"this {here['name']} ({here['size']} images, fingerprint "
                    f"{here['fingerprint']}); pass the same `dataset`/`data_dir` or start a new "
                    "run directory"
                )
        return split


def _describe(collection):
    return {
        "name": collection.name,
        "size": len(collection),
        "fingerprint": collection.fingerprint(),
    }


def make_split(collection, protocol, seed=0, val_fraction=0.1):
    """Draws the query/database/train/val/unlabeled split of ``protocol`` for ``seed``.

    Args:
        collection: a :class:`Collection`.
        protocol: a preset name (see :func:`get_protocol`) or a :class:`Protocol`.
        seed: the same seed gives the same indices.
        val_fraction: the part of the training draw held out for validation, in [0, 1).

    Returns:
        A :class:`Split`.

    Raises:
        UsageError: unknown protocol, a bad ``val_fraction``, or a collection too small
            for the protocol (the message names the numbers).

    Example:

    >>> from tfhash.data import load_collection
    >>> split = make_split(load_collection("digits"), "digits", seed=0)
    >>> len(split.query), len(split.train) + len(split.val)
    (300, 1000)
    """
    protocol = get_protocol(protocol)
    if not 0 <= val_fraction < 1:
        raise UsageError(f"`val_fraction` must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    membership = collection.membership()
    carried = np.flatnonzero(membership.any(axis=0))
    if len(carried) < 2:
        only = f" ({collection.class_names[carried[0]]!r})" if len(carried) else ""
        raise UsageError(
            f"{collection.name} holds images of one class only{only}: codes are "
            "learnt from what tells classes apart, so training needs at least two "
            "(an image folder holds one subfolder per class: <root>/<class>/<image>)"
        )
    everything = np.ones(len(collection), bool)
    query = _draw(protocol, "queries", protocol.queries, membership, everything, rng, collection)
    database = np.setdiff1d(np.arange(len(collection)), query)
    in_database = np.zeros(len(collection), bool)
    in_database[database] = True
    drawn = _draw(
        protocol, "training images", protocol.train, membership, in_database, rng, collection
    )
    n_val = int(round(val_fraction * len(drawn)))
    if n_val >= len(drawn):
        raise UsageError(
            f"val_fraction={val_fraction} leaves no training images out of {len(drawn)}; lower it"
        )
    val = np.sort(rng.choice(drawn, n_val, replace=False))
    return Split(
        train=np.setdiff1d(drawn, val),
        val=val,
        query=query,
        database=database,
        unlabeled=np.setdiff1d(database, drawn),
        protocol=protocol,
        seed=int(seed),
        val_fraction=float(val_fraction),
        collection=_describe(collection),
    )


def keep_labelled(collection, split, per_class, seed=0):
    """``split`` with at most ``per_class`` labelled training images per class (semi-supervised
    runs with few labels): the rest of ``train`` joins ``unlabeled``.

    The classes are gone through in label order, as :func:`make_split` does: for class ``c``,
    ``per_class`` not-yet-kept training images carrying ``c`` are kept (all of them when there
    are fewer), drawn with ``seed``. ``val``, ``query`` and ``database`` are unchanged, so
    checkpoints are still chosen on the same labelled validation images.

    Raises:
        UsageError: ``per_class`` below 1.

    Example:

    >>> from tfhash.data import load_collection
    >>> digits = load_collection("digits")
    >>> split = make_split(digits, "digits", seed=0)
    >>> few = keep_labelled(digits, split, 20)
    >>> len(few.train), len(few.unlabeled) - len(split.unlabeled), len(few.val)
    (200, 700, 100)
    """
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise UsageError(
            f"`labelled_per_class` must be a whole number of at least 1, got {per_class!r}"
        )
    rng = np.random.default_rng([seed, int(per_class)])
    membership = collection.membership(split.train)
    kept = np.zeros(len(split.train), bool)
    for c in range(membership.shape[1]):
        candidates = np.flatnonzero(membership[:, c] & ~kept)
        kept[rng.choice(candidates, min(int(per_class), len(candidates)), replace=False)] = True
    return dataclasses.replace(
        split, train=split.train[kept], unlabeled=np.union1d(split.unlabeled, split.train[~kept])
    )


def _draw(protocol, what, amount, membership, available, rng, collection):
    """Sorted indices of ``amount`` images (per class, in all, or a fraction) from ``available``."""
    pool = np.flatnonzero(available)
    if protocol.sampling == "per_class":
        per_class = int(amount)
        chosen = np.zeros(len(available), bool)
        for c, name in enumerate(collection.class_names):
            candidates = np.flatnonzero(membership[:, c] & available & ~chosen)
            if len(candidates) < per_class:
                of = "carrying label" if collection.multi_label else "of class"
                raise UsageError(
                    f"protocol {protocol.name} needs {per_class} {what} {of} {name!r} but "
                    f"only {len(candidates)} are left ({int(membership[:, c].sum())} images carry "
                    f"it in {collection.name}); use protocol=fraction for a collection this "
                    "small (as configs/images.cfg does, for a folder of any size)"
                )
            chosen[rng.choice(candidates, per_class, replace=False)] = True
        return np.flatnonzero(chosen)
    count = int(amount) if protocol.sampling == "total" else int(round(amount * len(pool)))
    if count > len(pool) or count < 1:
        raise UsageError(
            f"protocol {protocol.name} needs {count} {what} but {len(pool)} images are "
            f"available in {collection.name} ({len(available)} in all); use a larger collection "
            "or a smaller protocol=fraction:query=Q,train=T"
        )
    return np.sort(rng.choice(pool, count, replace=False))
