"""Q3 C1 finite elements: tensor products of cubic Hermite polynomials (paper §III.B, eq. 34).

A :class:`HermiteGrid` covers the box ``[lower, upper]`` of R^d with ``n_cells[a]`` equal cells of
width Δ_a = (upper_a − lower_a) / n_cells[a] along each axis a. A function on it is

    F(x; u) = Σ_l u_l f_l(x)                                                          (eq. 34)

with 2^d coefficients per vertex: for every subset s of the axes, u at (vertex v, subset s) is the
mixed derivative ∂^{|s|}F / Π_{a∈s} ∂x_a at v, in physical units of x (s = ∅ is the value). In 1D,
on a cell [x_0, x_0 + Δ] with t = (x − x_0)/Δ, the four shape functions are

    value at left  H00 = 1 − 3t² + 2t³      slope at left   Δ·H10 = Δ(t − 2t² + t³)
    value at right H01 = 3t² − 2t³          slope at right  Δ·H11 = Δ(t³ − t²)

(the Δ makes the slope coefficients derivatives in x, and d/dx = Δ⁻¹ d/dt), and in d dimensions a
basis function is the product of one of these per axis, so each cell carries 4^d of them. Values and
first derivatives are continuous across faces (C1), and every polynomial of degree ≤ 3 in each
coordinate is reproduced exactly.

Coefficient layout (vertex-major): vertices are numbered in C order over the (n_cells[a] + 1)
lattice (last axis fastest); coefficient ``vertex * 2**d + s`` where bit a of s is set when the
derivative includes ∂/∂x_a. So ``u.reshape(n_vertices, 2**d)[:, 0]`` are the vertex values.

The 4^d basis functions of a cell are ordered by j = Σ_a q_a 4^a with the per-axis index
q_a = 2e + b (e = 0/1: lower/upper vertex along a; b = 0/1: value/slope), first axis fastest.

Outside the box the boundary cell's polynomial is continued (extrapolation) and the point is an
*excursion*: :meth:`HermiteGrid.outside` marks such points, and the ODE solver counts them per
function and initial condition (``Trajectory.outside``).
"""

from __future__ import annotations

import numba
import numpy as np


