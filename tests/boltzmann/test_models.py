"""Boltzmann-machine models: statistics against independent numpy definitions (eqs. 37, 39, 44),
conditional hidden probabilities and awake moments against enumeration."""

import itertools

import brute_force as bf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.boltzmann import (
    chain,
    chain_rbm,
    deep,
    exact_log_partition,
    exact_moments,
    lattice,
    lattice_rbm,
)
from dbdflow.moments.observables import observables
from dbdflow.simulate import Lattice

BOUNDARIES = ("periodic", "reflecting")


# ---- independent definitions -----------------------------------------------------------------
def windows(v, length, periodic):
    """(..., n_windows, length) states of the runs i..i+length-1."""
    n = v.shape[-1]
    starts = np.arange(n if periodic else n - length + 1)
    return v[..., (starts[:, None] + np.arange(length)) % n]


def chain_reference(v, species, terms, periodic):
    cols = []
    for term, length in (("b", 1), ("J", 2), ("K", 3)):
        if term not in terms:
            continue
        w = np.sort(windows(v, length, periodic), axis=-1)
        for combo in itertools.combinations_with_replacement(range(1, len(species) + 1), length):
            cols.append(np.all(w == combo, axis=-1).sum(-1))
    return np.stack(cols, axis=-1)


def layered_reference(v, hs, shape, field, species, couples):
    """T for layers of one shape; unit j of layer l+1 sees the field block of layer l at j."""
    grids = [x.reshape(*x.shape[:-1], *shape) for x in (v, *hs)]
    axes = tuple(range(-len(shape), 0))
    cols = []
    for a in range(len(species[0])):
        cols.append((grids[0] == a + 1).sum(axis=axes))
    for level in range(1, len(grids)):
        lower, upper = species[level - 1], species[level]
        pairs = couples[level - 1] or [(s, t) for s in lower for t in upper]
        for s, t in pairs:
            total = 0
            for offset in itertools.product(*(range(f) for f in field)):
                shifted = np.roll(
                    grids[level - 1] == lower.index(s) + 1, [-o for o in offset], axes
                )
                total = total + (shifted & (grids[level] == upper.index(t) + 1)).sum(axis=axes)
            cols.append(total)
        for a in range(len(upper)):
            cols.append((grids[level] == a + 1).sum(axis=axes))
    return np.stack(cols, axis=-1)


# ---- names and structure ---------------------------------------------------------------------
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_parameter_names_and_attributes(boundary):
    m = chain(10, boundary)
    assert m.param_names == ("b_A", "J_AA", "K_AAA")
    assert (m.family, m.terms, m.n_sites, m.boundary) == ("chain", ("b", "J", "K"), 10, boundary)
    assert m.hidden_species == () and m.n_hidden == 0 and m.visible_species == ("A",)
    r = chain_rbm(10, boundary)
    assert r.param_names == ("b_A", "W_AX", "b_X") and r.family == "chain_rbm"
    assert r.n_hidden == (10 if boundary == "periodic" else 9) and r.hidden_species == ("X",)
    assert chain(5, "open").boundary == "reflecting"
    two = chain(5, boundary, species=("A", "B"), terms=("J", "b"))
    assert two.param_names == ("b_A", "b_B", "J_AA", "J_AB", "J_BB")
    rossler = lattice_rbm(
        (10, 10, 10), ("A", "B", "C"), ("X", "Y", "Z"), couple={"A": "X", "B": "Y", "C": "Z"}
    )
    assert rossler.param_names == (
        *("b_A", "b_B", "b_C", "W_AX", "W_BY", "W_CZ", "b_X", "b_Y", "b_Z"),
    )
    assert rossler.n_sites == rossler.n_hidden == 1000 and rossler.boundary == "periodic"
    # every visible site sees 8 hidden units and vice versa: two colour classes (block Gibbs)
    assert rossler.mrf.n_colours == 2
    assert np.all(np.diff(rossler.mrf.inc_ptr.astype(int)) == 9)
    d = deep((4, 4), ("A",), [("X", "Y"), ("P",)], couple=[{"A": ("X", "Y")}, None])
    assert d.param_names == ("b_A", "W_AX", "W_AY", "b_X", "b_Y", "W_XP", "W_YP", "b_P")
    assert d.hidden_species == ("X", "Y", "P") and d.n_hidden == 32 and d.mrf.n_colours == 2


