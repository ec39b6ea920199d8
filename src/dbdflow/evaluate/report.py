"""The evaluation report: figures (:mod:`.plots`) and ``report.md`` with the metrics tables.

:func:`figure_files` is the single list of figure names (the Snakemake rule declares exactly these
as outputs); :func:`write_report` draws them and writes ``report.md`` beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dbdflow.config import BASELINE_NAMES
from dbdflow.evaluate import plots
from dbdflow.evaluate.metrics import ORDER_OBSERVABLES
from dbdflow.io import atomic_path

ORDER_HEADERS = {
    1: "order 1: counts Σv_i",
    2: "order 2: NN pairs Σv_i v_{i+1}",
    3: "order 3: strings Σv_i v_{i+1} v_{i+2}",
    4: "order 4: strings Σv_i v_{i+1} v_{i+2} v_{i+3}",
}
MULTI_HEADERS = {1: "order 1: counts (all species)", 2: "order 2: NN pairs (all species pairs)"}


def figure_files(models: Sequence[str], ndim: int, n_species: int, states: bool) -> dict[str, str]:
    """Figure key → file name (in the report directory) for an experiment's report."""
    files = {"trajectories": "trajectories.png", "rmse": "rmse.png"}
    for name in models:
        files[f"theta_{name}"] = f"theta_{name}.png"
        files[f"F_{name}"] = f"F_{name}.png"
    if ndim >= 2 and states:
        files["snapshots"] = "snapshots.png"
    if n_species >= 3:
        files["attractor"] = "attractor.png"
    return files


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4g}"


def metrics_table(
    metrics: Mapping, baselines: Sequence[str] = BASELINE_NAMES, n_species: int = 1
) -> str:
    """Markdown table of the time-averaged RMSE per order (rows: models, then baselines; the
    smallest of each column in bold); several species pool counts over species and pairs over
    species pairs."""
    table = metrics["rmse_by_order"]
    names = [n for n in table if n not in baselines] + [n for n in table if n in baselines]
    orders = sorted({int(o) for v in table.values() for o in v})
    best = {}
    for order in orders:
        values = [table[n].get(str(order)) for n in names]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        best[order] = min(finite) if finite else None
    headers = ORDER_HEADERS if n_species == 1 else MULTI_HEADERS
    lines = [
        "| model | kind | " + " | ".join(headers[o] for o in orders) + " |",
        "|---|---|" + "---:|" * len(orders),
    ]
    for name in names:
        cells = []
        for order in orders:
            value = table[name].get(str(order))
            text = _fmt(value)
            cells.append(f"**{text}**" if value is not None and value == best[order] else text)
        kind = "closure baseline" if name in baselines else "DBD model"
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kl_table(metrics: Mapping) -> str:
    """Markdown table of the KL divergence per site (empty string if none was computed)."""
    kl = metrics.get("kl_per_site") or {}
    if not kl:
        return ""
    points = metrics.get("kl_points", {})
    lines = ["| model | mean KL per site (nats) | points |", "|---|---:|---:|"]
    for name, value in kl.items():
        lines.append(f"| {name} | {_fmt(value)} | {points.get(name, 'n/a')} |")
    return "\n".join(lines)


