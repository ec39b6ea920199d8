"""Evaluation of reduced models against held-out simulations, with moment-closure baselines."""

from dbdflow.evaluate.closures import CLOSURES, mean_field, pair_approximation

__all__ = ["CLOSURES", "mean_field", "pair_approximation"]
