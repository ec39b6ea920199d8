"""The simulator's API, reproducibility and its unimolecular (Gillespie) phase vs exact laws."""

from collections import Counter

import numpy as np
import pytest
from simulate_stats import assert_binomial, assert_close, assert_distribution

from dbdflow.simulate import Lattice, ReactionNetwork, run, run_with_hop_counts, sample_counts

DECAY = ReactionNetwork.parse(["A", "B"], ["A -> B @ 1", "B -> 0 @ 0.5", "A + B -> 0 @ 0.5"])


def _initial(lattice, counts, n, seed=0):
    return sample_counts(lattice, counts, np.random.default_rng(seed), size=n)


def test_records_shape_and_subsampling():
    lattice = Lattice((6, 5), "reflecting")
    initial = _initial(lattice, [8, 4], 3)
    every = run(DECAY, lattice, initial, 12, 0.1, np.random.default_rng(1))
    assert every.shape == (3, 13, 30) and every.dtype == np.int8
    assert np.array_equal(every[:, 0], initial)
    sparse = run(DECAY, lattice, initial, 12, 0.1, np.random.default_rng(1), record_every=4)
    assert np.array_equal(sparse, every[:, ::4])
    assert run(DECAY, lattice, initial, 0, 0.1, np.random.default_rng(1)).shape == (3, 1, 30)


def test_same_seed_same_states_and_batches_do_not_matter():
    lattice = Lattice((20,))
    initial = _initial(lattice, [6, 6], 10)
    streams = [np.random.default_rng([7, i]) for i in range(10)]
    batch = run(DECAY, lattice, initial, 30, 0.1, streams, semantics="paper")
    streams = [np.random.default_rng([7, i]) for i in range(10)]
    for i in range(10):
        alone = run(DECAY, lattice, initial[i : i + 1], 30, 0.1, [streams[i]], semantics="paper")
        assert np.array_equal(alone[0], batch[i])
    again = run(DECAY, lattice, initial, 30, 0.1, np.random.default_rng(3))
    assert np.array_equal(again, run(DECAY, lattice, initial, 30, 0.1, np.random.default_rng(3)))
    # one generator serves the trajectories in order
    rng = np.random.default_rng(3)
    first = run(DECAY, lattice, initial[:4], 30, 0.1, rng)
    rest = run(DECAY, lattice, initial[4:], 30, 0.1, rng)
    assert np.array_equal(np.concatenate([first, rest]), again)
    assert not np.array_equal(again[0], again[1])


@pytest.mark.parametrize(
    "change, why",
    [
        ({"initial": np.zeros((2, 30), dtype=np.int16)}, "int8"),
        ({"initial": np.zeros(30, dtype=np.int8)}, r"shape \(n_traj, 30\)"),
        ({"initial": np.zeros((2, 29), dtype=np.int8)}, r"shape \(n_traj, 30\)"),
        ({"initial": np.full((2, 30), 3, dtype=np.int8)}, "codes 0 .* to 2"),
        ({"initial": np.full((2, 30), -1, dtype=np.int8)}, "codes 0"),
        ({"n_steps": 10, "record_every": 3}, "multiple of record_every"),
        ({"n_steps": -1}, "n_steps >= 0"),
        ({"n_steps": 2.0}, "n_steps must be an integer"),
        ({"record_every": 0}, "record_every >= 1"),
        ({"dt": 0.0}, "dt must be finite and > 0"),
        ({"dt": "0.1"}, "dt must be a number"),
        ({"rng": [np.random.default_rng(0)]}, "1 generators for 2 trajectories"),
        ({"rng": 42}, "numpy Generator"),
        ({"semantics": "original"}, "semantics must be one of"),
        ({"network": "A -> 0 @ 1"}, "ReactionNetwork"),
        ({"lattice": (6, 5)}, "must be a Lattice"),
    ],
)
def test_bad_arguments(change, why):
    args = {
        "network": DECAY,
        "lattice": Lattice((6, 5)),
        "initial": np.zeros((2, 30), dtype=np.int8),
        "n_steps": 4,
        "dt": 0.1,
        "rng": np.random.default_rng(0),
        "record_every": 1,
        "semantics": "standard",
    }
    with pytest.raises(ValueError, match=why):
        run(**(args | change))


