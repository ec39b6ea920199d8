"""Parameter sweeps: one experiment per row of a table of config overrides.

A sweep table (``config/sweeps/<name>.tsv``, tab-separated, ``#`` comments) has one column per
swept config key and one row per point. A column name is a dotted path into the config
(``dt``, ``training.learning_rate``, ``models.visible.dynamics.spacing``, ``splits.train.n_ics``;
list items by index, ``lattice.shape.0``), or ``reactions.<i>.rate`` for the rate or probability
after ``@`` in reaction i. Cells are YAML scalars (numbers, booleans, words) made of the characters
``A-Za-z0-9_.+-``, since they name the point's results directory.

Snakemake's :class:`~snakemake.utils.Paramspace` names the points: the experiment ``{base}`` with
the table becomes the experiments ``{base}/{col}~{value}/...`` (one directory level per column,
dots in the column name written as ``_``, e.g. ``reactions_0_rate~0.1``), each a complete pipeline
run under ``results/{base}/{col}~{value}/...``, and the sweep's summary table
(:func:`summary`) compares their metrics. Every point keeps the config's seed unless ``seed`` is a
column, so points differ only in the swept values (common random numbers).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import yaml

from dbdflow.config import ConfigError, from_dict

SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
RATE = re.compile(r"^reactions\.(\d+)\.rate$")


def read_table(path: str | Path) -> pd.DataFrame:
    """The sweep table as strings, checked: at least one row and column, column names are
    config paths, cells are path-safe, no duplicate rows."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep table not found")
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    if table.empty or not len(table.columns):
        raise ConfigError(f"{path}: the sweep table needs a header and at least one row")
    for col in table.columns:
        if not COLUMN.match(col):
            raise ConfigError(
                f"{path}: column {col!r} is not a config path (dotted keys, e.g. "
                "training.learning_rate or reactions.0.rate)"
            )
    for row, values in table.iterrows():
        for col, value in values.items():
            if not SAFE_VALUE.match(value.strip()):
                raise ConfigError(
                    f"{path}: row {row + 1}, column {col}: {value!r} must be a scalar made of "
                    "A-Za-z0-9_.+- (it names the point's results directory)"
                )
    table = table.apply(lambda c: c.str.strip())
    if table.duplicated().any():
        raise ConfigError(f"{path}: row {int(table.duplicated().idxmax()) + 1} repeats a point")
    return table


def override(config: Mapping, column: str, value: str, source: str = "sweep") -> dict:
    """A deep copy of ``config`` with the key ``column`` set to the YAML scalar ``value``."""
    out = copy.deepcopy(dict(config))
    parsed = yaml.safe_load(value)
    rate = RATE.match(column)
    if rate:
        i, reactions = int(rate.group(1)), out.get("reactions", [])
        if i >= len(reactions):
            raise ConfigError(f"{source}: column {column}: there are {len(reactions)} reactions")
        if isinstance(parsed, bool) or not isinstance(parsed, int | float):
            raise ConfigError(f"{source}: column {column}: rate {value!r} is not a number")
        lhs = str(reactions[i]).rsplit("@", 1)[0].rstrip()
        reactions[i] = f"{lhs} @ {parsed}"
        return out
    keys = column.split(".")
    node = out
    for depth, key in enumerate(keys):
        where = ".".join(keys[:depth]) or "the top level"
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(
                    f"{source}: column {column}: {where} is a list of {len(node)}; "
                    f"{key!r} is not an index of it"
                )
            key = int(key)
        elif isinstance(node, dict):
            if key not in node:
                raise ConfigError(
                    f"{source}: column {column}: {key!r} is not a key of {where} "
                    f"(allowed: {', '.join(map(str, node)) or 'none'})"
                )
        else:
            raise ConfigError(f"{source}: column {column}: {where} is a value, not a section")
        if last:
            if isinstance(node[key], dict | list):
                raise ConfigError(f"{source}: column {column} is a section; name one of its keys")
            node[key] = parsed
        else:
            node = node[key]
    return out


