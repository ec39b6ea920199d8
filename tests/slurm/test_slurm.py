"""Workflows through the SLURM executor plugin on a real one-node cluster (conftest.py).

``test_workflow_through_slurm``: a stand-in with the shape of dbdflow's (a group of small jobs,
one 2-rank MPI step launched by ``{resources.mpi} -n {resources.tasks}``, one aggregation), run
through the shipped SLURM profile and a workflow profile like ``profiles/default``; its steps
report their SLURM job ids and MPI ranks directly.

``test_default_pipeline_through_slurm_equals_local_run``: the real default pipeline
(``config/config.yaml``, shrunk only in size) the same way, every rule of it, checked against
SLURM's own job records and a local run of the same config.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

N_SIMS = 4

SNAKEFILE = f"""
from dbdflow.profiles import mpi_launcher

N_SIMS = {N_SIMS}


rule all:
    input:
        "aggregate.json",


rule sim:
    output:
        "sims/{{i}}.json",
    log:
        "logs/sims/{{i}}.log",
    group:
        "sims"
    shell:
        "python sim.py {{wildcards.i}} {{output}} 2> {{log}}"


rule moments:
    input:
        expand("sims/{{i}}.json", i=range(N_SIMS)),
    output:
        "moments.json",
    log:
        "logs/moments.log",
    resources:
        mpi=lambda wc: mpi_launcher(workflow.executor_plugin.name),
        tasks=1,
    shell:
        "{{resources.mpi}} -n {{resources.tasks}} python mpi_step.py {{resources.tasks}} {{output}}"
        " {{input}} > {{log}} 2>&1"


rule aggregate:
    input:
        sims=expand("sims/{{i}}.json", i=range(N_SIMS)),
        moments="moments.json",
    output:
        "aggregate.json",
    log:
        "logs/aggregate.log",
    shell:
        "python aggregate.py {{output}} {{input.moments}} {{input.sims}} 2> {{log}}"
"""

SIM = """\
import json, os, sys

json.dump({"i": int(sys.argv[1]), "job": os.environ["SLURM_JOB_ID"]}, open(sys.argv[2], "w"))
"""

MPI_STEP = """\
import json, os, sys
from mpi4py import MPI

comm = MPI.COMM_WORLD
expected, out, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
# A wrong launch mode gives every rank a world of its own and fails nowhere else.
assert comm.size == expected, f"MPI world of {comm.size} ranks, expected {expected}"
mine = sum(json.load(open(f))["i"] for f in files[comm.rank :: comm.size])
total = comm.allreduce(mine, op=MPI.SUM)
ranks = comm.gather([comm.rank, os.environ.get("SLURM_PROCID"), os.environ["SLURM_JOB_ID"]])
if comm.rank == 0:
    json.dump({"size": comm.size, "total": total, "ranks": ranks}, open(out, "w"))
"""

AGGREGATE = """\
import json, os, sys

out, moments, sims = sys.argv[1], sys.argv[2], sys.argv[3:]
json.dump(
    {
        "moments": json.load(open(moments)),
        "sims": [json.load(open(f)) for f in sims],
        "job": os.environ["SLURM_JOB_ID"],
    },
    open(out, "w"),
)
"""

WORKFLOW_PROFILE = f"""\
set-resources:
  sim:
    runtime: 5
    mem_mb: 200
  moments:
    tasks: 2
    runtime: 5
    mem_mb: 400
  aggregate:
    runtime: 5
    mem_mb: 200
group-components:
  sims: {N_SIMS + 1}
