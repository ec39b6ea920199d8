"""Synthetic evaluation inputs (tables, dynamics) shared by the plot and report tests."""

import numpy as np
import pandas as pd

from dbdflow.dynamics import HermiteGrid
from dbdflow.evaluate import metrics


def synthetic_frame(species, ndim, n_ics, names, seed=0):
    """An evaluation table: decaying data means with standard errors, models slightly off."""
    rng = np.random.default_rng(seed)
    times = np.linspace(0.0, 1.0, 11)
    observables = metrics.evaluated_observables(ndim)
    frames = []
    for k, name in enumerate(names):
        mean, err, pred = {}, {}, {}
        for obs in observables:
            n_comp = len(metrics.components(obs, species))
            base = np.linspace(40, 10, times.size)[None, :, None] / metrics.OBSERVABLE_ORDER[obs]
            local = np.random.default_rng(seed + 1)  # the same data for every name
            mean[obs] = base * local.uniform(0.8, 1.2, (n_ics, 1, n_comp))
            err[obs] = 0.05 * mean[obs] + 0.1
            pred[obs] = mean[obs] * (1 + 0.05 * (k + 1) * rng.standard_normal(mean[obs].shape))
        stderr = {o: 0.02 * pred[o] for o in observables} if name == "sampled" else None
        frames.append(metrics.tidy(name, times, mean, err, pred, stderr, species, observables))
    return pd.concat(frames, ignore_index=True)


def synthetic_dynamics(d, n_ics=4, name="m"):
    """A dynamics file's contents: K = 3 parameters, F_k on a d-dimensional grid over the first d
    parameters, θ(t) straight lines."""
    grid = HermiteGrid(np.full(d, -1.0), np.full(d, 1.0), np.full(d, 3))
    rng = np.random.default_rng(d)
    times = np.linspace(0, 1, 11)
    theta0 = rng.uniform(-0.8, 0.8, (n_ics, 3))
    theta = theta0[:, None, :] + times[None, :, None] * rng.uniform(-0.3, 0.3, (n_ics, 1, 3))
    fns = [
        {
            "u": rng.standard_normal(grid.n_coeffs),
            "coords": np.arange(d),
            "lower": grid.lower,
            "upper": grid.upper,
            "n_cells": grid.n_cells,
        }
        for _ in range(3)
    ]
    return {
        "functions": fns,
        "param_names": ("b_A", "W_AX", "b_X"),
        "times": times,
        "theta": theta,
        "theta0": theta0,
        "excursions": np.zeros(3, dtype=np.int64),
        "log": {"loss": np.array([2.0, 1.0])},
        "attrs": {"model": name, "family": "chain_rbm", "steps": 2, "dt": 0.1},
    }
