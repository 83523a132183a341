"""The trainable hashing network: backbone → hashing layer, raw pixels in, relaxed codes out.

    images float32 [B, S, S, 3] in [0, 255]
      └─ backbone (normalisation inside)  → features [B, d]
           └─ HashingLayer (Eq. 4, tanh)  → h float32 [B, K] in (−1, 1)

Binary codes are ``sign(h)`` (Eq. 5), computed outside the model (``tfhash.models.layers.sign``)
or inside the exported serving graph.
"""

import keras
import numpy as np
from keras import ops

from tfhash import losses  # noqa: F401  registers the losses saved models are compiled with
from tfhash.errors import UsageError
from tfhash.models.backbones import (
    build_backbone,
    freeze_batch_norm,
    freeze_before_last_blocks,
    split_backbone,
)
from tfhash.models.layers import hashing_head


@keras.saving.register_keras_serializable(package="tfhash")
class HashingModel(keras.Model):
    """A Keras model whose loss may report its terms, each logged during training.

    A loss with a ``terms(y_true, y_pred)`` method (every ``tfhash.losses`` class)
    returns a dict of scalars: the weighted total under ``"loss"`` and each term
    under its own name (``"semantic"``, ``"quantization"``, ``"isometric"``).
    ``compute_loss`` — Keras's hook between the forward pass and the gradients —
    trains on the total and updates one running mean per term, so every term
    appears in the progress bar, the History and TensorBoard. A plain Keras loss
    works as usual.

    Build one with :func:`build_model`, or like any functional model::

        model = HashingModel(inputs, HashingLayer(48)(features))
        model.compile(optimizer="sgd", loss=tfhash.losses.get("lsdh"))
    """

    def compile(self, *args, **kwargs):
        loss = kwargs.get("loss", args[1] if len(args) > 1 else None)
        if not getattr(loss, "supports_jit", True):
            # e.g. mining="all": the number of quadruplets depends on the labels, which XLA
            # cannot compile; Keras's default jit_compile="auto" would turn XLA on on a GPU.
            kwargs["jit_compile"] = False
        super().compile(*args, **kwargs)
        self._term_trackers = {
            name: keras.metrics.Mean(name=name) for name in term_names(self.loss)
        }

    def compile_from_config(self, config):
        # Keras skips compiling a loaded model whose class overrides compile(); ours only adds
        # the term trackers, so compiling from the saved config is safe.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        trackers = getattr(self, "_term_trackers", None)
        if not trackers:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        if sample_weight is not None:
            raise UsageError(
                f"{type(self.loss).__name__} is a loss of the whole batch, with no per-sample "
                "value to weight: drop sample_weight (and class_weight) from fit"
            )
        terms = self.loss_terms(y, y_pred)
        for name, tracker in trackers.items():
            tracker.update_state(terms[name])
        return terms["loss"]

    def loss_terms(self, y, y_pred):
        """The compiled loss's terms on one batch (a dict of scalars, as ``loss.terms``), the
        layers' weight regularisers added to the total ``"loss"``: what :meth:`compute_loss`
        trains on, and what a training loop of its own (tf.distribute) can train on."""
        # A loss that follows the training iteration (HashNet's β) reads the optimizer's count,
        # which the checkpoint restores: a resumed run goes on with the same schedule.
        step = (
            {"iterations": self.optimizer.iterations}
            if getattr(self.loss, "uses_iterations", False)
            else {}
        )
        terms = dict(self.loss.terms(y, y_pred, **step))
        if self.losses:  # weight regularisers of the layers
            terms["loss"] = terms["loss"] + ops.cast(ops.sum(self.losses), terms["loss"].dtype)
        return terms


def term_names(loss):
    """The names of the terms a loss reports (all but the total), in its order."""
    if not hasattr(loss, "terms"):
        return []
    if getattr(loss, "term_names", None):
        return list(loss.term_names)
    # A loss that reports terms without declaring them: run it once on a dummy batch.
    # Two items of one class and one of another, with random codes: every term is defined.
    names = loss.terms(
        ops.convert_to_tensor([0, 0, 1]), keras.random.uniform((3, 2), -1.0, 1.0, seed=0)
    )
    return [name for name in names if name != "loss"]


def build_model(
    backbone="resnet_small",
    bits=48,
    image_size=32,
    weights="none",
    head_learning_rate_multiplier=10.0,
    head="tanh",
    hidden=0,
    dropout=0.0,
):
    """Builds the hashing network for ``backbone`` with a ``bits``-bit hashing layer.

    Args:
        backbone: a name from ``tfhash.models.backbones.BACKBONES``.
        bits: K, the code length.
        image_size: side S of the square input images.
        weights: ``"none"``, ``"imagenet"`` or a local weights file for the backbone.
        head_learning_rate_multiplier: the hashing layer's learning rate relative to
            the backbone's (the LSDH paper: 10).
        head: the method's head (``tfhash.methods.Method.head``): ``"tanh"`` or
            ``"linear"`` (the hashing layer's activation) or ``"divide_encode"``
            (DNNH's :class:`~tfhash.models.layers.DivideAndEncode`); see
            :func:`tfhash.models.layers.hashing_head`.
        hidden, dropout: a ReLU layer of ``hidden`` units (and dropout) between the
            features and the hashing layer; 0: none (the LSDH paper's network).

    Returns:
        A :class:`HashingModel` with input ``images`` (float32 ``[B, S, S, 3]``,
        raw ``[0, 255]`` RGB) and output the relaxed codes ``h`` (float32 ``[B, K]``).
    """
    features = build_backbone(backbone, image_size, weights)
    images = keras.Input((image_size, image_size, 3), name="images")
    h = _head(features(images), bits, hidden, dropout, head, head_learning_rate_multiplier)
    return HashingModel(images, h, name=f"{backbone}_{bits}bits")


