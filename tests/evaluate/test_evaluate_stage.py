"""`stages.evaluate`, `combine_metrics` and `report` on synthetic files.

The synthetic test data are exact samples of the chain at each IC's θ(t0) at every recorded time
(a frozen lattice distribution), and the synthetic model has F ≡ 0, so the model's exact moments
must agree with the data within their standard errors everywhere.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from dbdflow import config, io, stages
from dbdflow.boltzmann import chain, exact_sample
from dbdflow.dynamics import HermiteGrid
from dbdflow.evaluate import metrics
from dbdflow.moments.observables import observables

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.yaml"
N_TRAJ = 150
NAMES = ("visible", "mean_field", "pair", "maxent")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    exp = config.load(TINY)
    cfg = root / "config.yaml"
    stages.write_config(exp.raw, cfg)
    exp = config.load(cfg)
    n_ics, n_times = exp.split("test").n_ics, exp.n_records
    model = chain(exp.lattice.n_sites, exp.lattice.boundary)
    theta0 = np.array([[p.get(k, 0.0) for k in model.param_names] for p in _ic_params(exp, n_ics)])
    rng = np.random.default_rng(21)
    sums, sumsqs = {}, {}
    for ic in range(n_ics):
        states = exact_sample(model, theta0[ic], N_TRAJ * n_times, rng).reshape(N_TRAJ, n_times, -1)
        for name, value in observables(states, exp.lattice, exp.species).items():
            sums.setdefault(name, []).append(value.sum(axis=0))
            sumsqs.setdefault(name, []).append((value**2).sum(axis=0))
    io.write_moments(
        root / "test.h5",
        times=exp.times,
        n_traj=np.full(n_ics, N_TRAJ),
        sums={k: np.stack(v) for k, v in sums.items()},
        sumsqs={k: np.stack(v) for k, v in sumsqs.items()},
        attrs={"experiment": exp.name, "split": "test"},
    )
    names = model.param_names
    attrs = {"experiment": exp.name, "split": "test", "model": "visible", "family": "chain"}
    io.write_initial(root / "initial.h5", param_names=names, theta0=theta0, fit={}, attrs=attrs)
    grid = HermiteGrid([-3, -3, -3], [3, 3, 3], [2, 2, 2])
    fn = {
        "u": np.zeros(grid.n_coeffs),
        "coords": np.arange(3),
        "lower": grid.lower,
        "upper": grid.upper,
        "n_cells": grid.n_cells,
    }
    io.write_dynamics(
        root / "dynamics.h5",
        param_names=names,
        functions=[fn] * 3,
        u=np.zeros(3 * grid.n_coeffs),
        times=exp.times,
        theta0=theta0,
        theta=np.repeat(theta0[:, None], n_times, axis=1),
        outside=np.zeros((n_ics, 3), dtype=np.int64),
        excursions=np.zeros(3, dtype=np.int64),
        log={"loss": np.array([1.0, 0.5])},
        attrs={**attrs, "dt": float(exp.times[1]), "scheme": "rk4", "substeps": 1, "steps": 2},
    )
    return root, theta0


def _ic_params(exp, n_ics):
    return [stages.ic_parameters(exp, "test", ic) for ic in range(n_ics)]


@pytest.fixture(scope="module")
def evaluated(files):
    """The synthetic model and the baselines evaluated (eval/<name>.csv and .json)."""
    root, _ = files
    for name in NAMES:
        model = name == "visible"
        stages.evaluate(
            root / "config.yaml",
            root / "test.h5",
            name,
            root / f"{name}.csv",
            root / f"{name}.json",
            initial_path=root / "initial.h5" if model else None,
            dynamics_path=root / "dynamics.h5" if model else None,
        )
    return root


def test_model_with_frozen_dynamics_matches_frozen_data_within_standard_errors(evaluated):
    root = evaluated
    frame = metrics.read_csv(root / "visible.csv")
    assert list(frame.columns) == list(metrics.COLUMNS)
    assert set(frame["observable"]) == {"counts", "pairs", "pairs_d2", "strings3", "strings4"}
    assert len(frame) == 5 * 2 * 11 and (frame["model_stderr"] == 0).all()
    z = frame["abs_err"] / frame["data_stderr"]
    assert z.max() < 4.5, frame.loc[z.idxmax()]
    summary = json.loads((root / "visible.json").read_text())
    assert summary["kind"] == {"visible": "model"}
    assert summary["outside_evaluations"] == {"visible": 0}
    assert set(summary["rmse_by_order"]["visible"]) == {"1", "2", "3", "4"}
    # KL of the frozen model to the data's max-ent chain: the data are samples of that very
    # chain, so only sampling noise separates them (≪ the KL between distinct chains, ~0.01)
    assert 0 <= summary["kl_per_site"]["visible"] < 2e-3
    assert summary["kl_points"]["visible"] == 2 * 11


@pytest.mark.parametrize(
    ("name", "used", "rtol"),
    [
        ("mean_field", ["counts"], 1e-12),  # product measure: ρ only
        ("pair", ["counts", "pairs"], 1e-12),
        ("maxent", ["counts", "pairs", "strings3"], 1e-6),  # the chain fitted to them (tol 1e-8)
    ],
)
def test_baselines_start_from_the_measured_moments(evaluated, name, used, rtol):
    root = evaluated
    frame = metrics.read_csv(root / f"{name}.csv")
    start = frame[(frame["time"] == 0) & frame["observable"].isin(used)]
    assert set(start["observable"]) == set(used)
    np.testing.assert_allclose(start["model_mean"], start["data_mean"], rtol=rtol)
    assert json.loads((root / f"{name}.json").read_text())["kind"] == {name: "baseline"}


def test_bad_inputs_are_refused(files):
    root, _ = files
    base = (root / "config.yaml", root / "test.h5")
    with pytest.raises(ValueError, match="needs --initial and --dynamics"):
        stages.evaluate(*base, "visible", root / "x.csv", root / "x.json")
    with pytest.raises(ValueError, match="takes no initial"):
        stages.evaluate(*base, "pair", root / "x.csv", root / "x.json", root / "initial.h5")
    with pytest.raises(io.FormatError, match="expected 'hidden'"):
        stages.evaluate(
            *base,
            "hidden",
            root / "x.csv",
            root / "x.json",
            initial_path=root / "initial.h5",
            dynamics_path=root / "dynamics.h5",
        )
    assert not (root / "x.csv").exists()


def test_combined_metrics_and_report(evaluated):
    root, names = evaluated, list(NAMES)
    stages.combine_metrics([root / f"{n}.json" for n in names], root / "metrics.json")
    combined = json.loads((root / "metrics.json").read_text())
    assert list(combined["rmse_by_order"]) == names
    assert combined["kind"] == {
        "visible": "model",
        "mean_field": "baseline",
        "pair": "baseline",
        "maxent": "baseline",
    }
    stages.report(
        root / "config.yaml",
        root / "metrics.json",
        [root / f"{n}.csv" for n in names],
        [root / "dynamics.h5"],
        root / "report",
    )
    files_written = sorted(p.name for p in (root / "report").iterdir())
    assert files_written == sorted(
        ["report.md", "trajectories.png", "rmse.png", "theta_visible.png", "F_visible.png"]
    )
    text = (root / "report" / "report.md").read_text()
    value = combined["rmse_by_order"]["pair"]["2"]
    assert f"{value:.4g}" in text and "| visible | DBD model |" in text


def test_command_line(evaluated, capsys):
    from dbdflow.cli import main

    root = evaluated
    base = ["evaluate", "--config", str(root / "config.yaml"), "--moments", str(root / "test.h5")]
    out = ["--out-csv", str(root / "cli.csv"), "--out-json", str(root / "cli.json")]
    assert main([*base, "--name", "pair", *out]) == 0
    assert (root / "cli.csv").read_text() == (root / "pair.csv").read_text()
    with pytest.raises(SystemExit) as stop:
        main([*base, "--name", "visible", *out])
    assert stop.value.code == 2 and "needs --initial" in capsys.readouterr().err
    bad = ["--initial", str(root / "test.h5"), "--dynamics", str(root / "dynamics.h5")]
    assert main([*base, "--name", "visible", *bad, *out]) == 2  # not an initial file
    assert "expected format 'dbdflow.initial/1'" in capsys.readouterr().err
    assert main(["metrics", "--out", str(root / "m.json"), str(root / "pair.json")]) == 0
