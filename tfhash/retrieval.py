r"""Hamming search over packed codes: FAISS in-process, Milvus for a cluster.

An index holds packed binary codes (uint8 ``[N, ⌈K/8⌉]``, ``np.packbits`` order,
as ``python -m tfhash.encode`` writes them) with each item's id, path and,
when known, its labels. Two engines store and search them; this module only
moves codes and item records in and out of them:

* ``faiss`` (the default): an in-process index saved in a directory.
  ``kind="flat"`` is FAISS's exact ``IndexBinaryFlat``; ``kind="multihash"``
  adds FAISS's ``IndexBinaryMultiHash`` for radius search (top-k still scans
  the exact flat storage inside it).
* ``milvus``: a Milvus collection with a ``BINARY_VECTOR`` field under a
  ``BIN_FLAT`` index and the ``HAMMING`` metric, on a server
  (``http://host:19530``) or in a Milvus Lite file (``codes.db``).

Distances are Hamming distances between codes,

    d(q, x) = Σ_j popcount(q_j XOR x_j)    over the ⌈K/8⌉ bytes j,

which is the distance over the K bits, since the padding bits are zero on both
sides.

**Tie rule.** Hamming distances are small integers, so top-k cuts through
groups of items at equal distance. Results are ordered by ``(distance,
position)``, where an item's position is its place in insertion order: items
added earlier come first, and an item deleted and added again moves to the
end. Top-k is therefore exactly the first k items of the stable brute-force
ranking ``np.argsort(d, kind="stable")`` over the items in insertion order.
FAISS's flat search keeps that order itself (a new item replaces the k-th only
when strictly closer); for Milvus, whose order among equal distances is not
specified, the group at the k-th distance is fetched by a range search and
cut by position. Radius search returns every item with ``d <= radius``, in the
same order.

Example:

>>> codes = np.packbits(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], bool), axis=1)
>>> index = FaissIndex(bits=4)
>>> index.add(codes, item_ids=["a", "b", "c"])
>>> hits = index.search(codes[:1], k=2)[0]
>>> hits.item_ids.tolist(), hits.distances.tolist()   # "a" and "c" tie at 0: "a" was added first
(['a', 'c'], [0, 0])

Imports NumPy and the engine's client only; TensorFlow only in
:func:`encode_image_files` (queries by image). See ``docs/search.md``.
"""

import dataclasses
import json
import os
import uuid

import numpy as np

from tfhash.errors import UsageError

MANIFEST = "tfhash_index.json"
LOCK = "tfhash_index.lock"  # held by the command writing the index (lock_index)
FORMAT = "tfhash-hamming-index"
FORMAT_VERSION = 1
BACKENDS = ("faiss", "milvus")
KINDS = ("flat", "multihash")
TIE_RULE = "distance, then position (insertion order; a re-added item moves to the end)"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
DEFAULT_COLLECTION = "tfhash"
MILVUS_MAX_K = 16384  # Milvus's largest topk (and range-search limit) per query
_MILVUS_BATCH = 10000  # rows per insert call, well under gRPC's message limit
# Each byte with its bits in reverse order. FAISS reads the bits of a byte least significant
# first, np.packbits writes them most significant first: FAISS indexes hold reversed bytes, so
# that its bit i is the code's bit i and multi-hash substrings never cover the padding bits.
_REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], np.uint8)


# ---------------------------------------------------------------------------------------------
# Codes and item records.

def as_packed(codes, name, code_bytes=None, bits=None):
    """Query or database codes as packed uint8 rows ``[N, ⌈K/8⌉]``.

    ``uint8`` arrays are read as packed codes (encode's ``*_codes.npy``, the
    serving ``packed`` output); any other integer, bool or float array as one
    column per bit, ±1 or 0/1 (the serving ``codes`` output), packed with
    ``np.packbits(codes > 0, axis=1)``.

    Args:
        codes: the array.
        name: how messages call it (``"--query_codes"``).
        code_bytes: bytes per code the index holds; checked when given.
        bits: K of the index, when known; checked against unpacked codes and
            against set padding bits of packed ones.

    Raises:
        UsageError: not a 2-D binary array, or codes of another length than the index.
    """
    codes = np.asarray(codes)
    if codes.ndim == 1 and codes.dtype == np.uint8 and code_bytes:
        codes = codes.reshape(1, -1) if codes.size == code_bytes else codes
    if codes.ndim != 2 or 0 in codes.shape:
        raise UsageError(f"{name} must be a 2-D array [codes, bytes or bits] with at least one "
                         f"row, got shape {codes.shape}")
    if codes.dtype == np.uint8:
        packed, length = np.ascontiguousarray(codes), None
    else:
        if codes.dtype != bool:
            values = np.unique(codes)
            if not (set(values.tolist()) <= {-1, 1} or set(values.tolist()) <= {0, 1}):
                raise UsageError(f"{name} must be binary: packed uint8 rows, or ±1 / 0/1 "
                                 f"columns, got values {values[:5].tolist()}")
        length = codes.shape[1]
        packed = np.packbits(codes > 0, axis=1)
    if length is not None and code_bytes and not bits and (length + 7) // 8 != code_bytes:
        raise UsageError(f"{name} are {length}-bit codes but the index holds "
                         f"{describe_length(bits, code_bytes)}; query with codes of the model "
                         "the index was built from")
    if bits and length is not None and length != bits:
        raise UsageError(f"{name} are {length}-bit codes but the index holds {bits}-bit codes; "
                         "query with codes of the model the index was built from")
    if code_bytes and packed.shape[1] != code_bytes:
        raise UsageError(f"{name} are {packed.shape[1]}-byte codes (up to {8 * packed.shape[1]} "
                         f"bits) but the index holds {describe_length(bits, code_bytes)}; query with codes of the model "
                         "the index was built from")
    if bits and bits % 8 and length is None and np.any(packed[:, -1] & (0xFF >> (bits % 8))):
        raise UsageError(f"{name} set bits past bit {bits}: they are longer than the index's "
                         f"{bits}-bit codes; query with codes of the model the index was "
                         "built from")
    return packed


