"""Gibbs-sampler, exact-1D and awake-phase timings (python benchmarks/gibbs.py).

Prints ns per unit update (one conditional draw of one unit in one chain) for the 3D Rössler RBM
(10³ visible + 10³ hidden units, 4 states each, eq. 44) and the 1D chain with K terms (N = 1000),
100 chains each; the time for exact transfer-matrix moments of N = 1000 chains; and the awake
moments E[T | v] of 100 Rössler lattices by mean field and from receptive-field histograms.
Times are CPU times (process_time), best of several repeats, so other load matters less.
"""

from __future__ import annotations

import time

import numpy as np

from dbdflow.boltzmann import chain, chain_rbm, exact_moments, gibbs, lattice_rbm


def best_of(fn, repeats: int = 5, calls: int = 1) -> float:
    """Best CPU seconds per call of ``fn(i)`` over ``repeats`` batches of ``calls`` calls."""
    fn(0)  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for i in range(calls):
            fn(i)
        times.append((time.process_time() - start) / calls)
    return min(times)


def gibbs_row(name, model, theta, n_chains=100, n_sweeps=20):
    rng = np.random.default_rng(0)
    state = gibbs.random_state(model, n_chains, rng)
    seconds = best_of(lambda _: gibbs.sweep(model, theta, state, n_sweeps, rng))
    updates = n_chains * n_sweeps * model.n_units
    size = f"{model.n_units} units x {n_chains} chains"
    return name, size, seconds / updates * 1e9, "ns/update (target <= 20)"


def main() -> None:
    rossler = lattice_rbm(
        (10, 10, 10), ("A", "B", "C"), ("X", "Y", "Z"), couple={"A": "X", "B": "Y", "C": "Z"}
    )
    theta_r = np.array([-np.log(2)] * 3 + [0.3, -0.2, 0.1] + [-np.log(1 / 7)] * 3)
    rows = [
        gibbs_row("Gibbs, 3D Rössler RBM", rossler, theta_r),
        gibbs_row("Gibbs, 1D chain (b, J, K)", chain(1000, "periodic"), [0.3, -0.5, 0.8]),
        gibbs_row("Gibbs, 1D chain RBM", chain_rbm(1000, "periodic"), [-0.5, 1.0, -1.0]),
    ]
    for model, theta in (
        (chain(1000, "periodic"), np.array([0.3, -0.5, 0.8])),
        (chain(1000, "reflecting"), np.array([0.3, -0.5, 0.8])),
        (chain_rbm(1000, "periodic"), np.array([-0.5, 1.0, -1.0])),
    ):
        seconds = best_of(lambda i, m=model, t=theta: exact_moments(m, t + 1e-6 * i), 5, 50)
        name = f"exact moments, {model.family}"
        rows.append((name, f"N = 1000, {model.boundary}", seconds * 1e3, "ms (target <= 1)"))
    state = gibbs.sample(rossler, theta_r, 100, 20, np.random.default_rng(1))
    lattices = state.visible.copy()
    seconds = best_of(lambda _: rossler.awake_statistics(lattices, theta_r), 3)
    rows.append(("awake E[T|v], mean field", "Rössler, 100 lattices", seconds * 1e3, "ms"))
    build = best_of(lambda _: rossler.hidden_histogram(lattices), 3)
    hist = rossler.hidden_histogram(lattices)
    seconds = best_of(lambda i: rossler.awake_from_histogram(hist, theta_r + 1e-6 * i), 5, 20)
    rows.append(("awake E[T|v], histogram", "same, once per data set", build * 1e3, "ms"))
    rows.append(("awake E[T|v], histogram", "same, per θ", seconds * 1e3, "ms"))
    print(f"{'benchmark':30s} {'size':30s} {'time':>9s}")
    for name, size, value, unit in rows:
        print(f"{name:30s} {size:30s} {value:9.3f} {unit}")


if __name__ == "__main__":
    main()
