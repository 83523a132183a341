"""One writer at a time: an exclusive lock on a run directory or an index, held by a command
while it writes and released by the operating system when the command ends, however it ends.

The lock is ``fcntl.flock`` on a small file in the directory (``lock`` in a run directory,
``tfhash_index.lock`` in an index directory). The file holds the holder's pid, host, command and
start time, so a refused command names who holds it. The operating system drops the lock when
the holder's process exits, killed included, so a stale file never blocks the next command; the
file itself is never removed (removing it would let two processes lock two different files).

``flock`` locks are per open file: a second lock of the same file in the same process is
refused too. They hold between processes on one machine; over a network filesystem they are only
as good as its lock manager. Without ``fcntl`` (Windows) nothing is locked.
"""

import json
import os
import socket
import sys
import time

from tfhash.errors import UsageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here
    fcntl = None


def _command():
    """This process's command line, as the user typed it where Linux tells (``python -m …``)."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            parts = [p.decode(errors="replace") for p in f.read().split(b"\0") if p]
        parts[0] = os.path.basename(parts[0])
    except (OSError, IndexError):
        parts = [os.path.basename(sys.executable), *sys.argv]
    command = " ".join(parts)
    return command if len(command) <= 200 else command[:197] + "..."


def describe_holder(text):
    """``"pid 12 on host h since 2025-01-01T10:00:00+0000 (python -m tfhash.train …)"``
    from a lock file's content; what is readable of it otherwise."""
    try:
        holder = json.loads(text)
        return (
            f"pid {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
        )
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file names no holder)"


class DirectoryLock:
    """An exclusive lock on ``path`` (a file, created if missing); a context manager.

    Args:
        path: the lock file.
        what: how the refusal names the locked thing (``"run directory runs/x"``).
        fix: what the refusal advises (``"wait for it to finish, or pass another `run_dir`"``).
    """

    def __init__(self, path, what, fix):
        self.path, self.what, self.fix = path, what, fix
        self._fd = None

    def acquire(self):
        """Takes the lock, or raises :class:`UsageError` naming the process that holds it."""
        if fcntl is None or self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: held; the holder wrote its name once it had it
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise UsageError(
                f"{self.what} is in use by {describe_holder(holder)}; {self.fix}"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def release(self):
        """Drops the lock (the operating system does it anyway when the process ends)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no holder named once released
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
