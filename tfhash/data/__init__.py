"""Data: sources → protocol splits → balanced tf.data batches.

Example::

    from tfhash import data

    collection = data.load_collection("digits")              # or cifar10, folder, list, …
    split = data.make_split(collection, "digits", seed=0)     # train/val/query/database
    split.save("runs/x/split")
    train_ds = data.train_dataset(collection, split.train, image_size=32, batch_size=64,
                                  images_per_class=8)
    query_ds = data.eval_dataset(collection, split.query, image_size=32, batch_size=256)

Importing ``tfhash.data`` does not import TensorFlow; the pipelines (``train_dataset``,
``eval_dataset``, ``decode_image``) do, on first use. See docs/data.md for the datasets, the
list-file format and the protocols.
"""

from tfhash.data.collection import Collection
from tfhash.data.protocols import PROTOCOLS, Protocol, get_protocol
from tfhash.data.sources import (
    AUGMENTATIONS,
    DATASETS,
    NUSWIDE21_CONCEPTS,
    check_source,
    default_augmentation,
    load_collection,
)
from tfhash.data.splits import Split, keep_labelled, make_split

# The tf.data pipelines import TensorFlow; the rest of the package does not, so a command can
# check its data settings before paying for TensorFlow. They load on first use.
_PIPELINE = (
    "decode_image",
    "eval_dataset",
    "feature_eval_dataset",
    "feature_semi_supervised_dataset",
    "feature_train_dataset",
    "semi_supervised_dataset",
    "train_dataset",
)


def __getattr__(name):
    if name in _PIPELINE:
        from tfhash.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tfhash.data' has no attribute {name!r}")


__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "NUSWIDE21_CONCEPTS",
    "PROTOCOLS",
    "Collection",
    "Protocol",
    "Split",
    "check_source",
    "decode_image",
    "default_augmentation",
    "eval_dataset",
    "get_protocol",
    "keep_labelled",
    "load_collection",
    "make_split",
    "semi_supervised_dataset",
    "train_dataset",
]
