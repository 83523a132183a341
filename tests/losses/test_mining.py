"""In-batch mining of quadruplets and triplets against brute-force enumeration."""

import itertools
from collections import Counter
from math import comb

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.errors import UsageError
from tfhash.losses.mining import mine_quadruplets, mine_triplets


def relevance(labels):
    """Shares-a-label relation, written plainly."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels[:, None] == labels[None, :]
    return (labels.astype(int) @ labels.astype(int).T) > 0


def brute_quadruplets(sim):
    b = len(sim)
    found = set()
    for i, j, k, n in itertools.product(range(b), repeat=4):
        if i not in (j, k, n) and j < k and sim[i, j] and sim[i, k] and not sim[i, n]:
            found.add((i, j, k, n))
    return found


def brute_triplets(sim):
    b = len(sim)
    return {
        (i, j, n)
        for i, j, n in itertools.product(range(b), repeat=3)
        if i not in (j, n) and sim[i, j] and not sim[i, n]
    }


def random_batches(seed, count=12):
    """Small single- and multi-label batches, some with label-less items."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        b = int(rng.integers(1, 13))
        yield rng.integers(0, 4, size=b)
        yield (rng.random((b, 4)) < 0.3).astype(np.float32)


def as_set(tuples):
    return set(map(tuple, tuples.numpy().tolist()))


@pytest.mark.parametrize(
    "mine, brute", [(mine_quadruplets, brute_quadruplets), (mine_triplets, brute_triplets)]
)
def test_all_equals_brute_force(mine, brute):
    for labels in random_batches(seed=0):
        sim = relevance(labels)
        tuples = mine(tf.constant(sim), mining="all")
        assert tuples.dtype == tf.int32
        assert len(tuples.numpy()) == len(as_set(tuples))  # no duplicates
        assert as_set(tuples) == brute(sim), labels


def test_all_counts_for_balanced_batch():
    p, m = 3, 4
    b = p * m
    sim = relevance(np.repeat(np.arange(p), m))
    assert len(mine_quadruplets(sim, mining="all")) == b * comb(m - 1, 2) * (b - m)
    assert len(mine_triplets(sim, mining="all")) == b * (m - 1) * (b - m)


@pytest.mark.parametrize(
    "mine, brute", [(mine_quadruplets, brute_quadruplets), (mine_triplets, brute_triplets)]
)
def test_random_is_valid_and_takes_min_n_total_per_anchor(mine, brute):
    n = 3
    for labels in random_batches(seed=1):
        sim = relevance(labels)
        valid = brute(sim)
        per_anchor = Counter(t[0] for t in valid)
        tuples = [tuple(t) for t in mine(sim, mining="random", per_anchor=n, seed=7).numpy()]
        assert set(tuples) <= valid
        counts = Counter(t[0] for t in tuples)
        for anchor in range(len(sim)):
            assert counts[anchor] == min(n, per_anchor[anchor])
            if per_anchor[anchor] <= n:  # few tuples: all of them, once each
                assert {t for t in tuples if t[0] == anchor} == {t for t in valid if t[0] == anchor}


def test_random_is_uniform_over_an_anchors_quadruplets():
    # Anchor 0 has positives 1, 2, 3 (3 pairs) and negatives 4, 5, 6, 7: 12 quadruplets.
    sim = relevance(np.array([0, 0, 0, 0, 1, 1, 2, 2]))
    generator = keras.random.SeedGenerator(3)
    draws = Counter()
    for _ in range(150):
        for t in mine_quadruplets(sim, "random", per_anchor=4, seed=generator).numpy():
            if t[0] == 0:
                draws[tuple(t)] += 1
    assert set(draws) == {t for t in brute_quadruplets(sim) if t[0] == 0}
    # 600 draws over 12 outcomes: 50 expected each; ±25 is beyond 3.5 standard deviations.
    assert all(25 <= c <= 75 for c in draws.values()), draws


def test_random_seed_semantics():
    sim = relevance(np.repeat(np.arange(2), 6))  # 100 quadruplets per anchor
    first = mine_quadruplets(sim, "random", per_anchor=5, seed=11).numpy()
    np.testing.assert_array_equal(first, mine_quadruplets(sim, "random", 5, seed=11).numpy())
    generator = keras.random.SeedGenerator(11)
    a = mine_quadruplets(sim, "random", 5, seed=generator).numpy()
    b = mine_quadruplets(sim, "random", 5, seed=generator).numpy()
    assert a.shape == b.shape == (60, 4) and not np.array_equal(a, b)


@pytest.mark.parametrize("mine", [mine_quadruplets, mine_triplets])
@pytest.mark.parametrize("mining", ["all", "random"])
def test_no_valid_tuple_gives_empty_set(mine, mining):
    width = 4 if mine is mine_quadruplets else 3
    for labels in ([0, 1, 2, 3], [5, 5, 5], [7], np.zeros((3, 2))):
        tuples = mine(relevance(labels), mining=mining, seed=0)
        assert tuples.shape == (0, width)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_mining_in_graph_mode(jit_compile):
    labels = np.repeat(np.arange(3), 3)
    sim = tf.constant(relevance(labels))
    generator = keras.random.SeedGenerator(0)

    @tf.function(jit_compile=jit_compile)
    def mine(similarity):
        # per_anchor ≥ every anchor's 2 · 6 = 12 quadruplets: the sample is the whole set.
        return mine_quadruplets(similarity, "random", per_anchor=20, seed=generator)

    assert as_set(mine(sim)) == brute_quadruplets(relevance(labels))
    if not jit_compile:  # "all" makes a data-dependent number of tuples: no XLA
        graph_all = tf.function(lambda s: mine_quadruplets(s, "all"))(sim)
        assert as_set(graph_all) == brute_quadruplets(relevance(labels))


def test_bad_arguments():
    sim = relevance([0, 0, 1])
    with pytest.raises(UsageError, match="mining must be one of all, random, got 'some'"):
        mine_quadruplets(sim, mining="some")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(UsageError, match="quadruplets_per_anchor must be an integer"):
            mine_triplets(sim, per_anchor=bad)
