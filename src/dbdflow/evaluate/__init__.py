"""Evaluation of reduced models against held-out simulations, with moment-closure baselines.

closures: mean-field and pair-approximation baselines; maxent: the maximum-entropy closure of a
1D chain (a baseline, and the prior of learned F's) and the mean-field prior; predictions: θ(t)
and the model moments along it (exact in 1D, Gibbs-sampled otherwise), KL to the data's
maximum-entropy chain; metrics: the tidy evaluation table and RMSE summaries; plots, report:
figures and report.md.
"""

from dbdflow.evaluate.closures import Process, mean_field, pair_approximation
from dbdflow.evaluate.maxent import check_process, maxent_closure
from dbdflow.evaluate.metrics import (
    COLUMNS,
    ORDER_OBSERVABLES,
    evaluated_observables,
    merge,
    summarize,
    tidy,
)
from dbdflow.evaluate.report import figure_files, write_report

# the closure baselines by name (config.BASELINE_NAMES); which apply: closures_for
CLOSURES = {"mean_field": mean_field, "pair": pair_approximation, "maxent": maxent_closure}


def closures_for(network, lattice, dt, semantics) -> list[str]:
    """The baselines that apply to a process: mean field and the pair approximation always, the
    max-ent closure for one species in 1D without births or the paper's global creation."""
    names = ["mean_field", "pair"]
    if lattice.ndim == 1 and network.n_species == 1:
        if not check_process(Process.build(network, lattice, dt, semantics)):
            names.append("maxent")
    return names


__all__ = [
    "CLOSURES",
    "COLUMNS",
    "ORDER_OBSERVABLES",
    "closures_for",
    "evaluated_observables",
    "figure_files",
    "maxent_closure",
    "mean_field",
    "merge",
    "pair_approximation",
    "summarize",
    "tidy",
    "write_report",
]
