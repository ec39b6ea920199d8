"""Model predictions: exact 1D moments, Gibbs-sampled moments, θ(t), and the KL divergence.

Ground truth: enumeration of every lattice of small chains, exact samples (transfer matrices),
and the observables of :mod:`dbdflow.moments.observables`, so the evaluation uses the same
definitions (windows of open and periodic chains) as the data.
"""

import itertools

import numpy as np
import pytest

from dbdflow.boltzmann import chain, chain_rbm, exact_moments, exact_sample
from dbdflow.dynamics import HermiteGrid, solve
from dbdflow.evaluate import predictions
from dbdflow.moments.observables import observables
from dbdflow.simulate import Lattice

CASES = [
    ("chain", "periodic", [-0.4, 0.7, -0.5]),
    ("chain", "reflecting", [0.3, -0.8, 0.6]),
    ("chain_rbm", "periodic", [-0.5, 0.9, -0.3]),
    ("chain_rbm", "reflecting", [0.2, 1.1, -1.4]),
]
NAMES = ("counts", "pairs", "pairs_d2", "strings2", "strings3", "strings4")


def build(family, n, boundary):
    return chain(n, boundary) if family == "chain" else chain_rbm(n, boundary)


def log_weights(model, theta, lattice, states):
    """ln p̃(v) of every visible lattice (hidden units summed out), by plain numpy."""
    v = states.astype(float)
    if model.family == "chain":
        return model.statistics(states) @ np.asarray(theta)
    b, w, bx = theta
    bonds = lattice.bonds
    s = v[:, bonds[:, 0]] + v[:, bonds[:, 1]]
    return b * v.sum(axis=1) + np.logaddexp(0.0, bx + w * s).sum(axis=1)


def enumerate_lattices(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.int8)


@pytest.mark.parametrize(("family", "boundary", "theta"), CASES)
def test_exact_moments_equal_enumerated_observables(family, boundary, theta):
    n = 7
    model, lattice = build(family, n, boundary), Lattice((n,), boundary)
    states = enumerate_lattices(n)
    logw = log_weights(model, theta, lattice, states)
    p = np.exp(logw - logw.max())
    p /= p.sum()
    obs = observables(states, lattice, ["A"])
    exact = predictions.exact_observables(model, np.array([theta, theta]))
    for name in NAMES:
        assert exact[name].shape == (2, 1)
        np.testing.assert_allclose(exact[name][0], p @ obs[name], rtol=1e-10, err_msg=name)


@pytest.mark.parametrize(("family", "boundary", "theta"), CASES)
def test_exact_moments_agree_with_observables_of_exact_samples(family, boundary, theta):
    n, draws = 12, 4000
    model, lattice = build(family, n, boundary), Lattice((n,), boundary)
    rng = np.random.default_rng(11)
    obs = observables(exact_sample(model, np.array(theta), draws, rng), lattice, ["A"])
    exact = predictions.exact_observables(model, np.array(theta))
    for name in NAMES:
        values = obs[name][:, 0].astype(float)
        stderr = values.std(ddof=1) / np.sqrt(draws)
        assert abs(values.mean() - exact[name][0]) < 4 * stderr, name


def test_diverged_parameters_give_nan_not_an_error():
    model = chain(8, "periodic")
    theta = np.array([[0.1, 0.2, 0.3], [np.nan, 0.0, 0.0]])
    out = predictions.exact_observables(model, theta)
    assert np.isfinite(out["counts"][0, 0]) and np.isnan(out["counts"][1, 0])


