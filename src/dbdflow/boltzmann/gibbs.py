"""Gibbs sampling of every Boltzmann machine with one kernel (DESIGN §3; paper §IV.B).

Many independent chains run at once; a chain is a row of joint states ``x`` (n_units + 1,) int8
(visible sites, hidden units, and the dummy unit of :mod:`dbdflow.boltzmann.mrf`). A *sweep*
updates every unit once from p(x_u | rest), class by class of the model's colouring: for layered
models (RBMs, deep BMs) these are the two blocks of alternate layers (block Gibbs: v | h, then
h | v), for chains with 3-site cliques three to five chromatic classes (greedy colouring of a
ring of n sites: 3 if 3 | n, 5 if n ≡ 2 mod 3, 4 otherwise; 3 on open chains). Units of one
class are conditionally independent, so the sweep is an exact block Gibbs step.

Modes: k sweeps from random states (:func:`random_state` + :func:`sweep`), k sweeps from data
(CD-k, :func:`data_state`), and persistent chains (PCD: keep the :class:`GibbsState` between calls).
:func:`moments` estimates ⟨T_k⟩ with standard errors from independent chains; with
``hidden="probabilities"`` the statistics of each recorded state are replaced by their
conditional expectation given the units outside the hidden units' colour class (the paper's "raw
probabilities for the hidden units"; a Rao-Blackwellised, still unbiased estimator).
:func:`burn_in` runs chains until the split-R̂ of all statistics is below a threshold.
Generators are passed into the numba kernel explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from dbdflow.boltzmann import mrf
from dbdflow.boltzmann.models import BoltzmannModel

HIDDEN_MODES = ("sample", "probabilities")


@dataclass
class GibbsState:
    """Chains of a model: joint states ``x`` (n_chains, n_units + 1) int8, dummy column last."""

    model: BoltzmannModel
    x: np.ndarray

    @property
    def n_chains(self) -> int:
        return self.x.shape[0]

    @property
    def visible(self) -> np.ndarray:
        return self.x[:, : self.model.n_sites]

    @property
    def hidden(self) -> np.ndarray:
        return self.x[:, self.model.n_sites : self.model.n_units]

    def statistics(self) -> np.ndarray:
        """T_k of every chain's current state, int64 (n_chains, n_params)."""
        m = self.model.mrf
        return mrf.statistics_kernel(
            self.x, m.clique_units, m.clique_states, m.clique_param, m.n_params
        )


@dataclass(frozen=True)
class Moments:
    """Estimated model moments ⟨T_k⟩: ``mean`` and ``stderr`` (n_params,) over independent chains,
    ``chain_means`` (n_chains, n_params), the final ``state``."""

    mean: np.ndarray
    stderr: np.ndarray
    chain_means: np.ndarray
    state: GibbsState


def random_state(model: BoltzmannModel, n_chains: int, rng: np.random.Generator) -> GibbsState:
    """Chains with every unit uniform over its states (empty included)."""
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    m = model.mrf
    x = np.floor(rng.random((n_chains, m.n_units + 1)) * m.n_states).astype(np.int8)
    return GibbsState(model, x)


def data_state(
    model: BoltzmannModel, theta, v, rng: np.random.Generator, hidden_sweeps: int = 1
) -> GibbsState:
    """Chains started at data ``v`` (n, n_sites), hidden units drawn by ``hidden_sweeps`` sweeps
    with v clamped (exactly p(h | v) for one hidden layer; more sweeps for deep models)."""
    v = np.atleast_2d(v)
    x, _ = model.joint_states(
        v, np.zeros((len(v), model.n_hidden), np.int8) if model.n_hidden else None
    )
    state = GibbsState(model, np.ascontiguousarray(x))
    if model.n_hidden:
        sweep(model, theta, state, hidden_sweeps, rng, clamp_visible=True)
    return state


