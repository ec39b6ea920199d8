"""Awake (data) moments per family against independent computations: model statistics of the
lattices, enumeration of E[T | v] and ln Σ_h e^{−E(v, h)}, finite differences."""

import brute_force as bf
import numpy as np
import pytest

from dbdflow import io
from dbdflow.boltzmann import chain, chain_rbm, lattice_rbm
from dbdflow.boltzmann.awake import (
    FieldAwake,
    bond_histogram_from_moments,
    chain_statistics,
    field_histograms,
    histograms_from_sims,
    receptive_fields,
)
from dbdflow.moments import observables
from dbdflow.simulate import Lattice


def random_states(rng, model, n_traj, n_times):
    q = len(model.visible_species) + 1
    return rng.integers(0, q, (n_traj, n_times, model.n_sites)).astype(np.int8)


def field_awake(model, states):
    """FieldAwake of one IC from lattices (n_traj, n_times, n_sites), via field_histograms."""
    hist, counts = field_histograms(model, states)
    used = np.flatnonzero(hist.sum(axis=0))
    radix = round(hist.shape[1] ** (1 / counts.shape[1]))
    keys = (used[:, None] // radix ** np.arange(counts.shape[1])) % radix
    n = states.shape[0]
    return FieldAwake(model, keys, (hist[:, used] / n)[None], (counts / n)[None])


@pytest.mark.parametrize("boundary", ["periodic", "reflecting"])
@pytest.mark.parametrize(("species", "terms"), [(("A",), "bJK"), (("A", "B"), "bJ")])
def test_chain_statistics_are_the_model_statistics(boundary, species, terms):
    rng = np.random.default_rng(3)
    model = chain(12, boundary, species=species, terms=tuple(terms))
    states = random_states(rng, model, 5, 4)
    obs = observables(states, Lattice((12,), boundary), list(species))
    mean = {k: v.mean(axis=0)[None] for k, v in obs.items()}
    want = model.statistics(states).mean(axis=0)
    np.testing.assert_allclose(chain_statistics(model, mean)[0], want, rtol=1e-12)
    if len(species) > 1:
        with pytest.raises(ValueError, match="drop term K"):
            chain_statistics(chain(12, boundary, species=species), mean)


SMALL = [
    chain_rbm(5, "periodic"),
    chain_rbm(5, "reflecting"),
    lattice_rbm((2, 2), ("A", "B"), ("X", "Y"), couple={"A": "X", "B": ("X", "Y")}),
]


@pytest.mark.parametrize("model", SMALL, ids=lambda m: f"{m.family}-{m.boundary}-{m.n_sites}")
def test_field_awake_equals_enumeration(model):
    """Mean E[T | v] and mean ln Σ_h e^{θ·T(v, h)} over data lattices, from receptive-field
    histograms, equal the enumeration of every hidden state."""
    rng = np.random.default_rng(4)
    states = random_states(rng, model, 6, 2)
    awake = field_awake(model, states)
    for trial in range(3):
        theta = rng.normal(size=model.n_params)
        exact = bf.Exact(model, theta)
        n = model.n_sites
        for step in range(2):
            want = np.mean([exact.conditional_statistics(v) for v in states[:, step]], axis=0)
            got = awake([0], [step], theta[None])[0]
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
            logw = exact.t @ theta
            log_data = [
                np.log(np.exp(logw[np.all(exact.x[:, :n] == v, axis=1)]).sum())
                for v in states[:, step]
            ]
            got = awake.log_partial([0], [step], theta[None])[0]
            assert got == pytest.approx(np.mean(log_data), rel=1e-12), trial


@pytest.mark.parametrize("model", SMALL[1:], ids=["chain_rbm", "lattice_rbm"])
def test_awake_covariance_is_the_derivative_of_the_awake_moments(model):
    """d E[T | v]/dθ = Cov[T | v]; and d(mean log partial)/dθ = the awake moments."""
    rng = np.random.default_rng(5)
    awake = field_awake(model, random_states(rng, model, 4, 1))
    theta, eps = rng.normal(size=model.n_params), 1e-6
    basis = np.eye(model.n_params)
    jac = [(awake([0], [0], theta + eps * e) - awake([0], [0], theta - eps * e))[0] for e in basis]
    np.testing.assert_allclose(
        np.array(jac) / (2 * eps), awake.covariance([0], [0], theta)[0], atol=1e-7
    )
    grad = [
        (
            awake.log_partial([0], [0], theta + eps * e)
            - awake.log_partial([0], [0], theta - eps * e)
        )
        / (2 * eps)
        for e in basis
    ]
    np.testing.assert_allclose(np.ravel(grad), awake([0], [0], theta)[0], atol=1e-7)


def test_receptive_fields():
    bonds, couplings = receptive_fields(chain_rbm(6, "reflecting"))
    assert bonds.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]] and len(couplings) == 1
    model = lattice_rbm(
        (3, 4, 5), ("A", "B", "C"), ("X", "Y", "Z"), couple={"A": "X", "B": "Y", "C": "Z"}
    )
    fields, couplings = receptive_fields(model)
    assert fields.shape == (60, 8) and [c[1:] for c in couplings] == [(1, 1), (2, 2), (3, 3)]
    # hidden unit j sees the 2x2x2 block starting at its own coordinate, wrapping
    j = np.ravel_multi_index((2, 3, 4), (3, 4, 5))
    block = {
        np.ravel_multi_index((a % 3, b % 4, c % 5), (3, 4, 5))
        for a in (2, 3)
        for b in (3, 4)
        for c in (4, 5)
    }
    assert set(fields[j].tolist()) == block


