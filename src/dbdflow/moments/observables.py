"""Extensive lattice observables (the moments μ_k of paper eq. 3, discretised as in §IV).

For states ``(n_traj, n_records, n_sites)`` with species codes 1..M:

- ``counts[..., a]``: number of particles of species a, Σ_i v_{i,a};
- ``pairs[..., p]``: nearest-neighbour pairs per unordered species pair p = (a <= b), in the order
  of :func:`pair_labels`; every lattice bond counts once, so on a ring Σ_i v_{i,A} v_{i+1,A} for
  (A, A) and Σ_bonds [v_{i,A} v_{j,B} + v_{i,B} v_{j,A}] for (A, B) (reflecting: inner bonds only);
- 1D only: ``pairs_d2[..., p]`` the same for sites at distance 2 (Σ_i v_i v_{i+2}, eq. 36), and
  ``strings2``, ``strings3``, ``strings4`` [..., a]: same-species strings Σ_i v_{i,a} v_{i+1,a}…
  v_{i+L-1,a} of length L = 2, 3, 4 (a string is counted only if all its sites exist; on a ring of
  N sites every start i counts, so rings should have N >= 4).

All are int64 and exact, so sums over trajectories, batches and MPI ranks are exact too.
"""

from __future__ import annotations

import numba
import numpy as np

from dbdflow.simulate import Lattice


def pair_labels(species) -> list[str]:
    """Unordered species pairs in storage order: AA, AB, ..., BB, ... (a <= b in species order)."""
    species = list(species)
    return [species[a] + species[b] for a in range(len(species)) for b in range(a, len(species))]


def observable_names(lattice: Lattice) -> tuple[str, ...]:
    base = ("counts", "pairs")
    if lattice.ndim == 1:
        return (*base, "pairs_d2", "strings2", "strings3", "strings4")
    return base


def observables(states: np.ndarray, lattice: Lattice, network) -> dict[str, np.ndarray]:
    """Observables of every recorded lattice; arrays have shape ``states.shape[:-1] + (…,)``.

    ``network`` is anything with a ``species`` sequence (a ReactionNetwork, or the species list).
    """
    species = getattr(network, "species", network)
    n_species = len(species)
    states = np.asarray(states)
    if states.dtype != np.int8:
        raise ValueError(f"states must be int8, got {states.dtype}")
    if states.shape[-1] != lattice.n_sites:
        raise ValueError(
            f"states have {states.shape[-1]} sites but the lattice has {lattice.n_sites}"
        )
    lead = states.shape[:-1]
    flat = np.ascontiguousarray(states.reshape(-1, lattice.n_sites))
    if flat.size and (flat.min() < 0 or flat.max() > n_species):
        raise ValueError(f"states hold codes outside 0..{n_species} (species {list(species)})")
    pair_index = _pair_index(n_species)
    n_pairs = n_species * (n_species + 1) // 2
    out = {
        "counts": _counts(flat, n_species),
        "pairs": _pair_counts(flat, lattice.bonds, pair_index, n_pairs),
    }
    if lattice.ndim == 1:
        up = np.ascontiguousarray(lattice.neighbours[:, 1])
        two = np.where(up >= 0, up[np.maximum(up, 0)], -1).astype(np.int32)
        starts = np.nonzero(two >= 0)[0]
        d2 = np.stack([starts, two[starts]], axis=1).astype(np.int32)
        out["pairs_d2"] = _pair_counts(flat, d2, pair_index, n_pairs)
        for length in (2, 3, 4):
            out[f"strings{length}"] = _strings(flat, up, n_species, length)
    return {k: v.reshape(*lead, v.shape[-1]) for k, v in out.items()}


def _pair_index(n_species: int) -> np.ndarray:
    """index[a, b] of the unordered pair of species codes a, b (1-based) in pair_labels order."""
    index = np.full((n_species + 1, n_species + 1), -1, dtype=np.int64)
    p = 0
    for a in range(1, n_species + 1):
        for b in range(a, n_species + 1):
            index[a, b] = index[b, a] = p
            p += 1
    return index


@numba.njit(cache=True)
def _counts(flat, n_species):
    out = np.zeros((flat.shape[0], n_species), dtype=np.int64)
    for r in range(flat.shape[0]):
        for i in range(flat.shape[1]):
            s = flat[r, i]
            if s > 0:
                out[r, s - 1] += 1
    return out


@numba.njit(cache=True)
def _pair_counts(flat, bonds, pair_index, n_pairs):
    out = np.zeros((flat.shape[0], n_pairs), dtype=np.int64)
    for r in range(flat.shape[0]):
        row = flat[r]
        for k in range(bonds.shape[0]):
            a = row[bonds[k, 0]]
            b = row[bonds[k, 1]]
            if a > 0 and b > 0:
                out[r, pair_index[a, b]] += 1
    return out


@numba.njit(cache=True)
def _strings(flat, up, n_species, length):
    out = np.zeros((flat.shape[0], n_species), dtype=np.int64)
    for r in range(flat.shape[0]):
        row = flat[r]
        for i in range(flat.shape[1]):
            s = row[i]
            if s == 0:
                continue
            j = i
            ok = True
            for _ in range(length - 1):
                j = up[j]
                if j < 0 or row[j] != s:
                    ok = False
                    break
            if ok:
                out[r, s - 1] += 1
    return out
