"""Boltzmann machines on lattices as tied-parameter MRFs (paper eqs. 21-25, 35, 37, 39, 44).

A model is a set of units (the visible lattice sites, then hidden layers), each multinomial over
its layer's species plus empty (state 0), and named parameters θ_k with cliques (see
:mod:`dbdflow.boltzmann.mrf`): E(v, h; θ) = -Σ_k θ_k T_k(v, h), p̃(v, h) = exp(-E)/Z(θ), so
⟨T_k⟩ = ∂ ln Z/∂θ_k (eqs. 22-25). Statistics T_k are extensive lattice sums.

Parameter names: ``b_<s>`` bias of species s, ``J_<s><t>`` nearest-neighbour coupling,
``K_<s><t><u>`` coupling of three consecutive sites, ``W_<s><t>`` weight between visible (or lower
layer) species s and hidden (upper layer) species t. Species names must be unique across layers.

Constructors: :func:`chain` (eq. 37), :func:`lattice` (its biases and nearest-neighbour
couplings on 1-3D lattices), :func:`chain_rbm` (eq. 39), :func:`lattice_rbm` (eq. 44), :func:`deep`
(stacked layers, Lotka-Volterra study). All share :class:`BoltzmannModel`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dbdflow.boltzmann import mrf
from dbdflow.simulate.lattice import Lattice

BOUNDARIES = {"periodic": "periodic", "reflecting": "reflecting", "open": "reflecting"}
CHAIN_TERMS = ("b", "J", "K")


@dataclass(frozen=True)
class Layer:
    """Units ``start .. start + size - 1``, multinomial over ``species`` plus empty."""

    species: tuple[str, ...]
    start: int
    size: int


@dataclass(frozen=True, eq=False)
class BoltzmannModel:
    """A Boltzmann machine over a lattice (attributes are the public contract).

    ``layers[0]`` holds the visible sites (units 0..n_sites-1), the others the hidden layers in
    order. ``cliques`` = (units (n, 3) -1-padded, required states (n, 3), parameter index (n,)).
    """

    family: str
    param_names: tuple[str, ...]
    shape: tuple[int, ...]
    boundary: str
    layers: tuple[Layer, ...]
    cliques: tuple[np.ndarray, np.ndarray, np.ndarray]
    terms: tuple[str, ...] = ()

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def n_sites(self) -> int:
        return self.layers[0].size

    @property
    def visible_species(self) -> tuple[str, ...]:
        return self.layers[0].species

    @property
    def hidden_species(self) -> tuple[str, ...]:
        return tuple(s for layer in self.layers[1:] for s in layer.species)

    @property
    def n_hidden(self) -> int:
        return sum(layer.size for layer in self.layers[1:])

    @property
    def n_units(self) -> int:
        return self.n_sites + self.n_hidden

    def index(self, name: str) -> int:
        """Position of parameter ``name`` in ``param_names``."""
        if name not in self.param_names:
            raise ValueError(f"unknown parameter {name!r}; this model has {self.param_names}")
        return self.param_names.index(name)

    @cached_property
    def mrf(self) -> mrf.MRF:
        """The compiled structure driving the kernels (built on first use)."""
        n_states = np.concatenate(
            [np.full(layer.size, len(layer.species) + 1, dtype=np.int8) for layer in self.layers]
        )
        return mrf.compile_mrf(n_states, *self.cliques, self.n_params)

    # ---- states ---------------------------------------------------------------------------
    def _layer_states(self, values, layer: Layer, name: str) -> np.ndarray:
        arr = np.asarray(values)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer states, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[-1] != layer.size:
            raise ValueError(f"{name} must have last axis {layer.size}, got shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() > len(layer.species)):
            raise ValueError(f"{name} holds states outside 0..{len(layer.species)}")
        return arr.astype(np.int8, copy=False)

    def joint_states(self, v, h=None) -> tuple[np.ndarray, tuple[int, ...]]:
        """(x (n, n_units + 1) int8 with the dummy column, leading shape) from v and h."""
        v = self._layer_states(v, self.layers[0], "v")
        lead = v.shape[:-1]
        x = np.zeros((int(np.prod(lead)), self.n_units + 1), dtype=np.int8)
        x[:, : self.n_sites] = v.reshape(-1, self.n_sites)
        if h is not None:
            if self.n_hidden == 0:
                raise ValueError("h given, but this model has no hidden units")
            h = np.asarray(h)
            if h.shape != (*lead, self.n_hidden):
                raise ValueError(f"h must have shape {(*lead, self.n_hidden)}, got {h.shape}")
            h = h.reshape(-1, self.n_hidden)
            for layer in self.layers[1:]:
                cols = slice(layer.start - self.n_sites, layer.start - self.n_sites + layer.size)
                x[:, layer.start : layer.start + layer.size] = self._layer_states(
                    h[:, cols], layer, "h"
                )
        elif self.n_hidden:
            raise ValueError(
                "h is required for a model with hidden units (awake_statistics gives E[T | v])"
            )
        return x, lead

    def _theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},) for {self.param_names}")
        return theta

    # ---- energy and statistics ------------------------------------------------------------
    def statistics(self, v, h=None) -> np.ndarray:
        """T_k(v, h) summed over the lattice, int64 of shape ``v.shape[:-1] + (n_params,)``."""
        x, lead = self.joint_states(v, h)
        m = self.mrf
        out = mrf.statistics_kernel(
            x, m.clique_units, m.clique_states, m.clique_param, self.n_params
        )
        return out.reshape(*lead, self.n_params)

    def energy(self, v, h, theta) -> np.ndarray:
        """E(v, h; θ) = -Σ_k θ_k T_k(v, h) (eqs. 22, 35, 37, 39, 44); h is None if fully visible."""
        return -self.statistics(v, h) @ self._theta(theta)

    def hidden_probabilities(self, v, theta, *, tol: float = 1e-10, max_passes: int = 200):
        """p(h_j = s | v), float (..., n_hidden, M' + 1) with M' the largest hidden species count.

        Exact for one hidden layer, where hidden units are independent given v. With several
        hidden layers the joint p(h | v) does not factorise; this returns the mean-field
        (variational) marginals, iterated to ``tol``, as used in DBM learning.
        """
        if self.n_hidden == 0:
            raise ValueError(f"the {self.family} model has no hidden units")
        q, lead = self._mean_field(v, theta, tol, max_passes)
        width = max(len(layer.species) for layer in self.layers[1:]) + 1
        out = q[:, self.n_sites : self.n_units, :width]
        return out.reshape(*lead, self.n_hidden, width)

    def awake_statistics(self, v, theta, *, tol: float = 1e-10, max_passes: int = 200):
        """E[T_k | v]: data moments with hidden units at their conditional probabilities.

        Float array ``v.shape[:-1] + (n_params,)``; equals ``statistics(v)`` for fully visible
        models; for several hidden layers the expectation is under the mean-field q(h | v).
        """
        if self.n_hidden == 0:
            self._theta(theta)
            return self.statistics(v).astype(np.float64)
        q, lead = self._mean_field(v, theta, tol, max_passes)
        m = self.mrf
        out = mrf.expected_statistics_kernel(
            q, m.clique_units, m.clique_states, m.clique_param, self.n_params
        )
        return out.reshape(*lead, self.n_params)

    def hidden_histogram(self, v) -> mrf.Histogram:
        """θ-independent receptive-field histogram of data v for one-hidden-layer models.

        ``awake_from_histogram(hist, θ)`` then equals ``awake_statistics(v, θ)`` (flattened over
        the leading axes) at the cost of the distinct receptive-field configurations only.
        """
        if len(self.layers) != 2:
            raise ValueError(f"hidden_histogram needs exactly one hidden layer ({self.family})")
        x, _ = self.joint_states(v, np.zeros((*np.shape(v)[:-1], self.n_hidden), np.int8))
        return mrf.histogram(self.mrf, x, np.arange(self.n_sites, self.n_units))

    def awake_from_histogram(self, hist: mrf.Histogram, theta) -> np.ndarray:
        """E[T_k | v] (n, n_params) for the lattices summarised by ``hist``."""
        n_states = len(self.layers[1].species) + 1
        return mrf.histogram_statistics(self.mrf, hist, self._theta(theta), n_states)

    def _mean_field(self, v, theta, tol, max_passes):
        x, lead = self.joint_states(v, np.zeros((*np.shape(v)[:-1], self.n_hidden), np.int8))
        m = self.mrf
        q = np.zeros((*x.shape, m.width))
        np.put_along_axis(q, x[..., None].astype(np.intp), 1.0, axis=-1)
        hidden = m.units_of_colours(np.unique(m.colour[self.n_sites :]))
        hidden = hidden[hidden >= self.n_sites]
        passes = 1 if len(self.layers) == 2 else max_passes
        mrf.mean_field_kernel(q, hidden, passes, tol, *m.kernel_args(self._theta(theta)))
        return q, lead


# ---- constructors --------------------------------------------------------------------------
def _boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {tuple(BOUNDARIES)}, got {boundary!r}")
    return BOUNDARIES[boundary]


def _species(species, name: str) -> tuple[str, ...]:
    if isinstance(species, str):
        species = (species,)
    species = tuple(species)
    if not species or not all(isinstance(s, str) and s for s in species):
        raise ValueError(f"{name} must be a non-empty sequence of species names, got {species!r}")
    if len(set(species)) != len(species):
        raise ValueError(f"{name} has repeated species: {species!r}")
    if len(species) > 126:
        raise ValueError(f"{name}: at most 126 species fit int8 states")
    return species


class _Builder:
    """Accumulates named parameters and their cliques."""

    def __init__(self):
        self.names: list[str] = []
        self.units: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.param: list[np.ndarray] = []

    def param_index(self, name: str) -> int:
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def add(self, name: str, units, states, new: bool = False) -> None:
        """Cliques on the rows of ``units`` (n, arity), all requiring ``states`` (arity,).

        ``new``: the name must not exist yet (guards against colliding species names).
        """
        if new and name in self.names:
            raise ValueError(f"parameter name {name!r} arises twice; use distinct species names")
        states = np.asarray(states, dtype=np.int8).reshape(-1)
        units = np.asarray(units, dtype=np.int32).reshape(len(units), states.size)
        k = self.param_index(name)
        padded = np.full((units.shape[0], 3), -1, dtype=np.int32)
        padded[:, : units.shape[1]] = units
        st = np.zeros((units.shape[0], 3), dtype=np.int8)
        st[:, : units.shape[1]] = states
        self.units.append(padded)
        self.states.append(st)
        self.param.append(np.full(units.shape[0], k, dtype=np.int32))

    def cliques(self):
        return (
            np.concatenate(self.units),
            np.concatenate(self.states),
            np.concatenate(self.param),
        )


def _add_multisets(builder: _Builder, term: str, species, runs) -> None:
    """One parameter ``<term>_<word>`` per multiset ``word`` of species of size runs.shape[1]
    (``combinations_with_replacement`` order), counting the rows of ``runs`` (unit tuples) that
    hold exactly that multiset in any order."""
    codes = range(1, len(species) + 1)
    for word in itertools.combinations_with_replacement(codes, runs.shape[1]):
        name = term + "_" + "".join(species[c - 1] for c in word)
        for arrangement in sorted(set(itertools.permutations(word))):
            builder.add(name, runs, arrangement)


def _runs(n_sites: int, length: int, periodic: bool) -> np.ndarray:
    """(n, length) site indices of the runs i, i+1, .., i+length-1 (wrapping on a ring)."""
    starts = np.arange(n_sites if periodic else max(n_sites - length + 1, 0))
    return (starts[:, None] + np.arange(length)) % n_sites


def chain(n_sites: int, boundary: str = "periodic", species=("A",), terms=CHAIN_TERMS):
    """Fully visible 1D chain (eq. 37), for several species one parameter per species multiset.

    With species codes 1..M in ``species`` order, each term has one parameter per multiset of
    species (``combinations_with_replacement`` order), counting the runs of sites that hold
    exactly that multiset in any order:

    - ``b_a``: T = Σ_i [v_i = a];
    - ``J_ab`` (a <= b): T = Σ_i [{v_i, v_{i+1}} = {a, b}] (same order as ``pair_labels``);
    - ``K_abc`` (a <= b <= c): T = Σ_i [{v_i, v_{i+1}, v_{i+2}} = {a, b, c}].

    One species gives ``("b_A", "J_AA", "K_AAA")`` with T = Σv_i, Σv_iv_{i+1}, Σv_iv_{i+1}v_{i+2}.
    Open chains (``reflecting``, alias ``open``) sum over the pairs/triples that exist, rings
    (``periodic``, n_sites >= 3) over all N. ``terms`` is a subsequence of ("b", "J", "K").
    """
    boundary = _boundary(boundary)
    species = _species(species, "species")
    terms = tuple(terms)
    if not terms or any(t not in CHAIN_TERMS for t in terms) or len(set(terms)) != len(terms):
        raise ValueError(f"terms must be distinct entries of {CHAIN_TERMS}, got {terms!r}")
    terms = tuple(t for t in CHAIN_TERMS if t in terms)
    n_sites = _positive(n_sites, "n_sites", 3 if boundary == "periodic" else 1)
    periodic = boundary == "periodic"
    builder = _Builder()
    for term in terms:
        _add_multisets(
            builder, term, species, _runs(n_sites, CHAIN_TERMS.index(term) + 1, periodic)
        )
    return BoltzmannModel(
        family="chain",
        param_names=tuple(builder.names),
        shape=(n_sites,),
        boundary=boundary,
        layers=(Layer(species, 0, n_sites),),
        cliques=builder.cliques(),
        terms=terms,
    )


def lattice(shape, boundary: str = "periodic", species=("A",)):
    """Fully visible lattice in 1-3 dimensions: biases and nearest-neighbour couplings.

    The multispecies Ising / Potts-type energy E(v) = -Σ_a b_a n_a - Σ_{a≤b} J_ab P_ab with n_a
    the count of species a and P_ab the number of nearest-neighbour bonds holding {a, b} in
    either order: the maximum-entropy model of the moments the simulator records (``counts`` and
    ``pairs``, :mod:`dbdflow.moments.observables`), so its awake moments are those moments
    themselves. Parameters ``b_<a>``, then ``J_<a><b>`` (a ≤ b in ``species`` order, the order
    of ``pair_labels``); bonds are those of :class:`dbdflow.simulate.Lattice` (``shape``,
    ``boundary``). In 1D it equals :func:`chain` with ``terms=("b", "J")``. Used as the fully
    visible DBD of the 3D Rössler experiment, where eq. 44's RBM is the hidden-unit model.
    """
    grid = Lattice(tuple(np.atleast_1d(shape).tolist()), _boundary(boundary))
    species = _species(species, "species")
    builder = _Builder()
    _add_multisets(builder, "b", species, np.arange(grid.n_sites)[:, None])
    _add_multisets(builder, "J", species, grid.bonds)
    return BoltzmannModel(
        family="lattice",
        param_names=tuple(builder.names),
        shape=grid.shape,
        boundary=grid.boundary,
        layers=(Layer(species, 0, grid.n_sites),),
        cliques=builder.cliques(),
        terms=("b", "J"),
    )


def chain_rbm(n_sites: int, boundary: str = "periodic"):
    """1D chain with one hidden unit per neighbour pair (eq. 39); ``("b_A", "W_AX", "b_X")``.

    Hidden unit j couples sites j and j+1: T = Σ_i v_i, Σ_j h_j (v_j + v_{j+1}), Σ_j h_j, with N
    hidden units on a ring (periodic, n_sites >= 3) and N - 1 on an open (reflecting) chain.
    """
    boundary = _boundary(boundary)
    n_sites = _positive(n_sites, "n_sites", 3 if boundary == "periodic" else 2)
    bonds = _runs(n_sites, 2, boundary == "periodic")
    hidden = n_sites + np.arange(bonds.shape[0])
    builder = _Builder()
    builder.add("b_A", np.arange(n_sites)[:, None], (1,))
    edges = np.stack([bonds.ravel(), np.repeat(hidden, 2)], axis=1)
    builder.add("W_AX", edges, (1, 1))
    builder.add("b_X", hidden[:, None], (1,))
    return BoltzmannModel(
        family="chain_rbm",
        param_names=tuple(builder.names),
        shape=(n_sites,),
        boundary=boundary,
        layers=(Layer(("A",), 0, n_sites), Layer(("X",), n_sites, bonds.shape[0])),
        cliques=builder.cliques(),
    )


def lattice_rbm(shape, visible_species, hidden_species, field=None, couple=None):
    """RBM with a hidden lattice of receptive fields and species-tied weights (eq. 44, Fig. 5).

    Hidden unit j sits at the same coordinate as visible site j and is connected to the block of
    ``field`` visible sites (per axis; default 2 along every axis, i.e. 2x2x2 in 3D) starting at
    its coordinate, wrapping periodically, so every visible site also sees prod(field) hidden
    units. ``couple`` maps a visible species to the hidden species it couples to (a name or a
    tuple of names); default: every visible species with every hidden species. Parameters, in
    order: ``b_<visible>``, ``W_<visible><hidden>`` (coupled pairs only), ``b_<hidden>``
    (e.g. b_A, b_B, b_C, W_AX, W_BY, W_CZ, b_X, b_Y, b_Z for eq. 44).
    """
    return _layered("lattice_rbm", shape, (visible_species, hidden_species), field, [couple])


def deep(shape, visible_species, hidden_layers, field=None, couple=None):
    """Deep Boltzmann machine: stacked multinomial layers of the visible lattice's shape.

    Unit j of layer l+1 connects to the ``field`` block (default 2 per axis, periodic wrap) of
    layer l starting at its coordinate; no connections within a layer or between non-adjacent
    layers. ``hidden_layers`` is a sequence of species tuples, one per hidden layer (names unique
    across layers); ``couple`` is None (all species pairs of adjacent layers) or one mapping per
    adjacent pair as in :func:`lattice_rbm`. Parameters: biases of layer 0, then for each layer
    l >= 1 the weights to layer l-1 followed by the biases of layer l. Use with
    :mod:`dbdflow.boltzmann.centering` for the centred parametrisation.
    """
    hidden_layers = [hidden_layers] if isinstance(hidden_layers, str) else list(hidden_layers)
    if not hidden_layers:
        raise ValueError("hidden_layers must name at least one hidden layer")
    couples = [None] * len(hidden_layers) if couple is None else list(couple)
    if len(couples) != len(hidden_layers):
        raise ValueError("couple must have one entry per hidden layer")
    return _layered("deep", shape, (visible_species, *hidden_layers), field, couples)


def _layered(family, shape, layer_species, field, couples):
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    if not 1 <= len(shape) <= 3 or any(s < 1 for s in shape):
        raise ValueError(f"shape must have 1, 2 or 3 positive lengths, got {shape!r}")
    field = (2,) * len(shape) if field is None else tuple(int(f) for f in np.atleast_1d(field))
    if len(field) != len(shape) or any(not 1 <= f <= s for f, s in zip(field, shape, strict=True)):
        raise ValueError(f"field must give 1..shape[a] sites per axis of {shape}, got {field!r}")
    species = [_species(s, f"species of layer {i}") for i, s in enumerate(layer_species)]
    flat = [s for layer in species for s in layer]
    if len(set(flat)) != len(flat):
        raise ValueError(f"species names must be unique across layers, got {species}")
    n_sites = int(np.prod(shape))
    coords = np.stack(np.unravel_index(np.arange(n_sites), shape), axis=1)
    offsets = np.array(list(itertools.product(*(range(f) for f in field))), dtype=np.int64)
    block = np.ravel_multi_index(
        tuple(np.moveaxis((coords[:, None, :] + offsets[None]) % np.array(shape), -1, 0)), shape
    )  # block[j, o]: the lower-layer site seen by upper unit j through offset o
    builder = _Builder()
    layers = [Layer(species[0], 0, n_sites)]
    for a, s in enumerate(species[0]):
        builder.add(f"b_{s}", np.arange(n_sites)[:, None], (a + 1,), new=True)
    for level in range(1, len(species)):
        lower, upper = species[level - 1], species[level]
        pairs = _coupled(couples[level - 1], lower, upper)
        start = level * n_sites
        edges = np.stack(
            [
                (start - n_sites + block).ravel(),
                np.repeat(start + np.arange(n_sites), block.shape[1]),
            ],
            axis=1,
        )
        for s, t in pairs:
            builder.add(f"W_{s}{t}", edges, (lower.index(s) + 1, upper.index(t) + 1), new=True)
        for a, s in enumerate(upper):
            builder.add(f"b_{s}", start + np.arange(n_sites)[:, None], (a + 1,), new=True)
        layers.append(Layer(upper, start, n_sites))
    return BoltzmannModel(
        family=family,
        param_names=tuple(builder.names),
        shape=shape,
        boundary="periodic",
        layers=tuple(layers),
        cliques=builder.cliques(),
    )


def _coupled(couple, lower, upper) -> list[tuple[str, str]]:
    if couple is None:
        return [(s, t) for s in lower for t in upper]
    if not isinstance(couple, dict):
        raise ValueError(f"couple must be a dict species -> species (or tuple), got {couple!r}")
    pairs = []
    for s, targets in couple.items():
        targets = (targets,) if isinstance(targets, str) else tuple(targets)
        if s not in lower or any(t not in upper for t in targets):
            raise ValueError(f"couple {s!r}: {targets!r} must map {lower} to {upper}")
        pairs.extend((s, t) for t in targets)
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"couple repeats a pair: {pairs}")
    return pairs


def _positive(n, name: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)
