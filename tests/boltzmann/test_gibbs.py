"""Gibbs samplers against exact distributions: chi-square tests of state histograms against
enumeration, moments within 4 standard errors of enumeration and of transfer matrices (N = 1000).

Every sampling mode is checked both ways: k sweeps from random states, hidden units drawn given
exact data, CD-k (k sweeps from exact data samples) and PCD (the same chains over several calls).
"""

import brute_force as bf
import numpy as np
import pytest

from dbdflow.boltzmann import chain, chain_rbm, deep, exact_moments, gibbs, lattice, lattice_rbm

# small models of every family, with parameters of both signs (<= 1296 joint states)
MODELS = {
    "chain-periodic": (lambda: chain(6, "periodic"), [0.4, -0.9, 1.1]),
    "chain-open": (lambda: chain(7, "reflecting"), [-0.3, 0.8, -0.6]),
    # rings with K whose length is not a multiple of 3: 4 and 5 colour classes (on 5 sites every
    # unit shares a triple with every other one, so each class holds a single unit)
    "chain-ring-7": (lambda: chain(7, "periodic"), [0.5, -1.2, 0.9]),
    "chain-ring-5": (lambda: chain(5, "periodic"), [-0.6, 1.3, -1.0]),
    "chain-2-species": (
        lambda: chain(4, "periodic", species=("A", "B")),
        [0.2, -0.4, 0.5, -0.6, 0.3, 0.7, -0.5, 0.4, -0.2],
    ),
    "chain-4-species": (  # 5 states per unit: the kernel's general (> 4 states) path
        lambda: chain(3, "reflecting", species=("A", "B", "C", "D"), terms=("b", "J")),
        np.linspace(-0.8, 0.9, 14),
    ),
    "lattice-2d-open": (
        lambda: lattice((2, 3), "reflecting", ("A", "B")),
        [0.3, -0.5, 0.8, -0.9, 0.4],
    ),
    "lattice-2d-periodic": (lambda: lattice((3, 3), "periodic"), [-0.4, 0.7]),
    "chain_rbm-periodic": (lambda: chain_rbm(4, "periodic"), [-0.3, 1.1, -0.8]),
    "chain_rbm-open": (lambda: chain_rbm(5, "reflecting"), [0.2, -0.9, 0.6]),
    "lattice_rbm": (
        lambda: lattice_rbm((2, 2), ("A", "B"), ("X",), couple={"A": "X", "B": "X"}),
        [-0.2, 0.3, 0.9, -0.7, -0.4],
    ),
    "deep": (lambda: deep((3,), ("A",), [("X",), ("P",)]), [0.1, 0.8, -0.5, -1.0, 0.4]),
}


def joint(state):
    return state.x[:, :-1]


@pytest.mark.parametrize("name", MODELS)
def test_sampled_states_pass_chi_square(name):
    """k sweeps from random states; hidden units drawn given exact visible samples (v clamped);
    then one sweep (CD-1 from data drawn from the model must stay exact)."""
    make, theta = MODELS[name]
    model = make()
    exact = bf.Exact(model, theta)
    rng = np.random.default_rng(11)
    state = gibbs.sample(model, theta, 20000, 30, rng)
    ok, stat, limit = bf.chi_square_passes(exact.codes(joint(state)), exact.p)
    assert ok, f"random start: chi2 = {stat:.1f} > {limit:.1f}"
    v = exact.sample(20000, rng)[:, : model.n_sites]
    deep_model = len(model.layers) > 2  # p(h | v) by clamped Gibbs sweeps, not one draw
    state = gibbs.data_state(model, theta, v, rng, hidden_sweeps=30 if deep_model else 1)
    ok, stat, limit = bf.chi_square_passes(exact.codes(joint(state)), exact.p)
    assert ok, f"hidden | data: chi2 = {stat:.1f} > {limit:.1f}"
    gibbs.sweep(model, theta, state, 1, rng)
    ok, stat, limit = bf.chi_square_passes(exact.codes(joint(state)), exact.p)
    assert ok, f"CD-1 from exact samples: chi2 = {stat:.1f} > {limit:.1f}"


