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
    m.add_argument("files", nargs="+", help="sims files of the split")

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
    from dbdflow.io import FormatError

    try:
        if args.command == "simulate":
            stages.simulate(args.config, args.split, args.ic, args.batch, args.out)
        elif args.command == "moments":
            stages.moments(args.config, args.split, args.files, args.out, args.expect_ranks)
        elif args.command == "install-profile":
            from dbdflow.profiles import install_profile

            try:
                path = install_profile(
                    args.name, args.partition, args.account, args.dest, args.force
                )
            except ValueError as err:
                raise ConfigError(str(err)) from None
            print(f"wrote {path}; now run: snakemake --profile {args.name}")
    except (ConfigError, FormatError, FileExistsError) as err:
        print(f"dbdflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
