"""Forward and adjoint kernels (dbdflow.dynamics.ode / .adjoint): ns per right-hand-side evaluation.

For grids of one common dimension d ≤ 3 the kernels read each visited cell's coefficients from a
cell cache (contiguous lines; F and its gradient summed one axis at a time over vectorised rows);
any other model takes the generic path, which reads the 4^d coefficients from u row by row. The
table times both paths on the same model (the generic one forced with a rank-4 ``rank_key``), best
of 20 runs:

- forward: :func:`~dbdflow.dynamics.ode.solve`, ns per evaluation of the whole F at one stage
  point (all members of every group);
- adjoint: :func:`~dbdflow.dynamics.adjoint.gradient` back over the last 5 data steps, ns per
  stage point.

Models: the paper's A+A shapes (three F's on one 3-d grid of 0.5 spacing; 50 ICs, 105 data steps,
the mean window end of the A+A schedule), the Rössler shape (nine F's on one 3-d grid of 0.1
spacing, 1 IC, 500 steps, 10 substeps), and 1-d / 2-d / mixed models for comparison. F is a
smooth function (sums of sines) interpolated on the grid.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

import numpy as np

from dbdflow.dynamics import DynamicsModel, HermiteGrid, gradient, quadrature_weights, solve
from dbdflow.dynamics.adjoint import SparseGradient


def smooth(k, d):
    """Value and first derivatives of Σ_a 0.3 sin(x_a + k) − 0.2 x_{k mod d} at the vertices."""

    def f(x):
        out = np.zeros((x.shape[0], 1 << d))
        out[:, 0] = 0.3 * np.sin(x + k).sum(1) - 0.2 * x[:, k % d]
        for a in range(d):
            out[:, 1 << a] = 0.3 * np.cos(x[:, a] + k) - 0.2 * (a == k % d)
        return out

    return f


def models(rng):
    theta0 = rng.uniform(-1, 1, (50, 3))
    g3 = HermiteGrid([-2.5, -2.0, -2.0], [2.5, 2.0, 2.0], [10, 8, 8])
    g2 = HermiteGrid([-2.5, -2.0], [2.5, 2.0], [10, 8])
    g1 = [HermiteGrid([lo], [hi], 10) for lo, hi in ((-2.5, 2.5), (-2.0, 2.0), (-2.0, 2.0))]
    yield "A+A shape: 3 F on one 3-d grid", DynamicsModel([g3] * 3, [(0, 1, 2)] * 3), theta0, 105, 1
    yield "3 F on one 2-d grid", DynamicsModel([g2] * 3, [(0, 1)] * 3), theta0, 105, 1
    yield "3 F on 1-d grids", DynamicsModel(g1, [(0,), (1,), (2,)]), theta0, 105, 1
    mixed = DynamicsModel([g2, g2, g1[2]], [(0, 1), (0, 1), (2,)])
    yield "mixed 2-d + 1-d (generic path only)", mixed, theta0, 105, 1
    rossler = HermiteGrid([-3.0, -3.0, -3.0], [1.1, 1.1, 1.1], 41)
    theta9 = np.concatenate([[-1.0, -1.0, -1.0], np.zeros(3), np.full(3, -1.9)])[None]
    model9 = DynamicsModel([rossler] * 9, [(0, 1, 2)] * 9)
    yield "Rössler shape: 9 F on one 3-d grid (41^3)", model9, theta9, 500, 10


def best_of(f, runs=20):
    f()
    best = np.inf
    for _ in range(runs):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def per_evaluation(model, u, theta0, n_steps, substeps, scheme):
    """(forward ns per evaluation, adjoint ns per stage point) for one model and scheme."""
    n_stages = 4 if scheme == "rk4" else 1
    kwargs = dict(scheme=scheme, substeps=substeps, copy=False)
    traj = solve(model, u, theta0, n_steps, 0.01, **kwargs)
    dmu = np.sin(traj.theta)
    weights = quadrature_weights(n_steps + 1, 0.01, n_steps - 5, n_steps)
    out = SparseGradient(model.n_coeffs)

    def adjoint_once():
        out.clear()
        gradient(model, traj, dmu, weights, stop=n_steps - 5, out=out)

    forward = best_of(lambda: solve(model, u, theta0, n_steps, 0.01, **kwargs))
    adjoint = best_of(adjoint_once)
    per_ic = substeps * n_stages * theta0.shape[0]
    return forward / (n_steps * per_ic) * 1e9, adjoint / (5 * per_ic) * 1e9


def main():
    rng = np.random.default_rng(0)
    print("| model | scheme | forward ns/eval: cache, generic | adjoint ns/point: cache, generic |")
    print("|---|---|---|---|")
    for name, model, theta0, n_steps, substeps in models(rng):
        generic = DynamicsModel(model.grids, model.coords)
        generic.rank_key = np.zeros((0,) * 4)
        u = model.interpolate([smooth(k, g.d) for k, g in enumerate(model.grids)])
        u = u / 10 if model.n_params == 9 else u  # slow Rössler-sized motion on the fine grid
        paths = (model, generic) if model.rank_key.ndim <= 3 else (model,)
        for scheme in ("rk4", "euler"):
            cells = [per_evaluation(m, u, theta0, n_steps, substeps, scheme) for m in paths]
            fws = ", ".join(f"{c[0]:.0f}" for c in cells)
            bws = ", ".join(f"{c[1]:.0f}" for c in cells)
            print(f"| {name} | {scheme} | {fws} | {bws} |")


if __name__ == "__main__":
    main()
