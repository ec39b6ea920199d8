"""Mean-field and pair-approximation baselines against exact results and the lattice simulator.

Statistical comparisons use the simulator's sample means with tolerances of 4 standard errors
(plus, where a closure is only approximate, a stated systematic allowance); seeds are fixed.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.evaluate import CLOSURES, closures_for, mean_field, pair_approximation
from dbdflow.moments import observable_names, observables
from dbdflow.simulate import Lattice, ReactionNetwork, run, sample_counts, sample_densities

BOTH = [mean_field, pair_approximation]
# the reactions of paper eq. 42, as the shipped Rössler config states them
ROSSLER = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "config/paper/rossler_3d.yaml").read_text()
)["reactions"]


def simulated(network, lattice, states, n_steps, dt, seed, every):
    """Times, per-observable means and standard errors (n_records, ...) of simulations."""
    rng = [np.random.default_rng([seed, i]) for i in range(states.shape[0])]
    path = run(network, lattice, states, n_steps, dt, rng, record_every=every)
    obs = {k: v.astype(np.float64) for k, v in observables(path, lattice, network).items()}
    n = states.shape[0]
    means = {k: v.mean(axis=0) for k, v in obs.items()}
    errors = {k: v.std(axis=0, ddof=1) / np.sqrt(n) for k, v in obs.items()}
    return dt * every * np.arange(n_steps // every + 1), means, errors


def product_means(lattice, densities):
    """Exact means of counts and NN pairs under the product measure with these densities."""
    rho = np.asarray(densities, dtype=np.float64)
    m = rho.size
    n_bonds = len(lattice.bonds)
    pairs = [
        n_bonds * rho[a] * rho[b] * (1 if a == b else 2) for a in range(m) for b in range(a, m)
    ]
    return {"counts": lattice.n_sites * rho, "pairs": np.array(pairs)}


# ---- (1) linear unimolecular networks: closed and exact


def linear_solution(n_sites, k_create, k_convert, k_decay, x0, times):
    """⟨n_A⟩, ⟨n_B⟩ of 0 -> A (per empty site), A -> B, B -> 0 from the linear ODE x' = Mx + c."""
    m = np.array([[-k_create - k_convert, -k_create], [k_convert, -k_decay]])
    c = np.array([k_create * n_sites, 0.0])
    fixed = -np.linalg.solve(m, c)
    values, vectors = np.linalg.eig(m)
    coef = np.linalg.solve(vectors, np.asarray(x0, dtype=np.float64) - fixed)
    modes = np.exp(np.outer(times, values)) * coef
    return fixed + np.real(modes @ vectors.T)


@pytest.mark.parametrize("closure", BOTH)
@pytest.mark.parametrize("semantics", ["standard", "paper"])
def test_linear_network_counts_are_exact(closure, semantics):
    lattice = Lattice((10, 10), "periodic")
    network = ReactionNetwork.parse(["A", "B"], ["0 -> A @ 0.5", "A -> B @ 2", "B -> 0 @ 1"])
    if semantics == "paper":  # creation has total rate k·max(n_A, 1): not linear, skip it
        network = ReactionNetwork.parse(["A", "B"], ["A -> B @ 2", "B -> 0 @ 1"])
    k_create = 0.5 if semantics == "standard" else 0.0
    times = np.linspace(0.0, 2.0, 9)
    initial = product_means(lattice, [0.3, 0.1])
    out = closure(network, lattice, 0.01, initial, times, semantics=semantics)
    exact = linear_solution(100, k_create, 2.0, 1.0, initial["counts"], times)
    np.testing.assert_allclose(out["counts"], exact, rtol=1e-6, atol=1e-9)
    # in-place rules, creation on empty sites and hopping keep the product measure exact
    for i, t in enumerate(times):
        expected = product_means(lattice, exact[i] / 100)["pairs"]
        np.testing.assert_allclose(out["pairs"][i], expected, rtol=1e-6, atol=1e-9, err_msg=t)


