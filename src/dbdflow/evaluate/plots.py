"""Figures of an evaluation (PNG, matplotlib's object API with the Agg canvas; no pyplot state).

- :func:`moment_trajectories`: data means ± 2 standard errors against every model and baseline
  for a few test ICs (paper Fig. 3a style);
- :func:`rmse_vs_time`: ε_r(t) per moment order r for every model and baseline (Fig. 3c, with the
  order of each panel stated by its observable);
- :func:`theta_trajectories`: θ_k(t) of the training ICs under the learned dynamics (Fig. 3b, 6c);
- :func:`learned_functions`: heat maps of each F_k on slices of its grid with the θ trajectories
  projected on top (Fig. 2, 7);
- 3D systems: :func:`lattice_snapshots` (occupation projected along the last axis) and
  :func:`attractor` (the (μ_A, μ_B, μ_C) trajectory, Fig. 4).

Times are in the simulation's time unit (the unit of the rate constants; one step is Δt);
moments are extensive lattice sums, so their unit is "number of particles / pairs / strings".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dbdflow.evaluate.metrics import ORDER_OBSERVABLES
from dbdflow.io import atomic_path

BASELINE_STYLE = {
    "mean_field": ("tab:gray", ":"),
    "pair": ("tab:brown", "--"),
    "maxent": ("tab:olive", "-."),
}
MODEL_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:cyan")
DPI = 110

_SUM = {
    "counts": r"\sum_i v_i",
    "pairs": r"\sum_i v_i v_{i+1}",
    "pairs_d2": r"\sum_i v_i v_{i+2}",
    "strings3": r"\sum_i v_i v_{i+1} v_{i+2}",
    "strings4": r"\sum_i v_i v_{i+1} v_{i+2} v_{i+3}",
}
_UNIT = {
    "counts": "particles",
    "pairs": "NN pairs",
    "pairs_d2": "pairs at distance 2",
    "strings3": "strings of 3",
    "strings4": "strings of 4",
}


def describe(observable: str, component: str | None = None, n_species: int = 1) -> str:
    """Readable name of an observable: the sum it is (one species) or its species word."""
    if n_species == 1 or component is None:
        return rf"$\langle {_SUM[observable]} \rangle$ ({_UNIT[observable]})"
    words = {"counts": f"{component} particles", "pairs": f"{'-'.join(component)} NN pairs"}
    return words.get(observable, f"{_UNIT[observable]} {component}")


def styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, line style) per model or baseline name: models solid, baselines dashed/dotted."""
    out, k = {}, 0
    for name in names:
        if name in BASELINE_STYLE:
            out[name] = BASELINE_STYLE[name]
        else:
            out[name] = (MODEL_COLOURS[k % len(MODEL_COLOURS)], "-")
            k += 1
    return out


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` through a temporary file renamed on success (DESIGN §5), in the
    format of its extension (PNG without one)."""
    path = Path(path)
    with atomic_path(path, path.suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format=path.suffix[1:] or "png")
    return path


def _order_names(names: Sequence[str]) -> list[str]:
    """Models first (in the given order), then the baselines."""
    return [n for n in names if n not in BASELINE_STYLE] + [n for n in names if n in BASELINE_STYLE]


def moment_trajectories(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    ics: Sequence[int] | None = None,
    max_ics: int = 3,
    time_unit: str = "simulation time units",
) -> Path:
    """Data means with ±2 s.e. bands and each model's/baseline's means for a few test ICs;
    one panel per (IC, observable component)."""
    names = _order_names(list(dict.fromkeys(frame["model"])))
    style = styles(names)
    all_ics = sorted(frame["ic"].unique())
    ics = list(all_ics[:: max(1, len(all_ics) // max_ics)][:max_ics] if ics is None else ics)
    keys = list(dict.fromkeys(zip(frame["observable"], frame["component"], strict=True)))
    n_species = frame.loc[frame["observable"] == "counts", "component"].nunique()
    panels = [(ic, obs, comp) for obs, comp in keys for ic in ics]
    ncols = len(ics) if len(ics) > 1 else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.7 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    groups = frame.groupby(["ic", "observable", "component", "model"], sort=False)
    for ax, (ic, obs, comp) in zip(axes.flat, panels, strict=False):
        first = groups.get_group((ic, obs, comp, names[0])).sort_values("time")
        t = first["time"].to_numpy()
        mean, err = first["data_mean"].to_numpy(), first["data_stderr"].to_numpy()
        ax.fill_between(t, mean - 2 * err, mean + 2 * err, color="0.8", label="data ±2 s.e.")
        ax.plot(t, mean, color="k", lw=1.2, label="data (simulations)")
        for name in names:
            rows = groups.get_group((ic, obs, comp, name)).sort_values("time")
            colour, ls = style[name]
            pred, perr = rows["model_mean"].to_numpy(), rows["model_stderr"].to_numpy()
            if np.any(perr > 0):
                ax.fill_between(t, pred - 2 * perr, pred + 2 * perr, color=colour, alpha=0.2)
            ax.plot(t, pred, color=colour, ls=ls, lw=1.4, label=name)
        ax.set_title(f"test IC {ic}: {describe(obs, comp, n_species)}", fontsize=9)
        ax.set_xlabel(f"time t ({time_unit})", fontsize=8)
        ax.set_ylabel(f"mean ({_UNIT[obs]})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=9)
    fig.suptitle(
        "Moments of held-out test ICs: simulations vs reduced models and closures", fontsize=11
    )
    return _save(fig, path)


def needs_log_scale(curves, ratio: float = 20.0) -> bool:
    """Whether one curve's peak exceeds ``ratio`` times the typical curve level (the median
    over curves of each curve's median): on a linear axis it would flatten the others."""
    medians = [np.median(c) for c in curves if c.size]
    if not medians:
        return False
    peak = max(c.max() for c in curves if c.size)
    return bool(peak > ratio * max(float(np.median(medians)), 1e-300))


def rmse_vs_time(
    metrics: Mapping,
    path: str | Path,
    *,
    n_species: int = 1,
    time_unit: str = "simulation time units",
) -> Path:
    """ε_r(t) (RMSE over test ICs) per moment order, every model and baseline in each panel."""
    per_time = metrics["rmse_by_order_time"]
    names = _order_names(list(per_time))
    style = styles(names)
    times = np.asarray(metrics["times"], dtype=float)
    orders = sorted({int(o) for v in per_time.values() for o in v})
    fig = Figure(figsize=(4.3 * len(orders), 3.6), layout="constrained")
    axes = fig.subplots(1, len(orders), squeeze=False)[0]
    for ax, order in zip(axes, orders, strict=True):
        obs = ORDER_OBSERVABLES[order]
        values = []
        for name in names:
            y = np.asarray(per_time[name].get(str(order), []), dtype=float)
            if y.size:
                colour, ls = style[name]
                ax.plot(times, y, color=colour, ls=ls, lw=1.5, label=name)
                values.append(y[np.isfinite(y)])
        if needs_log_scale(values):
            ax.set_yscale("log")
            ax.set_ylim(bottom=1e-3 * max(v.max() for v in values if v.size))
        else:
            ax.set_ylim(bottom=0.0)
        if n_species == 1:
            title = f"order {order}: {describe(obs)}"
        else:
            pooled = "species" if order == 1 else "species pairs"
            title = f"order {order}: {_UNIT[obs]}\n(RMSE pooled over {pooled})"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"time t ({time_unit})", fontsize=8)
        ax.set_ylabel(f"RMSE over test ICs ({_UNIT[obs]})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(
        r"RMSE $\varepsilon_r(t)=\sqrt{\langle(\tilde\mu_r(t)-\mu_r(t))^2\rangle}$ over test ICs"
        " of reduced models and closures",
        fontsize=11,
    )
    return _save(fig, path)


def theta_trajectories(
    dynamics: Mapping,
    path: str | Path,
    *,
    title: str = "",
    time_unit: str = "simulation time units",
) -> Path:
    """θ_k(t) of the training ICs under the learned dynamics, one panel per parameter, with the
    grid bounds of grid coordinates (beyond them F is extrapolated)."""
    names = list(dynamics["param_names"])
    theta = np.asarray(dynamics["theta"], dtype=float)
    times = np.asarray(dynamics["times"], dtype=float)
    fn = dynamics["functions"][0]
    coords = [int(c) for c in np.atleast_1d(fn["coords"])]
    fig = Figure(figsize=(3.8 * len(names), 3.3), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    colours = _ic_colours(theta.shape[0])
    for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
        for i in range(theta.shape[0]):
            ax.plot(times, theta[i, :, k], color=colours[i], lw=0.9)
        if k in coords:
            a = coords.index(k)
            for bound in (fn["lower"][a], fn["upper"][a]):
                ax.axhline(bound, color="0.5", ls="--", lw=0.8)
        ax.set_title(rf"$\theta$ = {name}", fontsize=9)
        ax.set_xlabel(f"time t ({time_unit})", fontsize=8)
        ax.set_ylabel(f"{name} (dimensionless)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"{title}: parameter trajectories of the {theta.shape[0]} training ICs (colour: IC; "
        "dashed: finite-element grid bounds)",
        fontsize=10,
    )
    return _save(fig, path)


def _ic_colours(n: int):
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0.0, 0.9, max(n, 1)))


def learned_functions(
    dynamics: Mapping, path: str | Path, *, title: str = "", resolution: int = 80
) -> Path:
    """Heat maps of every learned F_k = dθ_k/dt on 2D slices of its grid: the plane of the first
    two grid coordinates at the 10/50/90 % quantiles of the trajectories' third coordinate (d = 3),
    the whole plane (d = 2), or a line plot (d = 1). Training trajectories are projected on top
    (black; gold within half a cell of the slice; dots at t0)."""
    from dbdflow.evaluate.predictions import dynamics_model

    names = list(dynamics["param_names"])
    model, u = dynamics_model(dynamics)
    theta = np.asarray(dynamics["theta"], dtype=float)
    k_rows = len(names)
    d = max(g.d for g in model.grids)
    n_slices = 3 if d >= 3 else 1
    fig = Figure(figsize=(4.0 * n_slices + 0.8, 3.3 * k_rows), layout="constrained")
    axes = fig.subplots(k_rows, n_slices, squeeze=False)
    for k, name in enumerate(names):
        grid, cs, sl = model.grids[k], list(model.coords[k]), model.slices[k]
        coords_theta = theta[..., cs]
        if grid.d == 1:
            ax = axes[k, 0]
            x = np.linspace(grid.lower[0], grid.upper[0], 4 * resolution)
            ax.plot(x, grid.evaluate(u[sl], x[:, None]), color="tab:blue")
            ax.axhline(0.0, color="0.6", lw=0.8)
            ax.set_xlabel(names[cs[0]])
            ax.set_ylabel(f"F = d{name}/dt")
            ax.set_title(f"F for {name}", fontsize=9)
            for other in axes[k, 1:]:
                other.set_visible(False)
            continue
        fixed = _slice_values(grid, coords_theta, n_slices)
        xs = np.linspace(grid.lower[0], grid.upper[0], resolution)
        ys = np.linspace(grid.lower[1], grid.upper[1], resolution)
        mx, my = np.meshgrid(xs, ys, indexing="xy")
        images = []
        for rest in fixed:
            pts = np.column_stack([mx.ravel(), my.ravel(), *(np.full(mx.size, r) for r in rest)])
            images.append(grid.evaluate(u[sl], pts).reshape(mx.shape))
        vmax = max(float(np.nanmax(np.abs(im))) for im in images) or 1.0
        for j, (rest, image) in enumerate(zip(fixed, images, strict=True)):
            ax = axes[k, j]
            mesh = ax.imshow(
                image,
                origin="lower",
                extent=(xs[0], xs[-1], ys[0], ys[-1]),
                aspect="auto",
                cmap="RdBu_r",
                vmin=-vmax,
                vmax=vmax,
                interpolation="nearest",
            )
            _overlay(ax, coords_theta, rest, grid)
            ax.set_xlim(grid.lower[0], grid.upper[0])
            ax.set_ylim(grid.lower[1], grid.upper[1])
            ax.set_xlabel(names[cs[0]], fontsize=8)
            ax.set_ylabel(names[cs[1]], fontsize=8)
            ax.tick_params(labelsize=7)
            where = ", ".join(f"{names[c]} = {r:.3g}" for c, r in zip(cs[2:], rest, strict=True))
            ax.set_title(f"F for {name}" + (f" at {where}" if where else ""), fontsize=9)
        for ax in axes[k, len(fixed) :]:
            ax.set_visible(False)
        cbar = fig.colorbar(mesh, ax=list(axes[k, : len(fixed)]), shrink=0.9)
        cbar.set_label(f"d{name}/dt (per time unit)", fontsize=8)
    fig.suptitle(
        f"{title}: learned dθ/dt = F(θ) on slices of the grid; black: training θ(t) projected "
        "(gold within half a cell of the slice; dots at t0)",
        fontsize=10,
    )
    return _save(fig, path)


def _slice_values(grid, coords_theta, n_slices) -> list[tuple[float, ...]]:
    """Values of grid coordinates 3..d for each slice: the 10/50/90 % quantiles of the
    trajectories (their median and ± one cell where they span less than a cell), in the box."""
    if grid.d == 2:
        return [()]
    values = coords_theta[..., 2:].reshape(-1, grid.d - 2)
    values = values[np.all(np.isfinite(values), axis=1)]
    qs = np.linspace(0.1, 0.9, n_slices)
    if values.size == 0:
        centre = (grid.lower[2:] + grid.upper[2:]) / 2
        return [tuple(centre)] * n_slices
    picked = np.quantile(values, qs, axis=0)
    narrow = picked[-1] - picked[0] < grid.spacing[2:]  # trajectories within one cell: the
    offsets = np.linspace(-1.0, 1.0, n_slices)[:, None] * grid.spacing[2:]  # median ± a cell
    picked = np.where(narrow, np.median(values, axis=0) + offsets, picked)
    picked = np.clip(picked, grid.lower[2:], grid.upper[2:])
    return [tuple(float(v) for v in row) for row in picked]


def _overlay(ax, coords_theta, rest, grid) -> None:
    """Projected trajectories (thin black), gold where the other coordinates lie within half a
    cell of the slice, gold dots at t0."""
    near_tol = grid.spacing[2:] / 2 if grid.d > 2 else np.zeros(0)
    for traj in coords_theta:
        ax.plot(traj[:, 0], traj[:, 1], color="k", lw=0.7, alpha=0.7)
        if grid.d > 2:
            near = np.all(np.abs(traj[:, 2:] - np.asarray(rest)) <= near_tol, axis=1)
            masked = np.where(near[:, None], traj[:, :2], np.nan)
            ax.plot(masked[:, 0], masked[:, 1], color="gold", lw=2.0)
        ax.plot(traj[0, 0], traj[0, 1], "o", color="gold", ms=3.5, mec="k", mew=0.5)


def attractor(
    frame: pd.DataFrame, path: str | Path, *, ic: int = 0, species: Sequence[str] = ("A", "B", "C")
) -> Path:
    """The trajectory of the mean counts (μ_A, μ_B, μ_C) of one test IC: data and every model
    and baseline (paper Fig. 4)."""
    counts = frame[(frame["observable"] == "counts") & (frame["ic"] == ic)]
    names = _order_names(list(dict.fromkeys(counts["model"])))
    style = styles(names)
    species = list(species)[:3]
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d")

    def curve(name, column):
        rows = counts[counts["model"] == name]
        return [
            rows[rows["component"] == s].sort_values("time")[column].to_numpy() for s in species
        ]

    data = curve(names[0], "data_mean")
    ax.plot(*data, color="k", lw=1.6, label="data (simulations)")
    ax.scatter(*(c[:1] for c in data), color="k", s=25, label="start (t0)")
    for name in names:
        colour, ls = style[name]
        ax.plot(*curve(name, "model_mean"), color=colour, ls=ls, lw=1.3, label=name)
    for setter, s in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), species, strict=False):
        setter(rf"$\mu_{{{s}}}$ ({s} particles)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=8)
    ax.set_title(f"Mean counts of test IC {ic} in species space", fontsize=10)
    return _save(fig, path)


def lattice_snapshots(
    states: np.ndarray,
    times: np.ndarray,
    shape: Sequence[int],
    species: Sequence[str],
    path: str | Path,
    *,
    steps: Sequence[int] | None = None,
) -> Path:
    """Particles of each species summed along the lattice's last axis, for one trajectory
    ``states`` (n_times, n_sites) at a few recorded ``steps`` (rows) and species (columns)."""
    states = np.asarray(states)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"lattice snapshots need a 2D or 3D lattice, got shape {shape}")
    n = states.shape[0]
    steps = list(dict.fromkeys([0, n // 2, n - 1] if steps is None else steps))
    fig = Figure(figsize=(3.3 * len(species) + 0.6, 3.0 * len(steps)), layout="constrained")
    axes = fig.subplots(len(steps), len(species), squeeze=False)
    depth = shape[-1] if len(shape) == 3 else 1
    for r, step in enumerate(steps):
        lattice = states[step].reshape(shape)
        for c, name in enumerate(species):
            occupied = (lattice == c + 1).astype(int)
            image = occupied.sum(axis=-1) if len(shape) == 3 else occupied
            mesh = axes[r, c].imshow(
                image.T, origin="lower", cmap="magma", vmin=0, vmax=depth, interpolation="nearest"
            )
            axes[r, c].set_title(
                f"{name}, t = {times[step]:.3g} ({int(occupied.sum())} particles)", fontsize=9
            )
            axes[r, c].set_xlabel("x (sites)", fontsize=8)
            axes[r, c].set_ylabel("y (sites)", fontsize=8)
            axes[r, c].tick_params(labelsize=7)
        label = "particles along z" if len(shape) == 3 else "occupied"
        fig.colorbar(mesh, ax=list(axes[r]), shrink=0.85).set_label(label, fontsize=8)
    fig.suptitle("One simulated trajectory: occupation projected along z", fontsize=10)
    return _save(fig, path)
