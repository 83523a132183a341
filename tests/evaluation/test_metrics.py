"""Every metric under every tie policy against a brute-force reference written plainly here;
MAP with relevance "Jaccard ≥ t", per-metric gains and default_metrics.

The reference computes distances bit by bit, relevance from label sets, ranks
with Python's ``sorted`` on explicit keys, and for ``ties="average"`` averages
over every order of every tie group (``itertools.permutations``). The cases are
tiny, with 3- or 4-bit codes, so that the rankings are full of ties.
"""

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tfhash import evaluation
from tfhash.errors import UsageError

TIES = ["average", "index", "optimistic", "pessimistic"]


# --- The reference -----------------------------------------------------------------------


def hamming(a, b):
    return sum(1 for x, y in zip(a, b) if (x > 0) != (y > 0))


def squared_euclidean(a, b):
    return sum((float(x) - float(y)) ** 2 for x, y in zip(a, b))


def label_set(row):
    if np.ndim(row) == 0:
        return {int(row)}
    return {c for c, v in enumerate(row) if v}


def graded_gain(query, item, gain):
    shared = len(query & item)
    if gain == "shared":
        return shared
    union = len(query | item)
    return shared / union if union else 0.0


def orders(dist, gains, ties):
    """The rankings a tie policy gives; for "average", every order of every tie group."""
    items = range(len(dist))
    if ties == "index":
        return [sorted(items, key=lambda i: (dist[i], i))]
    if ties == "optimistic":
        return [sorted(items, key=lambda i: (dist[i], -gains[i], i))]
    if ties == "pessimistic":
        return [sorted(items, key=lambda i: (dist[i], gains[i], i))]
    groups = [[i for i in items if dist[i] == d] for d in sorted(set(dist))]
    return [
        list(itertools.chain(*choice))
        for choice in itertools.product(*(itertools.permutations(g) for g in groups))
    ]


def average_precision(seq, k, num_relevant, denominator):
    """AP@k of gains in rank order: binary AP for 0/1 gains, weighted AP otherwise."""
    if num_relevant == 0:
        return None
    found, total, gain_sum = 0, 0.0, 0.0
    for i, g in enumerate(seq[:k], start=1):
        gain_sum += g
        if g > 0:
            found += 1
            total += gain_sum / i
    d = found if denominator == "relevant_in_top_k" else min(num_relevant, k)
    return total / d if d else 0.0


def dcg(seq, k):
    return sum((2.0**g - 1) / math.log2(i + 1) for i, g in enumerate(seq[:k], start=1))


def ndcg(seq, k, all_gains):
    ideal = dcg(sorted(all_gains, reverse=True), k)
    return dcg(seq, k) / ideal if ideal else None


