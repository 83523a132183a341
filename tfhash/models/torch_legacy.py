"""A safe reader for PyTorch state dicts in torch's legacy (non-zip) serialization, NumPy only.

``torch.save(..., _use_new_zipfile_serialization=False)`` (and every torch before 1.6) writes
one file that is five pickles followed by raw tensor bytes:

    pickle 1  the magic number 0x1950A86A20F9469CFC6C
    pickle 2  the protocol version, 1001
    pickle 3  system info: {"protocol_version": 1001, "little_endian": True, "type_sizes": …}
    pickle 4  the object, here an OrderedDict name → tensor; each tensor is
              ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`` and each
              storage a persistent id ``("storage", torch.FloatStorage, key, location, numel)``
    pickle 5  the list of storage keys, in the order their bytes follow
    then, for each key: an 8-byte little-endian element count n, then n elements

A pickle is a program: ``pickle.load`` on a downloaded file runs whatever callable it names.
:func:`read_state_dict` unpickles with a ``find_class`` that resolves only the tensor-rebuild
function, the storage types and ``collections.OrderedDict`` (to harmless stand-ins: nothing
from torch is imported, nor needed) and raises for any other global, so nothing in the file
is executed. Tensor ``t`` with offset o, size (d₁, …, d_r) and strides (s₁, …, s_r) reads
element ``t[i₁, …, i_r] = storage[o + Σ_k i_k s_k]``; every view is bounds-checked against its
storage before it is copied out.

Example:

>>> import io, pickle
>>> state = read_state_dict(io.BytesIO(_example_file()))
>>> state["w"].tolist()
[[1.0, 2.0], [3.0, 4.0]]
"""

import collections
import hashlib
import io
import os
import pickle
import re
import struct

import numpy as np

from tfhash.errors import UsageError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch's storage classes → the dtype of their elements (little-endian).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

# torch hub's convention: a file named <name>-<first 8 hex digits of its sha256>.<ext>.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$")


class _Refused(pickle.UnpicklingError):
    """The file asks for something a state dict never needs."""


