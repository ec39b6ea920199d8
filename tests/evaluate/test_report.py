"""report.md: the metrics tables, figure list and a complete 3D report."""

import numpy as np
import pytest
from synthetic import synthetic_dynamics, synthetic_frame

from dbdflow.evaluate import figure_files, metrics, report

METRICS = {
    "rmse_by_order": {
        "visible": {"1": 2.0, "2": 3.0, "3": 1.5, "4": 0.9},
        "hidden": {"1": 2.5, "2": 1.0, "3": 1.2, "4": None},
        "pair": {"1": 1.0, "2": 4.0, "3": 5.0, "4": 6.0},
    },
    "kl_per_site": {"visible": 0.0125, "hidden": 0.0031},
    "kl_points": {"visible": 51, "hidden": 51},
}


def test_metrics_table_lists_models_then_baselines_and_bolds_the_best():
    lines = report.metrics_table(METRICS).splitlines()
    assert lines[0].startswith("| model | kind | order 1: counts")
    assert "order 4: strings" in lines[0] and lines[1] == "|---|---|---:|---:|---:|---:|"
    assert lines[2] == "| visible | DBD model | 2 | 3 | 1.5 | **0.9** |"
    assert lines[3] == "| hidden | DBD model | 2.5 | **1** | **1.2** | n/a |"
    assert lines[4] == "| pair | closure baseline | **1** | 4 | 5 | 6 |"
    kl = report.kl_table(METRICS).splitlines()
    assert kl[2] == "| visible | 0.0125 | 51 |" and kl[3] == "| hidden | 0.0031 | 51 |"
    assert report.kl_table({"rmse_by_order": {}}) == ""


def test_figure_files_depend_on_dimension_species_and_stored_lattices():
    one = figure_files(["visible", "hidden"], 1, 1, True)
    assert list(one) == [
        "trajectories",
        "rmse",
        "theta_visible",
        "F_visible",
        "theta_hidden",
        "F_hidden",
    ]
    three = figure_files(["rbm"], 3, 3, True)
    assert three["snapshots"] == "snapshots.png" and three["attractor"] == "attractor.png"
    assert "snapshots" not in figure_files(["rbm"], 3, 3, False)


def test_a_complete_3d_report(tmp_path):
    frame = synthetic_frame(["A", "B", "C"], 3, 1, ["rbm", "mean_field", "pair"])
    summary_metrics = {"experiment": "x", **metrics.summarize(frame)}
    rng = np.random.default_rng(2)
    snapshot = {
        "states": rng.integers(0, 4, (3, 4 * 4 * 4)).astype(np.int8),
        "times": np.array([0.0, 0.5, 1.0]),
    }
    summary = {
        "experiment": "x",
        "lattice": {"shape": [4, 4, 4], "boundary": "reflecting"},
        "species": ["A", "B", "C"],
        "reactions": ["A -> 2A @ 30", "A + B -> 2B @ 0.4"],
        "dt": 0.01,
        "n_steps": 10,
        "record_every": 1,
        "splits": {"train": {"n_ics": 1, "trajectories": 3}, "test": {"n_ics": 1}},
    }
    written = report.write_report(
        tmp_path,
        summary=summary,
        metrics=summary_metrics,
        frame=frame,
        dynamics={"rbm": synthetic_dynamics(3, name="rbm")},
        snapshot=snapshot,
    )
    names = figure_files(["rbm"], 3, 3, True)
    assert sorted(p.name for p in written) == sorted([*names.values(), "report.md"])
    assert all(p.stat().st_size > 1000 for p in written if p.suffix == ".png")
    text = (tmp_path / "report.md").read_text()
    assert "# dbdflow report: x" in text and "4 × 4 × 4 (reflecting)" in text
    table = report.metrics_table(summary_metrics, n_species=3)
    assert table in text and "order 2: NN pairs (all species pairs)" in table
    assert "order 3" not in table  # 3D: counts and pairs only
    for name in names.values():
        assert f"]({name})" in text
    assert "KL" not in text


def test_a_failure_while_writing_report_md_leaves_no_file_behind(tmp_path, monkeypatch):
    frame = synthetic_frame(["A"], 1, 2, ["visible", "mean_field", "pair"])
    summary = {
        "experiment": "x",
        "lattice": {"shape": [20], "boundary": "periodic"},
        "species": ["A"],
        "reactions": ["A + A -> 0 @ 0.1"],
        "dt": 0.01,
        "n_steps": 10,
        "record_every": 1,
        "splits": {"train": {"n_ics": 2, "trajectories": 3}, "test": {"n_ics": 2}},
    }
    kwargs = dict(
        summary=summary,
        metrics={"experiment": "x", **metrics.summarize(frame)},
        frame=frame,
        dynamics={"visible": synthetic_dynamics(3, name="visible")},
    )

    def fail(*args):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "_markdown", fail)
    with pytest.raises(RuntimeError, match="render failed"):
        report.write_report(tmp_path, **kwargs)
    figures = set(figure_files(["visible"], 1, 1, False).values())
    assert {p.name for p in tmp_path.iterdir()} == figures  # no report.md, no temp file
    monkeypatch.undo()
    written = report.write_report(tmp_path, **kwargs)
    names = {*figures, "report.md"}
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in written} == names
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# dbdflow report: x")
