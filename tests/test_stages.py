"""The simulate stage end to end: files, attributes, reproducibility across batch sizes."""

from pathlib import Path

import numpy as np
import yaml

from dbdflow import cli, io, stages
from dbdflow.moments import observables
from dbdflow.simulate import Lattice

ROOT = Path(__file__).resolve().parents[1]


def small_config(tmp_path: Path, **changes) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(lattice={"shape": [30], "boundary": "periodic"}, n_steps=20, record_every=5)
    cfg["splits"] = {
        "train": {"n_ics": 2, "trajectories": 6},
        "test": {"n_ics": 1, "trajectories": 2},
    }
    cfg.update(changes)
    path = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_trajectories_do_not_depend_on_batch_size(tmp_path):
    whole = small_config(tmp_path, batch_size=6)
    split = small_config(tmp_path, batch_size=4)
    stages.simulate(whole, "train", 1, 0, tmp_path / "whole.h5")
    stages.simulate(split, "train", 1, 0, tmp_path / "b0.h5")
    stages.simulate(split, "train", 1, 1, tmp_path / "b1.h5")
    a = io.read_sims_states(tmp_path / "whole.h5")
    b = np.concatenate([io.read_sims_states(tmp_path / f"b{i}.h5") for i in (0, 1)])
    assert a.shape == (6, 5, 30) and np.array_equal(a, b)
    # a different IC or split gives different lattices
    stages.simulate(whole, "train", 0, 0, tmp_path / "ic0.h5")
    assert not np.array_equal(a, io.read_sims_states(tmp_path / "ic0.h5"))


def test_sims_file_contents(tmp_path):
    cfg = small_config(tmp_path, batch_size=4)
    out = tmp_path / "sims" / "x.h5"
    assert (
        cli.main(
            ["simulate", "--config", str(cfg), "--split", "test", "--ic", "0", "--out", str(out)]
        )
        == 0
    )
    times, obs, attrs = io.read_sims_observables(out)
    states = io.read_sims_states(out)
    assert np.allclose(times, np.arange(5) * 5 * 0.01)
    assert attrs["ic"] == 0 and attrs["split"] == "test" and attrs["trajectories"] == [0, 2]
    assert set(attrs["ic_parameters"]) == {"b_A", "J_AA", "K_AAA"}
    assert all(-1 <= v <= 1 for v in attrs["ic_parameters"].values())
    want = observables(states, Lattice((30,)), ["A"])
    for name, value in want.items():
        assert np.array_equal(obs[name], value)
    # A + A -> 0 only removes particles, in pairs
    counts = obs["counts"][..., 0]
    assert np.all(np.diff(counts, axis=1) <= 0) and np.all((counts[:, :1] - counts) % 2 == 0)


def test_bad_config_exits_with_a_clear_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\n")
    code = cli.main(
        [
            "simulate",
            "--config",
            str(bad),
            "--split",
            "train",
            "--ic",
            "0",
            "--out",
            str(tmp_path / "o.h5"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'seed' is a required property" in err
    assert not (tmp_path / "o.h5").exists()
    cfg = small_config(tmp_path)
    code = cli.main(
        [
            "simulate",
            "--config",
            str(cfg),
            "--split",
            "train",
            "--ic",
            "5",
            "--out",
            str(tmp_path / "o.h5"),
        ]
    )
    assert code == 2 and "ic 5 out of range" in capsys.readouterr().err