def sweep(
    model: BoltzmannModel,
    theta,
    state: GibbsState,
    n_sweeps: int,
    rng: np.random.Generator,
    *,
    clamp_visible: bool = False,
) -> GibbsState:
    """Advance every chain of ``state`` (in place) by ``n_sweeps`` chromatic/block Gibbs sweeps.

    ``clamp_visible``: update hidden units only (sampling p(h | v) for the awake phase).
    """
    if state.model is not model:
        raise ValueError("state belongs to a different model")
    if n_sweeps < 0:
        raise ValueError(f"n_sweeps must be >= 0, got {n_sweeps}")
    m = model.mrf
    order = m.order[m.order >= model.n_sites] if clamp_visible else m.order
    tables, etables, weights = kernel_tables(m, model._theta(theta))
    gibbs_kernel(
        state.x,
        np.ascontiguousarray(order),
        n_sweeps,
        m.inc_ptr,
        m.inc_first,
        m.inc_triple,
        m.inc_table,
        m.inc_o1,
        m.inc_o2,
        tables,
        etables,
        weights,
        m.n_states,
        rng,
    )
    return state


def sample(
    model: BoltzmannModel, theta, n_chains: int, n_sweeps: int, rng: np.random.Generator
) -> GibbsState:
    """``n_chains`` independent chains after ``n_sweeps`` sweeps from random states."""
    return sweep(model, theta, random_state(model, n_chains, rng), n_sweeps, rng)


def conditional_statistics(model: BoltzmannModel, theta, state: GibbsState) -> np.ndarray:
    """E[T_k | units outside the hidden units' colour class] for every chain (n_chains, K).

    For RBMs this is E[T_k | v] at the chains' visible states; for deep models the odd layers
    are summed out given the even ones.
    """
    if model.n_hidden == 0:
        raise ValueError(f"the {model.family} model has no hidden units")
    m = model.mrf
    units = m.units_of_colours([m.colour[model.n_sites]])
    free = np.zeros(m.n_units + 1, dtype=np.bool_)
    free[units] = True
    return mrf.conditional_statistics_kernel(
        state.x,
        units,
        free,
        *m.kernel_args(model._theta(theta)),
        (m.clique_units, m.clique_states, m.clique_param),
        m.n_params,
    )


