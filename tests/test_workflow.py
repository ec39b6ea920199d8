"""The Snakemake workflow: dry runs of every shipped config, and the tiny pipeline end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dbdflow import io, stages
from dbdflow.evaluate import figure_files

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "config").rglob("*.yaml"))


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    # as in an activated environment: `dbdflow` and `mpiexec` on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("configfile", [None, *CONFIGS], ids=str)
def test_dry_run_of_every_shipped_config(tmp_path, configfile):
    args = ["-n", "--quiet", "rules"]
    if configfile is not None:
        args += ["--configfile", str(ROOT / configfile)]
    proc = snakemake(tmp_path, *args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "simulate" in proc.stdout and "moments" in proc.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("periodic", "circular"), "lattice.boundary: 'circular' is not one of"),
        (("window: {size: 5, shift: 1, every: 2}", "window: 5"), "training.window: 5 is not"),
        (("learning_rate: 0.02", "learning_rate: -1"), "training.learning_rate: -1 is not"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, change, message):
    text = (ROOT / "tests/data/tiny.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(change[0], change[1], 1))
    proc = snakemake(tmp_path, "--configfile", str(bad))
    assert proc.returncode != 0
    assert f"{bad}: {message}" in proc.stderr  # one line naming the file and the key
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path):
    tiny = ROOT / "tests/data/tiny.yaml"
    proc = snakemake(tmp_path, "--configfile", str(tiny))
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = tmp_path / "results/tiny"
    for split, n_ics in (("train", 3), ("test", 2)):
        m = io.read_moments(out / f"moments/{split}.h5")
        assert m["n_traj"].tolist() == [6] * n_ics
        # the workflow's MPI result equals a direct serial aggregation of the same files
        files = sorted((out / f"sims/{split}").glob("*.h5"))
        stages.moments(out / "config.yaml", split, files, tmp_path / f"serial_{split}.h5")
        serial = io.read_moments(tmp_path / f"serial_{split}.h5")
        for name in serial["sum"]:
            assert np.array_equal(serial["sum"][name], m["sum"][name])
    # learning, evaluation of every model and baseline, metrics and report
    for model in ("visible", "hidden"):
        dyn = io.read_dynamics(out / f"models/{model}/dynamics.h5")
        assert dyn["attrs"]["model"] == model and dyn["theta"].shape[:2] == (3, 11)
        assert io.read_initial(out / f"models/{model}/initial_test.h5")["theta0"].shape[0] == 2
    names = ["visible", "hidden", "mean_field", "pair", "maxent"]
    for name in names:
        table = (out / f"eval/{name}.csv").read_text().splitlines()
        assert table[0].startswith("ic,time,observable,component,order,data_mean")
        assert len(table) == 1 + 2 * 11 * 5  # test ICs × records × 1D observables
    metrics = json.loads((out / "eval/metrics.json").read_text())
    assert list(metrics["rmse_by_order"]) == names
    for name in names:
        assert set(metrics["rmse_by_order"][name]) == {"1", "2", "3", "4"}
        assert all(v is not None and v >= 0 for v in metrics["rmse_by_order"][name].values())
    assert set(metrics["kl_per_site"]) == {"visible", "hidden"}
    figures = figure_files(["visible", "hidden"], 1, 1, False)
    for name in figures.values():
        assert (out / "report" / name).stat().st_size > 10_000
    assert "| hidden | DBD model |" in (out / "report/report.md").read_text()
    html = tmp_path / "report.html"
    proc = snakemake(tmp_path, "--configfile", str(tiny), "--report", str(html))
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert html.stat().st_size > 100_000 and "rmse.png" in html.read_text()
    again = snakemake(tmp_path, "--configfile", str(tiny), "-n", "--quiet")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # a change reruns only what reads it: training -> both models' learning, not the simulations;
    # one model's grid or its own training keys -> that model alone
    for old, new, rerun, kept in (
        ("steps: 12", "steps: 14", {"visible/dynamics", "hidden/dynamics"}, {"sims/", "moments/"}),
        ("spacing: 0.5}", "spacing: 0.4}", {"visible/dynamics"}, {"sims/", "hidden/"}),
        (
            "  visible:\n",
            "  visible:\n    training: {learning_rate: 0.01}\n",
            {"visible/dynamics"},
            {"sims/", "hidden/"},
        ),
    ):
        changed = tmp_path / "changed.yaml"
        assert old in tiny.read_text()
        changed.write_text(tiny.read_text().replace(old, new, 1))
        dry = snakemake(tmp_path, "--configfile", str(changed), "-n")
        outputs = [line for line in dry.stdout.splitlines() if line.strip().startswith("output:")]
        assert dry.returncode == 0 and outputs, dry.stderr[-3000:]
        assert all(any(r in line for line in outputs) for r in rerun), outputs
        assert not any(k in line for line in outputs for k in kept), outputs
