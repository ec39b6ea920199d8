"""The max-ent closure F_ME = Cov⁻¹⟨L T⟩ of a chain: against exact ring moments, a brute-force
generator on a small ring, conservation laws, eq. 36, and its Hermite interpolant."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.boltzmann import (
    chain,
    chain_rbm,
    exact_covariance,
    exact_moments,
    exact_string_moments,
)
from dbdflow.dynamics import DynamicsModel, HermiteGrid
from dbdflow.evaluate.closures import Process, integrate_rk4, mean_field
from dbdflow.evaluate.maxent import (
    WINDOW,
    ChainRbmMaxEnt,
    MaxEntClosure,
    MeanFieldPrior,
    maxent_closure,
    prior_closure,
)
from dbdflow.simulate import Lattice, ReactionNetwork

NAMES = ("b_A", "J_AA", "K_AAA")
THETAS = np.array([[0.3, -0.7, 0.5], [-1.0, 0.5, -0.2], [0.0, 0.0, 0.0], [1.2, 0.9, -0.8]])


def closure(reactions, boundary="periodic", n=1000, semantics="standard", names=NAMES):
    network = ReactionNetwork.parse(["A"], list(reactions))
    return MaxEntClosure(names, ("A",), network, Lattice((n,), boundary), 0.01, semantics)


def test_moments_and_covariance_equal_exact_ring_values_per_site():
    me = closure(["A + A -> 0 @ 0.01"])
    ring = chain(400, "periodic")
    for theta, m, cov in zip(THETAS, me.moments(THETAS), me.covariance(THETAS), strict=True):
        exact = exact_string_moments(ring, theta)
        np.testing.assert_allclose(
            m, [exact["A"], exact["AA"], exact["AAA"]] / np.float64(400), rtol=1e-10
        )
        np.testing.assert_allclose(cov, exact_covariance(ring, theta) / 400, rtol=1e-7, atol=1e-9)


def test_window_probabilities_are_stationary_marginals_of_the_chain():
    me = closure(["A + A -> 0 @ 0.01"])
    p6 = me.window_probabilities(THETAS, 6).reshape(-1, *(2,) * 6)
    p5 = me.window_probabilities(THETAS, 5).reshape(-1, *(2,) * 5)
    np.testing.assert_allclose(p6.sum(axis=1), p5, atol=1e-14)  # drop the first site
    np.testing.assert_allclose(p6.sum(axis=6), p5, atol=1e-14)  # drop the last site
    ring = chain(400, "periodic")
    for theta, p in zip(THETAS, p6, strict=True):
        exact = exact_string_moments(ring, theta)
        assert p[1, 1, 1, 1].sum() == pytest.approx(exact["AAAA"] / 400, rel=1e-10)
        assert p[1, :, 1].sum() == pytest.approx(exact["A.A"] / 400, rel=1e-10)


def _ring_statistics(v):
    """T of ring states v (n_states, N): counts, NN pairs, triples."""
    nxt, nxt2 = np.roll(v, -1, axis=1), np.roll(v, -2, axis=1)
    return np.stack([v.sum(1), (v * nxt).sum(1), (v * nxt * nxt2).sum(1)], axis=1)


@pytest.mark.parametrize(
    "reactions",
    [["A + A -> 0 @ 0.3"], ["A + A -> A @ 0.5", "A -> 0 @ 2"], ["0 -> A @ 1.5", "A -> 0 @ 0.7"]],
)
def test_generator_equals_brute_force_on_a_small_ring(reactions):
    """⟨L T⟩/N on a 12-site ring, by enumerating its 4096 states and every event, equals the
    window formula with the ring's own 6-site marginals (checks the gain tables)."""
    n = 12
    me = closure(reactions, n=n)
    network = ReactionNetwork.parse(["A"], reactions)
    process = Process.build(network, Lattice((n,), "periodic"), 0.01, "standard")
    states = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int64)
    stats = _ring_statistics(states)
    codes = states @ (1 << np.arange(n)[::-1])
    theta = np.array([0.4, -0.6, 0.8])
    weights = np.exp(stats @ theta)
    prob = weights / weights.sum()
    drift = np.zeros((states.shape[0], 3))
    for i in range(n):
        j = (i + 1) % n
        for a2, b2 in itertools.product((0, 1), repeat=2):
            rate = process.bond[states[:, i], states[:, j], a2, b2]
            after = states.copy()
            after[:, i], after[:, j] = a2, b2
            drift += rate[:, None] * (_ring_statistics(after) - stats)
        for a2 in (0, 1):
            after = states.copy()
            after[:, i] = a2
            drift += process.site[states[:, i], a2][:, None] * (_ring_statistics(after) - stats)
    brute = prob @ drift / n
    windows = np.zeros(2**WINDOW)
    for i in range(n):
        idx = states[:, [(i + k) % n for k in range(WINDOW)]] @ (1 << np.arange(WINDOW)[::-1])
        np.add.at(windows, idx, prob / n)
    assert codes.size == 4096
    np.testing.assert_allclose(windows @ me.gain, brute, rtol=1e-12, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-2, 2), min_size=3, max_size=3), st.floats(0.01, 1.0))
