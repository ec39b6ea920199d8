"""Evaluation of reduced models against held-out simulations, with moment-closure baselines.

closures: mean-field and pair-approximation baselines; predictions: θ(t) and the model moments
along it (exact in 1D, Gibbs-sampled otherwise), KL to the data's maximum-entropy chain;
metrics: the tidy evaluation table and RMSE summaries; plots, report: figures and report.md.
"""

from dbdflow.evaluate.closures import CLOSURES, mean_field, pair_approximation
from dbdflow.evaluate.metrics import (
    COLUMNS,
    ORDER_OBSERVABLES,
    evaluated_observables,
    merge,
    summarize,
    tidy,
)
from dbdflow.evaluate.report import figure_files, write_report

__all__ = [
    "CLOSURES",
    "COLUMNS",
    "ORDER_OBSERVABLES",
    "evaluated_observables",
    "figure_files",
    "mean_field",
    "merge",
    "pair_approximation",
    "summarize",
    "tidy",
    "write_report",
]
