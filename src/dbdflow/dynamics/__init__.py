"""Learned dynamics dθ/dt = F(θ; u) of a dynamic Boltzmann distribution (paper §III).

fem: Q3 C1 Hermite finite elements (eq. 34); ode: batched forward solvers (eqs. 26-27); adjoint:
exact discrete adjoint gradients (eqs. 28-33, 41); optim: SGD / Adam updates (Algorithm 1).
"""

from dbdflow.dynamics.adjoint import gradient, quadrature_weights
from dbdflow.dynamics.fem import HermiteGrid
from dbdflow.dynamics.ode import SCHEMES, DynamicsModel, Trajectory, solve
from dbdflow.dynamics.optim import SGD, Adam, clip_by_norm, group_rates

__all__ = [
    "SCHEMES",
    "SGD",
    "Adam",
    "DynamicsModel",
    "HermiteGrid",
    "Trajectory",
    "clip_by_norm",
    "gradient",
    "group_rates",
    "quadrature_weights",
    "solve",
]
