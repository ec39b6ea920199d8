"""File-in/file-out pipeline steps: the only place where I/O meets computation.

Each function here is one Snakemake rule and one ``dbdflow <stage>`` subcommand (DESIGN.md §1).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import yaml

from dbdflow import config as config_mod
from dbdflow import io, rng
from dbdflow.moments import aggregate, observables
from dbdflow.simulate import run, sample_counts, sample_densities

log = logging.getLogger("dbdflow")


@contextlib.contextmanager
def log_to(path: str | Path) -> Iterator[logging.Logger]:
    """Send dbdflow's log (and any exception raised in the block) to ``path`` (a rule's log)."""
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield log
    except BaseException:
        log.exception("failed")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def write_config(raw: dict, out: str | Path) -> None:
    """Validate a config mapping and write it (defaults filled in) atomically as YAML."""
    exp = config_mod.from_dict(dict(raw), source=str(out))
    with io.atomic_path(out, ".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(exp.raw, sort_keys=False))


def ic_parameters(exp: config_mod.Experiment, split: str, ic: int) -> dict[str, float]:
    """Parameters of IC ``ic`` of a ``chain`` initial condition: ranges drawn uniformly per IC
    from the stream (seed, experiment, split, ic, "ic"), fixed values used as given."""
    exp.check_ic(split, ic)
    draw = rng.generator(exp.seed, exp.name, split, ic, "ic")
    out = {}
    for name in sorted(exp.initial.params):
        value = exp.initial.params[name]
        out[name] = float(draw.uniform(*value)) if isinstance(value, tuple) else float(value)
    return out


def initial_states(exp: config_mod.Experiment, split: str, ic: int, generators) -> np.ndarray:
    """int8 (n_traj, n_sites) lattices at time 0, one drawn from each trajectory's generator."""
    n_sites = exp.lattice.n_sites
    kind = exp.initial.kind
    if kind == "counts":
        counts = [exp.initial.counts.get(s, 0) for s in exp.species]
        return np.stack([sample_counts(n_sites, counts, g) for g in generators])
    if kind == "density":
        density = [exp.initial.density.get(s, 0.0) for s in exp.species]
        return np.stack([sample_densities(n_sites, density, g) for g in generators])
    from dbdflow.boltzmann import chain, exact_sample

    params = ic_parameters(exp, split, ic)
    model = chain(n_sites, exp.lattice.boundary, species=exp.species)
    theta = np.array([params.get(name, 0.0) for name in model.param_names])
    return np.concatenate([exact_sample(model, theta, 1, g) for g in generators]).astype(np.int8)


def simulate(config_path: str | Path, split: str, ic: int, batch: int, out: str | Path) -> None:
    """Run one batch of trajectories of one IC and write a sims file (DESIGN.md §5).

    Trajectory t of (split, ic) uses the generator (seed, experiment, split, ic, t) for its initial
    lattice and then its dynamics, so it is identical whatever the batch size.
    """
    exp = config_mod.load(config_path)
    exp.check_ic(split, ic)
    trajectories = exp.batch_trajectories(split, batch)
    generators = [rng.generator(exp.seed, exp.name, split, ic, t) for t in trajectories]
    log.info(
        "simulate %s split=%s ic=%d batch=%d: %d trajectories",
        exp.name,
        split,
        ic,
        batch,
        len(generators),
    )
    init = initial_states(exp, split, ic, generators)
    states = run(
        exp.network,
        exp.lattice,
        init,
        exp.n_steps,
        exp.dt,
        generators,
        record_every=exp.record_every,
        semantics=exp.semantics,
    )
    obs = observables(states, exp.lattice, exp.network)
    attrs = {
        "experiment": exp.name,
        "split": split,
        "ic": ic,
        "batch": batch,
        "trajectories": [trajectories.start, trajectories.stop],
        "seed": exp.seed,
        "species": list(exp.species),
        "reactions": list(exp.raw["reactions"]),
        "lattice": exp.lattice.to_dict(),
        "semantics": exp.semantics,
        "dt": exp.dt,
        "record_every": exp.record_every,
        "config": exp.raw,
    }
    if exp.initial.kind == "chain":
        attrs["ic_parameters"] = ic_parameters(exp, split, ic)
    io.write_sims(
        out,
        times=exp.times,
        observables=obs,
        states=states if exp.store_states else None,
        attrs=attrs,
        compression=exp.compression,
    )


def moments(
    config_path: str | Path,
    split: str,
    files: Sequence[str | Path],
    out: str | Path,
    expect_ranks: int | None = None,
) -> None:
    """Aggregate a split's sims files into exact per-IC sums (MPI-parallel when run under mpiexec).

    ``expect_ranks``: the number of MPI ranks the job asked for; a mismatch (every rank running
    alone because the launcher did not wire MPI) is an error rather than a silent serial run.
    """
    exp = config_mod.load(config_path)
    comm = _world(expect_ranks)
    n_ics = exp.split(split).n_ics
    times, sums, sumsqs, n_traj = aggregate.aggregate(files, n_ics, comm)
    expected = exp.split(split).trajectories
    if not np.all(n_traj == expected):
        bad = np.nonzero(n_traj != expected)[0].tolist()
        raise ValueError(
            f"split {split!r}: ICs {bad} have {n_traj[bad].tolist()} trajectories "
            f"in the given files, expected {expected} each"
        )
    if comm is None or comm.Get_rank() == 0:
        attrs = {
            "experiment": exp.name,
            "split": split,
            "species": list(exp.species),
            "lattice": exp.lattice.to_dict(),
            "config": exp.raw,
        }
        if exp.initial.kind == "chain":
            attrs["ic_parameters"] = [ic_parameters(exp, split, c) for c in range(n_ics)]
        io.write_moments(out, times=times, n_traj=n_traj, sums=sums, sumsqs=sumsqs, attrs=attrs)
        ranks = 1 if comm is None else comm.Get_size()
        log.info("moments %s split=%s: %d files, %d ranks", exp.name, split, len(files), ranks)


def _world(expect_ranks: int | None):
    """MPI.COMM_WORLD if mpi4py imports (else None), checked against ``expect_ranks``."""
    try:
        from mpi4py import MPI
    except ImportError:
        if expect_ranks not in (None, 1):
            raise RuntimeError(
                f"{expect_ranks} MPI ranks requested but mpi4py is not importable"
            ) from None
        return None
    comm = MPI.COMM_WORLD
    if expect_ranks is not None and comm.Get_size() != expect_ranks:
        raise RuntimeError(
            f"MPI world has {comm.Get_size()} ranks but {expect_ranks} were requested: the "
            "launcher did not wire the ranks together (under SLURM use srun --mpi=pmi2)"
        )
    return comm
