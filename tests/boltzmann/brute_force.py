"""Exact results for small Boltzmann machines by enumerating every joint state.

Independent of the compiled kernels: statistics are recomputed from the clique definitions with
plain numpy, so enumeration also checks ``model.statistics``.
"""

from __future__ import annotations

import math

import numpy as np


def unit_states(model) -> np.ndarray:
    return np.concatenate([np.full(layer.size, len(layer.species) + 1) for layer in model.layers])


def all_states(model) -> np.ndarray:
    """Every joint state x (n_states, n_units) int8, visible units first."""
    sizes = unit_states(model)
    if np.prod(sizes.astype(float)) > 2**17:
        raise ValueError("too many states to enumerate")
    grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int8)


def clique_statistics(model, x: np.ndarray) -> np.ndarray:
    """T_k(x) from the clique lists with numpy (x: (n, n_units))."""
    units, states, param = model.cliques
    out = np.zeros((x.shape[0], model.n_params), dtype=np.int64)
    for c in range(param.size):
        ok = np.ones(x.shape[0], dtype=bool)
        for m in range(3):
            if units[c, m] >= 0:
                ok &= x[:, units[c, m]] == states[c, m]
        out[:, param[c]] += ok
    return out


class Exact:
    """The joint distribution of a small model at θ, by enumeration."""

    def __init__(self, model, theta):
        self.model = model
        self.x = all_states(model)
        self.t = clique_statistics(model, self.x)
        logw = self.t @ np.asarray(theta, dtype=float)
        top = logw.max()
        self.log_z = top + math.log(np.exp(logw - top).sum())
        self.p = np.exp(logw - self.log_z)

    @property
    def moments(self) -> np.ndarray:
        return self.p @ self.t

    @property
    def covariance(self) -> np.ndarray:
        d = self.t - self.moments
        return (d * self.p[:, None]).T @ d

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Index of each joint state (rows of x, n_units wide) in ``self.x``."""
        sizes = unit_states(self.model)
        return np.ravel_multi_index(tuple(x.T.astype(np.int64)), tuple(sizes))

    def visible_marginal(self) -> tuple[np.ndarray, np.ndarray]:
        """(visible states, probabilities) of p(v)."""
        n = self.model.n_sites
        v, inverse = np.unique(self.x[:, :n], axis=0, return_inverse=True)
        return v, np.bincount(inverse.ravel(), weights=self.p, minlength=v.shape[0])

    def conditional_statistics(self, v: np.ndarray) -> np.ndarray:
        """E[T | v] for one visible state."""
        n = self.model.n_sites
        rows = np.all(self.x[:, :n] == v, axis=1)
        w = self.p[rows] / self.p[rows].sum()
        return w @ self.t[rows]

    def hidden_marginals(self, v: np.ndarray) -> np.ndarray:
        """p(h_j = s | v), (n_hidden, max states)."""
        n = self.model.n_sites
        rows = np.all(self.x[:, :n] == v, axis=1)
        w = self.p[rows] / self.p[rows].sum()
        h = self.x[rows, n:]
        width = int(unit_states(self.model)[n:].max())
        return np.stack(
            [np.bincount(h[:, j], weights=w, minlength=width) for j in range(h.shape[1])]
        )

    def sample(self, n: int, rng) -> np.ndarray:
        """n exact joint samples (n, n_units)."""
        return self.x[rng.choice(self.p.size, size=n, p=self.p)]


def chi2_quantile(df: int, p: float) -> float:
    """Upper p-quantile of the chi-square distribution (Wilson-Hilferty; accurate to < 1 %)."""
    z = normal_quantile(1.0 - p)
    return df * (1.0 - 2.0 / (9 * df) + z * math.sqrt(2.0 / (9 * df))) ** 3


def normal_quantile(q: float) -> float:
    """Inverse standard normal CDF by bisection on math.erf."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def chi_square(observed_codes: np.ndarray, p: np.ndarray, min_expected: float = 5.0):
    """(statistic, degrees of freedom) of a histogram of category codes against probabilities p.

    Categories with expected count below ``min_expected`` are pooled into one bin.
    """
    n = observed_codes.size
    counts = np.bincount(observed_codes, minlength=p.size).astype(float)
    expected = n * p
    small = expected < min_expected
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] < min_expected:  # fold a too-small pool into the smallest regular bin
        j = int(np.argmin(exp[:-1]))
        obs[j] += obs[-1]
        exp[j] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    return float(((obs - exp) ** 2 / exp).sum()), exp.size - 1


def chi_square_passes(observed_codes, p, alpha: float = 1e-4) -> tuple[bool, float, float]:
    stat, df = chi_square(np.asarray(observed_codes), np.asarray(p))
    limit = chi2_quantile(df, alpha)
    return stat < limit, stat, limit