def write_report(
    out_dir: str | Path,
    *,
    summary: Mapping,
    metrics: Mapping,
    frame: pd.DataFrame,
    dynamics: Mapping[str, Mapping],
    snapshot: Mapping | None = None,
) -> list[Path]:
    """Draw every figure of :func:`figure_files` into ``out_dir`` and write ``report.md``.

    ``summary``: experiment facts (experiment, lattice shape and boundary, species, reactions,
    dt, n_steps, record_every, splits); ``frame``: the evaluation tables of every model and
    baseline; ``dynamics``: model name → dynamics file contents; ``snapshot``: one trajectory's
    ``states`` (n_times, n_sites) and ``times`` for lattice pictures (2D/3D), or None.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    species = list(summary["species"])
    shape = list(summary["lattice"]["shape"])
    files = figure_files(list(dynamics), len(shape), len(species), snapshot is not None)
    unit = f"simulation time units, Δt = {summary['dt']:g} per step"
    written = [
        plots.moment_trajectories(frame, out / files["trajectories"], time_unit=unit),
        plots.rmse_vs_time(metrics, out / files["rmse"], n_species=len(species), time_unit=unit),
    ]
    for name, dyn in dynamics.items():
        written.append(
            plots.theta_trajectories(dyn, out / files[f"theta_{name}"], title=name, time_unit=unit)
        )
        written.append(plots.learned_functions(dyn, out / files[f"F_{name}"], title=name))
    if "snapshots" in files:
        written.append(
            plots.lattice_snapshots(
                snapshot["states"], snapshot["times"], shape, species, out / files["snapshots"]
            )
        )
    if "attractor" in files:
        written.append(plots.attractor(frame, out / files["attractor"], species=species))
    with atomic_path(out / "report.md", ".md") as tmp:
        tmp.write_text(_markdown(summary, metrics, frame, dynamics, files), encoding="utf-8")
    return [*written, out / "report.md"]


def _markdown(summary, metrics, frame, dynamics, files) -> str:
    lat = summary["lattice"]
    splits = summary["splits"]
    n_test = frame["ic"].nunique()
    orders = sorted({int(o) for v in metrics["rmse_by_order"].values() for o in v})
    order_list = ", ".join(f"{o} = {ORDER_OBSERVABLES[o]}" for o in orders)
    lines = [
        f"# dbdflow report: {summary['experiment']}",
        "",
        f"Lattice {' × '.join(map(str, lat['shape']))} ({lat['boundary']}), species "
        f"{', '.join(summary['species'])}, reactions: {'; '.join(summary['reactions'])}. "
        f"Δt = {summary['dt']:g}, {summary['n_steps']} steps (recorded every "
        f"{summary['record_every']}). Training ICs: {splits['train']['n_ics']} × "
        f"{splits['train']['trajectories']} trajectories; test ICs: {n_test} (independent "
        "seeds).",
        "",
        "## Accuracy on the held-out test ICs",
        "",
        "Time-averaged RMSE over test ICs, ε̄_r = mean over recorded times t of "
        "√(mean over ICs and components of (μ̃(t) − μ(t))²), for moment orders "
        f"{order_list}. Moments are extensive lattice sums (numbers of particles, pairs, "
        "strings); smaller is better, the best of each column is bold. DBD models start from "
        "θ(t0) fitted to each test IC's data at t0 and follow the learned dynamics; the closure "
        "baselines start from the same ICs' measured moments at t0.",
        "",
        metrics_table(metrics, n_species=len(summary["species"])),
        "",
    ]
    kl = kl_table(metrics)
    if kl:
        lines += [
            "KL(p₁ ‖ p_model) per site, p₁ the maximum-entropy visible chain (b, J, K) that "
            "matches the test data's counts, NN pairs and strings of three at each time, averaged "
            "over test ICs and the evaluated times (exact, transfer matrices):",
            "",
            kl,
            "",
        ]
    notes = [
        f"- {name}: {value} right-hand-side evaluations outside the learned grid (extrapolated)"
        for name, value in (metrics.get("outside_evaluations") or {}).items()
        if value
    ]
    if notes:
        lines += ["Test trajectories that left a grid:", "", *notes, ""]
    captions = {
        "trajectories": "Data (black, grey band ±2 standard errors of the mean over "
        "trajectories) versus the reduced models (solid) and closures (dashed/dotted) for "
        "a few test ICs.",
        "rmse": "RMSE over test ICs versus time, one panel per moment order.",
        "snapshots": "A simulated lattice, occupation summed along the last axis.",
        "attractor": "Mean counts of a test IC in species space: data versus models.",
    }
    lines += ["## Figures", ""]
    for key, name in files.items():
        if key.startswith("theta_"):
            caption = f"θ(t) of the training ICs under the learned dynamics of {key[6:]}."
        elif key.startswith("F_"):
            caption = f"Learned F of {key[2:]} on slices of its grid, training θ(t) on top."
        else:
            caption = captions[key]
        lines += [f"![{key}]({name})", "", caption, ""]
    lines += ["## Training", ""]
    for name, dyn in dynamics.items():
        log = dyn.get("log", {})
        loss = np.asarray(log.get("loss", []), dtype=float)
        last = _fmt(float(loss[-1])) if loss.size else "n/a"
        excursions = int(np.sum(dyn.get("excursions", 0)))
        lines.append(
            f"- {name} ({dyn['attrs'].get('family', '?')}): {dyn['attrs'].get('steps', '?')} "
            f"steps, final loss {last}, {excursions} grid excursions during training"
        )
    return "\n".join(lines) + "\n"
