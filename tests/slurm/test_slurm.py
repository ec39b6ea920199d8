"""A workflow through the SLURM executor plugin on a real one-node cluster (conftest.py).

The workflow is a stand-in with the shape of dbdflow's (a group of small jobs, one 2-rank MPI step
launched by ``{resources.mpi} -n {resources.tasks}``, one aggregation), run through the shipped
SLURM profile and a workflow profile like ``profiles/default``. To run the real pipeline instead,
swap the ``pipeline`` fixture (workdir, Snakemake arguments) and the checks.
"""

import json
from pathlib import Path

import pytest

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


def _local_snakemake(workdir: Path, args: list[str]) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slurm
def test_tiny_pipeline_through_slurm_equals_local_run(tmp_path, slurm_profile, run_snakemake):
    """The real pipeline (tests/data/tiny.yaml) through `--profile slurm`, with the MPI `moments`
    step under srun: every result equals a local run's bit for bit."""
    import h5py
    import numpy as np

    args = [
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "tests/data/tiny.yaml"),
    ]
    cluster, local = tmp_path / "cluster", tmp_path / "local"
    cluster.mkdir()
    run_snakemake(cluster, args, slurm_profile, timeout=420)
    _local_snakemake(local, args)
    out = Path("results/tiny")
    log = (cluster / out / "logs/moments/train.log").read_text()
    assert "2 ranks" in log, log  # profiles/default asks for 2 MPI ranks, srun wired them
    files = sorted(p.relative_to(local) for p in (local / out).rglob("*.h5"))
    assert any("dynamics.h5" in str(p) for p in files) and any("moments" in str(p) for p in files)

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
    assert (cluster / out / "eval/metrics.json").read_text() == (
        local / out / "eval/metrics.json"
    ).read_text()
