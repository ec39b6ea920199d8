"""Classic moment closures of the lattice process: mean field and the pair approximation.

Baselines for the learned reduced models (paper eqs. 36 and 43). Both integrate approximate
equations for the means of the observables of ``dbdflow.moments.observables`` from the same data
means at ``times[0]``, for the lattice process that ``dbdflow.simulate.run`` simulates.

**Continuous-time picture of one step Δt.** The unimolecular phase is already a continuous-time
process (SSA). The hop sweep is replaced by Poisson hop attempts: each particle attempts a hop at
rate 1/Δt, to each of the z = 2d directions at rate h = 1/(zΔt) (a direction leaving a
reflecting lattice is a rejected hop). Per *ordered* bond (i, j) with states (a, b):

* a ≠ ∅, b = ∅: exchange (a, ∅) → (∅, a) at rate h (and (∅, b) → (b, ∅) from j);
* a, b ≠ ∅: every bimolecular rule for a mover a and a target b fires at rate h·p, putting its
  products as the simulator does (none: both sites empty; one: at the target, the mover's site
  empties; two: each at its reactant's site). A rule R1 + R2 with R1 ≠ R2 acts whichever
  reactant hops, so an unordered (R1, R2) bond reacts at rate 2hp; an R + R rule fires once per
  collision, so an (R, R) bond also reacts at 2hp.

Unimolecular rules: ``A -> 0``/``A -> B`` turn a site at rate k; ``0 -> X`` turns each empty site
into X at rate k; ``A -> P1 + P2`` lets each A with at least one empty neighbour fire at rate k,
its site becoming P1 and a uniformly chosen empty neighbour P2 (a parent with m empty neighbours
targets each at rate k/m). Extensive sums use the lattice's N sites and B bonds; local
neighbourhoods use the mean degree z̄ = 2B/N (= z on periodic lattices), so the total hop rate of
the bond terms, 2B·h, is that of the simulator also on reflecting lattices.

**Moment equations.** Write ρ_a = ⟨n_a⟩/N (a = ∅ included) and P(a, b) for the probability that
an ordered bond holds (a, b), so the pair observable is B·P(a, a), or B·[P(a, b) + P(b, a)]. Each
collision rule contributes to d⟨n_a⟩/dt exactly h·p·⟨ordered (mover, target) bond count⟩ times
the change of n_a; in-place rules k·⟨n_A⟩; creation k·⟨n_∅⟩. For A + A → ∅ in 1D this is paper
eq. 36 with k_r = 2hp: dN/dt = −2k_r Π₁ and dΠ₁/dt = 2hΠ₂ − (2h + k_r)Π₁ − 2k_r T, with Π₂ the
distance-2 pairs and T the strings of three. Pair equations follow the same way: a bond (i, j)
changes by events on the bond itself (exchange, collision, a birth from i onto j), and by events
that change one endpoint only: in-place rules and creation at i; exchange or collision between
i and one of its z̄ − 1 other neighbours k (in the state (a, c) of (i, k)); births of i onto
another neighbour (changing i only if P1 ≠ A); births of such a neighbour onto an empty i. The
rates of the last three depend on the third site k, so the hierarchy does not close.

**Mean field** (product measure): P(a, b) = ρ_a ρ_b and every neighbour of a site is c with
probability ρ_c. Then dρ/dt is a master equation for one site with rate matrix K[a, a'] =
(in-place and creation rates) + z̄ Σ_c ρ_c G[a, c, a'], G[a, c, a'] the rate at which a bond in
state (a, c) turns its first site into a' (both hop directions), plus births: a parent fires at
k(1 − (1 − ρ_∅)^z̄), and an empty site receives P2 at z̄ ρ_A k E₁(ρ_∅), where
E₁(q) = E[1/(1 + X)] = (1 − (1 − q)^z̄)/(z̄ q) for X ~ Binomial(z̄ − 1, q) (the chance that a
parent picks one given empty neighbour). Strings and distance-2 pairs are ρ^L and ρ_a ρ_b.

**Pair approximation**: the neighbours of a site other than a given one are independent and
distributed as ν(c | a) = P(a, c)/ρ_a, i.e. triplets close by the Kirkwood superposition
P(b, a, c) ≈ P(b, a) P(a, c)/ρ_a on a Bethe-lattice-like neighbourhood of coordination z̄. The
state is the symmetric matrix P (ρ_a = Σ_b P(a, b)) with dP(a, b)/dt = Σ [P(a', b') W(a'b' → ab)
− P(a, b) W(ab → a'b')] over the bond's own events (exchange, which is the diffusion term of the
pair dynamics, collisions, births along the bond at k·E₁(ν(∅|A))) and the one-endpoint events of
each site given the other, with the z̄ − 1 further neighbours drawn from ν(·|a): exchange and
collisions at (z̄ − 1) Σ_c ν(c|a) G[a, c, a']; a parent A with an empty (occupied) bond partner
fires elsewhere at k(1 − E₁) (k(1 − (1 − q)^(z̄−1))), q = ν(∅|A); an empty site receives P2 from
another neighbour at (z̄ − 1) ν(A|∅) k E₁. Summing over b gives back the one-site equation with
ν in place of ρ, so the counts obey the exact count equation given the closed pairs. Product
measure is stationary under exclusion hopping, in-place rules and creation, so from a product
state without births or collisions both closures coincide and are exact. In 1D the chain is
Markov under the closure: strings of L are P(a, a)^(L−1)/ρ_a^(L−2) per window (L = 3:
P(AA)²/P(A), L = 4: P(AA)³/P(A)²) and distance-2 pairs Σ_c P(a, c) P(c, b)/ρ_c.

Windows per extensive sum: N sites, B bonds, and in 1D N (periodic) or N − L + 1 (reflecting)
for strings of L and N or N − 2 for distance-2 pairs.

``semantics="paper"`` follows the paper simulator's choices that survive the continuous-time
limit: the hop rate per direction is 1/(deg·Δt) (here 1/(z̄Δt), item 5), a birth tries up to 20
parents (an unblocked parent fires at k·Σ_{m<20} β^m with β = (1 − q)^z̄ the blocked fraction,
item 1), ``0 -> X`` has total rate k·max(n_X, 1) spread over the empty sites (item 4), and
two-product collisions put P1 on the target (item 2). Its other items (products counted as moved,
pending unimolecular events, biased parent scans) have no place in these closures.

**Integration**: classical RK4 with a fixed step, at most ``max_step`` and dividing each interval
between output times; by default 0.25/λ, with λ a bound on the total exit rate of a bond state
(so every eigenvalue of the linearised generator has |eigenvalue|·step ≤ 0.5, well inside RK4's
stability region). The global error is then ≲ 1e-6 relative (measured by step halving on the
paper's systems; doubling the step gives ≲ 1e-5), far below the simulations' standard errors.
All ICs are integrated together as one batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dbdflow.moments.observables import observable_names
from dbdflow.simulate import SEMANTICS, Lattice, ReactionNetwork

PAPER_PARENT_ATTEMPTS = 20  # parents a birth tries in the paper semantics (simulator item 1)
STEP_SAFETY = 0.25  # λ·step of the default RK4 step
_TINY = 1e-300


def mean_field(
    network: ReactionNetwork,
    lattice: Lattice,
    dt: float,
    initial: Mapping[str, np.ndarray],
    times: np.ndarray,
    *,
    semantics: str = "standard",
    max_step: float | None = None,
) -> dict[str, np.ndarray]:
    """Mean-field (product-measure) predictions of the observables' means at ``times``.

    Parameters
    ----------
    network, lattice, dt : the simulated process (``dt`` is the simulator's step Δt).
    initial : observables' means at ``times[0]`` in the layout of ``observables``; only
        ``counts`` (n_ic, M) or (M,) is used.
    times : nondecreasing times (same units as ``dt``); ``times[0]`` is the initial time.
    semantics : "standard" or "paper", as in ``dbdflow.simulate.run``.
    max_step : largest RK4 step (default from the rates, module docstring).

    Returns
    -------
    dict name -> float array (n_ic, n_times, …), or (n_times, …) for unbatched ``initial``, for
    every name of ``observable_names(lattice)`` (counts, pairs; 1D: pairs_d2, strings2-4).
    """
    process = Process.build(network, lattice, dt, semantics)
    counts, batched = _read_counts(initial, process)
    dens = counts / process.n_sites
    rho = np.concatenate([1.0 - dens.sum(axis=1, keepdims=True), dens], axis=1)
    times = _read_times(times)
    path = integrate_rk4(process.mean_field_rhs, rho, times, process.step(max_step))
    pairs = path[..., :, None] * path[..., None, :]
    out = _observables(process, lattice, path, pairs, markov=False)
    return _unbatch(out, batched)


def pair_approximation(
    network: ReactionNetwork,
    lattice: Lattice,
    dt: float,
    initial: Mapping[str, np.ndarray],
    times: np.ndarray,
    *,
    semantics: str = "standard",
    max_step: float | None = None,
) -> dict[str, np.ndarray]:
    """Pair-approximation (Kirkwood/Bethe closure) predictions of the means at ``times``.

    As ``mean_field``, but ``initial`` needs ``counts`` and ``pairs`` (n_ic, M(M+1)/2) in
    ``pair_labels`` order. Bond probabilities with an empty site are the complements
    P(a, ∅) = ρ_a − Σ_b P(a, b); on reflecting lattices, where bonds see edge sites less often,
    a negative complement is set to 0.
    """
    process = Process.build(network, lattice, dt, semantics)
    counts, batched = _read_counts(initial, process)
    bond_pairs = _read_pairs(initial, process, counts.shape[0], batched)
    times = _read_times(times)
    path = integrate_rk4(
        process.pair_rhs, _pair_state(process, counts, bond_pairs), times, process.step(max_step)
    )
    out = _observables(process, lattice, path.sum(axis=-1), path, markov=True)
    return _unbatch(out, batched)


@dataclass(frozen=True)
class Process:
    """Rate tables of the continuous-time lattice process (S = M + 1 states, 0 = empty)."""

    n_species: int
    n_sites: int
    n_bonds: int
    z: float  # mean degree 2B/N
    bond: np.ndarray  # (S, S, S, S) rate of ordered bond (a, b) -> (a', b'), both hop directions
    bond_exit: np.ndarray  # (S, S) total rate out of bond state (a, b)
    from_bond: np.ndarray  # (S, S, S) G[a, c, a']: bond (a, c) turns its first site into a'
    site: np.ndarray  # (S, S) in-place rules, and creation per empty site (standard)
    births: tuple[tuple[int, float, int, int], ...]  # (parent, k, first, second)
    creations: tuple[tuple[int, float], ...]  # paper item 4: (species, k)
    paper: bool

    @classmethod
    def build(cls, network, lattice, dt, semantics) -> Process:
        if not isinstance(network, ReactionNetwork):
            raise ValueError(f"network must be a ReactionNetwork, got {type(network).__name__}")
        if not isinstance(lattice, Lattice):
            raise ValueError(f"lattice must be a Lattice, got {type(lattice).__name__}")
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
        if isinstance(dt, bool) or not isinstance(dt, int | float | np.integer | np.floating):
            raise ValueError(f"dt must be a number, got {dt!r}")
        if not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be finite and > 0, got {dt}")
        paper = semantics == "paper"
        n_sites, n_bonds = lattice.n_sites, len(lattice.bonds)
        z = 2.0 * n_bonds / n_sites
        if n_bonds == 0:
            hop = 0.0
        else:
            hop = 1.0 / ((z if paper else lattice.coordination) * dt)
        s = network.n_species + 1

        one_way = np.zeros((s, s, s, s))  # mover at the first site
        for a in range(1, s):
            one_way[a, 0, 0, a] = 1.0
        for mover, target, p, origin, at_target in network.collisions(paper):
            one_way[mover, target, origin, at_target] += p
        bond = hop * (one_way + one_way.transpose(1, 0, 3, 2))
        for a in range(s):  # events that change nothing
            for b in range(s):
                bond[a, b, a, b] = 0.0
        bond_exit = bond.sum(axis=(2, 3))
        from_bond = bond.sum(axis=3)
        for a in range(s):
            from_bond[a, :, a] = 0.0

        site = np.zeros((s, s))
        births, creations = [], []
        reactant, rate, first, second = network.unimolecular_arrays()
        for r, k, f, sec in zip(reactant, rate, first, second, strict=True):
            r, k, f, sec = int(r), float(k), int(f), int(sec)
            if r == 0 and paper:
                creations.append((f, k))
            elif sec == 0 or r == 0:
                site[r, f] += k
            elif n_bonds > 0:  # a birth needs a neighbour
                births.append((r, k, f, sec))
        return cls(
            network.n_species,
            n_sites,
            n_bonds,
            z,
            bond,
            bond_exit,
            from_bond,
            site,
            tuple(births),
            tuple(creations),
            paper,
        )

    def step(self, max_step: float | None) -> float:
        """The RK4 step bound: ``max_step`` or STEP_SAFETY/λ (module docstring)."""
        if max_step is not None:
            if isinstance(max_step, bool) or not isinstance(max_step, int | float | np.floating):
                raise ValueError(f"max_step must be a number, got {max_step!r}")
            if not math.isfinite(max_step) or max_step <= 0:
                raise ValueError(f"max_step must be finite and > 0, got {max_step}")
            return float(max_step)
        per_site = (
            self.z * self.from_bond.sum(axis=2).max()
            + self.site.sum(axis=1).max()
            + sum(k * max(self.z, 1.0) for _, k, _, _ in self.births)
            + sum(k for _, k in self.creations)
        )
        bound = self.bond_exit.max() + 2.0 * per_site
        return STEP_SAFETY / bound if bound > 0 else math.inf

    # ---- right-hand sides, batched over ICs (leading axis n)

    def mean_field_rhs(self, rho: np.ndarray) -> np.ndarray:
        """dρ/dt of the one-site master equation, ``rho`` (n, S)."""
        z = self.z
        rates = self.site + z * np.einsum("nc,acd->nad", rho, self.from_bond)
        self._add_creations(rates, rho)
        q = np.clip(rho[:, 0], 0.0, 1.0)
        for parent, k, first, second in self.births:
            fire = k * self._attempts(q)
            if first != parent:
                rates[:, parent, first] += fire * _blocked_complement(q, z)
            rates[:, 0, second] += z * np.maximum(rho[:, parent], 0.0) * fire * _e1(q, z)
        return np.einsum("na,nad->nd", rho, rates) - rho * rates.sum(axis=2)

    def pair_rhs(self, pairs: np.ndarray) -> np.ndarray:
        """dP/dt of the bond probabilities under the Kirkwood closure, ``pairs`` (n, S, S)."""
        z = self.z
        s = pairs.shape[1]
        rho = pairs.sum(axis=2)
        nu = _conditional(pairs, rho)  # nu[n, a, c] = P(c | a)
        # one-endpoint rates off[n, a, a', b]: the site in state a, its bond partner in state b
        common = self.site + (z - 1.0) * np.einsum("nac,acd->nad", nu, self.from_bond)
        self._add_creations(common, rho)
        off = np.repeat(common[:, :, :, None], s, axis=3)
        d = np.einsum("nab,abcd->ncd", pairs, self.bond) - pairs * self.bond_exit
        for parent, k, first, second in self.births:
            q = nu[:, parent, 0]
            fire = k * self._attempts(q)
            along = fire * _e1(q, z)  # parent picks its given empty partner
            flow = along * pairs[:, parent, 0]  # = along * P(∅, A) by symmetry
            d[:, parent, 0] -= flow
            d[:, 0, parent] -= flow
            d[:, first, second] += flow
            d[:, second, first] += flow
            if first != parent:
                off[:, parent, first, 0] += fire - along
                off[:, parent, first, 1:] += (fire * _blocked_complement(q, z - 1.0))[:, None]
            off[:, 0, second, :] += ((z - 1.0) * nu[:, 0, parent] * along)[:, None]
        exit_site = off.sum(axis=2)  # [n, a, b]
        d += np.einsum("nxb,nxab->nab", pairs, off) + np.einsum("nay,nyba->nab", pairs, off)
        d -= pairs * (exit_site + exit_site.transpose(0, 2, 1))
        return 0.5 * (d + d.transpose(0, 2, 1))

    def _attempts(self, q: np.ndarray) -> np.ndarray:
        """Factor on the rate of an unblocked parent: 1, or Σ_{m<20} β^m (paper item 1)."""
        if not self.paper:
            return np.ones_like(q)
        beta = np.minimum(1.0 - _blocked_complement(q, self.z), 1.0 - 1e-12)
        return (1.0 - beta**PAPER_PARENT_ATTEMPTS) / (1.0 - beta)

    def _add_creations(self, rates: np.ndarray, rho: np.ndarray) -> None:
        """Paper item 4: total rate k·max(n_X, 1) spread over the empty sites."""
        empty = rho[:, 0] * self.n_sites
        for species, k in self.creations:
            total = k * np.maximum(rho[:, species] * self.n_sites, 1.0)
            rates[:, 0, species] += np.where(empty > 1e-12, total / np.maximum(empty, 1e-12), 0.0)


def _blocked_complement(q: np.ndarray, m: float) -> np.ndarray:
    """1 − (1 − q)^m: the chance that at least one of m neighbours is empty."""
    q = np.clip(q, 0.0, 1.0)
    low = np.minimum(q, 0.5)
    return np.where(q < 0.5, -np.expm1(m * np.log1p(-low)), 1.0 - (1.0 - q) ** m)


def _e1(q: np.ndarray, z: float) -> np.ndarray:
    """E[1/(1 + X)], X ~ Binomial(z − 1, q): (1 − (1 − q)^z)/(z q), → 1 as q → 0."""
    q = np.clip(q, 0.0, 1.0)
    small = q < 1e-8
    safe = np.where(small, 1.0, q)
    return np.where(small, 1.0 - 0.5 * (z - 1.0) * q, _blocked_complement(safe, z) / (z * safe))


def _conditional(pairs: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """P(c | a) = P(a, c)/ρ_a (0 where ρ_a vanishes), negative round-off clipped."""
    positive = np.maximum(pairs, 0.0)
    return positive / np.maximum(rho, _TINY)[:, :, None] * (rho > _TINY)[:, :, None]


def integrate_rk4(rhs, state: np.ndarray, times: np.ndarray, max_step: float) -> np.ndarray:
    """Fixed-step RK4 (steps of at most ``max_step`` dividing each interval of ``times``);
    returns the states at ``times`` stacked on axis 1 (n, n_times, …)."""
    out = np.empty((state.shape[0], times.size, *state.shape[1:]))
    out[:, 0] = state
    y = state.copy()
    for i in range(1, times.size):
        span = times[i] - times[i - 1]
        n_steps = math.ceil(span / max_step - 1e-9) if span > 0 else 0
        h = span / max(n_steps, 1)
        for _ in range(n_steps):
            k1 = rhs(y)
            k2 = rhs(y + 0.5 * h * k1)
            k3 = rhs(y + 0.5 * h * k2)
            k4 = rhs(y + h * k3)
            y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out[:, i] = y
    return out


def _observables(process, lattice, rho, pairs, markov: bool) -> dict[str, np.ndarray]:
    """Extensive means from site densities ``rho`` (…, S) and bond probabilities (…, S, S)."""
    m = process.n_species
    upper = [(a, b) for a in range(1, m + 1) for b in range(a, m + 1)]

    def unordered(p, windows):
        cols = [p[..., a, a] if a == b else p[..., a, b] + p[..., b, a] for a, b in upper]
        return windows * np.stack(cols, axis=-1)

    out = {"counts": process.n_sites * rho[..., 1:], "pairs": unordered(pairs, process.n_bonds)}
    if lattice.ndim == 1:
        n, periodic = process.n_sites, lattice.boundary == "periodic"

        def windows(length):
            return n if periodic else max(n - length + 1, 0)

        dens = rho[..., 1:]
        if markov:  # P(a, c) P(c, b)/ρ_c and P(aa) (P(aa)/ρ_a)^(L-2), via conditionals <= 1
            flat = pairs.reshape(-1, *pairs.shape[-2:])
            nu = _conditional(flat, flat.sum(axis=-1)).reshape(pairs.shape)
            d2 = np.einsum("...ac,...cb->...ab", pairs, nu)
            same = np.diagonal(pairs, axis1=-2, axis2=-1)[..., 1:]
            stay = np.diagonal(nu, axis1=-2, axis2=-1)[..., 1:]
            strings = {length: same * stay ** (length - 2) for length in (2, 3, 4)}
        else:
            d2 = pairs
            strings = {length: dens**length for length in (2, 3, 4)}
        out["pairs_d2"] = unordered(d2, windows(3))
        for length, value in strings.items():
            out[f"strings{length}"] = windows(length) * value
    return {name: out[name] for name in observable_names(lattice)}


def _read_counts(initial, process) -> tuple[np.ndarray, bool]:
    if not isinstance(initial, Mapping) or "counts" not in initial:
        raise ValueError("initial must be a dict of observable means with at least 'counts'")
    counts = np.asarray(initial["counts"], dtype=np.float64)
    batched = counts.ndim == 2
    counts = np.atleast_2d(counts)
    m, n = process.n_species, process.n_sites
    if counts.ndim != 2 or counts.shape[1] != m:
        raise ValueError(
            f"initial['counts'] must have shape (n_ic, {m}) or ({m},), got "
            f"{np.shape(initial['counts'])}"
        )
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("initial['counts'] must be finite and >= 0")
    if (counts.sum(axis=1) > n * (1 + 1e-12)).any():
        raise ValueError(f"initial['counts'] must sum to at most the {n} sites per IC")
    return counts, batched


def _read_pairs(initial, process, n_ic, batched) -> np.ndarray:
    if "pairs" not in initial:
        raise ValueError("initial['pairs'] (NN pair means) is needed by the pair approximation")
    n_pairs = process.n_species * (process.n_species + 1) // 2
    pairs = np.asarray(initial["pairs"], dtype=np.float64)
    want = (n_ic, n_pairs) if batched else (n_pairs,)
    if pairs.shape != want:
        raise ValueError(
            f"initial['pairs'] must have shape {want} (pair_labels order), got {pairs.shape}"
        )
    if not np.isfinite(pairs).all() or (pairs < 0).any():
        raise ValueError("initial['pairs'] must be finite and >= 0")
    return np.atleast_2d(pairs)


def _pair_state(process, counts: np.ndarray, bond_pairs: np.ndarray) -> np.ndarray:
    """Symmetric bond probabilities P (n, S, S) from count and pair means."""
    m, n_ic = process.n_species, counts.shape[0]
    p = np.zeros((n_ic, m + 1, m + 1))
    if process.n_bonds > 0:
        col = 0
        for a in range(1, m + 1):
            for b in range(a, m + 1):
                value = bond_pairs[:, col] / process.n_bonds
                p[:, a, b] = value if a == b else 0.5 * value
                p[:, b, a] = p[:, a, b]
                col += 1
    rho = counts / process.n_sites
    p[:, 1:, 0] = np.maximum(rho - p[:, 1:, 1:].sum(axis=2), 0.0)
    p[:, 0, 1:] = p[:, 1:, 0]
    p[:, 0, 0] = np.maximum(1.0 - p[:, 1:, :].sum(axis=(1, 2)) - p[:, 0, 1:].sum(axis=1), 0.0)
    return p


def _read_times(times) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.isfinite(times).all():
        raise ValueError("times must be a non-empty 1D array of finite numbers")
    if (np.diff(times) < 0).any():
        raise ValueError("times must be nondecreasing (times[0] is the initial time)")
    return times


def _unbatch(out: dict[str, np.ndarray], batched: bool) -> dict[str, np.ndarray]:
    return out if batched else {k: v[0] for k, v in out.items()}
