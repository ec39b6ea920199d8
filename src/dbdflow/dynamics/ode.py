"""Forward solution of the learned dynamics dθ_k/dt = F_k(θ_{D_k}; u_k) (paper eqs. 26-27, 34).

Every parameter θ_k of the reduced model has its own finite-element function F_k, a
:class:`~dbdflow.dynamics.fem.HermiteGrid` over a tuple D_k of coordinates of θ (indices into θ).
All coefficient vectors are concatenated into one flat ``u`` (``model.slices[k]`` is u_k).

Time stepping is an explicit Runge-Kutta scheme with Butcher tableau (A, b), run with ``substeps``
steps of size h = Δt / substeps per data step Δt:

    Y_i = θ_m + h Σ_{j<i} A_ij K_j,   K_i = F(Y_i; u),   θ_{m+1} = θ_m + h Σ_i b_i K_i,

``"euler"`` (one stage, θ_{m+1} = θ_m + h F(θ_m)) or ``"rk4"`` (the classical four-stage scheme).
θ is recorded at every data step; the stage points Y_i of every step are kept for the exact discrete
adjoint (:mod:`dbdflow.dynamics.adjoint`). Initial conditions are independent and solved in one
batched kernel.

Functions that share both the coordinate tuple and the grid geometry are grouped, so the 4^d basis
values at a point are computed once for the group (all nine Rössler F's share one group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from dbdflow.dynamics.fem import (
    HermiteGrid,
    cell_basis_d1,
    cell_basis_d2,
    cell_basis_d3,
    cell_gradient_d1,
    cell_gradient_d2,
    cell_gradient_d3,
    locate,
    row_value,
    tail_tensors,
)

SCHEMES = {
    "euler": (np.zeros((1, 1)), np.array([1.0])),
    "rk4": (
        np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1.0, 0]]),
        np.array([1.0, 2.0, 2.0, 1.0]) / 6.0,
    ),
}


class DynamicsModel:
    """The right-hand sides F_k, k = 0..K−1, each a HermiteGrid over coordinates ``coords[k]``.

    Attributes: ``grids``, ``coords`` (tuples of int), ``n_params`` (K), ``n_coeffs`` (length of
    the flat u), ``slices`` (u_k = u[slices[k]]), ``pack`` and ``rank_key`` (flat arrays for the
    numba kernels).
    """

    def __init__(self, grids, coords):
        grids = list(grids)
        coords = [tuple(int(c) for c in np.atleast_1d(cs)) for cs in coords]
        n = len(grids)
        if n == 0 or len(coords) != n:
            raise ValueError(f"need one coordinate tuple per grid, got {n} grids, {len(coords)}")
        for k, (grid, cs) in enumerate(zip(grids, coords, strict=True)):
            if not isinstance(grid, HermiteGrid):
                raise ValueError(f"grids[{k}] must be a HermiteGrid, got {type(grid).__name__}")
            if len(cs) != grid.d or len(set(cs)) != len(cs) or min(cs) < 0 or max(cs) >= n:
                raise ValueError(
                    f"coords[{k}] must be {grid.d} distinct indices into θ (0..{n - 1}), got {cs}"
                )
        self.grids, self.coords, self.n_params = grids, coords, n
        ends = np.cumsum([g.n_coeffs for g in grids])
        self.n_coeffs = int(ends[-1])
        self.slices = [slice(int(e - g.n_coeffs), int(e)) for g, e in zip(grids, ends, strict=True)]
        self.pack = _pack(grids, coords, ends - [g.n_coeffs for g in grids])
        # numba compiles one forward kernel per array rank: an empty array of rank d when every
        # grid has the same d <= 3 gives the basis loops constant lengths (rank 4: any d)
        dims = {g.d for g in grids}
        self.rank_key = np.zeros((0,) * (dims.pop() if len(dims) == 1 and max(dims) <= 3 else 4))

    def check_coeffs(self, u) -> np.ndarray:
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape != (self.n_coeffs,):
            raise ValueError(f"coefficients u must have shape ({self.n_coeffs},), got {u.shape}")
        return u

    def check_theta(self, theta) -> np.ndarray:
        theta = np.ascontiguousarray(np.atleast_2d(theta), dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(f"θ must have shape (n, {self.n_params}), got {theta.shape}")
        return theta

    def interpolate(self, functions) -> np.ndarray:
        """Flat u from one ``HermiteGrid.interpolate`` callable per F_k."""
        return np.concatenate(
            [g.interpolate(f) for g, f in zip(self.grids, functions, strict=True)]
        )

    def rhs(self, u, theta) -> np.ndarray:
        """F(θ; u) for θ of shape (n, K), float (n, K)."""
        u, theta = self.check_coeffs(u), self.check_theta(theta)
        return np.stack(
            [
                g.evaluate(u[sl], theta[:, list(cs)])
                for g, cs, sl in zip(self.grids, self.coords, self.slices, strict=True)
            ],
            axis=1,
        )

    def jacobian(self, u, theta) -> np.ndarray:
        """∂F_k/∂θ_l for θ of shape (n, K), float (n, K, K)."""
        u, theta = self.check_coeffs(u), self.check_theta(theta)
        jac = np.zeros((theta.shape[0], self.n_params, self.n_params))
        for k, (grid, cs, sl) in enumerate(zip(self.grids, self.coords, self.slices, strict=True)):
            jac[:, k, list(cs)] = grid.gradient(u[sl], theta[:, list(cs)])
        return jac


def _pack(grids, coords, offsets):
    """Group functions by (coords, geometry) and flatten everything into numba-friendly arrays:
    per group d, coords, lower, upper, 1/Δ, Δ, n_cells, vertex strides, row offsets, l0; per member
    (function) its group's range ``m_start``, its parameter index and its offset in u; per group
    the 4^d local coefficient offsets of a cell and the group's first vertex in a numbering of
    all groups' vertices (``g_vertex``, n_groups + 1 entries: keys of the forward's cell cache)."""
    groups: dict[tuple, list[int]] = {}
    for k, (grid, cs) in enumerate(zip(grids, coords, strict=True)):
        groups.setdefault((cs, grid.key()), []).append(k)
    first = [grids[ks[0]] for ks in groups.values()]
    n_groups, dmax = len(first), max(g.d for g in grids)
    g_d = np.array([g.d for g in first], dtype=np.int64)
    g_coords = np.zeros((n_groups, dmax), dtype=np.int64)
    flt = np.ones((4, n_groups, dmax))
    ints = np.zeros((3, n_groups, 4 ** (dmax - 1)), dtype=np.int64)
    g_l0 = np.zeros(n_groups, dtype=np.int64)
    for i, ((cs, _), grid) in enumerate(zip(groups, first, strict=True)):
        g_coords[i, : grid.d] = cs
        args = grid.kernel_arrays()
        for row, value in zip(flt, args[:4], strict=True):
            row[i, : grid.d] = value[0]
        for row, value in zip(ints, args[4:7], strict=True):
            row[i, : value.shape[1]] = value[0]
        g_l0[i] = args[7][0]
    members = [k for ks in groups.values() for k in ks]
    m_start = np.cumsum([0] + [len(ks) for ks in groups.values()]).astype(np.int64)
    m_param = np.array(members, dtype=np.int64)
    m_offset = np.asarray(offsets, dtype=np.int64)[m_param]
    g_local = np.zeros((n_groups, 4**dmax), dtype=np.int64)
    for i, grid in enumerate(first):
        g_local[i, : grid.n_basis] = grid.local_offset
    g_vertex = np.cumsum([0] + [g.n_vertices for g in first]).astype(np.int64)
    return (g_d, g_coords, *flt, *ints, g_l0, m_start, m_param, m_offset, g_local, g_vertex)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A batched forward solution.

    theta : (n_ic, n_steps + 1, K), θ at the data steps t_0 + nΔt
    stages : (n_ic, (n_steps − keep_from)·substeps, n_stages, K), the stage points Y_i of every
        step from data step ``keep_from`` on (the adjoint can run back to there)
    outside : int64 (n_ic, K), right-hand-side evaluations at which θ_{D_k} lay outside F_k's grid
    u : the coefficients used (a copy, or with ``copy=False`` the caller's array, which must then
        stay unchanged while the trajectory is in use); dt, substeps, scheme, keep_from as given
        to :func:`solve`
    """

    theta: np.ndarray
    stages: np.ndarray
    outside: np.ndarray
    u: np.ndarray
    dt: float
    substeps: int
    scheme: str
    keep_from: int = 0


