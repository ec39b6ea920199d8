"""Hypercubic lattices in 1, 2 or 3 dimensions.

Sites are flat indices in C order over ``shape``. ``neighbours[site, 2*a]`` is the neighbour one
step down along axis ``a`` and ``neighbours[site, 2*a + 1]`` the one step up; ``-1`` marks a missing
neighbour (an edge of a ``reflecting`` lattice). On a ``periodic`` axis of length 2 both directions
name the same site, and on an axis of length 1 a site is its own neighbour; both are legal but
degenerate, so lattices need at least 3 sites along each periodic axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOUNDARIES = ("periodic", "reflecting")


@dataclass(frozen=True, eq=False)
class Lattice:
    """A ``shape`` hypercubic lattice with ``periodic`` or ``reflecting`` boundaries.

    Attributes
    ----------
    shape : tuple of int
    boundary : "periodic" or "reflecting"
    ndim, n_sites : int
    neighbours : int32 array (n_sites, 2*ndim), -1 where the edge has no neighbour
    bonds : int32 array (n_bonds, 2), each unordered nearest-neighbour pair once, ``bonds[:, 0]``
        the site below ``bonds[:, 1]`` along the bond's axis (so in 1D, bond i is (i, i+1)).
    bond_axis : int8 array (n_bonds,), the axis of each bond
    """

    shape: tuple[int, ...]
    boundary: str = "periodic"
    neighbours: np.ndarray = field(init=False, repr=False)
    bonds: np.ndarray = field(init=False, repr=False)
    bond_axis: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = (self.shape,) if isinstance(self.shape, int | np.integer) else self.shape
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(
                f"lattice shape must be a tuple of 1-3 integers, got {self.shape!r}"
            ) from None
        if not 1 <= len(shape) <= 3 or any(s < 1 for s in shape):
            raise ValueError(
                f"lattice shape must have 1, 2 or 3 positive lengths, got {self.shape!r}"
            )
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"lattice boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.boundary == "periodic" and any(s < 3 for s in shape):
            raise ValueError(
                f"a periodic lattice needs at least 3 sites along every axis, got shape {shape}"
            )
        object.__setattr__(self, "shape", shape)
        neighbours = _neighbour_table(shape, self.boundary == "periodic")
        bonds, axis = _bonds(neighbours)
        for name, value in (("neighbours", neighbours), ("bonds", bonds), ("bond_axis", axis)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_sites(self) -> int:
        return int(np.prod(self.shape))

    @property
    def coordination(self) -> int:
        """Neighbours per site in the bulk (2 * ndim)."""
        return 2 * self.ndim

    def coordinates(self) -> np.ndarray:
        """int array (n_sites, ndim) of each site's coordinates."""
        return np.stack(np.unravel_index(np.arange(self.n_sites), self.shape), axis=1)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "boundary": self.boundary}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Lattice)
            and self.shape == other.shape
            and self.boundary == other.boundary
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.boundary))


def _neighbour_table(shape: tuple[int, ...], periodic: bool) -> np.ndarray:
    n_sites = int(np.prod(shape))
    coords = np.stack(np.unravel_index(np.arange(n_sites), shape), axis=1)
    table = np.empty((n_sites, 2 * len(shape)), dtype=np.int32)
    for axis, length in enumerate(shape):
        for col, step in ((2 * axis, -1), (2 * axis + 1, 1)):
            moved = coords.copy()
            moved[:, axis] += step
            outside = (moved[:, axis] < 0) | (moved[:, axis] >= length)
            moved[:, axis] %= length
            flat = np.ravel_multi_index(tuple(moved.T), shape)
            if not periodic:
                flat = np.where(outside, -1, flat)
            table[:, col] = flat
    return table


def _bonds(neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each bond once: (site, its up-neighbour) for every axis."""
    two_d = neighbours.shape[1]
    pairs, axes = [], []
    for axis in range(two_d // 2):
        up = neighbours[:, 2 * axis + 1]
        sites = np.nonzero(up >= 0)[0]
        pairs.append(np.stack([sites, up[sites]], axis=1))
        axes.append(np.full(sites.size, axis, dtype=np.int8))
    return np.concatenate(pairs).astype(np.int32), np.concatenate(axes)