def test_linear_network_matches_simulator():
    lattice = Lattice((10, 10), "periodic")
    network = ReactionNetwork.parse(["A", "B"], ["0 -> A @ 0.5", "A -> B @ 2", "B -> 0 @ 1"])
    dt, n_traj = 0.01, 200
    states = sample_counts(lattice, [30, 10], np.random.default_rng(11), size=n_traj)
    times, means, errors = simulated(network, lattice, states, 150, dt, 12, 25)
    exact = linear_solution(100, 0.5, 2.0, 1.0, [30, 10], times)
    for closure in BOTH:
        initial = {"counts": means["counts"][0], "pairs": means["pairs"][0]}
        out = closure(network, lattice, dt, initial, times)
        np.testing.assert_allclose(out["counts"], exact, rtol=1e-6)
    # the count process is exactly the linear Markov chain: 4 standard errors after t = 0
    z = np.abs(means["counts"][1:] - exact[1:]) / errors["counts"][1:]
    assert z.max() < 4.0, z


# ---- (2) pure hopping keeps the product measure


@pytest.mark.parametrize(
    "lattice",
    [Lattice((50,), "periodic"), Lattice((6, 7), "reflecting"), Lattice((4, 4, 4), "periodic")],
    ids=["ring", "square-reflecting", "cube"],
)
def test_hopping_keeps_product_measure(lattice):
    network = ReactionNetwork.parse(["A", "B"], [])
    dt, densities = 0.01, [0.3, 0.2]
    initial = product_means(lattice, densities)
    times = np.linspace(0.0, 0.2, 5)
    closed = {
        name: f(network, lattice, dt, initial, times)
        for name, f in CLOSURES.items()
        if name in closures_for(network, lattice, dt, "standard")
    }
    for name, out in closed.items():
        np.testing.assert_allclose(out["counts"], np.tile(initial["counts"], (5, 1)), rtol=1e-12)
        np.testing.assert_allclose(
            out["pairs"], np.tile(initial["pairs"], (5, 1)), rtol=1e-10, err_msg=name
        )
    for key in observable_names(lattice):  # product pairs make the Kirkwood closures products
        np.testing.assert_allclose(closed["pair"][key], closed["mean_field"][key], rtol=1e-10)

    n_traj = 1500
    states = sample_densities(lattice, densities, np.random.default_rng(21), size=n_traj)
    _, means, errors = simulated(network, lattice, states, 20, dt, 22, 5)
    for key in observable_names(lattice):
        z = np.abs(means[key] - closed["pair"][key]) / errors[key]
        assert z.max() < 4.0, (key, z)


@settings(max_examples=15, deadline=None)
@given(
    densities=st.lists(st.floats(0.0, 0.45), min_size=2, max_size=2),
    rates=st.lists(st.floats(0.0, 5.0), min_size=4, max_size=4),
    periodic=st.booleans(),
)
def test_product_preserving_networks_pair_equals_mean_field(densities, rates, periodic):
    """In-place rules, creation per empty site and hopping keep the product measure, so the pair
    approximation started from product pairs is the mean field."""
    lattice = Lattice((7,) if periodic else (3, 4), "periodic" if periodic else "reflecting")
    k1, k2, k3, k4 = rates
    network = ReactionNetwork.parse(
        ["A", "B"], [f"A -> B @ {k1}", f"B -> A @ {k2}", f"B -> 0 @ {k3}", f"0 -> B @ {k4}"]
    )
    times = np.linspace(0.0, 0.5, 4)
    initial = product_means(lattice, densities)
    # a fine step: RK4 stages leave the product manifold, so the two agree to the RK4 error
    pair = pair_approximation(network, lattice, 0.05, initial, times, max_step=1e-3)
    mf = mean_field(network, lattice, 0.05, initial, times, max_step=1e-3)
    for key in observable_names(lattice):
        np.testing.assert_allclose(pair[key], mf[key], rtol=1e-7, atol=1e-10)