def label_sets(labels):
    """Labels as lists of class ids: ``3`` → ``[3]``, a multi-hot row → its set columns."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return [[int(c)] for c in labels]
    return [np.flatnonzero(row).tolist() for row in labels]


@dataclasses.dataclass
class Items:
    """Codes with their records, to add to an index.

    Attributes:
        codes: packed uint8 ``[N, ⌈K/8⌉]``.
        item_ids: ``[N]`` unique strings.
        paths: ``[N]`` image paths (for the gallery); by default the item ids.
        labels: class ids ``[N]`` or multi-hot ``[N, C]``, or ``None``.
        bits: K when known (packed rows do not carry it).
        class_names: the names of the label ids, when known.
    """

    codes: np.ndarray
    item_ids: np.ndarray
    paths: np.ndarray | None = None
    labels: np.ndarray | None = None
    bits: int | None = None
    class_names: list | None = None

    def __post_init__(self):
        self.codes = as_packed(self.codes, "codes", bits=self.bits)
        n = len(self.codes)
        self.item_ids = np.asarray(self.item_ids, dtype=str).reshape(-1)
        self.paths = (self.item_ids.copy() if self.paths is None
                      else np.asarray(self.paths, dtype=str).reshape(-1))
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.ndim not in (1, 2) or not np.issubdtype(self.labels.dtype, np.integer):
                raise UsageError(f"labels must be class ids [N] or multi-hot [N, C] integers, got "
                                 f"{self.labels.dtype} {self.labels.shape}")
        for what, array in (("item ids", self.item_ids), ("paths", self.paths),
                            ("labels", self.labels)):
            if array is not None and len(array) != n:
                raise UsageError(f"{n} codes but {len(array)} {what}; give one per code")
        unique, counts = np.unique(self.item_ids, return_counts=True)
        if len(unique) != n:
            raise UsageError(f"item id {str(unique[counts > 1][0])!r} appears {counts.max()} times; "
                             "item ids must be unique")


def read_encoded(codes, name=None, image_root=None, bits=None):
    """The :class:`Items` of ``python -m tfhash.encode``'s output.

    Args:
        codes: encode's ``--out`` directory, or one ``<name>_codes.npy`` in it.
        name: the prefix of the files (``"database"``); needed when the
            directory holds several sets.
        image_root: directory the item ids are relative to (the image folder
            or the list file's directory); paths become ``image_root/<item id>``.
            Without it, a ``<name>_paths.npy`` next to the codes is used if
            there is one, else the item ids themselves.
        bits: K, when known (packed rows do not carry it); default: encode's
            ``<name>_info.json``, which also gives the class names.
    """
    from tfhash.encode import read_info

    if not codes:
        raise UsageError("--codes is required: the --out directory of python -m tfhash.encode")
    if os.path.isfile(codes):
        if not codes.endswith("_codes.npy"):
            raise UsageError(f"--codes={codes} is not an encode output (<name>_codes.npy); pass "
                             "the --out directory of python -m tfhash.encode")
        directory, name = os.path.dirname(codes) or ".", os.path.basename(codes)[:-10]
    elif os.path.isdir(codes):
        directory = codes
        if name is None:
            names = sorted(f[:-10] for f in os.listdir(codes) if f.endswith("_codes.npy"))
            if not names:
                raise UsageError(f"--codes={codes} holds no <name>_codes.npy; pass the --out "
                                 "directory of python -m tfhash.encode")
            if len(names) > 1:
                raise UsageError(f"--codes={codes} holds several sets ({', '.join(names)}); "
                                 "choose one with --name")
            name = names[0]
    else:
        raise UsageError(f"--codes={codes} does not exist; pass the --out directory of "
                         "python -m tfhash.encode")
    prefix = os.path.join(directory, name)

    def load(part, required=True):
        path = f"{prefix}_{part}.npy"
        if not os.path.isfile(path):
            if required:
                raise UsageError(f"{path} is missing; pass a complete python -m tfhash.encode "
                                 "output")
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UsageError(f"{path} is not a readable .npy array ({e})") from None

    packed = load("codes")
    if packed.dtype != np.uint8:
        raise UsageError(f"{prefix}_codes.npy must hold packed uint8 codes, got {packed.dtype}")
    item_ids = load("item_ids")
    paths = load("paths", required=False)
    if image_root:
        if not os.path.isdir(image_root):
            raise UsageError(f"--image_root={image_root} is not a directory; pass the image "
                             "folder (or the list file's directory) the item ids are relative to")
        root = os.path.abspath(image_root)
        paths = np.array([os.path.join(root, str(i)) for i in item_ids])
    info = read_info(f"{prefix}_codes.npy")
    return Items(packed, item_ids, paths, load("labels", required=False),
                 bits or info.get("bits"), info.get("class_names"))


@dataclasses.dataclass
class Hits:
    """The results of one query, in the order of the tie rule (distance, then position)."""

    distances: np.ndarray
    positions: np.ndarray
    item_ids: np.ndarray
    paths: np.ndarray
    labels: list | None

    def __len__(self):
        return len(self.distances)

    def records(self):
        """JSON-ready ``[{"rank", "item_id", "path", "distance"[, "labels"]}]``."""
        out = []
        for rank in range(len(self)):
            record = {"rank": rank + 1, "item_id": str(self.item_ids[rank]),
                      "path": str(self.paths[rank]), "distance": int(self.distances[rank])}
            if self.labels is not None:
                record["labels"] = self.labels[rank]
            out.append(record)
        return out


def _ordered(distances, positions):
    order = np.lexsort((positions, distances))
    return np.asarray(distances, np.int64)[order], np.asarray(positions, np.int64)[order]


def describe_length(bits, code_bytes):
    """``"12-bit codes"``, or ``"2-byte codes"`` when only the packed width is known."""
    return f"{bits}-bit codes" if bits else f"{code_bytes}-byte codes (up to {8 * code_bytes} bits)"


def check_k(k, size):
    """Raises :class:`UsageError` unless ``1 <= k <= size``."""
    if k is None or k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    if k > size:
        raise UsageError(f"--k={k} is larger than the index ({size} items); ask for at most "
                         f"{size}, or use --radius for every item within a distance")


def check_radius(radius):
    """Raises :class:`UsageError` for a negative radius."""
    if radius < 0:
        raise UsageError(f"--radius must be 0 or more (Hamming distance), got {radius}")


# ---------------------------------------------------------------------------------------------
# Where an index lives.

def is_milvus_uri(location):
    """Whether ``location`` names a Milvus server (``scheme://…``) or a Milvus Lite file (``.db``)."""
    return "://" in location or location.endswith(".db")


def read_manifest(directory):
    """The manifest of an index directory; :class:`UsageError` if it is not an index."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise UsageError(f"--index={directory} does not exist; build an index with "
                         "python -m tfhash.index, or pass a Milvus URI")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{directory} is not a tfhash index (no {MANIFEST}); build one with "
                         "python -m tfhash.index") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not readable JSON ({e}); rebuild the index with "
                         "python -m tfhash.index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(f"{path} is not a tfhash index manifest; rebuild the index with "
                         "python -m tfhash.index")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise UsageError(f"{directory} was written by a newer tfhash (format "
                         f"{manifest['version']}); upgrade tfhash to read it")
    return manifest


def _write_json_atomically(path, value):
    partial = os.path.join(os.path.dirname(path), f".partial-{uuid.uuid4().hex}.json")
    try:
        with open(partial, "w") as f:
            json.dump(value, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:  # a full disk, an interrupt: no partial file stays behind
        _remove(partial)
        raise


def _remove(*paths):
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


def _is_leftover(name):
    """Files an interrupted build of ours can leave behind."""
    return name.startswith((".partial-", "codes-", "items-"))


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
            locks.held.append(DirectoryLock(os.path.join(out, LOCK), f"index {out}",
                                            fix).acquire())
        if uri and uri.endswith(".db") and "://" not in uri:
            path = MilvusIndex.normalise_uri(uri)
            if os.path.isdir(os.path.dirname(path)):
                lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tfhash.lock")
                locks.held.append(DirectoryLock(lock, f"Milvus Lite file {uri}", fix).acquire())
    except BaseException:
        locks.release()
        raise
    return locks


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


def check_index_dir(directory):
    """Refuses an ``--out`` that exists and is neither an index nor an empty directory."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"--out={directory} is a file; pass a directory for the index")
    if os.path.isdir(directory) and not os.path.exists(os.path.join(directory, MANIFEST)):
        foreign = [n for n in os.listdir(directory) if not _is_leftover(n) and n != LOCK]
        if foreign:
            raise UsageError(f"--out={directory} exists and is not a tfhash index (it holds "
                             f"{foreign[0]!r} and no {MANIFEST}); pass a new or empty directory")


def open_index(location, collection=None, timeout=10.0):
    """The index at ``location``: a FAISS index directory, a Milvus URI, or a directory that
    points to a Milvus collection (written by ``python -m tfhash.index --backend=milvus --out``)."""
    if not location:
        raise UsageError("--index is required: an index directory or a Milvus URI")
    if is_milvus_uri(location) and not os.path.isdir(location):
        index = MilvusIndex(location, collection or DEFAULT_COLLECTION, timeout)
        if not index.exists():
            raise UsageError(f"Milvus at {location} has no tfhash index named "
                             f"{index.collection!r}; build one with python -m tfhash.index "
                             "--backend=milvus, or name it with --collection")
        return index
    manifest = read_manifest(location)
    if manifest["backend"] == "milvus":
        index = MilvusIndex(manifest["uri"], collection or manifest["collection"], timeout)
        if not index.exists():
            raise UsageError(f"{location} points to Milvus collection {index.collection!r} at "
                             f"{manifest['uri']}, which does not exist; rebuild it with "
                             "python -m tfhash.index --backend=milvus")
        return index
    return FaissIndex.load(location, manifest)


# ---------------------------------------------------------------------------------------------
# FAISS.

def _faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError("the faiss backend needs FAISS: pip install faiss-cpu") from None
    return faiss


class FaissIndex:
    """Packed codes in a FAISS binary index, with item records, saved in a directory.

    On disk (``save``): ``tfhash_index.json`` (the manifest: backend, kind,
    bits, size and the names of the two files below), ``codes-<gen>.faissindex``
    (``faiss.write_index_binary``) and ``items-<gen>.npz`` (item ids, paths,
    labels, in position order). A save writes new files under a fresh
    generation name and then replaces the manifest with one ``os.replace``, so
    an interrupted build leaves the previous index readable as it was.

    Args:
        bits: K, the code length (the index holds ⌈K/8⌉ bytes per code).
        kind: ``"flat"`` (exact) or ``"multihash"`` (FAISS's multi-index hashing
            for radius search: ``nhash`` tables over disjoint ``hash_bits``-bit
            substrings, probing codes within ``nflip`` bits in each).
        nhash, hash_bits, nflip: the multi-hash settings; by default
            ``nhash = max(1, K // 16)`` tables of ``K // nhash`` bits, ``nflip = 1``.

    Radius search with multi-hash is exact for ``radius <= nhash * (nflip + 1) - 1``
    (pigeonhole: an item within that radius differs from the query in at most
    ``nflip`` bits of one substring) and may miss items beyond it.
    """

    backend = "faiss"

    def __init__(self, bits=None, kind="flat", nhash=None, hash_bits=None, nflip=None,
                 code_bytes=None):
        if bits is None and code_bytes is None:
            raise UsageError("give the code length: bits (K) or code_bytes (⌈K/8⌉)")
        if bits is not None and bits < 1:
            raise UsageError(f"--bits must be at least 1, got {bits}")
        if kind not in KINDS:
            raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.bits = None if bits is None else int(bits)
        self.code_bytes = int(code_bytes) if bits is None else (self.bits + 7) // 8
        width = self.bits or 8 * self.code_bytes
        self.kind = kind
        self.multihash = None
        if kind == "multihash":
            nhash = nhash or max(1, width // 16)
            hash_bits = hash_bits or width // nhash
            nflip = 1 if nflip is None else nflip
            if nhash < 1 or hash_bits < 1 or nhash * hash_bits > width \
                    or hash_bits > 63 or nflip < 0:
                raise UsageError(f"--nhash={nhash} tables of --hash_bits={hash_bits} bits do "
                                 f"not fit {width}-bit codes; need nhash * hash_bits <= "
                                 f"{width}, hash_bits <= 63, nflip >= 0")
            self.multihash = {"nhash": int(nhash), "hash_bits": int(hash_bits),
                              "nflip": int(nflip)}
        self._codes = np.empty((0, self.code_bytes), np.uint8)
        self.item_ids = np.empty(0, str)
        self.paths = np.empty(0, str)
        self.labels = None
        self._engine = None
        self._lookup = None

    @property
    def size(self):
        return len(self._codes)

    def describe(self):
        """A one-line description for messages."""
        kind = "" if self.kind == "flat" else f" multi-hash {self.multihash}"
        return f"faiss{kind}: {self.size} items, {describe_length(self.bits, self.code_bytes)}"

    # -- building --

    def add(self, codes, item_ids, paths=None, labels=None, replace=False):
        """Appends items (at the end of the position order).

        Args:
            codes: packed uint8 ``[N, ⌈K/8⌉]`` or ±1 / 0/1 ``[N, K]``.
            item_ids: ``[N]`` unique ids, not yet in the index (unless ``replace``).
            paths, labels: see :class:`Items`.
            replace: items whose id is already indexed are deleted first, so
                they move to the end with their new code.
        """
        items = codes if isinstance(codes, Items) else Items(codes, item_ids, paths, labels)
        packed = as_packed(items.codes, "codes", self.code_bytes, self.bits)
        if items.labels is not None and self.labels is not None \
                and (items.labels.ndim != self.labels.ndim
                     or items.labels.shape[1:] != self.labels.shape[1:]):
            raise UsageError(f"labels of shape {items.labels.shape[1:] or 'class ids'} do not "
                             f"match the index's {self.labels.shape[1:] or 'class ids'}; index "
                             "collections with the same label layout together")
        if self.size and (items.labels is None) != (self.labels is None):
            raise UsageError("the index holds items with labels and these have none (or the "
                             "other way round); give every item labels, or none")
        present = np.isin(items.item_ids, self.item_ids)
        if present.any():
            if not replace:
                raise UsageError(f"{present.sum()} item ids are already in the index (first: "
                                 f"{str(items.item_ids[present][0])!r}); pass --replace to re-add "
                                 "them, or --delete them first")
            self.delete(items.item_ids[present])
        self._codes = np.concatenate([self._codes, packed])
        self.item_ids = np.concatenate([self.item_ids, items.item_ids])
        self.paths = np.concatenate([self.paths, items.paths])
        if items.labels is not None:
            self.labels = (items.labels if self.labels is None
                           else np.concatenate([self.labels, items.labels]))
        self._engine = self._lookup = None

    def delete(self, item_ids):
        """Deletes items by id; the others keep their relative order. Returns how many."""
        item_ids = np.asarray(item_ids, dtype=str).reshape(-1)
        missing = item_ids[~np.isin(item_ids, self.item_ids)]
        if len(missing):
            raise UsageError(f"{len(missing)} item ids to delete are not in the index (first: "
                             f"{str(missing[0])!r}); delete ids the index holds")
        keep = ~np.isin(self.item_ids, item_ids)
        self._codes, self.item_ids, self.paths = (self._codes[keep], self.item_ids[keep],
                                                  self.paths[keep])
        if self.labels is not None:
            self.labels = self.labels[keep]
        self._engine = self._lookup = None
        return int((~keep).sum())

    def codes(self):
        """The packed codes, uint8 ``[N, ⌈K/8⌉]``, in position order."""
        return self._codes

    def engine(self):
        """The FAISS index over the codes (built on first use after a change)."""
        if self._engine is None:
            faiss = _faiss()
            if self.kind == "flat":
                engine = faiss.IndexBinaryFlat(8 * self.code_bytes)
            else:
                engine = faiss.IndexBinaryMultiHash(8 * self.code_bytes,
                                                    self.multihash["nhash"],
                                                    self.multihash["hash_bits"])
                engine.nflip = self.multihash["nflip"]
            if self.size:
                engine.add(_REVERSED[self._codes])
            self._engine = engine
        return self._engine

    def _flat(self):
        engine = self.engine()
        if self.kind == "flat":
            return engine
        return _faiss().downcast_IndexBinary(engine.storage)

    # -- searching --

    def _hits(self, distances, positions):
        labels = None if self.labels is None else label_sets(self.labels[positions])
        return Hits(distances, positions, self.item_ids[positions], self.paths[positions],
                    labels)

    def search(self, queries, k):
        """Top-k by Hamming distance for each query: a list of :class:`Hits`, ties by position."""
        check_k(k, self.size)
        queries = as_packed(queries, "query codes", self.code_bytes, self.bits)
        distances, positions = self._flat().search(_REVERSED[queries], k)
        return [self._hits(*_ordered(d, p)) for d, p in zip(distances, positions)]

    def radius_search(self, queries, radius):
        """Every item within Hamming distance ``radius`` (inclusive) of each query."""
        check_radius(radius)
        queries = as_packed(queries, "query codes", self.code_bytes, self.bits)
        if not self.size:
            return [self._hits(np.empty(0, np.int64), np.empty(0, np.int64)) for _ in queries]
        # FAISS's range search keeps d < radius.
        lims, distances, positions = self.engine().range_search(_REVERSED[queries],
                                                                int(radius) + 1)
        return [self._hits(*_ordered(distances[a:b], positions[a:b]))
                for a, b in zip(lims[:-1], lims[1:])]

    # -- on disk --

    def manifest(self, files=None):
        return {"format": FORMAT, "version": FORMAT_VERSION, "backend": "faiss",
                "kind": self.kind, "multihash": self.multihash, "bits": self.bits,
                "code_bytes": self.code_bytes, "size": self.size,
                "labels": None if self.labels is None else list(self.labels.shape[1:]),
                "tie_rule": TIE_RULE, "faiss_bytes": "bit-reversed np.packbits rows",
                "files": files}

    def save(self, directory):
        """Writes the index into ``directory`` atomically (see the class docstring)."""
        check_index_dir(directory)
        faiss = _faiss()
        os.makedirs(directory, exist_ok=True)
        generation = uuid.uuid4().hex[:12]
        files = {"codes": f"codes-{generation}.faissindex", "items": f"items-{generation}.npz"}
        partial = {key: f".partial-{name}" for key, name in files.items()}
        written = [os.path.join(directory, name) for name in [*partial.values(), *files.values()]]
        try:
            faiss.write_index_binary(self.engine(), os.path.join(directory, partial["codes"]))
            arrays = {"item_ids": self.item_ids, "paths": self.paths}
            if self.labels is not None:
                arrays["labels"] = self.labels
            with open(os.path.join(directory, partial["items"]), "wb") as f:
                np.savez(f, **arrays)
            for key in files:
                path = os.path.join(directory, partial[key])
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(path, os.path.join(directory, files[key]))
            _write_json_atomically(os.path.join(directory, MANIFEST), self.manifest(files))
        except BaseException:  # the previous manifest and its files stay; this try's go
            _remove(*written)
            raise
        for name in os.listdir(directory):  # the previous generation, and any leftovers
            if _is_leftover(name) and name not in files.values():
                os.remove(os.path.join(directory, name))

    @classmethod
    def load(cls, directory, manifest=None):
        """Reads an index written by :meth:`save`."""
        manifest = manifest or read_manifest(directory)
        if manifest.get("backend") != "faiss":
            raise UsageError(f"{directory} holds a {manifest.get('backend')} index, not faiss")
        faiss = _faiss()
        index = cls(manifest["bits"], manifest["kind"], code_bytes=manifest["code_bytes"],
                    **(manifest["multihash"] or {}))
        try:
            engine = faiss.read_index_binary(os.path.join(directory, manifest["files"]["codes"]))
            with np.load(os.path.join(directory, manifest["files"]["items"]),
                         allow_pickle=False) as items:
                index.item_ids, index.paths = items["item_ids"], items["paths"]
                index.labels = items["labels"] if "labels" in items else None
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise UsageError(f"{directory}: the index files are unreadable ({str(e).strip()[:200]}"
                             "); rebuild the index with python -m tfhash.index") from None
        # read_index_binary returns the concrete class, and owns it: no downcast of it here.
        flat = engine if index.kind == "flat" else faiss.downcast_IndexBinary(engine.storage)
        index._codes = _REVERSED[faiss.vector_to_array(flat.xb).reshape(-1, index.code_bytes)]
        if len(index._codes) != len(index.item_ids) or engine.d != 8 * index.code_bytes:
            raise UsageError(f"{directory}: the codes and item records disagree; rebuild the "
                             "index with python -m tfhash.index")
        index._engine = engine
        return index


# ---------------------------------------------------------------------------------------------
# Milvus.

def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise UsageError("the milvus backend needs pymilvus (and milvus-lite for a .db file): "
                         "pip install 'tfhash[milvus]'") from None
    import logging

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # errors become UsageError lines
    return pymilvus


def _quote(values):
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


class MilvusIndex:
    """Packed codes in a Milvus collection: the same operations as :class:`FaissIndex`.

    The collection ``<collection>`` has a primary key ``seq`` (INT64, the
    item's position), ``code`` (BINARY_VECTOR of 8·⌈K/8⌉ dimensions, index
    ``BIN_FLAT``, metric ``HAMMING``), ``item_id``, ``path`` and ``labels``
    (JSON list of class ids) VARCHAR fields. A second collection
    ``<collection>_tfhash_meta`` holds the manifest: the bits, the size and the
    committed ``next_seq``. Searches only see items with ``seq < next_seq``: an
    append inserts rows past it and raises it when every row is in, so an
    interrupted append leaves the previous index as it was (its rows are
    removed by the next append).

    A delete (and the old rows of a ``replace``) is committed the same way: the
    positions to delete are written to the meta collection, then one manifest
    write commits the new size with them as ``pending``; searches leave pending
    positions out; only then are the rows removed and ``pending`` cleared. A
    delete interrupted before its commit changed nothing; one interrupted after
    it is complete for every search, and the next write removes its rows
    (positions are never reused, so removing them late is safe). A command that
    deletes and appends commits both in one manifest write.

    Args:
        uri: ``http://host:19530`` (a server or cluster proxy) or a local
            ``.db`` file (Milvus Lite, started in-process).
        collection: the collection name.
        timeout: seconds to wait for the server to answer.
    """

    backend = "milvus"

    def __init__(self, uri, collection=DEFAULT_COLLECTION, timeout=10.0):
        pymilvus = _pymilvus()
        if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
            raise UsageError(f"--collection={collection!r} is not a Milvus collection name; use "
                             "letters, digits and underscores, starting with a letter")
        uri = self.normalise_uri(uri)
        if uri.endswith(".db") and "://" not in uri and not os.path.isdir(os.path.dirname(uri)):
            raise UsageError(f"the directory of the Milvus Lite file {uri} does not exist; "
                             "create it first")
        self.uri, self.collection, self.meta = uri, collection, f"{collection}_tfhash_meta"
        self.timeout = timeout
        try:
            self.client = pymilvus.MilvusClient(uri=uri, timeout=timeout)
            self.client.list_collections(timeout=timeout)
        except Exception as e:  # noqa: BLE001 -- connection errors come as several types
            reason = str(getattr(e, "message", "") or e or type(e).__name__).splitlines()[0]
            if uri.endswith(".db") and "://" not in uri:  # Milvus Lite: one process per file
                raise UsageError(f"the Milvus Lite file {uri} cannot be opened ({reason[:160]}); "
                                 "Milvus Lite lets one process at a time open a file: wait "
                                 "for the other command to finish") from None
            raise UsageError(f"Milvus at {uri} does not answer within {timeout:g} s "
                             f"({reason[:160]}); start the server or fix --uri") from None
        self._manifest = None
        self._stage = None  # a delete staged for the next add (delete(commit=False))
        self._pending_cache = (None, [])

    @staticmethod
    def normalise_uri(uri):
        """A Milvus Lite file as an absolute path; a server URI as it is."""
        return os.path.abspath(uri) if uri.endswith(".db") and "://" not in uri else uri

    # -- the manifest --

    def save_pointer(self, directory):
        """Writes a directory that ``open_index`` resolves to this collection."""
        check_index_dir(directory)
        os.makedirs(directory, exist_ok=True)
        _write_json_atomically(os.path.join(directory, MANIFEST), {
            "format": FORMAT, "version": FORMAT_VERSION, "backend": "milvus", "uri": self.uri,
            "collection": self.collection, "bits": self.bits, "code_bytes": self.code_bytes,
            "tie_rule": TIE_RULE})

    def exists(self):
        return (self.client.has_collection(self.collection)
                and self.client.has_collection(self.meta))

    def manifest(self):
        if self._manifest is None:
            rows = self.client.query(self.meta, filter='key == "manifest"',
                                     output_fields=["value"])
            if not rows:
                raise UsageError(f"Milvus collection {self.meta} has no manifest; rebuild the "
                                 "index with python -m tfhash.index --backend=milvus")
            self._manifest = json.loads(rows[0]["value"])
        return self._manifest

    def _commit(self, manifest):
        self.client.upsert(self.meta, [{"key": "manifest", "value": json.dumps(manifest),
                                        "dummy": b"\x00"}])
        self._manifest = manifest

    # -- deletes, committed before their rows go (see the class docstring) --

    _PENDING_ROWS = 5000  # positions per meta row (its value holds at most 65,535 characters)

    def _pending(self):
        """The positions a committed delete has not yet removed (usually none)."""
        pending = self.manifest().get("pending")
        if not pending:
            return []
        if getattr(self, "_pending_cache", (None,))[0] != pending["txn"]:
            keys = _quote(f"pending-{pending['txn']}-{i}" for i in range(pending["chunks"]))
            rows = self.client.query(self.meta, filter=f"key in {keys}",
                                     output_fields=["key", "value"])
            seqs = sorted(s for row in rows for s in json.loads(row["value"]))
            if len(seqs) != pending["count"]:
                raise UsageError(f"Milvus collection {self.meta} lost part of a delete's record; "
                                 "rebuild the index with python -m tfhash.index")
            self._pending_cache = (pending["txn"], seqs)
        return self._pending_cache[1]

    def _finish(self, manifest, doomed):
        """Commits ``manifest`` with the positions ``doomed`` deleted, then removes their rows."""
        manifest = {k: v for k, v in manifest.items() if k != "pending"}
        if doomed:
            txn = uuid.uuid4().hex[:12]
            chunks = [doomed[i:i + self._PENDING_ROWS]
                      for i in range(0, len(doomed), self._PENDING_ROWS)]
            self.client.upsert(self.meta, [{"key": f"pending-{txn}-{i}", "value": json.dumps(c),
                                            "dummy": b"\x00"} for i, c in enumerate(chunks)])
            manifest["pending"] = {"txn": txn, "chunks": len(chunks), "count": len(doomed)}
        self._commit(manifest)  # the commit point
        self._recover()

    def _recover(self):
        """Removes the rows of a committed delete and clears it; drops the records of deletes
        that never committed. Every write starts (and a delete ends) with it."""
        manifest = self.manifest()
        seqs = self._pending()
        for start in range(0, len(seqs), 10000):
            self.client.delete(self.collection, filter=f"seq in {seqs[start:start + 10000]}")
        if seqs:
            self._commit({k: v for k, v in manifest.items() if k != "pending"})
        self.client.delete(self.meta, filter='key like "pending-%"')

    @property
    def bits(self):
        return self.manifest()["bits"]

    @property
    def code_bytes(self):
        return self.manifest()["code_bytes"]

    @property
    def size(self):
        return self.manifest()["size"]

    @property
    def labels(self):
        return self.manifest()["labels"]

    def describe(self):
        return (f"milvus {self.uri} collection {self.collection}: {self.size} items, "
                f"{describe_length(self.bits, self.code_bytes)}")

    def create(self, bits=None, code_bytes=None):
        """Creates the collections for codes of ``bits`` bits (or ``code_bytes`` bytes, when the
        exact length is not known), dropping any of the same names."""
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        code_bytes = code_bytes if bits is None else (int(bits) + 7) // 8
        for name in (self.collection, self.meta):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                                     description="tfhash Hamming index")
        schema.add_field("seq", DataType.INT64, is_primary=True)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=8 * code_bytes)
        schema.add_field("item_id", DataType.VARCHAR, max_length=4096)
        schema.add_field("path", DataType.VARCHAR, max_length=4096)
        schema.add_field("labels", DataType.VARCHAR, max_length=8192)
        params = self.client.prepare_index_params()
        params.add_index(field_name="code", index_type="BIN_FLAT", metric_type="HAMMING")
        self.client.create_collection(self.collection, schema=schema, index_params=params,
                                      consistency_level="Strong")
        meta = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
        meta.add_field("value", DataType.VARCHAR, max_length=65535)
        meta.add_field("dummy", DataType.BINARY_VECTOR, dim=8)  # Milvus needs a vector field
        params = self.client.prepare_index_params()
        params.add_index(field_name="dummy", index_type="BIN_FLAT", metric_type="HAMMING")
        self.client.create_collection(self.meta, schema=meta, index_params=params,
                                      consistency_level="Strong")
        self._commit({"format": FORMAT, "version": FORMAT_VERSION, "backend": "milvus",
                      "bits": None if bits is None else int(bits), "code_bytes": code_bytes, "size": 0, "next_seq": 0,
                      "labels": None, "tie_rule": TIE_RULE})

    def _visible(self, extra=None):
        condition = f"seq < {self.manifest()['next_seq']}"
        pending = self._pending()
        if pending:  # a committed delete whose rows are still there
            condition += f" and seq not in {pending}"
        return condition if extra is None else f"{condition} and {extra}"

    def _present(self, item_ids):
        found = {}
        for start in range(0, len(item_ids), 1000):
            rows = self.client.query(
                self.collection, filter=self._visible(f"item_id in {_quote(item_ids[start:start + 1000])}"),
                output_fields=["seq", "item_id"])
            found.update((row["item_id"], row["seq"]) for row in rows)
        return found

    def add(self, codes, item_ids, paths=None, labels=None, replace=False):
        """Appends items; see :meth:`FaissIndex.add`. Commits with any delete staged before it
        (:meth:`delete` with ``commit=False``)."""
        manifest, doomed = self._staged()
        items = codes if isinstance(codes, Items) else Items(codes, item_ids, paths, labels)
        packed = as_packed(items.codes, "codes", manifest["code_bytes"], manifest["bits"])
        staged = set(doomed)
        present = {i: s for i, s in self._present(items.item_ids.tolist()).items()
                   if s not in staged}
        if present and not replace:
            raise UsageError(f"{len(present)} item ids are already in the index (first: "
                             f"{next(iter(present))!r}); pass --replace to re-add them, or "
                             "--delete them first")
        layout = None if items.labels is None else list(items.labels.shape[1:])
        if manifest["size"] and layout != manifest["labels"]:
            raise UsageError(f"labels {layout} do not match the index's {manifest['labels']} "
                             "(null: none, []: class ids, [C]: multi-hot); index collections "
                             "with the same label layout together")
        start = manifest["next_seq"]
        # Rows an interrupted append left past next_seq are invisible; clear them first.
        self.client.delete(self.collection, filter=f"seq >= {start}")
        sets = label_sets(items.labels)
        for first in range(0, len(packed), _MILVUS_BATCH):
            rows = [{"seq": start + i, "code": packed[i].tobytes(),
                     "item_id": str(items.item_ids[i]), "path": str(items.paths[i]),
                     "labels": json.dumps(sets[i] if sets is not None else None)}
                    for i in range(first, min(first + _MILVUS_BATCH, len(packed)))]
            self.client.insert(self.collection, rows)
        manifest = dict(manifest, size=manifest["size"] - len(present) + len(packed),
                        next_seq=start + len(packed), labels=layout)
        self._finish(manifest, doomed + sorted(present.values()))

    def delete(self, item_ids, commit=True):
        """Deletes items by id; see :meth:`FaissIndex.delete`. With ``commit=False`` the delete
        is staged and commits with the next :meth:`add`, in one manifest write."""
        manifest, doomed = self._staged()
        item_ids = [str(i) for i in np.asarray(item_ids, dtype=str).reshape(-1)]
        staged = set(doomed)
        present = {i: s for i, s in self._present(item_ids).items() if s not in staged}
        missing = [i for i in item_ids if i not in present]
        if missing:
            raise UsageError(f"{len(missing)} item ids to delete are not in the index (first: "
                             f"{missing[0]!r}); delete ids the index holds")
        manifest = dict(manifest, size=manifest["size"] - len(present))
        doomed = doomed + sorted(present.values())
        if commit:
            self._finish(manifest, doomed)
        else:
            self._stage = (manifest, doomed)
        return len(present)

    def _staged(self):
        """``(manifest, positions to delete)`` of the write in progress: a delete staged by
        ``delete(commit=False)``, or the committed state once an earlier write is recovered."""
        stage, self._stage = getattr(self, "_stage", None), None
        if stage is not None:
            return stage
        self._recover()
        return dict(self.manifest()), []

    # -- searching --

    def _search(self, queries, limit, lo=None, hi=None, condition=None):
        params = {"metric_type": "HAMMING"}
        if lo is not None:  # Milvus's HAMMING range search keeps range_filter <= d < radius
            params["params"] = {"radius": int(hi) + 1, "range_filter": int(lo)}
        results = self.client.search(self.collection, data=[q.tobytes() for q in queries],
                                     limit=limit, filter=self._visible(condition),
                                     search_params=params, output_fields=[])
        return [(np.array([h["distance"] for h in hits], np.int64),
                 np.array([h["id"] for h in hits], np.int64)) for hits in results]

    def _range(self, query, lo, hi, seq_lo, seq_hi, want=None):
        """``(distances, seqs)`` of every item with ``lo <= d <= hi`` and ``seq_lo <= seq <
        seq_hi``, by position; only the first ``want`` when given. Milvus returns at most
        MILVUS_MAX_K items per search, so a full answer splits the position range in two."""
        distances, seqs = self._search([query], MILVUS_MAX_K, lo, hi,
                                       f"seq >= {seq_lo} and seq < {seq_hi}")[0]
        if len(seqs) < MILVUS_MAX_K or seq_hi - seq_lo <= 1:
            order = np.argsort(seqs)
            return distances[order][:want], seqs[order][:want]
        middle = (seq_lo + seq_hi) // 2
        left = self._range(query, lo, hi, seq_lo, middle, want)
        if want is not None and len(left[1]) >= want:
            return left
        right = self._range(query, lo, hi, middle, seq_hi,
                            None if want is None else want - len(left[1]))
        return np.concatenate([left[0], right[0]]), np.concatenate([left[1], right[1]])

    def _hits(self, found):
        seqs = sorted({int(s) for _, positions in found for s in positions})
        records = {}
        for start in range(0, len(seqs), 1000):
            for row in self.client.query(self.collection,
                                         filter=f"seq in {seqs[start:start + 1000]}",
                                         output_fields=["seq", "item_id", "path", "labels"]):
                records[row["seq"]] = row
        hits = []
        for distances, positions in found:
            distances, positions = _ordered(distances, positions)
            rows = [records[int(s)] for s in positions]
            labels = None if self.labels is None else [json.loads(r["labels"]) for r in rows]
            hits.append(Hits(distances, positions, np.array([r["item_id"] for r in rows], str),
                             np.array([r["path"] for r in rows], str), labels))
        return hits

    def search(self, queries, k):
        """Top-k with the tie rule: Milvus's top-k fixes the k-th distance d_k and every item
        closer; the items at d_k are then taken by position from a range search."""
        check_k(k, self.size)
        if k > MILVUS_MAX_K - 1:
            raise UsageError(f"--k={k} is more than Milvus returns per query "
                             f"({MILVUS_MAX_K - 1}); ask for fewer")
        queries = as_packed(queries, "query codes", self.code_bytes, self.bits)
        limit = min(k + 1, self.size)
        found = []
        for start in range(0, len(queries), 256):
            chunk = queries[start:start + 256]
            for query, (distances, seqs) in zip(chunk, self._search(chunk, limit)):
                distances, seqs = _ordered(distances, seqs)
                last = distances[k - 1]
                if len(distances) == k or distances[k] > last:  # no tie across the cut
                    found.append((distances[:k], seqs[:k]))
                    continue
                closer = distances < last
                need = k - int(closer.sum())
                tied = self._range(query, last, last, 0, self.manifest()["next_seq"], need)
                found.append((np.concatenate([distances[closer], tied[0]]),
                              np.concatenate([seqs[closer], tied[1]])))
        return self._hits(found)

    def radius_search(self, queries, radius):
        """Every item within Hamming distance ``radius`` (inclusive) of each query."""
        check_radius(radius)
        queries = as_packed(queries, "query codes", self.code_bytes, self.bits)
        end = self.manifest()["next_seq"]
        return self._hits([self._range(q, 0, int(radius), 0, end) for q in queries])

    def close(self):
        self.client.close()


# ---------------------------------------------------------------------------------------------
# Queries by image.

def image_files(images):
    """The image files of ``--images``: comma-separated files, or a folder (searched
    recursively, sorted by path)."""
    if not images:
        raise UsageError("--images is empty; pass image files or a folder of images")
    entries = images if isinstance(images, (list, tuple)) else images.split(",")
    files = []
    for entry in entries:
        if os.path.isdir(entry):
            found = sorted(os.path.join(top, name) for top, _, names in os.walk(entry)
                           for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise UsageError(f"--images={entry} holds no images "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            raise UsageError(f"--images: {entry} does not exist; pass image files or a folder")
    return files


def graph_error_reason(message):
    """The line of a TensorFlow graph error that says what went wrong (the first line is
    "Graph execution error:", then where, then the reason)."""
    lines = [line.strip() for line in message.strip().splitlines()]
    reasons = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "<stack traces", "[["))]
    return (reasons or lines or ["unknown error"])[0][:160]


