r"""What every search backend shares: the operations, the tie rule and the checks.

Distances are Hamming distances between packed codes,

    d(q, x) = Σ_j popcount(q_j XOR x_j)    over the ⌈K/8⌉ bytes j,

which is the distance over the K bits, since the padding bits are zero on both sides.

**Tie rule.** Hamming distances are small integers, so top-k cuts through groups of items at
equal distance. Results are ordered by ``(distance, position)``, where an item's position is
its place in insertion order: items added earlier come first, and an item deleted and added
again moves to the end. Top-k is therefore exactly the first k items of the stable brute-force
ranking ``np.argsort(d, kind="stable")`` over the items in insertion order. Radius search
returns every item with ``d <= radius``, in the same order. Each backend keeps the rule its own
way (:mod:`tfhash.retrieval.faiss`, :mod:`tfhash.retrieval.milvus`); :class:`SearchIndex` checks
the arguments once for both.
"""

import abc

from tfhash.errors import UsageError
from tfhash.retrieval.codes import Items, as_packed, check_k, check_radius, describe_length

TIE_RULE = "distance, then position (insertion order; a re-added item moves to the end)"


class SearchIndex(abc.ABC):
    """A Hamming index of packed codes with item records (ids, paths, labels).

    A backend implements :meth:`add`, :meth:`delete`, :meth:`save`, ``size`` and the two
    searches on checked, packed queries (:meth:`_top_k`, :meth:`_within`), each returning one
    :class:`~tfhash.retrieval.codes.Hits` per query in the order of the tie rule, and has
    ``bits`` (K, or ``None`` when only the packed width is known) and ``code_bytes`` (⌈K/8⌉).
    """

    backend = None  # "faiss" or "milvus"

    # -- what a backend provides --

    @property
    @abc.abstractmethod
    def size(self):
        """How many items the index holds."""

    @abc.abstractmethod
    def add(self, codes, item_ids, paths=None, labels=None, replace=False):
        """Appends items at the end of the position order.

        Args:
            codes: packed uint8 ``[N, ⌈K/8⌉]``, ±1 / 0/1 ``[N, K]``, or :class:`Items`
                (then ``item_ids``, ``paths`` and ``labels`` are ignored).
            item_ids: ``[N]`` unique ids, not yet in the index (unless ``replace``).
            paths, labels: see :class:`~tfhash.retrieval.codes.Items`.
            replace: items whose id is already indexed are deleted first, so they move to
                the end with their new code.
        """

    @abc.abstractmethod
    def delete(self, item_ids):
        """Deletes items by id; the others keep their relative order. Returns how many."""

    @abc.abstractmethod
    def save(self, directory):
        """Writes the index (FAISS), or a directory pointing to it (Milvus), atomically."""

    @abc.abstractmethod
    def _top_k(self, queries, k):
        """Top-k :class:`Hits` of packed ``queries``; ``1 <= k <= size`` is checked."""

    @abc.abstractmethod
    def _within(self, queries, radius):
        """:class:`Hits` within ``radius`` of packed ``queries``; ``radius >= 0``."""

    # -- shared --

    def describe(self):
        """A one-line description for messages."""
        return f"{self.backend}{self._where()}: {self.size} items, {self.length()}"

    def _where(self):
        """What :meth:`describe` says after the backend's name."""
        return ""

    def length(self):
        """``"12-bit codes"`` (or the packed width when K is not known)."""
        return describe_length(self.bits, self.code_bytes)

    def search(self, queries, k):
        """Top-k by Hamming distance for each query: a list of :class:`Hits`, ties by position."""
        check_k(k, self.size)
        return self._top_k(self.pack_queries(queries), k)

    def radius_search(self, queries, radius):
        """Every item within Hamming distance ``radius`` (inclusive) of each query."""
        check_radius(radius)
        return self._within(self.pack_queries(queries), int(radius))

    def pack_queries(self, queries):
        """Queries as packed rows of this index's length (:func:`as_packed`)."""
        return as_packed(queries, "query codes", self.code_bytes, self.bits)

    def items(self, codes, item_ids, paths=None, labels=None):
        """``codes`` (with their records) as :class:`Items` checked against this index."""
        items = codes if isinstance(codes, Items) else Items(codes, item_ids, paths, labels)
        items.codes = as_packed(items.codes, "codes", self.code_bytes, self.bits)
        return items

    @staticmethod
    def refuse_present(count, first):
        """The refusal of ``count`` item ids already indexed (``replace`` not given)."""
        raise UsageError(
            f"{count} item ids are already in the index (first: {first!r}); pass "
            "`replace` to re-add them, or `delete` them first"
        )

    @staticmethod
    def refuse_missing(missing):
        """The refusal of item ids to delete that the index does not hold."""
        raise UsageError(
            f"{len(missing)} item ids to delete are not in the index (first: "
            f"{str(missing[0])!r}); delete ids the index holds"
        )

    def close(self):
        """Releases the backend's connection (nothing for an in-process index)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
