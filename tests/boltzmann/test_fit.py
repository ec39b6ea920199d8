"""Static learning: maximum likelihood recovers known parameters from exact samples within their
statistical error (Fisher information), PCD agrees with exact-moment fits, sample_initial draws
from the right distribution."""

import brute_force as bf
import numpy as np
import pytest

from dbdflow.boltzmann import (
    chain,
    chain_rbm,
    deep,
    exact_moments,
    exact_sample,
    fit,
    lattice,
    lattice_rbm,
    maxent_path,
    sample_initial,
)

P_VALUE = 1e-3


def fisher_chi2(delta, stats):
    """n δᵀ Cov(T) δ: asymptotically χ²(K) for δ = MLE - truth, Cov(T) the Fisher information
    per lattice (estimated from the n data lattices' statistics)."""
    return stats.shape[0] * delta @ np.cov(stats.T) @ delta


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
def test_fit_recovers_chain_parameters(boundary):
    model, truth = chain(100, boundary), np.array([-0.3, 0.6, -0.8])
    data = exact_sample(model, truth, 400, np.random.default_rng(1))
    theta, log = fit(model, data, np.zeros(3), learning_rate=0.05, n_steps=5000, tol=1e-8)
    assert log["converged"] and log["asleep"] == "exact"
    assert log["log_likelihood"][-1] > log["log_likelihood"][0]
    chi2 = fisher_chi2(theta - truth, model.statistics(data))
    assert chi2 < bf.chi2_quantile(3, P_VALUE), f"θ = {theta}, chi2 = {chi2:.2f}"
    sgd, log_sgd = fit(model, data, np.zeros(3), method="sgd", learning_rate=1.0, tol=1e-8)
    assert log_sgd["converged"]
    np.testing.assert_allclose(sgd, theta, atol=1e-5)


def effective_chain(theta):
    """Visible marginal of the periodic chain RBM (eq. 39) as a (b, J) chain: summing h_j out
    gives exp(f(v_j + v_{j+1})), f(s) = ln(1 + e^{b' + W s}), so b_eff = b + 2(f(1) - f(0)) and
    J_eff = f(2) - 2 f(1) + f(0). (b, W, b') -> (b_eff, J_eff) is many-to-one: only the
    effective parameters are identifiable."""
    b, w, bx = theta
    f = np.logaddexp(0.0, bx + w * np.arange(3))
    return np.array([b + 2 * (f[1] - f[0]), f[2] - 2 * f[1] + f[0]])


@pytest.mark.parametrize(("method", "learning_rate"), [("adam", 0.05), ("sgd", 1.5)])
def test_fit_chain_rbm_recovers_the_visible_distribution(method, learning_rate):
    model, truth = chain_rbm(100, "periodic"), np.array([-0.5, 1.0, -1.0])
    data = exact_sample(model, truth, 400, np.random.default_rng(2))
    theta, log = fit(
        model,
        data,
        np.array([0.0, 0.5, 0.0]),
        method=method,
        learning_rate=learning_rate,
        n_steps=10000,
        tol=1e-8,
    )
    assert log["converged"] and log["asleep"] == "exact"
    visible = chain(100, "periodic", terms=("b", "J"))
    stats = visible.statistics(data)
    # the fitted RBM's visible marginal is the (b, J) chain at the effective parameters
    np.testing.assert_allclose(
        exact_moments(visible, effective_chain(theta))[0], exact_moments(model, theta)[0]
    )
    np.testing.assert_allclose(
        exact_moments(visible, effective_chain(theta)), stats.mean(axis=0), rtol=1e-6
    )
    chi2 = fisher_chi2(effective_chain(theta) - effective_chain(truth), stats)
    assert chi2 < bf.chi2_quantile(2, P_VALUE), f"chi2 = {chi2:.2f}"


