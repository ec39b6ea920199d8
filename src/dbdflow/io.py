"""HDF5 layouts of dbdflow (DESIGN.md §5); the only module that imports h5py.

Every file carries attrs ``format = "dbdflow.<kind>/<version>"`` and ``dbdflow_version``. Writers go
to a temporary file in the target directory and rename it on success, so a killed job never leaves a
file that looks finished; readers check ``format`` and fail with a message naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dbdflow import __version__

FORMATS = {"sims": 1, "moments": 1, "initial": 1, "dynamics": 1, "checkpoint": 1}


class FormatError(ValueError):
    """A file is missing, unreadable or not of the expected dbdflow kind/version."""


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def create(path: str | Path, kind: str, attrs: Mapping[str, Any] | None = None):
    """Open a new HDF5 file of ``kind`` for writing, atomically (see :func:`atomic_path`)."""
    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = f"dbdflow.{kind}/{FORMATS[kind]}"
        f.attrs["dbdflow_version"] = __version__
        for key, value in (attrs or {}).items():
            f.attrs[key] = _attr(value)
        yield f


@contextlib.contextmanager
def open_checked(path: str | Path, kind: str):
    """Open an existing file read-only after checking it is a ``kind`` file of a known version."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except OSError as err:
        raise FormatError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        found = f.attrs.get("format", None)
        expected = f"dbdflow.{kind}/{FORMATS[kind]}"
        if found != expected:
            raise FormatError(f"{path}: expected format {expected!r}, found {found!r}")
        yield f


def _attr(value: Any):
    if isinstance(value, dict | list | tuple) and not _is_flat_numeric(value):
        return json.dumps(value)
    return value


def _is_flat_numeric(value) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(v, int | float | np.integer | np.floating) for v in value
    )


def json_attr(f: h5py.File, key: str):
    return json.loads(f.attrs[key])


# --- sims ---------------------------------------------------------------------------------------


def write_sims(
    path: str | Path,
    *,
    times: np.ndarray,
    observables: Mapping[str, np.ndarray],
    states: np.ndarray | None,
    attrs: Mapping[str, Any],
    compression: str | None = "gzip",
) -> None:
    """Write one simulation batch: ``/times``, ``/states`` (optional), ``/observables/<name>``."""
    with create(path, "sims", attrs) as f:
        f.create_dataset("times", data=np.asarray(times, dtype=np.float64))
        if states is not None:
            n_times, n_sites = states.shape[1:]
            f.create_dataset(
                "states",
                data=states.astype(np.int8, copy=False),
                chunks=(1, n_times, n_sites) if states.size else None,
                compression=compression if states.size else None,
                shuffle=compression is not None and states.size > 0,
            )
        group = f.create_group("observables")
        for name, value in observables.items():
            group.create_dataset(name, data=np.asarray(value, dtype=np.int64))


