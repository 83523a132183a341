r"""A fitted shallow method as TensorFlow ops: images → features → codes, exported like any model.

``tfhash.shallow`` fits and encodes in NumPy. This module writes the same
encoder steps (``subtract``, ``project``, ``rbf``, ``append_one``, ``cosine``;
see :mod:`tfhash.shallow.base`) as TensorFlow ops in float64, in a Keras layer
(:class:`ShallowEncoder`) that holds the fitted arrays as non-trainable
float64 weights. Composed with a feature extractor — raw pixels flattened
(``backbone="pixels"``) or a backbone's pooled features — it is a Keras model
from images ``[B, S, S, 3]`` to relaxed codes, which
:func:`tfhash.serving.export_model` writes with the two usual signatures
(``serving_default`` on pixels, ``encode_images`` on JPEG/PNG bytes) and the
outputs ``codes``, ``packed`` and ``embedding``.

The relaxed codes are computed in float64, rounded to float32 and signed
(``sign(0) = +1``), exactly as :meth:`tfhash.shallow.ShallowHash.encode` does,
so the SavedModel's codes equal ``.encode`` on the same features (up to float64
rounding of different summation orders, which moves a sign only for a value
within ~1e-12 of zero).

Example::

    model = tfhash.shallow.get("itq", bits=32).fit(features)      # features: flattened pixels
    version_dir = export_shallow(model, "models/itq", image_size=8)
    codes = tf.saved_model.load(version_dir).signatures["serving_default"](
        images=tf.constant(images))["codes"]                        # == model.encode(features)
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from tfhash import serving, shallow
from tfhash.errors import UsageError

# Backbone names that mean "no network: the raw pixels, flattened, are the features".
PIXELS = ("pixels", "none")
# The saved feature extractor of a run on a backbone, inside run_dir/shallow/.
FEATURE_MODEL = "features.keras"


def squared_distances(x, anchors):
    """``‖x_i‖² − 2 x_i·a_j + ‖a_j‖²`` clipped at 0: the formula NumPy's encoder uses."""
    d2 = (
        tf.reduce_sum(x * x, axis=1, keepdims=True)
        - 2.0 * tf.matmul(x, anchors, transpose_b=True)
        + tf.reduce_sum(anchors * anchors, axis=1)[None, :]
    )
    return tf.maximum(d2, 0.0)


def apply_steps(steps, x):
    """The encoder ``steps`` (``(name, {array name: tensor})``) on float64 ``x [B, d]``."""
    for name, a in steps:
        if name == "subtract":
            x = x - a["mean"]
        elif name == "project":
            x = tf.matmul(x, a["matrix"])
        elif name == "rbf":
            x = tf.exp(-a["gamma"] * squared_distances(x, a["anchors"]))
        elif name == "append_one":
            x = tf.concat([x, tf.ones_like(x[:, :1])], axis=1)
        elif name == "cosine":
            x = tf.cos(a["omega"] * (tf.gather(x, a["dims"], axis=1) - a["offset"]))
        else:
            raise ValueError(f"unknown encoder step {name!r}")
    return x


class ShallowEncoder(keras.layers.Layer):
    """Features ``[B, d]`` → relaxed codes float32 ``[B, K]`` of a fitted shallow model.

    The fitted arrays are non-trainable float64 weights (integer index arrays
    are graph constants); the computation runs in float64 whatever the dtype
    policy, and only its result is rounded to float32.

    Args:
        model: a fitted :class:`tfhash.shallow.ShallowHash`.
    """

    def __init__(self, model, **kwargs):
        kwargs.setdefault("name", f"{model.name}_encoder")
        super().__init__(dtype="float64", autocast=False, trainable=False, **kwargs)
        self.method, self.bits, self.input_dim = model.name, model.bits, model.input_dim
        self._steps = []
        for i, (step, arrays) in enumerate(model.steps()):
            held = {}
            for key, array in arrays.items():
                array = np.asarray(array)
                if np.issubdtype(array.dtype, np.integer):
                    held[key] = array.astype(np.int64)
                    continue
                weight = self.add_weight(
                    name=f"{i}_{step}_{key}",
                    shape=array.shape,
                    dtype="float64",
                    initializer="zeros",
                    trainable=False,
                )
                weight.assign(array.astype(np.float64))
                held[key] = weight
            self._steps.append((step, held))

    def call(self, features):
        x = tf.cast(tf.ensure_shape(features, [None, self.input_dim]), tf.float64)
        steps = [
            (
                step,
                {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()},
            )
            for step, arrays in self._steps
        ]
        return tf.cast(apply_steps(steps, x), tf.float32)

    def compute_output_spec(self, features):
        return keras.KerasTensor((features.shape[0], self.bits), dtype="float32")