def test_count_equation_is_eq_36(theta, p):
    """d⟨N⟩/dt per site = −2 k_r ⟨Σ v_i v_{i+1}⟩/N with k_r = 2hp, h = 1/(2Δt) (eq. 36)."""
    me = closure([f"A + A -> 0 @ {p}"])
    k_r = 2 * (1 / (2 * 0.01)) * p
    assert me.generator(theta)[0, 0] == pytest.approx(-2 * k_r * me.moments(theta)[0, 1], rel=1e-10)


def test_pure_hopping():
    """Exclusion hopping conserves the count and keeps every product measure stationary."""
    me = closure(["A + A -> A @ 0.0"])
    rng = np.random.default_rng(7)
    theta = rng.uniform(-2, 2, (50, 3))
    np.testing.assert_allclose(me.generator(theta)[:, 0], 0.0, atol=1e-13)
    product = np.column_stack([theta[:, 0], np.zeros(50), np.zeros(50)])
    np.testing.assert_allclose(me.generator(product), 0.0, atol=1e-13)
    np.testing.assert_allclose(me.rhs(product), 0.0, atol=1e-8)


def test_rhs_solves_the_closed_moment_equations():
    """Cov · F_ME = ⟨L T⟩: along F_ME the moments follow the closed equations (finite
    differences of m along the flow)."""
    me = closure(["A + A -> 0 @ 0.05"], boundary="reflecting", semantics="paper")
    f = me.rhs(THETAS)
    eps = 1e-6
    dm = (me.moments(THETAS + eps * f) - me.moments(THETAS - eps * f)) / (2 * eps)
    np.testing.assert_allclose(dm, me.generator(THETAS), rtol=1e-5, atol=1e-8)


