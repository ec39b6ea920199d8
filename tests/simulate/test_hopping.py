"""Pure hopping: conservation, geometry, the exclusion process' stationary law, diffusion."""

import itertools
from collections import Counter
from math import comb

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from simulate_stats import assert_close, assert_distribution

from dbdflow.simulate import Lattice, ReactionNetwork, run, run_with_hop_counts, sample_densities
from dbdflow.simulate.ssa import _tables


@st.composite
def lattices(draw):
    boundary = draw(st.sampled_from(["periodic", "reflecting"]))
    low = 3 if boundary == "periodic" else 1
    shape = tuple(draw(st.lists(st.integers(low, 7), min_size=1, max_size=3)))
    return Lattice(shape, boundary)


@settings(max_examples=40, deadline=None)
@given(
    lattice=lattices(),
    densities=st.lists(st.floats(0, 0.3), min_size=1, max_size=3),
    semantics=st.sampled_from(["standard", "paper"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_hopping_conserves_every_species(lattice, densities, semantics, seed):
    rng = np.random.default_rng(seed)
    species = ["A", "B", "C"][: len(densities)]
    initial = sample_densities(lattice, densities, rng, size=2)
    network = ReactionNetwork.parse(species, [])
    states, hops = run_with_hop_counts(network, lattice, initial, 15, 0.1, rng, semantics=semantics)
    for code in range(len(species) + 1):
        counts = (states == code).sum(2)
        assert (counts == counts[:, :1]).all()
    assert hops.tolist() == ((initial > 0).sum(1) * 15).tolist()


@settings(max_examples=40, deadline=None)
@given(lattice=lattices(), semantics=st.sampled_from(["standard", "paper"]), seed=st.integers(0))
def test_a_lone_particle_steps_to_a_neighbour(lattice, semantics, seed):
    rng = np.random.default_rng(seed)
    initial = np.zeros((1, lattice.n_sites), np.int8)
    initial[0, rng.integers(lattice.n_sites)] = 1
    path = run(ReactionNetwork.parse(["A"], []), lattice, initial, 30, 0.1, rng,
               semantics=semantics)[0].argmax(1)  # fmt: skip
    for here, there in itertools.pairwise(path):
        neighbours = set(lattice.neighbours[here]) - {-1}
        if semantics == "paper" and neighbours:  # item 5: always an in-lattice move
            assert there in neighbours
        else:  # standard: stays exactly when it picked a direction off the lattice
            assert there in neighbours or (there == here and -1 in lattice.neighbours[here])


@settings(max_examples=40, deadline=None)
@given(lattice=lattices())
def test_hop_geometry_encodes_the_neighbour_table(lattice):
    # the kernels step by offset[d], or wrap[d] / reject where bit d of edge[site] is set
    edge, offset, wrap = _tables(ReactionNetwork.parse(["A"], []), lattice, False)[:3]
    sites = np.arange(lattice.n_sites)[:, None]
    crossing = (edge[:, None].astype(int) >> np.arange(offset.size)) & 1 == 1
    inside = ~crossing
    assert np.array_equal((sites + offset)[inside], lattice.neighbours[inside])
    assert (lattice.neighbours[inside] >= 0).all()
    if lattice.boundary == "periodic":
        assert np.array_equal((sites + wrap)[crossing], lattice.neighbours[crossing])
    else:
        assert (lattice.neighbours[crossing] == -1).all()


def _nn_pairs(states, lattice):
    occupied = states > 0
    return (occupied[..., lattice.bonds[:, 0]] & occupied[..., lattice.bonds[:, 1]]).sum(-1)


def test_exclusion_process_relaxes_to_uniform_arrangements():
    # Symmetric exclusion with random sequential hops is doubly stochastic, so its stationary
    # law is uniform over the C(12, 5) = 792 arrangements (standard semantics, also on a
    # reflecting lattice where off-lattice hops are rejected). Start packed, relax for 120
    # steps (>> the slowest relaxation time L^2 / (4 pi^2 D) ~ 7 steps), test the whole law.
    n = 16000
    for lattice in (Lattice((12,)), Lattice((3, 4), "reflecting")):
        initial = np.zeros((n, 12), np.int8)
        initial[:, :5] = 1
        states = run(ReactionNetwork.parse(["A"], []), lattice, initial, 120, 0.1,
                     np.random.default_rng(9), record_every=120)[:, 1]  # fmt: skip
        arrangements = [c for c in itertools.product((0, 1), repeat=12) if sum(c) == 5]
        assert len(arrangements) == comb(12, 5)
        observed = Counter(map(tuple, states.tolist()))
        assert_distribution(observed, {c: 1 / comb(12, 5) for c in arrangements}, n)


def test_exclusion_process_pair_count_mean_on_a_torus():
    # N particles uniformly arranged on V sites: each of the B bonds is doubly occupied with
    # probability N (N - 1) / (V (V - 1)); compare the mean nearest-neighbour pair count.
    lattice = Lattice((6, 6, 6))
    v, n_particles, bonds = 216, 60, len(lattice.bonds)
    n = 400
    initial = np.zeros((n, v), np.int8)
    initial[:, :n_particles] = 1  # a packed slab
    states = run(ReactionNetwork.parse(["A"], []), lattice, initial, 100, 0.1,
                 np.random.default_rng(10), record_every=100)  # fmt: skip
    pairs = _nn_pairs(states[:, 1], lattice)
    expected = bonds * n_particles * (n_particles - 1) / (v * (v - 1))
    assert_close(pairs.mean(), expected, pairs.std(ddof=1) / np.sqrt(n))
    assert _nn_pairs(initial[0], lattice) > expected + 50  # the start is far from it


def test_free_particle_diffuses_with_d_half_a_site_squared_per_step():
    # one particle on a ring of 1001 sites does a simple random walk: after m steps the
    # displacement X has E[X^2] = m and Var(X^2) = 2 m^2 - 2 m (D = a^2 / (2 dt) per dimension)
    m, n = 40, 3000
    lattice = Lattice((1001,))
    initial = np.zeros((n, 1001), np.int8)
    initial[:, 500] = 1
    final = run(ReactionNetwork.parse(["A"], []), lattice, initial, m, 0.1,
                np.random.default_rng(11), record_every=m)[:, 1].argmax(1)  # fmt: skip
    x2 = (final - 500.0) ** 2
    assert_close(x2.mean(), m, np.sqrt((2 * m * m - 2 * m) / n))
    assert_close((final - 500.0).mean(), 0.0, np.sqrt(m / n))
    # in 3D each step moves one site along one axis: E|X|^2 = m again (m = 20 steps: leaving
    # the periodic 25^3 box's minimum image, |X_axis| > 12, has probability < 1e-5)
    m, n = 20, 1500
    lattice = Lattice((25, 25, 25))
    centre = lattice.n_sites // 2
    initial = np.zeros((n, lattice.n_sites), np.int8)
    initial[:, centre] = 1
    final = run(ReactionNetwork.parse(["A"], []), lattice, initial, m, 0.1,
                np.random.default_rng(12), record_every=m)[:, 1].argmax(1)  # fmt: skip
    d = (lattice.coordinates()[final] - lattice.coordinates()[centre] + 12) % 25 - 12
    r2 = (d**2).sum(1)
    assert_close(r2.mean(), m, r2.std(ddof=1) / np.sqrt(n))
    assert_close((d[:, 0] ** 2).mean(), m / 3, (d[:, 0] ** 2).std(ddof=1) / np.sqrt(n))
