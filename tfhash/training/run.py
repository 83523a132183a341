r"""One training run, as a few named stages: :func:`train`.

    open the run directory ─► data (collection, split) ─► loss (the method's prepare step)
      ─► model and batches ─► fit (validation MAP, checkpoints, resume) ─► report

Each stage reads the method from :mod:`tfhash.methods` (its loss, head, sampler and prepare
step) and never branches on its name; a shallow method is fitted by
:func:`tfhash.shallow.run.train_shallow`. How a run directory is resumed, extended or refused
is in :mod:`tfhash.training.run_dir`; the network and its batches are built in
:mod:`tfhash.training.network`, and the report is written by :mod:`tfhash.training.report`.

The training loop (:mod:`tfhash.training.trainer`) is the same on one device and under the
``mirrored`` or ``multi_worker`` strategy: a step on any number of replicas is the step of one
device on the same global batch. On a multi-worker cluster every worker runs the same command
(with its own ``TF_CONFIG``); the chief writes the run directory, the others resume from it and
write only in a temporary directory.
"""

import dataclasses
import json
import os
import tempfile
import time
import zipfile

from tfhash import data, methods
from tfhash.config import LOSS_ARGUMENTS, TrainConfig, multi_worker_chief
from tfhash.errors import UsageError
from tfhash.tf_import import import_tensorflow
from tfhash.training.network import model_and_batches
from tfhash.training.report import print_summary, write_report
from tfhash.training.run_dir import RunDir


class TrainingStopped(RuntimeError):
    """Training could not go on (a NaN loss); the run directory can be resumed."""


def train(config):
    """Trains, evaluates and writes a run directory for ``config`` (a :class:`TrainConfig`);
    returns the metrics dict (``None`` on a multi-worker cluster's other workers: the chief
    writes the report).

    The run directory is locked while this runs (:meth:`tfhash.training.run_dir.RunDir.lock`):
    a second command on it is refused, naming this one."""
    config.validate()
    if config.strategy == "multi_worker" and not multi_worker_chief():
        return _train(config)  # the chief holds the lock; the others write elsewhere
    lock = RunDir(config.run_dir).lock()
    try:
        return _train(config)
    finally:
        lock.release()


