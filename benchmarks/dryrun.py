"""Seconds for a Snakemake dry run of a config with about 10,000 simulation jobs (issue target
<= 60 s): the default config with 4,000 train and 1,000 test ICs of 2 batches each, and the same as
a 2-point sweep (20,000 simulation jobs). Prints a table; run from the repository root."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dry_run(workdir: Path, *args: str) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n"]
    cmd += ["--quiet", "rules", "--cores", "1", "--directory", str(workdir), *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    total = next(int(ln.split()[1]) for ln in proc.stdout.splitlines() if ln.startswith("total"))
    return seconds, total


def main():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["splits"] = {
        "train": {"n_ics": 4000, "trajectories": 40},
        "test": {"n_ics": 1000, "trajectories": 40},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(yaml.safe_dump(config))
        (Path(tmp) / "s.tsv").write_text("training.learning_rate\n0.01\n0.02\n")
        print("| dry run | jobs | seconds |\n|---|---|---|")
        seconds, jobs = dry_run(Path(tmp), "--configfile", str(path))
        print(f"| 5,000 ICs x 2 batches | {jobs} | {seconds:.1f} |")
        seconds, jobs = dry_run(Path(tmp), "--configfile", str(path), "--config", "sweep=s.tsv")
        print(f"| the same, 2-point sweep | {jobs} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
