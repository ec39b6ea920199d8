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