def reference(
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    *,
    ties,
    k,
    radius,
    ap_denominator="min_r_k",
    empty_queries="skip",
    empty_ball="zero",
    gain="shared",
    distance=hamming,
):
    """The report of ``evaluate_codes`` for METRICS(k, radius), computed the slow way."""
    n = len(db_codes)
    values = {}

    def add(name, value, empty_policy):
        values.setdefault(name, [])
        if value is not None:
            values[name].append(value)
        elif empty_policy == "zero":
            values[name].append(0.0)

    for q in range(len(query_codes)):
        dist = [distance(query_codes[q], db_codes[i]) for i in range(n)]
        query = label_set(query_labels[q])
        gains = [graded_gain(query, label_set(db_labels[i]), gain) for i in range(n)]
        rel = [1 if g > 0 else 0 for g in gains]
        r = sum(rel)
        rankings = orders(dist, gains, ties)

        def mean(f):
            results = [f(order) for order in rankings]
            return None if results[0] is None else sum(results) / len(results)

        def binary(order):
            return [rel[i] for i in order]

        def graded(order):
            return [gains[i] for i in order]

        for cut, suffix in [(n, ""), (k, f"@{k}")]:
            add(
                "map" + suffix,
                mean(lambda o: average_precision(binary(o), cut, r, ap_denominator)),
                empty_queries,
            )
            add(
                "wap" + suffix,
                mean(lambda o: average_precision(graded(o), cut, r, ap_denominator)),
                empty_queries,
            )
            add("ndcg" + suffix, mean(lambda o: ndcg(graded(o), cut, gains)), empty_queries)
            add("acg" + suffix, mean(lambda o: sum(graded(o)[:cut]) / cut), None)
        for cut in range(1, n + 1):
            add(f"p@{cut}", mean(lambda o: sum(binary(o)[:cut]) / cut), None)
            add(f"r@{cut}", mean(lambda o: sum(binary(o)[:cut]) / r if r else None), empty_queries)
        if distance is hamming:
            for rad in range(len(query_codes[q]) + 1):
                ball = [i for i in range(n) if dist[i] <= rad]
                hits = sum(rel[i] for i in ball)
                add(f"pr_p{rad}", hits / len(ball) if ball else None, empty_ball)
                add(f"pr_r{rad}", hits / r if r else None, empty_queries)
                add(f"empty{rad}", 0.0 if ball else 1.0, None)

    mean_of = {name: sum(v) / len(v) if v else None for name, v in values.items()}
    report = {
        name: mean_of[name]
        for name in ["map", f"map@{k}", "wap", f"wap@{k}", "ndcg", f"ndcg@{k}", "acg", f"acg@{k}"]
    }
    report["p@k"] = {
        "k": list(range(1, n + 1)),
        "precision": [mean_of[f"p@{c}"] for c in range(1, n + 1)],
        "recall": [mean_of[f"r@{c}"] for c in range(1, n + 1)],
    }
    if distance is hamming:
        bits = len(query_codes[0])
        report["pr"] = {
            "radius": list(range(bits + 1)),
            "precision": [mean_of[f"pr_p{r}"] for r in range(bits + 1)],
            "recall": [mean_of[f"pr_r{r}"] for r in range(bits + 1)],
        }
        report[f"p@r{radius}"] = {
            "radius": radius,
            "precision": mean_of[f"pr_p{radius}"],
            "recall": mean_of[f"pr_r{radius}"],
            "empty_ball_fraction": mean_of[f"empty{radius}"],
        }
    return report


def metrics_for(k, radius, num_items, hamming_metrics=True):
    metrics = [
        "map",
        f"map@{k}",
        "wap",
        f"wap@{k}",
        "ndcg",
        f"ndcg@{k}",
        "acg",
        f"acg@{k}",
        evaluation.PrecisionRecallAtK(ks=range(1, num_items + 1)),
    ]
    if hamming_metrics:
        metrics += ["pr", f"p@r{radius}"]
    return metrics


def assert_matches(ours, expected, tolerance=1e-12):
    for name, value in expected.items():
        if isinstance(value, dict):
            assert_matches(ours[name], value, tolerance)
        elif isinstance(value, list):
            assert len(ours[name]) == len(value), name
            for a, b in zip(ours[name], value):
                assert (a is None and b is None) or a == pytest.approx(b, abs=tolerance), name
        else:
            assert (ours[name] is None and value is None) or (
                ours[name] == pytest.approx(value, abs=tolerance)
            ), (name, ours[name], value)


