"""The conventions a retrieval score depends on, named in every report.

Two evaluators given the same codes disagree when they break ties differently,
divide AP@k by different numbers, or treat queries without a relevant item
differently. :class:`Conventions` holds these choices; every report states
them, and says when they match a named preset.

Defaults, and why:

* ``ties="average"``: the exact expected value over all orders of tied items.
  It is the only policy that does not depend on the order the database happens
  to be stored in (``"index"`` does), it is deterministic, and it lies between
  the ``"pessimistic"`` and ``"optimistic"`` bounds.
* ``ap_denominator="min_r_k"``: AP@k divided by ``min(R, k)``, R the relevant
  items in the database. AP@k is then 1 exactly when the top ``min(R, k)`` are
  all relevant, and it never drops when a relevant item moves up. Dividing by
  the relevant items retrieved (``"relevant_in_top_k"``) scores a query with a
  single relevant item at rank 1 and nothing else the same as a perfect one,
  and can drop when a relevant item enters the top k.
* ``empty_queries="skip"``: AP, recall and NDCG are undefined (0/0) for a query
  with no relevant item in the database; they are left out of the mean rather
  than counted as 0 (``"zero"``). Reports give the number of such queries.
* ``empty_ball="zero"``: a hash lookup that returns nothing within the radius
  has precision 0, the usual convention for hash lookup; ``"skip"`` leaves such
  queries out of the precision mean. Reports give the fraction of empty balls.
* ``gain="shared"``: graded relevance is the number of shared labels;
  ``"jaccard"`` uses |q ∩ d| / |q ∪ d| (as DMSSPH, ICMR 2017).
"""

import dataclasses

import numpy as np

from tfhash.errors import UsageError
from tfhash.evaluation.ties import TIE_POLICIES

AP_DENOMINATORS = ("min_r_k", "relevant_in_top_k")
EMPTY_POLICIES = ("skip", "zero")
GAINS = ("shared", "jaccard")

# Keyword arguments reproducing widely used public evaluation code, e.g.
# ``evaluate_codes(..., **PRESETS["deephash"])``.
PRESETS = {
    # CalcTopMap of DeepHash-pytorch and the DPSH/HashNet-era scripts it comes
    # from: argsort of Hamming distances, AP@k over the relevant items in the
    # top k, and a query with none of them adds 0 to the sum over all queries.
    "deephash": {"ties": "index", "ap_denominator": "relevant_in_top_k", "empty_queries": "zero"}
}

_TIES_TEXT = {
    "average": "expected value over all orders of tied items (McSherry & Najork, ECIR 2008)",
    "index": "tied items in database order",
    "optimistic": "relevant items first among tied items",
    "pessimistic": "relevant items last among tied items",
}
_DENOMINATOR_TEXT = {
    "min_r_k": "AP@k divided by min(R, k)",
    "relevant_in_top_k": "AP@k divided by the relevant items in the top k",
}
_EMPTY_QUERIES_TEXT = {
    "skip": "queries with no relevant item left out of AP, recall and NDCG",
    "zero": "queries with no relevant item count as 0",
}
_EMPTY_BALL_TEXT = {
    "zero": "an empty Hamming ball has precision 0",
    "skip": "queries with an empty Hamming ball left out of precision",
}


def _check(name, value, choices):
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class Conventions:
    """How ties, AP@k denominators and undefined per-query values are handled.

    Args:
        ties: ``"average"``, ``"index"``, ``"optimistic"`` or ``"pessimistic"``.
        ap_denominator: ``"min_r_k"`` or ``"relevant_in_top_k"``.
        empty_queries: ``"skip"`` or ``"zero"``, for queries with no relevant item.
        empty_ball: ``"zero"`` or ``"skip"``, for hash lookups returning nothing.
        gain: ``"shared"`` or ``"jaccard"``, the graded relevance of NDCG, ACG, wAP.

    Example:

    >>> Conventions(**PRESETS["deephash"]).preset
    'deephash'
    """

    ties: str = "average"
    ap_denominator: str = "min_r_k"
    empty_queries: str = "skip"
    empty_ball: str = "zero"
    gain: str = "shared"

    def __post_init__(self):
        _check("ties", self.ties, TIE_POLICIES)
        _check("ap_denominator", self.ap_denominator, AP_DENOMINATORS)
        _check("empty_queries", self.empty_queries, EMPTY_POLICIES)
        _check("empty_ball", self.empty_ball, EMPTY_POLICIES)
        _check("gain", self.gain, GAINS)

    @property
    def preset(self):
        """The name of the preset these conventions match, or ``None``."""
        for name, values in PRESETS.items():
            if all(getattr(self, key) == value for key, value in values.items()):
                return name
        return None

    def for_empty_queries(self, values):
        """Per-query values with NaN (no relevant item) made 0 under ``"zero"``."""
        return np.nan_to_num(values, nan=0.0) if self.empty_queries == "zero" else values

    def for_empty_ball(self, values):
        """Per-query precisions with NaN (empty ball) made 0 under ``"zero"``."""
        return np.nan_to_num(values, nan=0.0) if self.empty_ball == "zero" else values

    def describe(self):
        """The report's ``conventions`` entry: every choice, the preset, and one sentence."""
        summary = "; ".join(
            [
                f"ties: {_TIES_TEXT[self.ties]}",
                _DENOMINATOR_TEXT[self.ap_denominator],
                _EMPTY_QUERIES_TEXT[self.empty_queries],
                _EMPTY_BALL_TEXT[self.empty_ball],
                f"graded relevance: {self.gain}",
                "relevant: shares at least one label",
            ]
        )
        return {**dataclasses.asdict(self), "preset": self.preset, "summary": summary}
