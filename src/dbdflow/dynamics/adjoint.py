"""Exact discrete adjoint of the forward schemes in :mod:`dbdflow.dynamics.ode` (eqs. 28-33, 41).

Objective. With data steps t_n = t_0 + nΔt, quadrature weights w_n (zero outside the window
[τ, τ+Δτ]) and a per-step "source density" s_n = ∂ℓ/∂θ(t_n) supplied by the caller, the gradient
is that of

    S(u, θ_0) = Σ_n w_n [ℓ_n(θ_n) + λ_r |θ_n − θ̄_n|²],
    ∂S/∂θ_n = g_n = w_n (s_n + 2λ_r (θ_n − θ̄_n)).

For a dynamic Boltzmann distribution ℓ_n is the KL divergence of eq. 28 at t_n, whose gradient is
the moment difference s_n = μ̃(θ_n) − μ(t_n) (the caller computes it: exactly, by sampling, ...); the
λ_r term is the L2 regulariser of eq. 32. Only g_n enters, so any loss with known ∂ℓ_n/∂θ_n works.

Discrete adjoint. One step of an explicit Runge-Kutta scheme (size h = Δt/substeps) is
θ_{m+1} = θ_m + h Σ_i b_i K_i with K_i = F(Y_i; u), Y_i = θ_m + h Σ_{j<i} A_ij K_j. Writing
λ_m = dS/dθ_m (the total derivative through all later steps), reverse-mode differentiation of
that step gives, starting from K̄_i = h b_i λ_{m+1}, for i = s, …, 1:

    Ȳ_i = (∂F/∂θ)(Y_i)ᵀ K̄_i,   dS/du += (∂F/∂u)(Y_i)ᵀ K̄_i,   K̄_j += h A_ij Ȳ_i (j < i),

and λ_m = λ_{m+1} + Σ_i Ȳ_i, plus g_n when step m = n·substeps is a data step. The recursion
starts at the last data step with non-zero weight, λ = g_last (the terminal condition φ = 0 plus
that step's own source), and runs back to data step ``stop``: it is the transpose of the linearised
scheme, so the result is the exact gradient of the discrete S (to rounding), not an approximation
of the continuous one. For Euler (s = 1): λ_m = λ_{m+1} + h Jᵀ(θ_m) λ_{m+1}, dS/du += h Bᵀ λ_{m+1}.

Relation to the continuum. With φ(t) = −λ and s = ∂ℓ/∂θ, the Euler recursion is a backward step
of dφ/dt = s − (∂F/∂θ)ᵀφ (eq. 31, eq. 33 with the L2 term), the source entering as jumps w_n s_n
at the data points, and dS/du = −Σ h Bᵀ φ is the quadrature of eq. 30. As Δt → 0 with trapezoid
weights (Δt/2 at the window's ends, Δt inside: :func:`quadrature_weights`), Σ_n w_n ℓ_n → ∫ℓ dt,
so the discrete gradient converges to the continuous one (the discrete one is what finite
differences of the computed S check).

Windows (eq. 41). Solve forward from t_0 to the window end and put the weights on the window. With
``stop=0`` the adjoint runs back to t_0 and the gradient is exact for the windowed objective
(θ(τ) depends on u). With ``stop`` = the window start, it stops at τ as in the paper: the result is
the exact gradient when θ(τ) is held fixed (the truncated, cheaper, eq. 41 form).
"""

from __future__ import annotations

import numba
import numpy as np

from dbdflow.dynamics.fem import hermite_slopes, locate, tail_tensors
from dbdflow.dynamics.ode import SCHEMES, cache_line, point_axis, scratch

RULES = ("trapezoid", "uniform")


def quadrature_weights(n_times, dt, start=0, end=None, rule="trapezoid") -> np.ndarray:
    """Weights w_n (n_times,) of ∫_{t_start}^{t_end} ℓ dt on the data steps, zero outside.

    ``trapezoid``: Δt/2 at start and end, Δt between (second order); ``uniform``: Δt on every data
    step of the window, ends included (a plain sum over the data in the window, as in Algorithm 1).
    A one-point window (start = end) weighs its point by Δt under either rule, not by 0.
    """
    end = n_times - 1 if end is None else end
    if not 0 <= start <= end < n_times:
        raise ValueError(
            f"need 0 <= start <= end < n_times={n_times}, got start={start}, end={end}"
        )
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    w = np.zeros(n_times)
    w[start : end + 1] = dt
    if rule == "trapezoid" and end > start:
        w[start] = w[end] = dt / 2
    return w


