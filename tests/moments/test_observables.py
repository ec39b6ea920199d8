"""Numba observable kernels against plain-numpy definitions (paper eq. 3, 36)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.moments import observables, pair_labels
from dbdflow.simulate import Lattice


def reference(states, lattice, n_species):
    """Definitions written directly with numpy over coordinates (independent of the kernels)."""
    shape = lattice.shape
    grid = states.reshape(*states.shape[:-1], *shape)
    nd = len(shape)
    periodic = lattice.boundary == "periodic"
    occ = [(grid == s + 1) for s in range(n_species)]
    axes = tuple(range(grid.ndim - nd, grid.ndim))

    def shifted_products(x, y, distance, axis):
        ax = axes[axis]
        if periodic:
            return (x * np.roll(y, -distance, axis=ax)).sum(axis=axes)
        n = shape[axis]
        a = np.take(x, np.arange(0, n - distance), axis=ax)
        b = np.take(y, np.arange(distance, n), axis=ax)
        return (a * b).sum(axis=axes)

    def pair_sum(distance):
        cols = []
        for a in range(n_species):
            for b in range(a, n_species):
                total = 0
                for axis in range(nd):
                    total = total + shifted_products(
                        occ[a].astype(np.int64), occ[b], distance, axis
                    )
                    if a != b:
                        total = total + shifted_products(
                            occ[b].astype(np.int64), occ[a], distance, axis
                        )
                cols.append(total)
        return np.stack(cols, axis=-1)

    out = {
        "counts": np.stack([o.sum(axis=axes) for o in occ], axis=-1),
        "pairs": pair_sum(1),
    }
    if nd == 1:
        out["pairs_d2"] = pair_sum(2)
        for length in (2, 3, 4):
            cols = []
            for o in occ:
                prod = o.astype(np.int64)
                n = shape[0]
                if periodic:
                    for d in range(1, length):
                        prod = prod * np.roll(o, -d, axis=-1)
                    cols.append(prod.sum(-1))
                else:
                    acc = np.ones((*o.shape[:-1], max(n - length + 1, 0)), dtype=np.int64)
                    for d in range(length):
                        acc = acc * o[..., d : n - length + 1 + d]
                    cols.append(acc.sum(-1))
            out[f"strings{length}"] = np.stack(cols, axis=-1)
    return out


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(4, 7), min_size=1, max_size=3).map(tuple),
    boundary=st.sampled_from(["periodic", "reflecting"]),
    n_species=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_observables_match_numpy_definitions(shape, boundary, n_species, seed):
    lattice = Lattice(shape, boundary)
    rng = np.random.default_rng(seed)
    states = rng.integers(0, n_species + 1, size=(3, 2, lattice.n_sites)).astype(np.int8)
    species = [chr(ord("A") + i) for i in range(n_species)]
    got = observables(states, lattice, species)
    want = reference(states, lattice, n_species)
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == np.int64
        assert np.array_equal(got[name], want[name]), name


def test_small_ring_by_hand():
    lattice = Lattice((6,), "periodic")
    #          0  1  2  3  4  5   (ring: 5-0 is a bond)
    s = np.array([1, 1, 1, 0, 2, 1], dtype=np.int8)
    got = observables(s[None], lattice, ["A", "B"])
    assert pair_labels(["A", "B"]) == ["AA", "AB", "BB"]
    assert got["counts"][0].tolist() == [4, 1]
    assert got["pairs"][0].tolist() == [3, 1, 0]  # AA: 0-1, 1-2, 5-0; AB: 4-5
    assert got["strings2"][0].tolist() == [3, 0]
    assert got["strings3"][0].tolist() == [2, 0]  # 5-0-1, 0-1-2
    assert got["strings4"][0].tolist() == [1, 0]  # 5-0-1-2
    assert got["pairs_d2"][0].tolist() == [2, 2, 0]  # AA: 0-2, 5-1; AB: 2-4, 4-0


def test_bad_states_are_rejected():
    lattice = Lattice((5,))
    with pytest.raises(ValueError, match="int8"):
        observables(np.zeros((1, 5), dtype=np.int64), lattice, ["A"])
    with pytest.raises(ValueError, match="5"):
        observables(np.zeros((1, 6), dtype=np.int8), lattice, ["A"])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        observables(np.full((1, 5), 2, dtype=np.int8), lattice, ["A"])