def encode_image_files(model, files, batch_size=64):
    """Packed codes of image files through an exported model's ``encode_images`` signature.

    The files' bytes go to the SavedModel, which decodes and resizes them in its
    graph exactly as training did, so the codes equal those ``python -m
    tfhash.encode`` writes for the same images.

    Args:
        model: an export directory (its highest version) or a version directory.
        files: image file paths.
        batch_size: images per call.

    Returns:
        ``(packed uint8 [N, ⌈K/8⌉], K)``.

    Raises:
        UsageError: no SavedModel, or a file the model cannot decode (named).
    """
    from tfhash import serving

    version_dir = serving.resolve_version_dir(model)
    from tfhash import cli

    tf = cli.import_tensorflow()  # only queries by image need TensorFlow

    signatures = tf.saved_model.load(version_dir).signatures
    if serving.BYTES_SIGNATURE not in signatures:
        raise UsageError(f"{version_dir} has no {serving.BYTES_SIGNATURE} signature; export "
                         "the model again with python -m tfhash.export")
    encode = signatures[serving.BYTES_SIGNATURE]
    bits = int(encode.structured_outputs["codes"].shape[1])

    def run(batch):
        contents = []
        for path in batch:
            with open(path, "rb") as f:
                contents.append(f.read())
        return encode(image_bytes=tf.constant(contents))["packed"].numpy()

    packed = []
    for start in range(0, len(files), batch_size):
        batch = files[start:start + batch_size]
        try:
            packed.append(run(batch))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            for path in batch:  # name the file the model cannot take
                try:
                    run([path])
                except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
                    reason = graph_error_reason(e.message)
                    if "too small to encode" in reason:  # "image smaller than 8 x 8 pixels"
                        size = reason.split("smaller than ")[1].split(" pixels")[0]
                        raise UsageError(f"--images: {path} is smaller than {size} pixels, too "
                                         "small to encode; leave it out") from None
                    raise UsageError(f"--images: the model cannot decode {path} ({reason}); "
                                     "pass JPEG, PNG, BMP, GIF or WebP images") from None
            raise
    return np.concatenate(packed), bits