def _train(config):
    method = methods.get(config.method)
    if method.kind == "shallow":
        from tfhash.shallow.run import train_shallow

        return train_shallow(config, config.features, config.shallow_params)
    run = RunDir(config.run_dir)
    chief = config.strategy != "multi_worker" or multi_worker_chief()
    config = _with_the_runs_loss_arguments(config, run)
    epochs_done, finished = _open(config, run, chief)
    if finished:
        with open(run.metrics) as f:
            metrics = json.load(f)
        print(
            f"{config.run_dir} is already finished ({epochs_done} epochs); its metrics are in "
            f"{run.metrics} (a larger --epochs extends it)"
        )
        print_summary(metrics)
        return metrics

    import_tensorflow()  # heavy imports after the cheap checks above
    import keras

    from tfhash.training import trainer

    strategy = trainer.make_strategy(config.strategy)  # before TensorFlow runs any op
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(
            f"batch_size={config.batch_size} does not split into {replicas} "
            f"replicas: pass a multiple of {replicas}"
        )
    # What this process writes: the run directory, or on a worker other than the chief a
    # temporary directory (Keras's convention), removed when the process ends.
    out = run
    if not chief:
        scratch = tempfile.TemporaryDirectory(prefix="tfhash-worker-")
        out = RunDir(scratch.name)
        os.makedirs(out.checkpoints)

    collection, split = _data(config, method, run, out, epochs_done)
    loss, targets = _loss(config, method, collection, split, run, out, epochs_done, strategy)
    print(
        f"{config.dataset}: {len(collection)} images; protocol {config.protocol}: "
        f"{len(split.train)} train, {len(split.val)} validation, {len(split.query)} queries, "
        f"{len(split.database)} database"
    )

    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(
        "float32" if config.mixed_precision == "none" else config.mixed_precision
    )
    images = len(split.train) + (len(split.unlabeled) if method.sampler == "semi_supervised" else 0)
    steps = config.steps_per_epoch or max(1, images // config.batch_size)
    model, train_ds, ordered, best = model_and_batches(
        config, method, strategy, collection, split, out, chief, steps, epochs_done, loss, targets
    )
    # Every image is decoded before the first epoch, so an unreadable one stops the start
    # (which a corrected command then replaces), not the final report.
    query_ds, database_ds = ordered(split.query), ordered(split.report_database)
    _compile(config, model, loss, strategy, run, out, steps, epochs_done)
    train_seconds = _fit(
        config,
        model,
        train_ds,
        ordered,
        split,
        strategy,
        run,
        out,
        best,
        steps,
        epochs_done,
        chief,
        loss,
    )
    if not chief:
        print(f"worker done after {config.epochs} epochs; the chief writes {config.run_dir}")
        return None
    return write_report(config, model, run, best, query_ds, database_ds, split, train_seconds)


def _with_the_runs_loss_arguments(config, run):
    """``config`` with each loss argument it leaves unset taken from the run directory's
    settings, where the run spelled it out: a run made with ``margin=24`` (the per-length configs
    before ``margin=None`` meant K/2) resumes under a config that leaves the margin to the
    loss, instead of being refused as a changed setting."""
    if not os.path.isfile(run.flags):
        return config
    saved = run.saved_settings()
    adopted = {
        k: saved[k]
        for k in LOSS_ARGUMENTS
        if getattr(config, k) is None and saved.get(k) is not None
    }
    return dataclasses.replace(config, **adopted) if adopted else config


def _open(config, run, chief):
    """Stage 1: the run directory opened for ``config`` (:meth:`RunDir.open`): ``(epochs
    done, finished)``."""
    if not chief:  # another worker: reads the chief's run directory (none is training yet)
        epochs_done = run.completed_epochs()
        return epochs_done, os.path.isfile(run.metrics) and config.epochs <= epochs_done
    return run.open(
        dataclasses.asdict(config),
        defaults=TrainConfig.defaults(),
        resumable=TrainConfig.resumable(),
    )


def _data(config, method, run, out, epochs_done):
    """Stage 2: the collection and its protocol split (made once, reused on resume); the
    settings written beside them."""
    collection = data.load_collection(config.dataset, config.data_dir)
    if epochs_done:
        split = data.Split.load(run.split, collection)
    else:
        split = data.make_split(
            collection, config.protocol, seed=config.seed, val_fraction=config.val_fraction
        )
        kept = config.labelled_per_class_for(method)
        if kept:
            split = data.keep_labelled(collection, split, kept, config.seed)
        split.save(out.split)
    out.write_settings(dataclasses.asdict(config))
    return collection, split


def _loss(config, method, collection, split, run, out, epochs_done, strategy):
    """Stage 3: the method's loss, after its prepare step (:attr:`Method.prepare`, which keeps
    its result in the run directory); ``(loss, per-image training targets or None)``.

    A resumed run keeps the loss it was trained with: the arguments its settings left unset
    are read from its latest checkpoint, so a default changed since (e.g. a margin) does not
    change a run half-way."""
    from tfhash import losses

    kwargs = config.loss_kwargs()
    if "seed" in losses.arguments(config.method):
        kwargs["seed"] = config.seed
    if epochs_done:
        saved = saved_loss_config(run.latest)
        kwargs = {
            **{
                k: v
                for k, v in saved.items()
                if k in losses.arguments(config.method) and k not in ("name", "reduction")
            },
            **kwargs,
        }
    targets = None  # per-image targets a method's batches carry instead of labels
    if method.prepare:  # e.g. a two-stage method's first stage, saved in the run directory
        prepared = method.prepare_function()(config, collection, split, out.path)
        targets = prepared.pop("train_targets", None)
        kwargs.update(prepared)
    with strategy.scope():  # its random mining's seed state mirrored: the same tuples everywhere
        return losses.get(config.method, **kwargs), targets


def saved_loss_config(checkpoint):
    """The constructor arguments of the loss ``checkpoint`` (a ``.keras`` file) was compiled
    with, read from its ``config.json``; ``{}`` where it records none."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            config = json.loads(archive.read("config.json"))
        loss = (config.get("compile_config") or {}).get("loss")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    return dict(loss.get("config") or {}) if isinstance(loss, dict) else {}


def _compile(config, model, loss, strategy, run, out, steps, epochs_done):
    """Stage 5a: the optimizer and loss; a resumed run continues from its latest checkpoint,
    optimizer state included. The model, the optimizer and the loss hold one copy of their
    variables per replica."""
    import keras

    from tfhash.training import callbacks

    with strategy.scope():
        schedule = learning_rate_schedule(
            config.learning_rate, steps * config.epochs, steps * config.lr_warmup_epochs
        )
        if config.optimizer == "adam":
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
        else:
            optimizer = keras.optimizers.SGD(
                schedule, momentum=config.momentum, weight_decay=config.weight_decay
            )
        model.compile(optimizer=optimizer, loss=loss)
        if epochs_done:
            model.optimizer.build(model.trainable_variables)
            model.load_weights(run.latest)
            callbacks.restore_random_state(model, run.checkpoint_record())  # e.g. mining
            callbacks.HistoryCSV.keep_epochs_before(out.history, epochs_done)
            print(f"resuming {config.run_dir} after epoch {epochs_done} of {config.epochs}")


def _fit(
    config,
    model,
    train_ds,
    ordered,
    split,
    strategy,
    run,
    out,
    best,
    steps,
    epochs_done,
    chief,
    loss,
):
    """Stage 5b: the epochs, with validation MAP, the best and latest checkpoints and the
    history; returns the seconds trained. A NaN loss stops with the last epoch kept."""
    import keras

    from tfhash import models
    from tfhash.training import callbacks, trainer

    fit_callbacks = [  # in this order: see tfhash.training.callbacks
        callbacks.StopOnNaN(),
        callbacks.ValidationMAP(
            ordered(split.val),
            ordered(split.train),
            every_n_epochs=config.eval_every,
            top_k=split.protocol.map_top_k,
        ),
        callbacks.BestCheckpoint(best),
        callbacks.HistoryCSV(out.history, ["loss", *models.term_names(loss), "val_map"]),
        keras.callbacks.TensorBoard(out.logs),
        callbacks.LatestCheckpoint(out.latest),
    ]
    start = time.time()
    try:
        trainer.fit(
            model,
            train_ds,
            strategy=strategy,
            epochs=config.epochs,
            initial_epoch=epochs_done,
            steps_per_epoch=steps,
            callbacks=fit_callbacks,
            verbose=config.verbose if chief else 0,
        )
    except callbacks.NaNLossError as e:
        kept = run.completed_epochs()
        resume = f"resumes after epoch {kept}" if kept else "starts again (no epoch had completed)"
        raise TrainingStopped(
            f"{e}; training stopped with the state of the last completed epoch kept: rerun with "
            f"a lower `learning_rate` (e.g. learning_rate="
            f"{min(config.learning_rate / 10, TrainConfig.learning_rate):g}) and "
            f"it {resume}"
        ) from e
    return time.time() - start


def learning_rate_schedule(peak, steps, warmup_steps=0):
    """The learning rate over ``steps`` training steps: a linear rise from 0 to ``peak`` over
    the first ``warmup_steps``, then a cosine decay to 0 at ``steps``."""
    import keras

    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(peak, steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup_steps, warmup_target=peak, warmup_steps=warmup_steps
    )
