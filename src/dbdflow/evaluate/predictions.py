"""What a learned reduced model predicts: θ(t) from θ(t0), and the observables' means along it.

**Trajectories.** θ(t_n) solves dθ/dt = F(θ; u) (eqs. 26-27) from a test IC's θ(t0) with the
learned finite-element coefficients u and the scheme of training, to a tolerance
(:func:`integrate`): starting from training's substeps, each IC's substeps are doubled until
two successive solutions agree to ``STEP_TOL`` in θ at every data time. The learned model is the
ODE, not one discretisation of it: a test IC in a stiffer region than any training IC (e.g. F
from the max-ent prior in a dense, clustered state) is still solved stably and accurately, and
where training's step was already converged nothing changes; where the refinement does not
converge, training's own discretisation is kept.

**Exact moments** (1D ``chain`` and ``chain_rbm`` of one species; :func:`exact_observables`): at
each θ(t_n) the transfer-matrix expectations of the observables of
:mod:`dbdflow.moments.observables`, with the same windows (open chains count the strings that lie
inside the chain, rings count N of each):

    counts = ⟨Σ_i v_i⟩, pairs = strings2 = ⟨Σ_i v_i v_{i+1}⟩, pairs_d2 = ⟨Σ_i v_i v_{i+2}⟩,
    strings3 = ⟨Σ_i v_i v_{i+1} v_{i+2}⟩, strings4 = ⟨Σ_i v_i v_{i+1} v_{i+2} v_{i+3}⟩,

hidden units summed out. Their standard error is 0.

**Sampled moments** (any model, e.g. the lattice RBM of eq. 44; :func:`sampled_observables`): per
IC, ``chains`` independent Gibbs chains start from random states, are burnt in at θ(t0) until the
split-R̂ of every statistic is below ``rhat`` (:func:`dbdflow.boltzmann.gibbs.burn_in`), and then
follow the trajectory: ``sweeps`` sweeps at θ(t_n) before the visible lattices are recorded at
t_n. The observables of the recorded lattices are averaged over the chains; the standard error is
their spread over the independent chains, std/√chains.

**KL divergence** (1D, one species; :func:`kl_to_maxent`). The data's distribution over lattices
is not known, but its maximum-entropy estimate given the measured counts, pairs and strings of
three is the fully visible chain p₁ = p(v; θ₁) (eq. 37) whose moments equal the data's (θ₁ by
maximum likelihood, :func:`~dbdflow.boltzmann.initial_theta.fit_exact`). We report
KL(p₁ ‖ p₂)/N in nats per site, with p₂ the model's distribution of the visible lattice:

    KL = θ₁·μ₁ − ln Z₁ − E₁[ln p̃₂(v)] + ln Z₂,

E₁[ln p̃₂] = θ₂·E₁[T₂] for a visible chain, and for the chain RBM, whose hidden units sum out to
bond factors e^{f(s_j)}, f(s) = ln(1 + e^{b' + W s}), s_j = v_j + v_{j+1}:
E₁[ln p̃₂] = b μ_A + f(0) n₀₀ + f(1) n₀₁ + f(2) n₁₁ with n the expected numbers of bonds holding
0, 1, 2 particles under p₁ (exact, transfer matrices). It measures how much information about the
data's short-range structure the reduced model loses; it is 0 when the model reproduces p₁.
"""

from __future__ import annotations

import numpy as np

from dbdflow.boltzmann import chain, exact_string_moments, gibbs, transfer
from dbdflow.boltzmann.initial_theta import fit_exact
from dbdflow.dynamics import DynamicsModel, HermiteGrid, solve
from dbdflow.moments.observables import observables

EXACT_FAMILIES = ("chain", "chain_rbm")
STEP_TOL = 1e-6  # θ agreement of successive step doublings in integrate
MAX_DOUBLINGS = 8


def dynamics_model(dynamics: dict) -> tuple[DynamicsModel, np.ndarray]:
    """The :class:`DynamicsModel` and flat coefficients u of a dynamics file's contents."""
    fns = dynamics["functions"]
    grids = [HermiteGrid(f["lower"], f["upper"], np.asarray(f["n_cells"])) for f in fns]
    model = DynamicsModel(grids, [tuple(np.atleast_1d(f["coords"])) for f in fns])
    u = np.concatenate([np.asarray(f["u"], dtype=np.float64) for f in fns])
    return model, model.check_coeffs(u)


