"""Typed, validated experiment configuration.

A config file (YAML) is checked against ``schemas/config.schema.yaml`` (the single source of truth
for keys, descriptions and defaults; the Snakefile validates against the same file), then against
the physics (reactions parse, species known, counts fit on the lattice, ...). Every error names the
file and the field, e.g. ``config/x.yaml: lattice.boundary: 'circular' is not one of [...]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dbdflow.simulate import Lattice, ReactionNetwork

SPLITS = ("train", "test")


# names of the closure baselines (dbdflow.evaluate.closures.CLOSURES), reserved in `models`
BASELINE_NAMES = ("mean_field", "pair", "maxent")


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
    models: dict[str, ModelSpec] = field(default_factory=dict)
    training: Training | None = None
    model_training: dict[str, Training] = field(default_factory=dict)

    def training_for(self, name: str) -> Training | None:
        """The training settings of model ``name``: ``training`` with its own overrides."""
        self.model(name)
        return self.model_training.get(name, self.training)

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise ConfigError(
                f"{self.source}: models: no model named {name!r} (models: {sorted(self.models)})"
            )
        return self.models[name]

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

    def view(self, part: str) -> dict:
        """The config a stage needs, as a raw mapping (``from_dict`` of it gives that stage the
        same results as the whole config): ``"simulation"`` drops ``models``, ``training`` and
        ``sweep`` (simulations and moments); a model name keeps only that model, its training
        overrides merged into ``training``, and of ``training`` the rate groups and L2 targets
        that name its parameters (learning and evaluation of that model). The workflow gives
        each rule its view, so changing one model or the training reruns neither the
        simulations nor the other models."""
        raw = {k: copy.deepcopy(v) for k, v in self.raw.items() if k != "sweep"}
        if part == "simulation":
            raw.pop("models", None)
            raw.pop("training", None)
            return raw
        names = self.model(part).param_names
        keys = group_keys(names)
        raw["models"] = {part: raw["models"][part]}
        raw["training"].update(raw["models"][part].pop("training", {}))
        tr = raw["training"]
        rate = tr["learning_rate"]
        if isinstance(rate, dict):
            groups = rate.get("groups", {})
            rate["groups"] = {k: v for k, v in groups.items() if k in keys}
        tr["l2_target"] = {k: v for k, v in tr["l2_target"].items() if k in names}
        return raw

    def sims_files(self, split: str, directory: str | Path) -> list[str]:
        """Every batch file of a split in its sims directory, IC-major: ``ic{ic}_b{batch}.h5``
        (the path grammar of the Snakefile header)."""
        return [
            str(Path(directory) / f"ic{ic}_b{batch}.h5")
            for ic in range(self.split(split).n_ics)
            for batch in range(self.n_batches(split))
        ]

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
    models = {
        name: _model(name, spec, raw, lattice, network, sch, fail)
        for name, spec in raw["models"].items()
    }
    training = _training(raw, models, fail)
    model_training = {
        name: _training(_model_training(raw, name, sch, source), models, fail)
        for name, spec in raw["models"].items()
        if spec.get("training")
    }
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
        models=models,
        training=training,
        model_training=model_training,
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


def _model_training(raw: dict, name: str, sch: dict, source: str) -> dict:
    """``raw`` with ``training`` replaced by that of model ``name`` (its ``training`` keys over
    the top-level ones), validated against the training schema."""
    merged = {**raw["training"], **raw["models"][name]["training"]}
    sub = {"$defs": sch.get("$defs", {}), **sch["properties"]["training"]}
    errors = sorted(jsonschema.Draft202012Validator(sub).iter_errors(merged), key=_error_order)
    if errors:
        at = f"models.{name}.training"
        lines = [f"{source}: {at}{_suffix(e.absolute_path)}: {_message(e)}" for e in errors]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines))
    return {**raw, "training": merged}


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


def _suffix(path) -> str:
    """``_field`` as a continuation of an outer field ('' for the top level)."""
    return "" if not path else "." + _field(path)


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


# --- reduced models and training (sections ``models`` and ``training``) --------------------------

FAMILIES = ("chain", "chain_rbm", "lattice", "lattice_rbm")
EXACT_FAMILIES = ("chain", "chain_rbm")


@dataclass(frozen=True)
class GridSpec:
    """The finite-element grid shared by a model's F_k (schema ``models.<m>.dynamics``)."""

    coords: tuple[str, ...]
    spacing: tuple[float, ...]
    lower: tuple[float, ...] | None
    upper: tuple[float, ...] | None
    margin: tuple[float, ...]
    scheme: str
    substeps: int
    smoothness: float = 0.0
    prior: str = "none"


