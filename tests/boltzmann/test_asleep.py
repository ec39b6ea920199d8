"""Asleep moments (batched exact and sampled) and θ(t0) fitting against independent results:
transfer-matrix moments, enumeration, the static learner, the chain RBM's visible marginal."""

import brute_force as bf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.boltzmann import (
    chain,
    chain_rbm,
    exact_moments,
    exact_sample,
    fit,
    lattice_rbm,
    transfer,
)
from dbdflow.boltzmann.asleep import BLOCK, ExactAsleep, SampledAsleep
from dbdflow.boltzmann.awake import FieldAwake, field_histograms
from dbdflow.boltzmann.initial_theta import fit_exact

MODELS = st.sampled_from(
    [
        ("chain", ("b", "J", "K"), 1),
        ("chain", ("b", "K"), 1),
        ("chain", ("b", "J"), 2),
        ("chain", ("J",), 1),
        ("chain_rbm", (), 1),
    ]
)


@settings(max_examples=40, deadline=None)
@given(
    kind=MODELS,
    n=st.integers(3, 300),
    boundary=st.sampled_from(["periodic", "reflecting"]),
    seed=st.integers(0, 2**16),
    n_theta=st.sampled_from([1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3]),
)
def test_exact_asleep_equals_transfer_moments(kind, n, boundary, seed, n_theta):
    """Batches of θ of every size around the kernel's block length: each θ's moments are its
    own (no crosstalk between the θ of a block, nor leftovers of a previous block)."""
    family, terms, n_species = kind
    species = ("A", "B")[:n_species]
    model = chain(n, boundary, species, terms) if family == "chain" else chain_rbm(n, boundary)
    theta = np.random.default_rng(seed).uniform(-4, 4, (n_theta, model.n_params))
    want = np.array([exact_moments(model, t) for t in theta])
    np.testing.assert_allclose(ExactAsleep(model)(theta), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("boundary", ["periodic", "reflecting"])
def test_exact_asleep_equals_enumeration(boundary):
    rng = np.random.default_rng(1)
    for model in (chain(7, boundary), chain_rbm(6, boundary)):
        theta = rng.normal(size=(3, model.n_params))
        want = [bf.Exact(model, t).moments for t in theta]
        np.testing.assert_allclose(ExactAsleep(model)(theta), want, rtol=1e-10)
    with pytest.raises(ValueError, match="exact asleep"):
        ExactAsleep(lattice_rbm((2, 2), ("A",), ("X",)))


@pytest.mark.parametrize("method", ["random", "pcd", "cd"])
def test_sampled_asleep_is_unbiased(method):
    """Gibbs estimates agree with exact moments within 5 standard errors; the bound uses Var(T)
    (≥ Var E[T | v], so conservative for Rao-Blackwellised hidden probabilities)."""
    model = chain_rbm(6, "periodic")
    theta = np.array([[-0.4, 0.8, -0.5], [0.3, -0.6, 0.2]])
    rng = np.random.default_rng(2)
    data = exact_sample(model, theta[0], 300, rng)
    asleep = SampledAsleep(model, method, sweeps=40, chains=300, data=lambda ic, step: data)
    got = asleep(theta, [0, 0], [1, 2], rng)
    if method == "pcd":  # the persistent chains continue from where they stopped
        assert set(asleep.persistent) == {(0, 1), (0, 2)}
        got = asleep(theta, [0, 0], [1, 2], rng)
    for t, g in zip(theta, got, strict=True):
        exact = bf.Exact(model, t)
        se = np.sqrt(np.diag(exact.covariance) / 300)
        assert np.all(np.abs(g - exact.moments) < 5 * se), (g, exact.moments, se)


def test_pcd_state_round_trips():
    model = lattice_rbm((2, 3), ("A", "B"), ("X",))
    theta = np.random.default_rng(3).normal(size=(2, model.n_params))
    a = SampledAsleep(model, "pcd", sweeps=2, chains=5)
    a(theta, [0, 1], [0, 0], np.random.default_rng(4))
    b = SampledAsleep(model, "pcd", sweeps=2, chains=5)
    b.load_state(a.state())
    assert a.state()["chains"].shape == (2, 5, model.n_units + 1)
    r1 = a(theta, [0, 1], [0, 0], np.random.default_rng(5))
    r2 = b(theta, [0, 1], [0, 0], np.random.default_rng(5))
    assert np.array_equal(r1, r2)
    with pytest.raises(ValueError, match="cd' needs data"):
        SampledAsleep(model, "cd")
    with pytest.raises(ValueError, match="method must be one of"):
        SampledAsleep(model, "exact")


def test_fit_exact_matches_chain_moments():
    """Fully visible chain: maximum likelihood = moment matching, reached by Newton in a few
    iterations."""
    model = chain(50, "reflecting")
    data = exact_sample(model, np.array([-0.3, 0.6, -0.8]), 200, np.random.default_rng(6))
    mu = model.statistics(data).mean(axis=0)
    theta, info = fit_exact(model, lambda th: mu, lambda th: th @ mu, np.zeros(3), tol=1e-10)
    assert info["converged"] and info["iterations"] < 15
    np.testing.assert_allclose(exact_moments(model, theta), mu, rtol=1e-8)


def rbm_awake(model, data):
    hist, counts = field_histograms(model, data[:, None])
    n = data.shape[0]
    awake = FieldAwake(model, np.arange(3)[:, None], (hist[:, :3] / n)[None], (counts / n)[None])
    return (
        lambda th: awake([0], [0], th[None])[0],
        lambda th: awake.log_partial([0], [0], th[None])[0],
        lambda th: awake.covariance([0], [0], th)[0],
    )


def test_fit_exact_chain_rbm_open_chain_equals_the_static_learner():
    model = chain_rbm(60, "reflecting")
    data = exact_sample(model, np.array([-0.5, 1.0, -1.0]), 300, np.random.default_rng(7))
    aw, logd, cov = rbm_awake(model, data)
    start = np.array([0.0, 0.5, 0.0])
    theta, info = fit_exact(model, aw, logd, start, awake_cov=cov, tol=1e-10)
    assert info["converged"] and info["iterations"] < 30
    ref, log = fit(model, data, start, n_steps=8000, tol=1e-9)
    assert log["converged"]
    np.testing.assert_allclose(theta, ref, atol=2e-4)


def test_fit_exact_chain_rbm_ring_matches_the_visible_marginal():
    """On a ring the RBM's visible marginal is a (b, J) chain with b_eff = b + 2(f(1) − f(0)),
    J_eff = f(2) − 2f(1) + f(0), f(s) = ln(1 + e^{b' + Ws}): the RBM fit (one point of a curve of
    maximisers) has the effective parameters of the (b, J) chain fit."""
    model = chain_rbm(40, "periodic")
    data = exact_sample(model, np.array([-0.5, 1.0, -1.0]), 300, np.random.default_rng(8))
    aw, logd, cov = rbm_awake(model, data)
    theta, info = fit_exact(model, aw, logd, np.array([0.0, 0.5, 0.0]), awake_cov=cov)
    assert info["converged"]
    visible = chain(40, "periodic", terms=("b", "J"))
    mu = visible.statistics(data).mean(axis=0)
    eff, _ = fit_exact(visible, lambda th: mu, lambda th: th @ mu, np.zeros(2))
    f = np.logaddexp(0.0, theta[2] + theta[1] * np.arange(3))
    got = [theta[0] + 2 * (f[1] - f[0]), f[2] - 2 * f[1] + f[0]]
    np.testing.assert_allclose(got, eff, atol=1e-6)
    assert info["log_likelihood"] == pytest.approx(
        (eff @ mu - transfer.exact_log_partition(visible, eff)) / 40, abs=1e-10
    )
