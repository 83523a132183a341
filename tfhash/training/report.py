"""Stage 6 of a run (:mod:`tfhash.training.run`), the report: the best checkpoint encodes the
queries and the database, and their codes and the metrics are written in the run directory,
``metrics.json`` last, since its presence marks the run finished."""

import os

from tfhash import evaluation
from tfhash.training.run_dir import write_json


def write_report(config, model, run, best, query_ds, database_ds, split, train_seconds):
    """The best checkpoint (by validation MAP) encodes queries and database; their
    codes and the metrics are written, ``metrics.json`` last (its presence: finished)."""
    import keras
    import numpy as np

    from tfhash import models
    from tfhash.training import callbacks

    if os.path.isfile(best):
        model = keras.saving.load_model(best)
    query_codes, query_h, query_labels = callbacks.encode(model, query_ds)
    db_codes, db_h, db_labels = callbacks.encode(model, database_ds)
    if config.freeze_backbone:  # what export takes: images in, the same codes out
        callbacks.save_model(
            models.with_backbone(
                model, config.backbone, config.image_size, config.weights, config.trainable_blocks
            ),
            run.best,
        )
    os.makedirs(run.codes, exist_ok=True)
    for name, array in [
        ("query_codes", query_codes),
        ("query_labels", query_labels),
        ("database_codes", db_codes),
        ("database_labels", db_labels),
        ("query_embedding", query_h),
        ("database_embedding", db_h),
    ]:
        np.save(os.path.join(run.codes, name + ".npy"), array)

    metrics = evaluation.evaluate_codes(
        query_codes,
        query_labels,
        db_codes,
        db_labels,
        metrics=evaluation.default_metrics(db_labels),
        top_k=split.protocol.map_top_k,
    )
    metrics["run"] = {
        "dataset": config.dataset,
        "protocol": config.protocol,
        "method": config.method,
        "bits": config.bits,
        "backbone": config.backbone,
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 1),
    }
    write_json(run.metrics, metrics, indent=2)  # atomically: its presence means finished
    print_summary(metrics)
    print(f"metrics: {run.metrics}; codes: {run.codes}")
    return metrics


def print_summary(metrics):
    """Prints the query set's metrics in one line."""
    print("query set: " + evaluation.summary_line(metrics))
