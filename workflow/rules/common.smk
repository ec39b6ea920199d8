# Helpers shared by all rules: the typed experiment, wildcard constraints and target lists.
import re

from pathlib import Path

from dbdflow.config import from_dict
from dbdflow.evaluate import CLOSURES, closures_for, figure_files
from dbdflow.profiles import mpi_launcher
from dbdflow.sweep import points as sweep_points


def _sweep_table(path):
    """The sweep table: relative to the working directory, else to the workflow."""
    for candidate in (Path(path), Path(workflow.basedir) / path):
        if candidate.is_file():
            return candidate
    raise ValueError(f"config: sweep: table {path!r} not found (nor under {workflow.basedir})")


# Experiments: the config itself, or one per sweep point, by results directory under results/
SWEEP = _sweep_table(config["sweep"]) if config.get("sweep") else None
if SWEEP is None:
    EXPS = {BASE.name: BASE}
else:
    EXPS = {
        name: from_dict(raw, source=f"{SWEEP} point {name}")
        for name, raw in sweep_points(config, SWEEP).items()
    }
RESULTS = "results/{exp}"
MODELS = sorted({m for e in EXPS.values() for m in e.models})

def eval_names(exp):
    e = EXPS[exp]
    return [*e.models, *closures_for(e.network, e.lattice, e.dt, e.semantics)]


def _figures(e):
    snapshot = e.lattice.ndim >= 2 and e.store_states and "test" in e.splits
    return snapshot, figure_files(list(e.models), e.lattice.ndim, len(e.species), snapshot)


# one report layout for all experiments (a sweep must not change models, dimension or species)
_layouts = {name: _figures(e) for name, e in EXPS.items()}
if len({repr(v) for v in _layouts.values()}) > 1:
    raise ValueError(
        f"config: sweep {SWEEP}: the points' reports differ (models, lattice dimension, species or "
        "stored states); sweep other keys"
    )
_SNAPSHOT, REPORT_FIGURES = next(iter(_layouts.values()))
REPORT = f"{RESULTS}/report"


def _one_of(names):
    """Wildcard regex matching exactly one of ``names`` (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    exp=_one_of(EXPS),
    split="train|test",
    ic=r"\d+",
    batch=r"\d+",
    model=_one_of(MODELS),
    name=_one_of([*MODELS, *CLOSURES]),
    view=_one_of(["simulation", *(f"model_{m}" for m in MODELS)]),


def sims_config(exp):
    """The config view of simulations and moments (no models, no training)."""
    return f"results/{exp}/config/simulation.yaml"


def model_config(exp, name):
    """The config view of one model's learning and evaluation; a baseline's is the simulations'."""
    if name in EXPS[exp].models:
        return f"results/{exp}/config/model_{name}.yaml"
    return sims_config(exp)


def sims_dir(exp, split):
    return f"results/{exp}/sims/{split}"


def sims_files(exp, split):
    """Every simulation batch file of a split of an experiment."""
    return EXPS[exp].sims_files(split, sims_dir(exp, split))


def model_sims(exp, model, split):
    """The sims files a model's learning reads (lattices for hidden-unit statistics), or none."""
    return sims_files(exp, split) if EXPS[exp].model(model).needs_states else []


def evaluate_inputs(wildcards):
    """Inputs of `evaluate`: test moments, plus θ(t0) and the dynamics for a model."""
    r = f"results/{wildcards.exp}"
    inputs = {
        "config": model_config(wildcards.exp, wildcards.name),
        "moments": f"{r}/moments/test.h5",
    }
    if wildcards.name in EXPS[wildcards.exp].models:
        inputs["initial"] = f"{r}/models/{wildcards.name}/initial_test.h5"
        inputs["dynamics"] = f"{r}/models/{wildcards.name}/dynamics.h5"
    return inputs


def report_sims(wildcards):
    """One test sims file with lattices for the snapshot figure (2D/3D), or none."""
    return [f"results/{wildcards.exp}/sims/test/ic0_b0.h5"] if _SNAPSHOT else []


def evaluated(exp):
    """Whether an experiment is evaluated (it has models and a test split)."""
    return bool(EXPS[exp].models) and "test" in EXPS[exp].splits


def experiment_targets(exp):
    """Moments of every split; with models, their dynamics, and with a test split the metrics
    and the report of every model and baseline."""
    r, e = f"results/{exp}", EXPS[exp]
    targets = [f"{r}/moments/{split}.h5" for split in e.splits]
    targets += [f"{r}/models/{m}/dynamics.h5" for m in e.models]
    if evaluated(exp):
        targets += [f"{r}/eval/metrics.json", f"{r}/report/report.md"]
        targets += [f"{r}/report/{name}" for name in REPORT_FIGURES.values()]
    return targets


SWEEP_DIR = f"results/{BASE.name}/sweep"


def all_targets():
    """Every experiment's targets; for a sweep of evaluated points also its summary."""
    targets = [t for exp in EXPS for t in experiment_targets(exp)]
    if SWEEP is not None and all(evaluated(exp) for exp in EXPS):
        targets += [f"{SWEEP_DIR}/summary.tsv", f"{SWEEP_DIR}/summary.png"]
    return targets


rule resolved_config:
    output:
        f"{RESULTS}/config.yaml",
    params:
        config=lambda wc: EXPS[wc.exp].raw,
    log:
        f"{RESULTS}/logs/config.log",
    localrule: True
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/write_config.py"


# What each stage reads: a rule reruns when its view changes (Snakemake's params trigger), not
# on any config change; the whole config.yaml above is for people and the report.
rule config_view:
    output:
        f"{RESULTS}/config/{{view}}.yaml",
    params:
        config=lambda wc: EXPS[wc.exp].view(wc.view.removeprefix("model_")),
    log:
        f"{RESULTS}/logs/config_{{view}}.log",
    localrule: True
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/write_config.py"