class _Frozen:
    """Stand-ins are immutable: a pickle's BUILD opcode cannot rewrite them (nor, through a
    shared one, what a later file reads)."""

    __slots__ = ()

    def __init__(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise _Refused("the pickle tries to modify a tensor or storage")


class _StorageType(_Frozen):
    """Stands for ``torch.<Name>Storage``: only its dtype is kept; calling it is refused."""

    __slots__ = ("name", "dtype")

    def __call__(self, *args, **kwargs):
        raise _Refused(f"the pickle calls torch.{self.name}, which a state dict never does")


class _StorageRef(_Frozen):
    """A storage named by a persistent id: its key, dtype and element count."""

    __slots__ = ("key", "dtype", "numel")


class _TensorRef(_Frozen):
    """A tensor before the storage bytes are read: which storage, where, what shape."""

    __slots__ = ("storage", "offset", "size", "stride")


class _RebuildTensor(_Frozen):
    """Stands for ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)``."""

    __slots__ = ()

    def __call__(self, storage, storage_offset, size, stride, *unused):
        if not isinstance(storage, _StorageRef):
            raise _Refused("a tensor is rebuilt from something that is not a storage")
        if not (
            isinstance(storage_offset, int)
            and isinstance(size, tuple)
            and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(type(v) is int for v in size + stride)
        ):
            raise _Refused("a tensor's offset, size and stride are not integers")
        return _TensorRef(storage=storage, offset=storage_offset, size=size, stride=stride)


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _RebuildTensor(),
    ("collections", "OrderedDict"): collections.OrderedDict,
}
_ALLOWED.update(
    {
        ("torch", name): _StorageType(name=name, dtype=np.dtype(dtype))
        for name, dtype in STORAGE_DTYPES.items()
    }
)


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED` globals; a persistent id must name a storage."""

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"the pickle asks for {module}.{name}") from None

    def persistent_load(self, pid):
        if (
            not isinstance(pid, tuple)
            or len(pid) < 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise _Refused("a persistent id that is not a tensor storage")
        if len(pid) > 5 and pid[5] is not None:
            raise _Refused("a storage view (torch < 0.4 format)")
        key, dtype, numel = pid[2], pid[1].dtype, pid[4]
        known = self._storages.setdefault(key, _StorageRef(key=key, dtype=dtype, numel=numel))
        if (known.dtype, known.numel) != (dtype, numel):
            raise _Refused(f"storage {key} is named with two types or sizes")
        return known


def sha256_of(path):
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def has_sha256_in_name(path):
    """True when the file name ends ``-<hex digits>.<ext>`` (torch hub's convention)."""
    return bool(_HASH_IN_NAME.search(os.path.basename(path)))


def check_sha256_in_name(path):
    """Checks a file named ``…-<hex>.<ext>`` (torch hub's convention) against its sha256.

    Returns:
        The file's full hex sha256.

    Raises:
        UsageError: the name carries no hash, or the file's sha256 does not start with it.
    """
    match = _HASH_IN_NAME.search(os.path.basename(path))
    if not match:
        raise UsageError(
            f"{path} has no sha256 prefix in its name (…-<8 hex digits>.pth), so "
            "its integrity cannot be checked; use the file as its package ships it"
        )
    actual = sha256_of(path)
    if not actual.startswith(match.group(1)):
        raise UsageError(
            f"{path} is damaged or not the published file: its sha256 starts "
            f"{actual[: len(match.group(1))]}, its name says {match.group(1)}; "
            "reinstall the package that ships it"
        )
    return actual


def read_state_dict(file, name=None):
    """Reads a legacy-format torch state dict without torch and without executing the file.

    Args:
        file: a path, or a binary file object positioned at the start of the data.
        name: how messages name the file (default: the path).

    Returns:
        ``dict`` name → ``np.ndarray`` (a copy, C-contiguous, the storage's dtype), in the
        file's order.

    Raises:
        UsageError: not a legacy torch file (a zip-format file says so), a truncated file, a
            pickle that asks for anything but tensors, or a tensor outside its storage.
    """
    if isinstance(file, (str, os.PathLike)):
        name = name or os.fspath(file)
        with open(file, "rb") as f:
            return read_state_dict(io.BytesIO(f.read()), name)
    name = name or "the weights file"
    start = file.read(4)
    file.seek(-len(start), io.SEEK_CUR)
    if start.startswith(b"PK"):
        raise UsageError(
            f"{name} is a torch zip-format file, not the legacy format this reader "
            "reads; re-save it with torch.save(..., "
            "_use_new_zipfile_serialization=False)"
        )
    storages = {}
    part = "magic number"
    try:
        magic = _SafeUnpickler(file, storages).load()
        if type(magic) is not int or magic != MAGIC_NUMBER:
            raise _NotLegacy()
        part = "header"
        version = _SafeUnpickler(file, storages).load()
        info = _SafeUnpickler(file, storages).load()
        if type(version) is not int or version != PROTOCOL_VERSION or type(info) is not dict:
            raise _NotLegacy()
        if info.get("little_endian") is not True:
            raise UsageError(
                f"{name} was written on a big-endian machine; re-save it on a little-endian one"
            )
        part = "state dict"
        state = _SafeUnpickler(file, storages).load()
        part = "storage list"
        keys = _SafeUnpickler(file, storages).load()
    except _Refused as e:
        raise UsageError(
            f"{name} is refused: {e}; a weights file holds only tensors, so "
            "nothing from it was run: use the file as its package ships it"
        ) from None
    except (
        _NotLegacy,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
    ):
        what = "no torch magic number" if part == "magic number" else f"its {part} is unreadable"
        raise UsageError(
            f"{name} is not a legacy torch file ({what}); pass the .pth file as "
            "its package ships it"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in state.items()
    ):
        raise UsageError(
            f"{name} holds no state dict (a mapping of names to tensors); pass "
            "a file saved with torch.save(model.state_dict(), …)"
        )
    if (
        not isinstance(keys, list)
        or len(keys) != len(storages)
        or set(k for k in keys if isinstance(k, str)) != set(storages)
    ):
        raise UsageError(
            f"{name} lists other storages than its tensors use; the file is "
            "damaged: reinstall or re-save it"
        )
    arrays = {}
    for key in keys:
        ref = storages[key]
        count = file.read(8)
        data = file.read(ref.numel * ref.dtype.itemsize)
        if (
            len(count) != 8
            or struct.unpack("<q", count)[0] != ref.numel
            or (len(data) != ref.numel * ref.dtype.itemsize)
        ):
            raise UsageError(
                f"{name} is truncated or damaged (storage {key}); reinstall or re-save it"
            )
        arrays[key] = np.frombuffer(data, ref.dtype)
    return {k: _view(arrays[t.storage.key], t, k, name) for k, t in state.items()}


class _NotLegacy(Exception):
    pass


def _view(storage, tensor, key, name):
    """Copies ``tensor``'s elements out of ``storage``, checking they lie inside it."""
    if tensor.offset < 0 or any(d < 0 for d in tensor.size) or any(s < 0 for s in tensor.stride):
        raise UsageError(
            f"{name}: tensor {key} has a negative offset, size or stride; the "
            "file is damaged: reinstall or re-save it"
        )
    if 0 in tensor.size:
        return np.zeros(tensor.size, storage.dtype)
    last = tensor.offset + sum((d - 1) * s for d, s in zip(tensor.size, tensor.stride))
    # A state dict's tensors never repeat elements; a view that did (stride 0) could ask for
    # far more memory than the file holds.
    if last >= len(storage) or int(np.prod(tensor.size, dtype=object)) > len(storage):
        raise UsageError(
            f"{name}: tensor {key} reaches past the end of its storage (or "
            "repeats its elements); the file is damaged: reinstall or re-save it"
        )
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        tensor.size,
        tuple(s * item for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, order="C")  # a copy; ascontiguousarray would make 0-d 1-d


def _example_file():
    """A 2 × 2 float32 tensor ``w`` in the legacy format, for the module's example."""
    out = io.BytesIO()
    for obj in (
        MAGIC_NUMBER,
        PROTOCOL_VERSION,
        {"protocol_version": PROTOCOL_VERSION, "little_endian": True},
    ):
        pickle.dump(obj, out, protocol=2)
    out.write(
        b"\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00"
        b"\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK"
        b"\x04NtQK\x00K\x02K\x02\x86K\x02K\x01\x86\x89tRs."
    )
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", 4) + np.arange(1, 5, dtype="<f4").tobytes())
    return out.getvalue()
