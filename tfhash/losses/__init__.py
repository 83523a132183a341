"""Hashing losses, one module per method, on relaxed codes ``h`` of a batch.

Every loss is a ``keras.losses.Loss`` taking ``y_true`` = class ids ``[B]`` (or
``[B, 1]``) or multi-hot ``[B, C]``, and ``y_pred`` = relaxed codes ``[B, K]``;
its ``terms(y_true, y_pred)`` returns the total under ``"loss"`` and each
unweighted term under its own name.

Methods (``get(name, **kwargs)``; the one table is :mod:`tfhash.methods`), one module each:
``lsdh`` (LSDH and its ablation ``lsdh_l1``), ``triplet``, ``dsh``, ``hashnet``, ``dhn``,
``lifted``, ``quadruplet_chen``, ``angular``, ``dnnh``, ``lcdsh``, ``dmssph``, ``ssdh`` and
``cnnh`` (whose module also holds its first stage, the target codes).

Shared pieces: :mod:`~tfhash.losses.pairwise` (distances, label similarity),
:mod:`~tfhash.losses.mining` (in-batch quadruplets and triplets),
:mod:`~tfhash.losses.quantization` (Eqs. 10–12), :mod:`~tfhash.losses.base`
(the base classes). A new method is one module with a :class:`HashingLoss`
subclass, registered in :mod:`tfhash.methods`.
"""

import collections.abc
import inspect

import keras

from tfhash import methods
from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss, RankingLoss
from tfhash.losses.lsdh import LSDHL1Loss, LSDHLoss, quadruplet_loss
from tfhash.losses.mining import mine_quadruplets, mine_triplets
from tfhash.losses.pairwise import is_multi_label, label_similarity, squared_distances
from tfhash.losses.quantization import hamming_isometric, pair_mask
from tfhash.losses.triplet import TripletLoss, triplet_loss


class _LossClasses(collections.abc.Mapping):
    """Method name → loss class, a live view of the registry (:mod:`tfhash.methods`)."""

    def __getitem__(self, name):
        if name not in self._names():
            raise KeyError(name)
        return methods.REGISTRY[name].loss_class()

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())

    @staticmethod
    def _names():
        return methods.names("keras")


METHODS = _LossClasses()


def get(method, **kwargs):
    """A new loss for a registered method (:mod:`tfhash.methods`), e.g. ``get("lsdh", margin=2.0)``.

    Args:
        method: a method name (``tfhash.methods.REGISTRY``).
        **kwargs: the loss's constructor arguments (for LSDH: ``margin``,
            ``quantization_weight``, ``isometric_weight``, ``mining``,
            ``quadruplets_per_anchor``, ``seed``).

    Raises:
        UsageError: for an unknown method, an unknown (e.g. misspelt) argument or an invalid
            value.
    """
    if method not in METHODS:
        kind = getattr(methods.REGISTRY.get(method), "kind", None)
        if kind:
            raise UsageError(f"{method} is a {kind} method with no Keras loss; see tfhash.{kind}")
        raise UsageError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    loss_class = METHODS[method]
    accepted = arguments(method)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UsageError(
            f"{method} takes no argument {', '.join(map(repr, unknown))}; its "
            f"arguments are {', '.join(sorted(accepted))}"
        )
    return loss_class(**kwargs)


def arguments(method):
    """The names of the keyword arguments the loss of ``method`` accepts (through
    ``**kwargs`` to its base classes)."""
    return set(defaults(method))


def defaults(method):
    """The keyword arguments the loss of ``method`` accepts, each with its default (those of
    its class first, then of the base classes it passes ``**kwargs`` to), in signature order.

    >>> defaults("lsdh")["quantization_weight"]
    0.8
    """
    loss_class = METHODS[method]
    found = {}
    for cls in loss_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is keras.losses.Loss or cls is object:
            continue
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return found


__all__ = [
    "METHODS",
    "HashingLoss",
    "LSDHL1Loss",
    "LSDHLoss",
    "RankingLoss",
    "TripletLoss",
    "arguments",
    "defaults",
    "get",
    "hamming_isometric",
    "is_multi_label",
    "label_similarity",
    "mine_quadruplets",
    "mine_triplets",
    "pair_mask",
    "quadruplet_loss",
    "squared_distances",
    "triplet_loss",
]