def constant_dynamics(rates, lower, upper, n_cells, dt, scheme="rk4", substeps=2):
    """A dynamics file's contents with F_k ≡ rates[k] on a shared grid."""
    grid = HermiteGrid(lower, upper, n_cells)
    fns = []
    for rate in rates:

        def f(x, rate=rate):
            out = np.zeros((x.shape[0], 1 << grid.d))
            out[:, 0] = rate
            return out

        fns.append(
            {
                "u": grid.interpolate(f),
                "coords": np.arange(len(rates)),
                "lower": np.asarray(lower, float),
                "upper": np.asarray(upper, float),
                "n_cells": np.asarray(n_cells),
            }
        )
    names = tuple(f"p{k}" for k in range(len(rates)))
    return {
        "functions": fns,
        "param_names": names,
        "attrs": {"dt": dt, "scheme": scheme, "substeps": substeps},
    }


def test_integrate_follows_constant_learned_rates_and_counts_excursions():
    dyn = constant_dynamics([0.5, -1.0], [-1, -1], [1, 1], [2, 2], dt=0.1)
    times = np.arange(6) * 0.1
    theta0 = np.array([[0.0, 0.0], [0.9, 0.2]])
    theta, outside, substeps = predictions.integrate(dyn, theta0, times)
    expected = theta0[:, None, :] + times[None, :, None] * np.array([0.5, -1.0])
    np.testing.assert_allclose(theta, expected, atol=1e-12)
    assert outside[0].sum() == 0 and outside[1].sum() > 0  # IC 1 leaves the box at b = 1
    assert substeps.tolist() == [dyn["attrs"]["substeps"]] * 2  # exact at training's step
    with pytest.raises(ValueError, match="differs from training"):
        predictions.integrate(dyn, theta0, np.arange(3) * 0.2)


def test_integrate_refines_the_step_where_the_learned_ode_is_stiff():
    """dθ/dt = −cθ³ (a cubic: represented exactly) with c = 100 and one RK4 step of 0.01: from
    θ0 = 1 the Jacobian −3cθ² = −300 is beyond RK4's stability limit, from θ0 = 0.1 it is not.
    Each IC gets the substeps it needs and matches θ0/√(1 + 2cθ0²t)."""
    c, dt = 100.0, 0.01
    grid = HermiteGrid([-1.5], [1.5], [3])
    u = grid.interpolate(lambda x: np.column_stack([-c * x[:, 0] ** 3, -3 * c * x[:, 0] ** 2]))
    fn = {
        "u": u,
        "coords": np.arange(1),
        "lower": grid.lower,
        "upper": grid.upper,
        "n_cells": grid.n_cells,
    }
    dyn = {
        "functions": [fn],
        "param_names": ("p0",),
        "attrs": {"dt": dt, "scheme": "rk4", "substeps": 1},
    }
    times = np.arange(21) * dt
    theta0 = np.array([[1.0], [0.1]])
    theta, _, substeps = predictions.integrate(dyn, theta0, times)
    exact = theta0[:, None, :] / np.sqrt(1 + 2 * c * theta0[:, None, :] ** 2 * times[None, :, None])
    np.testing.assert_allclose(theta, exact, atol=5e-6)
    assert substeps[1] == 1 and substeps[0] >= 4
    coarse = solve(*predictions.dynamics_model(dyn), theta0, 20, dt, scheme="rk4", substeps=1)
    assert not np.allclose(coarse.theta[0], exact[0], atol=1e-2)  # training's step alone fails
    # no convergence (tol 0): training's own discretisation, substeps reported negative
    theta, outside, substeps = predictions.integrate(dyn, theta0, times, tol=0.0)
    np.testing.assert_array_equal(theta, coarse.theta)
    np.testing.assert_array_equal(outside, coarse.outside)
    assert substeps.tolist() == [-1, -1]


def test_sampled_moments_match_exact_moments_within_their_standard_errors():
    n = 10
    model, lattice = chain(n, "periodic"), Lattice((n,), "periodic")
    theta = np.array([-0.3, 0.6, -0.4])
    path = np.broadcast_to(theta, (1, 3, 3)).copy()
    means, errors = predictions.sampled_observables(
        model, path, lattice, ["A"], [np.random.default_rng(5)], chains=400, sweeps=5
    )
    exact = predictions.exact_observables(model, theta)
    for name in ("counts", "pairs", "strings3", "strings4"):
        z = (means[name][0, :, 0] - exact[name][0]) / errors[name][0, :, 0]
        assert np.all(np.abs(z) < 4.5), (name, z)
    with pytest.raises(ValueError, match="chains"):
        predictions.sampled_observables(model, path, lattice, ["A"], [None], chains=1)


