"""Training machinery shared by every method.

* :mod:`tfhash.training.run`        one run, as named stages: :func:`~tfhash.training.run.train`;
* :mod:`tfhash.training.network`    a run's network and batches (images, features, fine-tuning);
* :mod:`tfhash.training.report`     a run's report: the final codes and metrics;
* :mod:`tfhash.training.trainer`    the one training loop, on any ``tf.distribute`` strategy;
* :mod:`tfhash.training.callbacks`  validation MAP, atomic checkpoints, the history, NaN stops;
* :mod:`tfhash.training.run_dir`    the run directory: settings, split, checkpoints, lock, resume;
* :mod:`tfhash.training.cluster`    which worker of a multi-worker cluster is the chief (no TensorFlow).
"""
