r"""Packed codes, item records and the files ``python -m tfhash.encode`` writes.

Codes are packed binary rows, uint8 ``[N, ⌈K/8⌉]`` in ``np.packbits`` order (bit 0 of a code is
the most significant bit of its first byte; the padding bits of the last byte are zero).

This module is the one owner of encode's output names: for a set ``<name>`` in a directory,

    <name>_codes.npy      packed codes, uint8 [N, ⌈K/8⌉]
    <name>_labels.npy     labels, int [N] or multi-hot [N, C]
    <name>_item_ids.npy   the collection's item ids [N]
    <name>_paths.npy      absolute image paths [N] (image folders and list files only)
    <name>_info.json      the code length K, the class names, the model and the data

:func:`write_encoded` writes them, :func:`read_encoded` reads a set back as :class:`Items`, and
:func:`beside` / :func:`read_info` find the files next to a ``<name>_codes.npy``.

Errors name the function's arguments (``k=0``, ```images```); a command rewords them as its
flags (:func:`tfhash.cli.as_flags`).
"""

import dataclasses
import json
import os

import numpy as np

from tfhash.errors import UsageError

PARTS = ("codes", "labels", "item_ids", "paths")  # the <name>_<part>.npy arrays
INFO = "info.json"  # <name>_info.json
_CODES = "_codes.npy"


# ---------------------------------------------------------------------------------------------
# Encode's files.


def output_files(directory, name):
    """Every file encode writes for the set ``name`` in ``directory``."""
    prefix = os.path.join(directory, name)
    return [f"{prefix}_{part}.npy" for part in PARTS] + [f"{prefix}_{INFO}"]


def write_encoded(prefix, arrays, info):
    """Writes ``<prefix>_<part>.npy`` for each array of ``arrays`` (keys from :data:`PARTS`)
    and ``<prefix>_info.json`` holding ``info``."""
    unknown = set(arrays) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown encode outputs {sorted(unknown)}; expected {PARTS}")
    for part, array in arrays.items():
        np.save(f"{prefix}_{part}.npy", array)
    with open(f"{prefix}_{INFO}", "w") as f:
        json.dump(info, f, indent=1)


def beside(codes_path, part):
    """Encode's ``<name>_<part>.npy`` (or ``<name>_info.json`` for ``part="info"``) next to
    ``<name>_codes.npy`` when that file exists; ``None`` otherwise (codes from elsewhere).

    >>> beside("nowhere/query_codes.npy", "labels") is None
    True
    """
    codes_path = str(codes_path)
    if not codes_path.endswith(_CODES):
        return None
    path = codes_path[: -len(_CODES)] + ("_" + INFO if part == "info" else f"_{part}.npy")
    return path if os.path.isfile(path) else None


def read_info(codes_path):
    """The ``<name>_info.json`` beside encode's ``<name>_codes.npy`` (``bits``, ``class_names``,
    ``model``, ``data``), or ``{}`` where there is none (codes from elsewhere)."""
    path = beside(codes_path, "info")
    if path is None:
        return {}
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not readable JSON ({e}); encode the images again") from None
    return info if isinstance(info, dict) else {}


def encoded_bits(*codes_paths):
    """K from encode's ``<name>_info.json`` beside the codes, or ``None`` (not encode's);
    codes of different lengths are refused."""
    found = {read_info(path).get("bits") for path in codes_paths} - {None}
    if len(found) > 1:
        raise UsageError(
            f"{' and '.join(map(str, codes_paths))} hold codes of different "
            f"lengths ({' and '.join(map(str, sorted(found)))} bits, by encode's "
            "_info.json); score codes of one model"
        )
    return found.pop() if found else None


def read_paths(codes_path, needed_by, what):
    """The image paths encode wrote beside ``<name>_codes.npy`` (``<name>_paths.npy``), which
    ``needed_by`` needs; ``what`` names the codes in the refusal."""
    path = beside(codes_path, "paths")
    if path is None:
        raise UsageError(
            f"{needed_by} needs the image paths of {what}: encode an image folder "
            "or list file with python -m tfhash.encode, which writes "
            "<name>_paths.npy beside <name>_codes.npy"
        )
    return load_array(path, what)


