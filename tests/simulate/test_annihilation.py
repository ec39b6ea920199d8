"""Diffusion-limited annihilation and coalescence on a ring against their exact asymptotics.

For A + A -> 0 and A + A -> A with reaction on every encounter, starting from a full 1D lattice,
the density decays as rho(t) ~ (8 pi D t)^{-1/2} and rho(t) ~ (2 pi D t)^{-1/2} (Spouge, Phys.
Rev. Lett. 60, 871 (1988); ben-Avraham & Havlin, "Diffusion and Reactions in Fractals and
Disordered Systems", ch. 13). Our free particle hops one site per step in a random direction, so
D = a^2 / (2 dt) and D t = m / 2 after m steps: rho ~ (4 pi m)^{-1/2}, resp. (pi m)^{-1/2}.

Estimator. Ring i (length 2000, far above the diffusion length sqrt(2 D t) = sqrt(m) <= 20, so
finite-size effects are exponentially small) gives y_i(m) = rho_i(m) sqrt(m) / amplitude at the
19 recorded times m = 40, 60, ..., 400, and a least-squares fit y_i(m) = a_i + b_i / m. The b / m
term takes the leading correction, relative O(1 / (D t)) as in the exact continuum solutions
(e.g. coalescence: e^{x^2} erfc(x) = (x sqrt(pi))^{-1} (1 - 1/(2 x^2) + ...), x^2 ∝ D t); here
b ≈ -0.25 (A + A -> 0) and -0.75 (A + A -> A), i.e. 0.6 % and 1.9 % at m = 40. What the fit
leaves, measured with 1.5e8 and 6e7 sites, is below 0.1 % of the amplitude.

Tolerance. a_i is linear in ring i's data and the rings are independent and identically
distributed, so the mean of the a_i has standard error se = s / sqrt(R), s the sample standard
deviation of the a_i over the R rings; this accounts for the strong correlation between the
times of one ring without modelling it. The check is |mean - 1| <= Z se, Z = 5. Measured
s^2 ≈ 35 / 2000 (A + A -> 0) and 4.5 / 2000 (A + A -> A), so se ≈ 0.21 % with R = 4000 and
0.15 % with R = 1000: tolerances ≈ 1.05 % and 0.75 %. The amplitude scales as D^{-1/2}, so a 5 %
error in D moves it by 2.4 %, i.e. 11 and 16 standard errors: it fails unless the noise moves
the estimate 6 (resp. 11) standard errors back. The test also asserts se <= 0.24 %, so that this
power (a 5 % error in D at least 10 se away) holds for whatever sample it draws.
"""

import numpy as np
import pytest
from simulate_stats import Z, assert_close

from dbdflow.simulate import Lattice, ReactionNetwork, run

LENGTH, STEPS, EVERY, FIRST = 2000, 400, 20, 40
CHUNK = 500  # rings per call of run: bounds the memory of the recorded states


def fitted_amplitudes(rule: str, amplitude: float, rings: int, seed: int) -> np.ndarray:
    """Per-ring least-squares a_i of rho_i(m) sqrt(m) / amplitude = a_i + b_i / m (docstring)."""
    network, lattice = ReactionNetwork.parse(["A"], [rule]), Lattice((LENGTH,))
    rng = np.random.default_rng(seed)
    m = np.arange(STEPS // EVERY + 1) * EVERY
    use = m >= FIRST
    counts = []
    for start in range(0, rings, CHUNK):
        n = min(CHUNK, rings - start)
        states = run(network, lattice, np.ones((n, LENGTH), np.int8), STEPS, 0.01, rng,
                     record_every=EVERY)  # fmt: skip
        counts.append((states[:, use] == 1).sum(axis=2))
    y = np.concatenate(counts) / LENGTH * np.sqrt(m[use]) / amplitude  # (rings, times)
    design = np.stack([np.ones(use.sum()), 1.0 / m[use]], axis=1)
    a, _ = np.linalg.lstsq(design, y.T, rcond=None)[0]
    return a


@pytest.mark.parametrize(
    "rule, amplitude, rings",
    [
        ("A + A -> 0 @ 1", 1 / np.sqrt(4 * np.pi), 4000),
        ("A + A -> A @ 1", 1 / np.sqrt(np.pi), 1000),
    ],
)
def test_density_decay_amplitude(rule, amplitude, rings):
    a = fitted_amplitudes(rule, amplitude, rings, seed=13)
    se = a.std(ddof=1) / np.sqrt(rings)
    # power: a 5 % error in D (2.4 % in the amplitude) must lie >= 2 Z se away from the truth
    assert 2 * Z * se <= 1 - 1 / np.sqrt(1.05), f"standard error {se:.2%} too large"
    assert_close(a.mean(), 1.0, se)
