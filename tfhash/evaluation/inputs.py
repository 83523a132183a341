"""Validated inputs: binary codes packed into 64-bit words, embeddings, labels as relevance.

Everything a user hands the evaluator passes through here once, so that bad
input fails with a one-line :class:`~tfhash.errors.UsageError` before any
metric is computed, and never turns into a silently wrong number.

Codes are accepted in the three forms the package produces: ``±1`` (int8 or
float, the contract's ``b = sign(h)``), ``{0, 1}`` (any numeric or bool dtype),
or packed ``uint8`` rows as written by ``np.packbits(b > 0, axis=1)``. Packed
rows carry no bit count, so it is given explicitly (``bits=``); without it a
``uint8`` array is read as unpacked ``{0, 1}`` codes. In every form bit ``i``
is ``b_i > 0``, and the bits are re-packed into little 64-bit words so that a
Hamming distance is a few XORs and popcounts.
"""

import numpy as np

from tfhash.errors import UsageError

# Rows validated and packed at a time, so a float ±1 array of a million rows
# never needs a full-size boolean temporary.
_ROWS_PER_BLOCK = 1 << 16


def _check_matrix(array, name):
    array = np.asarray(array)
    if array.ndim != 2:
        raise UsageError(f"{name} must be a 2-D array [items, bits], got shape {array.shape}")
    if array.shape[0] == 0:
        raise UsageError(f"{name} is empty (shape {array.shape}); give at least one item")
    if array.shape[1] == 0:
        raise UsageError(f"{name} has zero columns (shape {array.shape}); codes need 1+ bits")
    return array


def _unpacked_bits(block, name, lows):
    """``block > 0`` after checking that the block holds only ±1 or only 0/1.

    ``lows`` collects the non-one value seen (0 or -1) across blocks, so that an
    array mixing 0 and -1 is refused even when no single block mixes them.
    """
    if block.dtype == bool:
        return block
    low, high = block.min(), block.max()
    if low in (0, -1) and high in (low, 1) and np.all((block == low) | (block == high)):
        lows.add(int(low))
    elif not (low == high == 1):
        bad = block[~np.isin(block, (-1, 0, 1))]
        if bad.size:
            raise UsageError(
                f"{name} must be binary (±1 or 0/1) but contains {bad.flat[0].item()!r}; "
                "binarise relaxed codes with np.where(h >= 0, 1, -1), or pass bits= for packed "
                "uint8 codes"
            )
        lows.update((0, -1))
    if len(lows) > 1:
        raise UsageError(f"{name} mixes -1, 0 and 1; give ±1 codes or 0/1 codes, not both")
    return block > 0


