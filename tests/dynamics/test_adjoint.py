"""Exact discrete adjoint (eqs. 30-33, 41) against finite differences of the discrete objective."""

import numpy as np
import pytest

from dbdflow.dynamics import DynamicsModel, HermiteGrid, gradient, quadrature_weights, solve
from dbdflow.dynamics.adjoint import SparseGradient
from dbdflow.dynamics.ode import cache_line

N_STEPS, DT = 10, 0.1
MIX = np.array([1.0, 0.5, -0.3, 0.2, 0.7])


def mixed_model():
    """K = 5: d = 3, 2, 1 grids; F_0/F_4 and F_1/F_3 share coordinates and geometry (one basis
    evaluation per group); θ_4 is no function's argument; F_1 reads its coordinates reversed."""
    g3 = HermiteGrid([-2.0, -1.5, -2.0], [2.0, 2.0, 1.7], [2, 3, 2])
    g2 = HermiteGrid([-1.0, -2.0], [2.0, 2.0], [3, 2])
    g1 = HermiteGrid([-3.0], [3.0], [4])
    return DynamicsModel([g3, g2, g1, g2, g3], [(0, 1, 2), (3, 1), (2,), (3, 1), (0, 1, 2)])


def uniform_model(d):
    """K = 5, every grid d-dimensional (the kernels' cell-cache path; ``mixed_model`` takes the
    generic one): two geometries, F_0/F_3/F_4 in one group, F_1 and F_2 share a geometry but not
    their coordinates, F_2 reads them in reversed order."""
    ga = HermiteGrid(np.linspace(-2.0, -1.5, d), np.linspace(2.0, 1.7, d), [2, 3, 2][:d])
    gb = HermiteGrid(np.full(d, -2.5), np.full(d, 2.5), [3, 2, 2][:d])
    a, b = (0, 1, 2)[:d], (3, 1, 0)[:d]
    return DynamicsModel([ga, gb, gb, ga, ga], [a, b, b[::-1], a, a])


MODELS = {"mixed": mixed_model, **{f"d{d}": lambda d=d: uniform_model(d) for d in (1, 2, 3)}}


def objective(theta, c, weights, l2, theta_bar):
    """S = Σ_n w_n [ℓ_n(θ_n) + λ_r|θ_n − θ̄_n|²] with ℓ_n = Σ_k c_nk θ_k² + sin(MIX·θ), and the
    source densities ∂ℓ_n/∂θ_n (what μ̃ − μ is for the KL objective)."""
    ell = (c * theta**2).sum(-1) + np.sin(theta @ MIX)
    value = (weights * ell).sum() + l2 * (weights[:, None] * (theta - theta_bar) ** 2).sum()
    dmu = 2 * c * theta + np.cos(theta @ MIX)[..., None] * MIX
    return value, dmu