@pytest.mark.parametrize("name", MODELS)
def test_moments_within_four_standard_errors(name):
    make, theta = MODELS[name]
    model = make()
    exact = bf.Exact(model, theta).moments
    rng = np.random.default_rng(3)
    modes = ("sample", "probabilities") if model.n_hidden else ("sample",)
    for hidden in modes:
        est = gibbs.moments(model, theta, rng, n_chains=32, n_sweeps=600, burn=50, hidden=hidden)
        z = (est.mean - exact) / est.stderr
        assert np.all(np.abs(z) < 4), f"{hidden}: z = {np.round(z, 2)}"


def iid_z(stats, exact):
    """(sample mean - exact) / standard error for independent rows of ``stats``."""
    stats = np.asarray(stats, dtype=float)
    return (stats.mean(axis=0) - exact) / (stats.std(axis=0, ddof=1) / np.sqrt(stats.shape[0]))


@pytest.mark.parametrize("name", MODELS)
def test_data_started_moments_within_four_standard_errors(name):
    """Hidden units given exact data (k = 0) and CD-k for k = 1, 3: the chains' statistics (and
    their Rao-Blackwellised E[T | other colour class]) are independent draws whose mean must be
    within 4 standard errors of enumeration."""
    make, theta = MODELS[name]
    model = make()
    exact = bf.Exact(model, theta)
    rng = np.random.default_rng(13)
    v = exact.sample(20000, rng)[:, : model.n_sites]
    deep_model = len(model.layers) > 2
    state = gibbs.data_state(model, theta, v, rng, hidden_sweeps=30 if deep_model else 1)
    np.testing.assert_array_equal(state.visible, v)  # the data stay clamped
    done = 0
    for k in (0, 1, 3):
        gibbs.sweep(model, theta, state, k - done, rng)
        done = k
        estimates = {"sample": state.statistics()}
        if model.n_hidden:
            estimates["probabilities"] = gibbs.conditional_statistics(model, theta, state)
        for hidden, stats in estimates.items():
            z = iid_z(stats, exact.moments)
            assert np.all(np.abs(z) < 4), f"k = {k}, {hidden}: z = {np.round(z, 2)}"
    assert not np.array_equal(state.visible, v)  # CD moved the visible units


@pytest.mark.parametrize("name", ["chain_rbm-periodic", "chain-ring-7", "chain-ring-5", "deep"])
def test_persistent_chains_continue_between_calls(name):
    """PCD: the same chains advanced by several calls pass a chi-square test; then three calls
    of ``moments`` continuing them (no new burn-in) each give moments within 4 standard errors."""
    make, theta = MODELS[name]
    model = make()
    exact = bf.Exact(model, theta)
    rng = np.random.default_rng(8)
    state = gibbs.random_state(model, 20000, rng)
    first = state.x.copy()
    for _ in range(6):
        assert gibbs.sweep(model, theta, state, 5, rng) is state
    assert np.mean(np.all(first == state.x, axis=1)) < 0.1
    ok, stat, limit = bf.chi_square_passes(exact.codes(joint(state)), exact.p)
    assert ok, f"chi2 = {stat:.1f} > {limit:.1f}"
    modes = ("sample", "probabilities") if model.n_hidden else ("sample",)
    for call in range(3):
        before = state.x.copy()
        hidden = modes[call % len(modes)]
        est = gibbs.moments(model, theta, rng, n_sweeps=20, burn=0, hidden=hidden, state=state)
        assert est.state is state and est.chain_means.shape == (20000, model.n_params)
        assert np.mean(np.all(before == state.x, axis=1)) < 0.1
        z = (est.mean - exact.moments) / est.stderr
        assert np.all(np.abs(z) < 4), f"call {call}, {hidden}: z = {np.round(z, 2)}"
        z = iid_z(state.statistics(), exact.moments)  # the chains' final states, one per chain
        assert np.all(np.abs(z) < 4), f"call {call}, final states: z = {np.round(z, 2)}"


@pytest.mark.parametrize("name", ["chain_rbm-open", "lattice_rbm", "deep"])
def test_conditional_statistics_match_enumeration(name):
    """Rao-Blackwellised statistics: E[T | units outside the hidden units' colour class]."""
    make, theta = MODELS[name]
    model = make()
    exact = bf.Exact(model, theta)
    state = gibbs.sample(model, theta, 5, 3, np.random.default_rng(0))
    got = gibbs.conditional_statistics(model, theta, state)
    m = model.mrf
    fixed = m.colour != m.colour[model.n_sites]
    for i in range(state.n_chains):
        rows = np.all(exact.x[:, fixed] == joint(state)[i, fixed], axis=1)
        expected = exact.p[rows] @ exact.t[rows] / exact.p[rows].sum()
        np.testing.assert_allclose(got[i], expected, atol=1e-10)


