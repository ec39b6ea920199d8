"""Exact 1D transfer-matrix solutions against brute-force enumeration and exact identities.

The enumerator below computes energies straight from eqs. 37 and 39 (site sums over every state),
independently of the window/transfer construction in ``dbdflow.boltzmann.transfer``.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.boltzmann.models import chain, chain_rbm
from dbdflow.boltzmann.transfer import (
    exact_covariance,
    exact_log_partition,
    exact_moments,
    exact_pattern_counts,
    exact_sample,
    exact_string_moments,
)

TERM_LENGTH = {"b": 1, "J": 2, "K": 3}


# ---------------------------------------------------------------- stand-in models


def chain_model(n_sites, boundary, species=("A",), terms=("b", "J", "K")):
    names = tuple(
        t + "_" + "".join(species[c] for c in combo)
        for t in terms
        for combo in combinations_with_replacement(range(len(species)), TERM_LENGTH[t])
    )
    return SimpleNamespace(
        family="chain",
        n_sites=n_sites,
        boundary=boundary,
        visible_species=tuple(species),
        terms=tuple(terms),
        param_names=names,
    )


def rbm_model(n_sites, boundary):
    return SimpleNamespace(
        family="chain_rbm",
        n_sites=n_sites,
        boundary=boundary,
        visible_species=("A",),
        param_names=("b_A", "W_AX", "b_X"),
    )


# ---------------------------------------------------------------- brute-force enumeration


def all_states(n, q):
    return np.indices((q,) * n).reshape(n, -1).T


def cliques(n, length, periodic):
    """Site tuples (i, i+1, …) of the cliques: inside an open chain, or N of them mod N."""
    starts = range(n) if periodic else range(n - length + 1)
    return [[(i + k) % n for k in range(length)] for i in starts]


def chain_statistics(model, states):
    """T_k(v) per state from the definitions: counts of cliques holding each species multiset."""
    periodic = model.boundary == "periodic"
    columns = []
    for name in model.param_names:
        term, labels = name.split("_")
        codes = sorted(model.visible_species.index(c) + 1 for c in labels)
        count = np.zeros(len(states))
        for sites in cliques(model.n_sites, TERM_LENGTH[term], periodic):
            count += np.all(np.sort(states[:, sites], axis=1) == codes, axis=1)
        columns.append(count)
    return np.stack(columns, axis=1)


def rbm_joint(model):
    """All (v, h) of eq. 39 with T = (Σv, Σ_j h_j (v_j + v_{j+1}), Σh_j); returns states and T."""
    n, periodic = model.n_sites, model.boundary == "periodic"
    bonds = cliques(n, 2, periodic)
    joint = all_states(n + len(bonds), 2)
    v, h = joint[:, :n], joint[:, n:]
    pair = np.stack([v[:, i] + v[:, j] for i, j in bonds], axis=1) if bonds else h
    stats = np.stack([v.sum(1), (h * pair).sum(1), h.sum(1)], axis=1).astype(float)
    return v, stats


def enumerate_model(model, theta):
    """(visible states, T per joint state, visible state of each joint state, probabilities)."""
    if model.family == "chain":
        v = all_states(model.n_sites, len(model.visible_species) + 1)
        stats = chain_statistics(model, v)
    else:
        v, stats = rbm_joint(model)
    logw = stats @ np.asarray(theta, float)
    top = logw.max()
    lnz = top + np.log(np.exp(logw - top).sum())
    return v, stats, np.exp(logw - lnz), lnz


def enumerated(model, theta):
    _, stats, p, lnz = enumerate_model(model, theta)
    mean = p @ stats
    dev = stats - mean
    return lnz, mean, (dev * p[:, None]).T @ dev


def assert_close(actual, expected, rtol, atol):
    """|actual - expected| ≤ atol + rtol |expected| elementwise (atol may be an array)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
    assert np.all(excess <= 0), f"\nactual   {actual}\nexpected {expected}"


