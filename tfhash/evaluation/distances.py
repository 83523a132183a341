"""Query-to-database distances: Hamming by XOR and popcount, Euclidean and cosine by matmul."""

import numpy as np

from tfhash.errors import UsageError
from tfhash.evaluation import inputs

DISTANCES = ("hamming", "euclidean", "cosine")

_BLOCK_ITEMS = 1 << 15


class Hamming:
    """Hamming distances between packed binary codes.

    For codes packed into 64-bit words ``q_w`` and ``d_w``,

        Hamming(q, d) = Σ_w popcount(q_w XOR d_w)

    computed with ``np.bitwise_count`` (NumPy >= 2) one query row at a time, so
    the working set is one database-sized buffer. Distances are ``uint8`` for
    codes up to 255 bits and ``uint16`` above: the K + 1 possible values are
    the tie groups of the ranking.

    Args:
        database_codes: ``[N, K]`` ±1 or 0/1 codes, or packed ``uint8`` rows.
        bits: K, only for packed codes.

    Example:

    >>> database = Hamming(np.array([[1, -1, 1], [-1, -1, 1]]))
    >>> database(database.prepare(np.array([[1, 1, 1]]), "query_codes")).tolist()
    [[1, 2]]
    """

    def __init__(self, database_codes, bits=None):
        words, self.bits = inputs.pack_codes(database_codes, bits=bits, name="database_codes")
        self._packed_bits = bits
        # Word-major, so each XOR streams one contiguous row of N words.
        self._words = np.ascontiguousarray(words.T)
        self.num_items = words.shape[0]
        self.dtype = np.uint8 if self.bits < 256 else np.uint16

    def item_words(self):
        """``uint64 [N, W]``: the packed database codes, one row per item."""
        return self._words.T

    def prepare(self, query_codes, name):
        """Packs query codes in the database's form, checking that the lengths agree."""
        words, bits = inputs.pack_codes(query_codes, bits=self._packed_bits, name=name)
        if bits != self.bits:
            raise UsageError(
                f"{name} have {bits} bits but database_codes have {self.bits}; "
                "score codes of one length at a time"
            )
        return words

    def __call__(self, query_words):
        out = np.empty((len(query_words), self.num_items), self.dtype)
        # Database blocks small enough for the XOR buffer to stay in the L2 cache.
        block = min(self.num_items, _BLOCK_ITEMS)
        buffer = np.empty(block, np.uint64)
        counts = np.empty(block, np.uint8)
        for row, query in zip(out, query_words):
            for start in range(0, self.num_items, block):
                part = slice(start, start + block)
                target = row[part]
                xor = buffer[: len(target)]
                np.bitwise_count(
                    np.bitwise_xor(self._words[0, part], query[0], out=xor), out=target
                )
                for word in range(1, len(query)):
                    np.bitwise_xor(self._words[word, part], query[word], out=xor)
                    target += np.bitwise_count(xor, out=counts[: len(target)])
        return out


class Embedding:
    """Euclidean or cosine ranking of real-valued embeddings (the LSDH paper's "-C" rows).

    Ranks by a monotone transform of the distance that needs one matrix
    product: ``|d|² - 2 q·d`` for Euclidean (the squared distance less the
    per-query constant ``|q|²``), and ``-q̂·d̂`` for cosine. Items tie when these
    float64 values are exactly equal.

    Args:
        database: ``[N, D]`` embeddings.
        distance: ``"euclidean"`` or ``"cosine"``.
    """

    def __init__(self, database, distance):
        self.distance = distance
        self._database = self._normalise(
            inputs.as_embeddings(database, "database_codes"), "database_codes"
        )
        self._squared_norms = np.einsum("ij,ij->i", self._database, self._database)
        self.num_items = len(self._database)
        self.dims = self._database.shape[1]

    def _normalise(self, embeddings, name):
        if self.distance == "cosine":
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            if not norms.all():
                raise UsageError(
                    f"{name} has an all-zero row, which has no cosine distance; "
                    "use distance='euclidean'"
                )
            embeddings = embeddings / norms
        return embeddings

    def prepare(self, queries, name):
        """Checks query embeddings against the database's dimension."""
        queries = self._normalise(inputs.as_embeddings(queries, name), name)
        if queries.shape[1] != self.dims:
            raise UsageError(
                f"{name} have {queries.shape[1]} dimensions but database_codes have {self.dims}"
            )
        return queries

    def __call__(self, queries):
        products = queries @ self._database.T
        if self.distance == "cosine":
            return -products
        return self._squared_norms[None, :] - 2.0 * products