@dataclass(frozen=True)
class ThetaInitial:
    """How θ(t0) is obtained per IC (schema ``models.<m>.initial``)."""

    method: str
    values: dict[str, float] | None
    start: dict[str, float]
    steps: int
    tol: float
    learning_rate: float
    l2: float


@dataclass(frozen=True)
class AsleepSpec:
    """Asleep-phase moments (schema ``models.<m>.asleep``); ``method`` has "auto" resolved."""

    method: str
    sweeps: int
    chains: int
    hidden: str


@dataclass(frozen=True)
class ModelSpec:
    """One reduced model: Boltzmann family, its parameter names, θ(t0), grid, asleep moments."""

    name: str
    family: str
    param_names: tuple[str, ...]
    terms: tuple[str, ...]
    hidden_species: tuple[str, ...]
    couple: dict | None
    field: tuple[int, ...] | None
    initial: ThetaInitial
    dynamics: GridSpec
    asleep: AsleepSpec
    needs_states: bool

    def build(self, exp: Experiment):
        """The :class:`~dbdflow.boltzmann.BoltzmannModel` on the experiment's lattice."""
        from dbdflow.boltzmann import chain, chain_rbm, lattice, lattice_rbm

        n, boundary = exp.lattice.n_sites, exp.lattice.boundary
        if self.family == "chain":
            model = chain(n, boundary, species=exp.species, terms=self.terms)
        elif self.family == "chain_rbm":
            model = chain_rbm(n, boundary)
        elif self.family == "lattice":
            model = lattice(exp.lattice.shape, boundary, species=exp.species)
        else:
            model = lattice_rbm(
                exp.lattice.shape, exp.species, self.hidden_species, self.field, self.couple
            )
        if tuple(model.param_names) != self.param_names:
            raise ConfigError(
                f"{exp.source}: models.{self.name}: built parameters {model.param_names} differ "
                f"from the expected {self.param_names}"
            )
        return model


def _param_names(family, species, terms, hidden, couple) -> tuple[str, ...]:
    import itertools

    if family in ("chain", "lattice"):
        return tuple(
            t + "_" + "".join(species[c] for c in word)
            for t in ("b", "J", "K")
            if t in terms
            for word in itertools.combinations_with_replacement(
                range(len(species)), "bJK".index(t) + 1
            )
        )
    if family == "chain_rbm":
        return ("b_A", "W_AX", "b_X")
    pairs = [(s, t) for s in species for t in hidden] if couple is None else couple
    return (
        *(f"b_{s}" for s in species),
        *(f"W_{s}{t}" for s, t in pairs),
        *(f"b_{t}" for t in hidden),
    )


