"""Algorithm 1 (train.py): the learned F recovers known dynamic Boltzmann distributions, the
gradient is that of the documented objective, windows reach the horizon, resumes are
bit-identical, divergence is diagnosed.

Well-mixed cases (no lattice, data from exact formulas): a one-parameter exponential family
p(n) ∝ h(n) e^{θn} (dbdflow's sign convention E = −θT) has μ̃(θ) = E[n]; matching the exact mean
μ(t) at all times fixes θ(t) = μ̃⁻¹(μ(t)) and so F = dθ/dt on the visited range:

- A → ∅ at rate k, Poisson family (h = 1/n!): μ̃ = e^θ, μ = μ₀e^{−kt} ⇒ F(θ) = −k;
- birth-death (A → 2A at k_B, A → ∅ at k_D), geometric family (h = 1): μ̃ = e^θ/(1 − e^θ) and
  dμ/dt = (k_B − k_D)μ ⇒ F(θ) = (dμ/dt)/(dμ̃/dθ) = (k_B − k_D)(1 − e^θ), i.e. with ν = −θ,
  dν/dt = (k_D − k_B)(1 − e^{−ν}) as in the issue.

Both F are smooth, so the cubic elements represent them to O(h⁴); the tolerances below are
optimisation tolerances of a noise-free problem (no statistics enter). Adam at a constant rate
can spike once converged, so the long fits end with a short tail at a tenth of the rate
(resumed from the state, as from a checkpoint), which holds the final coefficients at the
optimum.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.boltzmann import chain
from dbdflow.boltzmann.asleep import ExactAsleep
from dbdflow.boltzmann.awake import FixedAwake
from dbdflow.dynamics import DynamicsModel, HermiteGrid, solve
from dbdflow.dynamics.train import (
    DivergenceError,
    Problem,
    Settings,
    TrainState,
    Window,
    train,
    trajectories,
)


class Family:
    """Asleep moments of a one-parameter exponential family: μ̃(θ) = mean(θ), shape (n, 1)."""

    def __init__(self, mean):
        self.mean = mean

    def __call__(self, theta, ics, steps, rng):
        return self.mean(theta)


def poisson_mean(theta):
    return np.exp(theta)


def geometric_mean(theta):
    return np.exp(theta) / -np.expm1(theta)


def well_mixed_problem(mean_family, mu0, rate, times):
    """Problem whose data are the exact means μ₀e^{rate·t} of several ICs."""
    data = (mu0[:, None] * np.exp(rate * times)[None])[..., None]
    inverse = {poisson_mean: np.log, geometric_mean: lambda m: np.log(m / (1 + m))}[mean_family]
    return Problem(times, inverse(mu0)[:, None], FixedAwake(data), Family(mean_family), ("θ",))


def train_phases(problem, model, phases):
    """Adam from u = 0 through consecutive (steps, learning rate) phases, each resuming from the
    previous state; returns (state, the last phase's settings)."""
    state, done = TrainState.fresh(np.zeros(model.n_coeffs), model.n_params), 0
    for steps, lr in phases:
        done += steps
        cfg = Settings(steps=done, learning_rate=lr)
        state = train(
            problem, model, cfg, lambda step: np.random.default_rng(step), state, progress=False
        )
    return state, cfg


def fit_1d(problem, n_cells, phases, bounds=None):
    lo, hi = bounds or (problem.theta0.min() - 1.6, problem.theta0.max() + 0.1)
    grid = HermiteGrid([lo], [hi], n_cells)
    model = DynamicsModel([grid], [(0,)])
    state, cfg = train_phases(problem, model, phases)
    return grid, model, state, cfg


def visited_interior(problem, model, state, cfg):
    """θ values visited by the learned trajectories, without the extreme 5% at each end
    (reached by a single IC at a single time, weakly constrained)."""
    theta, _ = trajectories(problem, model, state.u, cfg)
    lo, hi = np.quantile(theta, [0.05, 0.95])
    return np.linspace(lo, hi, 50)


def test_poisson_decay_learns_a_constant_rate():
    k, times = 1.5, np.linspace(0, 1, 11)
    problem = well_mixed_problem(poisson_mean, np.geomspace(5, 40, 6), -k, times)
    grid, model, state, cfg = fit_1d(problem, 5, [(1500, 0.1)])
    x = visited_interior(problem, model, state, cfg)
    assert state.log["loss"][-1] < 1e-5 * state.log["loss"][0]
    np.testing.assert_allclose(grid.evaluate(state.u, x), -k, atol=0.03 * k)


def test_birth_death_geometric_learns_the_exact_flow():
    """F(θ) = (k_B − k_D)(1 − e^θ) on a range wide enough that no straight line fits it.

    Six ICs μ₀ ∈ [0.5, 3] decaying for two time units visit θ ∈ [−2.3, −0.43] (trimmed), where
    the best affine fit to F misses by 0.063 (computed below). Tolerance: the data are exact and
    the fit converges (gradient norm down by > 10⁶, a stationary point), so what remains is the
    gap between the true F and the KL-optimal 6-cell cubic F — measured 4.2e-4, against an
    interpolation error of the elements of 8e-5 (asserted below); the time-stepping error is
    far smaller (two RK4 substeps change nothing). tol = 2e-3 is ~5x the achieved error and
    1/30 of the linear miss, so a linear F fails by a wide margin. (With μ₀ up to 10-20 the
    KL weights μ(1 + μ) differ by 10³ along the range and the low-θ end converges slowly.)
    """
    kb, kd, times = 1.0, 2.0, np.linspace(0, 2, 21)
    mu0 = np.geomspace(0.5, 3, 6)
    problem = well_mixed_problem(geometric_mean, mu0, kb - kd, times)
    mu = mu0[:, None] * np.exp((kb - kd) * times)
    exact = np.log(mu / (1 + mu))  # θ(t); the grid covers it with 0.3 to spare
    bounds = exact.min() - 0.3, exact.max() + 0.3
    grid, model, state, cfg = fit_1d(problem, 6, [(3500, 0.1), (500, 0.01)], bounds)
    x = visited_interior(problem, model, state, cfg)
    assert x[-1] - x[0] > 1.8
    want = (kb - kd) * (1 - np.exp(x))
    loss, norm = state.log["loss"], state.log["grad_norm"]
    assert loss[-1] < 1e-6 * loss[0] and norm[-1] < 1e-6 * norm[0]
    tol = 2e-3
    exact_f = model.interpolate([lambda z: np.stack([np.exp(z[:, 0]) - 1, np.exp(z[:, 0])], 1)])
    np.testing.assert_allclose(grid.evaluate(exact_f, x), want, atol=tol / 10)
    np.testing.assert_allclose(grid.evaluate(state.u, x), want, atol=tol)
    # want is convex: its best max-norm affine fit is the chord lowered by half the largest gap
    # (equioscillation at both ends and at the gap), so every straight line misses by >= that
    assert np.all(np.diff(want, 2) > 0)
    chord = want[0] + (want[-1] - want[0]) * (x - x[0]) / (x[-1] - x[0])
    assert (chord - want).max() / 2 > 20 * tol


def chain_problem():
    """A periodic (b, J) chain whose θ(t) follows a known linear flow F (representable exactly by
    the cubic elements): db/dt = −0.5 − 0.3J, dJ/dt = −0.8J; data = exact moments along it."""
    model = chain(20, "periodic", terms=("b", "J"))
    grid = HermiteGrid([-2.5, -1.0], [1.0, 1.0], [7, 4])
    dyn = DynamicsModel([grid, grid], [(0, 1), (0, 1)])

    def linear(c0, c1):
        return lambda x: np.stack(
            [c0 + c1 * x[:, 1], 0 * x[:, 0], c1 + 0 * x[:, 0], 0 * x[:, 0]], 1
        )

    u_true = dyn.interpolate([linear(-0.5, -0.3), linear(0.0, -0.8)])
    theta0 = np.array([[-0.5, -0.5], [0.5, 0.5], [0, -0.5], [-0.5, 0.5], [0.5, -0.5]])
    times = np.linspace(0, 2, 21)
    truth = solve(dyn, u_true, theta0, 20, 0.1).theta
    asleep = ExactAsleep(model)
    data = asleep(truth.reshape(-1, 2)).reshape(truth.shape)
    problem = Problem(times, theta0, FixedAwake(data), asleep, model.param_names, model.n_sites)
    return problem, dyn, truth


def test_chain_recovers_a_known_dbd_trajectory():
    """The true F is representable and the data exact, so the loss can fall to 0; it falls
    slowly (below 1e-6 of its start from step ~670, 1e-7 at 2000, measured), and constant-rate
    Adam then spikes now and then. 2000 steps and a low-rate tail give ~1.0e-7 throughout the
    last 200 steps: 10x under the threshold, checked on all of them so a lucky last step cannot
    pass; the θ error is then 2.3e-3, 4x under its bound (θ moves by up to 1.15)."""
    problem, dyn, truth = chain_problem()
    state, cfg = train_phases(problem, dyn, [(2000, 0.1), (500, 0.01)])
    theta, outside = trajectories(problem, dyn, state.u, cfg)
    assert not outside.any()
    assert max(state.log["loss"][-200:]) < 1e-6 * state.log["loss"][0]
    assert np.abs(theta - truth).max() < 0.01


@pytest.mark.parametrize("batch", [None, 5, 2])
def test_a_step_builds_its_generator_only_when_it_draws(batch):
    """Exact asleep moments draw nothing: without a batch to draw (None or all 5 ICs) the step's
    stream is never built, and the run equals one whose stream is; with a batch of 2 it is built
    once per step."""
    problem, dyn, _ = chain_problem()
    cfg = Settings(steps=6, learning_rate=0.05, window=Window(4, 2), batch_ics=batch)
    built = []

    def stream(step):
        built.append(step)
        return np.random.default_rng(step)

    state = train(problem, dyn, cfg, stream, TrainState.fresh(np.zeros(dyn.n_coeffs), 2))
    assert built == ([] if batch in (None, 5) else list(range(6)))
    problem.asleep.random = True  # as if it drew: the stream is built every step
    again = train(problem, dyn, cfg, stream, TrainState.fresh(np.zeros(dyn.n_coeffs), 2))
    assert np.array_equal(state.u, again.u)


@pytest.mark.parametrize(("truncate", "batch"), [(False, None), (False, 3), (True, 2)])
def test_step_gradient_is_that_of_the_documented_objective(truncate, batch):
    """One step's gradient equals central differences of S(u) = (1/|B|) Σ_i Σ_n w_n KL_n / N
    (Poisson KL(μ‖μ̃) = μ ln(μ/μ̃) − μ + μ̃), with θ(τ) held fixed when truncated."""
    times = np.linspace(0, 1, 11)
    problem = well_mixed_problem(poisson_mean, np.array([3.0, 6.0, 9.0, 12.0]), -1.0, times)
    problem.sites = 7.0
    grid = HermiteGrid([0.0], [3.0], 3)
    model = DynamicsModel([grid], [(0,)])
    u = np.random.default_rng(1).normal(scale=0.3, size=model.n_coeffs)
    window = Window(4, shift=3, every=1)
    step = 1  # window [3, 7]
    cfg = Settings(steps=2, optimizer="sgd", learning_rate=1.0, window=window, truncate=truncate)
    cfg = Settings(**{**cfg.__dict__, "batch_ics": batch})
    from dbdflow.dynamics.adjoint import SparseGradient, quadrature_weights
    from dbdflow.dynamics.train import _step

    rng_step = np.random.default_rng(5)
    buffer = SparseGradient(model.n_coeffs)
    _step(problem, model, cfg, rng_step, step, u, 0.0, buffer)
    grad = buffer.values.copy()
    # the recorded entries hold every non-zero one; clearing restores an all-zero buffer
    assert set(np.flatnonzero(grad)) <= set(buffer.nonzero.tolist())
    assert len(set(buffer.nonzero.tolist())) == buffer.nonzero.size
    buffer.clear()
    assert not buffer.values.any() and buffer.nonzero.size == 0
    ics = (
        np.arange(4)
        if batch is None
        else np.sort(np.random.default_rng(5).choice(4, size=batch, replace=False))
    )
    first, last = window.at(step, problem.n_steps)
    w = quadrature_weights(last + 1, 0.1, first, last)
    mu = problem.awake.moments[..., 0]
    start = first if truncate else 0
    theta_start = solve(model, u, problem.theta0[ics], start, 0.1).theta[:, -1]

    def objective(uu):
        th = solve(model, uu, theta_start, last - start, 0.1).theta[..., 0]
        th = np.concatenate([np.zeros((ics.size, start)), th], axis=1)
        m, mt = mu[ics, : last + 1], np.exp(th)
        kl = m * np.log(m / mt) - m + mt
        return (w * kl).sum() / ics.size / problem.sites

    eps = 1e-6
    fd = np.array(
        [(objective(u + eps * e) - objective(u - eps * e)) / (2 * eps) for e in np.eye(u.size)]
    )
    assert np.linalg.norm(grad - fd) <= 1e-6 * np.linalg.norm(fd)


@settings(max_examples=60, deadline=None)
@given(
    n_steps=st.integers(1, 40),
    size=st.integers(1, 40),
    shift=st.integers(1, 7),
    every=st.integers(1, 5),
    start=st.integers(0, 10),
    cycle=st.booleans(),
)
def test_window_schedule_reaches_the_horizon(n_steps, size, shift, every, start, cycle):
    win = Window(size, shift, every, start, cycle)
    if size >= n_steps:  # longer than the horizon: the whole horizon
        assert win.at(3, n_steps) == (0, n_steps) and win.steps_to_horizon(n_steps) == 1
        return
    if start > n_steps - size:
        with pytest.raises(ValueError, match="window start"):
            win.positions(n_steps)
        return
    need = win.steps_to_horizon(n_steps)
    spans = [win.at(s, n_steps) for s in range(need + 3 * every)]
    assert all(last - first == size and 0 <= first for first, last in spans)
    assert spans[0][0] == start
    assert spans[need - 1][1] == n_steps  # reached after exactly steps_to_horizon steps
    assert all(last < n_steps for _, last in spans[: need - 1])
    firsts = [f for f, _ in spans[:need]]
    assert all(
        0 < b - a <= shift for a, b in zip(firsts[::every], firsts[every::every], strict=False)
    )
    if not cycle:
        assert all(last == n_steps for _, last in spans[need - 1 :])
    assert Window().at(7, n_steps) == (0, n_steps)


class CountingAsleep(Family):
    """A stateful asleep provider (as persistent chains are): its state must round-trip."""

    def __init__(self, mean):
        super().__init__(mean)
        self.calls = 0

    def __call__(self, theta, ics, steps, rng):
        self.calls += 1
        return self.mean(theta) * (1 + 1e-3 * rng.normal(size=theta.shape))

    def state(self):
        return {"calls": np.array(self.calls)}

    def load_state(self, state):
        self.calls = int(state["calls"])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_is_bit_identical(optimizer):
    """2k steps in one run equal k steps, a checkpoint, and k more from it: u, log, state."""
    times = np.linspace(0, 1, 11)
    grid = HermiteGrid([-1.0], [4.0], 4)
    model = DynamicsModel([grid], [(0,)])

    def run(state, until, saved):
        problem = well_mixed_problem(poisson_mean, np.geomspace(5, 40, 5), -1.0, times)
        problem.asleep = CountingAsleep(poisson_mean)
        cfg = Settings(
            steps=20,
            optimizer=optimizer,
            learning_rate=0.05,
            batch_ics=3,
            clip=50.0,
            window=Window(3, 2, 3),
            checkpoint_every=4,
        )
        return train(
            problem,
            model,
            cfg,
            lambda step: np.random.default_rng([11, step]),
            state,
            checkpoint=lambda s: saved.append(copy_state(s)),
            until=until,
            progress=False,
        )

    saved_full, saved_half = [], []
    full = run(TrainState.fresh(np.zeros(model.n_coeffs), 1), None, saved_full)
    half = run(TrainState.fresh(np.zeros(model.n_coeffs), 1), 10, saved_half)
    assert [s.step for s in saved_half] == [4, 8, 10]
    resumed = run(copy_state(saved_half[-1]), None, [])
    assert resumed.step == full.step == 20
    assert np.array_equal(resumed.u, full.u)
    timing = "seconds"
    assert {k: v for k, v in resumed.log.items() if k != timing} == {
        k: v for k, v in full.log.items() if k != timing
    }
    assert np.array_equal(resumed.excursions, full.excursions)
    assert all(np.array_equal(resumed.optimizer[k], full.optimizer[k]) for k in full.optimizer)
    assert resumed.asleep["calls"] == full.asleep["calls"] == 20
    assert not np.array_equal(half.u, full.u)


def copy_state(s):
    return TrainState(
        s.step,
        s.u.copy(),
        {k: np.array(v) for k, v in s.optimizer.items()},
        {k: np.array(v) for k, v in s.asleep.items()},
        s.excursions.copy(),
        {k: list(v) for k, v in s.log.items()},
    )


def test_divergence_names_step_ic_and_parameter():
    problem, dyn, _ = chain_problem()
    cfg = Settings(steps=5, learning_rate=0.1, max_abs_theta=10.0)
    u = np.zeros(dyn.n_coeffs)
    u[dyn.slices[1]][::4] = 1e3  # F_J = 1000 at every vertex: J leaves |θ| <= 10 at once
    stream = lambda step: np.random.default_rng(step)  # noqa: E731
    with pytest.raises(DivergenceError, match=r"step 0: θ diverged: J_AA = .* IC 0 at data step"):
        train(problem, dyn, cfg, stream, TrainState.fresh(u, 2), progress=False)
    bad = Problem(
        problem.times, problem.theta0, problem.awake, lambda th, *a: np.nan * th, ("b", "J")
    )
    with pytest.raises(DivergenceError, match=r"step 0: non-finite moments .* of b for IC 0"):
        train(bad, dyn, cfg, stream, TrainState.fresh(np.zeros(dyn.n_coeffs), 2), progress=False)


@pytest.mark.parametrize("column", [0, 1])
def test_overflowing_gradient_names_the_function_and_coefficient(column):
    """Finite but huge asleep moments (1e300, one parameter's column) pass the moment check,
    and the gradient entries (~1e298) are finite too, but their squares overflow: the step stops
    with a DivergenceError naming F of that parameter and a coefficient of it on which the
    gradient is huge (with u = 0 the other F's gradient stays moderate)."""
    problem, dyn, _ = chain_problem()

    def huge(theta, ics, steps, rng):
        mu = problem.asleep(theta, ics, steps, rng).copy()
        mu[:, column] = 1e300
        return mu

    bad = Problem(problem.times, problem.theta0, problem.awake, huge, problem.names, problem.sites)
    cfg = Settings(steps=3, learning_rate=0.1)
    name = problem.names[column]
    stream = lambda step: np.random.default_rng(step)  # noqa: E731
    with np.errstate(over="ignore"):  # the logged loss Σ((μ̃ − μ)/N)² overflows first
        with pytest.raises(
            DivergenceError,
            match=rf"step 0: non-finite gradient of F_{re.escape(name)} \(coefficient \d+\)",
        ) as err:
            train(
                bad, dyn, cfg, stream, TrainState.fresh(np.zeros(dyn.n_coeffs), 2), progress=False
            )
        from dbdflow.dynamics.adjoint import SparseGradient
        from dbdflow.dynamics.train import _step

        buffer = SparseGradient(dyn.n_coeffs)
        _step(bad, dyn, cfg, stream(0), 0, np.zeros(dyn.n_coeffs), 0.0, buffer)
    grad = buffer.values[dyn.slices[column]]
    assert np.all(np.isfinite(buffer.values))
    other = buffer.values[dyn.slices[1 - column]]
    assert np.abs(other).max() < 1e3
    coefficient = int(re.search(r"coefficient (\d+)\)", str(err.value))[1])
    assert abs(grad[coefficient]) > 1e250


def test_progress_bar_shows_steps_and_loss(capsys):
    """progress=True: one carriage-return line per step on stderr with the step count and the
    logged loss, ended by a newline."""
    problem = well_mixed_problem(poisson_mean, np.geomspace(5, 40, 3), -1.0, np.linspace(0, 1, 6))
    model = DynamicsModel([HermiteGrid([0.0], [4.0], 3)], [(0,)])
    state = train(
        problem,
        model,
        Settings(steps=3, learning_rate=0.05),
        lambda step: np.random.default_rng(step),
        TrainState.fresh(np.zeros(model.n_coeffs), 1),
        progress=True,
    )
    err = capsys.readouterr().err
    assert err.startswith("\r") and err.endswith("\n")
    lines = err[1:-1].split("\r")
    assert len(lines) == 3
    for step, (line, loss) in enumerate(zip(lines, state.log["loss"], strict=True), start=1):
        filled = 30 * step // 3
        bar = "#" * filled + "." * (30 - filled)
        assert line.startswith(f"train [{bar}] {step}/3 loss {loss:.3e} "), line
        assert line.endswith(" steps/s")