def assert_proper_colouring(m):
    """No two units of one clique share a colour, and ``order``/``class_ptr`` list the classes."""
    for units in m.clique_units:
        real = units[units < m.n_units]
        assert np.unique(m.colour[real]).size == real.size, f"clique {real} shares a colour"
    assert np.array_equal(np.sort(m.order), np.arange(m.n_units))
    assert np.all(np.diff(m.colour[m.order]) >= 0) and m.class_ptr[-1] == m.n_units
    for c in range(m.n_colours):
        members = m.order[m.class_ptr[c] : m.class_ptr[c + 1]]
        assert members.size and np.all(m.colour[members] == c)


@pytest.mark.parametrize("n", range(3, 15))
def test_chain_colouring_separates_cliques(n):
    """Chromatic sweep classes (mrf, gibbs docstrings): proper colourings; two classes for
    layered models (block Gibbs), three for chains with triples whenever i mod 3 is proper."""
    ring = chain(n, "periodic").mrf
    assert_proper_colouring(ring)
    # unit i shares a triple with i ± 1, i ± 2: every class is an independent set of at most
    # n // 3 units, so 3 classes exactly when 3 | n; greedy (degree 4) uses at most 5
    assert ring.n_colours >= -(-n // (n // 3)) and ring.n_colours <= 5
    assert (ring.n_colours == 3) == (n % 3 == 0)
    if n % 3 == 0:  # greedy in unit order then gives i mod 3
        np.testing.assert_array_equal(ring.colour, np.arange(n) % 3)
    open_chain = chain(n, "reflecting").mrf
    assert_proper_colouring(open_chain)
    assert open_chain.n_colours == 3  # i mod 3
    np.testing.assert_array_equal(open_chain.colour, np.arange(n) % 3)
    pairs = chain(n, "periodic", terms=("b", "J")).mrf  # a cycle: 2 classes iff n is even
    assert_proper_colouring(pairs)
    assert pairs.n_colours == (2 if n % 2 == 0 else 3)
    assert_proper_colouring(chain(n, "periodic", species=("A", "B")).mrf)
    for rbm in (chain_rbm(n, "periodic"), chain_rbm(n, "reflecting")):
        m = rbm.mrf
        assert_proper_colouring(m)  # visible sites one class, hidden units the other
        assert m.n_colours == 2
        assert np.unique(m.colour[: rbm.n_sites]).size == 1
        assert np.unique(m.colour[rbm.n_sites :]).size == 1
        assert m.colour[0] != m.colour[rbm.n_sites]


@pytest.mark.parametrize(
    "model",
    [
        lattice_rbm((4, 4), ("A", "B"), ("X",)),
        lattice_rbm((3, 3, 3), ("A",), ("X", "Y")),
        deep((4, 4), ("A",), [("X",), ("P",)]),
        deep((5,), ("A",), [("X",), ("P",), ("Q",)]),
    ],
    ids=["lattice_rbm-2d", "lattice_rbm-3d", "deep-2", "deep-3"],
)
def test_layered_colouring_is_two_alternating_blocks(model):
    m = model.mrf
    assert_proper_colouring(m)
    assert m.n_colours == 2
    for i, layer in enumerate(model.layers):  # alternate layers form the two blocks
        colours = m.colour[layer.start : layer.start + layer.size]
        assert np.all(colours == colours[0]) and colours[0] == m.colour[0] ^ (i % 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: chain(5, "circular"), "boundary"),
        (lambda: chain(2, "periodic"), "n_sites"),
        (lambda: chain(5, terms=("b", "L")), "terms"),
        (lambda: chain(5, species=("A", "A")), "repeated"),
        (lambda: chain_rbm(1, "reflecting"), "n_sites"),
        (lambda: lattice_rbm((4, 4), ("A",), ("X",), field=(2, 2, 2)), "field"),
        (lambda: lattice_rbm((4, 4), ("A",), ("A",)), "unique"),
        (lambda: lattice_rbm((4, 4), ("A",), ("X",), couple={"B": "X"}), "couple"),
        (lambda: deep((4,), ("A",), []), "hidden_layers"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_states_and_theta_raise():
    m = chain_rbm(5, "reflecting")
    with pytest.raises(ValueError, match="outside"):
        m.statistics(np.full(5, 2, np.int8), np.zeros(4, np.int8))
    with pytest.raises(ValueError, match="last axis"):
        m.statistics(np.zeros(4, np.int8), np.zeros(4, np.int8))
    with pytest.raises(ValueError, match="h is required"):
        m.statistics(np.zeros(5, np.int8))
    with pytest.raises(ValueError, match="theta"):
        m.energy(np.zeros(5, np.int8), np.zeros(4, np.int8), [1.0, 2.0])
    with pytest.raises(ValueError, match="no hidden"):
        chain(5).hidden_probabilities(np.zeros(5, np.int8), [0.0, 0.0, 0.0])


# ---- statistics and energies against definitions -----------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 9),
    boundary=st.sampled_from(BOUNDARIES),
    n_species=st.integers(1, 3),
    terms=st.sampled_from([("b", "J", "K"), ("b", "J"), ("J", "K"), ("b",)]),
    seed=st.integers(0, 2**31),
)
def test_chain_statistics_match_definition(n, boundary, n_species, terms, seed):
    species = ("A", "B", "C")[:n_species]
    m = chain(n, boundary, species=species, terms=terms)
    v = np.random.default_rng(seed).integers(0, n_species + 1, (2, 3, n)).astype(np.int8)
    expected = chain_reference(v, species, terms, boundary == "periodic")
    np.testing.assert_array_equal(m.statistics(v), expected)
    np.testing.assert_array_equal(m.statistics(v[0, 0]), expected[0, 0])
    theta = np.random.default_rng(seed).normal(size=m.n_params)
    np.testing.assert_allclose(m.energy(v, None, theta), -expected @ theta)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 9), boundary=st.sampled_from(BOUNDARIES), seed=st.integers(0, 2**31))