def moments(
    model: BoltzmannModel,
    theta,
    rng: np.random.Generator,
    *,
    n_chains: int = 64,
    n_sweeps: int = 200,
    burn: int = 100,
    thin: int = 1,
    hidden: str = "sample",
    state: GibbsState | None = None,
) -> Moments:
    """Model moments ⟨T_k⟩ from ``n_chains`` independent chains.

    Each chain (random start, or ``state`` for persistent chains) is swept ``burn`` times, then
    ``n_sweeps`` more, recording T_k every ``thin`` sweeps. The standard error is the spread of the
    per-chain means over independent chains, std/√n_chains, so autocorrelation within a chain is
    accounted for (n_chains should be >= 10 for a useful error).
    """
    if hidden not in HIDDEN_MODES:
        raise ValueError(f"hidden must be one of {HIDDEN_MODES}, got {hidden!r}")
    if hidden == "probabilities" and model.n_hidden == 0:
        raise ValueError("hidden='probabilities' needs a model with hidden units")
    if n_sweeps < 1 or thin < 1 or n_sweeps % thin:
        raise ValueError(f"n_sweeps ({n_sweeps}) must be a positive multiple of thin ({thin})")
    theta = model._theta(theta)
    state = random_state(model, n_chains, rng) if state is None else state
    sweep(model, theta, state, burn, rng)
    total = np.zeros((state.n_chains, model.n_params))
    for _ in range(n_sweeps // thin):
        sweep(model, theta, state, thin, rng)
        if hidden == "probabilities":
            total += conditional_statistics(model, theta, state)
        else:
            total += state.statistics()
    chain_means = total / (n_sweeps // thin)
    stderr = (
        chain_means.std(axis=0, ddof=1) / np.sqrt(state.n_chains)
        if state.n_chains > 1
        else (np.full(model.n_params, np.nan))
    )
    return Moments(chain_means.mean(axis=0), stderr, chain_means, state)


def split_rhat(traces: np.ndarray) -> np.ndarray:
    """Split-R̂ (Gelman-Rubin) per statistic of ``traces`` (n_chains, n_draws, K).

    Each chain's draws are split in halves, so a trend within the window also raises R̂.
    Statistics that are constant across all draws get R̂ = 1.
    """
    half = traces.shape[1] // 2
    seqs = np.concatenate([traces[:, :half], traces[:, half : 2 * half]], axis=0)
    within = seqs.var(axis=1, ddof=1).mean(axis=0)
    between = half * seqs.mean(axis=1).var(axis=0, ddof=1)
    pooled = (half - 1) / half * within + between / half
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(pooled / within)
    rhat[(within == 0) & (between == 0)] = 1.0
    rhat[(within == 0) & (between > 0)] = np.inf
    return rhat


def burn_in(
    model: BoltzmannModel,
    theta,
    state: GibbsState,
    rng: np.random.Generator,
    *,
    window: int = 20,
    max_sweeps: int = 20000,
    threshold: float = 1.01,
) -> dict:
    """Sweep ``state`` until its burn-in is verified, not guessed.

    Runs windows of ``window``, 2·window, 4·window, ... sweeps, recording T_k after every sweep,
    until the split-R̂ over the chains of the latest window is below ``threshold`` for every
    statistic (the chains forgot their starts: between-chain and between-half variances agree
    with the within-chain variance). Needs >= 2 chains. Returns ``{"sweeps", "rhat"}``; raises
    RuntimeError if ``max_sweeps`` pass first.
    """
    if state.n_chains < 2:
        raise ValueError("burn_in needs at least 2 chains")
    theta = model._theta(theta)
    done, w = 0, max(int(window), 4)
    while True:
        traces = np.empty((state.n_chains, w, model.n_params))
        for t in range(w):
            sweep(model, theta, state, 1, rng)
            traces[:, t] = state.statistics()
        done += w
        rhat = split_rhat(traces)
        if np.all(rhat < threshold):
            return {"sweeps": done, "rhat": rhat}
        if done >= max_sweeps:
            raise RuntimeError(
                f"Gibbs burn-in not converged after {done} sweeps: split-R̂ = "
                f"{dict(zip(model.param_names, np.round(rhat, 4), strict=True))}"
            )
        w = min(2 * w, max(max_sweeps - done, 4))


def kernel_tables(m: mrf.MRF, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log tables, flat exp tables, flat unit weights) for :func:`gibbs_kernel`.

    The exp tables hold exp(φ - max_s φ) per (table, a, b) row, so a unit's conditional weights
    are products over its factors, each <= 1 (no exp in the inner loop). Widths below 4 are
    padded to 4 so that the kernel's fast path multiplies 4-vectors in registers. The unit
    weights are the products over each unit's one-unit factors (biases), which do not change.
    """
    tables = m.tables(theta)
    width = max(m.width, 4)
    etables = np.zeros((m.n_tables, width, width, width))
    etables[:, : m.width, : m.width, : m.width] = np.exp(tables - tables.max(axis=3, keepdims=True))
    weights = np.ones((m.n_units + 1, width))
    unit_of = np.repeat(np.arange(m.n_units), np.diff(m.inc_ptr.astype(np.int64)))
    single = np.arange(unit_of.size) < m.inc_first[unit_of].astype(np.int64)
    table = m.inc_table[single].astype(np.int64)
    np.multiply.at(weights, unit_of[single], etables[table, 0, 0])
    return tables, etables.ravel(), weights.ravel()


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53


@numba.njit(cache=True)
def gibbs_kernel(
    x,
    order,
    n_sweeps,
    inc_ptr,
    inc_first,
    inc_triple,
    inc_table,
    inc_o1,
    inc_o2,
    tables,
    etables,
    weights,
    n_states,
    rng,
):
    """``n_sweeps`` sweeps over ``order`` of every chain (row) of x, in place.

    Unit u takes state s with probability ∝ weights[u, s] Π_e etables[t_e, x_o1, x_o2, s]
    = exp(Σ_e tables[t_e, x_o1, x_o2, s] + const), the product running over the factors of u
    with other units (the weights hold its one-unit factors). If all weights underflow (extreme
    θ) the log-space sum is used instead. Models with at most 4 states per unit take a
    branch-free, register-only path.

    Uniforms: ``rng`` (the caller's Generator) draws a 63-bit seed per chain per call, from which
    an inline SplitMix64 stream (a counter passed through a 64-bit mixing function; streams from
    random seeds do not overlap in practice) gives one uniform per update, about 3x cheaper than
    a Generator call per update.
    """
    width = max(tables.shape[3], 4)
    w2 = np.uint64(width * width)
    w3 = np.uint64(width * width * width)
    uw = np.uint64(width)
    weight = np.empty(width)
    for c in range(x.shape[0]):
        xc = x[c]
        state = np.uint64(rng.integers(0, 9223372036854775807))
        for _ in range(n_sweeps):
            for idx in range(order.size):
                u = order[idx]
                m = n_states[u]
                state += _GOLDEN
                z = (state ^ (state >> np.uint64(30))) * _MIX1
                z = (z ^ (z >> np.uint64(27))) * _MIX2
                uniform = ((z ^ (z >> np.uint64(31))) >> np.uint64(11)) * _TO_UNIT
                if width == 4:
                    p0 = weights[4 * u]
                    p1 = weights[4 * u + 1]
                    p2 = weights[4 * u + 2]
                    p3 = weights[4 * u + 3]
                    for e in range(inc_first[u], inc_triple[u]):
                        base = (inc_table[e] << np.uint64(6)) + (
                            np.uint64(xc[inc_o1[e]]) << np.uint64(4)
                        )
                        p0 *= etables[base]
                        p1 *= etables[base + np.uint64(1)]
                        p2 *= etables[base + np.uint64(2)]
                        p3 *= etables[base + np.uint64(3)]
                    for e in range(inc_triple[u], inc_ptr[u + 1]):
                        base = (
                            (inc_table[e] << np.uint64(6))
                            + (np.uint64(xc[inc_o1[e]]) << np.uint64(4))
                            + (np.uint64(xc[inc_o2[e]]) << np.uint64(2))
                        )
                        p0 *= etables[base]
                        p1 *= etables[base + np.uint64(1)]
                        p2 *= etables[base + np.uint64(2)]
                        p3 *= etables[base + np.uint64(3)]
                    if m < 4:
                        p3 = 0.0
                    if m < 3:
                        p2 = 0.0
                    c1 = p0
                    c2 = c1 + p1
                    c3 = c2 + p2
                    total = c3 + p3
                    if total > 1e-280:
                        r = uniform * total
                        xc[u] = (r >= c1) + (r >= c2) + (r >= c3)
                        continue
                else:
                    weight[:m] = weights[width * u : width * u + m]
                    for e in range(inc_first[u], inc_ptr[u + 1]):
                        base = inc_table[e] * w3 + xc[inc_o1[e]] * w2 + xc[inc_o2[e]] * uw
                        for s in range(m):
                            weight[s] *= etables[base + np.uint64(s)]
                    total = weight[:m].sum()
                if not total > 1e-280:
                    total = _log_space_weights(
                        xc, u, m, inc_ptr, inc_table, inc_o1, inc_o2, tables, weight
                    )
                r = uniform * total
                s = 0
                acc = weight[0]
                while acc <= r and s < m - 1:
                    s += 1
                    acc += weight[s]
                xc[u] = s


@numba.njit(cache=True)
def _log_space_weights(xc, u, m, inc_ptr, inc_table, inc_o1, inc_o2, tables, weight):
    """Fill weight[:m] with exp(field - max field) from the log tables; return their sum."""
    for s in range(m):
        weight[s] = 0.0
    for e in range(inc_ptr[u], inc_ptr[u + 1]):
        for s in range(m):
            weight[s] += tables[inc_table[e], xc[inc_o1[e]], xc[inc_o2[e]], s]
    top = weight[0]
    for s in range(1, m):
        top = max(top, weight[s])
    total = 0.0
    for s in range(m):
        weight[s] = np.exp(weight[s] - top)
        total += weight[s]
    return total
