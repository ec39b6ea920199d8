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

from dbdflow.dynamics.fem import HermiteGrid, locate, row_value, tail_tensors

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
    the flat u), ``slices`` (u_k = u[slices[k]]), ``pack`` (flat arrays for the numba kernels).
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
    (function) its group's range ``m_start``, its parameter index and its offset in u."""
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
    return (g_d, g_coords, *flt, *ints, g_l0, m_start, m_param, m_offset)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A batched forward solution.

    theta : (n_ic, n_steps + 1, K), θ at the data steps t_0 + nΔt
    stages : (n_ic, n_steps·substeps, n_stages, K), the stage points Y_i of every step
    outside : int64 (n_ic, K), right-hand-side evaluations at which θ_{D_k} lay outside F_k's grid
    u : the coefficients used (a copy, or with ``copy=False`` the caller's array, which must then
        stay unchanged while the trajectory is in use); dt, substeps, scheme as given to
        :func:`solve`
    """

    theta: np.ndarray
    stages: np.ndarray
    outside: np.ndarray
    u: np.ndarray
    dt: float
    substeps: int
    scheme: str


def solve(model, u, theta0, n_steps, dt, *, scheme="rk4", substeps=1, copy=True) -> Trajectory:
    """Integrate dθ/dt = F(θ; u) from θ(t_0) = ``theta0`` (K,) or (n_ic, K) over ``n_steps`` data
    steps of size ``dt``; the result is always batched (n_ic ≥ 1)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
    if int(n_steps) != n_steps or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be positive and finite, got {dt!r}")
    u = model.check_coeffs(u)
    a, b = SCHEMES[scheme]
    h = float(dt) / int(substeps)
    theta, stages, outside = _forward(
        model.check_theta(theta0), u, int(n_steps), int(substeps), h, a, b, model.pack
    )
    u = u.copy() if copy else u
    return Trajectory(theta, stages, outside, u, float(dt), int(substeps), scheme)


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


@numba.njit(cache=True)
def _forward(theta0, u, n_steps, substeps, h, a, b, pack):
    """Batched explicit RK: all initial conditions advance together, step by step."""
    n_ic, n_params = theta0.shape
    n_stages = b.size
    gd, gc, lo, up, ih, hh, nc, vs, rw, l0, ms, mp, mo = pack
    x, v1, dv1, w, _, _ = scratch(gd)
    theta = np.empty((n_ic, n_steps + 1, n_params))
    stages = np.empty((n_ic, n_steps * substeps, n_stages, n_params))
    outside = np.zeros((n_ic, n_params), dtype=np.int64)
    slopes = np.empty((n_ic, n_stages, n_params))
    cur = theta0.copy()
    theta[:, 0] = cur
    for n in range(n_steps):
        for sub in range(substeps):
            m = n * substeps + sub
            for s in range(n_stages):
                for i in range(n_ic):
                    for k in range(n_params):
                        y = cur[i, k]
                        for r in range(s):
                            if a[s, r] != 0.0:
                                y += h * a[s, r] * slopes[i, r, k]
                        stages[i, m, s, k] = y
                    # slopes[i, s] = F(Y): per group, locate the cell once, then one dot
                    # product per member function (see fem.py for the row layout)
                    for g in range(gd.size):
                        d = gd[g]
                        for ax in range(d):
                            x[ax] = stages[i, m, s, gc[g, ax]]
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
            for i in range(n_ic):
                for k in range(n_params):
                    for s in range(n_stages):
                        cur[i, k] += h * b[s] * slopes[i, s, k]
        theta[:, n + 1] = cur
    return theta, stages, outside
