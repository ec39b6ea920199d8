import itertools
from collections import Counter

import numpy as np
import pytest
from simulate_stats import assert_distribution

from dbdflow.simulate import Lattice, sample_counts, sample_densities


def test_counts_are_exact_and_arrangements_uniform():
    rng = np.random.default_rng(11)
    n = 12000
    states = sample_counts(6, [2, 1], rng, size=n)
    assert states.shape == (n, 6) and states.dtype == np.int8
    assert ((states == 1).sum(1) == 2).all() and ((states == 2).sum(1) == 1).all()
    arrangements = set(itertools.permutations([1, 1, 2, 0, 0, 0]))
    assert len(arrangements) == 60
    observed = Counter(map(tuple, states.tolist()))
    assert_distribution(observed, {a: 1 / 60 for a in arrangements}, n)


def test_densities_are_a_product_measure():
    rng = np.random.default_rng(12)
    n, densities = 20000, [0.2, 0.3]
    states = sample_densities(4, densities, rng, size=n)
    assert states.shape == (n, 4) and states.dtype == np.int8
    p = {0: 0.5, 1: 0.2, 2: 0.3}
    expected = {c: np.prod([p[v] for v in c]) for c in itertools.product(range(3), repeat=4)}
    assert_distribution(Counter(map(tuple, states.tolist())), expected, n)


def test_single_state_lattice_argument_and_reproducibility():
    lattice = Lattice((4, 5))
    a = sample_counts(lattice, [3, 4], np.random.default_rng(5))
    assert a.shape == (20,) and (a == 1).sum() == 3 and (a == 2).sum() == 4
    assert np.array_equal(a, sample_counts(20, [3, 4], np.random.default_rng(5)))
    b = sample_densities(lattice, [0.5], np.random.default_rng(6))
    assert b.shape == (20,) and set(np.unique(b)) <= {0, 1}
    assert np.array_equal(b, sample_densities(20, [0.5], np.random.default_rng(6)))
    assert sample_densities(5, [1.0], np.random.default_rng(0)).tolist() == [1] * 5
    assert sample_counts(5, [0], np.random.default_rng(0), size=0).shape == (0, 5)


@pytest.mark.parametrize(
    "call, why",
    [
        (lambda g: sample_counts(5, [3, 3], g), "summing to at most 5"),
        (lambda g: sample_counts(5, [-1], g), ">= 0"),
        (lambda g: sample_counts(5, [1.5], g), "list of integers"),
        (lambda g: sample_counts(0, [1], g), "positive number of sites"),
        (lambda g: sample_counts(5, [1], g, size=-1), "size"),
        (lambda g: sample_counts(5, [1], 3), "Generator"),
        (lambda g: sample_densities(5, [0.6, 0.5], g), "sum to at most 1"),
        (lambda g: sample_densities(5, [-0.1], g), ">= 0"),
        (lambda g: sample_densities(5, ["x"], g), "list of numbers"),
        (lambda g: sample_densities(5, [[0.1]], g), "1 to 127"),
    ],
)
def test_bad_arguments(call, why):
    with pytest.raises(ValueError, match=why):
        call(np.random.default_rng(0))
