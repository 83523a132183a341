r"""Fits a shallow hashing method (LSH, SH, ITQ, KSH, SDH) as a training run.

The path of the data:

    config ─► data.load_collection ─► data.make_split (saved in run_dir/split)
      ─► features of every image: raw pixels flattened (--backbone=pixels), a backbone's
         pooled features (read from --feature_cache when given: the cache the frozen deep
         runs share, tfhash.models.features), or the rows of the user's own .npy (--features)
      ─► tfhash.shallow.get(method).fit(train features, train labels) (saved in run_dir/shallow)
      ─► codes of queries and database ─► evaluation.evaluate_codes ─► run_dir/metrics.json

The run directory has the deep runs' layout, so ``tfhash.evaluate``, the tables
and the plots read it alike::

    runs/<name>/
      flags.json, flags.cfg   the settings (flags.cfg reruns the same run)
      split/                  the protocol split (tfhash.data.Split)
      shallow/                the fitted model: model.json + .npy arrays (tfhash.shallow.load),
                              and features.keras, the feature extractor, for a backbone
      codes/                  {query,database}_{codes,labels,embedding}.npy
      metrics.json            the report on the query set, with its conventions

The method is fitted on ``split.train`` (the validation images are not used: a
shallow fit has no checkpoint to choose). A finished run directory is reported,
not refitted; one holding other settings is refused.

Example::

    from tfhash.shallow.run import train_shallow
    from tfhash.config import TrainConfig

    metrics = train_shallow(TrainConfig(run_dir="runs/itq32", method="itq", bits=32,
                                        backbone="pixels", image_size=8))
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfhash import evaluation, shallow
from tfhash.errors import UsageError
from tfhash.tf_import import import_tensorflow
from tfhash.training.run_dir import RunDir

# The settings a shallow run depends on; the other TrainConfig fields (epochs, learning rate…)
# do not change it, so a rerun with other values of those still finds its run directory.
SETTINGS = (
    "dataset",
    "data_dir",
    "protocol",
    "val_fraction",
    "seed",
    "method",
    "bits",
    "backbone",
    "weights",
    "image_size",
)
PIXELS = ("pixels", "none")


def _settings(config, features, params):
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))
    missing = [k for k in ("run_dir",) + SETTINGS if k not in values]
    if missing:
        raise UsageError(
            f"the run configuration lacks {', '.join(missing)}; pass a tfhash.config.TrainConfig"
        )
    values["features"] = os.path.abspath(features) if features else None
    values["shallow_params"] = dict(params)
    return values


def _check(config):
    checks = [
        (config.run_dir, "`run_dir` is required: the directory for this run's outputs"),
        (
            config.method in shallow.METHODS,
            f"method={config.method} is not a shallow method; choose one of "
            f"{', '.join(shallow.METHODS)}",
        ),
        (
            isinstance(config.bits, int) and config.bits >= 1,
            f"`bits` must be at least 1, got {config.bits}",
        ),
        (
            0 < config.val_fraction < 1,
            f"`val_fraction` must be in (0, 1), got {config.val_fraction}",
        ),
        (config.image_size >= 1, f"`image_size` must be at least 1, got {config.image_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def load_features(path, collection):
    """The user's features: float ``[N, D]`` rows in the order of ``collection``'s items."""
    if not os.path.isfile(path):
        raise UsageError(
            f"features={path} is not a file; pass a .npy array [N, D] with one "
            "row per image of the dataset, in its order"
        )
    try:
        features = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UsageError(
            f"features={path} is not a readable .npy array ({e}); save it with numpy.save"
        ) from None
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise UsageError(
            f"features={path} must be a numeric [N, D] array, got {features.dtype} {features.shape}"
        )
    if len(features) != len(collection):
        raise UsageError(
            f"features={path} has {len(features)} rows but {collection.name} has "
            f"{len(collection)} images; give one row per image, in the dataset's "
            "order"
        )
    return features


def extract_features(collection, backbone, image_size, weights="none", batch_size=256, seed=0):
    """Features of every image of ``collection``, in order, and the Keras model that made them.

    ``backbone="pixels"``: the images at ``image_size`` (resized as in training), flattened;
    otherwise the backbone's pooled features (``weights`` as ``--weights``; a random
    initialisation is seeded by ``seed``).

    Returns:
        ``(float32 [N, D], feature model)``.
    """
    import_tensorflow()
    import keras

    from tfhash import data
    from tfhash.shallow import export as shallow_export

    keras.utils.set_random_seed(seed)
    net = shallow_export.feature_model(backbone, image_size, weights)
    batches = data.eval_dataset(collection, np.arange(len(collection)), image_size, batch_size)
    rows = [keras.ops.convert_to_numpy(net(images, training=False)) for images, _ in batches]
    return np.concatenate(rows).astype(np.float32), net


def train_shallow(config, features=None, params=None):
    """Fits ``config.method`` (a shallow method) and writes its run directory.

    Args:
        config: a :class:`tfhash.config.TrainConfig` (or any object with its fields); a
            shallow run reads ``run_dir``, ``dataset``, ``data_dir``, ``protocol``,
            ``val_fraction``, ``seed``, ``method``, ``bits``, ``backbone`` (``"pixels"``
            for raw pixels), ``weights``, ``image_size``, ``eval_batch_size`` and
            ``feature_cache`` (where given, the backbone's features are read from that
            cache, or computed into it once).
        features: path of a ``.npy`` array ``[N, D]``, one row per image of the dataset in
            its order, to use instead of computed features (``--features``).
        params: the method's parameters, a dict or a ``"name=value,…"`` string
            (``--shallow_params``), e.g. ``{"anchors": 500}``.

    Returns:
        The metrics dict written to ``run_dir/metrics.json`` (a deep run's keys, and
        ``run`` with the fit and feature times).

    Raises:
        UsageError: a bad setting, features or labels (one line, naming the fix).
    """
    _check(config)
    if isinstance(params, str) or params is None:
        params = shallow.parse_params(params)
    model = shallow.get(config.method, bits=config.bits, seed=config.seed, **params)
    settings = _settings(config, features, {k: model.params[k] for k in params})
    run = RunDir(config.run_dir)
    model_dir = os.path.join(run.path, "shallow")
    if run.open_once(settings, SETTINGS + ("features", "shallow_params")):
        with open(run.metrics) as f:
            metrics = json.load(f)
        print(f"{config.run_dir} is already finished; its metrics are in {run.metrics}")
        print("query set: " + evaluation.summary_line(metrics))
        return metrics

    from tfhash import data

    collection = data.load_collection(config.dataset, config.data_dir)
    split = data.make_split(
        collection, config.protocol, seed=config.seed, val_fraction=config.val_fraction
    )
    split.save(run.split)
    run.write_settings(settings)
    print(
        f"{config.dataset}: {len(collection)} images; protocol {config.protocol}: "
        f"{len(split.train)} train (fitted on), {len(split.query)} queries, "
        f"{len(split.database)} database"
    )

    start = time.time()
    extractor = None
    if features:
        matrix = load_features(features, collection)
        source = f"features from {features}"
    elif getattr(config, "feature_cache", None) and config.backbone not in PIXELS:
        # The frozen deep runs' cache (tfhash.models.features): the same network's features of the
        # same images, computed once for every run, deep or shallow.
        import_tensorflow()
        from tfhash.models import features as feature_cache
        from tfhash.shallow import export as shallow_export

        matrix = feature_cache.backbone_features(
            collection,
            np.arange(len(collection)),
            config.backbone,
            config.weights,
            config.image_size,
            config.feature_cache,
            batch_size=getattr(config, "eval_batch_size", 256),
        )
        extractor = shallow_export.feature_model(config.backbone, config.image_size, config.weights)
        source = f"{config.backbone} features (cache {config.feature_cache})"
    else:
        matrix, extractor = extract_features(
            collection,
            config.backbone,
            config.image_size,
            config.weights,
            getattr(config, "eval_batch_size", 256),
            config.seed,
        )
        source = "raw pixels" if config.backbone in PIXELS else f"{config.backbone} features"
    feature_seconds = time.time() - start
    print(f"{source}: {matrix.shape[1]} dimensions ({feature_seconds:.1f} s)")

    start = time.time()
    model.fit(matrix[split.train], collection.labels[split.train] if model.supervised else None)
    fit_seconds = time.time() - start
    model.save(model_dir)
    if extractor is not None and config.backbone not in PIXELS:
        from tfhash.shallow import export as shallow_export

        extractor.save(os.path.join(model_dir, shallow_export.FEATURE_MODEL))

    label_dtype = np.float32 if collection.multi_label else np.int64
    os.makedirs(run.codes, exist_ok=True)
    outputs = {}
    for part, indices in (("query", split.query), ("database", split.database)):
        relaxed = model.relaxed(matrix[indices])
        outputs[part] = (shallow.base.sign_codes(relaxed), collection.labels[indices])
        for name, array in (
            ("codes", outputs[part][0]),
            ("embedding", relaxed),
            ("labels", collection.labels[indices].astype(label_dtype)),
        ):
            np.save(os.path.join(run.codes, f"{part}_{name}.npy"), array)

    metrics = evaluation.evaluate_codes(
        *outputs["query"],
        *outputs["database"],
        top_k=split.protocol.map_top_k,
        metrics=evaluation.default_metrics(outputs["database"][1]),
    )
    metrics["run"] = {
        "dataset": config.dataset,
        "protocol": config.protocol,
        "method": config.method,
        "bits": config.bits,
        "backbone": "features" if features else config.backbone,
        "train_seconds": round(fit_seconds, 3),
        "feature_seconds": round(feature_seconds, 1),
        "feature_dim": int(matrix.shape[1]),
        "params": model.params,
    }
    with open(run.metrics, "w") as f:
        json.dump(metrics, f, indent=2)
    print("query set: " + evaluation.summary_line(metrics))
    print(f"metrics: {run.metrics}; codes: {run.codes}; model: {model_dir}")
    return metrics