def random_case(seed, multi_label, num_queries=6, num_items=7, bits=3):
    """±1 codes of few bits (many ties) and labels; some multi-label rows have no label."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((num_queries + num_items, bits)) < 0.5, 1, -1).astype(np.int8)
    if multi_label:
        labels = (rng.random((num_queries + num_items, 4)) < 0.35).astype(np.int8)
    else:
        labels = rng.integers(0, 3, num_queries + num_items)
    return codes[:num_queries], labels[:num_queries], codes[num_queries:], labels[num_queries:]


# --- Every metric, every policy, every convention ------------------------------------------


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("ap_denominator", ["min_r_k", "relevant_in_top_k"])
@pytest.mark.parametrize(
    "multi_label,gain", [(False, "shared"), (True, "shared"), (True, "jaccard")]
)
@pytest.mark.parametrize("empty_queries,empty_ball", [("skip", "zero"), ("zero", "skip")])
def test_hamming_metrics_match_brute_force(
    ties, ap_denominator, multi_label, gain, empty_queries, empty_ball
):
    conventions = dict(
        ties=ties,
        ap_denominator=ap_denominator,
        empty_queries=empty_queries,
        empty_ball=empty_ball,
        gain=gain,
    )
    for seed in range(2):
        case = random_case(seed + 10 * multi_label, multi_label)
        ours = evaluation.evaluate_codes(*case, metrics=metrics_for(3, 1, 7), **conventions)
        assert_matches(ours, reference(*case, k=3, radius=1, **conventions))
        assert ours["conventions"]["ties"] == ties


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("ap_denominator", ["min_r_k", "relevant_in_top_k"])
def test_euclidean_embeddings_match_brute_force(ties, ap_denominator):
    rng = np.random.default_rng(3)
    # Small integer coordinates: squared distances are exact, so ties are exact.
    embeddings = rng.integers(0, 3, (13, 2)).astype(np.float32)
    labels = (rng.random((13, 3)) < 0.4).astype(np.int8)
    case = embeddings[:5], labels[:5], embeddings[5:], labels[5:]
    ours = evaluation.evaluate_codes(
        *case,
        metrics=metrics_for(3, 1, 8, hamming_metrics=False),
        ties=ties,
        ap_denominator=ap_denominator,
        distance="euclidean",
    )
    expected = reference(
        *case, k=3, radius=1, ties=ties, ap_denominator=ap_denominator, distance=squared_euclidean
    )
    assert_matches(ours, expected)


@pytest.mark.parametrize("ties", TIES)
def test_cosine_embeddings_match_brute_force(ties):
    # Rows of norm 1 or 2 (exact in binary), and scaled copies: exact cosine ties.
    signs = np.array(list(itertools.product([-1, 1], repeat=4)), np.float64)[::3]
    axes = np.concatenate([np.eye(4), 2 * np.eye(4)])
    embeddings = np.concatenate([signs, axes])
    labels = np.arange(len(embeddings)) % 3
    case = embeddings[:4], labels[:4], embeddings[4:], labels[4:]

    def cosine(a, b):
        return 1 - float(np.dot(a, b)) / float(np.linalg.norm(a) * np.linalg.norm(b))

    ours = evaluation.evaluate_codes(
        *case, metrics=metrics_for(3, 1, 10, hamming_metrics=False), ties=ties, distance="cosine"
    )
    assert_matches(ours, reference(*case, k=3, radius=1, ties=ties, distance=cosine))


def test_expected_ap_hand_computed():
    # One tie group of 3 at distance 0 holding 2 relevant items; R = 2, k = 2.
    # Arrangements (equally likely): RRI, RIR, IRR.
    #   relevant_in_top_k: AP@2 = 1, 1/1, (1/2)/1     -> mean 5/6
    #   min(R, k) = 2:     AP@2 = 1, 1/2, (1/2)/2     -> mean 7/12
    codes = np.ones((4, 2), np.int8)
    labels = np.array([0, 0, 0, 1])
    args = codes[:1], labels[:1], codes[1:], labels[1:]
    kwargs = dict(top_k=2)
    assert evaluation.mean_average_precision(
        *args, ap_denominator="relevant_in_top_k", **kwargs
    ) == pytest.approx(5 / 6, abs=1e-15)
    assert evaluation.mean_average_precision(*args, **kwargs) == pytest.approx(7 / 12, abs=1e-15)


def test_relevant_in_top_k_is_not_monotone_so_bounds_do_not_hold():
    # Ranks: relevant (d=0), irrelevant (d=1), then a tie {irrelevant, relevant} (d=2); k=3.
    # Optimistic R I R: (1 + 2/3) / 2 = 5/6.  Pessimistic R I I: 1/1 = 1.
    db = np.array([[1, 1], [1, -1], [-1, -1], [-1, -1]], np.int8)
    db_labels = np.array([0, 1, 1, 0])
    kwargs = dict(top_k=3, ap_denominator="relevant_in_top_k")
    args = db[:1], db_labels[:1], db, db_labels
    assert evaluation.mean_average_precision(*args, ties="optimistic", **kwargs) == pytest.approx(
        5 / 6
    )
    assert evaluation.mean_average_precision(*args, ties="pessimistic", **kwargs) == 1.0


def test_average_of_a_large_tie_group_matches_enumeration():
    # 4 items at distance 0 (2 relevant), then 12 tied at distance 1 (5 relevant).
    # Every placement of the relevant items within each group is equally likely.
    codes = np.array([[1, 1]] * 5 + [[1, -1]] * 12, np.int8)
    labels = np.array([0] + [0, 0, 1, 1] + [0] * 5 + [1] * 7)
    args = codes[:1], labels[:1], codes[1:], labels[1:]
    for k, denominator in [
        (16, "min_r_k"),
        (9, "min_r_k"),
        (9, "relevant_in_top_k"),
        (4, "relevant_in_top_k"),
    ]:
        values = []
        for first in itertools.combinations(range(4), 2):
            for second in itertools.combinations(range(12), 5):
                seq = [int(i in first) for i in range(4)] + [int(i in second) for i in range(12)]
                values.append(average_precision(seq, k, 7, denominator))
        ours = evaluation.mean_average_precision(*args, top_k=k, ap_denominator=denominator)
        assert ours == pytest.approx(sum(values) / len(values), abs=1e-13), (k, denominator)


# --- Properties ------------------------------------------------------------------------------


def shares_a_label(query_codes, query_labels, db_codes, db_labels):
    items = [label_set(row) for row in db_labels]
    return any(label_set(q) & item for q in query_labels for item in items)


PROPERTY_METRICS = ["map", "map@7", "wap@7", "ndcg@7", "acg@7", "p@k"]


def _flat(report):
    flat = {}
    for name in PROPERTY_METRICS:
        value = report[name]
        flat.update(
            {f"{name}/{i}": v for i, v in enumerate(value["precision"] + value["recall"])}
            if isinstance(value, dict)
            else {name: value}
        )
    return flat


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_items=st.integers(8, 60),
    bits=st.integers(2, 8),
    multi_label=st.booleans(),
)
def test_pessimistic_le_average_le_optimistic(seed, num_items, bits, multi_label):
    case = random_case(seed, multi_label, num_queries=4, num_items=num_items, bits=bits)
    assume(shares_a_label(*case))
    reports = {
        t: _flat(evaluation.evaluate_codes(*case, metrics=PROPERTY_METRICS, ties=t)) for t in TIES
    }
    for name, average in reports["average"].items():
        low, high = reports["pessimistic"][name], reports["optimistic"][name]
        assert low - 1e-12 <= average <= high + 1e-12, name
        assert low - 1e-12 <= reports["index"][name] <= high + 1e-12, name


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), num_items=st.integers(8, 80), multi_label=st.booleans())
def test_average_does_not_depend_on_database_order_but_index_does_not_have_to(
    seed, num_items, multi_label
):
    query_codes, query_labels, db_codes, db_labels = random_case(
        seed, multi_label, num_queries=4, num_items=num_items, bits=4
    )
    assume(shares_a_label(query_codes, query_labels, db_codes, db_labels))
    permutation = np.random.default_rng(seed).permutation(num_items)
    before = evaluation.evaluate_codes(
        query_codes, query_labels, db_codes, db_labels, metrics=PROPERTY_METRICS
    )
    after = evaluation.evaluate_codes(
        query_codes,
        query_labels,
        db_codes[permutation],
        db_labels[permutation],
        metrics=PROPERTY_METRICS,
    )
    assert_matches(_flat(after), _flat(before), tolerance=1e-12)


# --- The compatibility preset ----------------------------------------------------------------


def calc_top_map(query_codes, database_codes, query_labels, database_labels, topk):
    """MAP@k as widely used public deep-hashing code writes it (±1 codes, multi-hot labels),
    with a stable argsort so that tied items stay in database order."""
    num_query = query_labels.shape[0]
    topkmap = 0
    for i in range(num_query):
        gnd = (np.dot(query_labels[i, :], database_labels.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (database_codes.shape[1] - np.dot(query_codes[i, :], database_codes.T))
        ind = np.argsort(hamm, kind="stable")
        gnd = gnd[ind]
        tgnd = gnd[0:topk]
        tsum = np.sum(tgnd).astype(int)
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        topkmap = topkmap + np.mean(count / tindex)
    return topkmap / num_query


@pytest.mark.parametrize("multi_label", [False, True])
def test_deephash_preset_reproduces_field_code(multi_label):
    rng = np.random.default_rng(7)
    codes = np.where(rng.random((600, 16)) < 0.5, 1, -1).astype(np.float32)
    if multi_label:
        labels = (rng.random((600, 6)) < 0.2).astype(np.float32)
    else:
        labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 600)]
    query, database = slice(0, 50), slice(50, 600)
    for top_k in [1, 37, 100, 550]:
        expected = calc_top_map(
            codes[query], codes[database], labels[query], labels[database], top_k
        )
        ours = evaluation.mean_average_precision(
            codes[query],
            labels[query],
            codes[database],
            labels[database],
            top_k=top_k,
            **evaluation.PRESETS["deephash"],
        )
        assert ours == pytest.approx(expected, abs=1e-9)


# --- Jaccard relevance, per-metric gains, default_metrics ----------------------------------


def jaccard_map(query_codes, query_labels, db_codes, db_labels, *, ties, k, threshold):
    """MAP@k with relevance J ≥ t, the slow way (every tie order under "average")."""
    values = []
    for q in range(len(query_codes)):
        dist = [hamming(query_codes[q], c) for c in db_codes]
        query = label_set(query_labels[q])
        rel = [
            1 if graded_gain(query, label_set(d), "jaccard") >= threshold else 0 for d in db_labels
        ]
        r = sum(rel)
        if r == 0:
            continue  # empty_queries="skip"
        aps = [
            average_precision([rel[i] for i in o], k, r, "min_r_k") for o in orders(dist, rel, ties)
        ]
        values.append(sum(aps) / len(aps))
    return sum(values) / len(values) if values else None


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 1.0])
def test_jaccard_map_matches_brute_force(ties, threshold):
    for seed in range(3):
        case = random_case(seed + 40, True)
        ours = evaluation.evaluate_codes(
            *case,
            metrics=[f"map:jaccard>={threshold:g}", f"map@3:jaccard>={threshold:g}"],
            ties=ties,
        )
        for name, k in [(f"map:jaccard>={threshold:g}", 7), (f"map@3:jaccard>={threshold:g}", 3)]:
            expected = jaccard_map(*case, ties=ties, k=k, threshold=threshold)
            assert (ours[name] is None and expected is None) or ours[name] == pytest.approx(
                expected, abs=1e-12
            ), name


def test_jaccard_map_of_class_ids_is_map():
    case = random_case(3, False)
    ours = evaluation.evaluate_codes(*case, metrics=["map", "map:jaccard>=0.5"])
    assert ours["map:jaccard>=0.5"] == pytest.approx(ours["map"], abs=1e-12)


@pytest.mark.parametrize("ties", ["average", "index"])
def test_each_metric_may_carry_its_own_gain(ties):
    """ndcg@3:jaccard in a report whose convention is shared equals ndcg@3 under jaccard."""
    case = random_case(7, True)
    mixed = evaluation.evaluate_codes(
        *case,
        metrics=["map", "ndcg@3:jaccard", "ndcg@3", "acg@3:jaccard", "wap@3:shared"],
        ties=ties,
    )
    for gain in ("shared", "jaccard"):
        alone = evaluation.evaluate_codes(
            *case, metrics=["ndcg@3", "acg@3", "wap@3"], gain=gain, ties=ties
        )
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
            gains = [
                graded_gain(label_set(query_labels[q]), label_set(d), "jaccard") for d in db_labels
            ]
            (order,) = orders(dist, gains, "index")
            value = ndcg([gains[i] for i in order], 3, gains)
            if value is not None:
                expected.append(value)
        assert mixed["ndcg@3:jaccard"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_default_metrics_rule():
    assert evaluation.default_metrics(np.array([0, 1, 2])) == evaluation.DEFAULT_METRICS
    multi = evaluation.default_metrics(np.ones((500, 5), int))
    assert multi[:4] == evaluation.DEFAULT_METRICS
    assert set(multi[4:]) == {
        "map:jaccard>=0.5",
        "ndcg@100:shared",
        "ndcg@100:jaccard",
        "acg@100:shared",
        "acg@100:jaccard",
        "wap@100:shared",
        "wap@100:jaccard",
    }
    assert "ndcg@7:jaccard" in evaluation.default_metrics(np.ones((7, 2), int))
    query_codes, query_labels, db_codes, db_labels = random_case(1, True)
    report = evaluation.evaluate_codes(
        query_codes,
        query_labels,
        db_codes,
        db_labels,
        metrics=evaluation.default_metrics(db_labels),
    )
    assert report["map:jaccard>=0.5"] is not None and "ndcg@7:shared" in report
    assert "MAP:jaccard>=0.5" in evaluation.summary_line(report)


@pytest.mark.parametrize(
    "name,message",
    [
        ("map:jaccard>=0", r"needs t in \(0, 1\]"),
        ("map:jaccard>=1.5", r"needs t in \(0, 1\]"),
        ("map:shared", "map uses binary relevance and takes no gain"),
        ("ndcg@3:cosine", "unknown metric"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(UsageError, match=message):
        evaluation.evaluate_codes(*random_case(0, True), metrics=[name])
