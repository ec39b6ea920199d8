"""dbdflow: learning dynamic Boltzmann distributions (DBDs) of lattice reaction-diffusion systems.

Stages (see DESIGN): simulate -> moments -> fit_initial -> train -> evaluate -> report.
"""

__version__ = "0.1.0"