class HermiteGrid:
    """Cubic Hermite (Q3, C1) elements on a rectilinear box grid of any dimension d ≥ 1.

    Attributes
    ----------
    d : int, number of coordinates
    lower, upper, spacing : float arrays (d,), box corners and cell widths Δ_a
    n_cells : int64 array (d,)
    n_vertices : int, Π (n_cells[a] + 1)
    n_coeffs : int, 2^d · n_vertices (length of the coefficient vector u)
    n_basis : int, 4^d non-zero basis functions per point
    """

    def __init__(self, lower, upper, n_cells):
        lower = np.atleast_1d(np.asarray(lower, dtype=np.float64))
        upper = np.atleast_1d(np.asarray(upper, dtype=np.float64))
        cells = np.atleast_1d(np.asarray(n_cells))
        if lower.ndim != 1 or lower.shape != upper.shape or lower.size < 1:
            raise ValueError(
                f"lower and upper must be 1-d sequences of equal length >= 1, got {lower.shape} "
                f"and {upper.shape}"
            )
        if cells.size == 1 and lower.size > 1:
            cells = np.full(lower.size, cells.item())
        if cells.shape != lower.shape or not np.issubdtype(cells.dtype, np.integer):
            raise ValueError(
                f"n_cells must be an integer or {lower.size} integers, got {n_cells!r}"
            )
        if np.any(cells < 1):
            raise ValueError(f"n_cells must be >= 1 along every axis, got {cells.tolist()}")
        if not (
            np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower < upper)
        ):
            raise ValueError(
                f"need finite lower < upper on every axis, got {lower.tolist()}, {upper.tolist()}"
            )
        self.d = int(lower.size)
        self.lower, self.upper = lower, upper
        self.n_cells = cells.astype(np.int64)
        self.spacing = (upper - lower) / self.n_cells
        n_vert = self.n_cells + 1
        self.n_vertices = int(np.prod(n_vert))
        self.n_coeffs = self.n_vertices << self.d
        self.n_basis = 4**self.d
        # vertex strides (C order) and the cell-independent offsets of a cell's 4^d coefficients
        self.vertex_stride = np.concatenate([np.cumprod(n_vert[::-1])[::-1][1:], [1]]).astype(
            np.int64
        )
        q = (np.arange(self.n_basis)[:, None] >> (2 * np.arange(self.d))) & 3
        self.local_offset = (((q >> 1) @ self.vertex_stride) << self.d) + (
            (q & 1) << np.arange(self.d)
        ).sum(axis=1)
        for name in ("lower", "upper", "spacing", "n_cells", "vertex_stride", "local_offset"):
            getattr(self, name).setflags(write=False)

    def __repr__(self) -> str:
        return (
            f"HermiteGrid(lower={self.lower.tolist()}, upper={self.upper.tolist()}, "
            f"n_cells={self.n_cells.tolist()})"
        )

    def key(self) -> tuple:
        """Hashable identity of the geometry (grids with equal keys share basis evaluations)."""
        return (
            tuple(self.lower.tolist()),
            tuple(self.upper.tolist()),
            tuple(self.n_cells.tolist()),
        )

    def vertices(self) -> np.ndarray:
        """float array (n_vertices, d): vertex coordinates in coefficient order."""
        axes = [
            lo + h * np.arange(n + 1)
            for lo, h, n in zip(self.lower, self.spacing, self.n_cells, strict=True)
        ]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def interpolate(self, f) -> np.ndarray:
        """Coefficients u of the Hermite interpolant of a function.

        ``f(x)`` gets the vertices, float (n_vertices, d), and returns (n_vertices, 2^d): the value
        and the mixed first derivatives, column s holding ∂^{|s|}f/Π_{a∈s}∂x_a (bit a of s is
        axis a).
        """
        data = np.asarray(f(self.vertices()), dtype=np.float64)
        if data.shape != (self.n_vertices, 1 << self.d):
            raise ValueError(
                f"f must return shape ({self.n_vertices}, {1 << self.d}) (value and mixed "
                f"derivatives per vertex), got {data.shape}"
            )
        return np.ascontiguousarray(data.ravel())

    def _points(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.d == 1 and x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"points x must have shape (n_points, {self.d}), got {x.shape}")
        return np.ascontiguousarray(x)

    def _coeffs(self, u) -> np.ndarray:
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape != (self.n_coeffs,):
            raise ValueError(f"coefficients u must have shape ({self.n_coeffs},), got {u.shape}")
        return u

    def kernel_arrays(self):
        """Geometry as (1, d) rows, the layout the kernels share with grouped ODE models."""
        rows = (self.lower, self.upper, 1.0 / self.spacing, self.spacing)
        ints = (self.n_cells, self.vertex_stride, self.local_offset[::4])
        return (
            *(r[None, :].copy() for r in rows),
            *(i[None, :].copy() for i in ints),
            np.array([self.local_offset[2]], dtype=np.int64),
        )

    def outside(self, x) -> np.ndarray:
        """bool (n_points,): points outside the closed box (evaluated by extrapolation)."""
        x = self._points(x)
        return ~np.all((x >= self.lower) & (x <= self.upper), axis=1)

    def basis(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(indices int64, values float), each (n_points, 4^d): F(x) = Σ_j values·u[indices]."""
        args = (*self.kernel_arrays(), self.local_offset)
        idx, val, _ = _basis_many(self._points(x), *args, False)
        return idx, val

    def basis_gradient(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices, values, gradients (n_points, 4^d, d)) with ∂F/∂x_a = Σ_j gradients[..., a]
        · u[indices]: the mixed derivatives ∂²F/∂u_l∂x_a that the adjoint needs.
        """
        return _basis_many(self._points(x), *self.kernel_arrays(), self.local_offset, True)

    def evaluate(self, u, x) -> np.ndarray:
        """F(x; u) at every point, float (n_points,)."""
        return _evaluate_many(self._coeffs(u), self._points(x), *self.kernel_arrays(), False)[:, 0]

    def gradient(self, u, x) -> np.ndarray:
        """∂F/∂x at every point, float (n_points, d)."""
        return _evaluate_many(self._coeffs(u), self._points(x), *self.kernel_arrays(), True)[:, 1:]


# Kernels. Geometry arrays are (n_groups, d_max) rows and g selects one; a cell's 4^d coefficients
# are read as 4^(d-1) "rows" along axis 0: row r starts at ``rows[g, r]`` (relative to the cell's
# first coefficient) and holds q_0 = 0..3 at offsets 0, 1, l0, l0 + 1 (l0 = ``stride0[g]``). The
# basis factorises as f_j = v_0[q_0] · w[r] with w the tensor product over axes 1..d−1, so values,
# gradients and the u-scatter of the adjoint are sums over rows of short explicit dot products.


@numba.njit(cache=True, inline="always")
def hermite_axis(xa, lower, upper, inv_h, h, n_cells):
    """One axis of a point: (cell c, outside?, t, the four shape values H00, ΔH10, H01, ΔH11 at t).

    Points outside [lower, upper], NaN or infinite fall into the nearest boundary cell, whose
    polynomial is continued (t outside [0, 1])."""
    out = not (lower <= xa <= upper)
    r = (xa - lower) * inv_h
    if not (r >= 0.0):
        c = 0
    elif r >= n_cells:
        c = n_cells - 1
    else:
        c = int(r)
    t = r - c
    t2 = t * t
    t3 = t2 * t
    return (
        c,
        out,
        t,
        1.0 - 3.0 * t2 + 2.0 * t3,
        h * (t - 2.0 * t2 + t3),
        3.0 * t2 - 2.0 * t3,
        h * (t3 - t2),
    )


@numba.njit(cache=True, inline="always")
def locate(x, lower, upper, inv_h, h, n_cells, vstride, g, d, v1, dv1, want_grad):
    """Per-axis Hermite values ``v1[a, q]`` (and x-derivatives ``dv1[a, q]`` if ``want_grad``) at
    point x (length d).

    Returns (index of the cell's first coefficient, whether x lies outside the closed box).
    """
    base = 0
    out = False
    for a in range(d):
        c, out_a, t, v1[a, 0], v1[a, 1], v1[a, 2], v1[a, 3] = hermite_axis(
            x[a], lower[g, a], upper[g, a], inv_h[g, a], h[g, a], n_cells[g, a]
        )
        out = out or out_a
        base += c * vstride[g, a]
        if want_grad:
            dv1[a, 0], dv1[a, 1], dv1[a, 2], dv1[a, 3] = hermite_slopes(t, inv_h[g, a])
    return base << d, out


@numba.njit(cache=True, inline="always")
def hermite_slopes(t, inv_h):
    """x-derivatives of the four shape values at t (d/dx = Δ⁻¹ d/dt)."""
    t2 = t * t
    return (
        (6.0 * t2 - 6.0 * t) * inv_h,
        1.0 - 4.0 * t + 3.0 * t2,
        (6.0 * t - 6.0 * t2) * inv_h,
        3.0 * t2 - 2.0 * t,
    )


@numba.njit(cache=True, inline="always")
def tail_tensors(v1, dv1, d, n_tensors, w):
    """w[0, r] = Π_{a≥1} v1[a, q_a] (r = Σ_{a≥1} q_a 4^(a−1)); for 1 ≤ t < n_tensors, w[t] is the
    same product with dv1 on axis t (the x_t-derivative). d ≤ 3 have unrolled loops."""
    if d == 1:
        w[0, 0] = 1.0
    elif d == 2:
        for q in range(4):
            w[0, q] = v1[1, q]
            if n_tensors > 1:
                w[1, q] = dv1[1, q]
    elif d == 3:
        for q2 in range(4):
            for q1 in range(4):
                w[0, q1 + 4 * q2] = v1[1, q1] * v1[2, q2]
        if n_tensors > 1:
            for q2 in range(4):
                for q1 in range(4):
                    w[1, q1 + 4 * q2] = dv1[1, q1] * v1[2, q2]
                    w[2, q1 + 4 * q2] = v1[1, q1] * dv1[2, q2]
    else:
        for t in range(n_tensors):
            w[t, 0] = 1.0
            size = 1
            for a in range(1, d):
                for q in range(3, -1, -1):
                    f = dv1[a, q] if a == t else v1[a, q]
                    o = q * size
                    for j in range(size):
                        w[t, o + j] = w[t, j] * f
                size *= 4


@numba.njit(cache=True, inline="always")
def row_value(u, off, rows, g, l0, n_rows, v1, w):
    """F = Σ_j u[off + local_j] f_j. (Unsigned indices spare numba's negative-index wraparound.)"""
    a0, a1, a2, a3 = v1[0, 0], v1[0, 1], v1[0, 2], v1[0, 3]
    one, l0u, offu = numba.uint64(1), numba.uint64(l0), numba.uint64(off)
    acc = 0.0
    for r in range(numba.uint64(n_rows)):
        o = offu + numba.uint64(rows[g, r])
        acc += w[0, r] * (u[o] * a0 + u[o + one] * a1 + u[o + l0u] * a2 + u[o + l0u + one] * a3)
    return acc


@numba.njit(cache=True, inline="always")
def row_gradient(u, off, rows, g, l0, n_rows, d, v1, dv1, w, rv, grad):
    """grad[a] = ∂F/∂x_a (w must hold all d tail tensors; rv is scratch (n_rows,))."""
    a0, a1, a2, a3 = v1[0, 0], v1[0, 1], v1[0, 2], v1[0, 3]
    b0, b1, b2, b3 = dv1[0, 0], dv1[0, 1], dv1[0, 2], dv1[0, 3]
    one, l0u, offu = numba.uint64(1), numba.uint64(l0), numba.uint64(off)
    acc = 0.0
    for r in range(numba.uint64(n_rows)):
        o = offu + numba.uint64(rows[g, r])
        c0, c1, c2, c3 = u[o], u[o + one], u[o + l0u], u[o + l0u + one]
        acc += w[0, r] * (c0 * b0 + c1 * b1 + c2 * b2 + c3 * b3)
        rv[r] = c0 * a0 + c1 * a1 + c2 * a2 + c3 * a3
    grad[0] = acc
    for a in range(1, d):
        acc = 0.0
        for r in range(numba.uint64(n_rows)):
            acc += w[a, r] * rv[r]
        grad[a] = acc


@numba.njit(cache=True)
def _basis_many(x, lower, upper, inv_h, h, n_cells, vstride, rows, l0, local, want_grad):
    n, d = x.shape
    n_rows = rows.shape[1]
    idx = np.empty((n, 4 * n_rows), dtype=np.int64)
    val = np.empty((n, 4 * n_rows))
    grad = np.empty((n, 4 * n_rows, d)) if want_grad else np.empty((0, 4 * n_rows, d))
    v1, dv1, w, xp = np.empty((d, 4)), np.empty((d, 4)), np.empty((d, n_rows)), np.empty(d)
    for p in range(n):
        for a in range(d):
            xp[a] = x[p, a]
        base, _ = locate(xp, lower, upper, inv_h, h, n_cells, vstride, 0, d, v1, dv1, want_grad)
        tail_tensors(v1, dv1, d, d if want_grad else 1, w)
        for r in range(n_rows):
            for q in range(4):
                j = q + 4 * r
                idx[p, j] = base + local[j]
                val[p, j] = v1[0, q] * w[0, r]
                if want_grad:
                    grad[p, j, 0] = dv1[0, q] * w[0, r]
                    for a in range(1, d):
                        grad[p, j, a] = v1[0, q] * w[a, r]
    return idx, val, grad


@numba.njit(cache=True)
def _evaluate_many(u, x, lower, upper, inv_h, h, n_cells, vstride, rows, l0, want_grad):
    n, d = x.shape
    n_rows = rows.shape[1]
    out = np.empty((n, 1 + d))
    v1, dv1, w = np.empty((d, 4)), np.empty((d, 4)), np.empty((d, n_rows))
    rv, xp, grad = np.empty(n_rows), np.empty(d), np.empty(d)
    for p in range(n):
        for a in range(d):
            xp[a] = x[p, a]
        base, _ = locate(xp, lower, upper, inv_h, h, n_cells, vstride, 0, d, v1, dv1, want_grad)
        tail_tensors(v1, dv1, d, d if want_grad else 1, w)
        out[p, 0] = row_value(u, base, rows, 0, l0[0], n_rows, v1, w)
        if want_grad:
            row_gradient(u, base, rows, 0, l0[0], n_rows, d, v1, dv1, w, rv, grad)
            for a in range(d):
                out[p, 1 + a] = grad[a]
    return out