@pytest.mark.parametrize("semantics", ["standard", "paper"])
def test_decay_and_conversion_counts_are_multinomial(semantics):
    # A -> B at rate 1, then B -> 0 at rate 1/2, no bimolecular rules: each particle's fate is
    # independent of the others and of the hops, so at time t the A count is Binomial(N, e^{-t})
    # and the B count Binomial(N, 2 (e^{-t/2} - e^{-t})).
    net = ReactionNetwork.parse(["A", "B"], ["A -> B @ 1", "B -> 0 @ 0.5"])
    lattice = Lattice((8, 8))
    n0, dt, n = 40, 0.05, 1500
    states = run(net, lattice, _initial(lattice, [n0, 0], n), 40, dt, np.random.default_rng(2),
                 record_every=10, semantics=semantics)  # fmt: skip
    for record in (1, 2, 4):
        t = record * 10 * dt
        p_a = np.exp(-t)
        p_b = 2 * (np.exp(-t / 2) - np.exp(-t))
        assert_binomial((states[:, record] == 1).sum(1), n0, p_a)
        assert_binomial((states[:, record] == 2).sum(1), n0, p_b)


def test_pure_decay_is_binomial():
    net = ReactionNetwork.parse(["A"], ["A -> 0 @ 2"])
    lattice = Lattice((30,), "reflecting")
    states = run(net, lattice, _initial(lattice, [25], 1500), 30, 0.02, np.random.default_rng(1),
                 record_every=10)  # fmt: skip
    for record in (1, 2, 3):
        assert_binomial((states[:, record] == 1).sum(1), 25, np.exp(-2 * record * 10 * 0.02))


def test_creation_fills_empty_sites_at_rate_k_each():
    # standard 0 -> A: every empty site turns into an A at rate k, so the count of a lattice of
    # N sites starting empty is Binomial(N, 1 - e^{-kt}) whatever the hops do.
    net = ReactionNetwork.parse(["A"], ["0 -> A @ 0.5"])
    lattice = Lattice((5, 6), "reflecting")
    states = run(net, lattice, np.zeros((1500, 30), np.int8), 40, 0.05,
                 np.random.default_rng(3), record_every=10)  # fmt: skip
    for record in (1, 2, 4):
        assert_binomial((states[:, record] == 1).sum(1), 30, 1 - np.exp(-0.5 * record * 0.5))


def test_paper_creation_scales_with_the_species_count():
    # paper item 4: 0 -> A has propensity k max(n_A, 1): from none, the first two events come at
    # rate k each, so P(n = 0) = e^{-kt} and P(n = 1) = kt e^{-kt}.
    net = ReactionNetwork.parse(["A"], ["0 -> A @ 2"])
    lattice = Lattice((40,))
    n = 4000
    states = run(net, lattice, np.zeros((n, 40), np.int8), 20, 0.025, np.random.default_rng(4),
                 record_every=10, semantics="paper")  # fmt: skip
    for record in (1, 2):
        kt = 2 * record * 10 * 0.025
        counts = (states[:, record] == 1).sum(1)
        for value, p in ((0, np.exp(-kt)), (1, kt * np.exp(-kt))):
            assert_close((counts == value).mean(), p, np.sqrt(p * (1 - p) / n))


def test_birth_onto_the_only_neighbour():
    # one A on a 2-site lattice: its one neighbour is empty, so A -> 2A succeeds at rate k
    net = ReactionNetwork.parse(["A"], ["A -> 2A @ 3"])
    lattice = Lattice((2,), "reflecting")
    initial = np.tile(np.array([[1, 0]], np.int8), (3000, 1))
    for semantics in ("standard", "paper"):
        states = run(net, lattice, initial, 10, 0.02, np.random.default_rng(5), record_every=5,
                     semantics=semantics)  # fmt: skip
        assert set(np.unique(states.sum(2))) <= {1, 2}
        for record in (1, 2):
            p = 1 - np.exp(-3 * record * 5 * 0.02)
            born = (states[:, record].sum(1) == 2).mean()
            assert_close(born, p, np.sqrt(p * (1 - p) / 3000))
    alone = run(net, Lattice((1,), "reflecting"), np.ones((5, 1), np.int8), 10, 0.1,
                np.random.default_rng(6))  # fmt: skip
    assert (alone == 1).all()  # no neighbour, no birth


