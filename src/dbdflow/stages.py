"""File-in/file-out pipeline steps: the only place where I/O meets computation.

Each function here is one Snakemake rule and one ``dbdflow <stage>`` subcommand (DESIGN.md §1).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
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


def split_sims_files(config_path: str | Path, split: str, directory: str | Path) -> list[str]:
    """The batch files of a split that the config implies, in ``directory``; every one must exist
    (a missing batch is an error here, not a silently smaller sample)."""
    exp = config_mod.load(config_path)
    files = exp.sims_files(split, directory)
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory}: {len(missing)} of the {len(files)} batch files of split {split!r} are "
            f"missing, e.g. {missing[0]}"
        )
    return files


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


# --- learning: θ(t0) per IC and Algorithm 1 ----------------------------------------------------


def learn_inputs(config_path, moments_path, model_name, split):
    """(experiment, model spec, Boltzmann model, moments dict) with consistency checks."""
    exp = config_mod.load(config_path)
    spec = exp.model(model_name)
    model = spec.build(exp)
    mom = io.read_moments(moments_path)
    attrs = mom["attrs"]
    if attrs.get("experiment") != exp.name or attrs.get("split") != split:
        raise io.FormatError(
            f"{moments_path}: holds experiment {attrs.get('experiment')!r} split "
            f"{attrs.get('split')!r}, expected {exp.name!r} split {split!r}"
        )
    return exp, spec, model, mom


def _awake(spec, model, mom, sims_files, where: str):
    """The awake-moment provider of a model (:mod:`dbdflow.boltzmann.awake`)."""
    from dbdflow.boltzmann import awake

    mean = mom["mean"]
    if model.n_hidden == 0:
        return awake.FixedAwake(awake.chain_statistics(model, mean))
    if spec.family == "chain_rbm" and model.boundary == "periodic":
        return awake.FieldAwake(model, *awake.bond_histogram_from_moments(model, mean))
    if not sims_files:
        raise ValueError(
            f"{where}: model {spec.name!r} ({spec.family}, {model.boundary}) needs the "
            "simulation files (lattices) of the split for its hidden-unit statistics"
        )
    n_ics, n_times = mean["counts"].shape[:2]
    keys, hist, counts = awake.histograms_from_sims(model, sims_files, n_ics)
    if hist.shape[1] != n_times:
        raise ValueError(f"{where}: the sims files hold {hist.shape[1]} records, not {n_times}")
    return awake.FieldAwake(model, keys, hist, counts)


def _lattices_at(sims_files, n_ics: int, step: int) -> dict[int, np.ndarray]:
    """Recorded lattices of every IC at one data step, {ic: (n_traj, n_sites)}."""
    out: dict[int, list] = {}
    for path in sorted(str(f) for f in sims_files):
        ic = int(io.read_sims_observables(path)[2]["ic"])
        out.setdefault(ic, []).append(io.read_sims_states(path)[:, step])
    missing = sorted(set(range(n_ics)) - set(out))
    if missing:
        raise ValueError(f"no simulation files with lattices for ICs {missing}")
    return {ic: np.concatenate(v) for ic, v in out.items()}


def fit_initial(
    config_path: str | Path,
    moments_path: str | Path,
    model_name: str,
    split: str,
    out: str | Path,
    sims_files: Sequence[str | Path] | None = None,
) -> None:
    """θ(t0) of every IC of a split for one model (``models.<model>.initial``) → initial file.

    ``generating``: the IC's own chain parameters (moments attrs ``ic_parameters``); ``given``:
    the configured values; ``fit``: maximum likelihood on the t0 data — exact damped Newton for
    chain / chain_rbm (:func:`~dbdflow.boltzmann.initial_theta.fit_exact`), Gibbs-based
    :func:`~dbdflow.boltzmann.fit` on the t0 lattices (``sims_files``) for lattice_rbm.
    """
    from dbdflow.boltzmann import fit as bm_fit
    from dbdflow.boltzmann.initial_theta import fit_exact

    exp, spec, model, mom = learn_inputs(config_path, moments_path, model_name, split)
    names, ini = spec.param_names, spec.initial
    n_ics = mom["mean"]["counts"].shape[0]
    theta0 = np.zeros((n_ics, len(names)))
    diag = {
        "converged": np.ones(n_ics, dtype=bool),
        "iterations": np.zeros(n_ics, dtype=np.int64),
        "residual": np.zeros(n_ics),
    }
    if ini.method == "generating":
        params = mom["attrs"].get("ic_parameters")
        if not params or len(params) != n_ics:
            raise io.FormatError(f"{moments_path}: no ic_parameters for the {n_ics} ICs")
        theta0[:] = [[p.get(n, 0.0) for n in names] for p in params]
    elif ini.method == "given":
        theta0[:] = [ini.values[n] for n in names]
    else:
        start = np.array([ini.start.get(n, 0.0) for n in names])
        if spec.family in config_mod.EXACT_FAMILIES:
            awake = _awake(spec, model, mom, sims_files, f"fit-initial {model_name}")
            cov = getattr(awake, "covariance", None)
            for ic in range(n_ics):
                theta0[ic], info = fit_exact(
                    model,
                    lambda th, ic=ic: awake([ic], [0], th[None])[0],
                    lambda th, ic=ic: _log_data(awake, ic, th),
                    start,
                    awake_cov=None if cov is None else (lambda th, ic=ic: cov([ic], [0], th)[0]),
                    steps=ini.steps,
                    tol=ini.tol,
                    l2=ini.l2,
                )
                diag["converged"][ic] = info["converged"]
                diag["iterations"][ic] = info["iterations"]
                diag["residual"][ic] = info["residual"]
        else:
            if not sims_files:
                raise ValueError(f"fit-initial {model_name}: method fit needs the sims files")
            lattices = _lattices_at(sims_files, n_ics, 0)
            for ic in range(n_ics):
                draw = rng.generator(exp.seed, exp.name, split, ic, "fit_initial", model_name)
                theta0[ic], info = bm_fit(
                    model,
                    lattices[ic],
                    start,
                    learning_rate=ini.learning_rate,
                    n_steps=ini.steps,
                    asleep=spec.asleep.method,
                    rng=draw,
                    n_chains=spec.asleep.chains,
                    k=spec.asleep.sweeps,
                    hidden=spec.asleep.hidden,
                    l2=ini.l2,
                )
                diag["converged"][ic] = info["converged"]
                diag["iterations"][ic] = len(info["gradient"])
                grads = info["gradient"]
                diag["residual"][ic] = float(np.abs(grads[-1]).max()) if len(grads) else 0.0
    if not np.all(diag["converged"]):
        log.warning(
            "fit-initial %s: ICs %s did not reach tol",
            model_name,
            np.flatnonzero(~diag["converged"]).tolist(),
        )
    attrs = {
        "experiment": exp.name,
        "split": split,
        "model": model_name,
        "family": spec.family,
        "method": ini.method,
        "config": exp.raw,
    }
    io.write_initial(out, param_names=names, theta0=theta0, fit=diag, attrs=attrs)
    log.info("fit-initial %s %s split=%s: %d ICs", exp.name, model_name, split, n_ics)


def _log_data(awake, ic: int, theta) -> float:
    """Mean ln Σ_h e^{−E(v, h)} of IC ``ic``'s data at t0 (θ·μ for visible models)."""
    if hasattr(awake, "log_partial"):
        return float(awake.log_partial([ic], [0], theta[None])[0])
    return float(theta @ awake([ic], [0])[0])


