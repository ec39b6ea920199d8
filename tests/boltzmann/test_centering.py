"""Centering of (deep) Boltzmann machines: the centred energy is the plain energy at C(μ)θ^c up to
a constant, changing offsets with the matching parameter shift keeps the distribution, and the
centred gradient is the derivative of the exact log-likelihood in centred coordinates."""

import brute_force as bf
import numpy as np
import pytest

from dbdflow.boltzmann import centering, chain, chain_rbm, deep, lattice_rbm

MODELS = [
    lambda: deep((3,), ("A",), [("X",), ("P", "Q")]),
    lambda: lattice_rbm((2, 2), ("A", "B"), ("X",)),
    lambda: chain(6, "periodic", species=("A", "B"), terms=("b", "J")),
    lambda: chain_rbm(4, "periodic"),
]


def centred_energy(model, x, theta_c, offsets):
    """E_c from its definition: every clique's indicators replaced by (x_{u,a} - μ_{layer(u),a})."""
    units, states, param = model.cliques
    layer_of = np.concatenate([np.full(lay.size, i) for i, lay in enumerate(model.layers)])
    first = np.cumsum([0] + [len(lay.species) for lay in model.layers])
    energy = np.zeros(x.shape[0])
    for c in range(param.size):
        term = np.ones(x.shape[0])
        for u, s in zip(units[c], states[c], strict=True):
            if u >= 0:
                term = term * ((x[:, u] == s) - offsets[first[layer_of[u]] + s - 1])
        energy -= theta_c[param[c]] * term
    return energy


@pytest.mark.parametrize("make", MODELS)
def test_centred_energy_is_natural_energy_plus_constant(make):
    model = make()
    rng = np.random.default_rng(0)
    theta_c = rng.normal(size=model.n_params)
    offsets = rng.uniform(0, 1, len(centering.bias_names(model)))
    theta = centering.to_natural(model, theta_c, offsets)
    x = bf.all_states(model)
    v, h = x[:, : model.n_sites], (x[:, model.n_sites :] if model.n_hidden else None)
    difference = centred_energy(model, x, theta_c, offsets) - model.energy(v, h, theta)
    assert np.ptp(difference) < 1e-10
    np.testing.assert_allclose(centering.to_centered(model, theta, offsets), theta_c, atol=1e-12)


@pytest.mark.parametrize("make", MODELS)
def test_shifting_offsets_preserves_the_distribution(make):
    model = make()
    rng = np.random.default_rng(1)
    theta_c = rng.normal(size=model.n_params)
    old, new = rng.uniform(0, 1, (2, len(centering.bias_names(model))))
    shifted = centering.shift(model, theta_c, old, new)
    assert not np.allclose(shifted, theta_c)
    x = bf.all_states(model)
    before = centred_energy(model, x, theta_c, old)
    after = centred_energy(model, x, shifted, new)
    assert np.ptp(before - after) < 1e-10  # same energies up to a constant: same distribution
    p_before = bf.Exact(model, centering.to_natural(model, theta_c, old)).p
    p_after = bf.Exact(model, centering.to_natural(model, shifted, new)).p
    np.testing.assert_allclose(p_after, p_before, rtol=1e-10)


def test_centred_gradient_is_the_derivative_of_the_log_likelihood():
    model = lattice_rbm((2, 2), ("A", "B"), ("X",))
    rng = np.random.default_rng(2)
    exact = bf.Exact(model, rng.normal(size=model.n_params))
    data = exact.sample(50, rng)[:, : model.n_sites]
    offsets = rng.uniform(0, 1, 3)
    theta_c = rng.normal(size=model.n_params) * 0.5

    def log_likelihood(tc):
        e = bf.Exact(model, centering.to_natural(model, tc, offsets))
        v, p = e.visible_marginal()
        index = {tuple(row): i for i, row in enumerate(v)}
        return np.mean([np.log(p[index[tuple(row)]]) for row in data])

    theta = centering.to_natural(model, theta_c, offsets)
    natural = model.awake_statistics(data, theta).mean(axis=0) - bf.Exact(model, theta).moments
    analytic = centering.gradient(model, natural, offsets)
    step = 1e-5
    numeric = [
        (log_likelihood(theta_c + step * e) - log_likelihood(theta_c - step * e)) / (2 * step)
        for e in np.eye(model.n_params)
    ]
    np.testing.assert_allclose(analytic, numeric, atol=1e-7)


def test_data_offsets_are_mean_occupations():
    model = deep((3,), ("A", "B"), [("X",)])
    v = np.array([[0, 1, 2], [1, 1, 0]], np.int8)
    theta = np.linspace(-1, 1, model.n_params)
    offsets = centering.data_offsets(model, v, theta)
    q = model.hidden_probabilities(v, theta)
    np.testing.assert_allclose(offsets, [3 / 6, 1 / 6, q[..., 1].mean()])
    assert centering.bias_names(model) == ("b_A", "b_B", "b_X")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (chain(6, "periodic"), "3-unit"),
        (chain(6, "reflecting", terms=("b", "J")), "connectivity"),
        (chain_rbm(5, "reflecting"), "connectivity"),
        (chain(6, "periodic", terms=("J",)), "bias"),
    ],
)
def test_models_that_cannot_be_centred_raise(model, message):
    with pytest.raises(ValueError, match=message):
        centering.transform(model, np.zeros(1))
