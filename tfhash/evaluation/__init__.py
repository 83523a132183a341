"""Exact, tie-aware retrieval metrics for binary codes, with NumPy and SciPy only.

Hamming distances are small integers, so rankings are full of ties, and public
evaluation code breaks them by whatever order its sort leaves, and the same codes
score very differently with relevant items last or first within ties (an example in
``docs/evaluation.md``). This evaluator is exact under a named tie policy and states
every convention it used in its report (see ``docs/evaluation.md``).

Main entry points:

* :func:`evaluate_codes`: MAP, MAP@k, precision/recall@k curves, hash lookup
  within a Hamming radius, the precision–recall curve over radii, and graded
  NDCG@k, ACG@k and weighted AP (either gain), MAP with relevance Jaccard ≥ t;
  returns a JSON-serialisable report.
* :func:`default_metrics`: what a run's report computes for its labels (the
  multi-label criteria for multi-hot labels).
* :func:`mean_average_precision`: one number, for training callbacks.
* :data:`PRESETS`: keyword arguments reproducing widely used public code.
* ``python -m tfhash.evaluate``: the same from ``.npy`` files, with plots.

Importing this package never imports TensorFlow.

Example:

>>> import numpy as np
>>> from tfhash import evaluation
>>> rng = np.random.default_rng(0)
>>> codes = np.where(rng.random((200, 16)) < 0.5, 1, -1).astype(np.int8)
>>> labels = rng.integers(0, 10, 200)
>>> report = evaluation.evaluate_codes(codes[:20], labels[:20], codes[20:], labels[20:],
...                                    metrics=["map", "map@50", "p@r2"])
>>> sorted(report)
['conventions', 'data', 'map', 'map@50', 'p@r2']
"""

from tfhash.evaluation.conventions import PRESETS, Conventions
from tfhash.evaluation.metrics import (
    AverageCumulativeGain,
    JaccardMeanAveragePrecision,
    MeanAveragePrecision,
    NormalizedDCG,
    PrecisionRecallAtK,
    PrecisionRecallCurve,
    PrecisionRecallWithinRadius,
    RetrievalMetric,
    WeightedAveragePrecision,
)
from tfhash.evaluation.report import (
    DEFAULT_METRICS,
    default_metrics,
    evaluate_codes,
    mean_average_precision,
    summary_line,
)
from tfhash.evaluation.ties import TIE_POLICIES

__all__ = [
    "DEFAULT_METRICS",
    "summary_line",
    "PRESETS",
    "TIE_POLICIES",
    "AverageCumulativeGain",
    "Conventions",
    "JaccardMeanAveragePrecision",
    "MeanAveragePrecision",
    "NormalizedDCG",
    "PrecisionRecallAtK",
    "PrecisionRecallCurve",
    "PrecisionRecallWithinRadius",
    "RetrievalMetric",
    "WeightedAveragePrecision",
    "default_metrics",
    "evaluate_codes",
    "mean_average_precision",
]