def assert_exact(model, theta, rtol=1e-9):
    """ln Z, moments and covariance to ``rtol``, errors measured in units of the statistics' spread
    (so the tolerance stays relative for nearly frozen chains with tiny variances)."""
    lnz, mean, cov = enumerated(model, theta)
    sd = np.sqrt(np.diag(cov))
    assert_close(exact_log_partition(model, theta), lnz, rtol, rtol)
    assert_close(exact_moments(model, theta), mean, rtol, rtol * sd)
    assert_close(exact_covariance(model, theta), cov, rtol, rtol * np.outer(sd, sd))


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("terms", [("b", "J", "K"), ("b", "J"), ("b",), ("K", "b")])
@pytest.mark.parametrize("n_sites", [1, 2, 3, 4, 7, 14])
def test_chain_matches_enumeration(boundary, terms, n_sites):
    model = chain_model(n_sites, boundary, terms=terms)
    theta = np.array([0.7, -1.3, 2.1])[: len(terms)]
    assert_exact(model, theta)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize(
    "theta", [(-10.0, 10.0, 10.0), (10.0, -10.0, 10.0), (10.0, 10.0, -10.0), (-9.0, -8.0, 7.0)]
)
@pytest.mark.parametrize("family", ["chain", "chain_rbm"])
def test_extreme_parameters_match_enumeration(boundary, theta, family):
    """|θ| = 10: nearly frozen chains whose variances are as small as 1e-16 stay exact."""
    model = chain_model(12, boundary) if family == "chain" else rbm_model(6, boundary)
    assert_exact(model, np.array(theta), rtol=1e-8)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("terms", [("b", "J"), ("b", "J", "K")])
@pytest.mark.parametrize("n_sites", [1, 2, 3, 6])
def test_two_species_chain_matches_enumeration(boundary, terms, n_sites):
    model = chain_model(n_sites, boundary, species=("A", "B"), terms=terms)
    theta = np.random.default_rng(7).uniform(-2, 2, len(model.param_names))
    assert_exact(model, theta)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("n_sites", [1, 2, 3, 4, 7])
def test_chain_rbm_matches_joint_enumeration(boundary, n_sites):
    assert_exact(rbm_model(n_sites, boundary), np.array([-0.4, 1.7, -2.2]))


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("family", ["chain", "chain_rbm"])
def test_string_moments_match_enumeration(boundary, family):
    n = 9
    model = chain_model(n, boundary) if family == "chain" else rbm_model(n, boundary)
    theta = np.array([0.3, -1.1, 1.9])
    v, _, p, _ = enumerate_model(model, theta)
    periodic = boundary == "periodic"
    expect = {}
    for length in range(1, 5):
        prods = [np.prod(v[:, s], axis=1) for s in cliques(n, length, periodic)]
        expect["A" * length] = p @ np.sum(prods, axis=0)
    gaps = [v[:, s[0]] * v[:, s[2]] for s in cliques(n, 3, periodic)]
    expect["A.A"] = p @ np.sum(gaps, axis=0)
    got = exact_string_moments(model, theta, max_length=4)
    assert got.keys() == expect.keys()
    for key, value in expect.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-10, err_msg=key)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("family", ["chain", "chain_rbm"])
def test_pattern_counts_match_enumeration(boundary, family):
    """Bonds holding exactly one particle, empty bonds, empty-gap-particle triples."""
    n = 8
    model = chain_model(n, boundary) if family == "chain" else rbm_model(n, boundary)
    theta = np.array([-0.4, 0.8, -1.3])
    v, _, p, _ = enumerate_model(model, theta)
    periodic = boundary == "periodic"
    bonds = cliques(n, 2, periodic)
    one = sum(v[:, b[0]] + v[:, b[1]] == 1 for b in bonds)
    empty = sum((v[:, b[0]] == 0) & (v[:, b[1]] == 0) for b in bonds)
    gap = sum((v[:, s[0]] + v[:, s[2]] == 1) for s in cliques(n, 3, periodic))
    ln_z, mu, counts = exact_pattern_counts(
        model, theta, [((0, 1), (1, 0)), ((0, 1), (0, 0)), ((0, 2), (0, 1))]
    )
    np.testing.assert_allclose(counts, [p @ one, p @ empty, p @ gap], rtol=1e-10)
    np.testing.assert_allclose(mu, exact_moments(model, theta), rtol=1e-12)
    assert ln_z == pytest.approx(exact_log_partition(model, theta), rel=1e-12)


