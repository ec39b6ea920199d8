"""Exact aggregation: serial sums equal numpy, and MPI runs are bitwise identical to serial ones."""

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
