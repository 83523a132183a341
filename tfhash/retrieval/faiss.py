"""The FAISS backend: packed codes in an in-process binary index, saved in a directory.

``kind="flat"`` is FAISS's exact ``IndexBinaryFlat``; ``kind="multihash"`` adds FAISS's
``IndexBinaryMultiHash`` for radius search (top-k still scans the exact flat storage inside
it). FAISS's flat search keeps the tie rule itself: a new item replaces the k-th only when
strictly closer.
"""

import os
import uuid

import numpy as np

from tfhash.errors import UsageError
from tfhash.retrieval import store
from tfhash.retrieval.base import TIE_RULE, SearchIndex
from tfhash.retrieval.codes import Hits, label_sets, ordered

KINDS = ("flat", "multihash")
# Each byte with its bits in reverse order. FAISS reads the bits of a byte least significant
# first, np.packbits writes them most significant first: FAISS indexes hold reversed bytes, so
# that its bit i is the code's bit i and multi-hash substrings never cover the padding bits.
REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], np.uint8)


def import_faiss():
    """The ``faiss`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise UsageError("the faiss backend needs FAISS: pip install faiss-cpu") from None
    return faiss


class FaissIndex(SearchIndex):
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
        code_bytes: ⌈K/8⌉, when K itself is not known.

    Radius search with multi-hash is exact for ``radius <= nhash * (nflip + 1) - 1``
    (pigeonhole: an item within that radius differs from the query in at most
    ``nflip`` bits of one substring) and may miss items beyond it.
    """

    backend = "faiss"

    def __init__(
        self, bits=None, kind="flat", nhash=None, hash_bits=None, nflip=None, code_bytes=None
    ):
        if bits is None and code_bytes is None:
            raise UsageError("give the code length: bits (K) or code_bytes (⌈K/8⌉)")
        if bits is not None and bits < 1:
            raise UsageError(f"`bits` must be at least 1, got {bits}")
        if kind not in KINDS:
            raise UsageError(f"`kind` must be one of {', '.join(KINDS)}, got {kind!r}")
        self.bits = None if bits is None else int(bits)
        self.code_bytes = int(code_bytes) if bits is None else (self.bits + 7) // 8
        width = self.bits or 8 * self.code_bytes
        self.kind = kind
        self.multihash = None
        if kind == "multihash":
            nhash = nhash or max(1, width // 16)
            hash_bits = hash_bits or width // nhash
            nflip = 1 if nflip is None else nflip
            if (
                nhash < 1
                or hash_bits < 1
                or nhash * hash_bits > width
                or hash_bits > 63
                or nflip < 0
            ):
                raise UsageError(
                    f"nhash={nhash} tables of hash_bits={hash_bits} bits do "
                    f"not fit {width}-bit codes; need nhash * hash_bits <= "
                    f"{width}, hash_bits <= 63, nflip >= 0"
                )
            self.multihash = {"nhash": int(nhash), "hash_bits": int(hash_bits), "nflip": int(nflip)}
        self._codes = np.empty((0, self.code_bytes), np.uint8)
        self.item_ids = np.empty(0, str)
        self.paths = np.empty(0, str)
        self.labels = None
        self._engine = None

    @property
    def size(self):
        return len(self._codes)

    def _where(self):
        return "" if self.kind == "flat" else f" multi-hash {self.multihash}"

    # -- building --

    def add(self, codes, item_ids, paths=None, labels=None, replace=False):
        items = self.items(codes, item_ids, paths, labels)
        if (
            items.labels is not None
            and self.labels is not None
            and (
                items.labels.ndim != self.labels.ndim
                or items.labels.shape[1:] != self.labels.shape[1:]
            )
        ):
            raise UsageError(
                f"labels of shape {items.labels.shape[1:] or 'class ids'} do not "
                f"match the index's {self.labels.shape[1:] or 'class ids'}; index "
                "collections with the same label layout together"
            )
        if self.size and (items.labels is None) != (self.labels is None):
            raise UsageError(
                "the index holds items with labels and these have none (or the "
                "other way round); give every item labels, or none"
            )
        present = np.isin(items.item_ids, self.item_ids)
        if present.any():
            if not replace:
                self.refuse_present(int(present.sum()), str(items.item_ids[present][0]))
            self.delete(items.item_ids[present])
        self._codes = np.concatenate([self._codes, items.codes])
        self.item_ids = np.concatenate([self.item_ids, items.item_ids])
        self.paths = np.concatenate([self.paths, items.paths])
        if items.labels is not None:
            self.labels = (
                items.labels if self.labels is None else np.concatenate([self.labels, items.labels])
            )
        self._engine = None

    def delete(self, item_ids):
        item_ids = np.asarray(item_ids, dtype=str).reshape(-1)
        missing = item_ids[~np.isin(item_ids, self.item_ids)]
        if len(missing):
            self.refuse_missing(missing)
        keep = ~np.isin(self.item_ids, item_ids)
        self._codes, self.item_ids, self.paths = (
            self._codes[keep],
            self.item_ids[keep],
            self.paths[keep],
        )
        if self.labels is not None:
            self.labels = self.labels[keep]
        self._engine = None
        return int((~keep).sum())

    def codes(self):
        """The packed codes, uint8 ``[N, ⌈K/8⌉]``, in position order."""
        return self._codes

    def engine(self):
        """The FAISS index over the codes (built on first use after a change)."""
        if self._engine is None:
            faiss = import_faiss()
            if self.kind == "flat":
                engine = faiss.IndexBinaryFlat(8 * self.code_bytes)
            else:
                engine = faiss.IndexBinaryMultiHash(
                    8 * self.code_bytes, self.multihash["nhash"], self.multihash["hash_bits"]
                )
                engine.nflip = self.multihash["nflip"]
            if self.size:
                engine.add(REVERSED[self._codes])
            self._engine = engine
        return self._engine

    def _flat(self):
        engine = self.engine()
        if self.kind == "flat":
            return engine
        return import_faiss().downcast_IndexBinary(engine.storage)

    # -- searching --

    def _hits(self, distances, positions):
        labels = None if self.labels is None else label_sets(self.labels[positions])
        return Hits(distances, positions, self.item_ids[positions], self.paths[positions], labels)

    def _top_k(self, queries, k):
        distances, positions = self._flat().search(REVERSED[queries], k)
        return [self._hits(*ordered(d, p)) for d, p in zip(distances, positions)]

    def _within(self, queries, radius):
        if not self.size:
            return [self._hits(np.empty(0, np.int64), np.empty(0, np.int64)) for _ in queries]
        # FAISS's range search keeps d < radius.
        lims, distances, positions = self.engine().range_search(REVERSED[queries], radius + 1)
        return [
            self._hits(*ordered(distances[a:b], positions[a:b]))
            for a, b in zip(lims[:-1], lims[1:])
        ]

    # -- on disk --

    def manifest(self, files=None):
        return {
            "format": store.FORMAT,
            "version": store.FORMAT_VERSION,
            "backend": "faiss",
            "kind": self.kind,
            "multihash": self.multihash,
            "bits": self.bits,
            "code_bytes": self.code_bytes,
            "size": self.size,
            "labels": None if self.labels is None else list(self.labels.shape[1:]),
            "tie_rule": TIE_RULE,
            "faiss_bytes": "bit-reversed np.packbits rows",
            "files": files,
        }

    def save(self, directory):
        """Writes the index into ``directory`` atomically (see the class docstring)."""
        store.check_index_dir(directory)
        faiss = import_faiss()
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
            store.write_manifest(directory, self.manifest(files))
        except BaseException:  # the previous manifest and its files stay; this try's go
            store.remove_files(*written)
            raise
        for name in os.listdir(directory):  # the previous generation, and any leftovers
            if store.is_leftover(name) and name not in files.values():
                os.remove(os.path.join(directory, name))

    @classmethod
    def load(cls, directory, manifest=None):
        """Reads an index written by :meth:`save`."""
        manifest = manifest or store.read_manifest(directory)
        if manifest.get("backend") != "faiss":
            raise UsageError(f"{directory} holds a {manifest.get('backend')} index, not faiss")
        faiss = import_faiss()
        index = cls(
            manifest["bits"],
            manifest["kind"],
            code_bytes=manifest["code_bytes"],
            **(manifest["multihash"] or {}),
        )
        try:
            engine = faiss.read_index_binary(os.path.join(directory, manifest["files"]["codes"]))
            with np.load(
                os.path.join(directory, manifest["files"]["items"]), allow_pickle=False
            ) as items:
                index.item_ids, index.paths = items["item_ids"], items["paths"]
                index.labels = items["labels"] if "labels" in items else None
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise UsageError(
                f"{directory}: the index files are unreadable ({str(e).strip()[:200]}"
                "); rebuild the index with python -m tfhash.index"
            ) from None
        # read_index_binary returns the concrete class, and owns it: no downcast of it here.
        flat = engine if index.kind == "flat" else faiss.downcast_IndexBinary(engine.storage)
        index._codes = REVERSED[faiss.vector_to_array(flat.xb).reshape(-1, index.code_bytes)]
        if len(index._codes) != len(index.item_ids) or engine.d != 8 * index.code_bytes:
            raise UsageError(
                f"{directory}: the codes and item records disagree; rebuild the "
                "index with python -m tfhash.index"
            )
        index._engine = engine
        return index
