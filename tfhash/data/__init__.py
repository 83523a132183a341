"""Data: sources → protocol splits → balanced tf.data batches.

Example::

    from tfhash import data

    collection = data.load_collection("digits")              # or cifar10, folder, list, …
    split = data.make_split(collection, "digits", seed=0)     # train/val/query/database
    split.save("runs/x/split")
    train_ds = data.train_dataset(collection, split.train, image_size=32, batch_size=64,
                                  images_per_class=8)
    query_ds = data.eval_dataset(collection, split.query, image_size=32, batch_size=256)

See docs/data.md for the datasets, the list-file format and the protocols.
"""

from tfhash.data.collection import Collection
from tfhash.data.pipeline import decode_image, eval_dataset, train_dataset
from tfhash.data.protocols import PROTOCOLS, Protocol, Split, get_protocol, make_split
from tfhash.data.sources import DATASETS, NUSWIDE21_CONCEPTS, load_collection

__all__ = [
    "DATASETS",
    "NUSWIDE21_CONCEPTS",
    "PROTOCOLS",
    "Collection",
    "Protocol",
    "Split",
    "decode_image",
    "eval_dataset",
    "get_protocol",
    "load_collection",
    "make_split",
    "train_dataset",
]
