"""How good an embedding the CIFAR-10 table's backbone can learn at the table's budget.

The training's own flags and flagfile set the backbone, split, class-balanced batches,
augmentation and SGD schedule, so the comparison cannot drift from the hashing runs; the
backbone is trained with softmax cross-entropy instead of a hashing loss (the hashing flags
--method, --bits, ... are ignored). Prints the validation accuracy and the validation MAP of
the pooled features (Euclidean; the validation images ranked against the training images,
as the training's ValidationMAP ranks codes), comparable with the ``val_map`` the hashing
runs log.

    python benchmarks/softmax_baseline.py --flagfile=configs/cifar10_base.cfg \\
        --dataset=folder --data_dir=../shared/data/cifar10 --epochs=12
"""

import time

from tfhash import cli
from tfhash import train as training


def main(argv):
    import keras
    import numpy as np

    from tfhash import data, evaluation
    from tfhash.models import backbones

    config = training.config_from_flags()
    collection = data.load_collection(config.dataset, config.data_dir)
    split = data.make_split(
        collection, config.protocol, seed=config.seed, val_fraction=config.val_fraction
    )
    keras.utils.set_random_seed(config.seed)
    train = data.train_dataset(
        collection,
        split.train,
        config.image_size,
        config.batch_size,
        config.images_per_class,
        augment=config.augmentation(),
        seed=config.seed,
    )
    backbone = backbones.build_backbone(config.backbone, config.image_size, config.weights)
    logits = keras.layers.Dense(len(collection.class_names))(backbone.output)
    model = keras.Model(backbone.input, logits)
    steps = config.steps_per_epoch or max(1, len(split.train) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps * config.epochs
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.time()
    model.fit(train, epochs=config.epochs, steps_per_epoch=steps, verbose=2)
    seconds = time.time() - start

    # One forward pass per batch gives both the pooled features and the logits.
    features_and_logits = keras.Model(backbone.input, [backbone.output, logits])

    def encode(indices):
        pooled, scores, labels = [], [], []
        for images, batch_labels in data.eval_dataset(
            collection, indices, config.image_size, config.eval_batch_size
        ):
            features, batch_scores = features_and_logits(images, training=False)
            pooled.append(np.asarray(features))
            scores.append(np.asarray(batch_scores))
            labels.append(np.asarray(batch_labels))
        return np.concatenate(pooled), np.concatenate(scores), np.concatenate(labels)

    val_pooled, val_scores, val_labels = encode(split.val)
    train_pooled, _, train_labels = encode(split.train)
    accuracy = np.mean(val_scores.argmax(axis=1) == val_labels)
    report = evaluation.evaluate_codes(
        val_pooled, val_labels, train_pooled, train_labels, metrics=["map"], distance="euclidean"
    )
    print(
        f"softmax, {config.epochs} epochs ({seconds:.0f} s of training): validation accuracy "
        f"{accuracy:.3f}, validation MAP of the pooled features {report['map']:.4f}"
    )


if __name__ == "__main__":
    cli.run(main, training.define_flags)