@pytest.mark.parametrize("n_sites", [60, 100_000])
@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize("family", ["chain", "chain_rbm"])
def test_covariance_is_derivative_of_moments(n_sites, boundary, family):
    make = chain_model if family == "chain" else rbm_model
    model = make(n_sites, boundary)
    theta = np.array([-0.8, 1.2, 0.9])
    # central differences: truncation ~h² ⟨T³⟩_c, rounding ~1e-16 |⟨T⟩| / h, both ≲ 1e-8 |Cov|
    h = 1e-5 if n_sites < 1000 else 1e-4
    columns = []
    for k in range(3):
        step = np.zeros(3)
        step[k] = h
        columns.append(exact_moments(model, theta + step) - exact_moments(model, theta - step))
    fd = np.stack(columns, axis=1) / (2 * h)
    cov = exact_covariance(model, theta)
    np.testing.assert_allclose(cov, cov.T, rtol=1e-12)
    np.testing.assert_allclose(cov, fd, rtol=1e-6, atol=1e-6 * np.abs(cov).max())


@settings(max_examples=40, deadline=None)
@given(
    theta=st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    n_sites=st.integers(1, 9),
    periodic=st.booleans(),
    rbm=st.booleans(),
)
def test_random_parameters_match_enumeration(theta, n_sites, periodic, rbm):
    boundary = "periodic" if periodic else "reflecting"
    model = rbm_model(n_sites, boundary) if rbm else chain_model(n_sites, boundary)
    assert_exact(model, theta)


@pytest.mark.parametrize(
    "model",
    [
        chain(3, "periodic"),
        chain(8, "periodic"),
        chain(7, "reflecting"),
        chain(5, "periodic", terms=("b", "J")),
        chain(4, "periodic", species=("A", "B")),
        chain(4, "reflecting", species=("A", "B", "C"), terms=("b", "J")),
        chain_rbm(3, "periodic"),
        chain_rbm(5, "periodic"),
        chain_rbm(6, "reflecting"),
    ],
    ids=lambda m: f"{m.family}-{m.n_sites}-{m.boundary}-{len(m.param_names)}",
)
def test_real_models_match_their_own_statistics(model):
    """The models' constructors (models.py) and the transfer solution agree on T(v, h)."""
    theta = np.random.default_rng(5).uniform(-1.5, 1.5, model.n_params)
    v = all_states(model.n_sites, len(model.visible_species) + 1)
    if model.n_hidden:
        joint = all_states(model.n_sites + model.n_hidden, 2)
        stats = model.statistics(joint[:, : model.n_sites], joint[:, model.n_sites :])
    else:
        stats = model.statistics(v)
    logw = stats @ theta
    top = logw.max()
    lnz = top + np.log(np.exp(logw - top).sum())
    p = np.exp(logw - lnz)
    mean = p @ stats
    cov = ((stats - mean) * p[:, None]).T @ (stats - mean)
    sd = np.sqrt(np.diag(cov))
    assert_close(exact_log_partition(model, theta), lnz, 1e-9, 1e-9)
    assert_close(exact_moments(model, theta), mean, 1e-9, 1e-9 * sd)
    assert_close(exact_covariance(model, theta), cov, 1e-9, 1e-9 * np.outer(sd, sd))


# ---------------------------------------------------------------- stability at N = 10^5


def log_perron_root(family, theta):
    """ln λ_max of the bulk transfer matrix, built directly (pair states for K, else sites)."""
    if family == "chain":
        b, j, k = theta
        m = np.zeros((4, 4))
        for a, c, e in np.ndindex(2, 2, 2):  # (a, c) -> (c, e)
            m[2 * a + c, 2 * c + e] = np.exp(b * e + j * c * e + k * a * c * e)
    else:
        b, w, bx = theta
        m = np.array(
            [[np.exp(b * e) * (1 + np.exp(bx + w * (a + e))) for e in (0, 1)] for a in (0, 1)]
        )
    return np.log(np.max(np.linalg.eigvals(m).real))


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize(
    ("family", "theta"),
    [
        ("chain", (10.0, -10.0, 10.0)),
        ("chain", (-10.0, 10.0, -10.0)),
        ("chain", (-10.0, 10.0, 10.0)),
        ("chain_rbm", (10.0, -10.0, -10.0)),
        ("chain_rbm", (-5.0, 10.0, -10.0)),
    ],
)
def test_large_chain_is_stable(boundary, family, theta):
    n = 100_000
    make = chain_model if family == "chain" else rbm_model
    theta = np.array(theta)
    big, bigger = make(n, boundary), make(n + 1, boundary)
    lnz = exact_log_partition(big, theta)
    root = log_perron_root(family, theta)
    assert np.isfinite(lnz)
    # ln Z(N+1) - ln Z(N) -> ln λ_max exponentially fast; ln Z ~ 1e6 is known to ~1e-10 (ulp)
    np.testing.assert_allclose(exact_log_partition(bigger, theta) - lnz, root, atol=1e-8)
    h = 1e-4
    slope = [
        (log_perron_root(family, theta + h * e) - log_perron_root(family, theta - h * e)) / (2 * h)
        for e in np.eye(3)
    ]
    # boundary corrections are O(1/N) and the central difference error O(h^2)
    np.testing.assert_allclose(exact_moments(big, theta) / n, slope, atol=1e-4)
    assert np.all(np.isfinite(exact_covariance(big, theta)))


