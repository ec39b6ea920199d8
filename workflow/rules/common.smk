# Helpers shared by all rules: the typed experiment, wildcard constraints and target lists.
import re

from dbdflow.config import from_dict
from dbdflow.evaluate import CLOSURES, figure_files
from dbdflow.profiles import mpi_launcher

EXP = from_dict(config, source="config")
RESULTS = f"results/{EXP.name}"


# evaluated names: the configured models, then the closure baselines (distinct names)
EVAL_NAMES = [*EXP.models, *CLOSURES]
_clash = sorted(set(EXP.models) & set(CLOSURES))
if _clash:
    raise ValueError(f"config: models: {_clash} are names of closure baselines; rename them")


def _one_of(names):
    """Wildcard regex matching exactly one of ``names`` (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    split="train|test",
    ic=r"\d+",
    batch=r"\d+",
    model=_one_of(EXP.models),
    name=_one_of(EVAL_NAMES),


def sims_files(split):
    """Every simulation batch file of a split."""
    return [
        f"{RESULTS}/sims/{split}/ic{ic}_b{batch}.h5"
        for ic in range(EXP.split(split).n_ics)
        for batch in range(EXP.n_batches(split))
    ]


def model_sims(model, split):
    """The sims files a model's learning reads (lattices for hidden-unit statistics), or none."""
    return sims_files(split) if EXP.model(model).needs_states else []


def evaluate_inputs(wildcards):
    """Inputs of `evaluate`: test moments, plus θ(t0) and the dynamics for a model."""
    inputs = {"config": f"{RESULTS}/config.yaml", "moments": f"{RESULTS}/moments/test.h5"}
    if wildcards.name in EXP.models:
        inputs["initial"] = f"{RESULTS}/models/{wildcards.name}/initial_test.h5"
        inputs["dynamics"] = f"{RESULTS}/models/{wildcards.name}/dynamics.h5"
    return inputs


REPORT = f"{RESULTS}/report"
_SNAPSHOT = EXP.lattice.ndim >= 2 and EXP.store_states and "test" in EXP.splits
REPORT_FIGURES = figure_files(list(EXP.models), EXP.lattice.ndim, len(EXP.species), _SNAPSHOT)


def report_sims():
    """One test sims file with lattices for the snapshot figure (2D/3D), or none."""
    return [f"{RESULTS}/sims/test/ic0_b0.h5"] if _SNAPSHOT else []


def all_targets():
    """Moments of every split; with models, their dynamics, and with a test split the metrics
    and the report of every model and baseline."""
    targets = [f"{RESULTS}/moments/{split}.h5" for split in EXP.splits]
    targets += [f"{RESULTS}/models/{m}/dynamics.h5" for m in EXP.models]
    if EXP.models and "test" in EXP.splits:
        targets += [f"{RESULTS}/eval/metrics.json", f"{REPORT}/report.md"]
        targets += [f"{REPORT}/{name}" for name in REPORT_FIGURES.values()]
    return targets


rule resolved_config:
    output:
        f"{RESULTS}/config.yaml",
    params:
        config=EXP.raw,
    log:
        f"{RESULTS}/logs/config.log",
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/write_config.py"