def read_sims_observables(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """``(times, observables, attrs)`` of a sims file (attrs JSON-decoded where they were JSON)."""
    with open_checked(path, "sims") as f:
        times = f["times"][()]
        obs = {name: ds[()] for name, ds in f["observables"].items()}
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
    return times, obs, attrs


def read_sims_states(path: str | Path) -> np.ndarray:
    with open_checked(path, "sims") as f:
        if "states" not in f:
            raise FormatError(f"{path}: no /states (storage.states was false)")
        return f["states"][()]


def _decode(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# --- moments ------------------------------------------------------------------------------------


def write_moments(
    path: str | Path,
    *,
    times: np.ndarray,
    n_traj: np.ndarray,
    sums: Mapping[str, np.ndarray],
    sumsqs: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> None:
    """Exact integer sums per IC plus derived ``/mean`` and ``/stderr`` (DESIGN.md §5)."""
    n = np.asarray(n_traj, dtype=np.int64)
    with create(path, "moments", attrs) as f:
        f.create_dataset("times", data=np.asarray(times, dtype=np.float64))
        f.create_dataset("n_traj", data=n)
        for group in ("sum", "sumsq", "mean", "stderr"):
            f.create_group(group)
        for name, total in sums.items():
            sq = sumsqs[name]
            f["sum"].create_dataset(name, data=total)
            f["sumsq"].create_dataset(name, data=sq)
            mean, stderr = mean_and_stderr(total, sq, n)
            f["mean"].create_dataset(name, data=mean)
            f["stderr"].create_dataset(name, data=stderr)


def mean_and_stderr(total, sumsq, n_traj) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean over trajectories from exact sums (axis 0 = IC)."""
    shape = (-1,) + (1,) * (np.ndim(total) - 1)
    n = np.asarray(n_traj, dtype=np.float64).reshape(shape)
    mean = total / n
    # exact integer arithmetic for the centred sum of squares: n*sumsq - sum^2 >= 0
    n_int = np.asarray(n_traj, dtype=np.int64).reshape(shape).astype(object)
    centred = n_int * np.asarray(sumsq).astype(object) - np.asarray(total).astype(object) ** 2
    centred = centred.astype(np.float64)
    var = np.where(n > 1, centred / (n * np.maximum(n - 1, 1)), np.nan)
    return mean, np.sqrt(np.maximum(var, 0.0) / n)


def read_moments(path: str | Path) -> dict:
    """All of a moments file as a dict: times, n_traj, sum, sumsq, mean, stderr, attrs."""
    with open_checked(path, "moments") as f:
        out = {"times": f["times"][()], "n_traj": f["n_traj"][()]}
        for group in ("sum", "sumsq", "mean", "stderr"):
            out[group] = {name: ds[()] for name, ds in f[group].items()}
        out["attrs"] = {k: _decode(v) for k, v in f.attrs.items()}
    return out


# --- initial parameters θ(t0) -------------------------------------------------------------------


def write_initial(
    path: str | Path,
    *,
    param_names: Sequence[str],
    theta0: np.ndarray,
    fit: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> None:
    """θ(t0) per IC: ``/theta0`` (n_ics, K), diagnostics ``/fit/<name>`` (n_ics, ...), attrs
    ``param_names`` (JSON list), model, family, method, split."""
    with create(path, "initial", {**attrs, "param_names": list(param_names)}) as f:
        f.create_dataset("theta0", data=np.asarray(theta0, dtype=np.float64))
        group = f.create_group("fit")
        for name, value in fit.items():
            group.create_dataset(name, data=np.asarray(value))


def read_initial(path: str | Path) -> dict:
    """``{theta0, param_names, fit, attrs}`` of an initial file."""
    with open_checked(path, "initial") as f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        return {
            "theta0": f["theta0"][()],
            "param_names": tuple(attrs["param_names"]),
            "fit": {k: ds[()] for k, ds in f["fit"].items()},
            "attrs": attrs,
        }


# --- learned dynamics ---------------------------------------------------------------------------


def write_dynamics(
    path: str | Path,
    *,
    param_names: Sequence[str],
    functions: Sequence[Mapping[str, np.ndarray]],
    u: np.ndarray,
    times: np.ndarray,
    theta0: np.ndarray,
    theta: np.ndarray,
    outside: np.ndarray,
    excursions: np.ndarray,
    log: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> None:
    """Learned F_k (DESIGN.md §5): ``/u`` (all coefficients), ``/functions/<name>/`` per F_k with
    ``u``, ``coords`` (indices into θ), ``lower``, ``upper``, ``n_cells``; the training ICs'
    ``/times``, ``/theta0`` (n_ics, K), ``/theta`` (n_ics, n_times, K) and ``/outside`` (n_ics, K,
    evaluations outside the grid); ``/excursions`` (K,) totals over training; ``/log/<field>``."""
    with create(path, "dynamics", {**attrs, "param_names": list(param_names)}) as f:
        f.create_dataset("u", data=np.asarray(u, dtype=np.float64))
        group = f.create_group("functions")
        for name, fn in zip(param_names, functions, strict=True):
            sub = group.create_group(name)
            for key, value in fn.items():
                sub.create_dataset(key, data=np.asarray(value))
        for key, value in (
            ("times", times),
            ("theta0", theta0),
            ("theta", theta),
            ("outside", outside),
            ("excursions", excursions),
        ):
            f.create_dataset(key, data=np.asarray(value))
        group = f.create_group("log")
        for key, value in log.items():
            group.create_dataset(key, data=np.asarray(value))


def read_dynamics(path: str | Path) -> dict:
    """All of a dynamics file: u, functions (list of dicts in parameter order), times, theta0,
    theta, outside, excursions, log, param_names, attrs."""
    with open_checked(path, "dynamics") as f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        names = tuple(attrs["param_names"])
        out = {k: f[k][()] for k in ("u", "times", "theta0", "theta", "outside", "excursions")}
        out["functions"] = [{k: ds[()] for k, ds in f["functions"][n].items()} for n in names]
        out["log"] = {k: ds[()] for k, ds in f["log"].items()}
        out.update(param_names=names, attrs=attrs)
    return out


# --- training checkpoints -----------------------------------------------------------------------


def write_checkpoint(
    path: str | Path,
    *,
    step: int,
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    attrs: Mapping[str, Any],
) -> None:
    """A resumable training state: attr ``step`` and groups of arrays (``arrays[group][name]``,
    e.g. u, optimizer, asleep, log), stored bit-exactly."""
    with create(path, "checkpoint", {**attrs, "step": int(step)}) as f:
        for group, values in arrays.items():
            g = f.create_group(group)
            for name, value in values.items():
                g.create_dataset(name, data=np.asarray(value))


def read_checkpoint(path: str | Path) -> dict:
    """``{step, attrs, <group>: {name: array}}`` of a checkpoint file."""
    with open_checked(path, "checkpoint") as f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        out = {"step": int(attrs["step"]), "attrs": attrs}
        for group in f:
            out[group] = {k: ds[()] for k, ds in f[group].items()}
    return out