def effective_open_chain(theta):
    """Visible marginal of the open chain RBM as an exponential family in T' = (Σv, Σv_iv_{i+1},
    v_0 + v_{N-1}): Σ_j f(v_j + v_{j+1}) with f as in :func:`effective_chain` is
    N-1 f(0) + Δ (2Σv - v_0 - v_{N-1}) + J_eff Σv_iv_{i+1}, Δ = f(1) - f(0), so the natural
    parameters are (b + 2Δ, J_eff, -Δ): the end sites lack half a bond's field. Unlike the ring,
    the three RBM parameters map locally one-to-one to these."""
    b, w, bx = theta
    f = np.logaddexp(0.0, bx + w * np.arange(3))
    return np.array([b + 2 * (f[1] - f[0]), f[2] - 2 * f[1] + f[0], -(f[1] - f[0])])


def open_chain_statistics(v):
    """T' = (Σv, Σv_iv_{i+1}, v_0 + v_{N-1}) of lattices v (n, N)."""
    v = np.asarray(v, dtype=np.int64)
    return np.stack([v.sum(1), (v[:, 1:] * v[:, :-1]).sum(1), v[:, 0] + v[:, -1]], axis=1)


def open_chain_moments(beta, n_sites):
    """E[T'] under p(v) ∝ exp(β · T'(v)) by forward-backward over 2x2 transfer matrices."""
    field = np.full(n_sites, beta[0])
    field[[0, -1]] += beta[2]
    pair = np.exp(beta[1] * np.outer([0, 1], [0, 1]))  # (state i, state i+1)
    local = np.exp(np.outer(field, [0, 1]))  # (site, state)
    fwd, bwd = np.empty((n_sites, 2)), np.empty((n_sites, 2))
    fwd[0] = local[0] / local[0].sum()
    for i in range(1, n_sites):
        fwd[i] = (fwd[i - 1] @ pair) * local[i]
        fwd[i] /= fwd[i].sum()
    bwd[-1] = 1.0
    for i in range(n_sites - 2, -1, -1):
        bwd[i] = pair @ (local[i + 1] * bwd[i + 1])
        bwd[i] /= bwd[i].sum()
    site = fwd * bwd
    site /= site.sum(axis=1, keepdims=True)
    joint = fwd[:-1, :, None] * pair[None] * (local[1:] * bwd[1:])[:, None, :]
    joint /= joint.sum(axis=(1, 2), keepdims=True)
    return np.array([site[:, 1].sum(), joint[:, 1, 1].sum(), site[0, 1] + site[-1, 1]])


def test_fit_open_chain_rbm_recovers_the_visible_distribution():
    """Open chain RBM: the fitted visible marginal matches the data's T' means (the likelihood's
    stationarity condition) and its natural parameters are within statistical error of the truth
    (Fisher information Cov(T'))."""
    n_sites = 100
    model, truth = chain_rbm(n_sites, "reflecting"), np.array([-0.5, 1.0, -1.0])
    data = exact_sample(model, truth, 400, np.random.default_rng(2))
    theta, log = fit(model, data, np.array([0.0, 0.5, 0.0]), n_steps=5000, tol=1e-8)
    assert log["converged"] and log["asleep"] == "exact"
    assert log["grad_norm"][-1] < log["grad_norm"][0]
    stats = open_chain_statistics(data)
    fitted = open_chain_moments(effective_open_chain(theta), n_sites)
    # the fitted RBM's visible marginal is the effective chain (checked on ⟨Σv⟩ from transfer)
    np.testing.assert_allclose(fitted[0], exact_moments(model, theta)[0], rtol=1e-10)
    # moment matching up to an optimisation error far below the data means' standard errors
    # (the boundary term is weakly determined, so |gradient| < tol bounds it only loosely)
    stderr = stats.std(axis=0, ddof=1) / np.sqrt(stats.shape[0])
    assert np.all(np.abs(fitted - stats.mean(axis=0)) < 1e-3 * stderr)
    chi2 = fisher_chi2(effective_open_chain(theta) - effective_open_chain(truth), stats)
    assert chi2 < bf.chi2_quantile(3, P_VALUE), f"θ = {theta}, chi2 = {chi2:.2f}"


