"""The Milvus backend: packed codes in a Milvus collection, on a server or in a Milvus Lite file.

The collection has a ``BINARY_VECTOR`` field under a ``BIN_FLAT`` index and the ``HAMMING``
metric, on a server (``http://host:19530``) or in a Milvus Lite file (``codes.db``). Milvus
does not specify its order among equal distances, so for the tie rule the group at the k-th
distance is fetched by a range search and cut by position. The client, its connection errors
and the collections' schemas are in :mod:`tfhash.retrieval.milvus_client`.
"""

import json
import os
import uuid

import numpy as np

from tfhash.errors import UsageError
from tfhash.retrieval import store
from tfhash.retrieval.base import TIE_RULE, SearchIndex
from tfhash.retrieval.codes import Hits, label_sets, ordered
from tfhash.retrieval.milvus_client import (
    check_collection,
    connect,
    create_collections,
    import_pymilvus,
    quote,
)

MILVUS_MAX_K = 16384  # Milvus's largest topk (and range-search limit) per query
_MILVUS_BATCH = 10000  # rows per insert call, well under gRPC's message limit


class MilvusIndex(SearchIndex):
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

    def __init__(self, uri, collection=store.DEFAULT_COLLECTION, timeout=10.0):
        import_pymilvus()
        check_collection(collection)
        uri = self.normalise_uri(uri)
        self.uri, self.collection, self.meta = uri, collection, f"{collection}_tfhash_meta"
        self.timeout = timeout
        self.client = connect(uri, timeout)
        self._manifest = None
        self._stage = None  # a delete staged for the next add (delete(commit=False))
        self._pending_cache = (None, [])

    @staticmethod
    def normalise_uri(uri):
        """A Milvus Lite file as an absolute path; a server URI as it is."""
        return store.normalise_uri(uri)

    # -- the manifest --

    def save(self, directory):
        """Writes a directory that ``open_index`` resolves to this collection (the collection
        itself is written by every change)."""
        store.check_index_dir(directory)
        os.makedirs(directory, exist_ok=True)
        store.write_manifest(
            directory,
            {
                "format": store.FORMAT,
                "version": store.FORMAT_VERSION,
                "backend": "milvus",
                "uri": self.uri,
                "collection": self.collection,
                "bits": self.bits,
                "code_bytes": self.code_bytes,
                "tie_rule": TIE_RULE,
            },
        )

    save_pointer = save  # its name before the backends shared SearchIndex

    def exists(self):
        return self.client.has_collection(self.collection) and self.client.has_collection(self.meta)

    def manifest(self):
        if self._manifest is None:
            rows = self.client.query(self.meta, filter='key == "manifest"', output_fields=["value"])
            if not rows:
                raise UsageError(
                    f"Milvus collection {self.meta} has no manifest; rebuild the "
                    "index with python -m tfhash.index (milvus backend)"
                )
            self._manifest = json.loads(rows[0]["value"])
        return self._manifest

    def _commit(self, manifest):
        self.client.upsert(
            self.meta, [{"key": "manifest", "value": json.dumps(manifest), "dummy": b"\x00"}]
        )
        self._manifest = manifest

    # -- deletes, committed before their rows go (see the class docstring) --

    _PENDING_ROWS = 5000  # positions per meta row (its value holds at most 65,535 characters)

    def _pending(self):
        """The positions a committed delete has not yet removed (usually none)."""
        pending = self.manifest().get("pending")
        if not pending:
            return []
        if getattr(self, "_pending_cache", (None,))[0] != pending["txn"]:
            keys = quote(f"pending-{pending['txn']}-{i}" for i in range(pending["chunks"]))
            rows = self.client.query(
                self.meta, filter=f"key in {keys}", output_fields=["key", "value"]
            )
            seqs = sorted(s for row in rows for s in json.loads(row["value"]))
            if len(seqs) != pending["count"]:
                raise UsageError(
                    f"Milvus collection {self.meta} lost part of a delete's record; "
                    "rebuild the index with python -m tfhash.index"
                )
            self._pending_cache = (pending["txn"], seqs)
        return self._pending_cache[1]

    def _finish(self, manifest, doomed):
        """Commits ``manifest`` with the positions ``doomed`` deleted, then removes their rows."""
        manifest = {k: v for k, v in manifest.items() if k != "pending"}
        if doomed:
            txn = uuid.uuid4().hex[:12]
            chunks = [
                doomed[i : i + self._PENDING_ROWS]
                for i in range(0, len(doomed), self._PENDING_ROWS)
            ]
            self.client.upsert(
                self.meta,
                [
                    {"key": f"pending-{txn}-{i}", "value": json.dumps(c), "dummy": b"\x00"}
                    for i, c in enumerate(chunks)
                ],
            )
            manifest["pending"] = {"txn": txn, "chunks": len(chunks), "count": len(doomed)}
        self._commit(manifest)  # the commit point
        self._recover()

    def _recover(self):
        """Removes the rows of a committed delete and clears it; drops the records of deletes
        that never committed. Every write starts (and a delete ends) with it."""
        manifest = self.manifest()
        seqs = self._pending()
        for start in range(0, len(seqs), 10000):
            self.client.delete(self.collection, filter=f"seq in {seqs[start : start + 10000]}")
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

    def _where(self):
        return f" {self.uri} collection {self.collection}"

    def create(self, bits=None, code_bytes=None):
        """Creates the collections for codes of ``bits`` bits (or ``code_bytes`` bytes, when the
        exact length is not known), dropping any of the same names."""
        code_bytes = code_bytes if bits is None else (int(bits) + 7) // 8
        create_collections(self.client, self.collection, self.meta, code_bytes)
        self._commit(
            {
                "format": store.FORMAT,
                "version": store.FORMAT_VERSION,
                "backend": "milvus",
                "bits": None if bits is None else int(bits),
                "code_bytes": code_bytes,
                "size": 0,
                "next_seq": 0,
                "labels": None,
                "tie_rule": TIE_RULE,
            }
        )

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
                self.collection,
                filter=self._visible(f"item_id in {quote(item_ids[start : start + 1000])}"),
                output_fields=["seq", "item_id"],
            )
            found.update((row["item_id"], row["seq"]) for row in rows)
        return found

    def add(self, codes, item_ids, paths=None, labels=None, replace=False):
        """Appends items; see :meth:`SearchIndex.add`. Commits with any delete staged before it
        (:meth:`delete` with ``commit=False``)."""
        manifest, doomed = self._staged()
        items = self.items(codes, item_ids, paths, labels)
        packed = items.codes
        staged = set(doomed)
        present = {
            i: s for i, s in self._present(items.item_ids.tolist()).items() if s not in staged
        }
        if present and not replace:
            self.refuse_present(len(present), next(iter(present)))
        layout = None if items.labels is None else list(items.labels.shape[1:])
        if manifest["size"] and layout != manifest["labels"]:
            raise UsageError(
                f"labels {layout} do not match the index's {manifest['labels']} "
                "(null: none, []: class ids, [C]: multi-hot); index collections "
                "with the same label layout together"
            )
        start = manifest["next_seq"]
        # Rows an interrupted append left past next_seq are invisible; clear them first.
        self.client.delete(self.collection, filter=f"seq >= {start}")
        sets = label_sets(items.labels)
        for first in range(0, len(packed), _MILVUS_BATCH):
            rows = [
                {
                    "seq": start + i,
                    "code": packed[i].tobytes(),
                    "item_id": str(items.item_ids[i]),
                    "path": str(items.paths[i]),
                    "labels": json.dumps(sets[i] if sets is not None else None),
                }
                for i in range(first, min(first + _MILVUS_BATCH, len(packed)))
            ]
            self.client.insert(self.collection, rows)
        manifest = dict(
            manifest,
            size=manifest["size"] - len(present) + len(packed),
            next_seq=start + len(packed),
            labels=layout,
        )
        self._finish(manifest, doomed + sorted(present.values()))

    def delete(self, item_ids, commit=True):
        """Deletes items by id; see :meth:`SearchIndex.delete`. With ``commit=False`` the delete
        is staged and commits with the next :meth:`add`, in one manifest write."""
        manifest, doomed = self._staged()
        item_ids = [str(i) for i in np.asarray(item_ids, dtype=str).reshape(-1)]
        staged = set(doomed)
        present = {i: s for i, s in self._present(item_ids).items() if s not in staged}
        missing = [i for i in item_ids if i not in present]
        if missing:
            self.refuse_missing(missing)
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
        results = self.client.search(
            self.collection,
            data=[q.tobytes() for q in queries],
            limit=limit,
            filter=self._visible(condition),
            search_params=params,
            output_fields=[],
        )
        return [
            (
                np.array([h["distance"] for h in hits], np.int64),
                np.array([h["id"] for h in hits], np.int64),
            )
            for hits in results
        ]

    def _range(self, query, lo, hi, seq_lo, seq_hi, want=None):
        """``(distances, seqs)`` of every item with ``lo <= d <= hi`` and ``seq_lo <= seq <
        seq_hi``, by position; only the first ``want`` when given. Milvus returns at most
        MILVUS_MAX_K items per search, so a full answer splits the position range in two."""
        distances, seqs = self._search(
            [query], MILVUS_MAX_K, lo, hi, f"seq >= {seq_lo} and seq < {seq_hi}"
        )[0]
        if len(seqs) < MILVUS_MAX_K or seq_hi - seq_lo <= 1:
            order = np.argsort(seqs)
            return distances[order][:want], seqs[order][:want]
        middle = (seq_lo + seq_hi) // 2
        left = self._range(query, lo, hi, seq_lo, middle, want)
        if want is not None and len(left[1]) >= want:
            return left
        right = self._range(
            query, lo, hi, middle, seq_hi, None if want is None else want - len(left[1])
        )
        return np.concatenate([left[0], right[0]]), np.concatenate([left[1], right[1]])

    def _hits(self, found):
        seqs = sorted({int(s) for _, positions in found for s in positions})
        records = {}
        for start in range(0, len(seqs), 1000):
            for row in self.client.query(
                self.collection,
                filter=f"seq in {seqs[start : start + 1000]}",
                output_fields=["seq", "item_id", "path", "labels"],
            ):
                records[row["seq"]] = row
        hits = []
        for distances, positions in found:
            distances, positions = ordered(distances, positions)
            rows = [records[int(s)] for s in positions]
            labels = None if self.labels is None else [json.loads(r["labels"]) for r in rows]
            hits.append(
                Hits(
                    distances,
                    positions,
                    np.array([r["item_id"] for r in rows], str),
                    np.array([r["path"] for r in rows], str),
                    labels,
                )
            )
        return hits

    def _top_k(self, queries, k):
        """Top-k with the tie rule: Milvus's top-k fixes the k-th distance d_k and every item
        closer; the items at d_k are then taken by position from a range search."""
        if k > MILVUS_MAX_K - 1:
            raise UsageError(
                f"k={k} is more than Milvus returns per query ({MILVUS_MAX_K - 1}); ask for fewer"
            )
        limit = min(k + 1, self.size)
        found = []
        for start in range(0, len(queries), 256):
            chunk = queries[start : start + 256]
            for query, (distances, seqs) in zip(chunk, self._search(chunk, limit)):
                distances, seqs = ordered(distances, seqs)
                last = distances[k - 1]
                if len(distances) == k or distances[k] > last:  # no tie across the cut
                    found.append((distances[:k], seqs[:k]))
                    continue
                closer = distances < last
                need = k - int(closer.sum())
                tied = self._range(query, last, last, 0, self.manifest()["next_seq"], need)
                found.append(
                    (
                        np.concatenate([distances[closer], tied[0]]),
                        np.concatenate([seqs[closer], tied[1]]),
                    )
                )
        return self._hits(found)

    def _within(self, queries, radius):
        end = self.manifest()["next_seq"]
        return self._hits([self._range(q, 0, radius, 0, end) for q in queries])

    def close(self):
        self.client.close()
