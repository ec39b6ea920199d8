"""Lattice observables and their exact aggregation over trajectories (serial or MPI)."""

from dbdflow.moments.observables import observable_names, observables, pair_labels

__all__ = ["observable_names", "observables", "pair_labels"]
