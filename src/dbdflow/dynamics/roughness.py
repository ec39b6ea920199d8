"""Roughness penalty of finite-element right-hand sides: the mean Hessian energy of F.

For a function F on a :class:`~dbdflow.dynamics.fem.HermiteGrid` over the box Ω ⊂ R^d,

    R(F) = (1/|Ω|) ∫_Ω Σ_{a,b} (∂_a ∂_b F)² dx
         = (1/|Ω|) ∫_Ω [ Σ_a (∂_a² F)² + 2 Σ_{a<b} (∂_a ∂_b F)² ] dx,

the squared Frobenius norm of the Hessian averaged over the box (the thin-plate energy). It is
zero exactly for affine F, so a penalty λ R does not bias linear relaxation laws such as
dJ/dt = −γJ, and where no training trajectory passes it fills F in as the smoothest (near-affine)
continuation of the F the data determine, instead of leaving arbitrary cubic pieces. Without it,
the coefficients of cells visited by a single trajectory are fitted to that trajectory alone and
test initial conditions between training ones meet wild interpolants (the cross-validation in
``config/paper/annihilation_1d.yaml`` measures the difference).

Computation. The Q3 basis is a tensor product of 1D cubic Hermite functions φ_p(x_a) (value and
slope at both ends of a cell, :mod:`dbdflow.dynamics.fem`), so every term is a Kronecker product of
1D matrices over the per-axis degrees of freedom (vertex i, value/slope b) ↦ 2i + b:

    M_a = ∫ φ_p φ_q,   D_a = ∫ φ_p' φ_q',   S_a = ∫ φ_p'' φ_q''      (assembled over the cells),

    ∫(∂_a² F)² = uᵀ (⊗_c [S if c = a else M]) u,
    ∫(∂_a∂_b F)² = uᵀ (⊗_c [D if c ∈ {a, b} else M]) u.

The element integrals are computed by 4-point Gauss–Legendre quadrature, exact for these degree-6
integrands. Applying the operator takes a few one-axis applications of these banded matrices to the
coefficients (:class:`Roughness`): no 4^d-per-cell loops, no sparse matrix to store.
"""

from __future__ import annotations