def integrate(dynamics: dict, theta0: np.ndarray, times: np.ndarray, *, tol: float = STEP_TOL):
    """θ (n_ics, n_times, K) at the data ``times`` from θ(t0) (n_ics, K), with the scheme of
    training and per IC the fewest substeps s = s_train·2^j (j ≤ ``MAX_DOUBLINGS``) whose solution
    agrees with that at 2s to ``tol`` (max |Δθ| over the times); also the right-hand-side
    evaluations outside the grid (n_ics, K) and the substeps used (n_ics,). An IC that does not
    converge (e.g. a trajectory that leaves the grid, where F is extrapolated) keeps training's
    own discretisation, the model as it was fitted, and its substeps are reported as −s_train."""
    model, u = dynamics_model(dynamics)
    times = np.asarray(times, dtype=np.float64)
    theta0 = np.atleast_2d(np.asarray(theta0, dtype=np.float64))
    dt = float(times[1] - times[0]) if times.size > 1 else 1.0
    trained_dt = float(dynamics["attrs"].get("dt", dt))
    if not np.isclose(dt, trained_dt, rtol=1e-9, atol=0):
        raise ValueError(f"data step {dt} of the test moments differs from training's {trained_dt}")
    scheme = dynamics["attrs"].get("scheme", "rk4")
    substeps = int(dynamics["attrs"].get("substeps", 1))
    todo = np.arange(theta0.shape[0])
    theta = np.full((theta0.shape[0], times.size, theta0.shape[1]), np.nan)
    outside = np.zeros(theta0.shape, dtype=np.int64)
    used = np.zeros(theta0.shape[0], dtype=np.int64)
    n = times.size - 1  # (no stage points kept: no adjoint here)
    trained = solve(model, u, theta0, n, dt, scheme=scheme, substeps=substeps, keep_from=n)
    coarse, coarse_out = trained.theta, trained.outside
    for _ in range(MAX_DOUBLINGS):
        substeps *= 2
        fine = solve(model, u, theta0[todo], n, dt, scheme=scheme, substeps=substeps, keep_from=n)
        with np.errstate(invalid="ignore"):
            done = np.abs(fine.theta - coarse).max(axis=(1, 2)) <= tol  # False for NaN
        theta[todo[done]], outside[todo[done]] = coarse[done], coarse_out[done]
        used[todo[done]] = substeps // 2
        todo, coarse, coarse_out = todo[~done], fine.theta[~done], fine.outside[~done]
        if todo.size == 0:
            break
    theta[todo], outside[todo] = trained.theta[todo], trained.outside[todo]
    used[todo] = -int(dynamics["attrs"].get("substeps", 1))
    return theta, outside, used


def exact_observables(model, theta: np.ndarray) -> dict[str, np.ndarray]:
    """Exact means of counts, pairs, pairs_d2, strings2-4 for θ (..., K) of a one-species 1D
    ``chain``/``chain_rbm``; arrays (..., 1). Non-finite θ (a diverged trajectory) gives NaN."""
    if model.family not in EXACT_FAMILIES or len(model.visible_species) != 1:
        raise ValueError(
            f"exact observables need a one-species model of family {EXACT_FAMILIES}, got "
            f"{model.family!r} with species {model.visible_species}"
        )
    theta = np.asarray(theta, dtype=np.float64)
    (a,) = model.visible_species
    keys = {
        "counts": a,
        "pairs": a * 2,
        "pairs_d2": f"{a}.{a}",
        "strings2": a * 2,
        "strings3": a * 3,
        "strings4": a * 4,
    }
    flat = theta.reshape(-1, theta.shape[-1])
    out = {name: np.full(flat.shape[0], np.nan) for name in keys}
    for i, th in enumerate(flat):
        if np.all(np.isfinite(th)):
            values = exact_string_moments(model, th, 4)
            for name, key in keys.items():
                out[name][i] = values[key]
    return {name: v.reshape(*theta.shape[:-1], 1) for name, v in out.items()}


