"""``dbdflow <stage>``: one subcommand per pipeline stage (DESIGN.md §1)."""

from __future__ import annotations

import argparse
import logging
import sys

from dbdflow import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dbdflow", description=__doc__)
    p.add_argument("--version", action="version", version=f"dbdflow {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="run one batch of lattice simulations of one IC")
    s.add_argument("--config", required=True, help="experiment config (YAML)")
    s.add_argument("--split", required=True, help="train or test")
    s.add_argument("--ic", type=int, required=True, help="initial-condition index")
    s.add_argument("--batch", type=int, default=0, help="batch index (default 0)")
    s.add_argument("--out", required=True, help="output sims file (.h5)")

    m = sub.add_parser(
        "moments",
        help="aggregate sims files into exact per-IC moment sums "
        "(run under mpiexec -n R for R ranks)",
    )
    m.add_argument("--config", required=True)
    m.add_argument("--split", required=True)
    m.add_argument("--out", required=True, help="output moments file (.h5)")
    m.add_argument(
        "--expect-ranks",
        type=int,
        default=None,
        help="fail unless the MPI world has exactly this many ranks",
    )
    m.add_argument(
        "--sims-dir",
        help="directory of the split's batch files ic{ic}_b{batch}.h5 (every one the config "
        "implies must be there); instead of listing FILES",
    )
    m.add_argument("files", nargs="*", help="sims files of the split")

    f = sub.add_parser("fit-initial", help="θ(t0) of every IC of a split for one reduced model")
    f.add_argument("--config", required=True)
    f.add_argument("--moments", required=True, help="moments file of the split (.h5)")
    f.add_argument("--model", required=True, help="model name (config section models)")
    f.add_argument("--split", required=True, help="train or test")
    f.add_argument("--out", required=True, help="output initial file (.h5)")
    f.add_argument(
        "sims", nargs="*", help="sims files of the split (lattice-based hidden statistics)"
    )

    t = sub.add_parser("train", help="learn the dynamics of one model (Algorithm 1)")
    t.add_argument("--config", required=True)
    t.add_argument("--moments", required=True, help="moments file of the train split (.h5)")
    t.add_argument("--initial", required=True, help="initial file of the train split (.h5)")
    t.add_argument("--model", required=True, help="model name (config section models)")
    t.add_argument("--out", required=True, help="output dynamics file (.h5)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue bit-identically from the checkpoint beside --out, if there is one (it "
        "must match the config, data, θ(t0) and training code)",
    )
    t.add_argument(
        "sims", nargs="*", help="sims files of the train split (lattice-based hidden statistics)"
    )

    v = sub.add_parser(
        "cross-validate",
        help="k-fold cross-validation of one model's learning on the train split (a TSV table)",
    )
    v.add_argument("--config", required=True)
    v.add_argument("--moments", required=True, help="moments file of the train split (.h5)")
    v.add_argument("--initial", required=True, help="initial file of the train split (.h5)")
    v.add_argument("--model", required=True, help="model name (config section models)")
    v.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    v.add_argument("--out", required=True, help="output table (.tsv)")
    v.add_argument(
        "sims", nargs="*", help="sims files of the train split (lattice-based hidden statistics)"
    )

    e = sub.add_parser(
        "evaluate",
        help="predict the test split's moments with one model or closure baseline and compare",
    )
    e.add_argument("--config", required=True)
    e.add_argument("--moments", required=True, help="moments file of the test split (.h5)")
    e.add_argument(
        "--name",
        required=True,
        help="model name (config section models) or closure baseline: mean_field, pair, maxent",
    )
    e.add_argument("--initial", help="θ(t0) of the test split (models only, .h5)")
    e.add_argument("--dynamics", help="learned dynamics (models only, .h5)")
    e.add_argument("--out-csv", required=True, help="output evaluation table (.csv)")
    e.add_argument("--out-json", required=True, help="output RMSE summary (.json)")
    e.add_argument(
        "--chains", type=int, default=64, help="Gibbs chains of sampled models (default 64)"
    )
    e.add_argument("--sweeps", type=int, default=10, help="Gibbs sweeps per data step (default 10)")

    c = sub.add_parser("metrics", help="combine per-model evaluation summaries into one JSON")
    c.add_argument("--out", required=True, help="output metrics file (.json)")
    c.add_argument("files", nargs="+", help="summaries written by `dbdflow evaluate`")

    r = sub.add_parser("report", help="figures and report.md of an evaluated experiment")
    r.add_argument("--config", required=True)
    r.add_argument("--metrics", required=True, help="combined metrics (.json)")
    r.add_argument("--out-dir", required=True, help="report directory")
    r.add_argument("--eval", nargs="+", required=True, help="evaluation tables (.csv)")
    r.add_argument("--dynamics", nargs="+", required=True, help="dynamics files of the models")
    r.add_argument("--sims", help="a test sims file with lattices (2D/3D snapshots)")

    i = sub.add_parser(
        "install-profile",
        help="install a Snakemake cluster profile where `snakemake --profile NAME` finds it",
    )
    i.add_argument("name", choices=["slurm"])
    i.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    i.add_argument("--account", help="SLURM account (default: asked from sacctmgr)")
    i.add_argument("--dest", help="profile directory (default ~/.config/snakemake/NAME)")
    i.add_argument("--force", action="store_true", help="replace an existing profile")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from dbdflow import stages
    from dbdflow.config import ConfigError
    from dbdflow.dynamics.train import DivergenceError
    from dbdflow.io import FormatError

    try:
        if args.command == "simulate":
            stages.simulate(args.config, args.split, args.ic, args.batch, args.out)
        elif args.command == "moments":
            if bool(args.files) == bool(args.sims_dir):
                _parser().error("moments: give either --sims-dir or the sims files (not both)")
            files = args.files or stages.split_sims_files(args.config, args.split, args.sims_dir)
            stages.moments(args.config, args.split, files, args.out, args.expect_ranks)
        elif args.command == "fit-initial":
            stages.fit_initial(
                args.config, args.moments, args.model, args.split, args.out, args.sims or None
            )
        elif args.command == "train":
            stages.train(
                args.config,
                args.moments,
                args.initial,
                args.model,
                args.out,
                resume=args.resume,
                sims_files=args.sims or None,
            )
        elif args.command == "cross-validate":
            stages.cross_validate(
                args.config,
                args.moments,
                args.initial,
                args.model,
                args.out,
                folds=args.folds,
                sims_files=args.sims or None,
            )
        elif args.command == "evaluate":
            from dbdflow.evaluate import CLOSURES

            if args.name not in CLOSURES and (args.initial is None or args.dynamics is None):
                _parser().error(f"evaluate: model {args.name!r} needs --initial and --dynamics")
            stages.evaluate(
                args.config,
                args.moments,
                args.name,
                args.out_csv,
                args.out_json,
                initial_path=args.initial,
                dynamics_path=args.dynamics,
                chains=args.chains,
                sweeps=args.sweeps,
            )
        elif args.command == "metrics":
            stages.combine_metrics(args.files, args.out)
        elif args.command == "report":
            stages.report(
                args.config, args.metrics, args.eval, args.dynamics, args.out_dir, args.sims
            )
        elif args.command == "install-profile":
            from dbdflow.profiles import install_profile

            try:
                path = install_profile(
                    args.name, args.partition, args.account, args.dest, args.force
                )
            except ValueError as err:
                raise ConfigError(str(err)) from None
            print(f"wrote {path}; now run: snakemake --profile {args.name}")
    except (ConfigError, FormatError, FileExistsError, FileNotFoundError) as err:
        print(f"dbdflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"dbdflow {args.command}: training diverged: {err}", file=sys.stderr)
        return 3
    return 0
