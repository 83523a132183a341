r"""CNNH, Xia et al., AAAI 2014: both stages of the method, one file.

Xia, Pan, Lai, Liu, Yan, "Supervised Hashing for Image Retrieval via Image Representation
Learning", AAAI 2014. CNNH learns in two independent stages:

1. approximate binary target codes ``H ∈ {−1, +1}^{n×q}`` for the n training images, so that
   their scaled inner products reproduce the pairwise similarities ``S ∈ {−1, +1}^{n×n}``
   (+1 when two images share a label)::

       min_H  ‖S − (1/q) H Hᵀ‖²_F                                    (the paper's Eq. 1–2)

   (:func:`target_codes`, NumPy and numba; :func:`prepare` is the method's prepare step);
2. train the network to output those codes (:class:`CNNHLoss`); stage 2 never feeds back
   into H.

Stage 1 relaxes H to ``[−1, 1]^{n×q}`` and starts from a uniform random H. With the residual
``L = H Hᵀ − q S``, each sweep visits every entry ``(i, j)`` and takes a clipped Newton step::

    g'  = 4 L_i· H_·j
    g'' = 4 (H_·jᵀ H_·j + H_ij² + L_ii)
    d   = clip(−g'/g'', −1 − H_ij, 1 − H_ij),   H_ij += d

A sweep is kept only if it lowered ``‖L‖_F`` (else H returns to its value before it); after the
last sweep ``H = sign(H)``. tfhash never forms L: ``L h_j = H (Hᵀ h_j) − q S h_j``, and within a
column j both ``Hᵀ h_j`` (q numbers) and ``S h_j`` (n numbers, one contiguous row of S per step)
are updated in place, so a step costs ``O(n + q)`` with no strided access to an n×n matrix
(the published loop updates a row and a column of L per step). The order is therefore column
by column (the columns, and the rows within each, in a random order) rather than over all
entries at once: the same steps, another visiting order. The loop is compiled by numba (a
dependency of tfhash); ``‖L‖²_F = ‖HᵀH‖² − 2q·tr(HᵀSH) + q²‖S‖²``.

In a tfhash run :func:`prepare` computes the targets of ``split.train`` once, keeps them in
``run_dir/cnnh_targets.npz`` with the indices they are for, and on resume reads them back
instead of recomputing; the batches of the training images then carry each image's target
code in place of its labels, and :class:`CNNHLoss` fits the relaxed codes to them::

    L = mean_{b, k} (h_bk − H_bk)²

The paper does not give its stage-2 loss or output nonlinearity (probably sigmoid outputs with
cross-entropy against 0/1 targets). tfhash uses its tanh head and the squared error against
the ±1 targets — on ``s = (h + 1)/2`` that is the squared error against 0/1 targets, up to a
factor 4 — as DeepHash-pytorch's re-implementation does (there with a linear output). CNNH+'s
extra class outputs are not built.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.base import HashingLoss

TARGETS_FILE = "cnnh_targets.npz"  # in the run directory; declared in its tfhash.methods entry
DEFAULT_SWEEPS = 10  # T of DeepHash-pytorch's implementation; the paper gives none


def similarity_matrix(labels):
    """``S``: +1 where two items share a label (class ids ``[n]`` or multi-hot ``[n, C]``),
    else −1; float32 ``[n, n]``."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        same = labels[:, None] == labels[None, :]
    else:
        hot = (labels > 0).astype(np.float32)
        same = hot @ hot.T > 0
    return np.where(same, 1.0, -1.0).astype(np.float32)


def objective(similarity, codes):
    """``‖S − (1/q) H Hᵀ‖²_F`` for codes ``H`` ``[n, q]``."""
    codes = np.asarray(codes, np.float64)
    return float(np.sum((similarity - codes @ codes.T / codes.shape[1]) ** 2))


def target_codes(similarity, bits, sweeps=DEFAULT_SWEEPS, seed=0):
    """Stage 1: int8 ±1 target codes ``[n, bits]`` for the similarity matrix ``S``.

    Args:
        similarity: ``[n, n]`` of ±1 (:func:`similarity_matrix`).
        bits: q.
        sweeps: T, the number of sweeps over all entries.
        seed: seeds the random start and the visiting order.

    Returns:
        ``(codes, residuals)``: the codes, and ``‖L‖_F`` before the first sweep and after
        each one (non-increasing: a sweep that would raise it is undone).

    Example:

    >>> s = similarity_matrix([0, 0, 1, 1])
    >>> codes, _ = target_codes(s, bits=2, seed=0)
    >>> objective(s, codes)
    0.0
    """
    similarity = np.asarray(similarity, np.float64)
    n = similarity.shape[0]
    if similarity.shape != (n, n) or not np.all(np.abs(similarity) == 1):
        raise UsageError(
            f"the similarity matrix must be square with entries ±1, got shape {similarity.shape}"
        )
    if int(bits) < 1 or int(sweeps) < 1:
        raise UsageError(f"bits and sweeps must be at least 1, got {bits} and {sweeps}")
    rng = np.random.default_rng(seed)
    bits = int(bits)
    h = rng.uniform(-1.0, 1.0, (n, bits))
    norms = [_residual_norm(h, similarity)]
    sweep = _compiled_sweep()
    for _ in range(int(sweeps)):
        columns = rng.permutation(bits)
        rows = np.stack([rng.permutation(n) for _ in range(bits)])
        new_h = h.copy()
        sweep(new_h, similarity, columns, rows)
        norm = _residual_norm(new_h, similarity)
        if norm < norms[-1]:
            h = new_h
            norms.append(norm)
        else:
            norms.append(norms[-1])
    return np.where(h >= 0, 1, -1).astype(np.int8), norms