def test_blocked_birth_is_lost_or_retried():
    # A A . on a reflecting line: the A on the edge has no empty neighbour. Events come at rate
    # 2k; standard draws one parent (success 1/2, so P(no birth in dt) = e^{-k dt}), paper item 1
    # redraws up to 20 parents (success 1 - 2^-20, P(no birth in dt) = e^{-2k dt (1 - 2^-20)}).
    net = ReactionNetwork.parse(["A"], ["A -> 2A @ 5"])
    lattice = Lattice((3,), "reflecting")
    n = 3000
    initial = np.tile(np.array([[1, 1, 0]], np.int8), (n, 1))
    for semantics, rate in (("standard", 5), ("paper", 10 * (1 - 2.0**-20))):
        states = run(net, lattice, initial, 1, 0.1, np.random.default_rng(7), semantics=semantics)
        p = 1 - np.exp(-rate * 0.1)
        assert_close((states[:, 1].sum(1) == 3).mean(), p, np.sqrt(p * (1 - p) / n))


def test_paper_pending_event_outlives_the_step():
    # Two A on a 2-site reflecting lattice, A -> B at rate k, A + A -> A with probability 1.
    # paper: the first event time T ~ Exp(2k) stays pending; if T >= dt the sweep merges the
    # pair (item 5: each A's only choice is the other), and the lone A converts in step 2 iff
    # T < 2 dt. So P(no B after 2 steps) = e^{-4 k dt}.
    # standard: no conversion in step 1 with e^{-2 k dt}; the sweep merges with probability 3/4
    # (a hop off the edge is rejected); step 2 then needs no conversion of 1 or 2 A.
    k, dt, n = 2.5, 0.1, 6000
    net = ReactionNetwork.parse(["A", "B"], ["A -> B @ 2.5", "A + A -> A @ 1"])
    lattice = Lattice((2,), "reflecting")
    initial = np.ones((n, 2), np.int8)
    q1, q2 = np.exp(-k * dt), np.exp(-2 * k * dt)
    expected = {"paper": np.exp(-4 * k * dt), "standard": q2 * (0.75 * q1 + 0.25 * q2)}
    for semantics, p in expected.items():
        states = run(net, lattice, initial, 2, dt, np.random.default_rng(8), semantics=semantics)
        no_b = ~(states[:, 2] == 2).any(1)
        assert_close(no_b.mean(), p, np.sqrt(p * (1 - p) / n))


def test_hop_attempts_are_counted():
    lattice = Lattice((10, 10))
    initial = _initial(lattice, [20, 10], 3)
    net = ReactionNetwork.parse(["A", "B"], [])
    states, hops = run_with_hop_counts(net, lattice, initial, 7, 0.1, np.random.default_rng(0))
    assert hops.tolist() == [30 * 7] * 3
    assert (states > 0).sum(2).tolist() == [[30] * 8] * 3


def test_parent_choice_uniform_or_by_plane_row_and_site():
    # A full 2x2x3 lattice (no hop can move) with six A: plane 0 holds rows of 3 and 1 A, plane
    # 1 one row of 2 A. Given exactly one A -> B event, its parent is uniform (standard) or
    # drawn plane, row, site (paper item 6): 1/12 for each A of the row of 3, 1/4 for the others.
    net = ReactionNetwork.parse(["A", "C", "B"], ["A -> B @ 1"])
    lattice = Lattice((2, 2, 3), "reflecting")
    initial = np.array([1, 1, 1, 2, 1, 2, 2, 2, 2, 1, 1, 2], np.int8)
    parents = np.flatnonzero(initial == 1)
    expected = {
        "standard": dict.fromkeys(parents.tolist(), 1 / 6),
        "paper": {0: 1 / 12, 1: 1 / 12, 2: 1 / 12, 4: 1 / 4, 9: 1 / 4, 10: 1 / 4},
    }
    for semantics, law in expected.items():
        states = run(net, lattice, np.tile(initial, (8000, 1)), 1, 1 / 6,
                     np.random.default_rng(9), semantics=semantics)[:, 1]  # fmt: skip
        one = states[(states == 3).sum(1) == 1]
        assert len(one) > 2000
        assert_distribution(Counter(np.argmax(one == 3, axis=1).tolist()), law, len(one))