def pack_codes(codes, *, bits=None, name="codes"):
    """Validates binary codes and packs them into 64-bit words.

    Args:
        codes: ``[N, K]`` ±1 or 0/1 codes, or ``[N, ceil(K / 8)]`` packed
            ``uint8`` rows (big-endian bit order, as ``np.packbits``) when
            ``bits`` is given.
        bits: K for packed codes; ``None`` for unpacked codes.
        name: how error messages call the array.

    Returns:
        ``(words, bits)``: ``words`` is ``uint64 [N, ceil(K / 64)]`` with
        unused bits zero, so ``popcount(a ^ b)`` summed over words is the
        Hamming distance.

    Raises:
        UsageError: codes that are not binary, a packed array that is not
            ``uint8`` of the right width, or padding bits that are set.
    """
    codes = _check_matrix(codes, name)
    if bits is None:
        bits = codes.shape[1]
        packed = np.empty((codes.shape[0], (bits + 7) // 8), np.uint8)
        lows = set()
        for start in range(0, codes.shape[0], _ROWS_PER_BLOCK):
            block = codes[start : start + _ROWS_PER_BLOCK]
            packed[start : start + len(block)] = np.packbits(
                _unpacked_bits(block, name, lows), axis=1
            )
    else:
        bits = int(bits)
        width = (bits + 7) // 8
        if bits < 1:
            raise UsageError(f"bits must be at least 1, got {bits}")
        if codes.dtype != np.uint8 or codes.shape[1] != width:
            raise UsageError(
                f"{name}: bits={bits} means packed uint8 rows of {width} bytes, got "
                f"{codes.dtype} of shape {codes.shape}; pack with np.packbits(b > 0, axis=1) "
                "or leave bits unset for ±1 / 0/1 codes"
            )
        padding = 8 * width - bits
        if padding and np.any(codes[:, -1] & np.uint8((1 << padding) - 1)):
            raise UsageError(
                f"{name}: the last {padding} bits of each packed row must be zero for "
                f"bits={bits}; check bits, and pack big-endian with np.packbits(b > 0, axis=1)"
            )
        packed = codes
    num_words = (packed.shape[1] + 7) // 8
    words = np.zeros((packed.shape[0], 8 * num_words), np.uint8)
    words[:, : packed.shape[1]] = packed
    # Byte order inside a word is irrelevant: XOR and popcount work bytewise.
    return words.view(np.uint64), bits


def as_embeddings(embeddings, name):
    """Checks real-valued embeddings ``[N, D]`` (finite) and returns them as float64."""
    embeddings = _check_matrix(embeddings, name)
    if embeddings.dtype.kind not in "fiub":
        raise UsageError(f"{name} must be numeric, got dtype {embeddings.dtype}")
    embeddings = embeddings.astype(np.float64)
    if not np.isfinite(embeddings).all():
        raise UsageError(f"{name} contains NaN or infinite values")
    return embeddings


class Relevance:
    """Who is relevant to whom: items sharing at least one label.

    Labels are class ids ``[N]`` (integers) or multi-hot ``[N, C]`` (0/1; one-hot
    is a special case). Query and database labels come in the same form.
    Multi-hot rows are packed into 64-bit words, so that shared labels are
    ``popcount(q & d)`` and the union ``popcount(q | d)``.

    Graded relevance, for NDCG, ACG and weighted AP, is either the number of
    shared labels (``gain="shared"``) or their Jaccard similarity
    ``|q ∩ d| / |q ∪ d|`` (``gain="jaccard"``). With class ids both are 0 or 1.

    Args:
        query_labels, database_labels: the labels.
        num_queries, num_database: rows of the matching code arrays, checked
            against the label lengths.
    """

    def __init__(self, query_labels, database_labels, num_queries, num_database):
        self._query, query_classes = _labels(query_labels, "query_labels", num_queries, "query")
        self._database, database_classes = _labels(
            database_labels, "database_labels", num_database, "database"
        )
        self.kind = "class ids" if query_classes is None else "multi-hot"
        if (query_classes is None) != (database_classes is None):
            raise UsageError(
                f"query_labels are {self.kind} but database_labels are not; give both as "
                "class ids [N] or both as multi-hot [N, C]"
            )
        if query_classes != database_classes:
            raise UsageError(
                f"query_labels have {query_classes} classes but database_labels have "
                f"{database_classes}; both need the same columns"
            )
        if self.kind == "class ids":
            has_relevant = np.isin(self._query, self._database)
        else:
            self._database = np.ascontiguousarray(self._database.T)  # [words, N]
            any_label = np.bitwise_or.reduce(self._database, axis=1)
            has_relevant = np.any(self._query & any_label, axis=1)
        self.num_without_relevant = int(np.count_nonzero(~has_relevant))
        if self.num_without_relevant == num_queries:
            raise UsageError(
                "no query shares a label with any database item; check that query and "
                "database labels use the same classes"
            )

    @property
    def query_labels(self):
        """``int64 [Q]`` class ids, or ``uint64 [Q, W]`` packed multi-hot label words."""
        return self._query

    @property
    def database_labels(self):
        """``int64 [N]`` class ids, or ``uint64 [W, N]`` packed label words, word-major."""
        return self._database

    def relevant(self, rows):
        """``bool [len(rows), N]``: database items sharing a label with each query in ``rows``."""
        if self.kind == "class ids":
            return self._query[rows, None] == self._database[None, :]
        query = self._query[rows]
        hits = np.zeros((len(query), self._database.shape[1]), bool)
        for w, database_word in enumerate(self._database):
            hits |= (query[:, w, None] & database_word[None, :]) != 0
        return hits

    def gains(self, rows, gain):
        """``float64 [len(rows), N]`` graded relevance (``"shared"`` or ``"jaccard"``)."""
        if self.kind == "class ids":
            return self.relevant(rows).astype(np.float64)
        query = self._query[rows]
        shared = np.zeros((len(query), self._database.shape[1]), np.float64)
        union = np.zeros_like(shared) if gain == "jaccard" else None
        for w, database_word in enumerate(self._database):
            shared += np.bitwise_count(query[:, w, None] & database_word[None, :])
            if union is not None:
                union += np.bitwise_count(query[:, w, None] | database_word[None, :])
        if union is None:
            return shared
        return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)


def _labels(labels, name, num_items, codes):
    """Checked labels: ``(int64 class ids [N], None)`` or ``(uint64 words [N, W], C)``."""
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2):
        raise UsageError(
            f"{name} must be class ids [N] or multi-hot [N, C], got shape {labels.shape}"
        )
    if labels.shape[0] != num_items:
        raise UsageError(
            f"{name} has {labels.shape[0]} rows but the {codes} codes have {num_items}; "
            "give one label row per code"
        )
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise UsageError(
                f"{name} as class ids must be integers, got {labels.dtype}; "
                "use labels.astype(int), or multi-hot [N, C] for several labels"
            )
        return labels.astype(np.int64), None
    if labels.shape[1] == 0:
        raise UsageError(f"{name} has zero columns; multi-hot labels need C >= 1 classes")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise UsageError(
            f"{name} as multi-hot [N, C] must be 0/1, found other values; give class ids "
            "[N] for single labels"
        )
    packed = np.packbits(labels.astype(bool), axis=1)
    words = np.zeros((num_items, 8 * ((packed.shape[1] + 7) // 8)), np.uint8)
    words[:, : packed.shape[1]] = packed
    return words.view(np.uint64), labels.shape[1]


class JaccardRelevance:
    """A :class:`Relevance` whose relevant items are those at Jaccard coefficient ≥ t.

    For ``map:jaccard>=t`` (:class:`~tfhash.evaluation.metrics.JaccardMeanAveragePrecision`):
    ``relevant(rows)`` is ``gains(rows, "jaccard") >= t``; everything else is the wrapped
    relevance's.
    """

    def __init__(self, relevance, threshold):
        self._relevance = relevance
        self.threshold = threshold
        self.kind = relevance.kind

    def relevant(self, rows):
        return self._relevance.gains(rows, "jaccard") >= self.threshold

    def gains(self, rows, gain):
        return self._relevance.gains(rows, gain)
