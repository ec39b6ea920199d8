"""Exact aggregation of observables over trajectories, serially or over MPI ranks.

For every IC c and observable T (an integer array per trajectory and time) the sums
S_c = Σ_traj T and Q_c = Σ_traj T² are accumulated in int64. Ranks take the sorted batch files
round-robin, sum locally, and ``Reduce`` with ``MPI.SUM`` to rank 0. Integer addition is
associative, so the result is bitwise identical for any number of ranks, batches or file order.
No numba kernel runs here, so ranks never race on numba's on-disk cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dbdflow import io


def local_sums(files: Sequence[str | Path], n_ics: int, template: str | Path):
    """Sum this rank's ``files`` into per-IC arrays shaped like ``template``'s observables.

    Returns ``(times, sums, sumsqs, n_traj)``; ``files`` may be empty.
    """
    times, obs, _ = io.read_sims_observables(template)
    sums = {k: np.zeros((n_ics, *v.shape[1:]), dtype=np.int64) for k, v in obs.items()}
    sumsqs = {k: np.zeros_like(v) for k, v in sums.items()}
    n_traj = np.zeros(n_ics, dtype=np.int64)
    for path in files:
        file_times, obs, attrs = io.read_sims_observables(path)
        ic = int(attrs["ic"])
        if not 0 <= ic < n_ics:
            raise ValueError(f"{path}: ic {ic} outside 0..{n_ics - 1}")
        if not np.array_equal(file_times, times):
            raise ValueError(f"{path}: its /times differ from those of {template}")
        if set(obs) != set(sums):
            raise ValueError(f"{path}: observables {sorted(obs)} differ from {sorted(sums)}")
        for name, value in obs.items():
            sums[name][ic] += value.sum(axis=0)
            sumsqs[name][ic] += (value * value).sum(axis=0)
        n_traj[ic] += next(iter(obs.values())).shape[0]
    return times, sums, sumsqs, n_traj


def aggregate(files: Sequence[str | Path], n_ics: int, comm=None):
    """Exact per-IC sums over all ``files``; with an mpi4py ``comm`` the work is split over ranks.

    Every rank returns the same ``(times, sums, sumsqs, n_traj)`` (the reduced result is broadcast).
    """
    files = sorted(str(f) for f in files)
    if not files:
        raise ValueError("no simulation files to aggregate")
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    times, sums, sumsqs, n_traj = local_sums(files[rank::size], n_ics, files[0])
    if comm is not None and size > 1:
        from mpi4py import MPI

        for table in (sums, sumsqs):
            for name in sorted(table):
                total = np.empty_like(table[name])
                comm.Allreduce(table[name], total, op=MPI.SUM)
                table[name] = total
        total = np.empty_like(n_traj)
        comm.Allreduce(n_traj, total, op=MPI.SUM)
        n_traj = total
    return times, sums, sumsqs, n_traj
