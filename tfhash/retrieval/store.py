"""Where an index lives: its manifest, atomic writes, the writer's lock, opening one.

An index directory holds ``tfhash_index.json`` (the manifest: format, backend, code length,
size, and for FAISS the names of its current files), the backend's files and, when encode
recorded them, ``class_names.json``. Every write goes to a partial name and is renamed into
place (:func:`tfhash.training.run_dir.atomic_path`), so a reader, or a kill at any moment, sees
the old manifest or the new one. One command at a time writes an index: :func:`lock_index`
(:class:`tfhash.locking.DirectoryLock`).
"""

import json
import os
import uuid

from tfhash.errors import UsageError
from tfhash.training.run_dir import atomic_path

MANIFEST = "tfhash_index.json"
LOCK = "tfhash_index.lock"  # held by the command writing the index (lock_index)
CLASS_NAMES = "class_names.json"  # the names of the label ids, from encode's info
FORMAT = "tfhash-hamming-index"
FORMAT_VERSION = 1
BACKENDS = ("faiss", "milvus")
DEFAULT_COLLECTION = "tfhash"


def is_milvus_uri(location):
    """Whether ``location`` names a Milvus server (``scheme://…``) or a Milvus Lite file (``.db``)."""
    return "://" in location or location.endswith(".db")


def is_lite_file(uri):
    """Whether a Milvus ``uri`` is a local Milvus Lite file rather than a server."""
    return uri.endswith(".db") and "://" not in uri


def normalise_uri(uri):
    """A Milvus Lite file as an absolute path; a server URI as it is."""
    return os.path.abspath(uri) if is_lite_file(uri) else uri


def read_manifest(directory):
    """The manifest of an index directory; :class:`UsageError` if it is not an index."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise UsageError(
            f"index={directory} does not exist; build an index with "
            "python -m tfhash.index, or pass a Milvus URI"
        )
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise UsageError(
            f"{directory} is not a tfhash index (no {MANIFEST}); build one with "
            "python -m tfhash.index"
        ) from None
    except (OSError, ValueError) as e:
        raise UsageError(
            f"{path} is not readable JSON ({e}); rebuild the index with python -m tfhash.index"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not a tfhash index manifest; rebuild the index with python -m tfhash.index"
        )
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise UsageError(
            f"{directory} was written by a newer tfhash (format "
            f"{manifest['version']}); upgrade tfhash to read it"
        )
    return manifest


def write_json(path, value, indent=2):
    """Writes ``value`` to ``path`` atomically and durably (synced before the rename), through
    a ``.partial-…`` name that :func:`is_leftover` recognises."""
    partial = os.path.join(os.path.dirname(path), f".partial-{uuid.uuid4().hex}.json")
    with atomic_path(path, partial):
        with open(partial, "w") as f:
            json.dump(value, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())


def write_manifest(directory, manifest):
    """Replaces the manifest of ``directory`` atomically: the commit point of every write."""
    write_json(os.path.join(directory, MANIFEST), manifest)


def remove_files(*paths):
    """Removes the files that exist among ``paths``."""
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


def is_leftover(name):
    """Files an interrupted build of ours can leave behind."""
    return name.startswith((".partial-", "codes-", "items-"))


def check_index_dir(directory):
    """Refuses an ``out`` that exists and is neither an index nor an empty directory."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"out={directory} is a file; pass a directory for the index")
    if os.path.isdir(directory) and not os.path.exists(os.path.join(directory, MANIFEST)):
        foreign = [n for n in os.listdir(directory) if not is_leftover(n) and n != LOCK]
        if foreign:
            raise UsageError(
                f"out={directory} exists and is not a tfhash index (it holds "
                f"{foreign[0]!r} and no {MANIFEST}); pass a new or empty directory"
            )


def read_class_names(directory):
    """The class names an index directory records (``class_names.json``), or ``None``."""
    path = os.path.join(directory, CLASS_NAMES) if directory else None
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            names = json.load(f)
    except (OSError, ValueError):
        return None  # only the gallery's captions and query labels depend on it
    return names if isinstance(names, list) else None


def write_class_names(directory, class_names):
    """Records ``class_names`` in the index directory (atomically)."""
    path = os.path.join(directory, CLASS_NAMES)
    with (
        atomic_path(
            path, os.path.join(directory, f".partial-{os.getpid()}-{CLASS_NAMES}")
        ) as partial,
        open(partial, "w") as f,
    ):
        json.dump(list(class_names), f)


# ---------------------------------------------------------------------------------------------
# One writer at a time.


class IndexLock:
    """The locks :func:`lock_index` took; ``release()`` (or the end of a ``with``) drops them."""

    def __init__(self):
        self.held = []

    def release(self):
        while self.held:
            self.held.pop().release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def lock_index(out=None, uri=None):
    """The lock that one command writing an index holds (``tfhash.locking``): of the index
    directory ``out`` (a FAISS index, or a pointer to a Milvus collection) and of a Milvus Lite
    file ``uri``. A second writer is refused with one line naming the first; a killed holder's
    lock is released by the operating system. A Milvus server's collection is locked only
    through a pointer directory (``out``). Returns the held :class:`~tfhash.locking.
    DirectoryLock` objects in an :class:`IndexLock`."""
    from tfhash.locking import DirectoryLock

    fix = "wait for that command to finish (or stop it)"
    locks = IndexLock()
    try:
        if out:
            check_index_dir(out)
            os.makedirs(out, exist_ok=True)
            locks.held.append(DirectoryLock(os.path.join(out, LOCK), f"index {out}", fix).acquire())
        if uri and is_lite_file(uri):
            path = normalise_uri(uri)
            if os.path.isdir(os.path.dirname(path)):
                lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tfhash.lock")
                locks.held.append(DirectoryLock(lock, f"Milvus Lite file {uri}", fix).acquire())
    except BaseException:
        locks.release()
        raise
    return locks


# ---------------------------------------------------------------------------------------------
# Opening an index.


def open_index(location, collection=None, timeout=10.0):
    """The index at ``location``: a FAISS index directory, a Milvus URI, or a directory that
    points to a Milvus collection (written by ``python -m tfhash.index`` with the milvus
    backend and an ``out`` directory)."""
    from tfhash.retrieval.faiss import FaissIndex
    from tfhash.retrieval.milvus import MilvusIndex

    if not location:
        raise UsageError("`index` is required: an index directory or a Milvus URI")
    if is_milvus_uri(location) and not os.path.isdir(location):
        index = MilvusIndex(location, collection or DEFAULT_COLLECTION, timeout)
        if not index.exists():
            raise UsageError(
                f"Milvus at {location} has no tfhash index named "
                f"{index.collection!r}; build one with python -m tfhash.index "
                "and the milvus backend, or name it with `collection`"
            )
        return index
    manifest = read_manifest(location)
    if manifest["backend"] == "milvus":
        index = MilvusIndex(manifest["uri"], collection or manifest["collection"], timeout)
        if not index.exists():
            raise UsageError(
                f"{location} points to Milvus collection {index.collection!r} at "
                f"{manifest['uri']}, which does not exist; rebuild it with "
                "python -m tfhash.index and the milvus backend"
            )
        return index
    return FaissIndex.load(location, manifest)
