"""Finite-element and forward/adjoint timings (paper eq. 34; Algorithm 1's inner loop).

Table 1: ns per point of HermiteGrid.evaluate / gradient (batches of 10^5 random points, 8 cells
per axis). Table 2: ms per forward solve and per forward + exact discrete adjoint for the A+A
visible model's shape: 50 ICs, 200 data steps, K = 3 parameters each with an F over all three
(d = 3, cells 0.5 wide on [-2, 2]^3). Best of 7 repeats, CPU time of this process (so that
other load on a shared machine inflates the numbers less than wall time would).
"""

import time

import numpy as np

from dbdflow.dynamics import HermiteGrid
from dbdflow.dynamics.adjoint import gradient, quadrature_weights
from dbdflow.dynamics.ode import DynamicsModel, solve


def best(f, repeats=7):
    f()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        f()
        times.append(time.process_time() - start)
    return min(times)


def fem_table(rng):
    n = 100_000
    print("| d | evaluate ns/point | gradient ns/point | basis ns/point |")
    print("|---|---|---|---|")
    for d in (1, 2, 3):
        grid = HermiteGrid([-2.0] * d, [2.0] * d, 8)
        u = rng.normal(size=grid.n_coeffs)
        x = rng.uniform(-2, 2, (n, d))
        calls = (
            lambda grid=grid, u=u, x=x: grid.evaluate(u, x),
            lambda grid=grid, u=u, x=x: grid.gradient(u, x),
            lambda grid=grid, x=x: grid.basis(x),
        )
        cols = [best(call) / n * 1e9 for call in calls]
        print(f"| {d} | " + " | ".join(f"{c:.1f}" for c in cols) + " |")


def ode_table(rng):
    grid = HermiteGrid([-2.0] * 3, [2.0] * 3, 8)
    model = DynamicsModel([grid] * 3, [(0, 1, 2)] * 3)
    u = 0.3 * rng.normal(size=model.n_coeffs)
    theta0 = rng.uniform(-1, 1, (50, 3))
    n_steps, dt = 200, 0.01
    weights = quadrature_weights(n_steps + 1, dt)
    print("\n| scheme | substeps | forward ms | forward + adjoint ms |")
    print("|---|---|---|---|")
    for scheme, substeps in (("euler", 1), ("euler", 10), ("rk4", 1), ("rk4", 10)):

        def forward(scheme=scheme, substeps=substeps):
            return solve(model, u, theta0, n_steps, dt, scheme=scheme, substeps=substeps)

        dmu = rng.normal(size=forward().theta.shape)

        def both(forward=forward, dmu=dmu):
            return gradient(model, forward(), dmu, weights)

        print(f"| {scheme} | {substeps} | {best(forward) * 1e3:.2f} | {best(both) * 1e3:.2f} |")


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    fem_table(rng)
    ode_table(rng)