def _head(x, bits, hidden, dropout, head, learning_rate_multiplier):
    """Features → (Dense(hidden, ReLU) → Dropout, if hidden > 0) → the method's hashing head."""
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="hidden")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
    return hashing_head(head, bits, learning_rate_multiplier)(x)


def build_head(
    train_features,
    bits=48,
    hidden=0,
    head="tanh",
    head_learning_rate_multiplier=10.0,
    dropout=0.0,
    top=None,
):
    """The hashing head alone, from a backbone's features to relaxed codes: what a run with a
    frozen backbone trains, on features computed once (:mod:`tfhash.models.features`).

    ``features [B, d] → standardise → (Dense(hidden, ReLU) → Dropout, if hidden > 0)
    → the method's hashing head``, the standardisation with the mean and variance of
    ``train_features`` (float32 ``[n, d]``, the training images'), fixed: pooled features
    come on any scale (a random-initialised backbone's are ~0.05), and a head on raw ones
    can sit at h ≈ 0 for many steps. :func:`with_backbone` puts the backbone in front of it
    for export.

    With ``top`` (partial fine-tuning: the last blocks of the backbone, from
    :func:`tfhash.models.backbones.split_backbone`), the input is the frozen trunk's output
    (``train_features`` ``[n, h, w, c]``), ``top`` turns it into features and trains with
    the head; the standardisation uses the top's features of ``train_features`` before
    training (per feature, across images: it removes the component all images share, which
    dominates pooled features). It divides by their spread, which magnifies the gradients
    reaching the top: fine-tune it with a small learning rate and the head with a large
    multiplier (SGD 1e-4, head 100x; at 1e-3, with SGD or Adam, a small ResNet's last block
    collapsed to one code within ten steps).

    Returns:
        A :class:`HashingModel` with input ``features`` (float32 ``[B, d]``, or the trunk's
        maps with ``top``).
    """
    train_features = np.asarray(train_features, np.float32)
    inputs = keras.Input(train_features.shape[1:], name="features")
    x = inputs
    if top is not None:
        x = top(inputs)
        train_features = top.predict(train_features, batch_size=256, verbose=0)
    x = keras.layers.Normalization(
        mean=train_features.mean(0),
        name="standardise",
        variance=np.maximum(train_features.var(0), 1e-12),
    )(x)
    h = _head(x, bits, hidden, dropout, head, head_learning_rate_multiplier)
    return HashingModel(inputs, h, name=f"head_{bits}bits")


def with_backbone(head_model, backbone, image_size, weights, trainable_blocks=0):
    """The whole network for a head trained on frozen features: images in, the head's codes
    out, the backbone exactly the one the features came from (``weights`` loaded again).
    With ``trainable_blocks``, the head holds the fine-tuned top and only the frozen trunk
    (:func:`tfhash.models.backbones.split_backbone`) is put in front.

    Returns:
        A ``keras.Model`` from raw ``[0, 255]`` images ``[B, S, S, 3]`` to ``h``, as
        :func:`build_model` makes, ready for :func:`tfhash.serving.export_model`.
    """
    features = build_backbone(backbone, image_size, weights)
    if trainable_blocks:
        features = split_backbone(features, trainable_blocks)[0]
    features.trainable = False
    images = keras.Input((image_size, image_size, 3), name="images")
    h = head_model(features(images))
    return keras.Model(images, h, name=f"{backbone}_{head_model.name}")


def fine_tuning_model(
    head_model, backbone, image_size, weights, trainable_blocks=0, batch_norm="frozen"
):
    """The whole network for fine-tuning a pretrained backbone end to end on images:
    ``images → backbone (weights loaded) → head_model``, every layer trainable but the ones
    ``trainable_blocks`` and ``batch_norm`` freeze.

    ``head_model`` is :func:`build_head`'s head (standardised on the backbone's features
    of the training images, and possibly already trained on them: a warm-up), so the
    hashing layer starts on features of a known scale instead of the raw pooled ones.

    Args:
        head_model: a :class:`HashingModel` from features ``[B, d]`` to relaxed codes.
        backbone, image_size, weights: as :func:`build_model`.
        trainable_blocks: 0, the whole backbone trains; ``N``, only its last ``N`` blocks
            (:func:`tfhash.models.backbones.freeze_before_last_blocks`).
        batch_norm: ``"frozen"`` (the pretrained statistics, inference mode:
            :func:`tfhash.models.backbones.freeze_batch_norm`) or ``"train"`` (batch statistics).

    Returns:
        A :class:`HashingModel` from raw ``[0, 255]`` images ``[B, S, S, 3]`` to ``h``.
    """
    if batch_norm not in ("frozen", "train"):
        raise UsageError(f"unknown batch_norm {batch_norm!r}: choose frozen or train")
    features = build_backbone(backbone, image_size, weights)
    if trainable_blocks:
        freeze_before_last_blocks(features, trainable_blocks)
    if batch_norm == "frozen":
        freeze_batch_norm(features)
    images = keras.Input((image_size, image_size, 3), name="images")
    return HashingModel(images, head_model(features(images)), name=f"{backbone}_{head_model.name}")
