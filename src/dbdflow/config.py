"""Typed, validated experiment configuration.

A config file (YAML) is checked against ``schemas/config.schema.yaml`` (the single source of truth
for keys, descriptions and defaults; the Snakefile validates against the same file), then against
the physics (reactions parse, species known, counts fit on the lattice, ...). Every error names the
file and the field, e.g. ``config/x.yaml: lattice.boundary: 'circular' is not one of [...]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dbdflow.simulate import Lattice, ReactionNetwork

SPLITS = ("train", "test")


class ConfigError(ValueError):
    """A config file or field is invalid; the message names both."""


def schema() -> dict:
    """The JSON schema of experiment configs (with descriptions and defaults)."""
    text = resources.files("dbdflow").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class Split:
    n_ics: int
    trajectories: int


@dataclass(frozen=True)
class Initial:
    """How lattices at time 0 are drawn (schema key ``initial``)."""

    kind: str
    counts: dict[str, int] | None = None
    density: dict[str, float] | None = None
    params: dict[str, float | tuple[float, float]] | None = None


@dataclass(frozen=True)
class Experiment:
    """One validated experiment config. ``raw`` is the full config dict with defaults filled in."""

    name: str
    seed: int
    lattice: Lattice
    network: ReactionNetwork
    semantics: str
    dt: float
    n_steps: int
    record_every: int
    initial: Initial
    splits: dict[str, Split]
    batch_size: int
    store_states: bool
    compression: str | None
    raw: dict
    source: str = "<config>"

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(self.network.species)

    @property
    def n_records(self) -> int:
        return self.n_steps // self.record_every + 1

    @property
    def times(self):
        import numpy as np

        return np.arange(self.n_records) * self.record_every * self.dt

    def n_batches(self, split: str) -> int:
        trajectories = self.split(split).trajectories
        return -(-trajectories // self.batch_size)

    def batch_trajectories(self, split: str, batch: int) -> range:
        """Trajectory indices of one batch (the last batch may be shorter)."""
        n = self.split(split).trajectories
        if not 0 <= batch < self.n_batches(split):
            raise ConfigError(
                f"{self.source}: batch {batch} out of range for split {split!r} "
                f"(0..{self.n_batches(split) - 1})"
            )
        return range(batch * self.batch_size, min(n, (batch + 1) * self.batch_size))

    def split(self, split: str) -> Split:
        if split not in self.splits:
            raise ConfigError(
                f"{self.source}: split {split!r} is not configured (splits: {sorted(self.splits)})"
            )
        return self.splits[split]

    def check_ic(self, split: str, ic: int) -> None:
        n = self.split(split).n_ics
        if not 0 <= ic < n:
            raise ConfigError(
                f"{self.source}: ic {ic} out of range for split {split!r} (0..{n - 1})"
            )


def load(path: str | Path) -> Experiment:
    """Read, validate and type a config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return from_dict(data, source=str(path))


def from_dict(data: Any, source: str = "<config>") -> Experiment:
    """Validate a config mapping (schema, then physics) and build an :class:`Experiment`."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys, got {type(data).__name__}"
        )
    raw = copy.deepcopy(data)
    sch = schema()
    _fill_defaults(raw, sch, sch)
    errors = sorted(jsonschema.Draft202012Validator(sch).iter_errors(raw), key=_error_order)
    if errors:
        lines = [f"{source}: {_field(e.absolute_path)}: {_message(e)}" for e in errors]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines))

    def fail(field: str, message: str):
        raise ConfigError(f"{source}: {field}: {message}")

    try:
        lattice = Lattice(tuple(raw["lattice"]["shape"]), raw["lattice"]["boundary"])
    except ValueError as err:
        fail("lattice", str(err))
    try:
        network = ReactionNetwork.parse(raw["species"], raw["reactions"])
    except ValueError as err:
        fail("reactions", str(err))
    if raw["n_steps"] % raw["record_every"]:
        fail("record_every", f"n_steps ({raw['n_steps']}) must be a multiple of it")
    initial = _initial(raw["initial"], raw["species"], lattice, fail)
    storage = raw["storage"]
    return Experiment(
        name=raw["experiment"],
        seed=raw["seed"],
        lattice=lattice,
        network=network,
        semantics=raw["semantics"],
        dt=float(raw["dt"]),
        n_steps=raw["n_steps"],
        record_every=raw["record_every"],
        initial=initial,
        splits={k: Split(**v) for k, v in raw["splits"].items()},
        batch_size=raw["batch_size"],
        store_states=storage["states"],
        compression=None if storage["compression"] == "none" else storage["compression"],
        raw=raw,
        source=source,
    )


def _initial(spec: dict, species: list[str], lattice: Lattice, fail) -> Initial:
    kind = spec["kind"]
    needed = {"counts": "counts", "density": "density", "chain": "params"}[kind]
    for key in ("counts", "density", "params"):
        if key in spec and key != needed:
            fail(f"initial.{key}", f"not used by initial.kind {kind!r} (it takes initial.{needed})")
    if needed not in spec:
        fail(f"initial.{needed}", f"required by initial.kind {kind!r}")
    values = spec[needed]
    if kind in ("counts", "density"):
        unknown = sorted(set(values) - set(species))
        if unknown:
            fail(f"initial.{needed}", f"unknown species {unknown}; species are {species}")
    if kind == "counts":
        if sum(values.values()) > lattice.n_sites:
            fail(
                "initial.counts", f"{sum(values.values())} particles exceed {lattice.n_sites} sites"
            )
        return Initial(kind, counts=dict(values))
    if kind == "density":
        if sum(values.values()) > 1 + 1e-12:
            fail("initial.density", f"densities sum to {sum(values.values())} > 1")
        return Initial(kind, density={k: float(v) for k, v in values.items()})
    if lattice.ndim != 1 or len(species) != 1:
        fail("initial.kind", "'chain' initial conditions need a 1D lattice and one species")
    (s,) = species
    allowed = (f"b_{s}", f"J_{s * 2}", f"K_{s * 3}")
    params = {}
    for name, value in values.items():
        if name not in allowed:
            fail(f"initial.params.{name}", f"unknown chain parameter; allowed: {list(allowed)}")
        if isinstance(value, list):
            lo, hi = float(value[0]), float(value[1])
            if lo > hi:
                fail(f"initial.params.{name}", f"range [{lo}, {hi}] has low > high")
            params[name] = (lo, hi)
        else:
            params[name] = float(value)
    if f"b_{s}" not in params:
        fail("initial.params", f"b_{s} is required")
    return Initial(kind, params=params)


def _fill_defaults(node: Any, sch: dict, root: dict) -> None:
    """Insert schema defaults for missing keys, recursively (as Snakemake's validate does)."""
    if "$ref" in sch:
        ref = sch["$ref"].removeprefix("#/").split("/")
        target = root
        for part in ref:
            target = target[part]
        sch = target
    if not isinstance(node, dict):
        return
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            _fill_defaults(node[key], sub, root)


def _field(path) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "(top level)"


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        return f"{err.message}; allowed keys: {allowed}"
    return err.message


def _error_order(err: jsonschema.ValidationError):
    return [str(p) for p in err.absolute_path]
