"""Lattice stochastic simulation of reaction-diffusion systems (paper §IV)."""

from dbdflow.simulate.initial import sample_counts, sample_densities
from dbdflow.simulate.lattice import Lattice
from dbdflow.simulate.reactions import Reaction, ReactionNetwork
from dbdflow.simulate.ssa import SEMANTICS, run, run_with_hop_counts

__all__ = [
    "SEMANTICS",
    "Lattice",
    "Reaction",
    "ReactionNetwork",
    "run",
    "run_with_hop_counts",
    "sample_counts",
    "sample_densities",
]
