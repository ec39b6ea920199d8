"""Gradient-descent updates of the finite-element coefficients (Algorithm 1, line 18; Adam [34]).

Both optimisers work on the flat coefficient vector u of a
:class:`~dbdflow.dynamics.ode.DynamicsModel`. The learning rate is a scalar or one rate per
coefficient; :func:`group_rates` expands one rate per function F_k (the paper's per-group rates,
e.g. 0.8 for the biases' F's and 0.05 for the weights' in the Rössler study). An optional
``max_norm`` rescales a gradient whose Euclidean norm exceeds it (global norm clipping).

``state()`` returns every mutable quantity as plain numpy arrays and ``load_state`` restores them,
so an optimiser rebuilt with the same hyperparameters and loaded from a checkpoint continues
bit-identically.
"""

from __future__ import annotations

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
    """(grad scaled down to norm ``max_norm`` if it is longer, the norm before clipping)."""
    # einsum, not np.dot: waking idle BLAS threads costs ~5 ms per call on small machines
    norm = float(np.sqrt(np.einsum("i,i->", grad, grad)))
    if max_norm is not None and norm > max_norm:
        return grad * (max_norm / norm), norm
    return grad, norm


class _Optimizer:
    _arrays: tuple[str, ...] = ()

    def __init__(self, lr, max_norm):
        lr = np.asarray(lr, dtype=np.float64)
        if lr.ndim > 1 or not np.all(np.isfinite(lr)) or np.any(lr < 0):
            raise ValueError(f"lr must be a non-negative scalar or 1-d array, got {lr!r}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be positive or None, got {max_norm!r}")
        self.lr, self.max_norm = lr, max_norm
        self.t = 0
        self.grad_norm = float("nan")

    def _check(self, u, grad):
        u, grad = np.asarray(u, dtype=np.float64), np.asarray(grad, dtype=np.float64)
        if u.ndim != 1 or grad.shape != u.shape or (self.lr.ndim and self.lr.shape != u.shape):
            raise ValueError(f"u {u.shape}, grad {grad.shape} and lr {self.lr.shape} disagree")
        bad = np.flatnonzero(~np.isfinite(grad))
        if bad.size:
            raise FloatingPointError(f"non-finite gradient at coefficient {bad[0]} (step {self.t})")
        grad, self.grad_norm = clip_by_norm(grad, self.max_norm)
        self.t += 1
        return u, grad

    def state(self) -> dict[str, np.ndarray]:
        """Mutable state as arrays: step count ``t`` and the moment estimates (Adam)."""
        return {"t": np.array(self.t), **{k: getattr(self, k).copy() for k in self._arrays}}

    def load_state(self, state) -> None:
        self.t = int(state["t"])
        for k in self._arrays:
            setattr(self, k, np.array(state[k], dtype=np.float64))


class SGD(_Optimizer):
    """u ← u − lr ∘ ∇S."""

    def __init__(self, lr, *, max_norm=None):
        super().__init__(lr, max_norm)

    def step(self, u, grad) -> np.ndarray:
        u, grad = self._check(u, grad)
        return u - self.lr * grad


class Adam(_Optimizer):
    """Adam: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², u ← u − lr m̂/(√v̂ + ε), bias-corrected."""

    _arrays = ("m", "v")

    def __init__(self, lr, *, beta1=0.9, beta2=0.999, eps=1e-8, max_norm=None):
        super().__init__(lr, max_norm)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0):
            raise ValueError(f"need 0 <= beta1, beta2 < 1 and eps > 0, got {beta1}, {beta2}, {eps}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = self.v = np.zeros(0)

    def step(self, u, grad) -> np.ndarray:
        u, grad = self._check(u, grad)
        if self.m.shape != u.shape:
            if self.t > 1:
                raise ValueError(f"Adam state has shape {self.m.shape}, u has {u.shape}")
            self.m, self.v = np.zeros_like(u), np.zeros_like(u)
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return u - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
