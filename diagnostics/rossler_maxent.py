"""The maximum-entropy θ(t) of the Rössler data, and the phases of the fully visible model there.

``python diagnostics/rossler_maxent.py`` (after the Rössler pipeline has written the train
moments; options: ``--help``). For the fully visible model (``visible``: biases and NN couplings,
the maximum-entropy family of counts and NN pairs) it

1. fits the path θ(t) whose model moments equal the train data's counts and pairs at every
   step (:func:`dbdflow.boltzmann.maxent_path`: persistent chains, carried from step to step):
   the trajectory a DBD's dθ/dt = F(θ) must follow to reproduce the data exactly;
2. prints the fit's residual, the path, and its largest rates of change |dθ/dt|;
3. probes each printed θ for two phases: half the chains start from random lattices, half from a
   lattice full of the first species (A); after ``--sweeps`` sweeps a chain is "condensed" when
   it holds more than three times the data's count of A. Condensed chains that stay condensed
   from the full start while the random starts stay dilute mean two coexisting phases
   (hysteresis): a first-order transition of the lattice gas, where ⟨N_A⟩ jumps with θ. Also
   printed: Var(N_A)/⟨N_A⟩ over the random starts, = d ln⟨N_A⟩/db_A (the sensitivity of A's
   count to its bias; 1 − ρ_A without couplings);
4. with ``--dynamics``, prints the learned DBD's θ(t) at the same steps for comparison,
   integrated from the model's θ(t0) (``initial.method: given``; otherwise from the path's θ at
   step 0).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dbdflow import io, rng, stages
from dbdflow.boltzmann import awake, gibbs, maxent_path
from dbdflow.evaluate.predictions import integrate


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/paper/rossler_3d.yaml")
    ap.add_argument("--moments", default="results/rossler_3d/moments/train.h5")
    ap.add_argument("--model", default="visible", help="a fully visible model of the config")
    ap.add_argument("--steps", type=int, default=60, help="fit data steps 0..steps")
    ap.add_argument("--every", type=int, default=5, help="print and probe every this many steps")
    ap.add_argument("--chains", type=int, default=50, help="persistent chains of the fit")
    ap.add_argument("--iterations", type=int, default=300, help="fit iterations per data step")
    ap.add_argument("--sweeps", type=int, default=1000, help="sweeps of the phase probe")
    ap.add_argument("--dynamics", default=None, help="a learned dynamics.h5 of the same model")
    args = ap.parse_args(argv)

    exp, spec, model, mom = stages.learn_inputs(args.config, args.moments, args.model, "train")
    names = model.param_names
    if model.n_hidden or names[0] != f"b_{model.visible_species[0]}":
        raise SystemExit(
            f"{args.config}: models.{args.model} must be fully visible (family: lattice)"
        )
    if not 1 <= args.steps < mom["times"].size or args.every < 1:
        raise SystemExit(
            f"--steps must be in 1..{mom['times'].size - 1} (the data steps of {args.moments}) "
            f"and --every >= 1, got {args.steps} and {args.every}"
        )
    targets = awake.chain_statistics(model, mom["mean"])[0, : args.steps + 1]
    given = spec.initial.method == "given"
    theta0 = np.array([spec.initial.values[n] for n in names]) if given else np.zeros(len(names))
    dt = float(mom["times"][1] - mom["times"][0])
    shown = np.arange(0, targets.shape[0], args.every)

    start = time.perf_counter()
    path, moments = maxent_path(
        model,
        targets,
        theta0,
        rng.generator(exp.seed, exp.name, "maxent", args.model),
        n_chains=args.chains,
        iterations=args.iterations,
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # a moment of 0: left out
        residual = np.where(targets > 0, np.abs(moments - targets) / targets, np.nan)
    counts = [k for k, n in enumerate(names) if n.startswith("b_")]
    pairs = [k for k, n in enumerate(names) if n.startswith("J_")]
    print(f"max-ent path of steps 0-{args.steps} ({time.perf_counter() - start:.0f} s)")
    print(
        f"model moments vs data, steps 1-{args.steps}: counts within "
        f"{100 * np.nanmax(residual[1:, counts]):.1f} %, pairs within "
        f"{100 * np.nanmax(residual[1:, pairs]):.1f} % (largest relative difference)"
    )
    rate = np.abs(np.diff(path, axis=0)) / dt
    for label, cols in (("biases", counts), ("couplings", pairs)):
        k = cols[int(np.argmax(rate[:, cols].max(axis=0)))]
        print(
            f"largest |dθ/dt| of the {label}: {rate[:, k].max():.1f} ({names[k]}, between "
            f"steps {int(np.argmax(rate[:, k]))} and {int(np.argmax(rate[:, k])) + 1}); "
            f"after step 1: {rate[1:, cols].max():.1f}"
        )

    learned = None
    if args.dynamics:
        dynamics = io.read_dynamics(args.dynamics)
        if tuple(dynamics["param_names"]) != tuple(names):
            raise SystemExit(
                f"{args.dynamics}: learned for parameters {dynamics['param_names']}, "
                f"models.{args.model} has {names}"
            )
        times = mom["times"][: args.steps + 1]
        start = theta0 if given else path[0]  # training's θ(t0), else the data's at step 0
        learned = integrate(dynamics, start[None], times)[0][0]

    a = model.visible_species[0]
    print(
        f"\nstep  data {a}  "
        + " ".join(f"{n:>6s}" for n in names)
        + f"   probe: {a} of random / full starts (median), condensed, Var/mean of random"
    )
    probe_rng = rng.generator(exp.seed, exp.name, "maxent", args.model, "probe")
    half = 32
    for n in shown:
        dilute, full = _probe(model, path[n], half, args.sweeps, probe_rng)
        limit = 3 * targets[n, 0]
        print(
            f"{n:4d} {targets[n, 0]:7.0f}  "
            + " ".join(f"{x:6.2f}" for x in path[n])
            + f"   {np.median(dilute):5.0f} / {np.median(full):5.0f}, "
            f"{int((dilute > limit).sum())}/{half} and {int((full > limit).sum())}/{half}, "
            f"{dilute.var() / dilute.mean():.1f}"
        )
        if learned is not None:
            print("      learned " + " ".join(f"{x:6.2f}" for x in learned[n]))


def _probe(model, theta, half, sweeps, generator):
    """A counts of ``half`` chains from random lattices and ``half`` from a lattice full of the
    first species, after ``sweeps`` Gibbs sweeps at θ."""
    state = gibbs.random_state(model, 2 * half, generator)
    state.x[half:, : model.n_sites] = 1  # species code 1: the first species
    gibbs.sweep(model, theta, state, sweeps, generator)
    count = state.statistics()[:, 0]
    return count[:half], count[half:]


if __name__ == "__main__":
    main()
