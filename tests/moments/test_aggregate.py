"""Exact aggregation: serial sums equal numpy, and MPI runs are bitwise identical to serial ones."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dbdflow import io, stages
from dbdflow.moments.aggregate import aggregate

ROOT = Path(__file__).resolve().parents[2]
N_ICS, N_TRAJ, BATCH, N_TIMES = 3, 7, 3, 5


def write_batches(tmp_path: Path):
    """Synthetic sims files (3 ICs x 7 trajectories in batches of 3) and the full data per IC."""
    rng = np.random.default_rng(42)
    full = {}
    files = []
    for ic in range(N_ICS):
        counts = rng.integers(0, 2**20, size=(N_TRAJ, N_TIMES, 2))
        pairs = rng.integers(0, 2**20, size=(N_TRAJ, N_TIMES, 3))
        full[ic] = {"counts": counts, "pairs": pairs}
        for b, start in enumerate(range(0, N_TRAJ, BATCH)):
            sl = slice(start, start + BATCH)
            path = tmp_path / f"ic{ic}_b{b}.h5"
            io.write_sims(
                path,
                times=np.arange(N_TIMES) * 0.5,
                observables={"counts": counts[sl], "pairs": pairs[sl]},
                states=None,
                attrs={"ic": ic},
            )
            files.append(path)
    return files, full


def test_serial_sums_equal_numpy(tmp_path):
    files, full = write_batches(tmp_path)
    times, sums, sumsqs, n_traj = aggregate(files[::-1], N_ICS)
    assert np.array_equal(times, np.arange(N_TIMES) * 0.5)
    assert n_traj.tolist() == [N_TRAJ] * N_ICS
    for ic in range(N_ICS):
        for name, x in full[ic].items():
            assert np.array_equal(sums[name][ic], x.sum(0))
            assert np.array_equal(sumsqs[name][ic], (x * x).sum(0))


def tiny_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["splits"] = {"train": {"n_ics": N_ICS, "trajectories": N_TRAJ}}
    cfg["batch_size"] = BATCH
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_moments_stage_checks_trajectory_counts(tmp_path):
    files, _ = write_batches(tmp_path)
    cfg = tiny_config(tmp_path)
    with pytest.raises(ValueError, match=r"ICs \[0\] have \[4\] trajectories"):
        stages.moments(cfg, "train", files[1:], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_sims_dir_needs_every_batch_the_config_implies(tmp_path):
    files, _ = write_batches(tmp_path)
    cfg = tiny_config(tmp_path)
    assert stages.split_sims_files(cfg, "train", tmp_path) == [str(f) for f in files]
    files[4].unlink()
    out = tmp_path / "m.h5"
    base = [sys.executable, "-m", "dbdflow", "moments", "--config", str(cfg), "--split", "train"]
    proc = subprocess.run(
        [*base, "--out", str(out), "--sims-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "1 of the 9 batch files" in proc.stderr
    assert files[4].name in proc.stderr and not out.exists()
    both = [*base, "--out", str(out), "--sims-dir", str(tmp_path), str(files[0])]
    proc = subprocess.run(both, capture_output=True, text=True)
    assert proc.returncode == 2 and "either --sims-dir or the sims files" in proc.stderr


def mpiexec() -> str:
    exe = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    assert exe, "mpiexec not found: `pip install -e .` installs it with the mpich wheel"
    return exe


@pytest.mark.mpi
def test_mpi_two_ranks_bitwise_equal_to_serial(tmp_path):
    files, full = write_batches(tmp_path)
    cfg = tiny_config(tmp_path)
    stages.moments(cfg, "train", files, tmp_path / "serial.h5")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for ranks in (1, 2, 3):
        out = tmp_path / f"mpi{ranks}.h5"
        cmd = [
            mpiexec(),
            "-n",
            str(ranks),
            sys.executable,
            "-m",
            "dbdflow",
            "moments",
            "--config",
            str(cfg),
            "--split",
            "train",
            "--out",
            str(out),
            "--expect-ranks",
            str(ranks),
        ]
        # the workflow names the directory (1, 2 ranks); a user may list the files (3 ranks)
        cmd += map(str, files) if ranks == 3 else ["--sims-dir", str(tmp_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        a, b = io.read_moments(tmp_path / "serial.h5"), io.read_moments(out)
        for group in ("sum", "sumsq", "mean", "stderr"):
            for name in a[group]:
                assert np.array_equal(a[group][name], b[group][name], equal_nan=True)
    serial = io.read_moments(tmp_path / "serial.h5")
    x = full[1]["counts"].astype(float)
    assert np.allclose(serial["mean"]["counts"][1], x.mean(0), rtol=1e-14)
    assert np.allclose(serial["stderr"]["counts"][1], x.std(0, ddof=1) / np.sqrt(N_TRAJ))


@pytest.mark.mpi
def test_rank_count_mismatch_is_an_error(tmp_path):
    files, _ = write_batches(tmp_path)
    cfg = tiny_config(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "dbdflow",
        "moments",
        "--config",
        str(cfg),
        "--split",
        "train",
        "--out",
        str(tmp_path / "m.h5"),
        "--expect-ranks",
        "2",
        *map(str, files),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "requested" in proc.stderr
    assert not (tmp_path / "m.h5").exists()


NUMBA_PROBE = """\
import gc, json, sys
from numba.core.dispatcher import Dispatcher
from dbdflow.cli import main

code = main(sys.argv[1:])
found = {}
for name, module in list(sys.modules.items()):
    if name == "dbdflow" or name.startswith("dbdflow."):
        for attr, obj in list(vars(module).items()):
            if isinstance(obj, Dispatcher):
                found[f"{name}.{attr}"] = obj
for obj in gc.get_objects():  # also kernels held only by closures, classes or tables
    if isinstance(obj, Dispatcher) and obj.py_func.__module__.startswith("dbdflow"):
        found.setdefault(f"{obj.py_func.__module__}.{obj.py_func.__qualname__}", obj)
compiled = {k: [str(s) for s in d.overloads] for k, d in sorted(found.items()) if d.overloads}
print(json.dumps({"code": code, "dispatchers": len(found), "compiled": compiled}))
"""


def test_moments_compiles_no_numba_kernel(tmp_path):
    """The moments stage runs under several MPI ranks at once, and numba's on-disk cache
    (``cache=True``) is not safe against several processes compiling or caching the same function
    at the same time. Today nothing in moments needs numba: the
    aggregation is integer sums in numpy, and the observables were counted by the simulate jobs.
    That is what keeps the MPI job safe, so this guards it: the stage's command, run in a fresh
    interpreter, must leave every numba dispatcher of the loaded ``dbdflow`` modules without a
    compiled (or cache-loaded) overload. Should moments ever need a jitted kernel, warm the cache
    on one rank before the others import it (or give each rank its own ``NUMBA_CACHE_DIR``) and
    change this test."""
    write_batches(tmp_path)  # 9 batch files, which --sims-dir finds
    cfg = tiny_config(tmp_path)
    out = tmp_path / "m.h5"
    args = ["moments", "--config", str(cfg), "--split", "train", "--out", str(out)]
    args += ["--sims-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    proc = subprocess.run(
        [sys.executable, "-c", NUMBA_PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and out.is_file(), proc.stderr
    assert result["dispatchers"] > 0  # the probe sees the package's kernels (stages imports them)
    assert result["compiled"] == {}, f"moments compiled numba kernels: {result['compiled']}"
