"""Training callbacks: validation MAP, a best checkpoint that survives resumes, a NaN guard."""

import json
import math
import os

import keras
import numpy as np

from tfhash import evaluation
from tfhash.layers import sign


def encode(model, dataset):
    """Runs ``model`` over a finite ``(images, labels)`` dataset.

    Returns:
        ``(codes, relaxed, labels)``: int8 ±1 codes ``sign(h)``, the float32
        relaxed codes ``h``, and the labels, as NumPy arrays in dataset order.
    """
    relaxed, labels = [], []
    for images, batch_labels in dataset:
        relaxed.append(keras.ops.convert_to_numpy(model(images, training=False)))
        labels.append(np.asarray(batch_labels))
    h = np.concatenate(relaxed).astype(np.float32)
    return keras.ops.convert_to_numpy(sign(h, "int8")), h, np.concatenate(labels)


class ValidationMAP(keras.callbacks.Callback):
    """Adds ``val_map`` to the epoch logs every ``every_n_epochs`` epochs.

    Validation images are the queries; the training images are the database
    they are ranked against. Both come from the training part of the split,
    never the query set, which only the final report uses. The MAP is
    :func:`tfhash.evaluation.mean_average_precision` on the sign codes.
    """

    def __init__(self, val_dataset, database_dataset, every_n_epochs=1, top_k=None):
        super().__init__()
        self.val_dataset = val_dataset
        self.database_dataset = database_dataset
        self.every_n_epochs = every_n_epochs
        self.top_k = top_k

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs")
        if logs is None or ((epoch + 1) % self.every_n_epochs and not last):
            return
        val_codes, _, val_labels = encode(self.model, self.val_dataset)
        db_codes, _, db_labels = encode(self.model, self.database_dataset)
        top_k = None if self.top_k is None else min(self.top_k, len(db_codes))
        logs["val_map"] = evaluation.mean_average_precision(
            val_codes, val_labels, db_codes, db_labels, top_k=top_k
        )


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` whenever ``val_map`` improves, across resumes.

    Keras's ``ModelCheckpoint`` forgets the best value when a run restarts, so
    the first evaluation after a resume would overwrite a better checkpoint.
    This callback keeps ``{"epoch", "val_map"}`` in ``<path>.json`` beside it.
    """

    def __init__(self, path, monitor="val_map"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.record_path = path + ".json"

    def best(self):
        if not os.path.exists(self.record_path):
            return -math.inf
        with open(self.record_path) as f:
            return json.load(f)[self.monitor]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value > self.best():
            return
        self.model.save(self.path)
        with open(self.record_path, "w") as f:
            json.dump({"epoch": epoch + 1, self.monitor: float(value)}, f)


class NaNLossError(RuntimeError):
    """Training produced a non-finite loss."""


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, before anything saves it.

    Keras's ``TerminateOnNaN`` lets the epoch end, so end-of-epoch checkpoints
    would store the broken weights. This raises instead: ``fit`` stops at once,
    ``BackupAndRestore`` keeps its last good state and the checkpoints stay as
    they were.
    """

    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise NaNLossError(
                f"the loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}"
            )