"""


@pytest.fixture
def pipeline(tmp_path) -> tuple[Path, list[str]]:
    """(workdir, Snakemake arguments) of the workflow to run through SLURM."""
    workdir = tmp_path / "workflow"
    (workdir / "profiles" / "default").mkdir(parents=True)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    (workdir / "sim.py").write_text(SIM)
    (workdir / "mpi_step.py").write_text(MPI_STEP)
    (workdir / "aggregate.py").write_text(AGGREGATE)
    (workdir / "profiles" / "default" / "config.v8+.yaml").write_text(WORKFLOW_PROFILE)
    return workdir, []


@pytest.mark.slurm
def test_workflow_through_slurm(pipeline, slurm_profile, run_snakemake):
    workdir, args = pipeline
    run_snakemake(workdir, args, slurm_profile, timeout=150)
    result = json.loads((workdir / "aggregate.json").read_text())
    sims, moments = result["sims"], result["moments"]
    assert [s["i"] for s in sims] == list(range(N_SIMS))
    # group-components bundled all simulations into one SLURM job
    assert len({s["job"] for s in sims}) == 1, sims
    # srun wired both ranks into one MPI world, inside one SLURM job
    assert moments["size"] == 2
    assert moments["total"] == sum(range(N_SIMS))
    assert [r[:2] for r in moments["ranks"]] == [[0, "0"], [1, "1"]]
    assert moments["ranks"][0][2] == moments["ranks"][1][2]
    # three SLURM jobs: the sims group, the MPI step, the aggregation
    jobs = {sims[0]["job"], moments["ranks"][0][2], result["job"]}
    assert len(jobs) == 3, jobs


REPO = Path(__file__).resolve().parents[2]
# The embedded default experiment (config/config.yaml: 1D A + A -> 0, models `visible` and
# `hidden`), shrunk only in size so that every rule runs in minutes. It goes in as a config file
# without `experiment`, which the Snakefile merges onto the embedded default key by key:
# `--config key=value` cannot carry these, Snakemake reads nested values as YAML strings ('60').
SMALL = {
    "n_steps": 40,
    "lattice": {"shape": [60], "boundary": "periodic"},
    "splits": {"train": {"n_ics": 3, "trajectories": 8}, "test": {"n_ics": 2, "trajectories": 8}},
    "batch_size": 4,
    "training": {
        "steps": 12,
        "learning_rate": 0.02,
        "window": {"size": 5, "shift": 1, "every": 2},
        "checkpoint_every": 6,
    },
}
# Rules of the default pipeline and how many SLURM jobs each makes with SMALL: the 10 simulation
# batches in one `sims` group job, one MPI job per split, fit_initial per model and split, ...
# evaluate: 2 models + 3 baselines (mean_field, pair, maxent: 1D, one species)
SLURM_JOBS = {"sims": 1, "moments": 2, "fit_initial": 4, "train": 2, "evaluate": 5, "report": 1}
LOCAL_RULES = {"resolved_config", "config_view", "metrics"}


def _local_snakemake(workdir: Path, args: list[str]) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _slurm_jobs(output: str) -> dict[str, str]:
    """SLURM job id -> its comment (``rule_<rule or group>...``) of every job a run submitted."""
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    res = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%k"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    jobs = dict(line.split("|", 1) for line in res.stdout.split())
    assert sorted(jobs) == sorted(ids), (ids, res.stdout)  # MinJobAge keeps finished ones listed
    return jobs


@pytest.mark.slurm
def test_default_pipeline_through_slurm_equals_local_run(tmp_path, slurm_profile, run_snakemake):
    """The default pipeline (config/config.yaml, shrunk in size) through `--profile slurm`: the
    simulations as one group job, `moments` as a 2-rank MPI world under srun, every rule of both
    models; every result equals a local run's bit for bit."""
    import h5py
    import numpy as np

    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(SMALL))
    args = ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(small)]
    cluster, local = tmp_path / "cluster", tmp_path / "local"
    cluster.mkdir()
    output = run_snakemake(cluster, args, slurm_profile, timeout=600)
    _local_snakemake(local, args)

    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    out = Path("results") / default["experiment"]
    resolved = yaml.safe_load((cluster / out / "config.yaml").read_text())
    for key, value in default.items():  # the default, with only SMALL's sizes changed
        if key not in SMALL:
            assert resolved[key] == value, key
    assert set(resolved["models"]) == {"visible", "hidden"}

    # every rule of the pipeline ran; all but the local ones as SLURM jobs, the simulations
    # bundled into one group job
    ran = set(re.findall(r"^\s*(?:local)?rule (\w+):", output, re.M))
    assert ran >= {"simulate", *SLURM_JOBS, *LOCAL_RULES} - {"sims"}, ran
    comments = list(_slurm_jobs(output).values())
    per_rule = {
        name: sum(c == f"rule_{name}" or c.startswith(f"rule_{name}_") for c in comments)
        for name in [*SLURM_JOBS, "simulate"]
    }
    assert per_rule == {**SLURM_JOBS, "simulate": 0}, comments
    assert len(list((cluster / out / "sims").glob("*/*.h5"))) == 10

    # `moments` ran under srun with 2 ranks in one world (--expect-ranks fails otherwise)
    assert re.search(r"srun --mpi=pmi2 -n 2 dbdflow moments", output), output[-3000:]
    for split in ("train", "test"):
        log = (cluster / out / f"logs/moments/{split}.log").read_text()
        assert "2 ranks" in log, log

    files = sorted(p.relative_to(local) for p in (local / out).rglob("*.h5"))
    names = {p.name for p in files}
    assert {"train.h5", "test.h5", "initial_train.h5", "initial_test.h5", "dynamics.h5"} <= names

    def same(a, b, name=""):
        if isinstance(a, h5py.Dataset):
            assert np.array_equal(a[()], b[()], equal_nan=a.dtype.kind == "f"), name
            return
        assert set(a) == set(b), name
        for key in a:
            if name.endswith("/log") and key == "seconds":
                continue  # wall-clock time per training step
            same(a[key], b[key], f"{name}/{key}")

    for rel in files:
        if "checkpoint" in rel.name:
            continue
        with h5py.File(local / rel) as a, h5py.File(cluster / rel) as b:
            same(a, b, str(rel))
    texts = sorted(p.relative_to(local) for p in (local / out).glob("eval/*.*"))
    texts.append(out / "report/report.md")
    for rel in texts:
        assert (cluster / rel).read_text() == (local / rel).read_text(), rel
    figures = {p.name for p in (cluster / out / "report").glob("*.png")}
    assert figures == {p.name for p in (local / out / "report").glob("*.png")} and figures