import numba
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
    """R(u) = (1/|Ω|) ∫_Ω ‖∇²F(x; u)‖²_F dx for functions on one :class:`HermiteGrid` (module
    docstring); :meth:`value_and_gradient` evaluates R and ∇_u R = (2/|Ω|) H u, for one
    coefficient vector (n_coeffs,) or a batch of them (n_functions, n_coeffs) on the same grid.

    The 1D matrices are block tridiagonal (2×2 blocks between neighbouring vertices), so each is
    stored as its blocks and applied along one axis of u in u's own vertex-major layout (no
    transposes). The d(d+1)/2 Kronecker terms share their partial products over the trailing
    axes and each adds its first-axis application into the result: 15 one-axis applications in
    3D, and no temporaries besides the work arrays kept between calls.
    """

    def __init__(self, grid: HermiteGrid):
        self.grid = grid
        d = grid.d
        self.volume = float(np.prod(grid.upper - grid.lower))
        # per axis: the (lower, diagonal, upper) 2x2 blocks of M, D and S, and the coefficient
        # layout along the axis: u viewed as (outer, vertices on the axis, inner)
        self._blocks, self._layout = [], []
        n_vert = grid.n_cells + 1
        for a, (n, h) in enumerate(zip(grid.n_cells, grid.spacing, strict=True)):
            self._blocks.append(tuple(_blocks(m) for m in axis_matrices(int(n), float(h))))
            inner = int(grid.vertex_stride[a]) << d
            self._layout.append((grid.n_coeffs // (inner * int(n_vert[a])), inner, 1 << a))
        # terms as (kind per axis, weight): kind 0 = M, 1 = D, 2 = S
        self._work: dict[tuple, np.ndarray] = {}
        self._terms = []
        for a in range(d):
            self._terms.append((tuple(2 if c == a else 0 for c in range(d)), 1.0))
            for b in range(a + 1, d):
                self._terms.append((tuple(1 if c in (a, b) else 0 for c in range(d)), 2.0))

    def _along(self, x, axis, kind, out, weight=1.0, add=False):
        """out = weight·(A x) (or out += weight·(A x) with ``add``) along one axis."""
        _apply_blocks(*self._blocks[axis][kind], *self._layout[axis], x, out, weight, add)
        return out

    def hessian_u(self, u) -> np.ndarray:
        """H u with uᵀ H u = ∫_Ω ‖∇²F‖²_F (not divided by |Ω|), row by row for a batch."""
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape[-1:] != (self.grid.n_coeffs,) or u.ndim > 2:
            raise ValueError(f"u must have shape ([n,] {self.grid.n_coeffs}), got {u.shape}")
        x = u.reshape(-1, self.grid.n_coeffs)
        d = self.grid.d
        # partial products over the trailing axes, shared between terms (memoised by suffix) in
        # work arrays kept between calls: training applies the penalty at every step, and fresh
        # multi-megabyte arrays cost page faults every time
        done: dict[tuple, np.ndarray] = {(): x}

        def suffix(kinds):
            if kinds not in done:
                buffer = self._work.get(kinds)
                if buffer is None or buffer.shape != x.shape:
                    buffer = self._work[kinds] = np.empty_like(x)
                done[kinds] = self._along(suffix(kinds[1:]), d - len(kinds), kinds[0], buffer)
            return done[kinds]

        out = np.zeros_like(x)
        for kinds, weight in self._terms:
            self._along(suffix(kinds[1:]), 0, kinds[0], out, weight, add=True)
        return out.reshape(u.shape)

    def value_and_gradient(self, u) -> tuple[float | np.ndarray, np.ndarray]:
        """(R(u), ∇_u R(u)); R is a float for one vector, an array (n,) for a batch."""
        hu = self.hessian_u(u)
        value = np.einsum("...i,...i->...", np.asarray(u, dtype=np.float64), hu) / self.volume
        hu *= 2.0 / self.volume
        return (float(value) if np.ndim(value) == 0 else value), hu


def _blocks(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 2x2 blocks (lower, diagonal, upper), each (n_vertices, 2, 2), of a block-tridiagonal
    matrix over the degrees of freedom 2i + b (zero blocks beyond the ends)."""
    n = matrix.shape[0] // 2
    out = np.zeros((3, n, 2, 2))
    for i in range(n):
        for k, j in enumerate((i - 1, i, i + 1)):
            if 0 <= j < n:
                out[k, i] = matrix[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
    return out[0], out[1], out[2]


@numba.njit(inline="always")
def _pair(xf, of, w0, w1, back, ahead, c, add):
    """The (value, slope) pair (w0, w1) of one vertex: 2x2 blocks on itself and its neighbours."""
    d00, d01, d10, d11, l00, l01, l10, l11, u00, u01, u10, u11 = c
    x0, x1 = xf[w0], xf[w1]
    y0, y1 = xf[w0 - back], xf[w1 - back]
    z0, z1 = xf[w0 + ahead], xf[w1 + ahead]
    a0 = d00 * x0 + d01 * x1 + l00 * y0 + l01 * y1 + u00 * z0 + u01 * z1
    a1 = d10 * x0 + d11 * x1 + l10 * y0 + l11 * y1 + u10 * z0 + u11 * z1
    if add:
        of[w0] += a0
        of[w1] += a1
    else:
        of[w0] = a0
        of[w1] = a1


@numba.njit(cache=True)
def _apply_blocks(lower, diag, upper, n_outer, inner, bit, x, out, weight, add):
    """out = weight·(A along one axis) x, or out += that with ``add``, for every row of x
    (n_f, n_coeffs), both C-contiguous: x viewed as (outer, vertex i on the axis, inner), the
    value/slope bit of the axis being ``bit`` within inner; A's row block i couples vertex i to
    i − 1, i, i + 1 by the 2x2 blocks lower[i], diag[i], upper[i] (lower[0] and upper[-1] are
    zero, so the end vertices read themselves in place of the missing neighbour).

    Vertex-outer loops (the blocks are read once per vertex), and the (value, slope) pairs of
    an inner run walked with the axis's ``bit`` (4, 2, 1) as a constant: about 2× faster than
    one generic loop. Unsigned indices spare numba's negative-index wraparound."""
    xf, of = x.reshape(-1), out.reshape(-1)
    n_v = diag.shape[0]
    half = inner // (2 * bit)
    ubit = numba.uint64(bit)
    n_o = x.shape[0] * n_outer
    for i in range(n_v):
        c = (
            weight * diag[i, 0, 0],
            weight * diag[i, 0, 1],
            weight * diag[i, 1, 0],
            weight * diag[i, 1, 1],
            weight * lower[i, 0, 0],
            weight * lower[i, 0, 1],
            weight * lower[i, 1, 0],
            weight * lower[i, 1, 1],
            weight * upper[i, 0, 0],
            weight * upper[i, 0, 1],
            weight * upper[i, 1, 0],
            weight * upper[i, 1, 1],
        )
        back = numba.uint64(inner if i > 0 else 0)
        ahead = numba.uint64(inner if i < n_v - 1 else 0)
        for o in range(n_o):
            base = numba.uint64((o * n_v + i) * inner)
            if bit == 4:
                for hi in range(half):
                    for lo in range(4):
                        w0 = base + numba.uint64(hi * 8 + lo)
                        _pair(xf, of, w0, w0 + numba.uint64(4), back, ahead, c, add)
            elif bit == 2:
                for hi in range(half):
                    for lo in range(2):
                        w0 = base + numba.uint64(hi * 4 + lo)
                        _pair(xf, of, w0, w0 + numba.uint64(2), back, ahead, c, add)
            elif bit == 1:
                for hi in range(half):
                    w0 = base + numba.uint64(hi * 2)
                    _pair(xf, of, w0, w0 + numba.uint64(1), back, ahead, c, add)
            else:
                for hi in range(half):
                    for lo in range(bit):
                        w0 = base + numba.uint64(hi * 2 * bit + lo)
                        _pair(xf, of, w0, w0 + ubit, back, ahead, c, add)


def model_roughness(model) -> list[tuple[list[slice], Roughness]]:
    """The functions of a :class:`~dbdflow.dynamics.ode.DynamicsModel` grouped by grid: one
    :class:`Roughness` per distinct grid with the slices of the flat u of its functions."""
    groups: dict[tuple, tuple[list[slice], Roughness]] = {}
    for g, sl in zip(model.grids, model.slices, strict=True):
        groups.setdefault(g.key(), ([], Roughness(g)))[0].append(sl)
    return list(groups.values())