def test_chain_rbm_statistics_match_eq39(n, boundary, seed):
    m = chain_rbm(n, boundary)
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 2, (4, n)).astype(np.int8)
    h = rng.integers(0, 2, (4, m.n_hidden)).astype(np.int8)
    pair_sums = windows(v, 2, boundary == "periodic").sum(-1)
    expected = np.stack([v.sum(-1), (h * pair_sums).sum(-1), h.sum(-1)], axis=-1)
    np.testing.assert_array_equal(m.statistics(v, h), expected)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(5,), (3, 4), (3, 3, 4)]),
    field=st.integers(1, 3),
    paper_coupling=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_lattice_rbm_statistics_match_eq44(shape, field, paper_coupling, seed):
    vs, hs = ("A", "B", "C"), ("X", "Y")
    couple = {"A": "X", "B": "Y", "C": ("X", "Y")} if paper_coupling else None
    fields = (field,) * len(shape)
    m = lattice_rbm(shape, vs, hs, field=fields, couple=couple)
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 4, (3, m.n_sites)).astype(np.int8)
    h = rng.integers(0, 3, (3, m.n_hidden)).astype(np.int8)
    pairs = [("A", "X"), ("B", "Y"), ("C", "X"), ("C", "Y")] if paper_coupling else None
    expected = layered_reference(v, [h], shape, fields, [vs, hs], [pairs])
    np.testing.assert_array_equal(m.statistics(v, h), expected)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.sampled_from([(5,), (3, 4), (4, 3), (3, 3, 4), (2, 3, 2)]),
    boundary=st.sampled_from(BOUNDARIES),
    n_species=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_lattice_statistics_are_the_recorded_counts_and_pairs(shape, boundary, n_species, seed):
    """The fully visible lattice's statistics are the simulator's observables (an independent
    kernel over the same bonds), in the order b_<s>, then J_<st> in pair_labels order."""
    if boundary == "periodic" and min(shape) < 3:
        shape = tuple(max(s, 3) for s in shape)
    species = ("A", "B", "C")[:n_species]
    m = lattice(shape, boundary, species)
    grid = Lattice(shape, boundary)
    v = np.random.default_rng(seed).integers(0, n_species + 1, (4, grid.n_sites)).astype(np.int8)
    obs = observables(v, grid, species)
    np.testing.assert_array_equal(m.statistics(v), np.hstack([obs["counts"], obs["pairs"]]))
    pairs = [a + b for i, a in enumerate(species) for b in species[i:]]
    assert m.param_names == (*(f"b_{s}" for s in species), *(f"J_{p}" for p in pairs))
    assert m.family == "lattice" and m.n_hidden == 0 and m.shape == grid.shape


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_one_dimensional_lattice_is_the_chain_without_triples(boundary):
    a = lattice((6,), boundary, ("A", "B"))
    b = chain(6, boundary, species=("A", "B"), terms=("b", "J"))
    assert a.param_names == b.param_names
    x = bf.all_states(b)
    np.testing.assert_array_equal(a.statistics(x), b.statistics(x))


def test_deep_statistics_match_definition():
    rng = np.random.default_rng(5)
    shape, species = (3, 4), [("A", "B"), ("X",), ("P", "Q")]
    m = deep(shape, species[0], species[1:])
    v = rng.integers(0, 3, (4, 12)).astype(np.int8)
    h1, h2 = rng.integers(0, 2, (4, 12)), rng.integers(0, 3, (4, 12))
    expected = layered_reference(v, [h1, h2], shape, (2, 2), species, [None, None])
    got = m.statistics(v, np.concatenate([h1, h2], axis=1).astype(np.int8))
    np.testing.assert_array_equal(got, expected)


