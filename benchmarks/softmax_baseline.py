"""How good an embedding the CIFAR-10 table's backbone can learn at the table's budget.

The same small ResNet, split, class-balanced batches, augmentation and SGD schedule as
``configs/cifar10_base.cfg``, trained with softmax cross-entropy instead of a hashing loss.
Prints the validation accuracy and the validation MAP of the pooled features (Euclidean;
the validation images ranked against the training images, as the training's ValidationMAP
ranks codes), which is comparable with the ``val_map`` the hashing runs log.

    python benchmarks/softmax_baseline.py --epochs=12
"""

import argparse
import time

import keras
import numpy as np

from tfhash import backbones, data, evaluation


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data/cifar10",
                        help="the CIFAR-10 image folder")
    parser.add_argument("--epochs", type=int, default=12, help="epochs (the table's budget: 12)")
    parser.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    return parser.parse_args()


def main():
    args = parse_args()
    collection = data.load_collection("folder", args.data_dir)
    split = data.make_split(collection, "cifar10", seed=args.seed, val_fraction=0.1)
    keras.utils.set_random_seed(args.seed)
    batch_size, images_per_class, image_size = 128, 16, 32
    train = data.train_dataset(collection, split.train, image_size, batch_size, images_per_class,
                               augment=True, seed=args.seed)
    backbone = backbones.build_backbone("resnet_small", image_size)
    model = keras.Model(backbone.input, keras.layers.Dense(len(collection.class_names))(backbone.output))
    steps = len(split.train) // batch_size
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=steps * args.epochs)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    model.fit(train, epochs=args.epochs, steps_per_epoch=steps, verbose=2)
    seconds = time.time() - start

    def features(indices):
        pooled, logits, labels = [], [], []
        for images, batch_labels in data.eval_dataset(collection, indices, image_size, 256):
            pooled.append(backbone(images, training=False).numpy())
            logits.append(model(images, training=False).numpy())
            labels.append(np.asarray(batch_labels))
        return np.concatenate(pooled), np.concatenate(logits), np.concatenate(labels)

    val_pooled, val_logits, val_labels = features(split.val)
    train_pooled, _, train_labels = features(split.train)
    accuracy = np.mean(val_logits.argmax(axis=1) == val_labels)
    report = evaluation.evaluate_codes(val_pooled, val_labels, train_pooled, train_labels,
                                       metrics=["map"], distance="euclidean")
    print(f"softmax, {args.epochs} epochs ({seconds:.0f} s of training): validation accuracy "
          f"{accuracy:.3f}, validation MAP of the pooled features {report['map']:.4f}")


if __name__ == "__main__":
    main()