def solve(
    model, u, theta0, n_steps, dt, *, scheme="rk4", substeps=1, copy=True, keep_from=0
) -> Trajectory:
    """Integrate dθ/dt = F(θ; u) from θ(t_0) = ``theta0`` (K,) or (n_ic, K) over ``n_steps`` data
    steps of size ``dt``; the result is always batched (n_ic ≥ 1). Stage points are kept from data
    step ``keep_from`` (0..n_steps) on: the adjoint's earliest stop (a window's start)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
    if int(n_steps) != n_steps or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be positive and finite, got {dt!r}")
    if int(keep_from) != keep_from or not 0 <= keep_from <= n_steps:
        raise ValueError(f"keep_from must be a data step in 0..{n_steps}, got {keep_from!r}")
    u = model.check_coeffs(u)
    a, b = SCHEMES[scheme]
    h = float(dt) / int(substeps)
    theta, stages, outside = _forward(
        model.check_theta(theta0),
        u,
        int(n_steps),
        int(substeps),
        h,
        a,
        b,
        model.pack,
        model.rank_key,
        int(keep_from),
    )
    u = u.copy() if copy else u
    return Trajectory(theta, stages, outside, u, float(dt), int(substeps), scheme, int(keep_from))


@numba.njit(cache=True)
def scratch(g_d):
    """Work arrays of the forward and adjoint kernels: x, v1, dv1, w, rv, grad."""
    dmax = g_d.max()
    n_rows = 1 << (2 * (dmax - 1))
    return (
        np.empty(dmax),
        np.empty((dmax, 4)),
        np.empty((dmax, 4)),
        np.empty((dmax, n_rows)),
        np.empty(n_rows),
        np.empty(dmax),
    )


# Cached cells (d ≤ 3): the first time a stage point lands in a cell, the forward copies the
# 4^d coefficients of every member of the group there into one contiguous line of a direct-mapped
# cache (key: the cell's first vertex in the numbering of all groups, line: key mod CELL_LINES).
# F is then one contiguous dot product per member, which vectorises. A line is refilled when
# another cell maps to it; u does not change during a solve.
CELL_LINES = 1024


@numba.njit(cache=True, inline="always")
def cell_basis(x, lo, up, ih, hh, nc, vs, g, rank, f):
    """The d = ``rank`` ≤ 3 whole-cell basis of fem.py (``rank`` a compile-time constant)."""
    if rank == 3:
        return cell_basis_d3(x, lo, up, ih, hh, nc, vs, g, f)
    if rank == 2:
        return cell_basis_d2(x, lo, up, ih, hh, nc, vs, g, f)
    return cell_basis_d1(x, lo, up, ih, hh, nc, vs, g, f)


@numba.njit(cache=True, inline="always")
def cell_gradient(x, lo, up, ih, hh, nc, g, rank, fx):
    """fx[a, j] = ∂f_j/∂x_a for the d = ``rank`` ≤ 3 whole-cell basis (see :func:`cell_basis`)."""
    if rank == 3:
        cell_gradient_d3(x, lo, up, ih, hh, nc, g, fx)
    elif rank == 2:
        cell_gradient_d2(x, lo, up, ih, hh, nc, g, fx)
    else:
        cell_gradient_d1(x, lo, up, ih, hh, nc, g, fx)


@numba.njit(cache=True)
def cell_cache(g_d, m_start, rank):
    """(cache, tags): CELL_LINES lines of Σ-over-members 4^d coefficients (none unless rank ≤ 3),
    every tag −1 (empty)."""
    line_size = 1
    for g in range(g_d.size):
        line_size = max(line_size, (m_start[g + 1] - m_start[g]) << (2 * g_d[g]))
    n_lines = CELL_LINES if rank <= 3 else 0
    return np.empty((n_lines, line_size)), np.full(n_lines, -1, dtype=np.int64)


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _forward(theta0, u, n_steps, substeps, h, a, b, pack, rank_key, keep_from):
    """Batched explicit RK: all initial conditions advance together, step by step.

    ``rank_key.ndim`` is the common d ≤ 3 of all groups (cell cache, constant-length basis
    loops) or 4 (any d: rows of the cell read from u, as in fem.py). Sums may be reassociated
    (fastmath reassoc/contract, no NaN or infinity assumptions): results are deterministic.
    """
    n_ic, n_params = theta0.shape
    n_stages = b.size
    gd, gc, lo, up, ih, hh, nc, vs, rw, l0, ms, mp, mo, local, vertex0 = pack
    rank = rank_key.ndim
    x, v1, dv1, w, _, _ = scratch(gd)
    f = np.empty(local.shape[1])
    cache, tags = cell_cache(gd, ms, rank)
    theta = np.empty((n_ic, n_steps + 1, n_params))
    m_kept = keep_from * substeps
    stages = np.empty((n_ic, n_steps * substeps - m_kept, n_stages, n_params))
    outside = np.zeros((n_ic, n_params), dtype=np.int64)
    slopes = np.empty((n_ic, n_stages, n_params))
    y = np.empty(n_params)
    cur = theta0.copy()
    theta[:, 0] = cur
    for n in range(n_steps):
        for sub in range(substeps):
            m = n * substeps + sub
            for s in range(n_stages):
                for i in range(n_ic):
                    for k in range(n_params):
                        yk = cur[i, k]
                        for r in range(s):
                            yk += h * a[s, r] * slopes[i, r, k]
                        y[k] = yk
                        if m >= m_kept:
                            stages[i, m - m_kept, s, k] = yk
                    # slopes[i, s] = F(Y), group by group: the basis values at Y once, then one
                    # dot product per member function
                    for g in range(gd.size):
                        d = gd[g]
                        for ax in range(d):
                            x[ax] = y[gc[g, ax]]
                        if rank > 3:
                            base, out = locate(x, lo, up, ih, hh, nc, vs, g, d, v1, dv1, False)
                            tail_tensors(v1, dv1, d, 1, w)
                            n_rows = 1 << (2 * (d - 1))
                            for mm in range(ms[g], ms[g + 1]):
                                k = mp[mm]
                                slopes[i, s, k] = row_value(
                                    u, mo[mm] + base, rw, g, l0[g], n_rows, v1, w
                                )
                                if out:
                                    outside[i, k] += 1
                            continue
                        vertex, out = cell_basis(x, lo, up, ih, hh, nc, vs, g, rank, f)
                        nb = 1 << (2 * rank)
                        key = vertex0[g] + vertex
                        line = key & (CELL_LINES - 1)
                        if tags[line] != key:  # (written out: as an inlined helper it is slower)
                            tags[line] = key
                            for jm in range(ms[g + 1] - ms[g]):
                                o = mo[ms[g] + jm] + (vertex << rank)
                                for j in range(nb):
                                    cache[line, jm * nb + j] = u[o + local[g, j]]
                        for jm in range(ms[g + 1] - ms[g]):
                            k = mp[ms[g] + jm]
                            j0 = jm * nb
                            acc = 0.0
                            for j in range(nb):
                                acc += cache[line, j0 + j] * f[j]
                            slopes[i, s, k] = acc
                            if out:
                                outside[i, k] += 1
            for i in range(n_ic):
                for k in range(n_params):
                    acc = 0.0
                    for s in range(n_stages):
                        acc += b[s] * slopes[i, s, k]
                    cur[i, k] += h * acc
        theta[:, n + 1] = cur
    return theta, stages, outside
