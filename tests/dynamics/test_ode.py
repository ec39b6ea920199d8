"""Forward solvers (eqs. 26-27) against exact discrete solutions and analytic ODE solutions."""

import numpy as np
import pytest

from dbdflow.dynamics import SCHEMES, DynamicsModel, HermiteGrid, solve


def linear_data(row, coords):
    """interpolate callable for F(x) = Σ_c row[coords[c]] x_c (degree 1: represented exactly)."""
    d = len(coords)
    coef = np.array([row[c] for c in coords])

    def f(x):
        out = np.zeros((len(x), 1 << d))
        out[:, 0] = x @ coef
        for a in range(d):
            out[:, 1 << a] = coef[a]
        return out

    return f


def linear_model(a_matrix):
    """F_0 over (0, 1, 2), F_1 over (2, 1) (reversed order), F_2 over (2,): θ' = Aθ with A zero
    where F_k does not depend on θ_l."""
    coords = [(0, 1, 2), (2, 1), (2,)]
    grids = [
        HermiteGrid([-2.0, -1.5, -3.0], [2.5, 2.0, 3.0], [2, 3, 2]),
        HermiteGrid([-3.0, -1.5], [3.0, 2.0], [3, 2]),
        HermiteGrid([-3.0], [3.0], [4]),
    ]
    model = DynamicsModel(grids, coords)
    u = model.interpolate([linear_data(a_matrix[k], cs) for k, cs in enumerate(coords)])
    return model, u


A = np.array([[-0.8, 0.3, 0.2], [0.0, -0.5, 0.4], [0.0, 0.0, -0.3]])


@pytest.mark.parametrize(
    ("scheme", "substeps"), [("euler", 1), ("euler", 4), ("rk4", 1), ("rk4", 3)]
)
def test_linear_system_matches_the_exact_discrete_solution(scheme, substeps):
    """For θ' = Aθ one step is θ ← R(hA)θ with R(Z) = I + Z (Euler) or Σ_{j≤4} Z^j/j! (RK4)."""
    model, u = linear_model(A)
    rng = np.random.default_rng(0)
    theta0 = rng.uniform(-1, 1, (5, 3))
    dt, n_steps = 0.1, 12
    h = dt / substeps
    z = h * A
    terms = [np.eye(3), z] + (
        [z @ z / 2, z @ z @ z / 6, z @ z @ z @ z / 24] if scheme == "rk4" else []
    )
    one_data_step = np.linalg.matrix_power(sum(terms), substeps)
    traj = solve(model, u, theta0, n_steps, dt, scheme=scheme, substeps=substeps)
    expected = theta0.copy()
    assert traj.theta.shape == (5, n_steps + 1, 3)
    for n in range(n_steps + 1):
        assert np.allclose(traj.theta[:, n], expected, rtol=0, atol=1e-13)
        expected = expected @ one_data_step.T
    assert traj.stages.shape == (5, n_steps * substeps, 4 if scheme == "rk4" else 1, 3)
    assert np.array_equal(traj.stages[:, ::substeps, 0], traj.theta[:, :-1])


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_schemes_are_explicit_and_use_only_the_previous_stage(scheme):
    """The forward kernel forms Y_i = θ_m + h A_{i,i−1} K_{i−1}: A must vanish elsewhere, and the
    weights b sum to 1 (consistency)."""
    a, b = SCHEMES[scheme]
    assert a.shape == (b.size, b.size)
    assert not np.triu(a).any() and not np.tril(a, -2).any()
    assert np.isclose(b.sum(), 1.0)


def logistic_data(x):
    """θ' = θ(1 − θ) (degree 2: exact), value and derivative."""
    return np.stack([x[:, 0] * (1 - x[:, 0]), 1 - 2 * x[:, 0]], axis=1)