def _model(
    name: str, spec: dict, raw: dict, lattice: Lattice, network, sch: dict, fail
) -> ModelSpec:
    spec = copy.deepcopy(spec)
    _fill_defaults(spec, sch["$defs"]["model"], sch)
    at = f"models.{name}"
    if name in BASELINE_NAMES:
        fail(at, f"{name!r} names a closure baseline evaluated beside every model; rename it")
    family, species = spec["family"], list(raw["species"])
    for key in ("hidden_species", "couple", "field"):
        if family != "lattice_rbm" and spec.get(key) is not None:
            fail(f"{at}.{key}", f"only used by family lattice_rbm, not {family!r}")
    if family != "chain" and spec["terms"] != ["b", "J", "K"] and "terms" in raw["models"][name]:
        fail(f"{at}.terms", f"only used by family chain, not {family!r}")
    if family in EXACT_FAMILIES and lattice.ndim != 1:
        fail(f"{at}.family", f"{family} needs a 1D lattice, the lattice has shape {lattice.shape}")
    if family == "chain_rbm" and len(species) != 1:
        fail(f"{at}.family", f"chain_rbm has one visible species, the config has {species}")
    if family in EXACT_FAMILIES and lattice.boundary == "periodic" and lattice.n_sites < 3:
        fail(f"{at}.family", "a periodic chain needs at least 3 sites")
    terms = tuple(t for t in "bJK" if t in spec["terms"]) if family != "lattice" else ("b", "J")
    if family == "chain" and "K" in terms and len(species) > 1:
        fail(
            f"{at}.terms",
            "K (three-site) statistics of several species are not among the observables",
        )
    hidden, couple, fld = (), None, None
    if family == "lattice_rbm":
        if "hidden_species" not in spec:
            fail(f"{at}.hidden_species", "required by family lattice_rbm")
        hidden = tuple(spec["hidden_species"])
        clash = sorted(set(hidden) & set(species))
        if clash:
            fail(f"{at}.hidden_species", f"{clash} are also visible species")
        if spec["couple"] is not None:
            couple = []
            for s, targets in spec["couple"].items():
                targets = [targets] if isinstance(targets, str) else list(targets)
                if s not in species or any(t not in hidden for t in targets):
                    fail(f"{at}.couple.{s}", f"must map a species of {species} to {list(hidden)}")
                couple.extend((s, t) for t in targets)
        if spec["field"] is not None:
            fld = tuple(spec["field"])
            if len(fld) != lattice.ndim or any(
                not 1 <= f <= n for f, n in zip(fld, lattice.shape, strict=True)
            ):
                fail(f"{at}.field", f"need 1..shape[a] sites per axis of {lattice.shape}")
    names = _param_names(family, species, terms, hidden, couple)

    dyn = spec["dynamics"]
    coords = tuple(dyn["coords"])
    for c in coords:
        if c not in names:
            fail(
                f"{at}.dynamics.coords", f"{c!r} is not a parameter of this {family} model {names}"
            )
    d = len(coords)

    def per_coord(key, value):
        values = [value] * d if isinstance(value, int | float) else list(value)
        if len(values) != d:
            fail(f"{at}.dynamics.{key}", f"need 1 or {d} values (one per coordinate)")
        return tuple(float(v) for v in values)

    spacing = per_coord("spacing", dyn["spacing"])
    lower = upper = None
    if (dyn["lower"] is None) != (dyn["upper"] is None):
        fail(f"{at}.dynamics.lower", "give both lower and upper, or neither (automatic bounds)")
    if dyn["lower"] is not None:
        lower, upper = per_coord("lower", dyn["lower"]), per_coord("upper", dyn["upper"])
        if any(lo >= hi for lo, hi in zip(lower, upper, strict=True)):
            fail(f"{at}.dynamics.upper", f"must exceed lower on every axis: {lower}, {upper}")
    margin = (
        tuple(2 * h for h in spacing)
        if dyn["margin"] is None
        else per_coord("margin", dyn["margin"])
    )

    if dyn["prior"] == "maxent":
        _check_maxent(raw, family, names, coords, lattice, network, f"{at}.dynamics.prior", fail)
    elif dyn["prior"] == "mean_field":
        if family not in ("chain", "lattice"):
            fail(
                f"{at}.dynamics.prior",
                f"mean_field needs a fully visible model (family chain or lattice), not {family!r}",
            )
        biases = [n for n in names if n.startswith("b_")]
        if not set(biases) <= set(coords):
            fail(
                f"{at}.dynamics.prior",
                f"mean_field needs F over every bias {biases}, got coords {list(coords)}",
            )

    ini = spec["initial"]
    method = ini["method"]
    for key in ("values", "start"):
        bad = sorted(set(ini.get(key) or {}) - set(names))
        if bad:
            fail(f"{at}.initial.{key}", f"{bad} are not parameters of this model {names}")
    if method == "given":
        missing = sorted(set(names) - set(ini.get("values") or {}))
        if missing:
            fail(f"{at}.initial.values", f"method given needs every parameter; missing {missing}")
    elif "values" in ini:
        fail(f"{at}.initial.values", f"only used by method given, not {method!r}")
    if method == "generating":
        if raw["initial"]["kind"] != "chain" or family != "chain":
            fail(
                f"{at}.initial.method",
                "generating needs initial.kind chain and family chain (the IC's own parameters)",
            )
        extra = sorted(set(raw["initial"]["params"]) - set(names))
        if extra:
            fail(f"{at}.initial.method", f"the ICs set {extra}, which this model lacks")

    asl = spec["asleep"]
    mode = asl["method"]
    if mode == "auto":
        mode = "exact" if family in EXACT_FAMILIES else "random"
    if mode == "exact" and family not in EXACT_FAMILIES:
        fail(f"{at}.asleep.method", f"exact moments need family {EXACT_FAMILIES}, not {family!r}")
    needs_states = (
        family == "lattice_rbm"
        or mode == "cd"
        or (family == "chain_rbm" and lattice.boundary != "periodic")
    )
    if needs_states and not raw["storage"]["states"]:
        fail(
            "storage.states",
            f"models.{name} needs the stored lattices (hidden-unit statistics from receptive-field "
            "histograms, open-chain bond ends or CD); set storage.states: true",
        )
    return ModelSpec(
        name=name,
        family=family,
        param_names=names,
        terms=terms,
        hidden_species=hidden,
        couple=None if couple is None else dict(_group_couple(couple)),
        field=fld,
        initial=ThetaInitial(
            method,
            None if ini.get("values") is None else {k: float(v) for k, v in ini["values"].items()},
            {k: float(v) for k, v in ini["start"].items()},
            int(ini["steps"]),
            float(ini["tol"]),
            float(ini["learning_rate"]),
            float(ini["l2"]),
        ),
        dynamics=GridSpec(
            coords,
            spacing,
            lower,
            upper,
            margin,
            dyn["scheme"],
            int(dyn["substeps"]),
            float(dyn["smoothness"]),
            dyn["prior"],
        ),
        asleep=AsleepSpec(mode, int(asl["sweeps"]), int(asl["chains"]), asl["hidden"]),
        needs_states=needs_states,
    )


