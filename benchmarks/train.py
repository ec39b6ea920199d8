"""Algorithm 1 timings (dbdflow.dynamics.train): seconds per gradient step and for whole schedules.

Synthetic data of the paper's shapes (no simulation needed): for the 1D A+A models (§IV.A) 50
training ICs on an open chain of N = 1000 sites, 201 data times (200 steps of 0.01), θ(t0) uniform
in [-1, 1]^3; data moments are the exact moments along a smooth synthetic trajectory (b decreasing,
J and K relaxing), and the chain RBM's receptive-field (bond) histograms are derived from the same
counts and pairs. The F grids (the paper's spacings, 0.5 and 0.5 x 0.5 x 0.05) span the ICs' θ(t0)
plus a margin per axis, (2, 1, 1) and (2.5, 1.5, 1): training then stays inside them. Asleep
moments are exact (transfer matrices), awake moments fixed (visible) or from the bond histograms
(hidden), θ(t0) of the hidden model fitted at t0 (fit_exact, as the fit-initial stage does). For
the Rössler model (§IV.B) one IC on 10x10x10 with random synthetic field histograms, asleep moments
from 10 random-start chains x 10 sweeps per data point, 10 substeps, window 10.

Table 1: ms per step, full horizon (200 data steps, all 50 ICs) and the eq. 41 window (5 data
steps, tau + 1 every 2 steps, averaged over one pass of the schedule). Table 2: seconds for the
paper's A+A schedule (9,500 steps, window 5 sliding every 2, cycling) per model, target <= 20 s on
one core, for RK4 and Euler (one substep each). Adam with learning rate 0.02 (visible) and 0.01
(hidden). Run on an idle core for real numbers.

OpenBLAS is limited to one thread (one core, and its idle worker threads otherwise cost
milliseconds to wake for each small dot product in the optimiser's gradient-norm computation).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

import numpy as np

from dbdflow.boltzmann import chain, chain_rbm, lattice_rbm
from dbdflow.boltzmann.asleep import ExactAsleep, SampledAsleep
from dbdflow.boltzmann.awake import FieldAwake, FixedAwake
from dbdflow.boltzmann.initial_theta import fit_exact
from dbdflow.dynamics import DynamicsModel, HermiteGrid
from dbdflow.dynamics.train import Problem, Settings, TrainState, Window, train

N_ICS, N_STEPS, DT, N_SITES = 50, 200, 0.01, 1000


def synthetic_visible(rng):
    model = chain(N_SITES, "reflecting")
    theta0 = rng.uniform(-1, 1, (N_ICS, 3))
    t = np.arange(N_STEPS + 1) * DT
    path = theta0[:, None, :] + np.stack(
        [-0.8 * t + 0 * theta0[:, :1], -0.5 * t * theta0[:, 1:2], -0.7 * t * theta0[:, 2:3]], -1
    )
    asleep = ExactAsleep(model)
    data = asleep(path.reshape(-1, 3)).reshape(path.shape)
    return model, theta0, data


def problems(rng):
    vis, theta0, data = synthetic_visible(rng)
    times = np.arange(N_STEPS + 1) * DT
    yield (
        "visible (chain b, J, K)",
        Problem(times, theta0, FixedAwake(data), ExactAsleep(vis), vis.param_names, N_SITES),
        [0.5, 0.5, 0.5],
        (2.0, 1.0, 1.0),  # b falls by 1.6 over the horizon
        0.02,
    )
    hid = chain_rbm(N_SITES, "reflecting")
    counts, pairs = data[..., 0], data[..., 1]
    n1 = 2 * counts - 2 * pairs - 2 * counts / N_SITES
    hist = np.stack([N_SITES - 1 - n1 - pairs, n1, pairs], -1)
    awake = FieldAwake(hid, np.arange(3)[:, None], hist, counts[..., None])
    theta0_h = np.array(
        [
            fit_exact(
                hid,
                lambda th, i=i: awake([i], [0], th[None])[0],
                lambda th, i=i: awake.log_partial([i], [0], th[None])[0],
                np.array([0.0, 0.5, 0.0]),
                awake_cov=lambda th, i=i: awake.covariance([i], [0], th)[0],
                l2=1e-4,
            )[0]
            for i in range(N_ICS)
        ]
    )
    yield (
        "hidden (chain RBM b, W, b')",
        Problem(times, theta0_h, awake, ExactAsleep(hid), hid.param_names, N_SITES),
        [0.5, 0.5, 0.05],
        # the fitted θ(t0) reach the grid's edge: with the visible model's margins, Euler training
        # left the grid and diverged at step 5,000 on one machine and not on another (rounding)
        (2.5, 1.5, 1.0),
        0.01,
    )


def dynamics_model(theta0, spacing, margin):
    lo = theta0.min(0) - np.array(margin)
    hi = theta0.max(0) + np.array(margin)
    cells = np.ceil((hi - lo) / np.array(spacing)).astype(int)
    grid = HermiteGrid(lo, lo + cells * np.array(spacing), cells)
    k = theta0.shape[1]
    return DynamicsModel([grid] * k, [tuple(range(k))] * k)


def run(problem, model, window, steps, scheme="rk4", lr=0.02):
    cfg = Settings(steps=steps, learning_rate=lr, window=window, scheme=scheme)
    state = TrainState.fresh(np.zeros(model.n_coeffs), model.n_params)
    start = time.perf_counter()
    train(problem, model, cfg, lambda s: np.random.default_rng(s), state, progress=False)
    return time.perf_counter() - start


def rossler_step_ms(rng):
    model = lattice_rbm(
        (10, 10, 10), ("A", "B", "C"), ("X", "Y", "Z"), couple=dict(A="X", B="Y", C="Z")
    )
    keys = np.array([(a, b, c) for a in range(9) for b in range(9 - a) for c in range(9 - a - b)])
    hist = rng.dirichlet(np.ones(len(keys)), size=(1, 501)) * 1000
    counts = np.full((1, 501, 3), 200.0)
    theta0 = np.log([[0.5, 0.5, 0.5, 1, 1, 1, 1 / 7, 1 / 7, 1 / 7]])
    theta0[0, 3:6] = 0
    problem = Problem(
        np.arange(501) * DT,
        theta0,
        FieldAwake(model, keys, hist, counts),
        SampledAsleep(model, "random", sweeps=10, chains=10),
        model.param_names,
        1000,
    )
    grid = HermiteGrid(theta0[0, :3] - 1, theta0[0, :3] + 1, 20)
    dyn = DynamicsModel([grid] * 9, [(0, 1, 2)] * 9)
    cfg = Settings(steps=12, learning_rate=0.01, window=Window(10, 1, 20), substeps=10)
    state = TrainState.fresh(np.zeros(dyn.n_coeffs), 9)
    train(problem, dyn, cfg, lambda s: np.random.default_rng(s), state, until=2, progress=False)
    start = time.perf_counter()
    train(problem, dyn, cfg, lambda s: np.random.default_rng(s), state, progress=False)
    return (time.perf_counter() - start) / 10 * 1e3


def main():
    rng = np.random.default_rng(0)
    schedule = Window(5, 1, 2, cycle=True)
    rows = []
    print("| model | scheme | coefficients | ms/step, full horizon | ms/step, window 5 |")
    print("|---|---|---|---|---|")
    for name, problem, spacing, margin, lr in problems(rng):
        model = dynamics_model(problem.theta0, spacing, margin)
        for scheme in ("rk4", "euler"):
            run(problem, model, Window(), 2, scheme, lr)  # compile
            full = run(problem, model, Window(), 20, scheme, lr) / 20 * 1e3
            one_pass = schedule.steps_to_horizon(N_STEPS)
            windowed = run(problem, model, schedule, one_pass, scheme, lr) / one_pass * 1e3
            print(f"| {name} | {scheme} | {model.n_coeffs} | {full:.2f} | {windowed:.2f} |")
        rows.append((name, problem, model, lr))
    print(
        "| Rössler lattice RBM (1 IC, window 10, 10 substeps, 10 chains x 10 sweeps) | rk4 "
        f"| 9 x 74088 | - | {rossler_step_ms(rng):.1f} |"
    )
    print("\n| model | scheme | paper A+A schedule: 9,500 steps, window 5 every 2, 50 ICs | s |")
    print("|---|---|---|---|")
    for name, problem, model, lr in rows:
        for scheme in ("rk4", "euler"):
            seconds = run(problem, model, schedule, 9500, scheme, lr)
            print(f"| {name} | {scheme} | 200 data steps | {seconds:.1f} |")


if __name__ == "__main__":
    main()