def test_hermite_prior_interpolates_the_closure():
    me = closure(["A + A -> 0 @ 0.01"])
    coords = (0, 1, 2)
    grid = HermiteGrid([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [8, 8, 8])
    model = DynamicsModel([grid] * 3, [coords] * 3)
    u = me.coefficients(model, coords)
    vertices = grid.vertices()
    np.testing.assert_allclose(model.rhs(u, vertices), me.rhs(vertices), rtol=1e-12, atol=1e-9)
    x = np.random.default_rng(3).uniform(-1, 1, (200, 3))
    exact = me.rhs(x)
    err = np.abs(model.rhs(u, x) - exact).max()
    assert err < 5e-3 * np.abs(exact).max()
    coarse = HermiteGrid([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [4, 4, 4])
    coarse_model = DynamicsModel([coarse] * 3, [coords] * 3)
    coarse_err = np.abs(coarse_model.rhs(me.coefficients(coarse_model, coords), x) - exact).max()
    assert coarse_err > 6 * err  # O(h^4) (measured 8.9x; h^2 would give 4x)


def test_unsupported_processes_and_coordinates_are_refused():
    with pytest.raises(ValueError, match="birth"):
        closure(["A -> A + A @ 1.0"])
    me = closure(["A + A -> 0 @ 0.01"])
    grid = HermiteGrid([-1.0, -1.0], [1.0, 1.0], [2, 2])
    with pytest.raises(ValueError, match=r"needs F over \['b_A', 'J_AA', 'K_AAA'\]"):
        me.coefficients(DynamicsModel([grid] * 3, [(0, 1)] * 3), (0, 1))
    with pytest.raises(ValueError, match="chain parameter"):
        closure(["A + A -> 0 @ 0.01"], names=("b_A", "W_AX"))


def test_maxent_closure_baseline_starts_at_the_data_and_follows_eq_36():
    """From a correlated ring state the baseline reproduces the t0 counts, pairs and strings of
    three (θ(t0) is their max-ent chain), its count slope is eq. 36's −2k_r⟨pairs⟩, and without
    reactions a product state stays put."""
    n, p, dt = 200, 0.3, 0.01
    lattice = Lattice((n,), "periodic")
    ring = chain(n, "periodic")
    theta = np.array([-0.2, 0.8, -0.5])
    exact = exact_string_moments(ring, theta)
    initial = {
        "counts": np.array([[exact["A"]]]),
        "pairs": np.array([[exact["AA"]]]),
        "strings3": np.array([[exact["AAA"]]]),
    }
    times = np.linspace(0.0, 0.01, 401)
    network = ReactionNetwork.parse(["A"], [f"A + A -> 0 @ {p}"])
    out = maxent_closure(network, lattice, dt, initial, times)
    for key, name in (("counts", "A"), ("pairs", "AA"), ("strings3", "AAA")):
        assert out[key][0, 0, 0] == pytest.approx(exact[name], rel=1e-7)
    # eq. 36 integrated: N(t) − N(0) = −2 k_r ∫ pairs dt (trapezoid on the closure's own pairs)
    k_r = 2 * (1 / (2 * dt)) * p
    counts, pairs = out["counts"][0, :, 0], out["pairs"][0, :, 0]
    lost = 2 * k_r * np.concatenate([[0], np.cumsum((pairs[1:] + pairs[:-1]) / 2 * np.diff(times))])
    np.testing.assert_allclose(counts[0] - counts, lost, rtol=2e-3, atol=1e-3)
    assert np.all(np.diff(counts) < 0) and counts[0] - counts[-1] > 10
    # pure hopping from a product state (J = K = 0): stationary
    still = ReactionNetwork.parse(["A"], ["A + A -> 0 @ 0.0"])
    prod = exact_string_moments(ring, np.array([0.4, 0.0, 0.0]))
    flat = {"counts": [prod["A"]], "pairs": [prod["AA"]], "strings3": [prod["AAA"]]}
    same = maxent_closure(still, lattice, dt, flat, np.linspace(0, 0.1, 3))
    np.testing.assert_allclose(same["counts"][:, 0], prod["A"], rtol=1e-7)
    np.testing.assert_allclose(same["strings4"][:, 0], prod["AAAA"], rtol=1e-6)
    with pytest.raises(ValueError, match="1D"):
        maxent_closure(network, Lattice((5, 5), "periodic"), dt, initial, times)


def test_two_species_chain_against_exact_moments_and_a_brute_force_generator():
    """Species A, B: every b, J, K multiset parameter; moments per site equal the exact ring's,
    and ⟨L T⟩ on an 8-site ring (6561 states, every bond and site event) equals the window
    formula with that ring's own 6-site marginals."""
    species, n = ("A", "B"), 8
    reactions = ["A + B -> 0 @ 0.3", "A -> B @ 0.5", "B + B -> A @ 0.2"]
    network = ReactionNetwork.parse(list(species), reactions)
    ring = chain(n, "periodic", species=species)
    names = ring.param_names
    theta = np.random.default_rng(5).uniform(-0.8, 0.8, len(names))
    big = chain(300, "periodic", species=species)
    me = MaxEntClosure(names, species, network, Lattice((300,), "periodic"), 0.01)
    np.testing.assert_allclose(me.moments(theta)[0], exact_moments(big, theta) / 300, rtol=1e-9)

    small = MaxEntClosure(names, species, network, Lattice((n,), "periodic"), 0.01)
    process = Process.build(network, Lattice((n,), "periodic"), 0.01, "standard")
    states = np.array(list(itertools.product(range(3), repeat=n)), dtype=np.int64)
    stats = ring.statistics(states)
    prob = np.exp(stats @ theta)
    prob /= prob.sum()
    drift = np.zeros((states.shape[0], len(names)))
    for i in range(n):
        j = (i + 1) % n
        for a2, b2 in itertools.product(range(3), repeat=2):
            rate = process.bond[states[:, i], states[:, j], a2, b2]
            hit = np.flatnonzero(rate)
            after = states[hit].copy()
            after[:, i], after[:, j] = a2, b2
            drift[hit] += rate[hit, None] * (ring.statistics(after) - stats[hit])
        for a2 in range(3):
            rate = process.site[states[:, i], a2]
            hit = np.flatnonzero(rate)
            after = states[hit].copy()
            after[:, i] = a2
            drift[hit] += rate[hit, None] * (ring.statistics(after) - stats[hit])
    windows = np.zeros(3**WINDOW)
    for i in range(n):
        idx = states[:, [(i + k) % n for k in range(WINDOW)]] @ (3 ** np.arange(WINDOW)[::-1])
        np.add.at(windows, idx, prob / n)
    np.testing.assert_allclose(windows @ small.gain, prob @ drift / n, rtol=1e-10, atol=1e-12)


RBM_THETAS = np.array([[0.3, 1.5, -1.2], [-1.0, 0.5, 0.4], [-0.5, -2.0, 1.0], [0.8, 2.5, -3.0]])


def rbm_closure(reactions=("A + A -> 0 @ 0.05",), ridge=1e-4):
    network = ReactionNetwork.parse(["A"], list(reactions))
    lattice = Lattice((1000,), "reflecting")
    return ChainRbmMaxEnt(("A",), network, lattice, 0.01, "paper", ridge=ridge)


def test_chain_rbm_sums_out_to_the_marginal_chain():
    """On a ring the RBM's visible strings equal those of the chain (b_eff, J_eff, 0)."""
    me = rbm_closure()
    ring_rbm, ring = chain_rbm(60, "periodic"), chain(60, "periodic")
    for theta, (b, j) in zip(RBM_THETAS, me.marginal(RBM_THETAS), strict=True):
        hidden, visible = (
            exact_string_moments(ring_rbm, theta),
            exact_string_moments(ring, [b, j, 0.0]),
        )
        for key in ("A", "AA", "AAA", "AAAA", "A.A"):
            assert hidden[key] == pytest.approx(visible[key], rel=1e-10), key
    assert np.all(me.marginal(RBM_THETAS)[:, 1] >= 0)  # J_eff ≥ 0: f convex


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=3, max_size=3))
def test_marginal_jacobian_is_the_derivative_of_the_marginal(theta):
    me = rbm_closure()
    theta = np.array([theta])
    eps = 1e-6
    fd = np.stack(
        [
            (me.marginal(theta + eps * e) - me.marginal(theta - eps * e))[0] / (2 * eps)
            for e in np.eye(3)[:2]
        ],
        axis=1,
    )
    np.testing.assert_allclose(me.marginal_jacobian(theta)[0], fd, rtol=1e-6, atol=1e-8)


