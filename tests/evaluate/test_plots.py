"""Every figure renders to a non-blank PNG for 1D and 3D evaluations."""

import numpy as np
import pytest
from matplotlib.image import imread
from synthetic import synthetic_dynamics, synthetic_frame

from dbdflow.evaluate import metrics, plots


@pytest.fixture(scope="module")
def frame_1d():
    return synthetic_frame(["A"], 1, 3, ["visible", "hidden", "mean_field", "pair"])


@pytest.fixture(scope="module")
def frame_3d():
    return synthetic_frame(["A", "B", "C"], 3, 1, ["sampled", "mean_field", "pair"])


def assert_png(path, min_width=300):
    image = imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_moment_trajectories_and_rmse_1d(tmp_path, frame_1d):
    assert_png(plots.moment_trajectories(frame_1d, tmp_path / "traj.png", max_ics=2))
    assert_png(plots.rmse_vs_time(metrics.summarize(frame_1d), tmp_path / "rmse.png"))


def test_moment_trajectories_rmse_and_attractor_3d(tmp_path, frame_3d):
    assert_png(plots.moment_trajectories(frame_3d, tmp_path / "traj.png"))
    summary = metrics.summarize(frame_3d)
    assert_png(plots.rmse_vs_time(summary, tmp_path / "rmse.png", n_species=3))
    assert_png(plots.attractor(frame_3d, tmp_path / "attractor.png"))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_learned_functions_and_theta_on_grids_of_any_dimension(tmp_path, d):
    dyn = synthetic_dynamics(d)
    assert_png(plots.learned_functions(dyn, tmp_path / "F.png", title="m", resolution=30))
    assert_png(plots.theta_trajectories(dyn, tmp_path / "theta.png", title="m"))


def test_lattice_snapshots(tmp_path):
    rng = np.random.default_rng(1)
    states = rng.integers(0, 4, (5, 6 * 5 * 4)).astype(np.int8)
    path = plots.lattice_snapshots(states, np.arange(5) * 0.1, (6, 5, 4), "ABC", tmp_path / "s.png")
    assert_png(path)
    with pytest.raises(ValueError, match="2D or 3D"):
        plots.lattice_snapshots(states, np.arange(5), (120,), "ABC", tmp_path / "x.png")


def test_styles_keep_baselines_recognisable():
    style = plots.styles(["hidden", "pair", "visible", "mean_field"])
    assert style["hidden"][1] == style["visible"][1] == "-"
    assert style["hidden"][0] != style["visible"][0]
    assert style["pair"][1] != "-" and style["mean_field"][1] != "-"
    assert "v_i v_{i+1} v_{i+2}" in plots.describe("strings3")
    assert plots.describe("pairs", "AB", n_species=3) == "A-B NN pairs"


def test_a_failed_savefig_leaves_neither_the_figure_nor_a_temp_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def half_written(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError("disk full")

    out = tmp_path / "report"
    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        plots.theta_trajectories(synthetic_dynamics(2), out / "theta.png", title="m")
    assert list(out.iterdir()) == []  # no theta.png, no .theta.png.*.png
    monkeypatch.undo()
    assert_png(plots.theta_trajectories(synthetic_dynamics(2), out / "theta.png", title="m"))
    assert [p.name for p in out.iterdir()] == ["theta.png"]


def test_log_scale_when_one_curve_would_flatten_the_others():
    flat = [np.full(10, 2.0), np.full(10, 3.0), np.full(10, 2.5)]
    assert not plots.needs_log_scale(flat)
    assert not plots.needs_log_scale([*flat, np.full(10, 40.0)])  # 16x the typical 2.5
    assert plots.needs_log_scale([*flat, np.linspace(1.0, 70.0, 10)])  # peak 28x
    assert not plots.needs_log_scale([np.array([]), np.array([])])
