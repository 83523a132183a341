"""What a trained model becomes for serving: the versioned SavedModel (:mod:`.savedmodel`), and
images run through it into packed codes (:mod:`.encoding`: a collection for ``tfhash.encode``,
query images for ``tfhash.search``; TensorFlow is imported only when they run)."""

from tfhash.serving.savedmodel import (
    BYTES_SIGNATURE,
    IMAGES_SIGNATURE,
    MIN_IMAGE_SIDE,
    export_model,
    image_size_of,
    new_version_dir,
    next_version,
    pack_codes,
    resolve_version_dir,
    serving_outputs,
    versions,
)

__all__ = [
    "BYTES_SIGNATURE",
    "IMAGES_SIGNATURE",
    "MIN_IMAGE_SIDE",
    "export_model",
    "image_size_of",
    "next_version",
    "new_version_dir",
    "pack_codes",
    "resolve_version_dir",
    "serving_outputs",
    "versions",
]