# ---------------------------------------------------------------- exact sampling


def chi_square_bound(dof, p_value=1e-4):
    """Upper chi-square quantile by the Wilson-Hilferty approximation."""
    z = NormalDist().inv_cdf(1 - p_value)
    return dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize(
    "model",
    [
        chain_model(5, "reflecting"),
        chain_model(5, "periodic"),
        chain_model(2, "periodic"),
        chain_model(4, "periodic", species=("A", "B")),
        chain_model(4, "reflecting", species=("A", "B"), terms=("b", "J", "K")),
        rbm_model(5, "reflecting"),
        rbm_model(5, "periodic"),
    ],
    ids=lambda m: f"{m.family}-{m.n_sites}-{m.boundary}-{len(m.param_names)}",
)
def test_exact_sample_state_histogram(model, seed=12):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1.5, 1.5, len(model.param_names))
    n = 20_000
    v, _, p, _ = enumerate_model(model, theta)
    q = len(model.visible_species) + 1
    radix = q ** np.arange(model.n_sites)[::-1]
    expected = np.bincount(v @ radix, weights=p, minlength=q**model.n_sites) * n
    samples = exact_sample(model, theta, n, rng)
    assert samples.dtype == np.int8 and samples.shape == (n, model.n_sites)
    observed = np.bincount(samples.astype(np.int64) @ radix, minlength=q**model.n_sites)
    small = expected < 5  # pool sparse bins so the chi-square approximation holds
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    chi2 = np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep])
    assert chi2 < chi_square_bound(keep.sum() - 1)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
def test_exact_sample_moments_large_chain(boundary):
    n_sites, n = 1000, 2000
    rng = np.random.default_rng(3)
    theta = np.array([-0.5, 1.0, 0.8])
    model = chain_model(n_sites, boundary)
    v = exact_sample(model, theta, n, rng).astype(float)
    right = np.roll(v, -1, axis=1)
    right2 = np.roll(v, -2, axis=1)
    stats = np.stack([v.sum(1), (v * right).sum(1), (v * right * right2).sum(1)], axis=1)
    if boundary == "reflecting":
        stats[:, 1] -= v[:, -1] * v[:, 0]
        stats[:, 2] -= v[:, -2] * v[:, -1] * v[:, 0] + v[:, -1] * v[:, 0] * v[:, 1]
    se = np.sqrt(np.diag(exact_covariance(model, theta)) / n)
    assert np.all(np.abs(stats.mean(0) - exact_moments(model, theta)) < 4 * se)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
def test_exact_sample_hidden_moments(boundary):
    n_sites, n = 1000, 2000
    rng = np.random.default_rng(4)
    theta = np.array([-0.3, 0.9, -1.4])
    model = rbm_model(n_sites, boundary)
    v, h = exact_sample(model, theta, n, rng, return_hidden=True)
    n_bonds = n_sites if boundary == "periodic" else n_sites - 1
    assert h.dtype == np.int8 and h.shape == (n, n_bonds)
    pair = v[:, :n_bonds].astype(float) + np.roll(v, -1, axis=1)[:, :n_bonds]
    stats = np.stack([v.sum(1), (h * pair).sum(1), h.sum(1)], axis=1)
    se = np.sqrt(np.diag(exact_covariance(model, theta)) / n)
    assert np.all(np.abs(stats.mean(0) - exact_moments(model, theta)) < 4 * se)


