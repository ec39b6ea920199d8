"""Lattice stochastic simulation of reaction-diffusion (paper §IV, after Takayasu & Tretyakov).

The state is an ``int8`` array over the flat sites of a ``Lattice``: 0 empty, 1..M the species of
a ``ReactionNetwork`` (so a site never holds two particles). One time step Δt has two phases.

1. **Unimolecular reactions** by Gillespie's direct method over [t, t + Δt). The propensity of a
   rule ``A -> ...`` with rate k is k·n_A; ``0 -> A`` has propensity k·n_0 (n_0 empty sites: every
   empty site turns into an A at rate k). Waiting times are exponential in the total propensity,
   the rule is chosen in proportion to its propensity, and propensities are recomputed after every
   event; an event that would fall after t + Δt is discarded (the process is memoryless, so the
   next step draws afresh). An event acts on a uniformly random particle of the reactant species
   (``0 -> A``: a uniformly random empty site): ``A -> 0`` removes it, ``A -> B`` converts it in
   place, ``A -> P1 + P2`` leaves ``P1`` on its site and puts ``P2`` on a uniformly random *empty*
   in-lattice neighbour; when the parent has no empty neighbour the event does nothing (a blocked
   birth is lost, so each particle effectively buds at rate k onto its free neighbours).
   Particles made in this phase take part in the following sweep.
2. **Hop sweep.** Every particle present at the start of the sweep gets one hop attempt, in a
   uniformly random order. It picks one of the 2·d directions uniformly; on a ``reflecting``
   lattice a direction leaving the lattice is a rejected hop (the particle stays). If the chosen
   neighbour is empty the particle moves there. If it holds a particle and the network has
   bimolecular rules for the two species (in either order), one of them fires with its
   probability (several rules for one pair: rule i fires with probability p_i, at most one fires,
   and none with probability 1 - Σ p_i); otherwise the particle stays. Products are placed as in
   ``dbdflow.simulate.reactions``: none empties both sites, one product sits on the target site,
   two go to the sites of their reactants. Particles keep their identity through a collision: a
   product on a reactant's site *is* that reactant, so a target that has not hopped yet still
   hops later in the sweep (with its new species), a particle removed before its turn is skipped,
   and the mover has used its attempt. No collision creates a particle, so no particle created
   during a sweep hops in it.

Δt enters only the unimolecular phase: every particle attempts one hop per step. A free particle
moves one lattice spacing a per step along one of 2·d directions, so its mean square displacement
grows by a² per step and the diffusion constant is D = a² / (2·d·Δt).

Costs (``trajectory`` keeps the occupied sites and the sites of every parent species in lists):
a sweep over n particles costs O(n). A unimolecular event costs O(R) for R unimolecular rules
(drawing the next event sums the R propensities; the standard semantics also draw once at the
start of every step) plus its parent draw, O(1) in the standard semantics (and O(d) to find an
empty neighbour for a second product). In the ``paper`` semantics a blocked two-product event
draws up to 20 parents, and in 2D and 3D each parent draw (item 6 below) is a rejection loop
over planes, rows and the sites of a row: O(1) expected for a dense species, but for a sparse
one up to an expected n_planes + n_rows + n_per_row draws (a single particle), i.e. O(L) for
side length L. Recording a snapshot costs O(sites).

``semantics="paper"`` reproduces the choices of the paper's original simulator (items 1-5 are
those of DESIGN.md §3; item 6 was found in the original code and is needed, with items 1-5, to
reproduce its Rössler means):

1. a two-product unimolecular event draws a random parent; when it has no empty neighbour
   another random parent is drawn, up to 20 parents in all, after which the event is dropped;
2. collision products are placed as already moved: neither product hops again in the sweep, so
   a target that reacts before its own turn loses its hop; two products go ``P1`` to the target
   site and ``P2`` to the mover's site;
3. the next unimolecular event (time and rule) is drawn from the propensities when it is
   scheduled (at the start, and after each event) and stays pending across steps although hops
   change the counts; a pending event whose species has died out does nothing;
4. ``0 -> A`` has propensity k·n_A, or k when there is no A, and puts the A on a uniformly random
   empty site anywhere;
5. a particle picks its hop uniformly among its *in-lattice* neighbours (an edge site of a
   reflecting lattice has fewer choices and never rejects a hop). The paper's lattices were
   reflecting, so ``paper`` configs should use ``boundary="reflecting"``; on periodic lattices
   this item changes nothing;
6. the parent of a unimolecular event is drawn as the original's lattice scan along randomly
   permuted coordinates drew it: a uniformly random one of the axis-0 planes holding the species,
   then a uniformly random one of that plane's rows (along the last axis) holding it, then a
   uniformly random one of that row's particles (in 2D: row, then particle; in 1D: uniform). This
   favours particles in sparsely filled rows and planes, e.g. isolated parents that have room for
   a birth. On the Rössler system (eq. 42) it raises A's minimum mean count from ≈ 43 to ≈ 61
   and lowers C's maximum from ≈ 307 to ≈ 271; the B peak (≈ 485) is unchanged.

The original drew its sweep order by the same biased scan; reproducing that changes the Rössler
means by less than their standard errors at 200 runs, so the order stays uniform. It tested
several rules of one pair in turn with fresh draws (rule i then fires with probability
p_i Π_{j<i} (1 - p_j)); no system of the paper has two rules for one pair, and both semantics
use one draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dbdflow.simulate.lattice import Lattice
from dbdflow.simulate.reactions import ReactionNetwork
from dbdflow.simulate.trajectory import IN_LATTICE, PERIODIC, REJECT, trajectory

SEMANTICS = ("standard", "paper")


def run(
    network: ReactionNetwork,
    lattice: Lattice,
    initial: np.ndarray,
    n_steps: int,
    dt: float,
    rng: np.random.Generator | Sequence[np.random.Generator],
    record_every: int = 1,
    semantics: str = "standard",
) -> np.ndarray:
    """Simulate ``n_traj`` trajectories of ``n_steps`` steps of length ``dt``.

    Parameters
    ----------
    network, lattice : the reactions and the geometry (boundaries come from the lattice).
    initial : int8 array (n_traj, n_sites), codes 0..M.
    n_steps : number of steps, a multiple of ``record_every``.
    dt : step length Δt > 0 (only the unimolecular phase depends on it).
    rng : one Generator, used for the trajectories in order, or one Generator per trajectory
        (then trajectory i depends only on ``rng[i]``, whatever the batch).
    record_every : keep the state every this many steps.
    semantics : "standard" or "paper" (module docstring). The paper's simulator had reflecting
        boundaries (item 5); ``paper`` on a periodic lattice is accepted without a warning, but
        it is then not the original simulator: items 1-4 and 6 apply, item 5 changes nothing.

    Returns
    -------
    int8 array (n_traj, n_steps // record_every + 1, n_sites); record r is the state after
    ``r * record_every`` steps (record 0 is ``initial``).
    """
    states, _ = run_with_hop_counts(
        network, lattice, initial, n_steps, dt, rng, record_every, semantics
    )
    return states


def run_with_hop_counts(
    network: ReactionNetwork,
    lattice: Lattice,
    initial: np.ndarray,
    n_steps: int,
    dt: float,
    rng: np.random.Generator | Sequence[np.random.Generator],
    record_every: int = 1,
    semantics: str = "standard",
) -> tuple[np.ndarray, np.ndarray]:
    """``run`` that also returns the number of hop attempts of each trajectory (int64, n_traj)."""
    if not isinstance(network, ReactionNetwork):
        raise ValueError(f"network must be a ReactionNetwork, got {type(network).__name__}")
    if not isinstance(lattice, Lattice):
        raise ValueError(f"lattice must be a Lattice, got {type(lattice).__name__}")
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    initial = _check_initial(initial, lattice, network)
    n_traj = initial.shape[0]
    for name, value in (("n_steps", n_steps), ("record_every", record_every)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if n_steps < 0 or record_every < 1:
        raise ValueError(f"need n_steps >= 0 and record_every >= 1, got {n_steps}, {record_every}")
    if n_steps % record_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of record_every ({record_every})")
    if isinstance(dt, bool) or not isinstance(dt, int | float | np.floating | np.integer):
        raise ValueError(f"dt must be a number, got {dt!r}")
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be finite and > 0, got {dt}")
    generators = _generators(rng, n_traj)

    paper = semantics == "paper"
    tables = _tables(network, lattice, paper)
    n_records = n_steps // record_every + 1
    states = np.empty((n_traj, n_records, lattice.n_sites), dtype=np.int8)
    hops = np.zeros(n_traj, dtype=np.int64)
    for i in range(n_traj):
        hops[i] = trajectory(
            initial[i], states[i], int(n_steps), int(record_every), float(dt), generators[i],
            *tables, paper,
        )  # fmt: skip
    return states, hops


def _check_initial(initial: object, lattice: Lattice, network: ReactionNetwork) -> np.ndarray:
    if not isinstance(initial, np.ndarray) or initial.dtype != np.int8:
        kind = initial.dtype if isinstance(initial, np.ndarray) else type(initial).__name__
        raise ValueError(f"initial must be an int8 numpy array (n_traj, n_sites), got {kind}")
    if initial.ndim != 2 or initial.shape[1] != lattice.n_sites:
        raise ValueError(
            f"initial must have shape (n_traj, {lattice.n_sites}) for lattice {lattice.shape}, "
            f"got {initial.shape}"
        )
    if initial.size and (initial.min() < 0 or initial.max() > network.n_species):
        raise ValueError(
            f"initial states must hold codes 0 (empty) to {network.n_species} "
            f"({', '.join(network.species)}), got values in [{initial.min()}, {initial.max()}]"
        )
    return np.array(initial, dtype=np.int8, order="C")


def _generators(rng: object, n_traj: int) -> list[np.random.Generator]:
    if isinstance(rng, np.random.Generator):
        return [rng] * n_traj
    if isinstance(rng, Sequence) and all(isinstance(g, np.random.Generator) for g in rng):
        if len(rng) != n_traj:
            raise ValueError(f"rng: got {len(rng)} generators for {n_traj} trajectories")
        return list(rng)
    raise ValueError(
        "rng must be a numpy Generator or a sequence of one Generator per trajectory, "
        f"got {type(rng).__name__}"
    )


def _tables(network: ReactionNetwork, lattice: Lattice, paper: bool) -> tuple:
    """Flat arrays for ``trajectory``: geometry, unimolecular rules, collision table, lists."""
    # geometry: a hop in direction d goes to site + offset[d], unless bit d of edge[site] says it
    # crosses the boundary: then periodic lattices add wrap[d] instead, reflecting ones reject
    # the hop (standard) or pick among in-lattice directions only (paper item 5)
    sites = np.arange(lattice.n_sites, dtype=np.int32)
    strides = np.cumprod((1, *lattice.shape[:0:-1]))[::-1]
    offset = np.repeat(strides, 2) * np.tile([-1, 1], lattice.ndim)
    wrap = -offset * (np.repeat(lattice.shape, 2) - 1)
    edge = np.zeros(lattice.n_sites, dtype=np.int8)
    for d, column in enumerate(lattice.neighbours.T):
        crosses = (column < 0) | (column != sites + np.int32(offset[d]))  # -1: off the edge
        edge |= crosses.astype(np.int8) << d
    if lattice.boundary == "periodic":
        mode = PERIODIC
    else:
        mode = IN_LATTICE if paper else REJECT

    reactant, rate, first, second = network.unimolecular_arrays()
    m1 = network.n_species + 1
    row_of = np.full(m1, -1, dtype=np.int64)
    for code in np.unique(reactant):  # species drawn as random parents (0: empty sites)
        row_of[code] = int(row_of.max()) + 1

    # collision table over ordered pairs (mover, target): cumulative probability, new species
    # on the mover's site and on the target site
    entries: list[list[tuple[float, int, int]]] = [[] for _ in range(m1 * m1)]
    for mover, target, p, at_origin, at_target in network.collisions(paper):
        entries[mover * m1 + target].append((p, at_origin, at_target))
    pair_start = np.zeros(m1 * m1 + 1, dtype=np.int64)
    pair_start[1:] = np.cumsum([len(e) for e in entries])
    flat = [item for e in entries for item in e]
    pair_cum = np.zeros(len(flat), dtype=np.float64)
    for e, start in zip(entries, pair_start[:-1], strict=True):
        pair_cum[start : start + len(e)] = np.cumsum([p for p, _, _ in e])
    pair_origin = np.array([o for _, o, _ in flat], dtype=np.int64).reshape(-1)
    pair_target = np.array([t for _, _, t in flat], dtype=np.int64).reshape(-1)
    # paper item 6: parents drawn plane -> row -> particle over the shape seen as (planes, rows,
    # sites per row); off (0) in 1D and in the standard semantics
    scan_shape = (1,) * (3 - lattice.ndim) + lattice.shape
    n_planes = scan_shape[0] if paper and lattice.ndim > 1 else 0
    return (
        edge, offset, wrap, mode, reactant, rate, first, second,
        pair_start, pair_cum, pair_origin, pair_target, row_of,
        n_planes, scan_shape[1], scan_shape[2],
    )  # fmt: skip
