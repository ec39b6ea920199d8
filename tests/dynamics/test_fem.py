"""Q3 C1 Hermite elements (eq. 34): exact polynomials, finite differences, h⁴ convergence."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import polynomial as P

from dbdflow.dynamics import HermiteGrid


def poly_value(c, x):
    """Σ_p c[p] Π_a x_a^{p_a} for a coefficient tensor c of shape (4,)*d."""
    out = np.zeros(len(x))
    for p in itertools.product(range(c.shape[0]), repeat=c.ndim):
        out += c[p] * np.prod(x ** np.array(p), axis=1)
    return out


def poly_derivative(c, axes):
    """Coefficient tensor of ∂^{|axes|} f / Π ∂x_a (kept at shape (4,)*d)."""
    for a in axes:
        c = P.polyder(c, axis=a)
        c = np.concatenate([c, np.zeros_like(np.take(c, [0], axis=a))], axis=a)
    return c


def poly_vertex_data(c, d):
    """HermiteGrid.interpolate callable for the polynomial: value and all mixed derivatives."""
    subsets = [[a for a in range(d) if s >> a & 1] for s in range(1 << d)]
    return lambda x: np.stack([poly_value(poly_derivative(c, s), x) for s in subsets], axis=1)


@st.composite
def grids(draw, max_cells=3):
    d = draw(st.integers(1, 3))
    lower = np.array([draw(st.floats(-2, 2)) for _ in range(d)])
    width = np.array([draw(st.floats(0.3, 3)) for _ in range(d)])
    cells = [draw(st.integers(1, max_cells)) for _ in range(d)]
    return HermiteGrid(lower, lower + width, cells)


@settings(max_examples=30, deadline=None)
@given(grid=grids(), seed=st.integers(0, 2**32 - 1))
def test_reproduces_every_polynomial_of_degree_3_per_axis(grid, seed):
    """Interpolating a tensor cubic's values and mixed derivatives reproduces it exactly,
    inside the box and (the boundary cell's polynomial continued) outside it."""
    rng = np.random.default_rng(seed)
    d = grid.d
    c = rng.normal(size=(4,) * d)
    u = grid.interpolate(poly_vertex_data(c, d))
    span = grid.upper - grid.lower
    x = rng.uniform(grid.lower - 0.3 * span, grid.upper + 0.3 * span, (40, d))
    exact = poly_value(c, x)
    exact_grad = np.stack([poly_value(poly_derivative(c, [a]), x) for a in range(d)], axis=1)
    scale = 1 + np.abs(exact).max() + np.abs(exact_grad).max()
    assert np.allclose(grid.evaluate(u, x), exact, rtol=0, atol=1e-10 * scale)
    assert np.allclose(grid.gradient(u, x), exact_grad, rtol=0, atol=1e-10 * scale)
    idx, val = grid.basis(x)
    assert idx.shape == val.shape == (40, 4**d)
    assert np.allclose((val * u[idx]).sum(axis=1), exact, rtol=0, atol=1e-10 * scale)
    idx2, val2, dval = grid.basis_gradient(x)
    assert np.array_equal(idx, idx2) and np.array_equal(val, val2)
    assert np.allclose((dval * u[idx][:, :, None]).sum(axis=1), exact_grad, atol=1e-10 * scale)


def test_coefficient_layout_is_vertex_major_value_then_mixed_derivatives():
    grid = HermiteGrid([0.0, -1.0], [1.5, 2.0], [3, 2])
    rng = np.random.default_rng(1)
    u = rng.normal(size=grid.n_coeffs)
    per_vertex = u.reshape(grid.n_vertices, 4)
    verts = grid.vertices()
    assert grid.n_vertices == 4 * 3 and grid.n_coeffs == 48
    assert np.allclose(verts[1], [0.0, 0.5]) and np.allclose(verts[3], [0.5, -1.0])  # C order
    assert np.allclose(grid.evaluate(u, verts), per_vertex[:, 0], atol=1e-12)
    assert np.allclose(grid.gradient(u, verts), per_vertex[:, [1, 2]], atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_c1_across_cell_faces(d):
    """Value and gradient agree on both sides of every interior face (random coefficients).

    The two sides are different cubics, so at a distance ε from the face they differ by at most
    ε·(jump-free Taylor terms) ≤ 2ε max|∇²F|; a C0-only or mis-scaled element jumps by O(|u|/Δ).
    """
    rng = np.random.default_rng(d)
    grid = HermiteGrid(rng.uniform(-1, 0, d), rng.uniform(1, 3, d), [3] * d)
    u = rng.normal(size=grid.n_coeffs)
    eps = 1e-9 * grid.spacing.min()
    tol = 1e-5 * np.abs(u).max() / grid.spacing.min() ** 2
    for a in range(d):
        for i in range(1, 3):
            x = rng.uniform(grid.lower, grid.upper, (20, d))
            x[:, a] = grid.lower[a] + i * grid.spacing[a]
            lo, hi = x.copy(), x.copy()
            lo[:, a] -= eps
            hi[:, a] += eps
            assert np.abs(grid.evaluate(u, hi) - grid.evaluate(u, lo)).max() < tol
            assert np.abs(grid.gradient(u, hi) - grid.gradient(u, lo)).max() < tol
            # the probe straddles two cells: the basis indices differ across the face
            assert not np.array_equal(grid.basis(lo)[0], grid.basis(hi)[0])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_gradient_matches_finite_differences_on_a_non_unit_grid(d):
    """∂F/∂x in physical units: cells of width 0.37 and 2.9 make a missing 1/Δ obvious."""
    rng = np.random.default_rng(10 + d)
    widths = np.array([0.37, 2.9, 1.3])[:d]
    grid = HermiteGrid(-widths, 2 * widths, 3)
    u = rng.normal(size=grid.n_coeffs)
    x = rng.uniform(grid.lower - 0.2, grid.upper + 0.2, (50, d))
    grad = grid.gradient(u, x)
    for a in range(d):
        step = np.zeros(d)
        step[a] = 1e-6 * grid.spacing[a]
        fd = (grid.evaluate(u, x + step) - grid.evaluate(u, x - step)) / (2 * step[a])
        # central differences: O(step² F''') truncation plus O(1e-16 |F| / step) rounding
        assert np.allclose(grad[:, a], fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
        idx, _, dval = grid.basis_gradient(x)
        assert np.allclose((dval[:, :, a] * u[idx]).sum(axis=1), grad[:, a], atol=1e-12)


def smooth(x):
    """f = Π_a sin(1.3 x_a + 0.4 a); returns value and mixed derivatives as interpolate wants."""
    d = x.shape[1]
    g = np.sin(1.3 * x + 0.4 * np.arange(d))
    dg = 1.3 * np.cos(1.3 * x + 0.4 * np.arange(d))
    return np.stack(
        [np.prod(np.where([(s >> a) & 1 for a in range(d)], dg, g), axis=1) for s in range(1 << d)],
        axis=1,
    )


@pytest.mark.parametrize(("d", "cells"), [(1, 8), (2, 6), (3, 4)])
def test_interpolation_converges_at_fourth_order(d, cells):
    """max |f − I_h f| ∝ h⁴ and max |∇f − ∇I_h f| ∝ h³ for smooth f (Hermite cubic theory)."""
    rng = np.random.default_rng(20 + d)
    x = rng.uniform(-1, 1, (2000, d))
    errors = []
    for n in (cells, 2 * cells):
        grid = HermiteGrid([-1.0] * d, [1.0] * d, n)
        u = grid.interpolate(smooth)
        exact = smooth(x)
        errors.append(
            (
                np.abs(grid.evaluate(u, x) - exact[:, 0]).max(),
                np.abs(grid.gradient(u, x) - exact[:, [1 << a for a in range(d)]]).max(),
            )
        )
    value_order, gradient_order = np.log2(np.array(errors[0]) / np.array(errors[1]))
    assert 3.6 < value_order < 4.6
    assert 2.6 < gradient_order < 3.6


def test_outside_points_are_marked_and_extrapolated_smoothly():
    grid = HermiteGrid([0.0, 0.0], [1.0, 2.0], [2, 2])
    x = np.array([[0.5, 1.0], [1.0, 2.0], [-1e-9, 1.0], [0.5, 2.5], [np.nan, 1.0]])
    assert grid.outside(x).tolist() == [False, False, True, True, True]
    u = np.random.default_rng(3).normal(size=grid.n_coeffs)
    # continuing the boundary cell: F is C1 through the box's edge as well
    edge = np.array([[1.0, 0.7]])
    step = np.array([[1e-7, 0.0]])
    assert abs(grid.evaluate(u, edge + step) - grid.evaluate(u, edge - step))[0] < 1e-5
    assert np.isnan(grid.evaluate(u, x[-1:]))[0]


@pytest.mark.parametrize(
    ("lower", "upper", "n_cells"),
    [([0.0], [0.0], 2), ([0.0, 1.0], [1.0], 2), ([0.0], [1.0], 0), ([0.0], [1.0], 1.5)],
)
def test_bad_grids_raise(lower, upper, n_cells):
    with pytest.raises(ValueError, match=r"lower|n_cells"):
        HermiteGrid(lower, upper, n_cells)


def test_bad_shapes_raise():
    grid = HermiteGrid([0.0, 0.0], [1.0, 1.0], 2)
    with pytest.raises(ValueError, match="coefficients u"):
        grid.evaluate(np.zeros(3), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="points x"):
        grid.evaluate(np.zeros(grid.n_coeffs), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="f must return"):
        grid.interpolate(lambda x: x)


def test_four_dimensional_grid_reproduces_a_tensor_cubic():
    """Any d works (the kernels' generic path beyond the unrolled d ≤ 3)."""
    rng = np.random.default_rng(4)
    grid = HermiteGrid([-1.0, -0.5, 0.0, -2.0], [1.0, 1.0, 2.0, 1.0], [2, 1, 2, 3])
    c = rng.normal(size=(4,) * 4)
    u = grid.interpolate(poly_vertex_data(c, 4))
    x = rng.uniform(-1.5, 1.5, (30, 4))
    exact_grad = np.stack([poly_value(poly_derivative(c, [a]), x) for a in range(4)], axis=1)
    assert np.allclose(grid.evaluate(u, x), poly_value(c, x), rtol=0, atol=1e-10)
    assert np.allclose(grid.gradient(u, x), exact_grad, rtol=0, atol=1e-10)
