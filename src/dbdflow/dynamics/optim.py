"""Gradient-descent updates of the finite-element coefficients (Algorithm 1, line 18; Adam [34]).

Both optimisers work on the flat coefficient vector u of a
:class:`~dbdflow.dynamics.ode.DynamicsModel`. The learning rate is a scalar or one rate per
coefficient; :func:`group_rates` expands one rate per function F_k (the paper's per-group rates,
e.g. 0.8 for the biases' F's and 0.05 for the weights' in the Rössler study). An optional
``max_norm`` rescales a gradient whose Euclidean norm exceeds it (global norm clipping).

A gradient with a NaN or infinite entry, or whose norm overflows (finite entries whose sum of
squares exceeds the float64 range, e.g. from moments of ~1e308), raises
:class:`NonFiniteGradient` before anything is changed; so does an update that would make a
coefficient non-finite (u, Adam's m and v and the step count are then left as they were).

``state()`` returns every mutable quantity as plain numpy arrays and ``load_state`` restores them,
so an optimiser rebuilt with the same hyperparameters and loaded from a checkpoint continues
bit-identically.
"""

from __future__ import annotations

import numba
import numpy as np


def group_rates(slices, rates) -> np.ndarray:
    """Per-coefficient learning rates: ``rates[k]`` on ``u[slices[k]]`` (``model.slices``)."""
    slices, rates = list(slices), np.asarray(rates, dtype=np.float64)
    if rates.shape != (len(slices),):
        raise ValueError(f"need one rate per group ({len(slices)}), got shape {rates.shape}")
    out = np.full(max(s.stop for s in slices), np.nan)
    for s, r in zip(slices, rates, strict=True):
        out[s] = r
    if np.isnan(out).any():
        raise ValueError("the slices do not cover every coefficient")
    return out


def clip_by_norm(grad, max_norm):
    """(grad scaled down to norm ``max_norm`` if it is longer, the norm before clipping);
    :class:`NonFiniteGradient` if an entry is not finite or the norm overflows."""
    grad = np.asarray(grad, dtype=np.float64)
    sumsq, bad = _scan(grad)
    _raise_if_bad(grad, sumsq, bad, "")
    norm = float(np.sqrt(sumsq))
    if max_norm is not None and norm > max_norm:
        return grad * (max_norm / norm), norm
    return grad, norm


class NonFiniteGradient(FloatingPointError):
    """A gradient entry is NaN or infinite, the gradient norm overflows, or an update would make
    a coefficient non-finite; ``index`` is the coefficient: the first non-finite entry, the entry
    at which the sum of squares overflows, or the first coefficient the update would spoil."""

    def __init__(self, message, index):
        super().__init__(message)
        self.index = index


def _raise_if_bad(grad, sumsq, bad, where) -> None:
    """The :class:`NonFiniteGradient` of a :func:`_scan` result (``bad`` >= 0), if any."""
    if bad < 0:
        return
    g = grad[bad]
    if np.isfinite(g):  # every entry so far finite, their sum of squares not
        raise NonFiniteGradient(
            f"gradient norm overflows at coefficient {bad} (gradient {g:.3e}{where}): the sum "
            f"of squares exceeds the float64 range ({sumsq})",
            int(bad),
        )
    raise NonFiniteGradient(f"non-finite gradient at coefficient {bad}{where}", int(bad))


class _Optimizer:
    """Shared checks, norm clipping and state. Updates are in place and touch only coefficients
    whose gradient has ever been non-zero (Adam) or is non-zero now (SGD): for every other
    coefficient the dense update is exactly u ← u, so the result is bit-identical to the dense
    formula at a cost proportional to the region the trajectories visit, not to the grid."""

    _arrays: tuple[str, ...] = ()

    def __init__(self, lr, max_norm):
        lr = np.asarray(lr, dtype=np.float64)
        if lr.ndim > 1 or not np.all(np.isfinite(lr)) or np.any(lr < 0):
            raise ValueError(f"lr must be a non-negative scalar or 1-d array, got {lr!r}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be positive or None, got {max_norm!r}")
        self.lr, self.max_norm = lr, max_norm
        self._rates = np.ascontiguousarray(np.atleast_1d(lr))
        self.t = 0
        self.grad_norm = float("nan")

    def _check(self, u, grad, nonzero) -> tuple[np.ndarray, np.ndarray | None, float]:
        """Validate, record the norm, count the step; returns (grad as float64, the indices to
        visit or None for all, clipping factor)."""
        if not (isinstance(u, np.ndarray) and u.dtype == np.float64 and u.flags.c_contiguous):
            raise ValueError("u must be a contiguous float64 array (it is updated in place)")
        grad = np.asarray(grad, dtype=np.float64)
        if u.ndim != 1 or grad.shape != u.shape or (self.lr.ndim and self.lr.shape != u.shape):
            raise ValueError(f"u {u.shape}, grad {grad.shape} and lr {self.lr.shape} disagree")
        if nonzero is not None:
            nonzero = np.asarray(nonzero, dtype=np.int64)
            inside = nonzero.size == 0 or (nonzero.min() >= 0 and nonzero.max() < u.size)
            if nonzero.ndim != 1 or not inside:
                raise ValueError(f"nonzero must be distinct indices into u (size {u.size})")
        sumsq, bad = self._scan(u, grad, nonzero)
        _raise_if_bad(grad, sumsq, bad, f", step {self.t}")
        self.grad_norm = float(np.sqrt(sumsq))
        self.t += 1
        if self.max_norm is not None and self.grad_norm > self.max_norm:
            return grad, nonzero, self.max_norm / self.grad_norm
        return grad, nonzero, 1.0

    def _scan(self, u, grad, nonzero):
        return _scan(grad) if nonzero is None else _scan_at(grad, nonzero)

    def _spoiled(self, u, bad) -> None:
        """Raise if the update kernel found a coefficient it would make non-finite (``bad`` >=
        0; the kernel then changed nothing): the step is not counted."""
        if bad >= 0:
            self.t -= 1
            raise NonFiniteGradient(
                f"the update would make coefficient {bad} non-finite (u = {u[bad]:.3e}, step "
                f"{self.t}): lower the learning rate or clip the gradient",
                int(bad),
            )

    def state(self) -> dict[str, np.ndarray]:
        """Mutable state as arrays: step count ``t`` and the moment estimates (Adam)."""
        return {"t": np.array(self.t), **{k: getattr(self, k).copy() for k in self._arrays}}

    def load_state(self, state) -> None:
        self.t = int(state["t"])
        for k in self._arrays:
            setattr(self, k, np.array(state[k], dtype=np.float64))


