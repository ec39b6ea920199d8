"""diagnostics/rossler_maxent.py on a 4x4x4 version of the Rössler config: simulate, aggregate,
fit the maximum-entropy path and probe it; bad input (a model with hidden units, steps beyond the
data) is refused, naming the config field or option."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from dbdflow import config, io, stages
from dbdflow.boltzmann import awake

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    path = ROOT / "diagnostics" / "rossler_maxent.py"
    spec = importlib.util.spec_from_file_location("rossler_maxent", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("rossler_small")
    cfg = yaml.safe_load((ROOT / "config" / "paper" / "rossler_3d.yaml").read_text())
    cfg["lattice"]["shape"] = [4, 4, 4]
    cfg["initial"]["counts"] = {"A": 10, "B": 10, "C": 10}
    cfg["n_steps"] = 4
    cfg["splits"] = {"train": {"n_ics": 1, "trajectories": 8}}
    cfg["batch_size"] = 8
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sims = root / "train.h5"
    stages.simulate(path, "train", 0, 0, sims)
    stages.moments(path, "train", [sims], root / "moments.h5")
    return path, root / "moments.h5"


def test_script_prints_the_path_and_the_phase_probe(small, capsys):
    """Rows of steps 0, 2, 4 with the data's A, the nine θ and the probe; at step 0 (10 of each
    species at random on 64 sites) the biases are near the product measure's ln(10/34)."""
    cfg, moments = small
    args = ["--config", str(cfg), "--moments", str(moments), "--steps", "4", "--every", "2"]
    load_script().main([*args, "--iterations", "300", "--sweeps", "20"])
    out = capsys.readouterr().out
    assert "max-ent path of steps 0-4" in out and "largest |dθ/dt| of the couplings" in out
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [0, 2, 4]
    exp = config.load(cfg)
    data = awake.chain_statistics(exp.model("visible").build(exp), io.read_moments(moments)["mean"])
    assert [float(r[1]) for r in rows] == pytest.approx(data[0, [0, 2, 4], 0], abs=0.5)
    assert all(len(r) == 2 + 9 + 7 for r in rows)  # step, data A, θ, "a / b, c/32 and d/32, v"
    np.testing.assert_allclose([float(x) for x in rows[0][2:5]], np.log(10 / 34), atol=0.5)


def test_script_refuses_bad_input(small):
    cfg, moments = small
    with pytest.raises(SystemExit, match=r"models\.rbm must be fully visible"):
        load_script().main(["--config", str(cfg), "--moments", str(moments), "--model", "rbm"])
    with pytest.raises(SystemExit, match=r"--steps must be in 1\.\.4"):
        load_script().main(["--config", str(cfg), "--moments", str(moments), "--steps", "5"])