def test_bond_histogram_from_moments_on_a_ring():
    rng = np.random.default_rng(6)
    model = chain_rbm(15, "periodic")
    states = random_states(rng, model, 7, 3)
    obs = observables(states, Lattice((15,), "periodic"), ["A"])
    mean = {k: v.mean(axis=0)[None] for k, v in obs.items()}
    _, hist, counts = bond_histogram_from_moments(model, mean)
    direct, direct_counts = field_histograms(model, states)
    np.testing.assert_allclose(hist[0], direct[:, :3] / 7, rtol=1e-12)
    np.testing.assert_allclose(counts[0], direct_counts / 7, rtol=1e-12)
    with pytest.raises(ValueError, match="end sites"):
        bond_histogram_from_moments(chain_rbm(15, "reflecting"), mean)


def test_histograms_from_sims_average_every_trajectory(tmp_path):
    rng = np.random.default_rng(7)
    model = lattice_rbm((3, 4), ("A", "B"), ("X",))
    parts = {(0, 0): 3, (0, 1): 2, (1, 0): 4}
    states, files = {}, []
    for (ic, batch), n in parts.items():
        s = random_states(rng, model, n, 5)
        states.setdefault(ic, []).append(s)
        path = tmp_path / f"ic{ic}_b{batch}.h5"
        io.write_sims(path, times=np.arange(5.0), observables={}, states=s, attrs={"ic": ic})
        files.append(path)
    keys, hist, counts = histograms_from_sims(model, files, 2)
    for ic in (0, 1):
        all_states = np.concatenate(states[ic])
        want = field_awake(model, all_states)
        theta = rng.normal(size=model.n_params)
        got = FieldAwake(model, keys, hist, counts)([ic] * 5, np.arange(5), np.tile(theta, (5, 1)))
        np.testing.assert_allclose(got, want([0] * 5, np.arange(5), np.tile(theta, (5, 1))))
        np.testing.assert_allclose(hist[ic].sum(axis=1), model.n_hidden)
    with pytest.raises(ValueError, match=r"ICs \[2\]"):
        histograms_from_sims(model, files, 3)