def _check_maxent(raw, family, names, coords, lattice, network, field, fail) -> None:
    """``prior: maxent`` needs a 1D chain or chain RBM, F over all its parameters and a local
    process."""
    from dbdflow.evaluate.closures import Process
    from dbdflow.evaluate.maxent import check_process

    if family not in EXACT_FAMILIES or lattice.ndim != 1:
        fail(field, f"maxent needs family chain or chain_rbm on a 1D lattice, not {family!r}")
    if sorted(coords) != sorted(names):
        fail(field, f"maxent needs F over all parameters {list(names)}, got coords {list(coords)}")
    unsupported = check_process(Process.build(network, lattice, raw["dt"], raw["semantics"]))
    if unsupported:
        fail(field, f"maxent covers hops, collisions and in-place reactions, not {unsupported}")


def _group_couple(pairs):
    out: dict[str, list[str]] = {}
    for s, t in pairs:
        out.setdefault(s, []).append(t)
    return {s: tuple(ts) for s, ts in out.items()}


@dataclass(frozen=True)
class Training:
    """Algorithm 1's hyperparameters (schema ``training``); ``window`` is None or a dict with
    size, shift, every, start, cycle."""

    steps: int
    optimizer: str
    learning_rate: float
    rate_groups: dict[str, float]
    beta1: float
    beta2: float
    clip: float | None
    batch_ics: int | None
    window: dict | None
    truncate: bool
    quadrature: str
    l2: float
    l2_target: dict[str, float]
    max_abs_theta: float
    checkpoint_every: int
    log_every: int

    def rates(self, names) -> list[float]:
        """Learning rate of each parameter's F: its name's group, else its prefix's, else the
        default."""
        return [
            self.rate_groups.get(n, self.rate_groups.get(term_prefix(n), self.learning_rate))
            for n in names
        ]


def term_prefix(name: str) -> str:
    """The term of a parameter name (``b`` of ``b_A``, ``W`` of ``W_AX``)."""
    return name.split("_")[0]


def group_keys(names) -> set[str]:
    """Keys a learning-rate group may have for these parameters: a name or a term prefix."""
    return {*names, *(term_prefix(n) for n in names)}


def _training(raw: dict, models: dict[str, ModelSpec], fail) -> Training:
    tr = raw["training"]
    rate = tr["learning_rate"]
    default, groups = (
        (rate, {})
        if isinstance(rate, int | float)
        else (
            rate["default"],
            dict(rate.get("groups", {})),
        )
    )
    names = {n for m in models.values() for n in m.param_names}
    keys = group_keys(names)
    for key in groups:
        if key not in keys:
            fail(
                f"training.learning_rate.groups.{key}",
                f"matches no parameter of any model (parameters {sorted(names)})",
            )
    for key in tr["l2_target"]:
        if key not in names:
            fail(f"training.l2_target.{key}", f"not a parameter of any model {sorted(names)}")
    window = (
        None
        if tr["window"] is None
        else {
            "size": tr["window"]["size"],
            "shift": tr["window"].get("shift", 1),
            "every": tr["window"].get("every", 1),
            "start": tr["window"].get("start", 0),
            "cycle": tr["window"].get("cycle", False),
        }
    )
    horizon = raw["n_steps"] // raw["record_every"]
    if window is not None and window["size"] < horizon < window["start"] + window["size"]:
        fail("training.window.start", f"must be <= {horizon - window['size']} (data steps - size)")
    n_train = raw["splits"]["train"]["n_ics"]
    if tr["batch_ics"] is not None and tr["batch_ics"] > n_train:
        fail("training.batch_ics", f"{tr['batch_ics']} exceeds splits.train.n_ics ({n_train})")
    return Training(
        steps=int(tr["steps"]),
        optimizer=tr["optimizer"],
        learning_rate=float(default),
        rate_groups={k: float(v) for k, v in groups.items()},
        beta1=float(tr["beta1"]),
        beta2=float(tr["beta2"]),
        clip=None if tr["clip"] is None else float(tr["clip"]),
        batch_ics=tr["batch_ics"],
        window=window,
        truncate=bool(tr["truncate"]),
        quadrature=tr["quadrature"],
        l2=float(tr["l2"]),
        l2_target={k: float(v) for k, v in tr["l2_target"].items()},
        max_abs_theta=float(tr["max_abs_theta"]),
        checkpoint_every=int(tr["checkpoint_every"]),
        log_every=int(tr["log_every"]),
    )