def feature_model(backbone, image_size, weights="none"):
    """A Keras model from images ``[B, S, S, 3]`` (RGB in [0, 255]) to feature vectors.

    ``backbone="pixels"`` (or ``"none"``): the pixels themselves, flattened row-major to
    ``S·S·3`` values (NumPy's ``images.reshape(B, -1)``); otherwise
    ``tfhash.models.backbones.build_backbone(backbone, image_size, weights)``.
    """
    if backbone in PIXELS:
        if image_size < 1:
            raise UsageError(f"`image_size` must be at least 1, got {image_size}")
        images = keras.Input((image_size, image_size, 3), name="images")
        flat = keras.layers.Flatten(name="pixels", dtype="float32")(images)
        return keras.Model(images, flat, name="pixels")
    from tfhash.models import backbones

    return backbones.build_backbone(backbone, image_size, weights)


def serving_model(model, features):
    """The Keras model images → relaxed codes: the feature model ``features``, then ``model``."""
    if not model.fitted:
        raise UsageError(f"the {model.name} model is not fitted; fit it before exporting")
    dim = features.outputs[0].shape[-1]
    if dim != model.input_dim:
        raise UsageError(
            f"the feature model gives {dim}-d features but the {model.name} model "
            f"was fitted on {model.input_dim}-d ones; export with the extractor "
            "it was fitted on"
        )
    size = serving.image_size_of(features)
    images = keras.Input((size, size, 3), name="images")
    h = ShallowEncoder(model)(features(images))
    return keras.Model(images, h, name=f"{features.name}_{model.name}_{model.bits}bits")


def export_shallow(
    model, export_dir, image_size=None, backbone="pixels", features=None, version=None
):
    """Exports a fitted shallow ``model`` on a feature extractor as a SavedModel.

    Args:
        model: a fitted :class:`tfhash.shallow.ShallowHash`.
        export_dir: the model's base path; the version goes in ``export_dir/<version>``.
        image_size: side S of the input images (with ``backbone``; not with ``features``).
        backbone: ``"pixels"`` or a backbone name, as :func:`feature_model` takes.
        features: a Keras feature model images → features to use instead (e.g. the run's
            saved extractor).
        version: a positive integer; default, the next free one.

    Returns:
        The written version directory (see :func:`tfhash.serving.export_model`).
    """
    serving.new_version_dir(export_dir, version)
    if features is None:
        if image_size is None:
            raise UsageError(
                "export_shallow needs image_size (the side of the input images) or a feature model"
            )
        features = feature_model(backbone, image_size)
    return serving.export_model(serving_model(model, features), export_dir, version)


def export_run(run_dir, export_dir, version=None):
    """Exports the shallow method fitted in ``run_dir`` (by ``tfhash.shallow.run``).

    Returns:
        The written version directory.

    Raises:
        UsageError: no shallow model in ``run_dir``, or a run fitted on the user's
            own ``.npy`` features, which no image model computes.
    """
    model_dir = os.path.join(run_dir, "shallow")
    flags_path = os.path.join(run_dir, "flags.json")
    if not os.path.isfile(os.path.join(model_dir, "model.json")) or not os.path.isfile(flags_path):
        raise UsageError(
            f"no fitted shallow method in {run_dir} (no flags.json or "
            "shallow/model.json); train one with a shallow method (lsh, sh, itq, ksh, sdh)"
        )
    if not export_dir:
        raise UsageError("`export_dir` is required: the base directory of the exported model")
    with open(flags_path) as f:
        run = json.load(f)
    if run.get("features"):
        raise UsageError(
            f"{run_dir} was fitted on your own features ({run['features']}), which "
            "no image model in tfhash computes; encode them with "
            f"tfhash.shallow.load('{model_dir}').encode(features)"
        )
    serving.new_version_dir(export_dir, version)
    model = shallow.load(model_dir)
    saved = os.path.join(model_dir, FEATURE_MODEL)
    if run["backbone"] in PIXELS:
        features = feature_model("pixels", int(run["image_size"]))
    elif os.path.isfile(saved):
        import tfhash.models.backbones  # noqa: F401  (registers Preprocess for load_model)

        features = keras.saving.load_model(saved, compile=False)
    else:
        raise UsageError(f"{run_dir} has no saved feature extractor ({saved}); refit the run")
    return serving.export_model(serving_model(model, features), export_dir, version)
