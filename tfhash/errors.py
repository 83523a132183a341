"""The one exception type for bad user input.

Library code raises :class:`UsageError` with a one-line message that names the
problem and the fix (for example ``"--bits must be at least 1, got 0"``). Every
command-line entry point catches it (:func:`exit_on_usage_error`, applied by
:func:`tfhash.cli.run`), prints ``error: <message>`` to stderr and exits with
status 2, never a traceback.
"""

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

    wrapped.__name__ = main.__name__
    wrapped.__doc__ = main.__doc__
    return wrapped
