"""Code and label formats the evaluator accepts, and the one-line errors for everything else."""

import subprocess
import sys

import numpy as np
import pytest

from tfhash import evaluation
from tfhash.errors import UsageError


def case(bits=12, num_queries=5, num_items=40, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((num_queries + num_items, bits)) < 0.5, 1, -1).astype(np.int8)
    labels = rng.integers(0, 4, num_queries + num_items)
    return codes[:num_queries], labels[:num_queries], codes[num_queries:], labels[num_queries:]


METRICS = ["map", "map@10", "p@k", "p@r2", "pr"]


def score(query_codes, query_labels, db_codes, db_labels, **kwargs):
    return evaluation.evaluate_codes(
        query_codes, query_labels, db_codes, db_labels, metrics=METRICS, **kwargs
    )


def without_data(report):
    return {k: v for k, v in report.items() if k != "data"}


def test_every_code_format_gives_the_same_report():
    query, query_labels, db, db_labels = case(bits=12)
    expected = score(query, query_labels, db, db_labels)
    forms = {
        "float ±1": (query.astype(np.float32), db.astype(np.float32), None),
        "0/1 uint8": ((query > 0).astype(np.uint8), (db > 0).astype(np.uint8), None),
        "bool": (query > 0, db > 0, None),
        "packed": (np.packbits(query > 0, axis=1), np.packbits(db > 0, axis=1), 12),
    }
    for name, (q, d, bits) in forms.items():
        assert score(q, query_labels, d, db_labels, bits=bits) == expected, name


def test_codes_longer_than_one_word_and_one_byte_distances():
    # 300 bits: five 64-bit words, and distances above 255 (uint16).
    query, query_labels, db, db_labels = case(bits=300, num_items=30)
    db[0] = -query[0]  # distance 300 from query 0
    report = score(query, query_labels, db, db_labels)
    reference = evaluation.evaluate_codes(
        query.astype(np.float64),
        query_labels,
        db.astype(np.float64),
        db_labels,
        metrics=["map"],
        distance="euclidean",
    )
    # ±1 codes: squared Euclidean distance = 4 · Hamming, so the rankings agree.
    assert report["map"] == pytest.approx(reference["map"], abs=1e-12)
    assert report["data"]["bits"] == 300


def test_one_hot_labels_equal_class_ids():
    query, query_labels, db, db_labels = case()
    one_hot = np.eye(4, dtype=np.int8)
    assert without_data(
        score(query, one_hot[query_labels], db, one_hot[db_labels])
    ) == without_data(score(query, query_labels, db, db_labels))


def test_report_states_conventions_and_data():
    query, query_labels, db, db_labels = case()
    report = score(query, query_labels, db, db_labels, **evaluation.PRESETS["deephash"])
    conventions = report["conventions"]
    assert conventions["ties"] == "index"
    assert conventions["ap_denominator"] == "relevant_in_top_k"
    assert conventions["empty_queries"] == "zero"
    assert conventions["preset"] == "deephash"
    assert "database order" in conventions["summary"]
    assert report["data"] == {
        "queries": 5,
        "database": 40,
        "bits": 12,
        "labels": "class ids",
        "queries_without_relevant": 0,
        "tfhash_version": "0.1.0",
    }
    assert score(query, query_labels, db, db_labels)["conventions"]["preset"] is None


def test_queries_without_relevant_items_skip_or_zero():
    query, _, db, _ = case(num_queries=4)
    db_labels = np.zeros((40, 3), np.int8)
    db_labels[::2, 0] = 1
    query_labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], np.int8)
    skip = evaluation.evaluate_codes(query, query_labels, db, db_labels, metrics=["map"])
    zero = evaluation.evaluate_codes(
        query, query_labels, db, db_labels, metrics=["map"], empty_queries="zero"
    )
    assert skip["data"]["queries_without_relevant"] == 2
    assert zero["map"] == pytest.approx(skip["map"] * 2 / 4)


def test_report_is_json_serialisable():
    import json

    query, query_labels, db, db_labels = case()
    report = evaluation.evaluate_codes(
        query, query_labels, db, db_labels, metrics=METRICS + ["ndcg@5", "acg@5", "wap"]
    )
    assert json.loads(json.dumps(report)) == report


def test_metric_objects_and_names_are_interchangeable():
    query, query_labels, db, db_labels = case()
    by_name = evaluation.evaluate_codes(
        query, query_labels, db, db_labels, metrics=["map@10", "p@r1", "ndcg@5"]
    )
    by_object = evaluation.evaluate_codes(
        query,
        query_labels,
        db,
        db_labels,
        metrics=[
            evaluation.MeanAveragePrecision(k=10),
            evaluation.PrecisionRecallWithinRadius(radius=1),
            evaluation.NormalizedDCG(k=5),
        ],
    )
    assert by_name == by_object
    assert (
        evaluation.evaluate_codes(query, query_labels, db, db_labels, metrics=["map"], top_k=10)[
            "map@10"
        ]
        == by_name["map@10"]
    )


