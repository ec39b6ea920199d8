"""Parameter sweeps: table parsing, config overrides, point naming, summary, a real sweep run."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import ROOT, snakemake

from dbdflow import io, sweep
from dbdflow.config import ConfigError

TINY = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_override_sets_dotted_keys_list_items_and_reaction_rates():
    out = sweep.override(TINY, "training.learning_rate", "0.05")
    assert out["training"]["learning_rate"] == 0.05
    assert TINY["training"]["learning_rate"] != 0.05  # the input is not modified
    assert sweep.override(TINY, "lattice.shape.0", "64")["lattice"]["shape"] == [64]
    assert sweep.override(TINY, "reactions.0.rate", "1.0")["reactions"] == ["A + A -> 0 @ 1.0"]
    assert sweep.override(TINY, "splits.train.n_ics", "4")["splits"]["train"]["n_ics"] == 4


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("training.rate", "0.1", r"'rate' is not a key of training \(allowed: .*learning_rate"),
        ("lattice.shape.3", "8", r"lattice.shape is a list of 1; '3' is not an index"),
        ("lattice", "8", "is a section"),
        ("dt.x", "8", "dt is a value, not a section"),
        ("reactions.2.rate", "0.5", "there are 1 reactions"),
        ("reactions.0.rate", "fast", "is not a number"),
    ],
)
def test_override_errors_name_the_column(column, value, message):
    with pytest.raises(ConfigError, match=message):
        sweep.override(TINY, column, value, "s.tsv")


def test_read_table_rejects_bad_tables(tmp_path):
    text = "# comment\nreactions.0.rate\tdt\n0.5\t0.01\n1\t0.02\n"
    good = sweep.read_table(write(tmp_path / "a.tsv", text))
    assert list(good.columns) == ["reactions.0.rate", "dt"] and good.shape == (2, 2)
    cases = {
        "bad column": ("a b\n1\n", "not a config path"),
        "unsafe value": ("dt\n0.01/2\n", r"row 1, column dt: '0.01/2' must be a scalar"),
        "duplicate": ("dt\n0.01\n0.01\n", "row 2 repeats a point"),
        "empty": ("dt\n", "at least one row"),
    }
    for name, (text, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            sweep.read_table(write(tmp_path / f"{name}.tsv", text))
    with pytest.raises(ConfigError, match="not found"):
        sweep.read_table(tmp_path / "missing.tsv")


def test_points_are_named_by_paramspace_and_validated(tmp_path):
    table = write(tmp_path / "s.tsv", "reactions.0.rate\ttraining.steps\n0.5\t3\n1.0\t4\n")
    points = sweep.points({**TINY, "sweep": str(table)}, table)
    assert list(points) == [
        "tiny/reactions_0_rate~0.5/training_steps~3",
        "tiny/reactions_0_rate~1.0/training_steps~4",
    ]
    first = points["tiny/reactions_0_rate~0.5/training_steps~3"]
    assert first["reactions"] == ["A + A -> 0 @ 0.5"] and first["training"]["steps"] == 3
    assert "sweep" not in first and first["seed"] == TINY["seed"]  # common random numbers
    bad = write(tmp_path / "bad.tsv", "reactions.0.rate\n0.5\n1.5\n")
    with pytest.raises(ConfigError, match=r"bad.tsv: row 2.*A \+ A -> 0 @ 1.5"):
        sweep.points(TINY, bad)


def test_summary_table_and_figure(tmp_path):
    table = pd.DataFrame({"dt": ["0.01", "0.02"]})
    files = []
    for i in range(2):
        metrics = {
            "rmse_by_order": {
                "visible": {"1": 1.0 + i, "2": 2.0},
                "pair": {"1": 3.0, "2": 4.0 + i},
            },
            "kl_per_site": {"visible": 0.1 * i},
        }
        files.append(write(tmp_path / f"m{i}.json", json.dumps(metrics)))
    frame = sweep.summary(table, ["e/dt~0.01", "e/dt~0.02"], files, tmp_path / "s.tsv")
    read = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert (
        list(read.columns)
        == list(frame.columns)
        == [
            "experiment",
            "dt",
            "rmse_visible_order1",
            "rmse_visible_order2",
            "rmse_pair_order1",
            "rmse_pair_order2",
            "kl_per_site_visible",
        ]
    )
    assert read["rmse_pair_order2"].tolist() == [4.0, 5.0] and read["dt"].tolist() == [0.01, 0.02]
    sweep.summary_figure(frame, ["dt"], tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_sweep_dry_run_of_the_shipped_example(tmp_path):
    proc = snakemake(
        tmp_path, "-n", "--quiet", "rules", "--config", "sweep=config/sweeps/annihilation_rate.tsv"
    )
    assert proc.returncode == 0, proc.stderr
    counts = dict(
        line.split()[:2]
        for line in proc.stdout.splitlines()
        if line[:1].isalpha() and len(line.split()) == 2 and line.split()[1].isdigit()
    )
    assert counts["train"] == "6" and counts["sweep_summary"] == "1"


@pytest.mark.slow
def test_a_sweep_runs_every_point_and_summarises(tmp_path):
    """Two points of the tiny config: each a full pipeline under its own directory, with the
    swept value in its config; the summary has each point's metrics."""
    config = {**TINY, "training": {**TINY["training"], "steps": 20}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    write(tmp_path / "s.tsv", "reactions.0.rate\n0.2\n1.0\n")
    proc = snakemake(tmp_path, "--configfile", str(tmp_path / "c.yaml"), "--config", "sweep=s.tsv")
    assert proc.returncode == 0, proc.stderr[-5000:]
    frame = pd.read_csv(tmp_path / "results/tiny/sweep/summary.tsv", sep="\t")
    assert frame["reactions.0.rate"].tolist() == [0.2, 1.0]
    for exp, rate in zip(frame["experiment"], ["0.2", "1.0"], strict=True):
        out = tmp_path / "results" / exp
        assert exp == f"tiny/reactions_0_rate~{rate}"
        assert yaml.safe_load((out / "config.yaml").read_text())["reactions"] == [
            f"A + A -> 0 @ {rate}"
        ]
        metrics = json.loads((out / "eval/metrics.json").read_text())
        row = frame[frame["experiment"] == exp].iloc[0]
        expected = metrics["rmse_by_order"]["visible"]["1"]
        assert row["rmse_visible_order1"] == pytest.approx(expected, rel=1e-5)
        assert io.read_dynamics(out / "models/visible/dynamics.h5")["attrs"]["model"] == "visible"
    # faster annihilation: fewer particles at the end of the test trajectories
    ends = [
        io.read_moments(tmp_path / f"results/tiny/reactions_0_rate~{r}/moments/test.h5")["sum"][
            "counts"
        ][:, -1].sum()
        for r in ("0.2", "1.0")
    ]
    assert ends[1] < ends[0]
    assert (tmp_path / "results/tiny/sweep/summary.png").is_file()
