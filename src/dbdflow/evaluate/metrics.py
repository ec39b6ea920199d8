"""Predicted versus simulated moments: the tidy evaluation table and its RMSE summaries.

**Table** (DESIGN.md §5, one row per test IC, time, observable component and model):
``ic, time, observable, component, order, data_mean, data_stderr, model, model_mean,
model_stderr, abs_err`` with abs_err = |model_mean − data_mean|. Observables are the extensive
sums of :mod:`dbdflow.moments.observables`; ``component`` names the species word: ``A`` (counts),
``AB`` (nearest-neighbour pairs), ``A.B`` (pairs at distance 2), ``AAA``/``AAAA`` (strings);
``order`` is the number of sites in the product.

**RMSE** (paper §IV.A, ε(t) = √⟨(μ(t) − μ̃(t))²⟩). For moment order r, the observable
:data:`ORDER_OBSERVABLES` [r] (1: counts, 2: NN pairs, 3: strings of 3, 4: strings of 4; the last
two in 1D only) gives, with I test ICs and C components (species or species pairs),

    ε_r(t) = √( (1/(I·C)) Σ_i Σ_c (μ̃_ic(t) − μ_ic(t))² ),      ε̄_r = (1/T) Σ_t ε_r(t),

the per-time RMSE over ICs (pooled over components) and its average over the T recorded times.
A NaN anywhere (a diverged prediction) makes its ε_r(t) and ε̄_r NaN rather than hiding it.
Per component (``rmse_by_observable``) the same is computed with C = 1, for every observable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ORDER_OBSERVABLES = {1: "counts", 2: "pairs", 3: "strings3", 4: "strings4"}
OBSERVABLE_ORDER = {"counts": 1, "pairs": 2, "pairs_d2": 2, "strings3": 3, "strings4": 4}
COLUMNS = (
    "ic",
    "time",
    "observable",
    "component",
    "order",
    "data_mean",
    "data_stderr",
    "model",
    "model_mean",
    "model_stderr",
    "abs_err",
)


def evaluated_observables(ndim: int) -> tuple[str, ...]:
    """Observables compared on a lattice of ``ndim`` axes (strings2 duplicates pairs)."""
    if ndim == 1:
        return ("counts", "pairs", "pairs_d2", "strings3", "strings4")
    return ("counts", "pairs")


def components(observable: str, species: Sequence[str]) -> list[str]:
    """Component names of an observable in storage order (see the module docstring)."""
    species = list(species)
    pairs = [(a, b) for i, a in enumerate(species) for b in species[i:]]
    if observable == "counts":
        return species
    if observable == "pairs":
        return [a + b for a, b in pairs]
    if observable == "pairs_d2":
        return [f"{a}.{b}" for a, b in pairs]
    if observable in ("strings2", "strings3", "strings4"):
        return [s * int(observable[-1]) for s in species]
    raise ValueError(f"observable must be one of {sorted(OBSERVABLE_ORDER)}, got {observable!r}")


def tidy(
    name: str,
    times: np.ndarray,
    data_mean: Mapping[str, np.ndarray],
    data_stderr: Mapping[str, np.ndarray],
    model_mean: Mapping[str, np.ndarray],
    model_stderr: Mapping[str, np.ndarray] | None,
    species: Sequence[str],
    observables: Sequence[str],
) -> pd.DataFrame:
    """The evaluation table of one model or baseline ``name``; every array is (n_ics, n_times,
    n_components); ``model_stderr`` None means exact predictions (standard error 0)."""
    times = np.asarray(times, dtype=np.float64)
    parts = []
    for obs in observables:
        data = np.asarray(data_mean[obs], dtype=np.float64)
        pred = np.asarray(model_mean[obs], dtype=np.float64)
        labels = components(obs, species)
        shape = (data.shape[0], times.size, len(labels))
        if data.shape != shape or pred.shape != shape:
            raise ValueError(
                f"{name}: observable {obs!r} has data {data.shape} and prediction {pred.shape}, "
                f"expected {shape} (ICs, times, components {labels})"
            )
        error = (
            np.zeros(shape)
            if model_stderr is None
            else np.asarray(model_stderr[obs], dtype=np.float64)
        )
        ic, t, c = np.indices(shape).reshape(3, -1)
        parts.append(
            pd.DataFrame(
                {
                    "ic": ic,
                    "time": times[t],
                    "observable": obs,
                    "component": np.asarray(labels, dtype=object)[c],
                    "order": OBSERVABLE_ORDER[obs],
                    "data_mean": data.ravel(),
                    "data_stderr": np.asarray(data_stderr[obs], dtype=np.float64).ravel(),
                    "model": name,
                    "model_mean": pred.ravel(),
                    "model_stderr": error.ravel(),
                    "abs_err": np.abs(pred - data).ravel(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[list(COLUMNS)]


def _rmse(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """√(mean abs_err²) per group of ``keys``; NaN where any member is NaN."""
    sq = frame.assign(sq=frame["abs_err"] ** 2).groupby(keys, sort=True)["sq"]
    value = np.sqrt(sq.mean())
    return value.where(sq.count() == sq.size())


def summarize(frame: pd.DataFrame) -> dict:
    """RMSE summaries of a table (module docstring) as a JSON-ready dict: ``times``,
    ``rmse_by_order`` {model: {"1": ε̄_1, ...}}, ``rmse_by_order_time`` {model: {"1": [ε_1(t)]}},
    ``rmse_by_observable`` {model: {"pairs_d2[A.A]": ε̄, ...}}."""
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}")
    times = np.unique(frame["time"].to_numpy())
    primary = frame[frame["observable"] == frame["order"].map(ORDER_OBSERVABLES)]
    by_time = _rmse(primary, ["model", "order", "time"])
    out: dict = {
        "times": times.tolist(),
        "rmse_by_order": {},
        "rmse_by_order_time": {},
        "rmse_by_observable": {},
    }
    for (model, order), series in by_time.groupby(level=["model", "order"]):
        values = series.droplevel(["model", "order"]).reindex(times).to_numpy()
        out["rmse_by_order_time"].setdefault(model, {})[str(order)] = values.tolist()
        out["rmse_by_order"].setdefault(model, {})[str(order)] = float(np.mean(values))
    per = _rmse(frame, ["model", "observable", "component", "time"])
    for (model, obs, comp), series in per.groupby(level=["model", "observable", "component"]):
        out["rmse_by_observable"].setdefault(model, {})[f"{obs}[{comp}]"] = float(
            np.mean(series.to_numpy())
        )
    return out


def merge(parts: Sequence[Mapping]) -> dict:
    """One metrics dict from per-model ones: model-keyed sections are united (a model named
    twice is an error), scalar entries must agree (``times``, ``experiment``)."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, Mapping):
                section = out.setdefault(key, {})
                clash = set(section) & set(value)
                if clash:
                    raise ValueError(f"metrics section {key!r}: {sorted(clash)} given twice")
                section.update(value)
            elif key not in out:
                out[key] = value
            elif out[key] != value:
                raise ValueError(f"metrics disagree on {key!r}: {out[key]!r} vs {value!r}")
    return out


def _finite_or_none(value):
    if isinstance(value, Mapping):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(metrics: Mapping, path: str | Path) -> None:
    """Write metrics as strict JSON (NaN and infinities become null), atomically."""
    from dbdflow.io import atomic_path

    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(_finite_or_none(metrics), indent=1, allow_nan=False) + "\n")


def read_json(path: str | Path) -> dict:
    """Metrics written by :func:`write_json` (undefined values are None)."""
    return json.loads(Path(path).read_text())


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write an evaluation table as CSV, atomically (full float precision)."""
    from dbdflow.io import atomic_path

    with atomic_path(path, ".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.17g")


def read_csv(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, na_values=["NaN", "nan", ""])
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not an evaluation table (missing columns {sorted(missing)})")
    return frame