def lattice_statistics(family, periodic, v, h=None):
    """T of each sample by numpy shifts: (Σv, Σvv', Σvv'v'') for the chain, (Σv, Σh(v + v'),
    Σh) for the chain RBM; open chains drop the wrapped pairs and triples."""
    right = np.roll(v, -1, axis=1)
    if not periodic:
        right[:, -1] = 0
    if family == "chain_rbm":
        bond = (v + right)[:, : h.shape[1]]
        cols = (v, h * bond, h)
    else:
        right2 = np.roll(right, -1, axis=1)
        if not periodic:
            right2[:, -1] = 0
        cols = (v, v & right, v & right & right2)
    return np.stack([c.sum(axis=1, dtype=np.int64) for c in cols], axis=1)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
@pytest.mark.parametrize(
    ("family", "theta"),
    [
        ("chain", (-5.0, 10.0, -10.0)),  # dilute clusters, triples rare (~90 per lattice)
        ("chain", (10.0, -5.0, -10.0)),  # dense, pairs penalised, about one triple per lattice
        ("chain", (-10.0, 10.0, 0.0)),  # domains cost e^-10 each: long-range fluctuations
        ("chain_rbm", (0.0, 5.0, -10.0)),  # hidden units only on full bonds (W s + b_X = 0)
        ("chain_rbm", (10.0, -10.0, 10.0)),  # coexistence: Var Σv ≈ 18 N
    ],
)
def test_exact_sample_moments_at_extreme_parameters(boundary, family, theta):
    """N = 10⁵ sites and |θ| = 10 (the documented stability range): the moments of the samples
    (hidden units of the RBM drawn given v) are within 4 standard errors of the exact ones, the
    errors from the exact covariance."""
    n_sites, n = 100_000, 200
    periodic = boundary == "periodic"
    model = (chain_model if family == "chain" else rbm_model)(n_sites, boundary)
    rng = np.random.default_rng(31)
    if family == "chain":
        v, h = exact_sample(model, theta, n, rng), None
    else:
        v, h = exact_sample(model, theta, n, rng, return_hidden=True)
    assert v.shape == (n, n_sites) and v.dtype == np.int8 and set(np.unique(v)) <= {0, 1}
    stats = lattice_statistics(family, periodic, v, h)
    variance = np.diag(exact_covariance(model, theta))
    assert np.all(variance > 0.5)  # every statistic fluctuates: the test has power
    z = (stats.mean(axis=0) - exact_moments(model, theta)) / np.sqrt(variance / n)
    assert np.all(np.abs(z) < 4), f"z = {np.round(z, 2)}"


def test_exact_sample_is_reproducible():
    model = chain_model(30, "periodic")
    theta = np.array([0.1, 0.5, -0.2])
    first = exact_sample(model, theta, 50, np.random.default_rng(9))
    second = exact_sample(model, theta, 50, np.random.default_rng(9))
    np.testing.assert_array_equal(first, second)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "theta", "match"),
    [
        ({"family": "lattice_rbm"}, [0.0] * 3, "model.family"),
        ({"boundary": "open"}, [0.0] * 3, "model.boundary"),
        ({"n_sites": 0}, [0.0] * 3, "model.n_sites"),
        ({"param_names": ("b_A", "J_AA", "L_AAAA")}, [0.0] * 3, "param_names"),
        ({"terms": ("b", "J", "Q")}, [0.0] * 3, "model.terms"),
        ({}, [0.0] * 2, "θ"),
        ({}, [0.0, np.nan, 0.0], "θ"),
    ],
)
def test_bad_input_is_rejected(changes, theta, match):
    model = chain_model(5, "periodic")
    for key, value in changes.items():
        setattr(model, key, value)
    with pytest.raises(ValueError, match=match):
        exact_moments(model, theta)


def test_bad_rbm_and_string_input_is_rejected():
    rbm = rbm_model(5, "periodic")
    rbm.visible_species = ("A", "B")
    with pytest.raises(ValueError, match="one visible species"):
        exact_log_partition(rbm, [0.0] * 3)
    two = chain_model(5, "periodic", species=("A", "B"), terms=("b",))
    with pytest.raises(ValueError, match="one visible species"):
        exact_string_moments(two, [0.0, 0.0])
    with pytest.raises(ValueError, match="return_hidden"):
        exact_sample(chain_model(5, "periodic"), [0.0] * 3, 3, np.random.default_rng(0), True)