def test_pcd_fit_agrees_with_exact_fit():
    model = chain(8, "reflecting")
    data = exact_sample(model, [0.4, -0.7, 0.9], 500, np.random.default_rng(3))
    exact, _ = fit(model, data, np.zeros(3), tol=1e-9, n_steps=5000)
    pcd, log = fit(
        model,
        data,
        np.zeros(3),
        asleep="pcd",
        rng=np.random.default_rng(4),
        learning_rate=lambda step: 0.05 / (1 + step / 300),
        n_steps=3000,
        n_chains=200,
    )
    assert log["asleep"] == "pcd" and not log["converged"]
    # the PCD optimum must be closer to the exact MLE than the MLE is to the truth, typically
    error = np.sqrt(np.diag(np.linalg.inv(np.cov(model.statistics(data).T) * data.shape[0])))
    assert np.all(np.abs(pcd - exact) < error), f"PCD {pcd}, exact {exact}, σ {error}"


@pytest.mark.parametrize(("asleep", "k"), [("pcd", 1), ("cd", 5), ("random", 10)])
def test_sampled_fit_of_lattice_rbm_reaches_a_stationary_point(asleep, k):
    """With raw hidden probabilities (paper §IV.B) and minibatches; checked with exact gradients
    from enumeration: at the fitted θ, awake - asleep is within 4 standard errors of the data."""
    model = lattice_rbm((2, 2), ("A", "B"), ("X",), couple={"A": "X", "B": "X"})
    truth = np.array([-0.4, 0.2, 0.9, -0.6, -0.3])
    exact = bf.Exact(model, truth)
    rng = np.random.default_rng(5)
    data = exact.sample(3000, rng)[:, : model.n_sites]
    theta, log = fit(
        model,
        data,
        np.full(5, 0.1),
        asleep=asleep,
        k=k,
        rng=rng,
        n_chains=200,
        n_steps=1200,
        batch_size=500,
        learning_rate=lambda step: 0.05 / (1 + step / 200),
    )
    assert log["asleep"] == asleep
    awake = model.awake_statistics(data, theta)
    gradient = awake.mean(axis=0) - bf.Exact(model, theta).moments
    stderr = awake.std(axis=0) / np.sqrt(data.shape[0])
    assert np.all(np.abs(gradient) < 4 * stderr), f"gradient / stderr = {gradient / stderr}"


def test_centred_fit_of_deep_model_converges():
    """Deterministic (exact asleep moments, mean-field awake): the centred parametrisation with
    moving offsets reaches a stationary point of the natural gradient."""
    model = deep((3,), ("A",), [("X",), ("P",)])
    exact = bf.Exact(model, [-0.2, 1.0, -0.5, 0.8, 0.3])
    data = exact.sample(300, np.random.default_rng(6))[:, :3]
    moments = lambda t: bf.Exact(model, t).moments  # noqa: E731
    theta, log = fit(
        model, data, np.full(5, 0.2), asleep=moments, centering=True, n_steps=4000, tol=1e-6
    )
    assert log["converged"] and log["offsets"].shape == (3,)
    gradient = model.awake_statistics(data, theta).mean(axis=0) - moments(theta)
    assert np.max(np.abs(gradient)) / model.n_sites < 1e-6


def test_sample_initial_exact_and_gibbs():
    rng = np.random.default_rng(7)
    model, theta = chain(6, "periodic"), [0.4, -0.9, 1.1]
    lattices, info = sample_initial(model, theta, 20000, rng, return_info=True)
    assert info["method"] == "exact" and lattices.dtype == np.int8
    exact = bf.Exact(model, theta)
    ok, stat, limit = bf.chi_square_passes(exact.codes(lattices), exact.p)
    assert ok, f"chi2 = {stat:.1f} > {limit:.1f}"
    model = lattice_rbm((2, 2), ("A", "B"), ("X",))
    theta = [-0.2, 0.3, 0.9, -0.7, -0.4]
    lattices, info = sample_initial(model, theta, 20000, rng, return_info=True)
    assert info["method"] == "gibbs" and np.all(info["rhat"] < 1.01)
    v, p = bf.Exact(model, theta).visible_marginal()
    codes = np.ravel_multi_index(tuple(lattices.T.astype(int)), (3,) * 4)
    ok, stat, limit = bf.chi_square_passes(
        codes, p[np.argsort(np.ravel_multi_index(tuple(v.T), (3,) * 4))]
    )
    assert ok, f"chi2 = {stat:.1f} > {limit:.1f}"


