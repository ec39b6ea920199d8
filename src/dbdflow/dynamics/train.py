"""Algorithm 1: learning the dynamics dθ/dt = F(θ; u) of a dynamic Boltzmann distribution.

Objective (eqs. 28, 32, 41), per lattice site: for a batch B of training initial conditions and
the current window [τ, τ + Δτ] of data steps,

    S(u) = (1/|B|) Σ_{i∈B} Σ_n w_n [ KL_n(θ_i(t_n)) / N + λ_r |θ_i(t_n) − θ̄|² ],

with w_n the quadrature weights of the window (:func:`~dbdflow.dynamics.adjoint.
quadrature_weights`) and N = ``Problem.sites``, plus, with ``Settings.smoothness`` λ_s > 0, the
roughness penalty λ_s Σ_k R(F_k − F⁰_k) (mean Hessian energy over its grid,
:mod:`dbdflow.dynamics.roughness`), which fixes F where the training trajectories leave it
undetermined: there F is the prior F⁰ (coefficients ``Settings.prior``; 0 by default, e.g. the
maximum-entropy closure of :mod:`dbdflow.evaluate.maxent`) plus an affine continuation of the
learned correction. Since ∂KL/∂θ = μ̃(θ) − μ (asleep minus awake
moments, eq. 31), the adjoint source at a data point is (μ̃ − μ)/N (+ 2λ_r(θ − θ̄), eq. 33).
Dividing the extensive moments by N makes learning rates independent of the lattice size.

One training step (Algorithm 1, lines 5-18):

1. draw the batch (``batch_ics`` ICs without replacement; all ICs if None) from the step's own
   random stream ``stream(step)``, so a run is reproducible and resumable step by step;
2. forward solve θ(t) from θ(t_0) to the window end (:func:`~dbdflow.dynamics.ode.solve`);
3. awake moments μ (data, at θ for hidden-unit probabilities) and asleep moments μ̃(θ) at every
   data point of the window;
4. exact discrete adjoint back to the window start τ (``truncate=True``, eq. 41: θ(τ) held fixed)
   or to t_0 (exact gradient of the windowed objective) — :func:`~dbdflow.dynamics.adjoint.
   gradient`, whose dS/du is summed over the batch with weights w_n/|B| (the batch mean, eq. 30);
5. the roughness gradient λ_s ∇_u R (dense: every coefficient), then the optimiser update (SGD
   with per-coefficient rates or Adam, optional norm clipping).

The window slides on the schedule of :class:`Window` (eq. 41) and always reaches the last data
step. Logged per step: window, loss proxy = mean over the batch and window points of
Σ_k ((μ̃_k − μ_k)/N)², gradient norm (before clipping), excursions (right-hand-side evaluations
outside the grids), roughness Σ_k R(F_k) (before the update; 0 when λ_s = 0). Non-finite or
huge θ, non-finite moments or gradients stop training with a :class:`DivergenceError` naming the
step, IC, time and parameter.

Moment interface: Algorithm 1 does not depend on the Boltzmann family. ``Problem.awake(ics,
steps, theta) -> (n, K)`` and ``Problem.asleep(theta, ics, steps, rng) -> (n, K)`` give the
moments at data points (ic, step) and model parameters θ (see :mod:`dbdflow.boltzmann.awake` and
:mod:`dbdflow.boltzmann.asleep`); an asleep provider with ``state()``/``load_state()`` (persistent
chains) is checkpointed with the rest, and one with ``random = False`` (exact moments) gets
``rng=None``: without a batch to draw, the step's stream is then not built.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dbdflow.dynamics.adjoint import RULES, SparseGradient, gradient, quadrature_weights
from dbdflow.dynamics.fem import HermiteGrid
from dbdflow.dynamics.ode import SCHEMES, DynamicsModel, solve
from dbdflow.dynamics.optim import SGD, Adam, NonFiniteGradient
from dbdflow.dynamics.roughness import model_roughness

log = logging.getLogger("dbdflow")

OPTIMIZERS = ("adam", "sgd")
LOG_FIELDS = (
    "step",
    "loss",
    "grad_norm",
    "window_start",
    "window_end",
    "excursions",
    "roughness",
    "seconds",
)


class DivergenceError(FloatingPointError):
    """Training produced non-finite or diverging values; the message says where."""


@dataclass(frozen=True)
class Window:
    """The integration window [τ, τ + size] in data steps and its schedule (eq. 41).

    ``size`` None (or ≥ the number of data steps): the whole horizon every step. Otherwise τ =
    start, start + shift, ... moving on every ``every`` training steps, the last position being
    exactly n_steps − size (the window reaches the final data step); after it the window stays
    there, or with ``cycle`` starts again at ``start``.
    """

    size: int | None = None
    shift: int = 1
    every: int = 1
    start: int = 0
    cycle: bool = False

    def positions(self, n_steps: int) -> np.ndarray:
        """All window starts τ of the schedule for ``n_steps`` data steps after t_0."""
        if self.size is None or self.size >= n_steps:
            return np.array([0])
        if self.size < 1:
            raise ValueError(f"window size must be >= 1 data step, got {self.size}")
        if self.shift < 1 or self.every < 1:
            raise ValueError(f"window shift and every must be >= 1, got {self.shift}, {self.every}")
        last = n_steps - self.size
        if not 0 <= self.start <= last:
            raise ValueError(f"window start must be in 0..{last}, got {self.start}")
        taus = np.arange(self.start, last + 1, self.shift)
        return taus if taus[-1] == last else np.append(taus, last)

    def at(self, step: int, n_steps: int) -> tuple[int, int]:
        """(first, last) data step of the window used at training step ``step`` (0-based)."""
        if self.size is None or self.size >= n_steps:
            return 0, n_steps
        taus = self.positions(n_steps)
        p = step // self.every
        p = p % taus.size if self.cycle else min(p, taus.size - 1)
        return int(taus[p]), int(taus[p] + self.size)

    def steps_to_horizon(self, n_steps: int) -> int:
        """Training steps needed until the window has covered the last data step once."""
        return (self.positions(n_steps).size - 1) * self.every + 1


@dataclass(frozen=True)
class Settings:
    """Hyperparameters of Algorithm 1 (config section ``training`` plus the model's scheme).

    ``learning_rate``: scalar or one rate per coefficient (:func:`~dbdflow.dynamics.optim.
    group_rates`); ``theta_bar``: scalar or (K,) target of the L2 term; ``prior``: None (0) or
    the coefficients u⁰ that the roughness penalty measures F from; ``max_abs_theta``:
    |θ| beyond this counts as divergence.
    """

    steps: int
    optimizer: str = "adam"
    learning_rate: float | np.ndarray = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    clip: float | None = None
    batch_ics: int | None = None
    window: Window = field(default_factory=Window)
    truncate: bool = True
    rule: str = "trapezoid"
    l2: float = 0.0
    theta_bar: float | np.ndarray = 0.0
    smoothness: float = 0.0
    prior: np.ndarray | None = None
    scheme: str = "rk4"
    substeps: int = 1
    checkpoint_every: int | None = None
    max_abs_theta: float = 1e3
    log_every: int = 100

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {self.scheme!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.steps < 0 or self.substeps < 1:
            raise ValueError(
                f"need steps >= 0 and substeps >= 1, got {self.steps}, {self.substeps}"
            )
        if not self.smoothness >= 0:
            raise ValueError(f"smoothness must be >= 0, got {self.smoothness!r}")
        if self.batch_ics is not None and self.batch_ics < 1:
            raise ValueError(f"batch_ics must be >= 1 or None, got {self.batch_ics}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 or None, got {self.checkpoint_every}")

    def make_optimizer(self):
        if self.optimizer == "adam":
            return Adam(
                self.learning_rate,
                beta1=self.beta1,
                beta2=self.beta2,
                eps=self.eps,
                max_norm=self.clip,
            )
        return SGD(self.learning_rate, max_norm=self.clip)


@dataclass
class Problem:
    """What Algorithm 1 learns from: data times (uniform), θ(t_0) per training IC, moments."""

    times: np.ndarray
    theta0: np.ndarray
    awake: Callable
    asleep: Callable
    names: tuple[str, ...]
    sites: float = 1.0

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64)
        self.theta0 = np.atleast_2d(np.asarray(self.theta0, dtype=np.float64))
        if self.times.ndim != 1 or self.times.size < 2:
            raise ValueError(f"times must hold >= 2 data times, got shape {self.times.shape}")
        steps = np.diff(self.times)
        if not (steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-9, atol=0)):
            raise ValueError("data times must be equally spaced and increasing")
        if self.theta0.shape[1] != len(self.names):
            raise ValueError(
                f"theta0 has {self.theta0.shape[1]} parameters, names has {len(self.names)}"
            )
        if not np.all(np.isfinite(self.theta0)):
            bad = np.argwhere(~np.isfinite(self.theta0))[0]
            raise ValueError(f"theta0 of IC {bad[0]} is not finite ({self.names[bad[1]]})")
        if not self.sites > 0:
            raise ValueError(f"sites must be positive, got {self.sites}")

    @property
    def dt(self) -> float:
        return float(self.times[1] - self.times[0])

    @property
    def n_steps(self) -> int:
        return self.times.size - 1


@dataclass
class TrainState:
    """Everything a resumed run needs: completed steps, coefficients, optimiser and asleep state,
    per-F excursion totals and the log so far (lists per :data:`LOG_FIELDS`)."""

    step: int
    u: np.ndarray
    optimizer: dict
    asleep: dict
    excursions: np.ndarray
    log: dict[str, list]

    @classmethod
    def fresh(cls, u, n_params) -> TrainState:
        return cls(
            0,
            np.array(u, dtype=np.float64),
            {},
            {},
            np.zeros(n_params, dtype=np.int64),
            {k: [] for k in LOG_FIELDS},
        )


def train(
    problem: Problem,
    model,
    settings: Settings,
    stream: Callable[[int], np.random.Generator],
    state: TrainState,
    *,
    checkpoint: Callable[[TrainState], None] | None = None,
    until: int | None = None,
    progress: bool | None = None,
) -> TrainState:
    """Run Algorithm 1 from ``state`` (:meth:`TrainState.fresh` or a checkpoint) to
    ``settings.steps`` completed steps (or ``until``); returns the final state.

    ``model`` is the :class:`~dbdflow.dynamics.ode.DynamicsModel` of the F_k; ``stream(step)``
    the random generator of one step. ``checkpoint(state)`` is called every
    ``settings.checkpoint_every`` steps and at the end. ``progress``: a progress bar on stderr
    (default: when stderr is a terminal), else a log line every ``settings.log_every`` steps.
    """
    if model.n_params != len(problem.names):
        raise ValueError(f"model has {model.n_params} parameters, problem {len(problem.names)}")
    settings.window.positions(problem.n_steps)  # validates the window against the horizon
    optimizer = settings.make_optimizer()
    if state.optimizer:
        optimizer.load_state(state.optimizer)
    if state.asleep and hasattr(problem.asleep, "load_state"):
        problem.asleep.load_state(state.asleep)
    u = model.check_coeffs(state.u).copy()
    theta_bar = np.asarray(settings.theta_bar, dtype=np.float64)
    end_step = settings.steps if until is None else min(until, settings.steps)
    interactive = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(state.step, end_step, interactive, settings.log_every)
    every = settings.checkpoint_every
    grad_u = SparseGradient(model.n_coeffs)
    penalties = model_roughness(model) if settings.smoothness > 0 else []
    prior = np.zeros_like(u) if settings.prior is None else model.check_coeffs(settings.prior)
    n_ics = problem.theta0.shape[0]
    draws = getattr(problem.asleep, "random", True) or (
        settings.batch_ics is not None and settings.batch_ics < n_ics
    )
    for step in range(state.step, end_step):
        t_start = time.perf_counter()
        rng = stream(step) if draws else None  # building a generator costs ~35 µs
        loss, window, outside = _step(problem, model, settings, rng, step, u, theta_bar, grad_u)
        rough = 0.0
        for slices, penalty in penalties:
            value, grad = penalty.value_and_gradient(np.stack([u[sl] - prior[sl] for sl in slices]))
            for sl, g in zip(slices, grad, strict=True):
                grad_u.add(sl.start, settings.smoothness * g)
            rough += float(value.sum())
        try:
            u = optimizer.step(u, grad_u.values, grad_u.nonzero)  # in place
        except NonFiniteGradient as err:
            k = next(k for k, s in enumerate(model.slices) if s.start <= err.index < s.stop)
            raise DivergenceError(
                f"training step {step}: non-finite gradient of F_{problem.names[k]} "
                f"(coefficient {err.index - model.slices[k].start})"
            ) from None
        grad_u.clear()
        state.excursions += outside
        seconds = time.perf_counter() - t_start
        values = (step, loss, optimizer.grad_norm, *window, int(outside.sum()), rough, seconds)
        for key, value in zip(LOG_FIELDS, values, strict=True):
            state.log[key].append(value)
        state.step, state.u = step + 1, u
        bar.update(state)
        if checkpoint is not None and every and state.step % every == 0:
            _snapshot(state, optimizer, problem)
            checkpoint(state)
    bar.close()
    _snapshot(state, optimizer, problem)
    if checkpoint is not None and (not every or state.step % every):
        checkpoint(state)
    return state


def trajectories(problem: Problem, model, u, settings: Settings):
    """θ over the whole horizon for every IC of ``problem`` at coefficients u: (θ (n_ics,
    n_times, K), excursions int64 (n_ics, K))."""
    traj = solve(
        model,
        u,
        problem.theta0,
        problem.n_steps,
        problem.dt,
        scheme=settings.scheme,
        substeps=settings.substeps,
        keep_from=problem.n_steps,  # no stage points: no adjoint
    )
    return traj.theta, traj.outside


def _snapshot(state, optimizer, problem):
    state.optimizer = optimizer.state()
    state.asleep = problem.asleep.state() if hasattr(problem.asleep, "state") else {}


def _step(problem, model, settings, rng, step, u, theta_bar, grad_u):
    """One forward solve, moments and adjoint: dS/du goes into ``grad_u`` (a cleared
    :class:`~dbdflow.dynamics.adjoint.SparseGradient`); returns (loss, window, excursions)."""
    n_ics = problem.theta0.shape[0]
    if settings.batch_ics is None or settings.batch_ics >= n_ics:
        ics = np.arange(n_ics)
    else:
        ics = np.sort(rng.choice(n_ics, size=settings.batch_ics, replace=False))
    first, last = settings.window.at(step, problem.n_steps)
    stop = first if settings.truncate else 0
    traj = solve(
        model,
        u,
        problem.theta0[ics],
        last,
        problem.dt,
        scheme=settings.scheme,
        substeps=settings.substeps,
        copy=False,
        keep_from=stop,
    )
    check_theta(traj.theta, ics, problem, step, settings.max_abs_theta)
    points = np.arange(first, last + 1)
    theta_w = traj.theta[:, first : last + 1].reshape(-1, model.n_params)
    ic_w, step_w = np.repeat(ics, points.size), np.tile(points, ics.size)
    mu = problem.awake(ic_w, step_w, theta_w)
    mu_model = problem.asleep(theta_w, ic_w, step_w, rng)
    diff = (np.asarray(mu_model) - np.asarray(mu)) / problem.sites
    _check_finite(diff, ic_w, step_w, problem, step, "moments μ̃ − μ")
    dmu = np.zeros_like(traj.theta)
    dmu[:, first : last + 1] = diff.reshape(ics.size, points.size, -1)
    weights = quadrature_weights(last + 1, problem.dt, first, last, settings.rule) / ics.size
    gradient(
        model,
        traj,
        dmu,
        weights,
        l2=settings.l2,
        theta_bar=theta_bar,
        stop=stop,
        out=grad_u,
    )
    with np.errstate(over="ignore"):  # huge moments: the optimiser names the bad coefficient
        loss = float(np.mean(np.sum(diff**2, axis=1)))
    return loss, (first, last), traj.outside.sum(axis=0)


def check_theta(theta, ics, problem, step, max_abs) -> None:
    """Raise :class:`DivergenceError` at the first non-finite or |θ| > max_abs entry."""
    if np.abs(theta).max() <= max_abs:  # False for NaN: then the slow path finds the entry
        return
    bad = ~np.isfinite(theta) | (np.abs(theta) > max_abs)
    if bad.any():
        i, n, k = np.argwhere(bad)[0]
        raise DivergenceError(
            f"training step {step}: θ diverged: {problem.names[k]} = {theta[i, n, k]} for IC "
            f"{ics[i]} at data step {n} (t = {problem.times[n]:g}); |θ| limit {max_abs}. "
            "Lower the learning rate, enlarge the grid or add L2 regularisation."
        )


def _check_finite(values, ics, steps, problem, step, what) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise DivergenceError(
            f"training step {step}: non-finite {what} of {problem.names[k]} for IC {ics[r]} "
            f"at data step {steps[r]} (t = {problem.times[steps[r]]:g})"
        )


class _Progress:
    """A one-line progress bar on an interactive stderr, else periodic log lines."""

    def __init__(self, done, total, interactive, every=100):
        self.total, self.interactive, self.every = total, interactive, every
        self.t0, self.first = time.perf_counter(), done

    def update(self, state):
        step = state.step
        loss = state.log["loss"][-1]
        if self.interactive:
            width = 30
            filled = int(width * step / max(self.total, 1))
            rate = (step - self.first) / max(time.perf_counter() - self.t0, 1e-9)
            sys.stderr.write(
                f"\rtrain [{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} "
                f"loss {loss:.3e} {rate:.1f} steps/s"
            )
            sys.stderr.flush()
        elif step % self.every == 0 or step == self.total:
            log.info(
                "train step %d/%d: loss %.4e, |grad| %.3e, window [%d, %d], excursions %d",
                step,
                self.total,
                loss,
                state.log["grad_norm"][-1],
                state.log["window_start"][-1],
                state.log["window_end"][-1],
                state.log["excursions"][-1],
            )

    def close(self):
        if self.interactive:
            sys.stderr.write("\n")


def model_from_functions(functions) -> DynamicsModel:
    """The :class:`~dbdflow.dynamics.ode.DynamicsModel` of a dynamics file's ``functions``
    (:func:`dbdflow.io.read_dynamics`); with its ``u`` and attrs ``scheme``, ``substeps`` and
    ``dt``, :func:`~dbdflow.dynamics.ode.solve` reproduces the learned θ(t) from any θ(t0)."""
    grids = [HermiteGrid(f["lower"], f["upper"], f["n_cells"]) for f in functions]
    return DynamicsModel(grids, [tuple(int(c) for c in f["coords"]) for f in functions])
