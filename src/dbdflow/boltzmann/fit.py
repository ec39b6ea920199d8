"""Static Boltzmann-machine learning and initial-condition sampling (paper §IV.A, eqs. 22-25).

Maximum likelihood for p̃(v) = Σ_h exp(-E(v, h; θ))/Z(θ): the gradient of the mean log-likelihood
of data lattices v⁽¹⁾..v⁽ⁿ⁾ is the awake minus the asleep moments,

    ∂/∂θ_k (1/n) Σ_d ln p̃(v⁽ᵈ⁾) = (1/n) Σ_d E[T_k | v⁽ᵈ⁾] - ⟨T_k⟩_θ,

with hidden units at their conditional probabilities in the awake term. :func:`fit` ascends it per
lattice site (the extensive difference divided by n_sites, so step sizes do not depend on the
lattice size) with Adam or plain SGD. The asleep moments are exact for 1D chains and chain RBMs
(transfer matrices, :mod:`dbdflow.boltzmann.transfer`), otherwise estimated by Gibbs sampling:
persistent chains (PCD), k sweeps from the data (CD-k) or from random states. With
``centering=True`` (deep models) the centred parameters of :mod:`dbdflow.boltzmann.centering` are
optimised, with offsets tracking the data means.

:func:`sample_initial` draws independent lattices: exactly in 1D, otherwise from independent Gibbs
chains whose burn-in is checked by split-R̂ (:func:`dbdflow.boltzmann.gibbs.burn_in`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dbdflow.boltzmann import centering as centred
from dbdflow.boltzmann import gibbs, transfer
from dbdflow.boltzmann.models import BoltzmannModel

EXACT_FAMILIES = ("chain", "chain_rbm")
ASLEEP = ("auto", "exact", "pcd", "cd", "random")
METHODS = ("adam", "sgd")


def _exact_available(model: BoltzmannModel) -> bool:
    return model.family in EXACT_FAMILIES


def fit(
    model: BoltzmannModel,
    data,
    theta0,
    *,
    method: str = "adam",
    learning_rate: float | Callable[[int], float] = 0.05,
    n_steps: int = 2000,
    tol: float = 1e-7,
    asleep: str | Callable = "auto",
    rng: np.random.Generator | None = None,
    n_chains: int = 100,
    k: int = 1,
    hidden: str = "probabilities",
    batch_size: int | None = None,
    l2: float = 0.0,
    centering: bool = False,
    offset_rate: float = 0.05,
    average: float = 0.5,
) -> tuple[np.ndarray, dict]:
    """Fit θ to data lattices ``data`` (n, n_sites) int by maximum likelihood; returns (θ, log).

    Parameters
    ----------
    method : "adam" (default, β = 0.9, 0.999) or "sgd".
    learning_rate : step size (per site), or a function of the step number.
    n_steps, tol : at most ``n_steps`` steps; with exact (deterministic) asleep moments and full
        batches, stop once max_k |gradient_k| < ``tol`` (gradient per site).
    asleep : "exact" (transfer matrices; chain and chain_rbm only), "pcd" (``n_chains``
        persistent chains advanced ``k`` sweeps per step), "cd" (``k`` sweeps from the batch),
        "random" (``k`` sweeps from random states, as for the paper's Rössler model), a function
        θ → ⟨T⟩, or "auto" (exact where available, else pcd).
    hidden : "probabilities" (Rao-Blackwellised sampled moments, the paper's raw probabilities)
        or "sample", for sampled asleep moments of models with hidden units.
    batch_size : data lattices per step (random minibatches, needs ``rng``); None = all.
    l2 : penalty (l2/2)|θ|² per site.
    centering : optimise centred parameters (:mod:`~dbdflow.boltzmann.centering`) with offsets
        moved towards the data means by ``offset_rate`` per step; θ returned is natural.
    average : with stochastic gradients, return the mean of the last ``average`` fraction of
        iterates (Polyak averaging); 0 returns the last iterate.

    Start hidden-unit weights away from 0: with species-tied weights, W = 0 is a stationary
    point of the likelihood once the biases fit the means.

    The log holds ``theta`` (steps + 1, K), ``gradient`` (steps, K), ``grad_norm``, ``asleep``
    (the mode used), ``converged`` and, for fully visible models with exact moments,
    ``log_likelihood`` per site.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    theta = model._theta(theta0).copy()
    data = model._layer_states(data, model.layers[0], "data").reshape(-1, model.n_sites)
    if data.shape[0] == 0:
        raise ValueError("data must hold at least one lattice")
    mode = _asleep_mode(model, asleep)
    stochastic = mode in ("pcd", "cd", "random") or batch_size is not None
    if stochastic and rng is None:
        raise ValueError(f"asleep={mode!r} / batch_size need an rng (numpy Generator)")
    if hidden not in gibbs.HIDDEN_MODES:
        raise ValueError(f"hidden must be one of {gibbs.HIDDEN_MODES}, got {hidden!r}")
    hidden = hidden if model.n_hidden else "sample"
    rate = learning_rate if callable(learning_rate) else (lambda _: float(learning_rate))

    offsets = centred.data_offsets(model, data, theta) if centering else None
    params = centred.to_centered(model, theta, offsets) if centering else theta
    awake_moments = _awake(model, data)
    persistent = None
    if mode == "pcd":
        persistent = gibbs.random_state(model, n_chains, rng)
        gibbs.sweep(model, theta, persistent, 10 * k, rng)
    m1 = np.zeros_like(theta)
    m2 = np.zeros_like(theta)
    log: dict = {"theta": [theta.copy()], "gradient": [], "log_likelihood": []}
    converged = False
    for step in range(n_steps):
        rows = slice(None) if batch_size is None else rng.integers(0, data.shape[0], batch_size)
        batch = data[rows]
        awake = awake_moments(theta, rows)
        if mode == "exact":
            model_moments = transfer.exact_moments(model, theta)
            if model.n_hidden == 0:
                log_z = transfer.exact_log_partition(model, theta)
                log["log_likelihood"].append((theta @ awake - log_z) / model.n_sites)
        elif callable(mode):
            model_moments = np.asarray(mode(theta), dtype=np.float64)
        else:
            if mode == "pcd":
                state = gibbs.sweep(model, theta, persistent, k, rng)
            elif mode == "cd":
                state = gibbs.data_state(model, theta, batch, rng)
                gibbs.sweep(model, theta, state, k, rng)
            else:
                state = gibbs.sample(model, theta, n_chains, k, rng)
            stats = (
                gibbs.conditional_statistics(model, theta, state)
                if hidden == "probabilities"
                else state.statistics()
            )
            model_moments = stats.mean(axis=0)
        grad = (awake - model_moments) / model.n_sites - l2 * theta
        log["gradient"].append(grad)
        if not stochastic and np.max(np.abs(grad)) < tol:
            converged = True
            break
        step_grad = centred.gradient(model, grad, offsets) if centering else grad
        if method == "adam":
            m1, m2, update = _adam_direction(m1, m2, step_grad, step + 1)
        else:
            update = step_grad
        params = params + rate(step) * update
        if centering:
            theta = centred.to_natural(model, params, offsets)
            new = (1 - offset_rate) * offsets + offset_rate * centred.data_offsets(
                model, batch, theta
            )
            params, offsets = centred.shift(model, params, offsets, new), new
        theta = centred.to_natural(model, params, offsets) if centering else params.copy()
        log["theta"].append(theta.copy())
    thetas = np.array(log["theta"])
    if stochastic and average > 0:
        theta = thetas[-max(1, int(average * len(thetas))) :].mean(axis=0)
    log.update(
        theta=thetas,
        gradient=np.array(log["gradient"]).reshape(-1, model.n_params),
        grad_norm=np.linalg.norm(np.array(log["gradient"]).reshape(-1, model.n_params), axis=1),
        log_likelihood=np.array(log["log_likelihood"]),
        asleep=mode if isinstance(mode, str) else "callable",
        converged=converged,
        offsets=offsets,
    )
    return theta, log


def maxent_path(
    model: BoltzmannModel,
    targets,
    theta0,
    rng: np.random.Generator | None = None,
    *,
    asleep: str = "auto",
    n_chains: int = 50,
    iterations: int = 300,
    learning_rate: float = 0.02,
    decay: float = 30.0,
    average: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-entropy parameters along a moment trajectory: θ_n with ⟨T⟩_θn = μ_n (eq. 25 with
    given awake moments) for every row μ_n of ``targets`` (n_times, K), e.g. the data moments
    :func:`dbdflow.boltzmann.awake.chain_statistics` of a fully visible model. This is the path
    θ(t) that a DBD's dθ/dt = F(θ) must follow to reproduce the data exactly.

    Fitted in time order, each θ_n starting from the previous time's last iterate (θ_0 from
    ``theta0``): ``iterations`` Adam steps on the per-site gradient (μ_n − ⟨T⟩_θ)/N, with Adam's
    moment estimates and (``asleep`` "pcd") ``n_chains`` persistent chains carried on from one
    time to the next, each advanced one sweep per step. With exact moments ("exact": 1D chains)
    θ_n is the last iterate. With sampled ones it is the mean of the last ``average`` fraction of
    iterates (Polyak averaging), over which the step shrinks as ``learning_rate``/(1 + j/``decay``)
    at the j-th of them (stochastic approximation): with a constant step the iterates keep
    jittering, and where the moments are very sensitive to θ (near a phase transition) the mean
    of that jitter's moments differs from the moments at the mean θ.
    Returns (θ (n_times, K), the model moments ⟨T⟩ (n_times, K) at θ_n: exact, or the mean over
    the averaged iterations' chains, an estimate whose agreement with μ_n measures the fit).
    """
    if model.n_hidden:
        raise ValueError(f"maxent_path needs a fully visible model, got {model.family!r}")
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != model.n_params:
        raise ValueError(f"targets must be (n_times, {model.n_params}), got {targets.shape}")
    if not np.all(np.isfinite(targets)):
        raise ValueError("targets must be finite")
    mode = _asleep_mode(model, asleep)
    if mode not in ("exact", "pcd"):
        raise ValueError(f"asleep must be 'auto', 'exact' or 'pcd', got {asleep!r}")
    if mode == "pcd" and rng is None:
        raise ValueError("asleep='pcd' needs an rng (numpy Generator)")
    if iterations < 1 or not 0 <= average < 1 or not decay > 0:
        raise ValueError(
            f"need iterations >= 1, 0 <= average < 1 and decay > 0, got {iterations}, "
            f"{average}, {decay}"
        )
    theta = model._theta(theta0).copy()
    chains = None
    if mode == "pcd":
        chains = gibbs.random_state(model, n_chains, rng)
        gibbs.sweep(model, theta, chains, 10, rng)
    keep = max(1, int(average * iterations)) if mode == "pcd" else 1
    m1, m2, t = np.zeros_like(theta), np.zeros_like(theta), 0
    path, moments = np.empty_like(targets), np.empty_like(targets)
    for n, target in enumerate(targets):
        thetas, means = [], []
        for i in range(iterations):
            if mode == "exact":
                mean = transfer.exact_moments(model, theta)
            else:
                mean = gibbs.sweep(model, theta, chains, 1, rng).statistics().mean(axis=0)
            if i >= iterations - keep:
                thetas.append(theta.copy())
                means.append(mean)
            t += 1
            m1, m2, direction = _adam_direction(m1, m2, (target - mean) / model.n_sites, t)
            late = i - (iterations - keep)  # > 0: into the averaged part (sampled moments only)
            rate = learning_rate / (1 + late / decay) if late > 0 else learning_rate
            theta = theta + rate * direction
        path[n] = np.mean(thetas, axis=0)
        moments[n] = np.mean(means, axis=0)
    return path, moments


def _adam_direction(m1, m2, grad, t):
    """Adam's moment estimates after gradient ``grad`` at step ``t`` (1-based, β = 0.9, 0.999)
    and its ascent direction m̂/(√v̂ + 1e-12): (m1, m2, direction)."""
    m1 = 0.9 * m1 + 0.1 * grad
    m2 = 0.999 * m2 + 0.001 * grad**2
    return m1, m2, (m1 / (1 - 0.9**t)) / (np.sqrt(m2 / (1 - 0.999**t)) + 1e-12)


def _awake(model: BoltzmannModel, data: np.ndarray) -> Callable:
    """(θ, rows) → mean E[T | v] over data[rows]; θ-independent parts are computed once
    (statistics of fully visible models, receptive-field histograms of one-hidden-layer models)."""
    if model.n_hidden == 0:
        stats = model.statistics(data).astype(np.float64)
        return lambda theta, rows: stats[rows].mean(axis=0)
    if len(model.layers) == 2:
        hist = model.hidden_histogram(data)

        def from_histogram(theta, rows):
            mean = type(hist)(
                hist.keys, hist.counts[rows].mean(axis=0)[None], hist.base[rows].mean(axis=0)[None]
            )
            return model.awake_from_histogram(mean, theta)[0]

        return from_histogram
    return lambda theta, rows: model.awake_statistics(data[rows], theta).mean(axis=0)


def _asleep_mode(model: BoltzmannModel, asleep):
    if callable(asleep):
        return asleep
    if asleep not in ASLEEP:
        raise ValueError(f"asleep must be one of {ASLEEP} or a function, got {asleep!r}")
    if asleep == "auto":
        return "exact" if _exact_available(model) else "pcd"
    if asleep == "exact" and not _exact_available(model):
        raise ValueError(
            f"asleep='exact' needs a model of family {EXACT_FAMILIES}, got {model.family!r}"
        )
    return asleep


def sample_initial(
    model: BoltzmannModel,
    theta,
    n: int,
    rng: np.random.Generator,
    *,
    method: str = "auto",
    min_chains: int = 16,
    window: int = 20,
    max_sweeps: int = 20000,
    threshold: float = 1.01,
    return_info: bool = False,
):
    """``n`` independent lattices (n, n_sites) int8 drawn from the model at θ.

    method "exact" (1D chain and chain_rbm: forward filtering, backward sampling), "gibbs" (one
    lattice per independent chain from a random state, after a burn-in verified by split-R̂ over
    at least ``min_chains`` chains, see :func:`dbdflow.boltzmann.gibbs.burn_in`) or "auto".
    With ``return_info`` also returns ``{"method", "sweeps", "rhat"}``.
    """
    if method not in ("auto", "exact", "gibbs"):
        raise ValueError(f"method must be 'auto', 'exact' or 'gibbs', got {method!r}")
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    theta = model._theta(theta)
    if method == "auto":
        method = "exact" if _exact_available(model) else "gibbs"
    if method == "exact":
        if not _exact_available(model):
            raise ValueError(f"exact sampling needs family {EXACT_FAMILIES}, got {model.family!r}")
        lattices, info = transfer.exact_sample(model, theta, int(n), rng), {"method": "exact"}
    else:
        state = gibbs.random_state(model, max(int(n), min_chains), rng)
        diag = gibbs.burn_in(
            model, theta, state, rng, window=window, max_sweeps=max_sweeps, threshold=threshold
        )
        lattices, info = state.visible[:n].copy(), {"method": "gibbs", **diag}
    return (lattices, info) if return_info else lattices
