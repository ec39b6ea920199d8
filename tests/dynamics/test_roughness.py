"""The roughness penalty: the exact Hessian energy of polynomials, its gradient, its null space,
and its effect in training (it fills F in where no trajectory passes)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.dynamics import DynamicsModel, HermiteGrid
from dbdflow.dynamics.adjoint import SparseGradient
from dbdflow.dynamics.roughness import Roughness, axis_matrices, model_roughness
from dbdflow.dynamics.train import Problem, Settings, TrainState, train


def polynomial(coef):
    """F(x) = Σ c_{pqr} x^p y^q z^r (p, q, r ≤ 3): callable for HermiteGrid.interpolate
    (value and mixed first derivatives per vertex) and its Hessian at points."""
    coef = np.asarray(coef).reshape(4, 4, 4)

    def mono(x, p, k):  # k-th derivative of x^p
        if k > p:
            return np.zeros_like(x)
        c = np.prod(np.arange(p, p - k, -1)) if k else 1
        return c * x ** (p - k)

    def deriv(x, kx, ky, kz):
        out = np.zeros(len(x))
        for (p, q, r), c in np.ndenumerate(coef):
            out += c * mono(x[:, 0], p, kx) * mono(x[:, 1], q, ky) * mono(x[:, 2], r, kz)
        return out

    def data(x):  # columns s = bits (x: 1, y: 2, z: 4)
        return np.stack([deriv(x, s & 1, (s >> 1) & 1, (s >> 2) & 1) for s in range(8)], axis=1)

    def hessian_sq(x):
        d = [deriv(x, *k) for k in ((2, 0, 0), (0, 2, 0), (0, 0, 2))]
        m = [deriv(x, *k) for k in ((1, 1, 0), (1, 0, 1), (0, 1, 1))]
        return sum(a * a for a in d) + 2 * sum(a * a for a in m)

    return data, hessian_sq


def gauss_mean(f, lower, upper, n=8):
    """Mean of f over the box by an n³-point Gauss–Legendre rule (independent reference)."""
    t, w = np.polynomial.legendre.leggauss(n)
    axes = [(lo + (t + 1) / 2 * (hi - lo), w / 2) for lo, hi in zip(lower, upper, strict=True)]
    pts = np.stack(np.meshgrid(*[a for a, _ in axes], indexing="ij"), -1).reshape(-1, 3)
    wts = np.einsum("i,j,k->ijk", *[b for _, b in axes]).ravel()
    return float(wts @ f(pts))


@settings(max_examples=25, deadline=None)
@given(
    coef=st.lists(st.floats(-2, 2), min_size=64, max_size=64),
    cells=st.tuples(*[st.integers(1, 4)] * 3),
    width=st.tuples(*[st.floats(0.2, 3.0)] * 3),
)
def test_energy_of_cubics_is_exact_on_any_grid(coef, cells, width):
    """Hermite elements reproduce tricubics, so R(u) is the exact mean of ‖∇²F‖²_F."""
    lower = np.array([-0.7, 0.3, -1.1])
    upper = lower + np.array(width)
    grid = HermiteGrid(lower, upper, cells)
    data, hessian_sq = polynomial(coef)
    value, _ = Roughness(grid).value_and_gradient(grid.interpolate(data))
    expected = gauss_mean(hessian_sq, lower, upper)
    assert value == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_gradient_equals_finite_differences_and_affine_functions_cost_nothing():
    grid = HermiteGrid([-1.0, 0.0], [2.0, 0.5], [3, 2])
    r = Roughness(grid)
    rng = np.random.default_rng(3)
    u, e = rng.normal(size=grid.n_coeffs), rng.normal(size=grid.n_coeffs)
    value, grad = r.value_and_gradient(u)
    h = 1e-5
    fd = (r.value_and_gradient(u + h * e)[0] - r.value_and_gradient(u - h * e)[0]) / (2 * h)
    assert grad @ e == pytest.approx(fd, rel=1e-8)
    assert value > 0
    affine = grid.interpolate(
        lambda x: np.stack(
            [
                1 + 2 * x[:, 0] - 3 * x[:, 1],
                np.full(len(x), 2.0),
                np.full(len(x), -3.0),
                0 * x[:, 0],
            ],
            axis=1,
        )
    )
    v0, g0 = r.value_and_gradient(affine)
    assert abs(v0) < 1e-12 and np.abs(g0).max() < 1e-10


@pytest.mark.parametrize("cells", [[5], [3, 4], [2, 3, 4]])
def test_work_arrays_kept_between_calls_change_no_result(cells):
    """One Roughness applied to batches of changing size and content (as in training) equals a
    fresh one every time, and a returned gradient stays as it was after later calls."""
    d = len(cells)
    grid = HermiteGrid(-np.ones(d), np.linspace(0.5, 1.5, d), cells)
    reused = Roughness(grid)
    rng = np.random.default_rng(5)
    first = None
    for rows in (3, 1, 3, 2):
        u = rng.normal(size=(rows, grid.n_coeffs))
        value, grad = reused.value_and_gradient(u)
        ref_value, ref_grad = Roughness(grid).value_and_gradient(u)
        np.testing.assert_array_equal(value, ref_value)
        np.testing.assert_array_equal(grad, ref_grad)
        if first is None:
            first, kept = grad, grad.copy()
    np.testing.assert_array_equal(first, kept)


def test_axis_matrices_integrate_monomials():
    """1D blocks against ∫ on [0, n h] of products of known Hermite interpolants of x² and x³."""
    n, h = 3, 0.7
    m, d, s = axis_matrices(n, h)
    x = np.arange(n + 1) * h
    sq = np.stack([x**2, 2 * x], 1).ravel()  # DOFs 2i + b of x²
    cube = np.stack([x**3, 3 * x**2], 1).ravel()
    length = n * h
    assert sq @ m @ cube == pytest.approx(length**6 / 6)
    assert sq @ d @ cube == pytest.approx(6 * length**4 / 4)
    assert sq @ s @ cube == pytest.approx(12 * length**2 / 2)
    assert np.allclose(m, m.T) and np.allclose(d, d.T) and np.allclose(s, s.T)


def test_model_roughness_shares_equal_grids():
    g1, g2 = HermiteGrid([0.0], [1.0], [2]), HermiteGrid([0.0], [2.0], [2])
    model = DynamicsModel([g1, g1, g2], [(0,), (1,), (2,)])
    (first, r1), (second, r2) = model_roughness(model)
    assert first == model.slices[:2] and second == model.slices[2:]
    assert r1.grid is g1 and r2.grid is g2
    # a batch is row by row the single-vector result
    u = np.random.default_rng(1).normal(size=(2, g1.n_coeffs))
    values, grads = r1.value_and_gradient(u)
    for row, value, grad in zip(u, values, grads, strict=True):
        v, g = r1.value_and_gradient(row)
        assert value == pytest.approx(v, rel=1e-14) and np.allclose(grad, g, rtol=1e-14)


def test_sparse_gradient_adds_dense_blocks():
    g = SparseGradient(6)
    g.add(2, np.array([1.0, 0.0, 3.0]))
    g.add(3, np.array([1.0, 1.0]))
    assert g.values.tolist() == [0, 0, 1, 1, 4, 0]
    assert sorted(g.nonzero.tolist()) == [2, 3, 4]
    g.clear()
    assert not g.values.any() and g.nonzero.size == 0
    with pytest.raises(ValueError, match="exceeds"):
        g.add(5, np.ones(2))


def test_smoothness_fills_in_unvisited_cells():
    """Exponential decay dθ/dt = −γθ seen only on θ ∈ [0.5, 1]: without the penalty F stays 0 on
    the unvisited half [−1, 0.5) of the grid; with it F continues as the affine law −γθ there."""
    gamma, times = 2.0, np.linspace(0.0, 0.35, 8)
    theta0 = np.array([[1.0]])

    def awake(ics, steps, theta):  # moments of a Gaussian DBD: μ = θ along the exact θ(t)
        return (theta0[ics, 0] * np.exp(-gamma * times[steps]))[:, None]

    def asleep(theta, ics, steps, rng):
        return theta

    grid = HermiteGrid([-1.0], [1.0], [8])
    model = DynamicsModel([grid], [(0,)])
    probe = np.linspace(-1.0, 0.25, 11)[:, None]
    errors = {}
    for lam in (0.0, 1e-6):
        problem = Problem(times, theta0, awake, asleep, ("theta",))
        s = Settings(steps=3000, learning_rate=0.05, smoothness=lam, scheme="rk4")
        state = train(
            problem,
            model,
            s,
            lambda k: np.random.default_rng(k),
            TrainState.fresh(np.zeros(model.n_coeffs), 1),
            progress=False,
        )
        visited = np.linspace(0.55, 0.95, 9)[:, None]  # the ends are met once (stages)
        assert np.abs(grid.evaluate(state.u, visited) + gamma * visited[:, 0]).max() < 0.1
        errors[lam] = np.abs(grid.evaluate(state.u, probe) + gamma * probe[:, 0]).max()
        assert state.log["roughness"][-1] >= 0
        if lam == 0:
            assert not any(state.log["roughness"])
    assert errors[0.0] > 1.0  # F ≈ 0 where no trajectory went: wrong by γ|θ| there
    assert errors[1e-6] < 0.02  # the affine law, continued (measured: 3e-5 to 1e-2 with lr, λ)


def test_prior_fills_in_unvisited_cells_and_only_the_correction_is_penalised():
    """dθ/dt = −γθ³ seen only on θ ∈ [0.5, 1]. With the penalty alone F continues affinely into
    [−1, 0.25] (wrong: the law is cubic); with a prior F⁰ = −γθ³ + 0.3 the learned correction
    F − F⁰ = −0.3 is affine, so its continuation gives back the cubic law there."""
    gamma, times = 2.0, np.linspace(0.0, 0.75, 16)
    theta0 = np.array([[1.0]])

    def awake(ics, steps, theta):  # θ(t) = θ0 / sqrt(1 + 2γθ0² t)
        return (1.0 / np.sqrt(1.0 + 2 * gamma * times[steps]))[:, None]

    def asleep(theta, ics, steps, rng):
        return theta

    grid = HermiteGrid([-1.0], [1.0], [8])
    model = DynamicsModel([grid], [(0,)])
    prior = model.interpolate(
        [lambda x: np.column_stack([-gamma * x[:, 0] ** 3 + 0.3, -3 * gamma * x[:, 0] ** 2])]
    )
    probe = np.linspace(-1.0, 0.25, 11)[:, None]
    errors = {}
    for name, u0 in (("none", None), ("prior", prior)):
        problem = Problem(times, theta0, awake, asleep, ("theta",))
        s = Settings(steps=3000, learning_rate=0.05, smoothness=1e-6, prior=u0)
        start = np.zeros(model.n_coeffs) if u0 is None else u0
        state = train(
            problem,
            model,
            s,
            lambda k: np.random.default_rng(k),
            TrainState.fresh(start, 1),
            progress=False,
        )
        visited = np.linspace(0.55, 0.95, 9)[:, None]
        fit = np.abs(grid.evaluate(state.u, visited) + gamma * visited[:, 0] ** 3).max()
        assert fit < (0.15 if u0 is None else 1e-3)  # the affine bias of the penalty alone
        errors[name] = np.abs(grid.evaluate(state.u, probe) + gamma * probe[:, 0] ** 3).max()
    assert errors["none"] > 1.0  # measured 2.1: the affine continuation of a cubic
    assert errors["prior"] < 1e-3  # measured 3e-6
