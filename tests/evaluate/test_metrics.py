"""The evaluation table and its RMSE summaries against hand-computed values."""

import json
import math

import numpy as np
import pytest

from dbdflow.evaluate import metrics

TIMES = np.array([0.0, 0.5, 1.0])


def one_species_data():
    """Data means of 2 ICs × 3 times for the 1D observables (one component each)."""
    rng = np.random.default_rng(3)
    names = metrics.evaluated_observables(1)
    mean = {k: rng.uniform(5, 50, (2, 3, 1)) for k in names}
    err = {k: rng.uniform(0.1, 1, (2, 3, 1)) for k in names}
    return names, mean, err


def test_rmse_by_order_matches_hand_computation_and_ignores_distance_two_pairs():
    names, mean, err = one_species_data()
    # prediction errors per observable: IC 0 and IC 1 at the three times
    offsets = {
        "counts": [[1, 0, 2], [3, 0, -2]],
        "pairs": [[0, 1, 1], [0, -1, 1]],
        "pairs_d2": [[100, 100, 100], [100, 100, 100]],  # not an order-2 RMSE input
        "strings3": [[2, 2, 2], [0, 0, 0]],
        "strings4": [[0, 0, 4], [0, 0, 0]],
    }
    pred = {k: mean[k] + np.array(offsets[k], dtype=float)[..., None] for k in names}
    frame = metrics.tidy("m", TIMES, mean, err, pred, None, ["A"], names)
    assert list(frame.columns) == list(metrics.COLUMNS)
    assert len(frame) == 5 * 2 * 3
    assert set(frame.loc[frame.observable == "pairs_d2", "order"]) == {2}
    np.testing.assert_allclose(frame["abs_err"], np.abs(frame["model_mean"] - frame["data_mean"]))
    assert (frame["model_stderr"] == 0).all()
    out = metrics.summarize(frame)
    expected_time = {
        "1": [math.sqrt(5), 0.0, 2.0],  # √((1+9)/2), 0, √((4+4)/2)
        "2": [0.0, 1.0, 1.0],
        "3": [math.sqrt(2)] * 3,
        "4": [0.0, 0.0, math.sqrt(8)],
    }
    assert out["times"] == TIMES.tolist()
    for order, values in expected_time.items():
        np.testing.assert_allclose(out["rmse_by_order_time"]["m"][order], values, atol=1e-12)
        np.testing.assert_allclose(out["rmse_by_order"]["m"][order], np.mean(values), atol=1e-12)
    assert out["rmse_by_observable"]["m"]["pairs_d2[A.A]"] == pytest.approx(100.0)
    assert out["rmse_by_observable"]["m"]["counts[A]"] == pytest.approx(
        np.mean([math.sqrt(5), 0.0, 2.0])
    )


def test_components_are_pooled_per_order_on_multispecies_lattices():
    species = ["A", "B"]
    names = metrics.evaluated_observables(3)
    assert names == ("counts", "pairs")
    assert metrics.components("pairs", species) == ["AA", "AB", "BB"]
    mean = {"counts": np.zeros((1, 3, 2)), "pairs": np.zeros((1, 3, 3))}
    pred = {
        "counts": np.array([[[3.0, 4.0]] * 3]),  # RMSE over components: √((9+16)/2)
        "pairs": np.array([[[1.0, 1.0, 1.0]] * 3]),
    }
    err = {k: np.ones_like(v) for k, v in mean.items()}
    stderr = {k: np.full_like(v, 0.5) for k, v in pred.items()}
    frame = metrics.tidy("rbm", TIMES, mean, err, pred, stderr, species, names)
    assert (frame["model_stderr"] == 0.5).all()
    out = metrics.summarize(frame)
    assert set(out["rmse_by_order"]["rbm"]) == {"1", "2"}
    assert out["rmse_by_order"]["rbm"]["1"] == pytest.approx(math.sqrt(12.5))
    assert out["rmse_by_order"]["rbm"]["2"] == pytest.approx(1.0)
    assert out["rmse_by_observable"]["rbm"]["counts[B]"] == pytest.approx(4.0)


def test_a_diverged_prediction_makes_its_rmse_undefined_not_smaller(tmp_path):
    names, mean, err = one_species_data()
    pred = {k: v.copy() for k, v in mean.items()}
    pred["counts"][1, 2, 0] = np.nan
    out = metrics.summarize(metrics.tidy("m", TIMES, mean, err, pred, None, ["A"], names))
    assert out["rmse_by_order_time"]["m"]["1"][:2] == [0.0, 0.0]
    assert math.isnan(out["rmse_by_order_time"]["m"]["1"][2])
    assert math.isnan(out["rmse_by_order"]["m"]["1"])
    assert out["rmse_by_order"]["m"]["2"] == 0.0
    path = tmp_path / "m.json"
    metrics.write_json(out, path)
    back = json.loads(path.read_text())  # strict JSON: NaN became null
    assert back["rmse_by_order"]["m"]["1"] is None
    assert back["rmse_by_order_time"]["m"]["1"][2] is None


def test_tidy_rejects_mismatched_shapes():
    names, mean, err = one_species_data()
    pred = {k: v[:, :2] for k, v in mean.items()}
    with pytest.raises(ValueError, match="counts"):
        metrics.tidy("m", TIMES, mean, err, pred, None, ["A"], names)
    with pytest.raises(ValueError, match="observable must be one of"):
        metrics.components("volume", ["A"])


def test_csv_round_trip_and_merge(tmp_path):
    names, mean, err = one_species_data()
    frames, parts = [], []
    for name, shift in (("visible", 1.0), ("pair", 2.0)):
        pred = {k: v + shift for k, v in mean.items()}
        frame = metrics.tidy(name, TIMES, mean, err, pred, None, ["NA"], names)
        metrics.write_csv(frame, tmp_path / f"{name}.csv")
        back = metrics.read_csv(tmp_path / f"{name}.csv")
        assert back["component"].iloc[0] == "NA"  # a species named NA is not a missing value
        np.testing.assert_array_equal(back["model_mean"], frame["model_mean"])
        frames.append(back)
        parts.append({"experiment": "x", **metrics.summarize(back)})
    merged = metrics.merge(parts)
    assert set(merged["rmse_by_order"]) == {"visible", "pair"}
    assert merged["rmse_by_order"]["pair"]["3"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="given twice"):
        metrics.merge([parts[0], parts[0]])
    with pytest.raises(ValueError, match="disagree"):
        metrics.merge([parts[0], {**parts[1], "experiment": "y"}])
    with pytest.raises(ValueError, match="not an evaluation table"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        metrics.read_csv(tmp_path / "bad.csv")
