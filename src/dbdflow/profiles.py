"""Snakemake profiles for clusters: the SLURM profile template and its installer (DESIGN.md §6).

Two profiles work together when a cluster user types ``snakemake --profile slurm`` in the
repository root:

- the *workflow profile* ``profiles/default/config.v8+.yaml`` (in the repository), which Snakemake
  loads by itself for every run of this workflow: per-rule resources, MPI ranks of ``moments``,
  the size of ``sims`` job groups;
- the *global profile* ``slurm``, rendered from the template below: executor, partition, account,
  job limits. Snakemake looks a profile name up in ``./slurm``, then in its user configuration
  directory (``$XDG_CONFIG_HOME/snakemake/slurm``, by default ``~/.config/snakemake/slurm``),
  then in ``/etc/xdg/snakemake/slurm``; never in ``profiles/slurm``. :func:`install_profile` writes
  to the user directory, so the command works from any checkout of the repository.

Where both profiles set the same top-level key, the workflow profile wins and the other one's value
is dropped whole: so the template sets no ``set-resources``, ``set-threads`` or
``group-components``, and the workflow profile no ``default-resources``.

The template is the one source of truth: ``profiles/slurm/config.v8+.yaml`` in the repository is
``render_profile("slurm")`` (placeholders commented out), written by
``install_profile(dest="profiles/slurm", force=True)`` and checked equal by the tests.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

PROFILE_FILE = "config.v8+.yaml"

_SLURM_TEMPLATE = """\
# Snakemake profile for running dbdflow on a SLURM cluster through the official executor plugin
# (snakemake-executor-plugin-slurm). Written by `dbdflow install-profile slurm`; edit it freely.
#
# Per-rule resources, the MPI ranks of `moments` and the size of `sims` job groups live in the
# workflow profile profiles/default/ of the repository, which Snakemake loads by itself and which
# wins key by key: set-resources, set-threads or group-components written here would be ignored.
executor: slurm
jobs: 100                          # SLURM jobs queued or running at once
cores: 16                          # most CPUs one SLURM job asks for: group jobs are packed to fit
latency-wait: 60                   # seconds to wait for outputs to show on a shared file system
max-jobs-per-timespan: "20/1s"     # submission rate
max-status-checks-per-second: 1
rerun-incomplete: true
keep-going: true
printshellcmds: true
show-failed-logs: true
default-resources:
{partition}
{account}
  runtime: 60                      # minutes, for rules the workflow profile does not name
  mem_mb: 2000
"""

_TEMPLATES = {"slurm": _SLURM_TEMPLATE}

# sbatch accepts a comma-separated list of partitions; names are letters, digits, `_ . + -`.
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*")


def _setting(key: str, value: str | None, argument: str, hint: str) -> str:
    if value is None:
        return f"  # {key}: {argument.upper()}    # {hint}"
    if not isinstance(value, str) or not _SLURM_NAME.fullmatch(value):
        raise ValueError(
            f"{argument} must be a SLURM name (letters, digits, '_', '.', '+', '-'; "
            f"partitions may be comma-separated), got {value!r}"
        )
    return f'  {key}: "{value}"'


def render_profile(
    name: str = "slurm", partition: str | None = None, account: str | None = None
) -> str:
    """The text of profile ``name`` with ``partition`` and ``account`` filled in.

    A ``None`` value leaves the setting commented out: SLURM then uses the cluster's default
    partition, and the executor plugin guesses the account from ``sacctmgr``.
    """
    if name not in _TEMPLATES:
        raise ValueError(f"name must be one of {sorted(_TEMPLATES)}, got {name!r}")
    return _TEMPLATES[name].format(
        partition=_setting(
            "slurm_partition", partition, "partition", "--partition P; else the default partition"
        ),
        account=_setting(
            "slurm_account", account, "account", "--account A; else the plugin asks sacctmgr"
        ),
    )


def mpi_launcher(executor: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The command that starts the MPI ranks of a rule: ``{resources.mpi} -n {resources.tasks}``.

    ``srun --mpi=pmi2`` under SLURM, ``mpiexec`` (from the ``mpich`` wheel) anywhere else. SLURM
    is recognised twice: by Snakemake's executor (``slurm``, or ``slurm-jobstep`` inside the job)
    when jobs are submitted, and by ``SLURM_JOB_ID`` where the rule's command finally runs (the
    plugin runs it with the local executor inside the allocation, so the executor name alone would
    pick ``mpiexec`` there, which starts every rank on the first node). ``--mpi=pmi2`` because
    the MPICH of the wheel and of conda-forge talks PMI2 and a cluster's ``MpiDefault`` is often
    ``none``, which leaves every rank alone in a world of size 1.

    Use it in a rule as ``mpi=lambda wc: mpi_launcher(workflow.executor_plugin.name)``.
    """
    if (executor or "").startswith("slurm") or "SLURM_JOB_ID" in environ:
        return "srun --mpi=pmi2"
    return "mpiexec"


def default_profile_dir(name: str = "slurm") -> Path:
    """Where ``snakemake --profile NAME`` finds a profile from any working directory.

    Snakemake's own lookup (platformdirs ``user_config_dir("snakemake")``): on Linux
    ``$XDG_CONFIG_HOME/snakemake/NAME``, by default ``~/.config/snakemake/NAME``.
    """
    from platformdirs import user_config_dir

    return Path(user_config_dir("snakemake", "snakemake")) / name


def install_profile(
    name: str = "slurm",
    partition: str | None = None,
    account: str | None = None,
    dest: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Write profile ``name`` into the profile directory ``dest``; return the written file.

    ``dest`` defaults to :func:`default_profile_dir`, so that ``snakemake --profile slurm`` picks
    the profile up from the repository root. An existing profile file is kept unless ``force``
    (raises ``FileExistsError``). The file appears whole or not at all: it is written to a
    temporary name in ``dest`` and then hard-linked (no overwrite) or renamed (``force``) into
    place.
    """
    text = render_profile(name, partition, account)
    directory = Path(dest) if dest is not None else default_profile_dir(name)
    target = directory / PROFILE_FILE
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass force=True (--force) to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{PROFILE_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise FileExistsError(
                    f"{target} exists; pass force=True (--force) to overwrite it"
                ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
