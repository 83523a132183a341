"""The compiled per-distance counts against the NumPy path they replace."""

import subprocess
import sys

import numpy as np
import pytest

from tfhash import evaluation
from tfhash.evaluation import counting, distances, inputs, ties


def random_case(seed, bits, multi_label, num_queries=30, num_items=203):
    """Codes from few centres (many exact ties at every distance) and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.random((4, bits)) < 0.5
    flips = rng.random((num_queries + num_items, bits)) < 0.1
    codes = np.where(centres[rng.integers(0, 4, len(flips))] ^ flips, 1, -1).astype(np.int8)
    if multi_label:
        labels = (rng.random((len(codes), 70)) < 0.03).astype(np.int8)  # two label words
    else:
        labels = rng.integers(0, 6, len(codes))
    return codes[:num_queries], labels[:num_queries], codes[num_queries:], labels[num_queries:]


@pytest.mark.parametrize("multi_label", [False, True], ids=["class_ids", "multi_hot"])
@pytest.mark.parametrize("bits", [3, 48, 64, 65, 130])
def test_compiled_counts_equal_numpy_bincounts(bits, multi_label):
    query, query_labels, database, database_labels = random_case(bits, bits, multi_label)
    space = distances.Hamming(database)
    query_words = space.prepare(query, "query_codes")
    relevance = inputs.Relevance(query_labels, database_labels, len(query), len(database))
    rows = slice(0, len(query))
    expected = ties.hamming_groups(space(query_words), relevance.relevant(rows), None, bits)
    got = counting.HammingCounts(space.item_words(), bits, relevance)(query_words, rows)
    np.testing.assert_array_equal(got.size, expected.size)
    np.testing.assert_array_equal(got.hits, expected.hits)
    assert got.size.sum() == len(query) * len(database)


@pytest.mark.parametrize("ties_policy", ["average", "index"])
@pytest.mark.parametrize("multi_label", [False, True], ids=["class_ids", "multi_hot"])
def test_reports_are_identical_with_and_without_the_compiled_counts(
    monkeypatch, multi_label, ties_policy
):
    case = random_case(1, 16, multi_label)
    metrics = ["map", "map@50", evaluation.PrecisionRecallAtK([1, 10, 100]), "p@r2", "pr"]
    compiled = evaluation.evaluate_codes(*case, metrics=metrics, ties=ties_policy)
    monkeypatch.setattr(counting, "available", lambda: False)
    numpy_only = evaluation.evaluate_codes(*case, metrics=metrics, ties=ties_policy)
    assert compiled == numpy_only


def test_the_evaluator_imports_and_runs_without_numba():
    code = (
        "import sys; sys.modules['numba'] = None; import numpy as np; "
        "import tfhash.evaluation as e; from tfhash.evaluation import counting; "
        "c = np.array([[1, 1], [-1, -1]]); "
        "assert not counting.available(); "
        "assert e.evaluate_codes(c, [0, 1], c, [0, 1], metrics=['map'])['map'] == 1.0"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_evaluator_does_not_import_numba():
    code = (
        "import sys; import tfhash.evaluation; "
        "assert 'numba' not in sys.modules, 'numba is imported on first use only'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