def central_differences(f, x, eps):
    out = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = eps
        out[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


@pytest.mark.parametrize(
    ("scheme", "substeps"), [("euler", 1), ("euler", 5), ("rk4", 1), ("rk4", 3)]
)
@pytest.mark.parametrize(
    ("start", "end", "truncate"), [(0, N_STEPS, False), (3, 8, False), (3, 8, True)]
)
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_adjoint_gradient_equals_finite_differences(kind, scheme, substeps, start, end, truncate):
    """dS/du and dS/dθ(t_stop) match central differences of the discrete S to 1e-6 (relative
    to the gradient's norm). Windows: forward to the window end, weights on the window; stop = 0
    is the exact windowed gradient, stop = window start the eq. 41 form (θ(τ) held fixed)."""
    rng = np.random.default_rng([substeps, start, truncate])
    model = MODELS[kind]()
    u = 0.5 * rng.normal(size=model.n_coeffs)
    theta0 = rng.uniform(-1, 1, (3, model.n_params))
    c = rng.uniform(0.5, 1.5, (end + 1, model.n_params))
    theta_bar = rng.normal(size=(3, end + 1, model.n_params))
    weights = quadrature_weights(end + 1, DT, start, end)
    l2 = 0.3
    stop = start if truncate else 0

    traj = solve(model, u, theta0, end, DT, scheme=scheme, substeps=substeps)
    _, dmu = objective(traj.theta, c, weights, l2, theta_bar)
    dmu[:, weights == 0] = np.nan  # e.g. moments never computed outside the window
    grad_u, grad_theta = gradient(model, traj, dmu, weights, l2=l2, theta_bar=theta_bar, stop=stop)

    base = traj.theta[:, stop]

    def s_of(uu, th):
        run = solve(model, uu, th, end - stop, DT, scheme=scheme, substeps=substeps)
        return objective(run.theta, c[stop:], weights[stop:], l2, theta_bar[:, stop:])[0]

    fd_u = central_differences(lambda uu: s_of(uu, base), u, 1e-6)
    fd_theta = central_differences(lambda th: s_of(u, th.reshape(base.shape)), base.ravel(), 1e-6)
    assert np.linalg.norm(grad_u - fd_u) <= 1e-6 * np.linalg.norm(fd_u)
    assert np.linalg.norm(grad_theta.ravel() - fd_theta) <= 1e-6 * np.linalg.norm(fd_theta)
    # coefficients whose basis functions vanish at every stage point get exactly zero gradient
    touched = np.zeros(model.n_coeffs, dtype=bool)
    for grid, cs, sl in zip(model.grids, model.coords, model.slices, strict=True):
        points = traj.stages[:, stop * substeps :, :, list(cs)].reshape(-1, grid.d)
        touched[sl][np.unique(grid.basis(points)[0])] = True
    assert np.all(grad_u[~touched] == 0) and touched.mean() < 0.9


def test_discrete_gradient_converges_to_the_continuous_one():
    """F(θ; a) = −aθ, S = ∫_0^T θ² dt with θ = θ_0 e^{−at}: dS/da = Σ_l dS/du_l ∂u_l/∂a must
    approach θ_0²[T e^{−2aT}/a − (1 − e^{−2aT})/(2a²)] as O(Δt²) (trapezoid weights, RK4)."""
    a, t_end, theta0 = 0.7, 2.0, 1.3
    grid = HermiteGrid([-0.5], [2.0], [3])
    model = DynamicsModel([grid], [(0,)])
    unit = model.interpolate([lambda x: np.stack([-x[:, 0], -np.ones(len(x))], axis=1)])
    decay = np.exp(-2 * a * t_end)
    exact = theta0**2 * (t_end * decay / a - (1 - decay) / (2 * a**2))
    errors = []
    for n_steps in (20, 40):
        dt = t_end / n_steps
        traj = solve(model, a * unit, [[theta0]], n_steps, dt, scheme="rk4")
        weights = quadrature_weights(n_steps + 1, dt)
        grad_u, _ = gradient(model, traj, 2 * traj.theta, weights)
        errors.append(abs(grad_u @ unit - exact))
    assert errors[0] < 1e-2 * abs(exact)
    assert 3.5 < errors[0] / errors[1] < 4.5


def test_quadrature_weights():
    w = quadrature_weights(11, 0.1, 2, 6)
    assert np.allclose(w, [0, 0, 0.05, 0.1, 0.1, 0.1, 0.05, 0, 0, 0, 0])
    assert np.allclose(quadrature_weights(5, 0.2, 1, 3, rule="uniform"), [0, 0.2, 0.2, 0.2, 0])
    assert np.allclose(quadrature_weights(4, 0.2, 2, 2), [0, 0, 0.2, 0])
    with pytest.raises(ValueError, match="start"):
        quadrature_weights(5, 0.1, 3, 2)
    with pytest.raises(ValueError, match="rule"):
        quadrature_weights(5, 0.1, rule="simpson")


def test_bad_inputs_raise():
    model = mixed_model()
    traj = solve(model, np.zeros(model.n_coeffs), np.zeros(5), 4, 0.1)
    weights = quadrature_weights(5, 0.1)
    with pytest.raises(ValueError, match="dmu"):
        gradient(model, traj, np.zeros((1, 4, 5)), weights)
    with pytest.raises(ValueError, match="weights"):
        gradient(model, traj, np.zeros((1, 5, 5)), weights[:-1])
    with pytest.raises(ValueError, match="stop"):
        gradient(model, traj, np.zeros((1, 5, 5)), weights, stop=5)
    other = DynamicsModel([HermiteGrid([0.0], [1.0], 1)], [(0,)])
    with pytest.raises(ValueError, match="model"):
        gradient(other, traj, np.zeros((1, 5, 5)), weights)


def test_four_dimensional_functions():
    """d = 4 grids (generic kernel path), one read in reversed coordinate order: directional
    derivatives of S = Σ_n w_n |θ_n|² match central differences."""
    rng = np.random.default_rng(7)
    g4 = HermiteGrid([-1.0, -0.5, 0.0, -2.0], [1.0, 1.0, 2.0, 1.0], [2, 1, 2, 3])
    g1 = HermiteGrid([-2.0], [2.0], [3])
    model = DynamicsModel([g4, g4, g1, g4], [(0, 1, 2, 3), (0, 1, 2, 3), (1,), (3, 2, 1, 0)])
    u = 0.1 * rng.normal(size=model.n_coeffs)
    theta0 = rng.uniform(-0.5, 0.5, (2, 4))
    weights = quadrature_weights(7, 0.1)

    def s_of(uu):
        theta = solve(model, uu, theta0, 6, 0.1, scheme="rk4", substeps=2).theta
        return (weights[:, None] * theta**2).sum()

    traj = solve(model, u, theta0, 6, 0.1, scheme="rk4", substeps=2)
    grad_u, _ = gradient(model, traj, 2 * traj.theta, weights)
    for _ in range(3):
        v = rng.normal(size=u.size)
        fd = (s_of(u + 1e-6 * v) - s_of(u - 1e-6 * v)) / 2e-6
        assert abs(grad_u @ v - fd) <= 1e-6 * abs(fd)


@pytest.mark.parametrize(("d", "n_cells"), [(1, 3000), (2, 60), (3, 14)])
def test_cell_cache_agrees_with_the_generic_kernels_when_lines_conflict(d, n_cells):
    """The cell-cache path (every grid d ≤ 3) and the generic path (rows of u, forced with a
    rank-4 key) agree to rounding, forward and adjoint, when visited cells share cache lines
    (lines are refilled, and their accumulated dS/du added to the gradient early)."""
    rng = np.random.default_rng(d)
    amp, freq, phase = rng.normal(size=(3, d, d))

    def smooth(k):  # Σ_a A sin(ω x_a + φ): value and first derivatives (mixed ones vanish)
        def f(x):
            out = np.zeros((x.shape[0], 1 << d))
            out[:, 0] = (amp[k] * np.sin(freq[k] * x + phase[k])).sum(1)
            for a in range(d):
                out[:, 1 << a] = amp[k, a] * freq[k, a] * np.cos(freq[k, a] * x[:, a] + phase[k, a])
            return out

        return f

    grid = HermiteGrid(np.full(d, -3.0), np.full(d, 3.0), n_cells)
    model = DynamicsModel([grid] * d, [tuple(range(d))] * d)
    generic = DynamicsModel([grid] * d, [tuple(range(d))] * d)
    generic.rank_key = np.zeros((0,) * 4)
    u = model.interpolate([smooth(k) for k in range(d)])
    theta0 = rng.uniform(-2.5, 2.5, (300, d))
    weights = quadrature_weights(9, 0.05, 2, 8)
    runs = [solve(m, u, theta0, 8, 0.05, scheme="rk4", substeps=2) for m in (model, generic)]
    for name in ("theta", "stages"):
        np.testing.assert_allclose(getattr(runs[0], name), getattr(runs[1], name), 1e-12, 1e-12)
    np.testing.assert_array_equal(runs[0].outside, runs[1].outside)
    keys = np.unique(grid.basis(runs[0].stages.reshape(-1, d))[0][:, 0] >> d)
    lines = [cache_line(key) for key in keys]
    assert len(set(lines)) < keys.size  # two visited cells share a line
    out = [SparseGradient(model.n_coeffs) for _ in runs]
    grads = [
        gradient(m, run, np.sin(run.theta), weights, stop=2, out=o)
        for m, run, o in zip((model, generic), runs, out, strict=True)
    ]
    scale = np.abs(grads[1][0]).max()
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-14)
    assert set(out[0].nonzero.tolist()) == set(out[1].nonzero.tolist())