class SparseGradient:
    """dS/du accumulated in place: ``values`` (dense, n_coeffs) and the indices of the entries
    written since the last :meth:`clear` (every other entry is 0). Training touches only the
    cells its trajectories visit, so this keeps the cost of a step independent of the grid size."""

    def __init__(self, n_coeffs: int):
        self.values = np.zeros(n_coeffs)
        self._mark = np.zeros(n_coeffs, dtype=np.bool_)
        self._index = np.empty(n_coeffs, dtype=np.int64)
        self._count = np.zeros(1, dtype=np.int64)

    @property
    def nonzero(self) -> np.ndarray:
        """Indices of the written entries (a superset of the non-zero ones), in write order."""
        return self._index[: self._count[0]]

    def clear(self) -> None:
        _clear(self.values, self._mark, self.nonzero)
        self._count[0] = 0

    def add(self, start: int, values: np.ndarray) -> None:
        """Add a dense block: ``self.values[start : start + len(values)] += values``."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        if not 0 <= start <= self.values.size - values.size:
            raise ValueError(f"block of {values.size} at {start} exceeds {self.values.size}")
        _add_block(self.values, self._mark, self._index, self._count, start, values)


@numba.njit(cache=True)
def _add_block(total, mark, index, count, start, values):
    n = count[0]
    for j in range(values.size):
        i = start + j
        total[i] += values[j]
        if not mark[i]:
            mark[i] = True
            index[n] = i
            n += 1
    count[0] = n


@numba.njit(cache=True)
def _clear(values, mark, index):
    for i in index:
        values[i] = 0.0
        mark[i] = False


def gradient(model, traj, dmu, weights, *, l2=0.0, theta_bar=0.0, stop=0, out=None):
    """(dS/du (n_coeffs,), dS/dθ(t_stop) (n_ic, K)) for the objective in the module docstring.

    ``traj`` is :func:`dbdflow.dynamics.ode.solve`'s result for ``model``; ``dmu`` (n_ic,
    n_steps + 1, K) the source densities s_n = μ̃ − μ at the data steps (ignored where the weight
    is 0); ``weights`` (n_steps + 1,) the w_n; ``theta_bar`` broadcasts against ``traj.theta``.
    dS/du is summed over the initial conditions (scale ``dmu``/``weights`` for a batch mean).
    With ``out`` (a :class:`SparseGradient`) dS/du is added to ``out.values`` and the written
    entries recorded; the returned dS/du is then ``out.values``.
    """
    theta = traj.theta
    _, n_times, n_params = theta.shape
    if traj.u.shape != (model.n_coeffs,) or n_params != model.n_params:
        raise ValueError("traj was not solved with this model (coefficient or parameter count)")
    dmu = np.asarray(dmu, dtype=np.float64)
    if dmu.shape != theta.shape:
        raise ValueError(f"dmu must have the trajectory's shape {theta.shape}, got {dmu.shape}")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_times,):
        raise ValueError(f"weights must have shape ({n_times},), got {weights.shape}")
    if int(stop) != stop or not traj.keep_from <= stop < n_times:
        raise ValueError(
            f"stop must be a data step in {traj.keep_from}..{n_times - 1} (the trajectory keeps "
            f"stage points from step {traj.keep_from}), got {stop!r}"
        )
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    nonzero = np.flatnonzero(weights)
    # the source only where w ≠ 0 (NaN moments outside the window stay out)
    density = dmu[:, nonzero]
    if l2:
        bar = np.broadcast_to(theta_bar, theta.shape)[:, nonzero]
        density = density + (2.0 * l2) * (theta[:, nonzero] - bar)
    source = np.zeros_like(theta)
    source[:, nonzero] = weights[None, nonzero, None] * density
    last = int(nonzero[-1]) if nonzero.size else -1
    a, b = SCHEMES[traj.scheme]
    h = traj.dt / traj.substeps
    if out is None:
        out = SparseGradient(model.n_coeffs)
    elif out.values.shape != (model.n_coeffs,):
        raise ValueError(f"out holds {out.values.size} coefficients, the model {model.n_coeffs}")
    dtheta = _adjoint(
        traj.stages,
        traj.keep_from * traj.substeps,
        source,
        last,
        int(stop),
        traj.substeps,
        h,
        a,
        b,
        traj.u,
        model.pack,
        model.rank_key,
        model.workspace(),
        out.values,
        out._mark,
        out._index,
        out._count,
    )
    return out.values, dtheta


@numba.njit(cache=True, inline="always")
def _touch(mark, index, count, o):
    if not mark[o]:
        mark[o] = True
        index[count[0]] = o
        count[0] += 1


@numba.njit(cache=True, inline="always")
def line_slot(j, rank):
    """Where a cache line keeps coefficient j = Σ_a q_a 4^a of a member (in that member's 4^d
    block): the first axis outermost, (q0, rest) → q0·4^(d−1) + (j >> 2), so that sums over q0
    run over contiguous rows."""
    return ((j & 3) << (2 * (rank - 1))) + (j >> 2) if rank > 1 else j


@numba.njit(cache=True)
def _flush(
    line, tags, line_group, used, grads, vertex0, local, ms, mo, rank, gu, mark, index, count
):
    """Add a cache line's accumulated dS/du of every member that received some to gu."""
    g = line_group[line]
    vertex = tags[line] - vertex0[g]
    nb = 1 << (2 * rank)
    for jm in range(ms[g + 1] - ms[g]):
        if used[line, jm]:
            o = mo[ms[g] + jm] + (vertex << rank)
            for j in range(nb):
                idx = o + local[g, j]
                gu[idx] += grads[line, jm * nb + line_slot(j, rank)]
                _touch(mark, index, count, idx)
            used[line, jm] = False


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _adjoint(
    stages,
    m_kept,
    source,
    last,
    stop,
    substeps,
    h,
    a,
    b,
    u,
    pack,
    rank_key,
    work,
    gu,
    mark,
    index,
    count,
):
    """Reverse sweep per IC (``stages`` start at step ``m_kept``). For ``rank_key.ndim`` ≤ 3
    (see ode._forward) the cells' coefficients come from a cell cache and dS/du accumulates per
    cache line, added to gu (and marked) once per line rather than per stage point; otherwise
    rows of u are read and written directly.

    Cache path, per stage point and group: the combined coefficients C = Σ_k K̄_k c_k of the
    cell (members k, c_k their coefficients) and dS/du_k += K̄_k f (f the 4^d basis values);
    then Ȳ_a = ∂/∂x_a Σ C f, summed one axis at a time (d = 3, shape values α, β, ε, primes
    their x-derivatives): P = Σ_q0 α C, P' = Σ_q0 α' C, and
    Ȳ_0 = Σ ε Σ β P', Ȳ_1 = Σ ε Σ β' P, Ȳ_2 = Σ ε' Σ β P."""
    n_ic, _, n_stages, n_params = stages.shape
    gd, gc, lo, up, ih, hh, nc, vs, rw, l0, ms, mp, mo, local, vertex0, geo = pack
    rank = rank_key.ndim
    x, v1, dv1, w, rv, _ = scratch(gd)
    comb = np.empty((rv.size, 4))
    f = np.empty(local.shape[1])  # basis values in line order
    row = np.empty(local.shape[1])  # Σ_k c_k u_k on the cell, in line order
    part = np.empty((2, 16))  # d ≥ 2: row summed over q0 with α and with α'
    cache, grads, tags, line_group, used = work
    tags[:] = -1
    used[:] = False
    dtheta = np.zeros((n_ic, n_params))
    lam = np.empty(n_params)
    kbar = np.empty((n_stages, n_params))
    y = np.empty(n_params)
    ybar = np.empty(n_params)
    one = numba.uint64(1)
    if last < stop:
        return dtheta
    for i in range(n_ic):
        for k in range(n_params):
            lam[k] = source[i, last, k]
        for n in range(last - 1, stop - 1, -1):
            for sub in range(substeps - 1, -1, -1):
                m = n * substeps + sub
                for s in range(n_stages):
                    for k in range(n_params):
                        kbar[s, k] = h * b[s] * lam[k]
                for s in range(n_stages - 1, -1, -1):
                    for k in range(n_params):
                        y[k] = stages[i, m - m_kept, s, k]
                        ybar[k] = 0.0
                    # ybar = (∂F/∂θ)(y)ᵀ kbar[s], gu += (∂F/∂u)(y)ᵀ kbar[s], group by group
                    for g in range(gd.size):
                        if rank <= 3:
                            # per-axis shape values α, β, ε and their x-derivatives α', β', ε'
                            c0, _, t, a0, a1, a2, a3 = point_axis(y, gc, geo, nc, g, 0)
                            da0, da1, da2, da3 = hermite_slopes(t, ih[g, 0])
                            vertex = c0 * vs[g, 0]
                            b0 = b1 = b2 = b3 = db0 = db1 = db2 = db3 = 0.0
                            e0 = e1 = e2 = e3 = de0 = de1 = de2 = de3 = 0.0
                            if rank >= 2:
                                c1, _, t, b0, b1, b2, b3 = point_axis(y, gc, geo, nc, g, 1)
                                db0, db1, db2, db3 = hermite_slopes(t, ih[g, 1])
                                vertex += c1 * vs[g, 1]
                            if rank == 3:
                                c2, _, t, e0, e1, e2, e3 = point_axis(y, gc, geo, nc, g, 2)
                                de0, de1, de2, de3 = hermite_slopes(t, ih[g, 2])
                                vertex += c2 * vs[g, 2]
                            nb = 1 << (2 * rank)
                            key = vertex0[g] + vertex
                            line = cache_line(key)
                            if tags[line] != key:  # (see ode._forward)
                                if tags[line] >= 0:
                                    _flush(
                                        line,
                                        tags,
                                        line_group,
                                        used,
                                        grads,
                                        vertex0,
                                        local,
                                        ms,
                                        mo,
                                        rank,
                                        gu,
                                        mark,
                                        index,
                                        count,
                                    )
                                tags[line] = key
                                line_group[line] = g
                                for jm in range(ms[g + 1] - ms[g]):
                                    o = mo[ms[g] + jm] + (vertex << rank)
                                    for j in range(nb):
                                        cache[line, jm * nb + line_slot(j, rank)] = u[
                                            o + local[g, j]
                                        ]
                                        grads[line, jm * nb + j] = 0.0
                            # basis values f[q0, rest] = α_q0 Π_rest (β, ε)
                            if rank == 1:
                                f[0], f[1], f[2], f[3] = a0, a1, a2, a3
                            elif rank == 2:
                                for q in range(4):
                                    bq = (b0, b1, b2, b3)[q]
                                    f[q], f[4 + q], f[8 + q], f[12 + q] = (
                                        a0 * bq,
                                        a1 * bq,
                                        a2 * bq,
                                        a3 * bq,
                                    )
                            else:
                                for q2 in range(4):
                                    eq = (e0, e1, e2, e3)[q2]
                                    for q1 in range(4):
                                        w1 = (b0, b1, b2, b3)[q1] * eq
                                        r = q1 + 4 * q2
                                        f[r], f[16 + r], f[32 + r], f[48 + r] = (
                                            a0 * w1,
                                            a1 * w1,
                                            a2 * w1,
                                            a3 * w1,
                                        )
                            # the combined row Σ_k c_k u_k (its x-gradient is Σ_k c_k ∇F_k) and
                            # the u-gradients c_k f, accumulated on the line
                            for j in range(nb):
                                row[j] = 0.0
                            for jm in range(ms[g + 1] - ms[g]):
                                c = kbar[s, mp[ms[g] + jm]]
                                if c == 0.0:
                                    continue
                                used[line, jm] = True
                                for j in range(nb):
                                    row[j] += c * cache[line, jm * nb + j]
                                    grads[line, jm * nb + j] += c * f[j]
                            # its gradient, one axis summed at a time
                            if rank == 1:
                                ybar[gc[g, 0]] += (
                                    da0 * row[0] + da1 * row[1] + da2 * row[2] + da3 * row[3]
                                )
                                continue
                            n_rest = nb >> 2
                            for r in range(n_rest):
                                r0, r1, r2, r3 = (
                                    row[r],
                                    row[n_rest + r],
                                    row[2 * n_rest + r],
                                    row[3 * n_rest + r],
                                )
                                part[0, r] = a0 * r0 + a1 * r1 + a2 * r2 + a3 * r3
                                part[1, r] = da0 * r0 + da1 * r1 + da2 * r2 + da3 * r3
                            if rank == 2:
                                ybar[gc[g, 0]] += (
                                    b0 * part[1, 0]
                                    + b1 * part[1, 1]
                                    + b2 * part[1, 2]
                                    + b3 * part[1, 3]
                                )
                                ybar[gc[g, 1]] += (
                                    db0 * part[0, 0]
                                    + db1 * part[0, 1]
                                    + db2 * part[0, 2]
                                    + db3 * part[0, 3]
                                )
                                continue
                            g0 = g1 = g2 = 0.0
                            for q2 in range(4):
                                r = 4 * q2
                                pa0, pa1, pa2, pa3 = (
                                    part[0, r],
                                    part[0, r + 1],
                                    part[0, r + 2],
                                    part[0, r + 3],
                                )
                                pd0, pd1, pd2, pd3 = (
                                    part[1, r],
                                    part[1, r + 1],
                                    part[1, r + 2],
                                    part[1, r + 3],
                                )
                                sb = b0 * pa0 + b1 * pa1 + b2 * pa2 + b3 * pa3
                                eq, deq = (e0, e1, e2, e3)[q2], (de0, de1, de2, de3)[q2]
                                g0 += eq * (b0 * pd0 + b1 * pd1 + b2 * pd2 + b3 * pd3)
                                g1 += eq * (db0 * pa0 + db1 * pa1 + db2 * pa2 + db3 * pa3)
                                g2 += deq * sb
                            ybar[gc[g, 0]] += g0
                            ybar[gc[g, 1]] += g1
                            ybar[gc[g, 2]] += g2
                            continue
                        d = gd[g]
                        for ax in range(d):
                            x[ax] = y[gc[g, ax]]
                        base, _ = locate(x, lo, up, ih, hh, nc, vs, g, d, v1, dv1, True)
                        tail_tensors(v1, dv1, d, d, w)
                        n_rows = 1 << (2 * (d - 1))
                        # one pass over the cell's rows: scatter c_k f_j into every member's
                        # gu, and gather the combined row Σ_k c_k u_k, whose x-gradient is
                        # Σ_k c_k ∇F_k (all members share the coordinates)
                        a0, a1, a2, a3 = v1[0, 0], v1[0, 1], v1[0, 2], v1[0, 3]
                        l0u = numba.uint64(l0[g])
                        n_r = numba.uint64(n_rows)
                        comb[:n_rows] = 0.0
                        for mm in range(ms[g], ms[g + 1]):
                            c = kbar[s, mp[mm]]
                            if c == 0.0:
                                continue
                            s0, s1, s2, s3 = c * a0, c * a1, c * a2, c * a3
                            off = numba.uint64(base + mo[mm])
                            for r in range(n_r):
                                o = off + numba.uint64(rw[g, r])
                                o2 = o + l0u
                                wr = w[0, r]
                                comb[r, 0] += c * u[o]
                                comb[r, 1] += c * u[o + one]
                                comb[r, 2] += c * u[o2]
                                comb[r, 3] += c * u[o2 + one]
                                gu[o] += wr * s0
                                gu[o + one] += wr * s1
                                gu[o2] += wr * s2
                                gu[o2 + one] += wr * s3
                                _touch(mark, index, count, o)
                                _touch(mark, index, count, o + one)
                                _touch(mark, index, count, o2)
                                _touch(mark, index, count, o2 + one)
                        acc0 = 0.0
                        for r in range(n_r):
                            c0, c1, c2, c3 = comb[r, 0], comb[r, 1], comb[r, 2], comb[r, 3]
                            acc0 += w[0, r] * (
                                c0 * dv1[0, 0] + c1 * dv1[0, 1] + c2 * dv1[0, 2] + c3 * dv1[0, 3]
                            )
                            rv[r] = c0 * a0 + c1 * a1 + c2 * a2 + c3 * a3
                        ybar[gc[g, 0]] += acc0
                        for ax in range(1, d):
                            acc = 0.0
                            for r in range(n_r):
                                acc += w[ax, r] * rv[r]
                            ybar[gc[g, ax]] += acc
                    for k in range(n_params):
                        lam[k] += ybar[k]
                    for j in range(s):
                        if a[s, j] != 0.0:
                            ca = h * a[s, j]
                            for k in range(n_params):
                                kbar[j, k] += ca * ybar[k]
            for k in range(n_params):
                lam[k] += source[i, n, k]
        for k in range(n_params):
            dtheta[i, k] = lam[k]
    for line in range(tags.size):
        if tags[line] >= 0:
            _flush(
                line,
                tags,
                line_group,
                used,
                grads,
                vertex0,
                local,
                ms,
                mo,
                rank,
                gu,
                mark,
                index,
                count,
            )
    return dtheta