def _grid(spec, theta0: np.ndarray, model_names):
    """The shared finite-element grid: configured bounds, or the θ(t0) range ± margin rounded
    up to whole cells (centred)."""
    from dbdflow.dynamics import HermiteGrid

    dyn = spec.dynamics
    coords = [model_names.index(c) for c in dyn.coords]
    spacing = np.array(dyn.spacing)
    if dyn.lower is not None:
        lower, upper = np.array(dyn.lower), np.array(dyn.upper)
    else:
        lower = theta0[:, coords].min(axis=0) - np.array(dyn.margin)
        upper = theta0[:, coords].max(axis=0) + np.array(dyn.margin)
    n_cells = np.maximum(np.ceil((upper - lower) / spacing - 1e-9), 1).astype(np.int64)
    pad = (n_cells * spacing - (upper - lower)) / 2
    return HermiteGrid(lower - pad, upper + pad, n_cells), coords


# Real-axis stability limits of the explicit schemes (h|λ| for dθ/dt = λθ, λ < 0).
STABILITY = {"euler": 2.0, "rk4": 2.785}


def _prior(exp, spec, dyn_model, coords, theta0, data_dt) -> np.ndarray | None:
    """Coefficients of the configured prior F⁰ (``models.<m>.dynamics.prior``), None for none.
    The max-ent closure is stiff in dense clustered states: a step that is unstable for the
    prior at some training θ(t0) is a config error naming the substeps it needs."""
    dyn = spec.dynamics
    if dyn.prior == "none":
        return None
    from dbdflow.evaluate.maxent import prior_closure

    closure = prior_closure(
        spec.family,
        spec.param_names,
        exp.species,
        exp.network,
        exp.lattice,
        exp.dt,
        exp.semantics,
        kind=dyn.prior,
    )
    radius = float(closure.stiffness(theta0).max())
    need = int(np.ceil(data_dt * radius / STABILITY[dyn.scheme]))
    if need > dyn.substeps:
        raise config_mod.ConfigError(
            f"{exp.source}: models.{spec.name}.dynamics.substeps: the {dyn.prior} prior has "
            f"Jacobian eigenvalues up to {radius:.0f} per unit time at the training θ(t0); "
            f"{dyn.scheme} with {dyn.substeps} substeps of the data step {data_dt:g} is unstable "
            f"there, it needs substeps >= {need}"
        )
    log.info("train %s: F starts from the %s prior (stiffness %.0f)", spec.name, dyn.prior, radius)
    return closure.coefficients(dyn_model, coords)


