"""Random initial lattice states (int8, 0 empty, 1..M species in network order).

``sample_counts`` places exactly ``counts[m]`` particles of species m + 1 on distinct sites, every
arrangement equally likely (uniform over the multinomial placements). ``sample_densities`` fills
every site independently: species m + 1 with probability ``densities[m]``, empty with probability
1 - Σ densities (a product measure, so counts are multinomial).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dbdflow.simulate.lattice import Lattice


def sample_counts(
    sites: int | Lattice,
    counts: Sequence[int],
    rng: np.random.Generator,
    size: int | None = None,
) -> np.ndarray:
    """Exactly ``counts[m]`` particles of species m + 1 on uniformly random distinct sites.

    Returns int8 (n_sites,), or (size, n_sites) when ``size`` is given.
    """
    n_sites = _n_sites(sites)
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be a list of integers, one per species, got {counts!r}")
    if counts.size > 127 or (counts < 0).any() or counts.sum() > n_sites:
        raise ValueError(
            f"counts must be >= 0, at most 127 species, summing to at most {n_sites} sites, "
            f"got {counts.tolist()}"
        )
    _check_rng(rng)
    n = _size(size)
    codes = np.repeat(np.arange(1, counts.size + 1, dtype=np.int8), counts)
    states = np.zeros((n, n_sites), dtype=np.int8)
    for row in states:
        row[rng.choice(n_sites, size=codes.size, replace=False, shuffle=True)] = codes
    return states if size is not None else states[0]


def sample_densities(
    sites: int | Lattice,
    densities: Sequence[float],
    rng: np.random.Generator,
    size: int | None = None,
) -> np.ndarray:
    """Each site independently holds species m + 1 with probability ``densities[m]``.

    Returns int8 (n_sites,), or (size, n_sites) when ``size`` is given.
    """
    n_sites = _n_sites(sites)
    try:
        densities = np.asarray(densities, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"densities must be a list of numbers, got {densities!r}") from None
    if densities.ndim != 1 or not 1 <= densities.size <= 127:
        raise ValueError(f"densities must list 1 to 127 numbers, got {densities!r}")
    if not np.isfinite(densities).all() or (densities < 0).any() or densities.sum() > 1 + 1e-12:
        raise ValueError(f"densities must be >= 0 and sum to at most 1, got {densities.tolist()}")
    _check_rng(rng)
    n = _size(size)
    u = rng.random((n, n_sites))
    # code m + 1 where cum[m-1] <= u < cum[m]; u >= sum(densities) stays empty
    states = np.searchsorted(np.cumsum(densities), u, side="right") + 1
    states[states > densities.size] = 0
    states = states.astype(np.int8)
    return states if size is not None else states[0]


def _n_sites(sites: object) -> int:
    if isinstance(sites, Lattice):
        return sites.n_sites
    if isinstance(sites, bool) or not isinstance(sites, int | np.integer) or sites < 1:
        raise ValueError(f"sites must be a Lattice or a positive number of sites, got {sites!r}")
    return int(sites)


def _size(size: object) -> int:
    if size is None:
        return 1
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise ValueError(f"size must be a non-negative integer or None, got {size!r}")
    return int(size)


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
