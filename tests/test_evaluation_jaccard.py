"""MAP with relevance "Jaccard ≥ t", per-metric gains and default_metrics, by brute force."""

import numpy as np
import pytest
from test_evaluation_metrics import (
    TIES,
    average_precision,
    graded_gain,
    hamming,
    label_set,
    ndcg,
    orders,
    random_case,
)

from tfhash import evaluation
from tfhash.errors import UsageError


def jaccard_map(query_codes, query_labels, db_codes, db_labels, *, ties, k, threshold):
    """MAP@k with relevance J ≥ t, the slow way (every tie order under "average")."""
    values = []
    for q in range(len(query_codes)):
        dist = [hamming(query_codes[q], c) for c in db_codes]
        query = label_set(query_labels[q])
        rel = [1 if graded_gain(query, label_set(d), "jaccard") >= threshold else 0
               for d in db_labels]
        r = sum(rel)
        if r == 0:
            continue  # empty_queries="skip"
        aps = [average_precision([rel[i] for i in o], k, r, "min_r_k")
               for o in orders(dist, rel, ties)]
        values.append(sum(aps) / len(aps))
    return sum(values) / len(values) if values else None


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 1.0])
def test_jaccard_map_matches_brute_force(ties, threshold):
    for seed in range(3):
        case = random_case(seed + 40, True)
        ours = evaluation.evaluate_codes(
            *case, metrics=[f"map:jaccard>={threshold:g}", f"map@3:jaccard>={threshold:g}"],
            ties=ties)
        for name, k in [(f"map:jaccard>={threshold:g}", 7), (f"map@3:jaccard>={threshold:g}", 3)]:
            expected = jaccard_map(*case, ties=ties, k=k, threshold=threshold)
            assert (ours[name] is None and expected is None) or ours[name] == pytest.approx(
                expected, abs=1e-12), name


def test_jaccard_map_of_class_ids_is_map():
    case = random_case(3, False)
    ours = evaluation.evaluate_codes(*case, metrics=["map", "map:jaccard>=0.5"])
    assert ours["map:jaccard>=0.5"] == pytest.approx(ours["map"], abs=1e-12)


@pytest.mark.parametrize("ties", ["average", "index"])
def test_each_metric_may_carry_its_own_gain(ties):
    """ndcg@3:jaccard in a report whose convention is shared equals ndcg@3 under jaccard."""
    case = random_case(7, True)
    mixed = evaluation.evaluate_codes(*case, metrics=["map", "ndcg@3:jaccard", "ndcg@3",
                                                      "acg@3:jaccard", "wap@3:shared"], ties=ties)
    for gain in ("shared", "jaccard"):
        alone = evaluation.evaluate_codes(*case, metrics=["ndcg@3", "acg@3", "wap@3"],
                                          gain=gain, ties=ties)
        if gain == "jaccard":
            assert mixed["ndcg@3:jaccard"] == pytest.approx(alone["ndcg@3"], abs=1e-12)
            assert mixed["acg@3:jaccard"] == pytest.approx(alone["acg@3"], abs=1e-12)
        else:
            assert mixed["ndcg@3"] == pytest.approx(alone["ndcg@3"], abs=1e-12)
            assert mixed["wap@3:shared"] == pytest.approx(alone["wap@3"], abs=1e-12)
    # and one reference value by hand: the first query's NDCG@3 with Jaccard gains, index ties
    if ties == "index":
        query_codes, query_labels, db_codes, db_labels = case
        expected = []
        for q in range(len(query_codes)):
            dist = [hamming(query_codes[q], c) for c in db_codes]
            gains = [graded_gain(label_set(query_labels[q]), label_set(d), "jaccard")
                     for d in db_labels]
            (order,) = orders(dist, gains, "index")
            value = ndcg([gains[i] for i in order], 3, gains)
            if value is not None:
                expected.append(value)
        assert mixed["ndcg@3:jaccard"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_default_metrics_rule():
    assert evaluation.default_metrics(np.array([0, 1, 2])) == evaluation.DEFAULT_METRICS
    multi = evaluation.default_metrics(np.ones((500, 5), int))
    assert multi[:4] == evaluation.DEFAULT_METRICS
    assert set(multi[4:]) == {"map:jaccard>=0.5", "ndcg@100:shared", "ndcg@100:jaccard",
                              "acg@100:shared", "acg@100:jaccard", "wap@100:shared",
                              "wap@100:jaccard"}
    assert "ndcg@7:jaccard" in evaluation.default_metrics(np.ones((7, 2), int))
    query_codes, query_labels, db_codes, db_labels = random_case(1, True)
    report = evaluation.evaluate_codes(query_codes, query_labels, db_codes, db_labels,
                                       metrics=evaluation.default_metrics(db_labels))
    assert report["map:jaccard>=0.5"] is not None and "ndcg@7:shared" in report
    assert "MAP:jaccard>=0.5" in evaluation.summary_line(report)


@pytest.mark.parametrize("name,message", [
    ("map:jaccard>=0", r"needs t in \(0, 1\]"),
    ("map:jaccard>=1.5", r"needs t in \(0, 1\]"),
    ("map:shared", "map uses binary relevance and takes no gain"),
    ("ndcg@3:cosine", "unknown metric"),
])
def test_bad_names(name, message):
    with pytest.raises(UsageError, match=message):
        evaluation.evaluate_codes(*random_case(0, True), metrics=[name])
