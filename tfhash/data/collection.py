"""A labelled image collection: the images of one dataset, their labels and stable ids."""

import dataclasses
import hashlib

import numpy as np

from tfhash.errors import UsageError


@dataclasses.dataclass(frozen=True, eq=False)
class Collection:
    """All images of one dataset with their labels, before any protocol split.

    The images live in exactly one of three forms:

    * ``pixels``: uint8 ``[N, H, W, 3]`` held in memory (scikit-learn digits,
      TFDS CIFAR); batches are gathered from it;
    * ``files``: absolute paths of JPEG/PNG/BMP/GIF files (image folders,
      list files); they are decoded in parallel on first use;
    * ``encoded``: the encoded image bytes held in memory (TFDS SUN397, whose
      images have different sizes); decoded like files.

    Labels follow the package contract: integer class ids ``int64 [N]`` for
    single-label data, multi-hot ``uint8 [N, C]`` for multi-label data. Two
    images are relevant to each other iff they share at least one label.

    Args:
        name: the dataset name (``"cifar10"``, ``"folder"``…), for messages.
        labels: ``int64 [N]`` class ids or ``uint8 [N, C]`` multi-hot rows.
        class_names: the ``C`` class names, in label order.
        item_ids: ``[N]`` strings that name each image stably: its path
            relative to the data directory, or ``"<dataset>/<index>"``.
        pixels, files, encoded: the images, exactly one of the three.

    Example:

    >>> c = Collection("toy", labels=np.array([0, 1]), class_names=["a", "b"],
    ...                item_ids=np.array(["toy/0", "toy/1"]),
    ...                pixels=np.zeros((2, 8, 8, 3), np.uint8))
    >>> len(c), c.multi_label
    (2, False)
    """

    name: str
    labels: np.ndarray
    class_names: list
    item_ids: np.ndarray
    pixels: np.ndarray | None = None
    files: np.ndarray | None = None
    encoded: np.ndarray | None = None

    def __post_init__(self):
        sources = [s for s in (self.pixels, self.files, self.encoded) if s is not None]
        if len(sources) != 1:
            raise UsageError(
                f"collection {self.name!r} needs exactly one of pixels, files or encoded images, "
                f"got {len(sources)}"
            )
        n_images = len(sources[0])
        labels = np.asarray(self.labels)
        if len(labels) != n_images:
            raise UsageError(
                f"collection {self.name!r} has {n_images} images but {len(labels)} labels; "
                "give one label (or label vector) per image"
            )
        if len(self.item_ids) != n_images:
            raise UsageError(
                f"collection {self.name!r} has {n_images} images but {len(self.item_ids)} item "
                "ids; give one id per image"
            )
        if n_images == 0:
            raise UsageError(
                f"collection {self.name!r} has no images; point `data_dir` at "
                "a directory or list file that holds some"
            )
        num_classes = len(self.class_names)
        if labels.ndim == 1:
            if not np.issubdtype(labels.dtype, np.integer):
                raise UsageError(
                    f"collection {self.name!r}: single-label labels must be "
                    f"integer class ids, got dtype {labels.dtype}"
                )
            if labels.min() < 0 or labels.max() >= num_classes:
                raise UsageError(
                    f"collection {self.name!r}: class ids must lie in [0, {num_classes}) for "
                    f"{num_classes} class names, got [{labels.min()}, {labels.max()}]"
                )
            labels = labels.astype(np.int64)
        elif labels.ndim == 2:
            if labels.shape[1] != num_classes:
                raise UsageError(
                    f"collection {self.name!r}: label vectors have {labels.shape[1]} entries "
                    f"but there are {num_classes} class names"
                )
            if not np.isin(labels, (0, 1)).all():
                raise UsageError(f"collection {self.name!r}: multi-hot labels must be 0 or 1")
            labels = labels.astype(np.uint8)
        else:
            raise UsageError(
                f"collection {self.name!r}: labels must be [N] class ids or "
                f"[N, C] multi-hot rows, got shape {labels.shape}"
            )
        if self.pixels is not None:
            pixels = np.asarray(self.pixels)
            if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
                raise UsageError(
                    f"collection {self.name!r}: pixels must be uint8 [N, H, W, 3], "
                    f"got {pixels.dtype} {pixels.shape}"
                )
            object.__setattr__(self, "pixels", pixels)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])
        object.__setattr__(self, "item_ids", np.asarray(self.item_ids, dtype=str))

    def __len__(self):
        return len(self.labels)

    @property
    def multi_label(self):
        """True when labels are multi-hot rows ``[N, C]``."""
        return self.labels.ndim == 2

    def membership(self, indices=None):
        """bool ``[n, C]``: entry ``(i, c)`` is True iff image ``indices[i]`` carries label c."""
        labels = self.labels if indices is None else self.labels[indices]
        if self.multi_label:
            return labels.astype(bool)
        return labels[:, None] == np.arange(len(self.class_names))

    def fingerprint(self):
        """A short hash of item ids and labels: a saved split checks it was made for these."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.item_ids.tolist()).encode("utf-8"))
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()[:16]
