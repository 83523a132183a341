"""Training callbacks: validation MAP, the best and latest checkpoints, the history, a NaN guard.

Their order in a run (:mod:`tfhash.training.run`) is what makes a run resumable at any moment: at the
end of an epoch, validation MAP is computed, then the best checkpoint, the history row and the
TensorBoard events are written, and last :class:`LatestCheckpoint` saves the state and records
the epoch as done. A run killed anywhere before that last step repeats the whole epoch when it
resumes, so no epoch's row or validation MAP is lost.
"""

import csv
import json
import math
import os
import zipfile

import keras
import numpy as np

from tfhash import evaluation
from tfhash.models.layers import sign
from tfhash.training import run_dir


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


def _write_json(path, value):
    """Writes ``value`` to ``path`` atomically (a reader sees the old file or the new one)."""
    run_dir.write_json(path, value)


def save_model(model, path, record=None):
    """``model.save(path)`` atomically: a kill mid-save leaves the previous file intact, a
    failed save (a full disk) leaves no partial file. ``record`` (a dict) is written inside the
    archive as :data:`tfhash.training.run_dir.CHECKPOINT_RECORD` before the rename, so it changes with
    the weights it describes."""
    with run_dir.atomic_path(path, path[: -len(".keras")] + ".partial.keras") as partial:
        model.save(partial)
        if record is not None:
            with zipfile.ZipFile(partial, "a") as archive:
                archive.writestr(run_dir.CHECKPOINT_RECORD, json.dumps(record))
        with open(partial, "rb") as f:
            os.fsync(f.fileno())


def random_state(model):
    """The seed generators whose state a resumed run must restore to draw what the
    uninterrupted run draws: the compiled loss's (random mining) and the model's layers'
    (dropout), in a fixed order. Keras's own checkpoint saves neither."""
    generators = [getattr(model, "loss", None)]
    generators = [g.seed_generator for g in generators if hasattr(g, "seed_generator")]
    for layer in model._flatten_layers(include_self=False):
        generators += list(getattr(layer, "_seed_generators", []))
    return [g for g in generators if isinstance(g, keras.random.SeedGenerator)]


def restore_random_state(model, record):
    """Sets the seed generators of ``model`` (:func:`random_state`) to the state saved in a
    checkpoint's ``record``; a record without one (an older checkpoint) changes nothing."""
    saved = (record or {}).get("random_state")
    generators = random_state(model)
    if saved is None:
        return
    if len(saved) != len(generators):
        raise ValueError(
            f"the checkpoint holds {len(saved)} random states, the model and loss "
            f"have {len(generators)}"
        )
    for generator, state in zip(generators, saved):
        generator.state.assign(
            np.asarray(state, keras.backend.standardize_dtype(generator.state.dtype))
        )


class LatestCheckpoint(keras.callbacks.Callback):
    """Saves the model with its optimizer state after every epoch: the state a run resumes from.

    Inside the checkpoint, :data:`tfhash.training.run_dir.CHECKPOINT_RECORD` holds ``{"epoch": n,
    "random_state": …}``: the number of completed epochs and the state of the seed generators
    (:func:`random_state`), written before the file is renamed into place, so the weights and
    the epoch they belong to change in one rename. ``<path>.json`` then repeats the epoch for
    people (:meth:`tfhash.training.run_dir.RunDir.open` brings it in line if a kill came between). It is
    the last callback of a run, so an epoch counts as completed only once everything else of it
    is written; an epoch stopped before its last step (``model.stop_training``) is not saved.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps")
        if steps and self._steps < steps:  # stopped inside the epoch: not a completed one
            return
        state = [keras.ops.convert_to_numpy(g.state).tolist() for g in random_state(self.model)]
        save_model(self.model, self.path, {"epoch": epoch + 1, "random_state": state})
        _write_json(self.path + ".json", {"epoch": epoch + 1})


class HistoryCSV(keras.callbacks.Callback):
    """Appends one row per epoch to a CSV file with fixed columns: ``epoch`` (counted from 0,
    as Keras does), then ``columns``; a value not computed in an epoch (``val_map`` between
    validations) is left empty.

    Unlike ``keras.callbacks.CSVLogger``, which fixes its columns from the first epoch's logs,
    every column is there from the first row, so ``val_map`` is never dropped.
    """

    def __init__(self, path, columns):
        super().__init__()
        self.path = path
        self.columns = ["epoch", *columns]

    @staticmethod
    def keep_epochs_before(path, epoch):
        """Drops the rows of epochs ``>= epoch`` (those a resumed run repeats)."""
        if not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epoch]
        _write_rows(path, kept)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {}, epoch=epoch)
        rows = [self.columns]
        if os.path.isfile(self.path):
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f)) or rows
        rows.append(["" if logs.get(c) is None else _csv_value(logs[c]) for c in self.columns])
        _write_rows(self.path, rows)  # the whole file again: a kill never leaves half a row


def _write_rows(path, rows):
    with run_dir.atomic_path(path) as partial, open(partial, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _csv_value(value):
    return value if isinstance(value, int) else f"{float(value):.6g}"


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
        record = run_dir.read_json(
            self.record_path,
            "remove it and the best checkpoint, and the next validation writes them again",
        )
        return record[self.monitor]

    def on_train_begin(self, logs=None):
        self.best()  # a damaged record is refused before the first epoch, not after it

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value > self.best():
            return
        save_model(self.model, self.path)
        _write_json(self.record_path, {"epoch": epoch + 1, self.monitor: float(value)})


class NaNLossError(RuntimeError):
    """Training produced a non-finite loss."""


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, before anything saves it.

    Keras's ``TerminateOnNaN`` lets the epoch end, so end-of-epoch checkpoints
    would store the broken weights. This raises instead: ``fit`` stops at once
    and the checkpoints (the latest one is the state a run resumes from) stay
    as they were.
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