@pytest.mark.parametrize(
    ("model", "theta", "hidden"),
    [
        (chain(1000, "periodic"), [0.3, -0.5, 0.8], "sample"),
        (chain(1000, "reflecting"), [-1.0, 1.0, -1.0], "sample"),
        (chain(1000, "periodic"), [1.0, -1.0, 1.0], "sample"),
        (chain_rbm(1000, "reflecting"), [-0.5, 1.0, -1.0], "probabilities"),
        (chain_rbm(1000, "periodic"), [-0.5, 1.0, -1.0], "probabilities"),
        (chain_rbm(1000, "periodic"), [0.4, -1.0, 0.6], "sample"),
        (
            chain(1000, "periodic", species=("A", "B")),
            [0.2, -0.4, 0.5, -0.6, 0.3, 0.7, -0.5, 0.4, -0.2],
            "sample",
        ),
        (
            chain(1000, "reflecting", species=("A", "B"), terms=("b", "J")),
            [-0.3, 0.4, 0.8, -0.9, 0.5],
            "sample",
        ),
    ],
    ids=[
        "chain-periodic",
        "chain-open",
        "chain-periodic-strong",
        "chain_rbm-open",
        "chain_rbm-periodic",
        "chain_rbm-periodic-sample",
        "chain-2-species-periodic",
        "chain-2-species-open",
    ],
)
def test_long_chains_match_transfer_matrices(model, theta, hidden):
    est = gibbs.moments(
        model, theta, np.random.default_rng(21), n_chains=24, n_sweeps=300, burn=100, hidden=hidden
    )
    z = (est.mean - exact_moments(model, theta)) / est.stderr
    assert np.all(np.abs(z) < 4), f"z = {np.round(z, 2)}"


def test_extreme_parameters_fall_back_to_log_space():
    """θ = (1600, -800, 0): every state's weight underflows in the product form; the 7 states
    with 1600·n - 800·pairs = 3200 on a ring of 4 are equally likely, all others negligible."""
    model, theta = chain(4, "periodic", terms=("b", "J")), [1600.0, -800.0]
    exact = bf.Exact(model, theta)
    assert np.sum(exact.p > 1e-12) == 7
    state = gibbs.sample(model, theta, 14000, 20, np.random.default_rng(2))
    ok, stat, limit = bf.chi_square_passes(exact.codes(joint(state)), exact.p)
    assert ok, f"chi2 = {stat:.1f} > {limit:.1f}"


def test_split_rhat_detects_unmixed_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(20, 400, 2))
    assert np.all(np.abs(gibbs.split_rhat(iid) - 1) < 0.01)
    offset = iid + np.arange(20)[:, None, None] * 0.2  # chains stuck at different levels
    assert np.all(gibbs.split_rhat(offset) > 1.1)
    trend = iid + np.linspace(0, 2, 400)[None, :, None]  # drifting: the split halves disagree
    assert np.all(gibbs.split_rhat(trend) > 1.1)
    constant = np.ones((4, 10, 1))
    assert gibbs.split_rhat(constant)[0] == 1.0


def test_burn_in_is_checked():
    model, theta = lattice_rbm((4, 4), ("A",), ("X",)), [-0.5, 1.0, -1.0]
    rng = np.random.default_rng(4)
    info = gibbs.burn_in(model, theta, gibbs.random_state(model, 32, rng), rng, window=8)
    assert np.all(info["rhat"] < 1.01) and info["sweeps"] >= 8
    with pytest.raises(RuntimeError, match="not converged"):
        gibbs.burn_in(
            model,
            theta,
            gibbs.random_state(model, 32, rng),
            rng,
            window=4,
            max_sweeps=4,
            threshold=1.0,
        )


def test_bad_arguments_raise():
    model = chain(5)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="hidden"):
        gibbs.moments(model, [0, 0, 0], rng, hidden="probabilities")
    with pytest.raises(ValueError, match="different model"):
        gibbs.sweep(chain(5), [0, 0, 0], gibbs.random_state(model, 2, rng), 1, rng)
    with pytest.raises(ValueError, match="thin"):
        gibbs.moments(model, [0, 0, 0], rng, n_sweeps=10, thin=3)
