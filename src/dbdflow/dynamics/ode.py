"""Forward solution of the learned dynamics dθ_k/dt = F_k(θ_{D_k}; u_k) (paper eqs. 26-27, 34).

Every parameter θ_k of the reduced model has its own finite-element function F_k, a
:class:`~dbdflow.dynamics.fem.HermiteGrid` over a tuple D_k of coordinates of θ (indices into θ).
All coefficient vectors are concatenated into one flat ``u`` (``model.slices[k]`` is u_k).

Time stepping is an explicit Runge-Kutta scheme with Butcher tableau (A, b), run with ``substeps``
steps of size h = Δt / substeps per data step Δt:

    Y_i = θ_m + h Σ_{j<i} A_ij K_j,   K_i = F(Y_i; u),   θ_{m+1} = θ_m + h Σ_i b_i K_i,

``"euler"`` (one stage, θ_{m+1} = θ_m + h F(θ_m)) or ``"rk4"`` (the classical four-stage scheme).
In both, stage i uses only the slope before it (A_ij = 0 for j < i − 1), which the forward kernel
relies on: Y_i = θ_m + h A_{i,i−1} K_{i−1}.
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
    hermite_axis,
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
        self._workspace = None

    def workspace(self):
        """The forward and adjoint kernels' cell cache (:func:`cell_cache`), made on first use
        for the current ``rank_key`` and kept."""
        rank = self.rank_key.ndim
        if self._workspace is None or self._workspace[0] != rank:
            self._workspace = (rank, cell_cache(self.pack, rank))
        return self._workspace[1]

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
    all groups' vertices (``g_vertex``, n_groups + 1 entries: keys of the forward's cell cache);
    last the axes' geometry (n_groups, d_max, 4)."""
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
    # the axes' geometry (lower, upper, 1/Δ, Δ) in one array for the cell-cache kernels: fewer
    # live registers in their loops than four arrays (measured: 5-10 % faster)
    g_geo = np.ascontiguousarray(np.stack(flt, axis=-1))
    return (g_d, g_coords, *flt, *ints, g_l0, m_start, m_param, m_offset, g_local, g_vertex, g_geo)


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
        model.workspace(),
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
# cache (key: the cell's first vertex in the numbering of all groups, line: cache_line(key);
# order within a line: :func:`cell_slot` in the forward, member by member in the adjoint). F is
# then summed over contiguous rows, which vectorises. A line is refilled when another cell maps to
# it; u does not change during a solve. The line is a multiplicative (Fibonacci) hash of the key:
# with key mod CELL_LINES, cells a multiple of 1024 vertices apart (e.g. along the slowest axis
# of a fine grid) collide, and the hidden A+A model's forward refilled 8× more lines than it
# visited cells.
CELL_BITS = 10
CELL_LINES = 1 << CELL_BITS


@numba.njit(cache=True, inline="always")
def cache_line(key):
    """The cache line of cell ``key``: the top CELL_BITS bits of key × 2^64/φ (mod 2^64)."""
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - CELL_BITS))


@numba.njit(cache=True, inline="always")
def point_axis(y, gc, geo, nc, g, a):
    """:func:`~dbdflow.dynamics.fem.hermite_axis` of group g's axis a at the point θ = y."""
    return hermite_axis(
        y[gc[g, a]], geo[g, a, 0], geo[g, a, 1], geo[g, a, 2], geo[g, a, 3], nc[g, a]
    )


def cell_cache(pack, rank):
    """The kernels' cell cache (none unless rank ≤ 3): ``cache`` and ``grads`` (CELL_LINES lines of
    Σ-over-members 4^d values: coefficients, the adjoint's accumulated dS/du), ``tags`` (each
    line's cell key, −1: empty), ``line_group`` and ``used`` (line, member) of the adjoint. Kept
    by the model between solves (:meth:`DynamicsModel.workspace`): the kernels reset the tags,
    and fresh arrays cost a page fault per touched page (the hashed lines touch most pages)."""
    g_d, m_start = pack[0], pack[10]
    members = np.diff(m_start)
    line_size = max(1, int((members << (2 * g_d)).max()))
    n_lines = CELL_LINES if rank <= 3 else 0
    return (
        np.empty((n_lines, line_size)),
        np.empty((n_lines, line_size)),
        np.full(n_lines, -1, dtype=np.int64),
        np.zeros(n_lines, dtype=np.int64),
        np.zeros((n_lines, max(1, int(members.max()))), dtype=np.bool_),
    )


