"""What every command shares: flags defined when it starts, one-line errors, a quiet TensorFlow.

Each command (``tfhash.train``, ``export``, ``encode``, ``evaluate``) ends with::

    if __name__ == "__main__":
        cli.run(main, define_flags)

so importing any of them defines no flags (they can all be imported in one process), a flag
error is one ``error: …`` line with exit status 2 (:func:`parse_flags`), and so is a
:class:`~tfhash.errors.UsageError` raised by the library.

TensorFlow prints a dozen lines when it starts (CUDA probing, CPU features, oneDNN), some of
them before its own log level applies, and a user reads ``failed call to cuInit`` as broken.
Unless absl's ``--verbosity`` flag is given, a command sets ``TF_CPP_MIN_LOG_LEVEL=3`` (where
the environment does not set it) and :func:`import_tensorflow` hides what TensorFlow writes
to stderr while it loads; ``--verbosity=0`` shows everything again.
"""

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from tfhash.errors import UsageError, exit_on_usage_error


def parse_flags(argv):
    """absl's flag parser for ``app.run(main, flags_parser=parse_flags)``: a flag error
    (unknown flag, bad value) becomes one ``error: …`` line and exit status 2 instead of
    absl's usage dump."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}; see --help for the flags", file=sys.stderr)
        sys.exit(2)


def run(main, define_flags):
    """Defines the command's flags, parses them and calls ``main(argv)`` (see the module doc)."""
    define_flags()

    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            absl_logging.set_verbosity(absl_logging.WARNING)
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        return main(argv)

    app.run(exit_on_usage_error(quiet_main), flags_parser=parse_flags)


def load_array(path, flag):
    """``np.load(path)`` of a command's ``--flag`` file, or a one-line :class:`UsageError`
    (missing file, not an array; pickles are never loaded)."""
    import numpy as np

    if not os.path.isfile(path):
        raise UsageError(f"--{flag}: no such file {path!r}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UsageError(f"--{flag}: {path!r} is not a readable .npy array ({e})") from None


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
