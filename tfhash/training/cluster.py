"""Which process of a multi-worker cluster this is, read from ``TF_CONFIG``.

Cheap (no TensorFlow): :meth:`tfhash.config.TrainConfig.validate` asks it before anything is
imported or written, and :func:`tfhash.training.run.train` asks it again to choose the one
worker that writes the run directory.
"""

import json
import os

from tfhash.errors import UsageError


def multi_worker_chief(environ=os.environ):
    """Whether this process is the chief of the multi-worker cluster that ``TF_CONFIG``
    describes (TensorFlow's and Keras's convention): the task ``chief``, or ``worker`` 0 where
    there is none. Raises :class:`UsageError` naming the fix when ``TF_CONFIG`` is missing or is
    not a cluster with this task in it."""
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["localhost:12345", "localhost:12346"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    text = environ.get("TF_CONFIG")
    if not text:
        raise UsageError(
            "strategy=multi_worker reads the cluster from TF_CONFIG, which is not "
            f"set: set it in every worker's environment, e.g. {example}"
        )
    try:
        config = json.loads(text)
        cluster, kind, index = config["cluster"], config["task"]["type"], config["task"]["index"]
        valid = (
            isinstance(index, int)
            and 0 <= index < len(cluster[kind])
            and all(isinstance(a, str) and ":" in a for m in cluster.values() for a in m)
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise UsageError(
            f"TF_CONFIG={text!r} is not a cluster with this process's task in it: "
            f"give every worker's host:port and this task's type and index, e.g. "
            f"{example}"
        )
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