def _error(call):
    with pytest.raises(UsageError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    return message


BAD_INPUTS = [
    ("relaxed codes", lambda q, ql, d, dl: (q * 0.7, ql, d, dl, {}), "must be binary"),
    (
        "mixed 0 and -1",
        lambda q, ql, d, dl: (np.r_[np.maximum(q[:1], 0), q[1:]], ql, d, dl, {}),
        "mixes -1, 0 and 1",
    ),
    (
        "NaN in codes",
        lambda q, ql, d, dl: (np.where(q > 0, np.nan, -1.0), ql, d, dl, {}),
        "must be binary",
    ),
    (
        "packed without bits",
        lambda q, ql, d, dl: (np.packbits(q > 0, axis=1), ql, np.packbits(d > 0, axis=1), dl, {}),
        "pass bits=",
    ),
    (
        "packed, wrong width",
        lambda q, ql, d, dl: (
            np.packbits(q > 0, axis=1),
            ql,
            np.packbits(d > 0, axis=1),
            dl,
            {"bits": 24},
        ),
        "packed uint8 rows of 3 bytes",
    ),
    (
        "packed, padding set",
        lambda q, ql, d, dl: (
            np.packbits(q > 0, axis=1),
            ql,
            np.packbits(d > 0, axis=1) | 1,
            dl,
            {"bits": 12},
        ),
        "must be zero",
    ),
    ("lengths differ", lambda q, ql, d, dl: (q[:, :8], ql, d, dl, {}), "have 8 bits but"),
    ("1-D codes", lambda q, ql, d, dl: (q[0], ql, d, dl, {}), "must be a 2-D array"),
    ("codes vs labels", lambda q, ql, d, dl: (q, ql, d, dl[:-1], {}), "has 39 rows but"),
    ("query codes vs labels", lambda q, ql, d, dl: (q, ql[:2], d, dl, {}), "has 2 rows but"),
    ("3-D labels", lambda q, ql, d, dl: (q, ql[:, None, None], d, dl, {}), "class ids [N] or"),
    ("float class ids", lambda q, ql, d, dl: (q, ql.astype(float), d, dl, {}), "must be integers"),
    (
        "soft multi-hot",
        lambda q, ql, d, dl: (q, np.full((5, 4), 0.5), d, np.eye(4)[dl], {}),
        "must be 0/1",
    ),
    (
        "class ids vs multi-hot",
        lambda q, ql, d, dl: (q, ql, d, np.eye(4)[dl], {}),
        "give both as class ids",
    ),
    (
        "classes differ",
        lambda q, ql, d, dl: (q, np.eye(5)[ql], d, np.eye(4)[dl], {}),
        "have 5 classes but",
    ),
    ("no shared label", lambda q, ql, d, dl: (q, ql + 10, d, dl, {}), "no query shares a label"),
    ("empty query set", lambda q, ql, d, dl: (q[:0], ql[:0], d, dl, {}), "query_codes is empty"),
    (
        "k too large",
        lambda q, ql, d, dl: (q, ql, d, dl, {"metrics": ["map@41"]}),
        "larger than the database (40 items)",
    ),
    (
        "top_k too large",
        lambda q, ql, d, dl: (q, ql, d, dl, {"metrics": ["map"], "top_k": 50}),
        "larger than the database",
    ),
    (
        "p@k too large",
        lambda q, ql, d, dl: (
            q,
            ql,
            d,
            dl,
            {"metrics": [evaluation.PrecisionRecallAtK(ks=[5, 400])]},
        ),
        "k=400 is larger",
    ),
    ("k zero", lambda q, ql, d, dl: (q, ql, d, dl, {"metrics": ["map@0"]}), "positive integer"),
    (
        "radius too large",
        lambda q, ql, d, dl: (q, ql, d, dl, {"metrics": ["p@r13"]}),
        "exceeds the code length (12 bits)",
    ),
    (
        "unknown metric",
        lambda q, ql, d, dl: (q, ql, d, dl, {"metrics": ["mAP"]}),
        "unknown metric 'mAP'",
    ),
    (
        "metric twice",
        lambda q, ql, d, dl: (q, ql, d, dl, {"metrics": ["map", "map"]}),
        "listed twice",
    ),
    (
        "unknown ties",
        lambda q, ql, d, dl: (q, ql, d, dl, {"ties": "random"}),
        "ties must be one of average, index",
    ),
    (
        "unknown denominator",
        lambda q, ql, d, dl: (q, ql, d, dl, {"ap_denominator": "R"}),
        "ap_denominator must be one of",
    ),
    (
        "unknown distance",
        lambda q, ql, d, dl: (q, ql, d, dl, {"distance": "l1"}),
        "distance must be one of",
    ),
    (
        "radius on embeddings",
        lambda q, ql, d, dl: (
            q * 0.5,
            ql,
            d * 0.5,
            dl,
            {"distance": "cosine", "metrics": ["p@r2"]},
        ),
        "needs binary codes",
    ),
    (
        "bits on embeddings",
        lambda q, ql, d, dl: (q, ql, d, dl, {"distance": "euclidean", "bits": 12}),
        "bits= is for packed binary codes",
    ),
    (
        "zero embedding for cosine",
        lambda q, ql, d, dl: (
            q,
            ql,
            d * np.r_[0, np.ones(39)][:, None],
            dl,
            {"distance": "cosine"},
        ),
        "all-zero row",
    ),
]


@pytest.mark.parametrize("name,make,expected", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_one_line_usage_error(name, make, expected):
    *arrays, kwargs = make(*case())
    message = _error(lambda: evaluation.evaluate_codes(*arrays, **kwargs))
    assert expected in message, message


def test_importing_the_evaluator_does_not_import_tensorflow():
    code = (
        "import sys, numpy as np; import tfhash.evaluation as e; "
        "c = np.array([[1, -1], [1, 1]]); e.evaluate_codes(c, [0, 1], c, [0, 1]); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
        "sorted(m for m in sys.modules if 'tensorflow' in m or 'keras' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
