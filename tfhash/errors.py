"""The one exception type for bad user input.

Library code raises :class:`UsageError` with a one-line message that names the
problem and the fix (for example ``"`bits` must be at least 1, got 0"``). Every
command-line entry point catches it (:func:`exit_on_usage_error`, applied by
:func:`tfhash.cli.run`), prints ``error: <message>`` to stderr and exits with
status 2, never a traceback. A full disk is one ``error: no space left …`` line
too, with status 1 (the commands' writes are atomic: what was there stays).
"""

import errno
import sys


class UsageError(ValueError):
    """Bad input from the user: a one-line message naming the problem and the fix."""


def exit_on_usage_error(main):
    """Wraps a CLI ``main(argv)`` so a :class:`UsageError` becomes ``error: …`` and exit 2."""

    def wrapped(argv):
        try:
            return main(argv)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Exception as e:
            where = out_of_space(e)
            if where is None:
                raise
            print(
                f"error: no space left on the device{where}; free some space and run the "
                "same command again (what it had completed is kept)",
                file=sys.stderr,
            )
            sys.exit(1)

    wrapped.__name__ = main.__name__
    wrapped.__doc__ = main.__doc__
    return wrapped


def out_of_space(error):
    """``" (writing <file>)"``, or ``""``, if ``error`` (or an error it came from) is a full
    disk or quota; ``None`` otherwise. Libraries report it in their own types (TensorFlow's,
    FAISS's, h5py's), with the operating system's message in the text."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return f" (writing {error.filename})" if error.filename else ""
        if any(text in str(error) for text in ("No space left on device", "Disk quota exceeded")):
            return ""
        error = error.__cause__ or error.__context__
    return None