def sampled_observables(
    model,
    theta: np.ndarray,
    lattice,
    species,
    generators,
    *,
    chains: int = 64,
    sweeps: int = 10,
    rhat: float = 1.05,
    max_burn: int = 5000,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Gibbs estimates (module docstring) of the observables along θ (n_ics, n_times, K):
    (means, standard errors), dicts of (n_ics, n_times, n_components). ``generators``: one
    ``np.random.Generator`` per IC."""
    if chains < 2:
        raise ValueError(f"chains must be >= 2 for a standard error, got {chains}")
    if sweeps < 1:
        raise ValueError(f"sweeps must be >= 1, got {sweeps}")
    theta = np.asarray(theta, dtype=np.float64)
    n_ics, n_times = theta.shape[:2]
    if len(generators) != n_ics:
        raise ValueError(f"need one generator per IC ({n_ics}), got {len(generators)}")
    means: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    for ic, rng in enumerate(generators):
        state = gibbs.random_state(model, chains, rng)
        if np.all(np.isfinite(theta[ic, 0])):
            gibbs.burn_in(model, theta[ic, 0], state, rng, threshold=rhat, max_sweeps=max_burn)
        for n in range(n_times):
            if not np.all(np.isfinite(theta[ic, n])):
                for name in means:
                    means[name][ic, n:] = errors[name][ic, n:] = np.nan
                break
            if n > 0:
                gibbs.sweep(model, theta[ic, n], state, sweeps, rng)
            obs = observables(np.ascontiguousarray(state.visible), lattice, species)
            for name, value in obs.items():
                if name not in means:
                    means[name] = np.full((n_ics, n_times, value.shape[-1]), np.nan)
                    errors[name] = np.full((n_ics, n_times, value.shape[-1]), np.nan)
                means[name][ic, n] = value.mean(axis=0)
                errors[name][ic, n] = value.std(axis=0, ddof=1) / np.sqrt(chains)
    return means, errors


# --- KL divergence to the data's maximum-entropy chain -------------------------------------------


def maxent_theta(n_sites: int, boundary: str, species: str, data_mean: dict, *, tol=1e-8):
    """θ₁ = (b, J, K) (n_ics, n_times, 3) of the fully visible chain matching the data's counts,
    pairs and strings of three at every point (Newton, warm-started along time, else from θ = 0);
    NaN where the fit does not converge. Data on the family's boundary (e.g. an empty lattice,
    b → −∞) end at a chain that matches them to ``tol`` per site."""
    full = chain(n_sites, boundary, species=(species,))
    stats = np.stack(
        [data_mean["counts"][..., 0], data_mean["pairs"][..., 0], data_mean["strings3"][..., 0]],
        axis=-1,
    ).astype(np.float64)
    out = np.full(stats.shape, np.nan)
    for ic in range(stats.shape[0]):
        start = np.zeros(3)
        for n in range(stats.shape[1]):
            mu = stats[ic, n]
            for guess in (start, np.zeros(3)):  # warm start, else from the uniform chain
                theta, info = fit_exact(
                    full, lambda th, mu=mu: mu, lambda th, mu=mu: float(th @ mu), guess, tol=tol
                )
                if info["converged"]:
                    out[ic, n] = start = theta
                    break
    return out


def kl_to_maxent(model, theta_model: np.ndarray, theta_data: np.ndarray) -> np.ndarray:
    """KL(p(·; θ₁) ‖ p_model(·; θ₂))/N in nats per site (module docstring) for arrays of
    points: θ₂ (..., K) of a one-species ``chain``/``chain_rbm`` model and θ₁ (..., 3) of the
    full visible chain on the same lattice; NaN where either is not finite."""
    if model.family not in EXACT_FAMILIES or len(model.visible_species) != 1:
        raise ValueError(f"KL needs a one-species 1D chain or chain_rbm, got {model.family!r}")
    (a,) = model.visible_species
    full = chain(model.n_sites, model.boundary, species=(a,))
    n_bonds = model.n_sites if model.boundary == "periodic" else model.n_sites - 1
    theta_model = np.asarray(theta_model, dtype=np.float64)
    theta_data = np.asarray(theta_data, dtype=np.float64)
    flat2 = theta_model.reshape(-1, theta_model.shape[-1])
    flat1 = theta_data.reshape(-1, 3)
    out = np.full(flat1.shape[0], np.nan)
    for i, (th1, th2) in enumerate(zip(flat1, flat2, strict=True)):
        if not (np.all(np.isfinite(th1)) and np.all(np.isfinite(th2))):
            continue
        # E₁ of (Σv, Σvv', Σvv'v'', bonds holding exactly one particle): the chain's own moments
        # plus one bond pattern, from the transfer module's solver
        ln_z1, mu1, (n01,) = transfer.exact_pattern_counts(full, th1, [((0, 1), (0, 1))])
        counts, pairs, triples = mu1
        if model.family == "chain":
            stats = {"b": counts, "J": pairs, "K": triples}
            cross = sum(t * stats[name[0]] for t, name in zip(th2, model.param_names, strict=True))
        else:
            b, w, bx = (th2[model.param_names.index(n)] for n in ("b_A", "W_AX", "b_X"))
            f = np.logaddexp(0.0, bx + w * np.arange(3))
            cross = b * counts + f[0] * (n_bonds - n01 - pairs) + f[1] * n01 + f[2] * pairs
        ln_z2 = transfer.exact_log_partition(model, th2)
        out[i] = (th1 @ mu1 - ln_z1 - cross + ln_z2) / model.n_sites
    return out.reshape(theta_data.shape[:-1])
