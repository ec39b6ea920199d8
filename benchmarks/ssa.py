"""Speed of the lattice simulator: ns per hop attempt and trajectories per second.

    python benchmarks/ssa.py [--quick]

Rows: the paper's 1D A + A -> 0 training data (N = 1000 sites half filled, p = 0.01, dt = 0.01,
200 steps, 2,500 trajectories, every step recorded), the 3D Rössler system (10x10x10, 200 each of
A, B, C, 500 steps, every step recorded), and pure hopping at half filling for 10^3 ... 10^6
particles (1D ring and 3D torus, only the last state recorded). Times include recording and are
the best of three repeats for the scaling rows; one core; targets: <= 30 ns/hop in cache, within
2x at 10^6 particles, the 2,500 A + A trajectories in <= 15 s.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import yaml

from dbdflow.simulate import Lattice, ReactionNetwork, run_with_hop_counts, sample_counts

# the reactions of paper eq. 42, as the shipped Rössler config states them
ROSSLER = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "config/paper/rossler_3d.yaml").read_text()
)["reactions"]


def _timed(network, lattice, initial, n_steps, dt, rng, record_every, semantics):
    start = time.perf_counter()
    _, hops = run_with_hop_counts(
        network, lattice, initial, n_steps, dt, rng, record_every, semantics
    )
    return time.perf_counter() - start, int(hops.sum())


def batches(name, network, lattice, counts, n_traj, n_steps, batch, semantics):
    rng = np.random.default_rng(1)
    run_with_hop_counts(
        network, lattice, sample_counts(lattice, counts, rng, size=1), 2, 0.01, rng, 1, semantics
    )  # fmt: skip  (compile)
    seconds, hops = 0.0, 0
    for first in range(0, n_traj, batch):
        initial = sample_counts(lattice, counts, rng, size=min(batch, n_traj - first))
        s, h = _timed(network, lattice, initial, n_steps, 0.01, rng, 1, semantics)
        seconds, hops = seconds + s, hops + h
    print(f"| {name} | {n_traj} x {n_steps} steps | {seconds:.2f} s | {seconds / hops * 1e9:.1f} "
          f"| {n_traj / seconds:.0f} |")  # fmt: skip


def scaling(n_particles, ndim, total_hops):
    length = round((2 * n_particles) ** (1 / ndim))
    lattice = Lattice((length,) * ndim)
    network = ReactionNetwork.parse(["A"], [])
    rng = np.random.default_rng(2)
    initial = sample_counts(lattice, [lattice.n_sites // 2], rng, size=1)
    n_steps = max(10, total_hops // (lattice.n_sites // 2))
    _timed(network, lattice, initial, 1, 0.01, rng, 1, "standard")
    best = min(
        s / h
        for s, h in (
            _timed(network, lattice, initial, n_steps, 0.01, rng, n_steps, "standard")
            for _ in range(3)
        )
    )
    print(f"| hopping {ndim}D, {lattice.n_sites // 2:.0e} particles | {lattice.shape} x "
          f"{n_steps} steps | | {best * 1e9:.1f} | |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trajectories and hops")
    quick = parser.parse_args().quick
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)\n")
    print("| case | size | time | ns / hop | trajectories / s |")
    print("|---|---|---|---|---|")
    annihilation = ReactionNetwork.parse(["A"], ["A + A -> 0 @ 0.01"])
    for semantics, boundary in (("standard", "periodic"), ("paper", "reflecting")):
        batches(f"1D A+A ({semantics}, {boundary})", annihilation, Lattice((1000,), boundary),
                [500], 250 if quick else 2500, 200, 250, semantics)  # fmt: skip
    rossler = ReactionNetwork.parse(["A", "B", "C"], ROSSLER)
    batches("3D Rössler (paper, reflecting)", rossler, Lattice((10, 10, 10), "reflecting"),
            [200, 200, 200], 10 if quick else 100, 500, 50, "paper")  # fmt: skip
    for ndim in (1, 3):
        for n_particles in (10**3, 10**4, 10**5, 10**6):
            scaling(n_particles, ndim, 2 * 10**6 if quick else 2 * 10**7)


if __name__ == "__main__":
    main()
