r"""One training run, as a few named stages: :func:`train`.

    open the run directory ─► data (collection, split) ─► loss (the method's prepare step)
      ─► model and batches ─► fit (validation MAP, checkpoints, resume) ─► report

Each stage reads the method from :mod:`tfhash.methods` (its loss, head, sampler and prepare
step) and never branches on its name; a shallow method is fitted by
:func:`tfhash.shallow.run.train_shallow`. How a run directory is resumed, extended or refused
is in :mod:`tfhash.training.run_dir`.

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

from tfhash import data, evaluation, methods
from tfhash.config import TrainConfig, multi_worker_chief
from tfhash.errors import UsageError
from tfhash.tf_import import import_tensorflow
from tfhash.training.run_dir import RunDir, write_json


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
    model, train_ds, ordered, best = _model(
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
    return _report(config, model, run, best, query_ds, database_ds, split, train_seconds)


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


def _model(
    config, method, strategy, collection, split, out, chief, steps, epochs_done, loss, targets
):
    """Stage 4: the network and its batches, on images or on cached backbone features
    (``freeze_backbone``); ``(model, training batches, ordered(indices) → batches in order,
    path of the best checkpoint)``."""
    import numpy as np

    from tfhash import models
    from tfhash.models import features

    semi_supervised = method.sampler == "semi_supervised"
    start_step = epochs_done * steps
    cache = (chief and config.feature_cache) or os.path.join(out.path, "features")
    if config.freeze_backbone:
        # The backbone's features of every image (or its frozen trunk's outputs, when its last
        # blocks train), computed once and cached across runs; the head (and those blocks)
        # train on them. The exported model puts the backbone (the trunk) back in front.
        every = np.unique(np.concatenate([split.train, split.val, split.query, split.database]))
        table = features.backbone_features(
            collection,
            every,
            config.backbone,
            config.weights,
            config.image_size,
            cache,
            batch_size=config.eval_batch_size,
            verbose=config.verbose,
            trainable_blocks=config.trainable_blocks,
        )

        def rows(indices):
            return table[np.searchsorted(every, indices)]

        if semi_supervised:
            train_ds = data.feature_semi_supervised_dataset(
                collection,
                split.train,
                split.unlabeled,
                rows(split.train),
                rows(split.unlabeled),
                config.batch_size,
                config.images_per_class,
                config.labelled_ratio,
                seed=config.seed,
                start_step=start_step,
            )
        else:
            train_ds = data.feature_train_dataset(
                collection,
                split.train,
                rows(split.train),
                config.batch_size,
                config.images_per_class,
                seed=config.seed,
                start_step=start_step,
                targets=targets,
            )

        def ordered(indices):
            return data.feature_eval_dataset(
                collection, indices, rows(indices), config.eval_batch_size
            )

        top = None
        if config.trainable_blocks:
            from tfhash.models.backbones import build_backbone, split_backbone

            top = split_backbone(
                build_backbone(config.backbone, config.image_size, config.weights),
                config.trainable_blocks,
            )[1]
        with strategy.scope():
            model = models.build_head(
                rows(split.train),
                config.bits,
                config.head_hidden,
                method.head,
                config.head_lr_multiplier,
                config.head_dropout,
                top=top,
            )
        return model, train_ds, ordered, out.best_head

    if semi_supervised:
        train_ds = data.semi_supervised_dataset(
            collection,
            split.train,
            split.unlabeled,
            config.image_size,
            config.batch_size,
            config.images_per_class,
            config.labelled_ratio,
            augment=config.augmentation(),
            seed=config.seed,
            start_step=start_step,
        )
    else:
        train_ds = data.train_dataset(
            collection,
            split.train,
            config.image_size,
            config.batch_size,
            config.images_per_class,
            augment=config.augmentation(),
            seed=config.seed,
            start_step=start_step,
            targets=targets,
        )

    def ordered(indices):
        return data.eval_dataset(collection, indices, config.image_size, config.eval_batch_size)

    if config.weights != "none":  # a pretrained backbone fine-tuned end to end
        model = _fine_tuning_model(
            config,
            method,
            strategy,
            collection,
            split,
            cache,
            steps,
            warm_up=not epochs_done,
            loss=loss,
            targets=targets,
        )
    else:
        with strategy.scope():
            model = models.build_model(
                config.backbone,
                config.bits,
                config.image_size,
                config.weights,
                head=method.head,
                head_learning_rate_multiplier=config.head_lr_multiplier,
                hidden=config.head_hidden,
                dropout=config.head_dropout,
            )
    return model, train_ds, ordered, out.best


def _fine_tuning_model(
    config, method, strategy, collection, split, cache_dir, steps, warm_up, loss, targets
):
    """The network that fine-tunes a pretrained backbone end to end
    (:func:`tfhash.models.fine_tuning_model`): its head standardised on the backbone's
    features of the training images (computed once, cached), and at the start of a run
    trained alone on them for ``head_warmup_epochs`` first."""
    import keras

    from tfhash import models
    from tfhash.models import features
    from tfhash.training import trainer

    train_features = features.backbone_features(
        collection,
        split.train,
        config.backbone,
        config.weights,
        config.image_size,
        cache_dir,
        batch_size=config.eval_batch_size,
        verbose=config.verbose,
    )
    with strategy.scope():
        head = models.build_head(
            train_features,
            config.bits,
            config.head_hidden,
            method.head,
            config.head_lr_multiplier,
            config.head_dropout,
        )
    if warm_up and config.head_warmup_epochs:
        with strategy.scope():
            head.compile(
                optimizer=keras.optimizers.AdamW(
                    config.head_warmup_learning_rate, weight_decay=config.weight_decay
                ),
                loss=loss,
            )
        print(f"head warm-up: {config.head_warmup_epochs} epochs on the cached features")
        trainer.fit(
            head,
            data.feature_train_dataset(
                collection,
                split.train,
                train_features,
                config.batch_size,
                config.images_per_class,
                seed=config.seed,
                targets=targets,
            ),
            strategy=strategy,
            epochs=config.head_warmup_epochs,
            steps_per_epoch=steps,
            verbose=config.verbose,
        )
    batch_norm = "frozen" if config.batch_norm == "auto" else config.batch_norm
    with strategy.scope():
        return models.fine_tuning_model(
            head,
            config.backbone,
            config.image_size,
            config.weights,
            config.trainable_blocks,
            batch_norm,
        )


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


def _report(config, model, run, best, query_ds, database_ds, split, train_seconds):
    """Stage 6: the best checkpoint (by validation MAP) encodes queries and database; their
    codes and the metrics are written, ``metrics.json`` last (its presence: finished)."""
    import keras
    import numpy as np

    from tfhash import models
    from tfhash.training import callbacks

    if os.path.isfile(best):
        model = keras.saving.load_model(best)
    query_codes, query_h, query_labels = callbacks.encode(model, query_ds)
    db_codes, db_h, db_labels = callbacks.encode(model, database_ds)
    if config.freeze_backbone:  # what export takes: images in, the same codes out
        callbacks.save_model(
            models.with_backbone(
                model, config.backbone, config.image_size, config.weights, config.trainable_blocks
            ),
            run.best,
        )
    os.makedirs(run.codes, exist_ok=True)
    for name, array in [
        ("query_codes", query_codes),
        ("query_labels", query_labels),
        ("database_codes", db_codes),
        ("database_labels", db_labels),
        ("query_embedding", query_h),
        ("database_embedding", db_h),
    ]:
        np.save(os.path.join(run.codes, name + ".npy"), array)

    metrics = evaluation.evaluate_codes(
        query_codes,
        query_labels,
        db_codes,
        db_labels,
        metrics=evaluation.default_metrics(db_labels),
        top_k=split.protocol.map_top_k,
    )
    metrics["run"] = {
        "dataset": config.dataset,
        "protocol": config.protocol,
        "method": config.method,
        "bits": config.bits,
        "backbone": config.backbone,
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 1),
    }
    write_json(run.metrics, metrics, indent=2)  # atomically: its presence means finished
    print_summary(metrics)
    print(f"metrics: {run.metrics}; codes: {run.codes}")
    return metrics


def learning_rate_schedule(peak, steps, warmup_steps=0):
    """The learning rate over ``steps`` training steps: a linear rise from 0 to ``peak`` over
    the first ``warmup_steps``, then a cosine decay to 0 at ``steps``."""
    import keras

    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(peak, steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup_steps, warmup_target=peak, warmup_steps=warmup_steps
    )


def print_summary(metrics):
    print("query set: " + evaluation.summary_line(metrics))
