"""Boltzmann machines on lattices (DESIGN §3; paper §III-IV).

Models (:mod:`.models`, compiled by :mod:`.mrf`): :func:`chain` (eq. 37), :func:`lattice` (fully
visible, 1-3D), :func:`chain_rbm` (eq. 39), :func:`lattice_rbm` (eq. 44), :func:`deep`
(with :mod:`.centering`). Exact 1D solutions
(:mod:`.transfer`): :func:`exact_log_partition`, :func:`exact_moments`,
:func:`exact_pattern_counts`, :func:`exact_sample`.
Sampling: :mod:`.gibbs`. Learning and initial lattices: :func:`fit`, :func:`sample_initial`;
the maximum-entropy θ(t) of a moment trajectory: :func:`maxent_path`.
"""

from dbdflow.boltzmann.fit import fit, maxent_path, sample_initial
from dbdflow.boltzmann.models import BoltzmannModel, chain, chain_rbm, deep, lattice, lattice_rbm
from dbdflow.boltzmann.transfer import (
    exact_covariance,
    exact_log_partition,
    exact_moments,
    exact_pattern_counts,
    exact_sample,
    exact_string_moments,
)

__all__ = [
    "BoltzmannModel",
    "chain",
    "chain_rbm",
    "deep",
    "exact_covariance",
    "exact_log_partition",
    "exact_moments",
    "exact_pattern_counts",
    "exact_sample",
    "exact_string_moments",
    "fit",
    "lattice",
    "lattice_rbm",
    "maxent_path",
    "sample_initial",
]