def test_one_dimensional_lattice_rbm_is_the_periodic_chain_rbm():
    a, b = lattice_rbm((5,), ("A",), ("X",)), chain_rbm(5, "periodic")
    assert a.param_names == b.param_names
    x = bf.all_states(b)
    np.testing.assert_array_equal(
        a.statistics(x[:, :5], x[:, 5:]), b.statistics(x[:, :5], x[:, 5:])
    )


# ---- partition functions and moments of the 1D families: our models with transfer.py ----------
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize(
    "make",
    [
        lambda b: chain(7, b),
        lambda b: chain(5, b, species=("A", "B")),
        lambda b: chain(6, b, terms=("b", "K")),
        lambda b: chain_rbm(6, b),
    ],
)
def test_enumeration_matches_exact_1d(make, boundary):
    model = make(boundary)
    theta = np.random.default_rng(1).uniform(-1, 1, model.n_params)
    exact = bf.Exact(model, theta)
    np.testing.assert_allclose(exact_moments(model, theta), exact.moments, atol=1e-10)
    np.testing.assert_allclose(exact_log_partition(model, theta), exact.log_z, atol=1e-10)


# ---- hidden units given the visible ones ------------------------------------------------------
HIDDEN_MODELS = [
    (lambda: chain_rbm(5, "periodic"), [0.3, -0.9, 0.5]),
    (lambda: chain_rbm(5, "reflecting"), [-0.4, 1.2, -0.7]),
    (
        lambda: lattice_rbm((2, 2), ("A", "B"), ("X",), couple={"A": "X"}),
        [0.2, -0.3, 0.8, -0.5],
    ),
    (lambda: deep((3,), ("A", "B"), [("X", "Y")]), np.linspace(-1, 1, 8)),
]


@pytest.mark.parametrize(("make", "theta"), HIDDEN_MODELS)
def test_hidden_probabilities_and_awake_statistics_match_enumeration(make, theta):
    model = make()
    exact = bf.Exact(model, theta)
    v, _ = exact.visible_marginal()
    q = model.hidden_probabilities(v, theta)
    awake = model.awake_statistics(v, theta)
    histogram = model.awake_from_histogram(model.hidden_histogram(v), theta)
    for i in range(v.shape[0]):
        np.testing.assert_allclose(q[i], exact.hidden_marginals(v[i]), atol=1e-12)
        np.testing.assert_allclose(awake[i], exact.conditional_statistics(v[i]), atol=1e-10)
    np.testing.assert_allclose(histogram, awake, atol=1e-10)
    assert q.shape == (v.shape[0], model.n_hidden, len(model.hidden_species) + 1)


def test_deep_mean_field_exact_without_top_weights_and_a_fixed_point_otherwise():
    model = deep((3,), ("A",), [("X",), ("P",)])
    names = model.param_names  # b_A, W_AX, b_X, W_XP, b_P
    theta = np.array([0.2, 0.9, -0.4, 0.0, 0.3])
    exact = bf.Exact(model, theta)
    v, _ = exact.visible_marginal()
    q = model.hidden_probabilities(v, theta)
    for i in range(v.shape[0]):
        np.testing.assert_allclose(q[i], exact.hidden_marginals(v[i]), atol=1e-10)
    theta[names.index("W_XP")] = -1.3
    q = model.hidden_probabilities(v, theta)
    units, states, param = model.cliques
    for i in range(v.shape[0]):
        full = np.zeros((model.n_units, 2))
        full[np.arange(3), v[i]] = 1.0
        full[3:] = q[i]
        for u in range(3, model.n_units):  # q_u(1) = σ(Σ_cliques θ E_q[other units])
            field = 0.0
            for c in np.flatnonzero((units == u).any(axis=1)):
                others = [(w, s) for w, s in zip(units[c], states[c], strict=True) if w >= 0]
                field += theta[param[c]] * np.prod([full[w, s] for w, s in others if w != u])
            assert full[u, 1] == pytest.approx(1 / (1 + np.exp(-field)), abs=1e-9)


def test_short_open_chain_has_no_triples():
    from dbdflow.boltzmann import chain

    model = chain(2, "reflecting")
    v = np.array([[1, 1], [1, 0]], dtype=np.int8)
    assert model.statistics(v).tolist() == [[2, 1, 0], [1, 0, 0]]
