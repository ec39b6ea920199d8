"""Diffusion-limited annihilation and coalescence on a ring against their exact asymptotics.

For A + A -> 0 and A + A -> A with reaction on every encounter, starting from a full 1D lattice,
the density decays as rho(t) ~ (8 pi D t)^{-1/2} and rho(t) ~ (2 pi D t)^{-1/2} (Spouge, Phys.
Rev. Lett. 60, 871 (1988); ben-Avraham & Havlin, "Diffusion and Reactions in Fractals and
Disordered Systems", ch. 13). Our free particle hops one site per step in a random direction, so
D = a^2 / (2 dt) and D t = m / 2 after m steps: rho ~ (4 pi m)^{-1/2}, resp. (pi m)^{-1/2}.
Corrections are relative O(1 / (D t)), below 0.5 % here, smaller than the statistical error.
"""

import numpy as np
import pytest
from simulate_stats import assert_close

from dbdflow.simulate import Lattice, ReactionNetwork, run


@pytest.mark.parametrize(
    "rule, amplitude",
    [("A + A -> 0 @ 1", 1 / np.sqrt(4 * np.pi)), ("A + A -> A @ 1", 1 / np.sqrt(np.pi))],
)
def test_density_decay_amplitude(rule, amplitude):
    rings, length, steps = 40, 25000, 800  # diffusion length sqrt(2 D t) = 28 << 25000
    states = run(ReactionNetwork.parse(["A"], [rule]), Lattice((length,)),
                 np.ones((rings, length), np.int8), steps, 0.01, np.random.default_rng(13),
                 record_every=steps // 2)  # fmt: skip
    for record, m in ((1, steps // 2), (2, steps)):
        rho = (states[:, record] == 1).mean(1)  # one independent estimate per ring
        scaled = rho * np.sqrt(m) / amplitude
        assert_close(scaled.mean(), 1.0, scaled.std(ddof=1) / np.sqrt(rings))