def load_array(path, what):
    """``np.load(path)`` without pickles, or a one-line :class:`UsageError` that names ``what``
    (an argument, ```query_codes```) when the file is missing or not an array."""
    if not os.path.isfile(path):
        raise UsageError(f"{what}: no such file {path!r}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UsageError(f"{what}: {path!r} is not a readable .npy array ({e})") from None


def find_set(codes, name=None):
    """``(directory, name)`` of the encoded set that ``codes`` (a directory or one
    ``<name>_codes.npy``) and ``name`` designate."""
    if not codes:
        raise UsageError("`codes` is required: the `out` directory of python -m tfhash.encode")
    if os.path.isfile(codes):
        if not codes.endswith(_CODES):
            raise UsageError(
                f"codes={codes} is not an encode output (<name>_codes.npy); pass "
                "the `out` directory of python -m tfhash.encode"
            )
        return os.path.dirname(codes) or ".", os.path.basename(codes)[: -len(_CODES)]
    if not os.path.isdir(codes):
        raise UsageError(
            f"codes={codes} does not exist; pass the `out` directory of python -m tfhash.encode"
        )
    if name is not None:
        return codes, name
    names = sorted(f[: -len(_CODES)] for f in os.listdir(codes) if f.endswith(_CODES))
    if not names:
        raise UsageError(
            f"codes={codes} holds no <name>_codes.npy; pass the `out` "
            "directory of python -m tfhash.encode"
        )
    if len(names) > 1:
        raise UsageError(
            f"codes={codes} holds several sets ({', '.join(names)}); choose one with `name`"
        )
    return codes, names[0]


def read_encoded(codes, name=None, image_root=None, bits=None):
    """The :class:`Items` of ``python -m tfhash.encode``'s output.

    Args:
        codes: encode's ``out`` directory, or one ``<name>_codes.npy`` in it.
        name: the prefix of the files (``"database"``); needed when the
            directory holds several sets.
        image_root: directory the item ids are relative to (the image folder
            or the list file's directory); paths become ``image_root/<item id>``.
            Without it, a ``<name>_paths.npy`` next to the codes is used if
            there is one, else the item ids themselves.
        bits: K, when known (packed rows do not carry it); default: encode's
            ``<name>_info.json``, which also gives the class names.
    """
    directory, name = find_set(codes, name)
    prefix = os.path.join(directory, name)

    def load(part, required=True):
        path = f"{prefix}_{part}.npy"
        if not os.path.isfile(path):
            if required:
                raise UsageError(
                    f"{path} is missing; pass a complete python -m tfhash.encode output"
                )
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UsageError(f"{path} is not a readable .npy array ({e})") from None

    packed = load("codes")
    if packed.dtype != np.uint8:
        raise UsageError(f"{prefix}{_CODES} must hold packed uint8 codes, got {packed.dtype}")
    item_ids = load("item_ids")
    paths = load("paths", required=False)
    if image_root:
        if not os.path.isdir(image_root):
            raise UsageError(
                f"image_root={image_root} is not a directory; pass the image "
                "folder (or the list file's directory) the item ids are relative to"
            )
        root = os.path.abspath(image_root)
        paths = np.array([os.path.join(root, str(i)) for i in item_ids])
    info = read_info(prefix + _CODES)
    return Items(
        packed,
        item_ids,
        paths,
        load("labels", required=False),
        bits or info.get("bits"),
        info.get("class_names"),
    )


# ---------------------------------------------------------------------------------------------
# Packing and checking codes.


def describe_length(bits, code_bytes):
    """``"12-bit codes"``, or ``"2-byte codes"`` when only the packed width is known."""
    return f"{bits}-bit codes" if bits else f"{code_bytes}-byte codes (up to {8 * code_bytes} bits)"


def as_packed(codes, name, code_bytes=None, bits=None):
    """Query or database codes as packed uint8 rows ``[N, ⌈K/8⌉]``.

    ``uint8`` arrays are read as packed codes (encode's ``*_codes.npy``, the
    serving ``packed`` output); any other integer, bool or float array as one
    column per bit, ±1 or 0/1 (the serving ``codes`` output), packed with
    ``np.packbits(codes > 0, axis=1)``.

    Args:
        codes: the array.
        name: how messages call it (``"query codes"``).
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
        raise UsageError(
            f"{name} must be a 2-D array [codes, bytes or bits] with at least one "
            f"row, got shape {codes.shape}"
        )
    if codes.dtype == np.uint8:
        packed, length = np.ascontiguousarray(codes), None
    else:
        if codes.dtype != bool:
            values = np.unique(codes)
            if not (set(values.tolist()) <= {-1, 1} or set(values.tolist()) <= {0, 1}):
                raise UsageError(
                    f"{name} must be binary: packed uint8 rows, or ±1 / 0/1 "
                    f"columns, got values {values[:5].tolist()}"
                )
        length = codes.shape[1]
        packed = np.packbits(codes > 0, axis=1)
    fix = "query with codes of the model the index was built from"
    if length is not None and code_bytes and not bits and (length + 7) // 8 != code_bytes:
        raise UsageError(
            f"{name} are {length}-bit codes but the index holds "
            f"{describe_length(bits, code_bytes)}; {fix}"
        )
    if bits and length is not None and length != bits:
        raise UsageError(
            f"{name} are {length}-bit codes but the index holds {bits}-bit codes; {fix}"
        )
    if code_bytes and packed.shape[1] != code_bytes:
        raise UsageError(
            f"{name} are {packed.shape[1]}-byte codes (up to {8 * packed.shape[1]} "
            f"bits) but the index holds {describe_length(bits, code_bytes)}; {fix}"
        )
    if bits and bits % 8 and length is None and np.any(packed[:, -1] & (0xFF >> (bits % 8))):
        raise UsageError(
            f"{name} set bits past bit {bits}: they are longer than the index's "
            f"{bits}-bit codes; {fix}"
        )
    return packed


def label_sets(labels):
    """Labels as lists of class ids: ``3`` → ``[3]``, a multi-hot row → its set columns.

    >>> label_sets(np.array([[1, 0, 1], [0, 1, 0]]))
    [[0, 2], [1]]
    """
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return [[int(c)] for c in labels]
    return [np.flatnonzero(row).tolist() for row in labels]


def check_k(k, size):
    """Raises :class:`UsageError` unless ``1 <= k <= size``."""
    if k is None or k < 1:
        raise UsageError(f"`k` must be at least 1, got {k}")
    if k > size:
        raise UsageError(
            f"k={k} is larger than the index ({size} items); ask for at most "
            f"{size}, or use `radius` for every item within a distance"
        )


def check_radius(radius):
    """Raises :class:`UsageError` for a negative radius."""
    if radius < 0:
        raise UsageError(f"`radius` must be 0 or more (Hamming distance), got {radius}")


# ---------------------------------------------------------------------------------------------
# Item records and results.


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
        self.paths = (
            self.item_ids.copy()
            if self.paths is None
            else np.asarray(self.paths, dtype=str).reshape(-1)
        )
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.ndim not in (1, 2) or not np.issubdtype(self.labels.dtype, np.integer):
                raise UsageError(
                    f"labels must be class ids [N] or multi-hot [N, C] integers, got "
                    f"{self.labels.dtype} {self.labels.shape}"
                )
        for what, array in (
            ("item ids", self.item_ids),
            ("paths", self.paths),
            ("labels", self.labels),
        ):
            if array is not None and len(array) != n:
                raise UsageError(f"{n} codes but {len(array)} {what}; give one per code")
        unique, counts = np.unique(self.item_ids, return_counts=True)
        if len(unique) != n:
            raise UsageError(
                f"item id {str(unique[counts > 1][0])!r} appears {counts.max()} times; "
                "item ids must be unique"
            )


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

    def first(self, k):
        """The first ``k`` results."""
        return Hits(
            self.distances[:k],
            self.positions[:k],
            self.item_ids[:k],
            self.paths[:k],
            None if self.labels is None else self.labels[:k],
        )

    def records(self):
        """JSON-ready ``[{"rank", "item_id", "path", "distance"[, "labels"]}]``."""
        out = []
        for rank in range(len(self)):
            record = {
                "rank": rank + 1,
                "item_id": str(self.item_ids[rank]),
                "path": str(self.paths[rank]),
                "distance": int(self.distances[rank]),
            }
            if self.labels is not None:
                record["labels"] = self.labels[rank]
            out.append(record)
        return out


def ordered(distances, positions):
    """``(distances, positions)`` as int64, sorted by the tie rule: distance, then position."""
    order = np.lexsort((positions, distances))
    return np.asarray(distances, np.int64)[order], np.asarray(positions, np.int64)[order]
