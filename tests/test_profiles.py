import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow import profiles
from dbdflow.profiles import PROFILE_FILE, install_profile, mpi_launcher, render_profile

REPO = Path(__file__).resolve().parents[1]
RULES = ("simulate", "moments", "fit_initial", "train", "evaluate", "report")


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """An empty user config dir and an empty working directory, as on a fresh cluster account."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def _parse_as_snakemake(path: Path) -> dict:
    from snakemake.profiles import ProfileConfigFileParser

    with open(path) as f:
        return ProfileConfigFileParser().parse(f)


def test_default_location_is_where_snakemake_looks_the_name_up(config_home):
    from snakemake.cli import get_profile_dir

    written = install_profile(partition="short")
    assert written == config_home / "snakemake" / "slurm" / PROFILE_FILE
    assert get_profile_dir("slurm") == (written.parent, written)


def test_placeholders_are_filled(tmp_path):
    written = install_profile(partition="short,long", account="proj_7", dest=tmp_path / "p")
    settings_ = yaml.safe_load(written.read_text())
    assert settings_["executor"] == "slurm"
    assert settings_["default-resources"]["slurm_partition"] == "short,long"
    assert settings_["default-resources"]["slurm_account"] == "proj_7"
    args = _parse_as_snakemake(written)["default-resources"]
    assert "slurm_partition=short,long" in args and "slurm_account=proj_7" in args


def test_unset_placeholders_stay_commented_out(tmp_path):
    written = install_profile(dest=tmp_path / "p")
    text = written.read_text()
    assert "# slurm_partition: PARTITION" in text and "# slurm_account: ACCOUNT" in text
    resources = yaml.safe_load(text)["default-resources"]
    assert "slurm_partition" not in resources and "slurm_account" not in resources


@settings(max_examples=25, deadline=None)
@given(st.from_regex(profiles._SLURM_NAME, fullmatch=True))
def test_any_slurm_name_survives_yaml(name):
    # e.g. "1e5", "null", "true" must stay strings
    resources = yaml.safe_load(render_profile(partition=name, account=name))["default-resources"]
    assert resources["slurm_partition"] == name and resources["slurm_account"] == name


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"partition": "a b"}, "partition"),
        ({"partition": ""}, "partition"),
        ({"account": 'x"\nexecutor: local'}, "account"),
        ({"name": "pbs"}, "name"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} "):
        install_profile(dest=tmp_path / "p", **kwargs)
    assert not (tmp_path / "p").exists()


def test_refuses_to_overwrite_without_force(tmp_path):
    dest = tmp_path / "p"
    written = install_profile(partition="old", dest=dest)
    with pytest.raises(FileExistsError, match="force"):
        install_profile(partition="new", dest=dest)
    assert yaml.safe_load(written.read_text())["default-resources"]["slurm_partition"] == "old"
    install_profile(partition="new", dest=dest, force=True)
    assert yaml.safe_load(written.read_text())["default-resources"]["slurm_partition"] == "new"
    assert sorted(os.listdir(dest)) == [PROFILE_FILE]  # no temporary files left


@pytest.mark.parametrize("force", [False, True])
def test_failed_write_leaves_the_old_state(tmp_path, monkeypatch, force):
    dest = tmp_path / "p"
    if force:
        install_profile(partition="old", dest=dest)
    before = {p.name: p.read_bytes() for p in dest.glob("*")} if force else {}

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(profiles.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        install_profile(partition="new", dest=dest, force=force)
    assert {p.name: p.read_bytes() for p in dest.glob("*")} == before
    assert [p.name for p in dest.iterdir()] == list(before)  # no temporary file either


def test_repository_template_is_the_rendered_template():
    """profiles/slurm/ is generated: install_profile(dest="profiles/slurm", force=True)."""
    assert (REPO / "profiles" / "slurm" / PROFILE_FILE).read_text() == render_profile("slurm")


def test_profiles_split_their_keys():
    """The workflow profile replaces a global profile's key whole, so they must not share one."""
    workflow = yaml.safe_load((REPO / "profiles" / "default" / PROFILE_FILE).read_text())
    cluster = yaml.safe_load(render_profile("slurm", partition="p", account="a"))
    assert not set(workflow) & set(cluster)
    assert set(workflow["set-resources"]) == set(RULES)
    assert set(workflow["set-threads"]) == set(RULES)
    assert workflow["set-resources"]["moments"]["tasks"] >= 2  # the SLURM plugin's MPI minimum
    assert workflow["group-components"]["sims"] > 1
    assert "runtime" in cluster["default-resources"]


@pytest.mark.parametrize(
    ("executor", "environ", "launcher"),
    [
        ("local", {}, "mpiexec"),
        ("dryrun", {"PATH": "/bin"}, "mpiexec"),
        ("slurm", {}, "srun --mpi=pmi2"),
        ("slurm-jobstep", {}, "srun --mpi=pmi2"),
        ("local", {"SLURM_JOB_ID": "7"}, "srun --mpi=pmi2"),  # the rule's command in a job
    ],
)
def test_mpi_launcher(executor, environ, launcher):
    assert mpi_launcher(executor, environ) == launcher
