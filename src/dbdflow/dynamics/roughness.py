"""Roughness penalty of finite-element right-hand sides: the mean Hessian energy of F.

For a function F on a :class:`~dbdflow.dynamics.fem.HermiteGrid` over the box Ω ⊂ R^d,

    R(F) = (1/|Ω|) ∫_Ω Σ_{a,b} (∂_a ∂_b F)² dx
         = (1/|Ω|) ∫_Ω [ Σ_a (∂_a² F)² + 2 Σ_{a<b} (∂_a ∂_b F)² ] dx,

the squared Frobenius norm of the Hessian averaged over the box (the thin-plate energy). It is
zero exactly for affine F, so a penalty λ R does not bias linear relaxation laws such as
dJ/dt = −γJ, and where no training trajectory passes it fills F in as the smoothest (near-affine)
continuation of the F the data determine, instead of leaving arbitrary cubic pieces. Without it,
the coefficients of cells visited by a single trajectory are fitted to that trajectory alone and
test initial conditions between training ones meet wild interpolants (see the notes on the 1D
annihilation experiment).

Computation. The Q3 basis is a tensor product of 1D cubic Hermite functions φ_p(x_a) (value and
slope at both ends of a cell, :mod:`dbdflow.dynamics.fem`), so every term is a Kronecker product of
1D matrices over the per-axis degrees of freedom (vertex i, value/slope b) ↦ 2i + b:

    M_a = ∫ φ_p φ_q,   D_a = ∫ φ_p' φ_q',   S_a = ∫ φ_p'' φ_q''      (assembled over the cells),

    ∫(∂_a² F)² = uᵀ (⊗_c [S if c = a else M]) u,
    ∫(∂_a∂_b F)² = uᵀ (⊗_c [D if c ∈ {a, b} else M]) u.

The element integrals are computed by 4-point Gauss–Legendre quadrature, exact for these degree-6
integrands. Applying the operator costs d² applications of a (2n_a+2)-square matrix along one axis
of the coefficient tensor: no 4^d-per-cell loops, no sparse matrix to store.
"""

from __future__ import annotations

import numpy as np

from dbdflow.dynamics.fem import HermiteGrid

_GAUSS_T, _GAUSS_W = np.polynomial.legendre.leggauss(4)
_GAUSS_T, _GAUSS_W = (_GAUSS_T + 1) / 2, _GAUSS_W / 2  # on [0, 1]


def _shape_functions(t, h):
    """(value, d/dx, d²/dx²) of the four 1D Hermite shape functions at t ∈ [0, 1] of a cell of
    width h, each (4, n_t), in the order (value left, slope left, value right, slope right)."""
    t2, t3 = t * t, t * t * t
    f = np.stack([1 - 3 * t2 + 2 * t3, h * (t - 2 * t2 + t3), 3 * t2 - 2 * t3, h * (t3 - t2)])
    df = np.stack([(6 * t2 - 6 * t) / h, 1 - 4 * t + 3 * t2, (6 * t - 6 * t2) / h, 3 * t2 - 2 * t])
    d2f = np.stack([(12 * t - 6) / h**2, (6 * t - 4) / h, (6 - 12 * t) / h**2, (6 * t - 2) / h])
    return f, df, d2f


def axis_matrices(n_cells: int, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, D, S), each (2n+2, 2n+2): ∫φ_pφ_q, ∫φ_p'φ_q', ∫φ_p''φ_q'' over [0, n·h] for the 1D
    Hermite basis with degrees of freedom 2i + b (vertex i, b = 0 value, 1 slope)."""
    f, df, d2f = _shape_functions(_GAUSS_T, h)
    w = _GAUSS_W * h
    local = [(a * w) @ a.T for a in (f, df, d2f)]
    size = 2 * n_cells + 2
    out = [np.zeros((size, size)) for _ in local]
    for c in range(n_cells):
        block = slice(2 * c, 2 * c + 4)
        for full, elem in zip(out, local, strict=True):
            full[block, block] += elem
    return out[0], out[1], out[2]


class Roughness:
    """R(u) = (1/|Ω|) ∫_Ω ‖∇²F(x; u)‖²_F dx for the functions on one :class:`HermiteGrid`
    (module docstring); :meth:`value_and_gradient` evaluates R and ∇_u R = (2/|Ω|) H u."""

    def __init__(self, grid: HermiteGrid):
        self.grid = grid
        self.volume = float(np.prod(grid.upper - grid.lower))
        self._mats = [
            axis_matrices(int(n), float(h)) for n, h in zip(grid.n_cells, grid.spacing, strict=True)
        ]
        d = grid.d
        # u (vertex-major, bit a of the subset index = axis a) <-> tensor over (2 i_a + b_a)
        self._split = (*(grid.n_cells + 1), *([2] * d))
        self._order = [k for a in range(d) for k in (a, 2 * d - 1 - a)]
        self._shape = tuple(2 * (grid.n_cells + 1))

    def _tensor(self, u):
        return u.reshape(self._split).transpose(self._order).reshape(self._shape)

    def _flat(self, x):
        d = self.grid.d
        inverse = np.argsort(self._order)
        return (
            x.reshape([s for a in range(d) for s in (self._split[a], 2)])
            .transpose(inverse)
            .reshape(-1)
        )

    def _apply(self, x, which):
        """(⊗_a mats[a][which[a]]) x for the coefficient tensor x."""
        for a, k in enumerate(which):
            x = np.moveaxis(np.tensordot(self._mats[a][k], x, axes=([1], [a])), 0, a)
        return x

    def hessian_u(self, u) -> np.ndarray:
        """H u with uᵀ H u = ∫_Ω ‖∇²F‖²_F (not divided by |Ω|)."""
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape != (self.grid.n_coeffs,):
            raise ValueError(f"u must have shape ({self.grid.n_coeffs},), got {u.shape}")
        d, x = self.grid.d, self._tensor(u)
        out = np.zeros_like(x)
        for a in range(d):
            out += self._apply(x, [2 if c == a else 0 for c in range(d)])
            for b in range(a + 1, d):
                out += 2.0 * self._apply(x, [1 if c in (a, b) else 0 for c in range(d)])
        return self._flat(out)

    def value_and_gradient(self, u) -> tuple[float, np.ndarray]:
        """(R(u), ∇_u R(u))."""
        hu = self.hessian_u(u)
        return float(np.dot(u, hu)) / self.volume, (2.0 / self.volume) * hu


def model_roughness(model) -> list[tuple[slice, Roughness]]:
    """One :class:`Roughness` per function of a :class:`~dbdflow.dynamics.ode.DynamicsModel`
    (shared between functions on equal grids), with its slice of the flat u."""
    cache: dict[tuple, Roughness] = {}
    return [
        (sl, cache.setdefault(g.key(), Roughness(g)))
        for g, sl in zip(model.grids, model.slices, strict=True)
    ]