def test_chain_rbm_flow_follows_the_marginal_closure():
    """b' stays; with a vanishing ridge the marginal (b_eff, J_eff) moves along the (b, J)
    chain's own max-ent closure, A F = C₂⁻¹ ⟨L T₂⟩ (finite differences of the marginal along
    F); with the ridge, F solves the regularised normal equations."""
    exact = rbm_closure(ridge=1e-9)
    flow = exact.rhs(RBM_THETAS)
    np.testing.assert_array_equal(flow[:, 2], 0.0)
    marginal = exact.marginal_closure
    target = marginal.rhs(exact.marginal(RBM_THETAS))
    eps = 1e-6
    moved = (exact.marginal(RBM_THETAS + eps * flow) - exact.marginal(RBM_THETAS - eps * flow)) / (
        2 * eps
    )
    np.testing.assert_allclose(moved, target, rtol=1e-4)  # the ridge's bias: ~1e-5

    ridged = rbm_closure(ridge=1e-2)
    f = ridged.rhs(RBM_THETAS)
    a = ridged.marginal_jacobian(RBM_THETAS)
    v = ridged.marginal(RBM_THETAS)
    cov, gain = marginal.covariance(v), marginal.generator(v)
    lhs = np.einsum("nki,nkl,nlj->nij", a, cov, a) + 1e-2 * np.eye(2)
    np.testing.assert_allclose(
        np.einsum("nij,nj->ni", lhs, f[:, :2]), np.einsum("nki,nk->ni", a, gain)
    )
    assert np.abs(np.einsum("nki,ni->nk", a, f[:, :2]) - target).max() > 1e-3  # biased