@pytest.mark.parametrize("kind", ["mixed", "d3"])
def test_stage_points_kept_from_the_window_start_suffice(kind):
    """solve(keep_from=k) keeps the stage points of steps k.. (the same numbers), θ is unchanged,
    and the adjoint stopping at k gives the same gradient; stopping earlier is an error."""
    rng = np.random.default_rng(3)
    model = MODELS[kind]()
    u = 0.5 * rng.normal(size=model.n_coeffs)
    theta0 = rng.uniform(-1, 1, (3, model.n_params))
    full = solve(model, u, theta0, 8, DT, scheme="rk4", substeps=2)
    kept = solve(model, u, theta0, 8, DT, scheme="rk4", substeps=2, keep_from=3)
    assert np.array_equal(kept.theta, full.theta) and kept.stages.shape[1] == 10
    assert np.array_equal(kept.stages, full.stages[:, 6:])
    weights = quadrature_weights(9, DT, 3, 8)
    dmu = np.cos(full.theta)
    grads = [gradient(model, t, dmu, weights, stop=3) for t in (full, kept)]
    assert np.array_equal(grads[0][0], grads[1][0]) and np.array_equal(grads[0][1], grads[1][1])
    with pytest.raises(ValueError, match="keeps stage points from step 3"):
        gradient(model, kept, dmu, weights, stop=2)
    with pytest.raises(ValueError, match="keep_from"):
        solve(model, u, theta0, 8, DT, keep_from=9)
