"""What every backbone shares: the layer that normalises raw pixels the way its weights were
trained, and the loading of a local weights file.

Every backbone starts with :class:`Preprocess`, so a trained (and exported) model takes raw
RGB pixels in ``[0, 255]``.
"""

import keras
from keras import ops

from tfhash.errors import UsageError

# Per-channel means of ImageNet in RGB order, as the Caffe-trained VGG/ResNet weights expect.
_IMAGENET_RGB_MEAN = (123.68, 116.779, 103.939)


@keras.saving.register_keras_serializable(package="tfhash")
class Preprocess(keras.layers.Layer):
    """Normalises raw RGB pixels in ``[0, 255]`` the way a backbone was trained.

    Modes:
        ``"caffe"``: RGB → BGR and subtract the ImageNet mean (VGG16, ResNet50 weights).
        ``"symmetric"``: ``x / 127.5 − 1``, to ``[−1, 1]`` (the small ResNet).
        ``"lite"``: ``(x − 127) / 128``, to ``[−0.99, 1]`` (the EfficientNet-Lite weights:
        their TF training pipeline's normalisation, clearly better for them than the
        ImageNet mean and standard deviation).
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "symmetric", "lite"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "symmetric":
            return images / 127.5 - 1.0
        if self.mode == "lite":
            return (images - 127.0) / 128.0
        mean = ops.convert_to_tensor(_IMAGENET_RGB_MEAN[::-1], dtype=self.compute_dtype)
        return ops.flip(images, axis=-1) - mean

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


def load_weights(model, path):
    """Loads the Keras weights file ``path`` into ``model``.

    Raises:
        UsageError: the file does not fit ``model`` or cannot be read; the message names both.
    """
    try:
        model.load_weights(path)
    except Exception as e:
        raise UsageError(f"could not load weights file {path!r} into {model.name}: {e}") from e