def test_chain_rbm_closure_settles_at_zero_coupling():
    """W = 0 (J_eff = 0, out of reach below): the flow is finite there, and under annihilation
    (which wants J_eff < 0) RBMs started at W > 0 go to W ≈ 0 instead of past it, with the
    density still falling."""
    me = rbm_closure()
    assert np.all(np.isfinite(me.rhs([[-0.5, 0.0, -1.0]])))
    start = np.array([[-0.5, 0.3, -1.0], [0.5, 1.0, -2.0]])
    theta = integrate_rk4(me.rhs, start, np.linspace(0.0, 4.0, 9), 0.002)
    assert np.all(np.isfinite(theta)) and np.all(theta[:, :, 2] == start[:, None, 2])
    assert np.abs(theta[:, 1:, 1]).max() < 0.05
    marginal = me.marginal(theta.reshape(-1, 3)).reshape(2, 9, 2)
    assert marginal[:, 1:, 1].max() < 1e-3 and np.all(np.diff(marginal[:, :, 0]) < 0)


def test_prior_closure_dispatches_on_the_family():
    network = ReactionNetwork.parse(["A"], ["A + A -> 0 @ 0.01"])
    lattice = Lattice((100,), "periodic")
    assert isinstance(prior_closure("chain", NAMES, ("A",), network, lattice, 0.01), MaxEntClosure)
    rbm = prior_closure("chain_rbm", ("b_A", "W_AX", "b_X"), ("A",), network, lattice, 0.01)
    assert isinstance(rbm, ChainRbmMaxEnt)
    with pytest.raises(ValueError, match="chain_rbm"):
        prior_closure("lattice_rbm", ("b_A",), ("A",), network, lattice, 0.01)
    with pytest.raises(ValueError, match="parameters"):
        prior_closure("chain_rbm", ("b_A", "W_AX"), ("A",), network, lattice, 0.01)
    mf = prior_closure(
        "lattice", ("b_A", "J_AA"), ("A",), network, lattice, 0.01, kind="mean_field"
    )
    assert isinstance(mf, MeanFieldPrior) and mf.inputs == (0,)
    assert isinstance(
        prior_closure("chain", NAMES, ("A",), network, lattice, 0.01, kind="mean_field"),
        MeanFieldPrior,
    )
    with pytest.raises(ValueError, match="family chain or lattice"):
        prior_closure("lattice_rbm", ("b_A",), ("A",), network, lattice, 0.01, kind="mean_field")
    with pytest.raises(ValueError, match="biases"):
        prior_closure("lattice", ("J_AA",), ("A",), network, lattice, 0.01, kind="mean_field")
    with pytest.raises(ValueError, match="maxent or mean_field"):
        prior_closure("chain", NAMES, ("A",), network, lattice, 0.01, kind="pair")


# --- the mean-field prior of fully visible models ----------------------------------------------

ROSSLER = [
    "A -> 2A @ 30",
    "A + A -> A @ 0.1",
    "A + B -> 2B @ 0.4",
    "A + C -> 0 @ 0.24",
    "B -> 0 @ 10",
    "C -> 2C @ 16.5",
    "C + C -> C @ 0.36",
]
LATTICE_NAMES = ("b_A", "b_B", "b_C", "J_AA", "J_AB", "J_AC", "J_BB", "J_BC", "J_CC")