def cross_validate(
    config_path: str | Path,
    moments_path: str | Path,
    initial_path: str | Path,
    model_name: str,
    out: str | Path,
    folds: int = 5,
    sims_files: Sequence[str | Path] | None = None,
) -> None:
    """k-fold cross-validation of one model's learning on the train split → a TSV table.

    Fold f holds out the train ICs i with i mod k = f and learns from the others as ``train``
    does (grid and prior from their θ(t0); no checkpoints), then predicts the held-out and the
    fitted ICs over the whole horizon (:func:`~dbdflow.evaluate.predictions.integrate`, exact
    moments). Rows: fold, set (``held_out``, ``fitted``), ICs, time-averaged RMSE per moment
    order (as ``metrics.json``); last the means over folds. It never reads the test split, so
    hyperparameters (smoothness, prior, a model's training keys) can be chosen on it. Needs
    exact moments: one species in 1D, family chain or chain_rbm.
    """
    import pandas as pd

    from dbdflow.dynamics import train as algo
    from dbdflow.evaluate import metrics, predictions

    exp, spec, model, mom = learn_inputs(config_path, moments_path, model_name, "train")
    exact = spec.family in config_mod.EXACT_FAMILIES and exp.lattice.ndim == 1
    if not exact or len(exp.species) != 1:
        raise ValueError(
            f"cross-validate {model_name}: needs exact moments (one species in 1D, family "
            f"{config_mod.EXACT_FAMILIES}), not {spec.family} in {exp.lattice.ndim}D"
        )
    theta0 = _train_theta0(initial_path, spec, mom)
    n_ics = theta0.shape[0]
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n_ics:
        raise ValueError(f"folds must be an integer in 2..{n_ics} (train ICs), got {folds!r}")
    rows = []
    for fold in range(folds):
        held = np.flatnonzero(np.arange(n_ics) % folds == fold)
        fit = np.setdiff1d(np.arange(n_ics), held)
        problem, dyn_model, settings, grid, coords, prior = _algorithm(
            exp, spec, model, mom, theta0, sims_files, ics=fit
        )

        def stream(step, fold=fold):
            return rng.generator(exp.seed, exp.name, "cross-validate", model_name, fold, step)

        start = np.zeros(dyn_model.n_coeffs) if prior is None else prior
        fresh = algo.TrainState.fresh(start, len(spec.param_names))
        log.info(
            "cross-validate %s: fold %d/%d, %d ICs held out", model_name, fold + 1, folds, held.size
        )
        state = algo.train(problem, dyn_model, settings, stream, fresh, progress=False)
        functions = _functions(state.u, dyn_model, grid, coords)
        attrs = {"dt": problem.dt, "scheme": settings.scheme, "substeps": settings.substeps}
        for label, ics in (("held_out", held), ("fitted", fit)):
            theta, _, _ = predictions.integrate(
                {"functions": functions, "attrs": attrs}, theta0[ics], mom["times"]
            )
            frame = metrics.tidy(
                model_name,
                mom["times"],
                {k: v[ics] for k, v in mom["mean"].items()},
                {k: v[ics] for k, v in mom["stderr"].items()},
                predictions.exact_observables(model, theta),
                None,
                exp.species,
                metrics.evaluated_observables(1),
            )
            rmse = metrics.summarize(frame)["rmse_by_order"][model_name]
            rows.append(
                {
                    "fold": fold,
                    "set": label,
                    "ics": ics.size,
                    **{f"rmse_{o}": rmse[o] for o in sorted(rmse)},
                }
            )
            log.info(
                "cross-validate %s: fold %d/%d, %s RMSE by order %s",
                model_name,
                fold + 1,
                folds,
                label.replace("_", "-"),
                {o: round(rmse[o], 4) for o in sorted(rmse)},
            )
    table = pd.DataFrame(rows)
    means = table.drop(columns="fold").groupby("set", sort=False).mean().reset_index()
    table = pd.concat([table.astype({"fold": str}), means.assign(fold="mean")], ignore_index=True)
    with io.atomic_path(out, ".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    held_mean = means.set_index("set").loc["held_out"].drop("ics")
    log.info(
        "cross-validate %s: held-out RMSE by order %s", model_name, held_mean.round(4).to_dict()
    )


def _train_theta0(initial_path, spec, mom) -> np.ndarray:
    """θ(t0) of the train split from an initial file, checked against the model and moments."""
    init = io.read_initial(initial_path)
    if init["param_names"] != spec.param_names or init["attrs"].get("model") != spec.name:
        raise io.FormatError(
            f"{initial_path}: parameters {init['param_names']} of model "
            f"{init['attrs'].get('model')!r}, expected {spec.param_names} of {spec.name!r}"
        )
    if init["theta0"].shape[0] != mom["mean"]["counts"].shape[0]:
        raise io.FormatError(
            f"{initial_path}: {init['theta0'].shape[0]} ICs, the moments have another"
        )
    return init["theta0"]


def _algorithm(exp, spec, model, mom, theta0, sims_files, ics=None):
    """Algorithm 1's inputs for a model, learning from the train ICs ``ics`` (default all):
    (problem, dynamics model, settings, grid, coords, prior coefficients or None). The grid
    and prior follow these ICs' θ(t0)."""
    from dbdflow.boltzmann.asleep import ExactAsleep, SampledAsleep
    from dbdflow.dynamics import DynamicsModel, group_rates
    from dbdflow.dynamics import train as algo

    name, names = spec.name, spec.param_names
    awake = _awake(spec, model, mom, sims_files, f"train {name}")
    asl = spec.asleep
    if asl.method == "exact":
        asleep = ExactAsleep(model)
    else:
        data = None
        if asl.method == "cd":
            if not sims_files:
                raise ValueError(f"train {name}: asleep method cd needs the sims files")
            data = _StatesByPoint(list(sims_files), theta0.shape[0])
        asleep = SampledAsleep(
            model, asl.method, sweeps=asl.sweeps, chains=asl.chains, hidden=asl.hidden, data=data
        )
    if ics is not None:  # problem IC i is train IC ics[i]
        ics = np.asarray(ics)
        awake = _Subset(awake, ics, 0)
        asleep = _Subset(asleep, ics, 1)
        theta0 = theta0[ics]
    grid, coords = _grid(spec, theta0, names)
    dyn_model = DynamicsModel([grid] * len(names), [coords] * len(names))
    times = mom["times"]
    prior = _prior(exp, spec, dyn_model, coords, theta0, float(times[1] - times[0]))
    tr = exp.training_for(name)
    settings = algo.Settings(
        steps=tr.steps,
        optimizer=tr.optimizer,
        learning_rate=group_rates(dyn_model.slices, tr.rates(names)),
        beta1=tr.beta1,
        beta2=tr.beta2,
        clip=tr.clip,
        batch_ics=tr.batch_ics,
        window=algo.Window(**tr.window) if tr.window else algo.Window(),
        truncate=tr.truncate,
        rule=tr.quadrature,
        l2=tr.l2,
        theta_bar=np.array([tr.l2_target.get(n, 0.0) for n in names]),
        smoothness=spec.dynamics.smoothness,
        prior=prior,
        scheme=spec.dynamics.scheme,
        substeps=spec.dynamics.substeps,
        checkpoint_every=tr.checkpoint_every,
        max_abs_theta=tr.max_abs_theta,
        log_every=tr.log_every,
    )
    problem = algo.Problem(times, theta0, awake, asleep, names, float(model.n_sites))
    return problem, dyn_model, settings, grid, coords, prior


def _functions(u, dyn_model, grid, coords) -> list[dict]:
    """The ``functions`` of a dynamics file (:func:`dbdflow.io.write_dynamics`): per F_k its
    coefficients and the shared grid."""
    return [
        {
            "u": u[sl],
            "coords": np.array(coords),
            "lower": grid.lower,
            "upper": grid.upper,
            "n_cells": grid.n_cells,
        }
        for sl in dyn_model.slices
    ]


class _Subset:
    """A moment provider seen through an IC subset: argument ``at`` (the ICs) is mapped."""

    def __init__(self, provider, ics, at):
        self.provider, self.ics, self.at = provider, ics, at

    def __call__(self, *args):
        args = list(args)
        args[self.at] = self.ics[np.asarray(args[self.at])]
        return self.provider(*args)


# The packages whose code computes a training step (ODE, adjoint, optimiser, moments): a
# checkpoint written by other versions of them is not continued, since the continued run would
# match neither the old code's result nor the new code's.
TRAINING_CODE = ("dynamics", "boltzmann")


@functools.cache
def training_code_digest() -> str:
    """SHA-256 of the source files of :data:`TRAINING_CODE` (sorted by path)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for package in TRAINING_CODE:
        for path in sorted((root / package).glob("*.py")):
            digest.update(f"{package}/{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _fingerprint(exp, spec, theta0, mom) -> str:
    """Identity of everything a checkpoint must agree with (the step count may grow): config,
    data, θ(t0) and the training code (:func:`training_code_digest`)."""

    view = exp.view(spec.name)  # the same for the whole config and the model's own view
    training = {
        k: v
        for k, v in view["training"].items()
        if k not in ("steps", "checkpoint_every", "log_every")
    }
    text = json.dumps(
        [exp.name, exp.seed, view["models"][spec.name], training], sort_keys=True, default=str
    )
    digest = hashlib.sha256(text.encode())
    digest.update(training_code_digest().encode())
    digest.update(np.ascontiguousarray(theta0).tobytes())
    for name in sorted(mom["sum"]):
        digest.update(np.ascontiguousarray(mom["sum"][name]).tobytes())
    return digest.hexdigest()


def checkpoint_path(out: str | Path) -> Path:
    """Where ``train`` keeps its checkpoint for output ``out``: ``<stem>.checkpoint.h5``."""
    out = Path(out)
    return out.with_name(out.stem + ".checkpoint.h5")


def train(
    config_path: str | Path,
    moments_path: str | Path,
    initial_path: str | Path,
    model_name: str,
    out: str | Path,
    resume: bool | str = False,
    sims_files: Sequence[str | Path] | None = None,
) -> None:
    """Learn the dynamics of one model on the train split (Algorithm 1) → dynamics file.

    Checkpoints go to :func:`checkpoint_path` every ``training.checkpoint_every`` steps and at
    the end; with ``resume`` a matching checkpoint (same config apart from the step counts, same
    data and θ(t0)) is continued bit-identically, possibly to a larger ``training.steps``, and
    another one is an error; with ``resume="auto"`` (the workflow's rule: a killed job loses no
    more than ``checkpoint_every`` steps) another one is ignored and replaced.
    ``sims_files`` (the train split's) are needed for lattice-based hidden-unit statistics.
    """
    from dbdflow.dynamics import train as algo

    exp, spec, model, mom = learn_inputs(config_path, moments_path, model_name, "train")
    theta0 = _train_theta0(initial_path, spec, mom)
    names = spec.param_names
    problem, dyn_model, settings, grid, coords, prior = _algorithm(
        exp, spec, model, mom, theta0, sims_files
    )
    tr = exp.training_for(model_name)
    window = settings.window
    reach = window.steps_to_horizon(problem.n_steps)
    if tr.steps < reach:
        log.warning(
            "train %s: the window reaches the final data step only after %d steps; "
            "training.steps is %d",
            model_name,
            reach,
            tr.steps,
        )
    fingerprint = _fingerprint(exp, spec, theta0, mom)
    ckpt = checkpoint_path(out)
    start = np.zeros(dyn_model.n_coeffs) if prior is None else prior
    state = algo.TrainState.fresh(start, len(names))
    if resume not in (False, True, "auto"):
        raise ValueError(f"resume must be False, True or 'auto', got {resume!r}")
    if resume and ckpt.exists():
        try:
            state = _load_checkpoint(ckpt, fingerprint, len(names))
            log.info("train %s: resuming from %s at step %d", model_name, ckpt, state.step)
        except ValueError as err:
            if resume != "auto":
                raise
            log.warning("train %s: %s; starting from step 0", model_name, err)
    elif resume:
        log.info("train %s: no checkpoint at %s, starting from step 0", model_name, ckpt)

    def save(s):
        arrays = {
            "state": {"u": s.u, "excursions": s.excursions},
            "optimizer": s.optimizer,
            "asleep": s.asleep,
            "log": {k: np.asarray(v) for k, v in s.log.items()},
        }
        io.write_checkpoint(ckpt, step=s.step, arrays=arrays, attrs={"fingerprint": fingerprint})

    def stream(step):
        return rng.generator(exp.seed, exp.name, "train", model_name, step)

    log.info(
        "train %s %s: %d ICs, K=%d, grid %s, %d coefficients, %d steps",
        exp.name,
        model_name,
        theta0.shape[0],
        len(names),
        grid,
        dyn_model.n_coeffs,
        tr.steps,
    )
    state = algo.train(problem, dyn_model, settings, stream, state, checkpoint=save)
    theta, outside = algo.trajectories(problem, dyn_model, state.u, settings)
    if outside.any():
        log.warning(
            "train %s: final trajectories leave the grid (evaluations outside per parameter: %s)",
            model_name,
            dict(zip(names, outside.sum(axis=0).tolist(), strict=True)),
        )
    functions = _functions(state.u, dyn_model, grid, coords)
    attrs = {
        "experiment": exp.name,
        "model": model_name,
        "family": spec.family,
        "coords": list(spec.dynamics.coords),
        "scheme": settings.scheme,
        "substeps": settings.substeps,
        "dt": problem.dt,
        "sites": problem.sites,
        "steps": state.step,
        "training": exp.view(model_name)["training"],
        "model_config": exp.raw["models"][model_name],
        "config": exp.raw,
    }
    io.write_dynamics(
        out,
        param_names=names,
        functions=functions,
        u=state.u,
        times=problem.times,
        theta0=theta0,
        theta=theta,
        outside=outside,
        excursions=state.excursions,
        log={k: np.asarray(v) for k, v in state.log.items()},
        attrs=attrs,
    )


def _load_checkpoint(path, fingerprint: str, n_params: int):
    from dbdflow.dynamics.train import LOG_FIELDS, TrainState

    data = io.read_checkpoint(path)
    if data["attrs"].get("fingerprint") != fingerprint:
        raise ValueError(
            f"{path}: checkpoint written for another config, data, θ(t0) or version of the "
            f"training code (dbdflow.{', dbdflow.'.join(TRAINING_CODE)}; only training.steps, "
            "checkpoint_every and log_every may change on resume); delete it or train without "
            "--resume"
        )
    logs = data.get("log", {})
    return TrainState(
        step=data["step"],
        u=data["state"]["u"],
        optimizer=data.get("optimizer", {}),
        asleep=data.get("asleep", {}),
        excursions=data["state"]["excursions"].astype(np.int64),
        log={k: logs[k].tolist() if k in logs else [] for k in LOG_FIELDS},
    )


class _StatesByPoint:
    """Data lattices per (ic, step) for CD, read once from the sims files."""

    def __init__(self, files, n_ics):
        self.states: dict[int, list] = {}
        for path in sorted(str(f) for f in files):
            ic = int(io.read_sims_observables(path)[2]["ic"])
            self.states.setdefault(ic, []).append(io.read_sims_states(path))
        missing = sorted(set(range(n_ics)) - set(self.states))
        if missing:
            raise ValueError(f"no simulation files with lattices for ICs {missing}")
        self.states = {ic: np.concatenate(v) for ic, v in self.states.items()}

    def __call__(self, ic, step):
        return self.states[ic][:, step]


# --- evaluation and report (held-out test ICs, closure baselines) ------------------------------


def evaluate(
    config_path: str | Path,
    moments_path: str | Path,
    name: str,
    out_csv: str | Path,
    out_json: str | Path,
    initial_path: str | Path | None = None,
    dynamics_path: str | Path | None = None,
    *,
    chains: int = 64,
    sweeps: int = 10,
) -> None:
    """Predict the test split's moments with one model or closure baseline and compare.

    ``name`` is a configured model (needs ``initial_path``, θ(t0) of the test split, and
    ``dynamics_path``) or a baseline of :data:`dbdflow.evaluate.CLOSURES`, integrated from the
    test ICs' measured moments at t0. Writes the tidy table (``out_csv``) and the RMSE summary
    (``out_json``; :mod:`dbdflow.evaluate.metrics`), for 1D one-species models also the KL
    divergence to the data's maximum-entropy chain (:mod:`dbdflow.evaluate.predictions`).
    Lattice RBMs are sampled with ``chains`` Gibbs chains, ``sweeps`` sweeps per data step.
    """
    from dbdflow.evaluate import CLOSURES, metrics, predictions

    exp = config_mod.load(config_path)
    mom = io.read_moments(moments_path)
    if mom["attrs"].get("experiment") != exp.name:
        raise io.FormatError(
            f"{moments_path}: holds experiment {mom['attrs'].get('experiment')!r}, "
            f"expected {exp.name!r}"
        )
    split = mom["attrs"].get("split")
    times, mean, stderr = mom["times"], mom["mean"], mom["stderr"]
    names = metrics.evaluated_observables(exp.lattice.ndim)
    extra: dict = {"kind": {name: "baseline" if name in CLOSURES else "model"}}
    pred_err = None
    if name in CLOSURES:
        if initial_path is not None or dynamics_path is not None:
            raise ValueError(f"evaluate {name}: a closure baseline takes no initial/dynamics file")
        start = {k: v[:, 0] for k, v in mean.items()}
        pred = CLOSURES[name](
            exp.network, exp.lattice, exp.dt, start, times, semantics=exp.semantics
        )
    else:
        if initial_path is None or dynamics_path is None:
            raise ValueError(f"evaluate {name}: a model needs --initial and --dynamics files")
        spec = exp.model(name)
        model = spec.build(exp)
        init, dyn = io.read_initial(initial_path), io.read_dynamics(dynamics_path)
        for path, data in ((initial_path, init), (dynamics_path, dyn)):
            if data["attrs"].get("model") != name or data["param_names"] != spec.param_names:
                raise io.FormatError(
                    f"{path}: model {data['attrs'].get('model')!r} with parameters "
                    f"{data['param_names']}, expected {name!r} with {spec.param_names}"
                )
        if init["attrs"].get("split") != split:
            raise io.FormatError(f"{initial_path}: θ(t0) of split {init['attrs'].get('split')!r}")
        theta, outside, substeps = predictions.integrate(dyn, init["theta0"], times)
        if np.any(substeps < 0):
            log.warning(
                "evaluate %s: step doubling did not converge to %g for test ICs %s; they keep "
                "training's discretisation",
                name,
                predictions.STEP_TOL,
                np.flatnonzero(substeps < 0).tolist(),
            )
        extra["family"] = {name: spec.family}
        extra["substeps"] = {name: substeps.tolist()}
        extra["outside_evaluations"] = {name: int(outside.sum())}
        one_species_1d = exp.lattice.ndim == 1 and len(exp.species) == 1
        if spec.family in config_mod.EXACT_FAMILIES and one_species_1d:
            pred = predictions.exact_observables(model, theta)
            extra.update(_kl_summary(exp, model, name, theta, mean, times))
        else:
            generators = [
                rng.generator(exp.seed, exp.name, "evaluate", name, ic)
                for ic in range(theta.shape[0])
            ]
            pred, pred_err = predictions.sampled_observables(
                model, theta, exp.lattice, exp.species, generators, chains=chains, sweeps=sweeps
            )
        if not np.all(np.isfinite(theta)):
            bad = np.flatnonzero(~np.all(np.isfinite(theta), axis=(1, 2))).tolist()
            log.warning("evaluate %s: θ diverged for test ICs %s", name, bad)
    frame = metrics.tidy(name, times, mean, stderr, pred, pred_err, exp.species, names)
    summary = {"experiment": exp.name, "split": split, **metrics.summarize(frame), **extra}
    metrics.write_csv(frame, out_csv)
    metrics.write_json(summary, out_json)
    log.info(
        "evaluate %s %s: time-averaged RMSE by order %s",
        exp.name,
        name,
        summary["rmse_by_order"][name],
    )


def _kl_summary(exp, model, name, theta, mean, times, max_points: int = 51) -> dict:
    """KL per site to the data's maximum-entropy chain at ≤ ``max_points`` evenly spaced times."""
    from dbdflow.evaluate import predictions

    stride = max(1, -(-(times.size - 1) // (max_points - 1)))
    at = np.arange(0, times.size, stride)
    data = {k: mean[k][:, at] for k in ("counts", "pairs", "strings3")}
    theta_data = predictions.maxent_theta(
        exp.lattice.n_sites, exp.lattice.boundary, exp.species[0], data
    )
    kl = predictions.kl_to_maxent(model, theta[:, at], theta_data)
    defined = np.isfinite(kl)
    return {
        "kl_per_site": {name: float(kl[defined].mean()) if defined.any() else float("nan")},
        "kl_points": {name: int(defined.sum())},
        "kl_per_site_time": {
            name: {"times": times[at].tolist(), "values": np.nanmean(kl, axis=0).tolist()}
        },
    }


def combine_metrics(files: Sequence[str | Path], out: str | Path) -> None:
    """One ``metrics.json`` from the per-model/baseline summaries of :func:`evaluate`."""
    from dbdflow.evaluate import metrics

    metrics.write_json(metrics.merge([metrics.read_json(f) for f in files]), out)


def report(
    config_path: str | Path,
    metrics_path: str | Path,
    eval_files: Sequence[str | Path],
    dynamics_files: Sequence[str | Path],
    out_dir: str | Path,
    sims_file: str | Path | None = None,
) -> None:
    """Figures and ``report.md`` (:mod:`dbdflow.evaluate.report`) into ``out_dir`` from the
    combined metrics, the evaluation tables and the models' dynamics files; ``sims_file`` (a
    test-split sims file with lattices) adds lattice snapshots on 2D/3D lattices."""
    import pandas as pd

    from dbdflow.evaluate import metrics
    from dbdflow.evaluate.report import write_report

    exp = config_mod.load(config_path)
    frame = pd.concat([metrics.read_csv(f) for f in eval_files], ignore_index=True)
    dynamics = {}
    for path in dynamics_files:
        dyn = io.read_dynamics(path)
        dynamics[dyn["attrs"]["model"]] = dyn
    snapshot = None
    if sims_file is not None and exp.lattice.ndim >= 2:
        times, _, _ = io.read_sims_observables(sims_file)
        snapshot = {"states": io.read_sims_states(sims_file)[0], "times": times}
    raw = exp.raw
    summary = {
        "experiment": exp.name,
        "lattice": exp.lattice.to_dict(),
        "species": list(exp.species),
        "reactions": list(raw["reactions"]),
        "dt": exp.dt,
        "n_steps": exp.n_steps,
        "record_every": exp.record_every,
        "splits": raw["splits"],
    }
    paths = write_report(
        out_dir,
        summary=summary,
        metrics=metrics.read_json(metrics_path),
        frame=frame,
        dynamics=dynamics,
        snapshot=snapshot,
    )
    log.info("report %s: %d files in %s", exp.name, len(paths), out_dir)


def sweep_summary(
    table_path: str | Path,
    experiments: Sequence[str],
    metrics_files: Sequence[str | Path],
    out_table: str | Path,
    out_figure: str | Path,
) -> None:
    """The sweep's summary (:func:`dbdflow.sweep.summary`): one row per point of the table with
    its test metrics, and the RMSE-per-order figure across the points."""
    from dbdflow import sweep

    table = sweep.read_table(table_path)
    frame = sweep.summary(table, experiments, metrics_files, out_table)
    sweep.summary_figure(frame, list(table.columns), out_figure)
    log.info("sweep summary of %d points -> %s", len(frame), out_table)