class SGD(_Optimizer):
    """u ← u − lr ∘ ∇S (in place; returns u)."""

    def __init__(self, lr, *, max_norm=None):
        super().__init__(lr, max_norm)

    def step(self, u, grad, nonzero=None) -> np.ndarray:
        """One update; ``nonzero``: distinct indices outside which ``grad`` is 0 (None: any)."""
        grad, nonzero, factor = self._check(u, grad, nonzero)
        if nonzero is None:
            nonzero = np.flatnonzero(grad)
        self._spoiled(u, _sgd(u, grad, nonzero, self._rates, factor))
        return u


class Adam(_Optimizer):
    """Adam: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², u ← u − lr m̂/(√v̂ + ε), bias-corrected
    (in place; returns u)."""

    _arrays = ("m", "v")

    def __init__(self, lr, *, beta1=0.9, beta2=0.999, eps=1e-8, max_norm=None):
        super().__init__(lr, max_norm)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0):
            raise ValueError(f"need 0 <= beta1, beta2 < 1 and eps > 0, got {beta1}, {beta2}, {eps}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = self.v = np.zeros(0)
        self._active = None
        self._runs = None  # the active set as runs of consecutive coefficients
        self._new = np.empty((3, 0))  # scratch of the one-pass update

    def load_state(self, state) -> None:
        super().load_state(state)
        self._active = self._runs = None

    def _scan(self, u, grad, nonzero):
        """Norm and finiteness, and every coefficient with a first non-zero gradient joins the
        active set (those whose m or v is non-zero), in one pass over the gradient."""
        if self.m.shape != u.shape:
            if self.t > 0:
                raise ValueError(f"Adam state has shape {self.m.shape}, u has {u.shape}")
            self.m, self.v = np.zeros_like(u), np.zeros_like(u)
        if self._active is None:
            touched = (self.m != 0) | (self.v != 0)
            active = np.zeros(u.size, dtype=np.int64)
            n = int(touched.sum())
            active[:n] = np.flatnonzero(touched)
            self._active = [touched, active, n]
        touched, active, n = self._active
        if nonzero is None:
            sumsq, bad, grown = _scan_mark(grad, touched, active, n)
        else:
            sumsq, bad, grown = _scan_mark_at(grad, nonzero, touched, active, n)
        if grown > n:  # keep the active set sorted: the update then walks memory in order
            active[:grown].sort(kind="stable")  # a sorted run plus a short tail: a merge
        if grown > n or self._runs is None:
            self._runs = _runs(active[:grown])
        self._active[2] = grown
        return sumsq, bad

    def step(self, u, grad, nonzero=None) -> np.ndarray:
        """One update; ``nonzero``: distinct indices outside which ``grad`` is 0 (None: any)."""
        grad, _, factor = self._check(u, grad, nonzero)
        n = self._active[2]
        if self._new.shape[1] < n:
            self._new = np.empty((3, max(n, 2 * self._new.shape[1])))
        bad = _adam(
            u,
            grad,
            self.m,
            self.v,
            *self._runs,
            self._rates,
            factor,
            self.beta1,
            self.beta2,
            self.eps,
            1 - self.beta1**self.t,
            1 - self.beta2**self.t,
            self._new,
        )
        self._spoiled(u, bad)
        return u


@numba.njit(cache=True)
def _scan(grad):
    """(Σ g², index of the first non-finite entry or of the entry at which Σ g² overflows, or
    −1)."""
    total = 0.0
    for i in range(grad.size):
        g = grad[i]
        if not np.isfinite(g):
            return total, i
        total += g * g
        if total == np.inf:
            return total, i
    return total, -1


@numba.njit(cache=True)
def _scan_at(grad, index):
    """:func:`_scan` over ``grad[index]`` (``index`` without repeats)."""
    total = 0.0
    for i in index:
        g = grad[i]
        if not np.isfinite(g):
            return total, i
        total += g * g
        if total == np.inf:
            return total, i
    return total, -1


@numba.njit(cache=True)
def _sgd_one(u, grad, i, rates, factor):
    g = grad[i]
    if factor != 1.0:
        g = g * factor
    return u[i] - (rates[0] if rates.size == 1 else rates[i]) * g


@numba.njit(cache=True)
def _sgd(u, grad, index, rates, factor):
    """SGD on ``index``; returns −1, or (changing nothing) the first index whose new u would be
    non-finite."""
    for i in index:
        if grad[i] != 0.0 and not np.isfinite(_sgd_one(u, grad, i, rates, factor)):
            return i
    for i in index:
        if grad[i] != 0.0:
            u[i] = _sgd_one(u, grad, i, rates, factor)
    return -1


@numba.njit(cache=True)
def _scan_mark(grad, touched, active, n_active):
    """:func:`_scan` that also appends each untouched index with g ≠ 0 to ``active``."""
    total = 0.0
    for i in range(grad.size):
        g = grad[i]
        if g != 0.0:
            if not np.isfinite(g):
                return total, i, n_active
            total += g * g
            if total == np.inf:
                return total, i, n_active
            if not touched[i]:
                touched[i] = True
                active[n_active] = i
                n_active += 1
    return total, -1, n_active


@numba.njit(cache=True)
def _scan_mark_at(grad, index, touched, active, n_active):
    """:func:`_scan_mark` over ``grad[index]`` (``index`` without repeats)."""
    total = 0.0
    for i in index:
        g = grad[i]
        if g != 0.0:
            if not np.isfinite(g):
                return total, i, n_active
            total += g * g
            if total == np.inf:
                return total, i, n_active
            if not touched[i]:
                touched[i] = True
                active[n_active] = i
                n_active += 1
    return total, -1, n_active


@numba.njit(cache=True)
def _runs(index):
    """(starts, ends) of the runs of consecutive values in the sorted ``index``."""
    starts = np.empty(index.size, dtype=np.int64)
    ends = np.empty(index.size, dtype=np.int64)
    count = 0
    for j in range(index.size):
        i = index[j]
        if count and ends[count - 1] == i:
            ends[count - 1] = i + 1
        else:
            starts[count], ends[count] = i, i + 1
            count += 1
    return starts[:count], ends[:count]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _adam_one(g, m, v, u, lr, factor, b1, b2, eps, c1, c2):
    """(new m, v, u) of one coefficient: the dense formula's operations, in the same order (a
    rounding-level change here, e.g. folding the bias corrections into scalar factors, changes
    the paper's Rössler training enough that it diverges at step 2,559 instead of finishing).
    ``g * factor`` with factor 1 (no clipping) is g exactly."""
    g = g * factor
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / c1
    v_hat = v / c2
    return m, v, u - lr * m_hat / (np.sqrt(v_hat) + eps)


@numba.njit(cache=True, error_model="numpy")
def _adam(u, grad, m, v, starts, ends, rates, factor, b1, b2, eps, c1, c2, new):
    """Adam on the active coefficients, runs [starts, ends) of consecutive ones: the new (m, v,
    u) go to the scratch ``new`` (3, ≥ n_active) and are committed only if every new u is finite;
    returns −1, or (changing nothing) the first active coefficient whose new u would be
    non-finite. (Unsigned offsets and error_model "numpy": the loops vectorise, 4× faster; a
    signed i − s or j + q could be negative for numba and its wraparound makes them gathers.)"""
    bad = False
    per_coefficient = rates.size > 1
    j = np.uint64(0)
    for r in range(starts.size):
        s = np.uint64(starts[r])
        n = np.uint64(ends[r]) - s
        if per_coefficient:
            for q in range(n):
                i = s + q
                mi, vi, ui = _adam_one(
                    grad[i], m[i], v[i], u[i], rates[i], factor, b1, b2, eps, c1, c2
                )
                new[0, j + q], new[1, j + q], new[2, j + q] = mi, vi, ui
                bad |= (ui - ui) != 0.0  # inf or NaN
        else:
            lr = rates[0]
            for q in range(n):
                i = s + q
                mi, vi, ui = _adam_one(grad[i], m[i], v[i], u[i], lr, factor, b1, b2, eps, c1, c2)
                new[0, j + q], new[1, j + q], new[2, j + q] = mi, vi, ui
                bad |= (ui - ui) != 0.0
        j += n
    j = np.uint64(0)
    if bad:
        for r in range(starts.size):
            for i in range(starts[r], ends[r]):
                if not np.isfinite(new[2, j]):
                    return i
                j += np.uint64(1)
    for r in range(starts.size):
        s = np.uint64(starts[r])
        n = np.uint64(ends[r]) - s
        for q in range(n):
            i = s + q
            m[i], v[i], u[i] = new[0, j + q], new[1, j + q], new[2, j + q]
        j += n
    return -1
