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
import re
import signal
import sys

from absl import app, flags
from absl import logging as absl_logging

from tfhash.errors import UsageError, exit_on_usage_error
from tfhash.tf_import import import_tensorflow  # noqa: F401  (the commands' quiet TensorFlow)

# What asks for help: absl's own flags, and -h, which absl does not know.
HELP_ARGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")

INTERRUPTED = "interrupted (Ctrl-C)"


def parse_flags(argv):
    """absl's flag parser for ``app.run(main, flags_parser=parse_flags)``: a flag error
    (unknown flag, bad value, a flagfile that cannot be opened) becomes one ``error: …`` line
    and exit status 2 instead of absl's usage dump; ``-h`` is ``--help``, and help exits with
    status 0 (absl's exits with 1, which a script reads as a failure)."""
    asked = any(arg.split("=")[0] in HELP_ARGS for arg in argv[1:])
    try:
        return flags.FLAGS(["--help" if arg == "-h" else arg for arg in argv])
    except flags.Error as e:
        print(f"error: {flag_error(e)}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        if asked and e.code == 1:  # absl printed the help
            sys.exit(0)
        raise
    except BrokenPipeError:  # the help piped into a reader that stopped (| head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def flag_error(error):
    """The one-line message of absl's flag ``error``, without absl's ``ERROR::`` prefix."""
    message = re.sub(r"^(ERROR:*\s*)+", "", str(error)).strip()
    missing = re.search(r"Unable to open flagfile: .*?No such file or directory: '(.*)'", message)
    if missing:
        return (
            f"--flagfile={missing.group(1)}: no such file in {os.getcwd()}; flagfile paths "
            "(those nested in a flagfile too) are relative to the current directory: run "
            "the command from the checkout, or give an absolute path"
        )
    return f"{message}; see --help for the flags"


def run(main, define_flags, interrupted=INTERRUPTED):
    """Defines the command's flags, parses them and calls ``main(argv)`` (see the module doc).

    Positional arguments are refused (every setting is a flag), and a
    :class:`~tfhash.errors.UsageError` from the library names its arguments as the command's
    flags (:func:`as_flags`). Ctrl-C (:func:`exit_interrupted`) prints ``error: <interrupted>`` —
    one line, no traceback — and exits at once with status 130, the shell's for SIGINT, without
    Python's shutdown, which waits for TensorFlow's threads for several seconds.
    ``interrupted`` says what to do next (``tfhash.train``: rerun the same command to resume).
    """
    before = set(flags.FLAGS)
    define_flags()
    names = set(flags.FLAGS) - before
    # --helpshort lists the main module's key flags (absl names it sys.argv[0]): the command's
    # flags, wherever they were defined (tfhash.config's TrainConfig fields, define_out here).
    for name in names:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            # ERROR: libraries' warnings (TFDS's "Variant folder … has no dataset_info.json")
            # are not for the user of a command; --verbosity shows them.
            absl_logging.set_verbosity(absl_logging.ERROR)
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        try:
            if len(argv) > 1:
                raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
            return main(argv)
        except UsageError as e:
            raise UsageError(as_flags(str(e), names)) from None

    # Ctrl-C exits from the signal handler itself, never as a KeyboardInterrupt unwinding through
    # TensorFlow: that corrupted the heap now and then (glibc's "free(): invalid next size",
    # status -6 instead of 130). Not where SIGINT is ignored (nohup, a shell's background job).
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, lambda signum, frame: exit_interrupted(interrupted))
    app.run(exit_on_usage_error(quiet_main), flags_parser=parse_flags)


def exit_interrupted(message):
    """Prints ``error: <message>`` and ends the process with status 130 at once: the commands'
    SIGINT handler. Where Milvus Lite runs, whose server process stops only in Python's
    shutdown, it raises ``SystemExit`` instead, which unwinds as Python's own handler's
    ``KeyboardInterrupt`` did."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the line
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, RuntimeError, ValueError):  # interrupted in the middle of a write
            pass
    # To the file descriptor: the handler may have interrupted a write to sys.stderr's buffer.
    os.write(sys.stderr.fileno(), f"error: {message}\n".encode())
    if "milvus_lite" in sys.modules:
        sys.exit(130)
    os._exit(130)


# Flags that several commands share, defined once: each command gives its own help text.


def define_out(help, overwrite=None):
    """``--out`` (a string), and ``--overwrite`` (a boolean, default off) with help
    ``overwrite`` when given."""
    flags.DEFINE_string("out", None, help)
    if overwrite:
        flags.DEFINE_boolean("overwrite", False, overwrite)


def define_milvus(collection_default, collection_help):
    """``--collection`` and ``--timeout``: the Milvus collection and how long to wait for it."""
    flags.DEFINE_string("collection", collection_default, collection_help)
    flags.DEFINE_float("timeout", 10.0, "Seconds to wait for a Milvus server to answer.")


def define_source(data_dir_help, indices_help):
    """``--data_dir`` (where a dataset lives) and ``--indices`` (``.npy`` files of indices into
    it, each part written apart)."""
    flags.DEFINE_string("data_dir", None, data_dir_help)
    flags.DEFINE_list("indices", None, indices_help)


def load_array(path, flag):
    """``np.load(path)`` of a command's ``--flag`` file, or a one-line :class:`UsageError`
    (missing file, not an array; pickles are never loaded)."""
    from tfhash.retrieval.codes import load_array

    return load_array(path, f"--{flag}")


def as_flags(message, names):
    """A library message with its arguments named as the command's flags: ```name``` becomes
    ``--name`` and ``name=value`` becomes ``--name=value``, for each of ``names``.

    >>> as_flags("`k` must be at least 1; k=0, top_k=3, pass `radius`", ["k", "radius"])
    '--k must be at least 1; --k=0, top_k=3, pass --radius'
    """
    if not names:
        return message
    pattern = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    message = re.sub(rf"`({pattern})`", r"--\1", message)
    return re.sub(rf"(?<![\w\-./`])({pattern})=", r"--\1=", message)


COMMANDS = (
    "train",
    "export",
    "encode",
    "evaluate",
    "index",
    "search",
    "convert_weights",
    "write_folder",
)
USAGE = (
    "usage: tfhash <command> [--flags]; commands: "
    + ", ".join(COMMANDS)
    + "; tfhash <command> --help lists a command's flags"
)


def main(argv=None):
    """The ``tfhash`` console script: ``tfhash <command> [flags]`` runs ``python -m
    tfhash.<command> [flags]`` exactly (the module runs as ``__main__``, with these flags)."""
    import runpy

    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] in HELP_ARGS:
        print(USAGE, file=sys.stdout if len(argv) >= 2 else sys.stderr)
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1].replace("-", "_")
    if command not in COMMANDS:
        print(f"error: unknown command {argv[1]!r}; {USAGE}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"tfhash {command}", *argv[2:]]
    runpy.run_module(f"tfhash.{command}", run_name="__main__", alter_sys=False)
