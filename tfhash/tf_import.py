"""TensorFlow imported without its start-up noise, for the library and the commands alike.

TensorFlow prints a dozen lines when it starts (CUDA probing, CPU features, oneDNN), some of
them before its own log level applies. Where ``TF_CPP_MIN_LOG_LEVEL=3`` is set (the commands
set it unless ``--verbosity`` is given, see :mod:`tfhash.cli`), :func:`import_tensorflow` hides
what TensorFlow writes to stderr while it loads; otherwise it is a plain import.
"""

import os
import sys


def import_tensorflow():
    """Imports TensorFlow and Keras; with ``TF_CPP_MIN_LOG_LEVEL=3`` silently.

    The lines TensorFlow writes before its C++ logging is initialised ignore the log level, so
    file descriptor 2 points at ``/dev/null`` while it loads and probes its devices. An import
    error is raised after stderr is restored, so it is still seen.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        import keras  # noqa: F401
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tf