def test_sampled_moments_of_a_lattice_rbm_have_valid_standard_errors():
    """2D lattice RBM: the count observable is the statistic b_A, whose mean an independent
    long Gibbs run (:func:`gibbs.moments`) estimates."""
    from dbdflow.boltzmann import gibbs, lattice_rbm

    model = lattice_rbm((4, 4), ["A"], ["X"])
    lattice = Lattice((4, 4), "periodic")
    theta = np.array([-0.2, 0.5, -0.8])
    path = np.broadcast_to(theta, (2, 2, 3)).copy()
    rngs = [np.random.default_rng(7), np.random.default_rng(8)]
    means, errors = predictions.sampled_observables(
        model, path, lattice, ["A"], rngs, chains=300, sweeps=5
    )
    assert set(means) == {"counts", "pairs"} and means["pairs"].shape == (2, 2, 1)
    ref = gibbs.moments(model, theta, np.random.default_rng(9), n_chains=64, n_sweeps=400)
    z = (means["counts"][..., 0] - ref.mean[0]) / np.hypot(errors["counts"][..., 0], ref.stderr[0])
    assert np.all(np.abs(z) < 4.5), z


# --- KL divergence -----------------------------------------------------------------------------


def brute_kl(model, theta2, theta1, boundary, n):
    lattice = Lattice((n,), boundary)
    full = chain(n, boundary)
    states = enumerate_lattices(n)
    l1 = log_weights(full, theta1, lattice, states)
    l2 = log_weights(model, theta2, lattice, states)
    p1 = np.exp(l1 - np.logaddexp.reduce(l1))
    return float(p1 @ ((l1 - np.logaddexp.reduce(l1)) - (l2 - np.logaddexp.reduce(l2)))) / n


@pytest.mark.parametrize(("family", "boundary", "theta2"), CASES)
def test_kl_to_maxent_equals_enumeration(family, boundary, theta2):
    n = 8
    model = build(family, n, boundary)
    theta1 = np.array([0.2, -0.5, 0.7])
    got = predictions.kl_to_maxent(model, np.array([theta2]), np.array([theta1]))
    assert got.shape == (1,)
    assert got[0] == pytest.approx(brute_kl(model, theta2, theta1, boundary, n), rel=1e-9)
    assert got[0] > 0


def test_kl_is_zero_for_the_maxent_chain_itself_and_nan_when_undefined():
    model = chain(9, "reflecting")
    theta = np.array([[0.3, -0.2, 0.4], [np.nan, 0, 0]])
    got = predictions.kl_to_maxent(model, theta, theta)
    assert abs(got[0]) < 1e-12 and np.isnan(got[1])


def test_maxent_theta_recovers_the_generating_chain():
    n = 30
    truth = np.array([[[0.4, -0.6, 0.5], [-0.3, 0.2, -0.1]]])  # (1 IC, 2 times, 3)
    mu = np.array([[exact_moments(chain(n, "reflecting"), t) for t in truth[0]]])
    data = {k: mu[..., i : i + 1] for i, k in enumerate(("counts", "pairs", "strings3"))}
    got = predictions.maxent_theta(n, "reflecting", "A", data)
    np.testing.assert_allclose(got, truth, atol=1e-6)
    # an empty lattice is reached in the limit b → −∞: the fit stops at a chain that is empty
    # to within the tolerance
    empty = {k: np.zeros((1, 1, 1)) for k in data}
    theta = predictions.maxent_theta(n, "reflecting", "A", empty)[0, 0]
    assert exact_moments(chain(n, "reflecting"), theta)[0] < 1e-6
