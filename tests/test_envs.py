"""The conda environment for clusters (envs/dbdflow.yaml) installs what pyproject.toml requires."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"matplotlib": "matplotlib-base"}  # conda-forge's package without a GUI toolkit


def requirement(spec: str) -> tuple[str, str | None]:
    """(name, lower bound or None) of a requirement such as 'numpy>=1.26,<2.5; marker'."""
    spec = spec.split(";")[0].strip()
    name = re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower()
    lower = re.search(r">=\s*([0-9][0-9.]*)", spec)
    return name, lower.group(1) if lower else None


def version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_conda_environment_covers_the_package_requirements():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs/dbdflow.yaml").read_text())
    conda, pip = {}, {}
    for item in env["dependencies"]:
        if isinstance(item, dict):
            pip.update(requirement(s) for s in item["pip"] if not s.startswith("-e"))
        else:
            pinned = "=" in item and ">" not in item  # python=3.11
            name, lower = requirement(item.replace("=", "==", 1) if pinned else item)
            conda[name] = lower
    assert "-e .." in next(i for i in env["dependencies"] if isinstance(i, dict))["pip"]
    for spec in deps:
        name, lower = requirement(spec)
        where = pip if name in pip else conda
        key = name if name in where else CONDA_NAMES.get(name, name)
        assert key in where, f"{name} (pyproject) is missing from envs/dbdflow.yaml"
        if lower and where[key]:
            assert version(where[key]) >= version(lower), f"{key}: env allows older than {lower}"
    # MPI from PyPI only (see the file's header): no conda MPI next to the mpich wheel
    assert not {"mpich", "openmpi", "mpi4py"} & set(conda)
    assert "python=3.11" in env["dependencies"]