@numba.njit(cache=True, inline="always")
def cell_slot(j, jm, nm, rank):
    """Where the forward's cache line keeps coefficient j = Σ_a q_a 4^a of member jm (of nm):
    the first axis outermost, then the middle one, then the member, the last axis innermost
    ([m][q0], [q0][m][q1], [q0][q1][m][q2] for d = 1, 2, 3), so that :func:`_forward` sums one
    axis at a time over contiguous rows."""
    if rank == 3:
        return (j & 3) * (nm << 4) + ((j >> 2) & 3) * (nm << 2) + (jm << 2) + (j >> 4)
    if rank == 2:
        return (j & 3) * (nm << 2) + (jm << 2) + (j >> 2)
    return (jm << 2) + j


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _forward(theta0, u, n_steps, substeps, h, a, b, pack, rank_key, keep_from, work):
    """Batched explicit RK: all initial conditions advance together, step by step.

    ``rank_key.ndim`` is the common d ≤ 3 of all groups (cell cache, F contracted one axis at a
    time) or 4 (any d: rows of the cell read from u, as in fem.py). Sums may be reassociated
    (fastmath reassoc/contract, no NaN or infinity assumptions): results are deterministic.

    Cell-cache contraction (d = 3; d = 1, 2 drop axes): with the per-axis shape values
    α_q, β_q, ε_q of the point (fem.hermite_axis) and a cell's coefficients c_m[q0, q1, q2],

        F_m = Σ_q2 ε_q2 Σ_q1 β_q1 Σ_q0 α_q0 c_m[q0, q1, q2],

    the inner sums over all members' rows at once (contiguous, vectorised, short dependency
    chains), the last one per member.
    """
    n_ic, n_params = theta0.shape
    n_stages = b.size
    gd, gc, lo, up, ih, hh, nc, vs, rw, l0, ms, mp, mo, local, vertex0, geo = pack
    rank = rank_key.ndim
    x, v1, dv1, w, _, _ = scratch(gd)
    cache, _, tags, _, _ = work
    tags[:] = -1
    rows = np.empty(cache.shape[1] >> 2)  # d = 3: Σ_q0 done
    last = np.empty(cache.shape[1])  # all axes but the last summed (d = 1: the whole line)
    ha = h * a
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
            keep = m >= m_kept
            for s in range(n_stages):
                for i in range(n_ic):
                    if s == 0:
                        for k in range(n_params):
                            y[k] = cur[i, k]
                    else:  # Y_s = θ_m + h a_{s,s−1} K_{s−1} (SCHEMES)
                        c = ha[s, s - 1]
                        for k in range(n_params):
                            y[k] = cur[i, k] + c * slopes[i, s - 1, k]
                    if keep:
                        for k in range(n_params):
                            stages[i, m - m_kept, s, k] = y[k]
                    # slopes[i, s] = F(Y), group by group
                    for g in range(gd.size):
                        if rank > 3:
                            d = gd[g]
                            for ax in range(d):
                                x[ax] = y[gc[g, ax]]
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
                        # (the cell lookup and the sums written out: as inlined helpers they
                        # were slower; point_axis, one axis of the point, is not)
                        c0, out, _, a0, a1, a2, a3 = point_axis(y, gc, geo, nc, g, 0)
                        vertex = c0 * vs[g, 0]
                        b0 = b1 = b2 = b3 = e0 = e1 = e2 = e3 = 0.0
                        if rank >= 2:
                            c1, o1, _, b0, b1, b2, b3 = point_axis(y, gc, geo, nc, g, 1)
                            vertex += c1 * vs[g, 1]
                            out = out or o1
                        if rank == 3:
                            c2, o2, _, e0, e1, e2, e3 = point_axis(y, gc, geo, nc, g, 2)
                            vertex += c2 * vs[g, 2]
                            out = out or o2
                        nm = ms[g + 1] - ms[g]
                        key = vertex0[g] + vertex
                        line = cache_line(key)
                        if tags[line] != key:
                            tags[line] = key
                            for jm in range(nm):
                                o = mo[ms[g] + jm] + (vertex << rank)
                                for j in range(1 << (2 * rank)):
                                    cache[line, cell_slot(j, jm, nm, rank)] = u[o + local[g, j]]
                        # unsigned offsets: indices like r + r4 that numba cannot prove ≥ 0 turn
                        # the loads into gathers (negative-index wraparound); views of the line
                        # would cost reference counting at every evaluation
                        r4 = np.uint64(nm << 2)
                        r8, r12 = r4 + r4, r4 + r4 + r4
                        if rank == 3:  # rows[q1, m, q2] = Σ_q0 α_q0 c_m[q0, q1, q2]
                            r16 = np.uint64(nm << 4)
                            r32, r48 = r16 + r16, r16 + r16 + r16
                            for r in range(r16):
                                rows[r] = (
                                    a0 * cache[line, r]
                                    + a1 * cache[line, r16 + r]
                                    + a2 * cache[line, r32 + r]
                                    + a3 * cache[line, r48 + r]
                                )
                            for r in range(r4):  # last[m, q2] = Σ_q1 β_q1 rows[q1, m, q2]
                                last[r] = (
                                    b0 * rows[r]
                                    + b1 * rows[r4 + r]
                                    + b2 * rows[r8 + r]
                                    + b3 * rows[r12 + r]
                                )
                            w0, w1, w2, w3 = e0, e1, e2, e3
                        elif rank == 2:  # last[m, q1] = Σ_q0 α_q0 c_m[q0, q1]
                            for r in range(r4):
                                last[r] = (
                                    a0 * cache[line, r]
                                    + a1 * cache[line, r4 + r]
                                    + a2 * cache[line, r8 + r]
                                    + a3 * cache[line, r12 + r]
                                )
                            w0, w1, w2, w3 = b0, b1, b2, b3
                        else:  # last[m, q0] = c_m[q0]
                            for r in range(r4):
                                last[r] = cache[line, r]
                            w0, w1, w2, w3 = a0, a1, a2, a3
                        for jm in range(nm):  # F_m = Σ_q w_q last[m, q] over the last axis
                            k = mp[ms[g] + jm]
                            q = jm << 2
                            slopes[i, s, k] = (w0 * last[q] + w1 * last[q + 1]) + (
                                w2 * last[q + 2] + w3 * last[q + 3]
                            )
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