@pytest.mark.parametrize(("scheme", "order"), [("euler", 1), ("rk4", 4)])
def test_logistic_equation_converges_at_the_scheme_order(scheme, order):
    """θ(t) = 1/(1 + (1/θ_0 − 1)e^{−t}); halving h divides the error at t = 2 by 2^order."""
    grid = HermiteGrid([-0.5], [1.5], [4])
    model = DynamicsModel([grid], [(0,)])
    u = model.interpolate([logistic_data])
    theta0 = np.array([[0.1], [0.5], [0.9]])
    exact = 1 / (1 + (1 / theta0[:, 0] - 1) * np.exp(-2.0))
    errors = [
        np.abs(solve(model, u, theta0, 4, 0.5, scheme=scheme, substeps=s).theta[:, -1, 0] - exact)
        for s in (8, 16, 32)
    ]
    orders = np.log2(errors[1] / errors[2])
    assert np.all(np.abs(orders - order) < 0.15)
    assert np.all(errors[1] < errors[0])


def test_excursions_outside_the_grid_are_counted_per_function_and_ic():
    """θ_0' = 1 on [0, 1]: Euler stage points θ_0(0) + m/8, m = 0..9, leave the box for m ≥ 5
    (from 0.5) and lie below it for m < 4 (from −0.5); F_1's grid is wide enough for both."""
    grid = HermiteGrid([0.0], [1.0], [2])
    wide = HermiteGrid([-10.0], [10.0], [2])
    model = DynamicsModel([grid, wide], [(0,), (0,)])
    ones = lambda x: np.stack([np.ones(len(x)), np.zeros(len(x))], axis=1)  # noqa: E731
    u = model.interpolate([ones, ones])
    traj = solve(model, u, np.array([[0.5, 0.0], [-0.5, 0.0]]), 10, 0.125, scheme="euler")
    assert traj.outside.tolist() == [[5, 0], [4, 0]]
    assert np.allclose(traj.theta[0, -1], [1.75, 1.25])


def test_rhs_and_jacobian_against_the_grids_and_finite_differences():
    rng = np.random.default_rng(4)
    model, _ = linear_model(A)
    u = rng.normal(size=model.n_coeffs)
    theta = rng.uniform(-1, 1, (6, 3))
    f = model.rhs(u, theta)
    assert np.allclose(f[:, 1], model.grids[1].evaluate(u[model.slices[1]], theta[:, [2, 1]]))
    jac = model.jacobian(u, theta)
    assert np.all(jac[:, 1, 0] == 0) and np.all(jac[:, 2, :2] == 0)
    for m in range(3):
        e = np.zeros(3)
        e[m] = 1e-6
        fd = (model.rhs(u, theta + e) - model.rhs(u, theta - e)) / 2e-6
        assert np.allclose(jac[:, :, m], fd, rtol=1e-6, atol=1e-7)
    # the forward kernel evaluates the same F: one Euler step is θ + hF(θ)
    traj = solve(model, u, theta, 1, 1e-3, scheme="euler")
    assert np.allclose(traj.theta[:, 1], theta + 1e-3 * f, rtol=0, atol=1e-15)


def test_bad_inputs_raise():
    model, u = linear_model(A)
    with pytest.raises(ValueError, match="scheme"):
        solve(model, u, np.zeros(3), 2, 0.1, scheme="rk2")
    with pytest.raises(ValueError, match="substeps"):
        solve(model, u, np.zeros(3), 2, 0.1, substeps=0)
    with pytest.raises(ValueError, match="dt"):
        solve(model, u, np.zeros(3), 2, -0.1)
    with pytest.raises(ValueError, match="θ"):
        solve(model, u, np.zeros((2, 4)), 2, 0.1)
    with pytest.raises(ValueError, match="coefficients"):
        solve(model, u[:-1], np.zeros(3), 2, 0.1)
    with pytest.raises(ValueError, match="coords"):
        DynamicsModel([HermiteGrid([0.0, 0.0], [1.0, 1.0], 1)], [(0, 0)])
