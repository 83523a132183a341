"""Hashing losses, one module per method, on relaxed codes ``h`` of a batch.

Every loss is a ``keras.losses.Loss`` taking ``y_true`` = class ids ``[B]`` (or
``[B, 1]``) or multi-hot ``[B, C]``, and ``y_pred`` = relaxed codes ``[B, K]``;
its ``terms(y_true, y_pred)`` returns the total under ``"loss"`` and each
unweighted term under its own name.

Methods (``get(name, **kwargs)``):

* ``"lsdh"``: :class:`LSDHLoss`, quadruplet loss + Hamming-isometric quantization;
* ``"lsdh_l1"``: :class:`LSDHL1Loss`, the ablation with L1 quantization only;
* ``"triplet"``: :class:`TripletLoss`, the triplet ranking baseline.

Shared pieces: :mod:`~tfhash.losses.pairwise` (distances, label similarity),
:mod:`~tfhash.losses.mining` (in-batch quadruplets and triplets),
:mod:`~tfhash.losses.quantization` (Eqs. 10–12), :mod:`~tfhash.losses.base`
(the base classes). A new method is one module with a :class:`HashingLoss`
subclass, registered in ``METHODS`` below.
"""

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss, RankingLoss
from tfhash.losses.lsdh import LSDHL1Loss, LSDHLoss, quadruplet_loss
from tfhash.losses.mining import mine_quadruplets, mine_triplets
from tfhash.losses.pairwise import is_multi_label, label_similarity, squared_distances
from tfhash.losses.quantization import hamming_isometric, pair_mask
from tfhash.losses.triplet import TripletLoss, triplet_loss

METHODS = {
    "lsdh": LSDHLoss,
    "lsdh_l1": LSDHL1Loss,
    "triplet": TripletLoss,
}


def get(method, **kwargs):
    """A new loss for a method name, e.g. ``get("lsdh", margin=2.0)``.

    Args:
        method: a key of ``METHODS``.
        **kwargs: the loss's constructor arguments (``margin``,
            ``quantization_weight``, ``isometric_weight``, ``mining``,
            ``quadruplets_per_anchor``, ``seed``).

    Raises:
        UsageError: for an unknown method or an invalid argument.
    """
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    return METHODS[method](**kwargs)


__all__ = [
    "METHODS",
    "HashingLoss",
    "LSDHL1Loss",
    "LSDHLoss",
    "RankingLoss",
    "TripletLoss",
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