# ---- (3) bimolecular reactions: hand-derived moment equations and the simulator


def initial_slope(closure, network, lattice, dt, initial, **kwargs):
    """Outputs at t0 and their time derivatives by a 4th-order forward difference."""
    eps = 1e-4
    out = closure(network, lattice, dt, initial, eps * np.arange(5.0), max_step=eps / 4, **kwargs)
    weights = np.array([-25.0, 48.0, -36.0, 16.0, -3.0]) / (12 * eps)
    return {k: v[0] for k, v in out.items()}, {
        k: np.tensordot(weights, v, axes=(0, 0)) for k, v in out.items()
    }


@pytest.mark.parametrize("closure", BOTH)
def test_annihilation_moment_equations_1d(closure):
    """Paper eq. 36 for the lattice process, k_r = 2hp, h = 1/(2Δt): dN/dt = −2k_r Π₁ and
    dΠ₁/dt = 2hΠ₂ − (2h + k_r)Π₁ − 2k_r T hold for the closures' own Π₂ and T (the pair
    approximation's Π₂ and T are Kirkwood closures of its correlated pairs)."""
    lattice = Lattice((100,), "periodic")
    p, dt = 0.3, 0.01
    network = ReactionNetwork.parse(["A"], [f"A + A -> 0 @ {p}"])
    h = 1.0 / (2 * dt)
    k_r = 2 * h * p
    initial = {"counts": np.array([50.0]), "pairs": np.array([30.0])}
    value, slope = initial_slope(closure, network, lattice, dt, initial)
    pi1, pi2, three = value["pairs"][0], value["pairs_d2"][0], value["strings3"][0]
    assert slope["counts"][0] == pytest.approx(-2 * k_r * pi1, rel=1e-6)
    assert value["strings2"][0] == pytest.approx(pi1, rel=1e-12)
    if closure is pair_approximation:
        assert pi1 == pytest.approx(30.0) and three == pytest.approx(100 * 0.3**2 / 0.5)
        assert pi2 == pytest.approx(100 * (0.3**2 / 0.5 + 0.2**2 / 0.5))
        expected = 2 * h * pi2 - (2 * h + k_r) * pi1 - 2 * k_r * three
        assert slope["pairs"][0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("semantics", ["standard", "paper"])
def test_birth_count_equation(semantics):
    """A -> 2A: each A with an empty neighbour fires at rate k (paper: k(1 − β²⁰)/(1 − β) per
    unblocked parent); under the closures a neighbour of an A is empty with probability q, so
    dN/dt = kN ρ (1 − β) (paper: kN ρ (1 − β²⁰)) with β = (1 − q)^z̄ the blocked fraction."""
    lattice = Lattice((5, 6, 7), "reflecting")
    network = ReactionNetwork.parse(["A"], ["A -> 2A @ 3"])
    n, n_bonds = lattice.n_sites, len(lattice.bonds)
    z = 2 * n_bonds / n
    counts, pairs = 120.0, 60.0
    rho, p_aa = counts / n, pairs / n_bonds
    initial = {"counts": [counts], "pairs": [pairs]}
    for closure, q in ((mean_field, 1 - rho), (pair_approximation, (rho - p_aa) / rho)):
        _, slope = initial_slope(closure, network, lattice, 0.01, initial, semantics=semantics)
        beta = (1 - q) ** z
        unblocked = 1 - beta ** (20 if semantics == "paper" else 1)
        assert slope["counts"][0] == pytest.approx(3 * counts * unblocked, rel=1e-6), closure


@pytest.mark.parametrize("semantics", ["standard", "paper"])
def test_birth_rate_matches_simulator_first_step(semantics):
    """From a product state the closures' birth rate is exact: one short step of A -> 2A at
    ρ = 0.8 on a ring (64 % of parents blocked; the paper's 20 tries unblock almost all)."""
    lattice = Lattice((1000,), "periodic")
    network = ReactionNetwork.parse(["A"], ["A -> 2A @ 10"])
    dt, n_traj = 0.0005, 4000
    states = sample_densities(lattice, [0.8], np.random.default_rng(51), size=n_traj)
    rng = [np.random.default_rng([52, i]) for i in range(n_traj)]
    path = run(network, lattice, states, 1, dt, rng, semantics=semantics)
    counts = observables(path, lattice, network)["counts"][:, :, 0].astype(np.float64)
    births = counts[:, 1] - counts[:, 0]  # paired: the IC's own fluctuation cancels
    se = births.std(ddof=1) / np.sqrt(n_traj)
    for closure in BOTH:
        out = closure(
            network, lattice, dt, product_means(lattice, [0.8]), [0.0, dt], semantics=semantics
        )
        predicted = out["counts"][1, 0] - 800.0
        # the O(kΔt) = 0.5 % change of the rate within the step is far below 4 SE (≈ 5 %)
        assert abs(births.mean() - predicted) < 4 * se, (closure, births.mean(), predicted, se)


@pytest.mark.parametrize("rule", ["A + A -> 0", "A + A -> A"])
def test_reaction_limited_mean_field_matches_simulator(rule):
    lattice = Lattice((1000,), "periodic")
    network = ReactionNetwork.parse(["A"], [f"{rule} @ 0.01"])
    dt, n_traj = 0.01, 40
    states = sample_densities(lattice, [0.5], np.random.default_rng(31), size=n_traj)
    times, means, errors = simulated(network, lattice, states, 200, dt, 32, 20)
    initial = {k: v[0] for k, v in means.items()}
    out = mean_field(network, lattice, dt, initial, times)
    # systematic allowance 4 %: the correlations mean field neglects and the Poisson picture of
    # the sweep cost ≈ 2-3 % of the count after 200 steps here (p = 0.01)
    gap = np.abs(out["counts"] - means["counts"])
    assert (gap <= 0.04 * means["counts"] + 4 * errors["counts"]).all(), gap / means["counts"]
    assert means["counts"][-1, 0] < 0.6 * means["counts"][0, 0]  # the reaction did matter


def test_diffusion_limited_pair_beats_mean_field():
    lattice = Lattice((1000,), "periodic")
    network = ReactionNetwork.parse(["A"], ["A + A -> 0 @ 1"])
    dt, n_traj = 0.01, 20
    states = sample_densities(lattice, [0.5], np.random.default_rng(41), size=n_traj)
    times, means, errors = simulated(network, lattice, states, 100, dt, 42, 10)
    initial = {k: v[0] for k, v in means.items()}
    mf = mean_field(network, lattice, dt, initial, times)["counts"][5:, 0]
    pair = pair_approximation(network, lattice, dt, initial, times)["counts"][5:, 0]
    data, se = means["counts"][5:, 0], errors["counts"][5:, 0]
    # pair is closer iff the data lie on its side of the midpoint: demand 4 standard errors
    midpoint = 0.5 * (pair + mf)
    assert (np.sign(pair - mf) * (data - midpoint) > 4 * se).all(), (data, se, mf, pair)


# ---- (4) conservation, integration accuracy, layout


@pytest.mark.parametrize("closure", BOTH)
@pytest.mark.parametrize("semantics", ["standard", "paper"])
def test_conserved_total(closure, semantics):
    lattice = Lattice((6, 6), "periodic")
    network = ReactionNetwork.parse(["A", "B"], ["A -> B @ 3", "B -> A @ 1", "A + B -> 2B @ 0.3"])
    initial = {
        "counts": np.array([[10.0, 5.0], [2.0, 20.0]]),
        "pairs": np.array([[6.0, 4.0, 0.0], [0.0, 1.0, 12.0]]),
    }
    out = closure(network, lattice, 0.01, initial, np.linspace(0, 3, 7), semantics=semantics)
    total = out["counts"].sum(axis=-1)
    np.testing.assert_allclose(total, [[15.0] * 7, [22.0] * 7], rtol=1e-10)
    assert np.ptp(out["counts"][:, :, 0], axis=1).min() > 1.0  # the species do convert


def test_rk4_step_converged_rossler_paper():
    lattice = Lattice((5, 5, 5), "reflecting")
    network = ReactionNetwork.parse(["A", "B", "C"], ROSSLER)
    initial = {"counts": [25.0, 25.0, 25.0], "pairs": [5.0, 10.0, 10.0, 5.0, 10.0, 5.0]}
    times = np.linspace(0.0, 0.3, 4)
    for closure in BOTH:
        coarse = closure(network, lattice, 0.01, initial, times, semantics="paper")
        fine = closure(network, lattice, 0.01, initial, times, semantics="paper", max_step=2e-4)
        for key in coarse:
            np.testing.assert_allclose(coarse[key], fine[key], rtol=1e-5, atol=1e-6)
        assert np.all(coarse["counts"] >= 0) and np.ptp(coarse["counts"][:, 0]) > 5


@pytest.mark.parametrize(
    "lattice",
    [Lattice((9,), "periodic"), Lattice((9,), "reflecting"), Lattice((3, 4), "reflecting")],
)
def test_full_lattice_windows_match_observables(lattice):
    """A full lattice (ρ_A = 1) makes every window count: sums equal the observables exactly."""
    network = ReactionNetwork.parse(["A", "B"], [])
    state = np.ones((1, 1, lattice.n_sites), dtype=np.int8)
    exact = observables(state, lattice, network)
    initial = {k: v[0, 0] for k, v in exact.items()}
    for closure in BOTH:
        out = closure(network, lattice, 0.1, initial, [0.0, 1.0])
        assert list(out) == list(observable_names(lattice))
        for key, value in exact.items():
            np.testing.assert_allclose(out[key], np.repeat(value[0], 2, axis=0), atol=1e-12)


def test_batched_layout_and_errors():
    lattice = Lattice((8,), "periodic")
    network = ReactionNetwork.parse(["A", "B"], ["A + B -> 0 @ 0.5"])
    batch = {"counts": np.array([[2.0, 3.0], [4.0, 1.0], [1.0, 1.0]]), "pairs": np.ones((3, 3))}
    out = pair_approximation(network, lattice, 0.1, batch, np.linspace(0, 1, 5))
    assert out["counts"].shape == (3, 5, 2) and out["pairs"].shape == (3, 5, 3)
    assert out["strings4"].shape == (3, 5, 2)
    single = pair_approximation(
        network, lattice, 0.1, {k: v[1] for k, v in batch.items()}, np.linspace(0, 1, 5)
    )
    for key, value in single.items():
        np.testing.assert_allclose(value, out[key][1], rtol=1e-12)

    def bad(match, closure=pair_approximation, **changes):
        args = {
            "network": network,
            "lattice": lattice,
            "dt": 0.1,
            "initial": batch,
            "times": [0.0, 1.0],
            **changes,
        }
        with pytest.raises(ValueError, match=match):
            closure(**args)

    bad("pairs", initial={"counts": batch["counts"]})
    bad("counts", initial={"counts": np.ones((3, 3)), "pairs": batch["pairs"]})
    bad("counts", closure=mean_field, initial={"counts": [5.0, 4.0]})
    bad("pairs", initial={"counts": batch["counts"], "pairs": np.ones((3, 2))})
    bad("dt", dt=0.0)
    bad("times", times=[1.0, 0.5])
    bad("semantics", semantics="exact")
    bad("max_step", max_step=-1.0)


def test_baseline_names_are_reserved_in_configs():
    from dbdflow.config import BASELINE_NAMES

    assert tuple(CLOSURES) == BASELINE_NAMES