def _residual_norm(h, similarity):
    """``‖H Hᵀ − q S‖_F`` without forming the n×n residual."""
    q = h.shape[1]
    gram = h.T @ h
    squared = np.sum(gram**2) - 2 * q * np.sum(h * (similarity @ h)) + q * q * np.sum(similarity**2)
    return float(np.sqrt(max(squared, 0.0)))


def _sweep(h, similarity, columns, rows):
    """One sweep of clipped Newton steps, column by column (in place on ``h``)."""
    n, bits = h.shape
    for j in columns:
        column = h[:, j].copy()
        gram = h.T @ column  # Hᵀ h_j
        projected = similarity @ column  # S h_j
        for i in rows[j]:
            value = h[i, j]
            lii = 0.0
            gradient = 0.0
            for m in range(bits):
                lii += h[i, m] * h[i, m]
                gradient += h[i, m] * gram[m]
            lii -= bits * similarity[i, i]
            gradient = 4.0 * (gradient - bits * projected[i])
            curvature = 4.0 * (gram[j] + value * value + lii)
            if curvature <= 0:
                continue
            step = min(max(-gradient / curvature, -1.0 - value), 1.0 - value)
            if step == 0.0:
                continue
            for m in range(bits):
                gram[m] += step * h[i, m]
            gram[j] += step * value + step * step  # h_jᵀh_j: 2 d h_ij + d² in all
            projected += step * similarity[i]
            h[i, j] = value + step


def _compiled_sweep():
    import numba

    global _SWEEP
    if _SWEEP is None:
        _SWEEP = numba.njit(cache=True)(_sweep)
    return _SWEEP


_SWEEP = None


def prepare(config, collection, split, run_dir):
    """The ``cnnh`` method's prepare step (:attr:`tfhash.methods.Method.prepare`): stage 1 on
    the training images, saved in ``run_dir`` (:data:`TARGETS_FILE`, the file its registry
    entry declares) and reused on resume.

    Returns:
        ``{"train_targets": int8 [len(split.train), bits]}``: what the batches of
        ``split.train`` carry instead of labels.

    Raises:
        UsageError: saved targets for other training images or another code length.
    """
    path = os.path.join(run_dir, TARGETS_FILE)
    if os.path.isfile(path):
        saved = np.load(path)
        if (
            not np.array_equal(saved["train"], split.train)
            or saved["codes"].shape[1] != config.bits
        ):
            raise UsageError(
                f"{path} holds CNNH target codes for other training images or "
                "another `bits`; pass a new `run_dir` (or delete that file to "
                "recompute them)"
            )
        return {"train_targets": saved["codes"]}
    labels = collection.labels[split.train]
    codes, residuals = target_codes(similarity_matrix(labels), config.bits, seed=config.seed)
    print(
        f"CNNH stage 1: {len(codes)} target codes of {config.bits} bits, residual "
        f"{residuals[0]:.0f} -> {residuals[-1]:.0f}"
    )
    partial = path + ".partial.npz"
    np.savez(partial, codes=codes, train=split.train, residuals=np.asarray(residuals))
    os.replace(partial, path)
    return {"train_targets": codes}


def target_regression(h, targets):
    """``mean (h − H)²`` over the batch and the bits."""
    return tf.reduce_mean(tf.square(h - targets))


@keras.saving.register_keras_serializable(package="tfhash")
class CNNHLoss(HashingLoss):
    """Squared error between the relaxed codes and the stage-1 target codes (CNNH, stage 2).

    ``y_true`` is the batch's target codes ``[B, K]`` of ±1 (from :func:`prepare`,
    which ``python -m tfhash.train --method=cnnh`` runs before training), not labels.

    Example:

    >>> loss = CNNHLoss()
    >>> float(loss(tf.constant([[1.0, -1.0]]), tf.constant([[0.5, -1.0]])))
    0.125
    """

    term_names = ("regression",)

    def __init__(self, name="cnnh", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def terms(self, y_true, y_pred):
        h = tf.cast(y_pred, tf.float32)
        targets = tf.cast(y_true, tf.float32)
        if targets.shape.rank != 2 or targets.shape[-1] != h.shape[-1]:
            raise UsageError(
                f"CNNHLoss takes target codes [B, {h.shape[-1]}] as y_true (from "
                f"tfhash.losses.cnnh.prepare), got shape {targets.shape}; train it with "
                "method=cnnh"
            )
        regression = target_regression(h, targets)
        return {"loss": regression, "regression": regression}