def test_exact_maxent_path_recovers_the_parameters_of_a_chain():
    """Exact moments of a known path θ(t) of a periodic chain: the fitted path is that θ(t)."""
    model = chain(40, "periodic", terms=("b", "J"))
    t = np.linspace(0.0, 1.0, 6)
    truth = np.stack([-0.5 + 0.8 * t, 0.3 * np.sin(3 * t)], axis=1)
    targets = np.array([exact_moments(model, theta) for theta in truth])
    path, moments = maxent_path(model, targets, np.zeros(2), iterations=600)
    np.testing.assert_allclose(path, truth, atol=1e-8)
    np.testing.assert_allclose(moments, targets, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_maxent_path_of_a_lattice_is_as_good_as_a_1000_lattice_fit(seed):
    """Persistent chains on a 2x2x2 lattice of two species, exact moments by enumeration: at each
    time the fitted θ is within the error of a maximum-likelihood fit from 1000 independent
    lattices (Fisher χ², n = 1000, p = 1e-3; 30 iterations instead of 300 miss it), and the
    returned moments estimate the targets to a tenth of a standard deviation of T."""
    model = lattice((2, 2, 2), "reflecting", ("A", "B"))
    t = np.linspace(0.0, 1.0, 4)
    truth = np.stack([-0.5 + 0.6 * t, -1 + 0.5 * t, 0.8 * t, -0.3 * t, np.full(4, 0.2)], axis=1)
    targets = np.array([bf.Exact(model, theta).moments for theta in truth])
    path, moments = maxent_path(model, targets, np.zeros(5), np.random.default_rng(seed))
    limit = bf.chi2_quantile(model.n_params, P_VALUE) / 1000
    for theta, target, estimate in zip(path, targets, moments, strict=True):
        exact = bf.Exact(model, theta)
        delta = np.linalg.solve(exact.covariance, exact.moments - target)  # δθ to first order
        assert delta @ exact.covariance @ delta < limit
        sd = np.sqrt(np.diag(exact.covariance))
        assert np.all(np.abs(estimate - target) < 0.1 * sd), (estimate - target) / sd


def test_bad_arguments_raise():
    model, data = lattice_rbm((3,), ("A",), ("X",)), np.zeros((4, 3), np.int8)
    with pytest.raises(ValueError, match="method"):
        fit(model, data, np.zeros(3), method="newton")
    with pytest.raises(ValueError, match="exact"):
        fit(model, data, np.zeros(3), asleep="exact")
    with pytest.raises(ValueError, match="rng"):
        fit(model, data, np.zeros(3), asleep="pcd")
    with pytest.raises(ValueError, match="data"):
        fit(model, np.zeros((4, 5), np.int8), np.zeros(3), asleep="pcd")
    with pytest.raises(ValueError, match="fully visible"):
        maxent_path(model, np.zeros((2, 3)), np.zeros(3))
    visible = lattice((3,), "reflecting", ("A",))
    with pytest.raises(ValueError, match=r"targets must be \(n_times, 2\)"):
        maxent_path(visible, np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="asleep"):
        maxent_path(visible, np.zeros((2, 2)), np.zeros(2), asleep="cd")
    with pytest.raises(ValueError, match="rng"):
        maxent_path(visible, np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="decay > 0"):
        maxent_path(visible, np.zeros((2, 2)), np.zeros(2), np.random.default_rng(0), decay=0)
    with pytest.raises(ValueError, match="exact sampling"):
        sample_initial(model, np.zeros(3), 3, np.random.default_rng(0), method="exact")