@pytest.mark.parametrize(
    ("reactions", "shape", "semantics"),
    [
        (ROSSLER, (10, 10, 10), "paper"),  # births onto neighbours, paper rules
        (
            ["A + B -> C @ 0.3", "C -> A + B @ 2", "0 -> B @ 0.5", "B -> 0 @ 1"],
            (30, 30),
            "standard",
        ),
    ],
)
def test_mean_field_prior_integrates_to_the_mean_field_closure(reactions, shape, semantics):
    """θ from dθ/dt = F⁰(θ) at J = 0 is the product measure whose densities solve the
    mean-field rate equations: its counts equal closures.mean_field's from the same start, the
    couplings stay 0, and F⁰ ignores them (it depends on the biases alone)."""
    network = ReactionNetwork.parse(["A", "B", "C"], reactions)
    lattice = Lattice(shape, "reflecting")
    prior = MeanFieldPrior(LATTICE_NAMES, ("A", "B", "C"), network, lattice, 0.01, semantics)
    counts = np.array([[200.0, 200.0, 200.0], [50.0, 400.0, 10.0]]) * lattice.n_sites / 1000
    empty = lattice.n_sites - counts.sum(axis=1, keepdims=True)
    theta0 = np.zeros((2, 9))
    theta0[:, :3] = np.log(counts / empty)  # b_s = ln(ρ_s/ρ_∅)
    times = np.linspace(0.0, 0.3, 7)
    step = 2.5e-4  # RK4 in θ and in ρ: both discretisation errors ≲ 1e-10 relative
    theta = integrate_rk4(prior.rhs, theta0, times, step)
    expected = mean_field(
        network, lattice, 0.01, {"counts": counts}, times, semantics=semantics, max_step=step
    )
    weights = np.exp(np.concatenate([np.zeros((2, 7, 1)), theta[..., :3]], axis=2))
    got = lattice.n_sites * weights[..., 1:] / weights.sum(axis=2, keepdims=True)
    np.testing.assert_allclose(got, expected["counts"], rtol=1e-8)
    assert np.abs(np.diff(expected["counts"], axis=1)).max() > 1.0  # the counts do move
    assert np.all(theta[..., 3:] == 0.0)
    coupled = theta0 + np.concatenate([np.zeros((2, 3)), np.full((2, 6), 0.7)], axis=1)
    np.testing.assert_array_equal(prior.rhs(coupled), prior.rhs(theta0))


def test_mean_field_prior_interpolant_on_the_biases_grid():
    """The Hermite interpolant on a grid over the biases only (the couplings' F's too) is exact
    at the vertices up to the central differences of the derivatives, and O(h⁴) between."""
    network = ReactionNetwork.parse(["A", "B", "C"], ROSSLER)
    prior = MeanFieldPrior(
        LATTICE_NAMES, ("A", "B", "C"), network, Lattice((10, 10, 10), "reflecting"), 0.01, "paper"
    )
    grid = HermiteGrid([-2.0, -1.5, -1.5], [0.0, 0.5, 0.0], [20, 20, 15])
    model = DynamicsModel([grid] * 9, [(0, 1, 2)] * 9)
    u = prior.coefficients(model, (0, 1, 2))
    points = np.random.default_rng(5).uniform([-2.0, -1.5, -1.5], [0.0, 0.5, 0.0], (200, 3))
    theta = np.zeros((200, 9))
    theta[:, :3] = points
    exact = prior.rhs(theta)
    np.testing.assert_allclose(model.rhs(u, theta)[:, 3:], 0.0, atol=0)
    err = np.abs(model.rhs(u, theta) - exact).max()
    assert err < 1e-3 * np.abs(exact).max()
    vertices = np.zeros((grid.n_vertices, 9))
    vertices[:, :3] = grid.vertices()
    np.testing.assert_allclose(model.rhs(u, vertices), prior.rhs(vertices), rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="needs F over"):
        prior.coefficients(DynamicsModel([HermiteGrid([-2.0], [0.0], 4)] * 9, [(0,)] * 9), (0,))