def points(config: Mapping, table_path: str | Path) -> dict[str, dict]:
    """``{base}/{pattern}`` → the point's config (validated), in table order. ``config`` is the
    sweep's base config (its ``sweep`` key is dropped from the points)."""
    from snakemake.utils import Paramspace

    table = read_table(table_path)
    base = {k: v for k, v in config.items() if k != "sweep"}
    # Paramspace names wildcards by column, so the names must be identifiers: dots become "_"
    space = Paramspace(table.rename(columns=lambda c: c.replace(".", "_")), param_sep="~")
    out = {}
    for (row, values), pattern in zip(table.iterrows(), space.instance_patterns, strict=True):
        point = base
        for col, value in values.items():
            point = override(point, col, value, f"{table_path}: row {row + 1}")
        try:
            from_dict(point, source=f"{table_path}: row {row + 1}")
        except ConfigError as err:
            raise ConfigError(str(err)) from None
        out[f"{base['experiment']}/{pattern}"] = point
    return out


def summary(table: pd.DataFrame, exps: Sequence[str], metrics_files: Sequence, out) -> pd.DataFrame:
    """One row per sweep point: its swept values, then the time-averaged test RMSE of every model
    and baseline per moment order (``rmse_<name>_order<k>``) and each model's KL divergence per
    site (``kl_per_site_<name>``); written as TSV to ``out`` (atomically)."""
    from dbdflow.io import atomic_path

    rows = []
    for (_, values), exp, path in zip(table.iterrows(), exps, metrics_files, strict=True):
        metrics = json.loads(Path(path).read_text())
        row = {"experiment": exp, **values.to_dict()}
        for name, orders in metrics["rmse_by_order"].items():
            for order, value in sorted(orders.items(), key=lambda kv: int(kv[0])):
                row[f"rmse_{name}_order{order}"] = value
        for name, value in metrics.get("kl_per_site", {}).items():
            row[f"kl_per_site_{name}"] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return frame


def summary_figure(frame: pd.DataFrame, columns: Sequence[str], out) -> None:
    """RMSE per moment order (one panel each) against the sweep point, one line per model and
    baseline. With a single numeric swept column its values are the x axis (logarithmic when
    they are positive and span more than a decade), else the points in table order."""
    import numpy as np
    from matplotlib.figure import Figure

    from dbdflow.evaluate.plots import _save, styles

    rmse = [c for c in frame.columns if c.startswith("rmse_")]
    orders = sorted({int(c.rsplit("order", 1)[1]) for c in rmse})
    names = list(dict.fromkeys(c[5:].rsplit("_order", 1)[0] for c in rmse))
    x = np.arange(len(frame), dtype=float)
    labels = [
        ", ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True))
        for row in frame[list(columns)].itertuples(index=False)
    ]
    numeric = pd.to_numeric(frame[columns[0]], errors="coerce") if len(columns) == 1 else None
    use_values = numeric is not None and numeric.notna().all()
    fig = Figure(figsize=(4.2 * len(orders), 3.6), layout="constrained")
    axes = fig.subplots(1, len(orders), squeeze=False)[0]
    for ax, order in zip(axes, orders, strict=True):
        for name, (colour, style) in styles(names).items():
            col = f"rmse_{name}_order{order}"
            if col in frame:
                xs = numeric.to_numpy(float) if use_values else x
                ax.plot(xs, frame[col], style, color=colour, marker="o", label=name)
        ax.set_title(f"moments of order {order}")
        ax.set_ylabel("test RMSE (time average)")
        if use_values:
            ax.set_xlabel(columns[0])
            if numeric.min() > 0 and numeric.max() > 10 * numeric.min():
                ax.set_xscale("log")
        else:
            ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"sweep of {', '.join(columns)}")
    _save(fig, out)
