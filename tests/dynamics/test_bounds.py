"""The dynamics kernels index only inside their arrays.

numba does not check indices unless compiled with NUMBA_BOUNDSCHECK=1, and an out-of-range write
(e.g. a scratch row sized for d = 3 used for d = 1) corrupts memory silently or crashes later
somewhere else. This test runs the forward, adjoint, roughness and optimiser kernels on every
kernel path (cell cache for d = 1, 2, 3, the generic path, several groups and members, cache-line
conflicts) in a fresh process compiled with bounds checks, where such an index raises IndexError.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_adjoint import MODELS
    from dbdflow.dynamics import (
        Adam, DynamicsModel, HermiteGrid, SGD, gradient, quadrature_weights, solve,
    )
    from dbdflow.dynamics.adjoint import SparseGradient
    from dbdflow.dynamics.roughness import model_roughness

    rng = np.random.default_rng(0)
    big = HermiteGrid([-3.0, -3.0, -3.0], [3.0, 3.0, 3.0], 14)  # > CELL_LINES cells: shared lines
    models = [f() for f in MODELS.values()] + [DynamicsModel([big] * 3, [(0, 1, 2)] * 3)]
    for model in models:
        u = 0.1 * rng.normal(size=model.n_coeffs)
        theta0 = rng.uniform(-3.2, 3.2, (7, model.n_params))  # some outside the grids
        for scheme, substeps in (("rk4", 1), ("euler", 3)):
            for keep_from in (0, 4, 9):
                traj = solve(model, u, theta0, 9, 0.05, scheme=scheme, substeps=substeps,
                             keep_from=keep_from)
                weights = quadrature_weights(10, 0.05, keep_from, 9)
                out = SparseGradient(model.n_coeffs)
                gradient(model, traj, np.sin(traj.theta), weights, l2=0.1, stop=keep_from,
                         out=out)
                for opt in (Adam(0.01), Adam(np.full(model.n_coeffs, 0.01)), SGD(0.01)):
                    for _ in range(3):
                        opt.step(u.copy(), out.values, out.nonzero)
        for slices, penalty in model_roughness(model):
            penalty.value_and_gradient(np.stack([u[sl] for sl in slices]))
    print("ok")
    """
)


@pytest.mark.slow
def test_kernels_stay_in_bounds(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    here = os.path.dirname(__file__)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, here], env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
