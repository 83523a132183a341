"""Stage 4 of a run (:mod:`tfhash.training.run`): the network and the batches it trains and is
evaluated on, chosen by two settings and never by the method's name:

* ``freeze_backbone``: the backbone's features of every image, computed once and cached, feed a
  head (and the backbone's last ``trainable_blocks``); the exported model puts the backbone back
  in front;
* ``weights`` other than ``none``: a pretrained backbone fine-tuned end to end, behind a head
  standardised (and at the start of a run warmed up) on its cached features;
* otherwise: a network trained from scratch on images.
"""

import os

from tfhash import data


def model_and_batches(
    config, method, strategy, collection, split, out, chief, steps, epochs_done, loss, targets
):
    """The network and its batches, on images or on cached backbone features
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
