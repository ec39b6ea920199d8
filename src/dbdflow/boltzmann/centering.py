"""The centering transformation of (deep) Boltzmann machines (``papers/003_…``).

Centred models subtract an offset μ_{l,a} (one per layer l and species a, tied like the biases)
from every unit state in the energy:

    E_c(x; θ^c, μ) = -Σ_{(l,a)} b^c_{l,a} Σ_{i ∈ l} (x_{i,a} - μ_{l,a})
        - Σ_{pair params k} θ^c_k Σ_{cliques c of k} Π_{(u,a) ∈ c} (x_{u,a} - μ_{l(u),a})

with x_{i,a} = [x_i = a]. Expanding the products shows E_c = E(x; θ) + const(θ^c, μ) for the plain
model of :mod:`dbdflow.boltzmann.models` at the *natural* parameters θ = C(μ) θ^c:

    θ_k = θ^c_k for every pair parameter,
    b_{l,a} = b^c_{l,a} - Σ_k θ^c_k Σ_{(m,b)} D[(l,a), k, (m,b)] μ_{m,b},

where D[(l,a), k, (m,b)] is the number of cliques of k in which a unit of layer l in state a meets a
partner of layer m in state b (the same for every unit of the layer; periodic receptive fields make
deep models regular). So the distribution is that of the plain model at C(μ)θ^c, and samplers use
C(μ)θ^c. With C = I + N(μ) (N maps pair parameters to biases, N² = 0):

- the centred gradient is ∂ log L/∂θ^c = C(μ)ᵀ (⟨T⟩_data - ⟨T⟩_model);
- changing the offsets μ → μ' with the distribution fixed is θ^c' = θ^c + (N(μ) - N(μ'))θ^c,
  i.e. b' = b + Σ_k θ_k D (μ' - μ) (the familiar b ← b + W(λ' - λ)).

Offsets are ordered like the bias parameters, :func:`bias_names` (layer by layer, species order).
Models with 3-unit cliques (chains with K) cannot be centred this way.
"""

from __future__ import annotations

import functools

import numpy as np

from dbdflow.boltzmann.models import BoltzmannModel


@functools.lru_cache(maxsize=32)
def _structure(model: BoltzmannModel) -> tuple[np.ndarray, np.ndarray]:
    """(bias parameter index per (layer, species), D as an array (n_bias, n_params, n_bias))."""
    units, states, param = model.cliques
    arity = (units >= 0).sum(axis=1)
    if np.any(arity > 2):
        raise ValueError(f"the {model.family} model has 3-unit cliques; centering needs 1 or 2")
    layer_of = np.concatenate([np.full(lay.size, i) for i, lay in enumerate(model.layers)])
    first = np.cumsum([0] + [len(lay.species) for lay in model.layers])
    slot = lambda u, s: first[layer_of[u]] + s - 1  # noqa: E731  (layer, species) -> offset index
    n_bias = int(first[-1])
    bias = np.full(n_bias, -1)
    single, pair = arity == 1, arity == 2
    for k in np.unique(param[single]):
        rows = single & (param == k)
        u = units[rows, 0]
        slots = np.unique(slot(u, states[rows, 0]))
        lay = model.layers[layer_of[u[0]]]
        whole_layer = np.array_equal(np.sort(u), np.arange(lay.start, lay.start + lay.size))
        if slots.size != 1 or not whole_layer or bias[slots[0]] >= 0 or np.any(param[pair] == k):
            raise ValueError(f"parameter {model.param_names[k]} is not a layer bias")
        bias[slots[0]] = k
    if np.any(bias < 0):
        raise ValueError("centering needs one bias parameter per layer and species")
    counts = np.zeros((model.n_units, n_bias, model.n_params, n_bias))
    for end, other in ((0, 1), (1, 0)):
        u, s = units[pair, end], states[pair, end]
        np.add.at(
            counts,
            (u, slot(u, s), param[pair], slot(units[pair, other], states[pair, other])),
            1.0,
        )
    d = np.zeros((n_bias, model.n_params, n_bias))
    for j in range(n_bias):
        layer_index = int(np.searchsorted(first, j, side="right") - 1)
        lay = model.layers[layer_index]
        block = counts[lay.start : lay.start + lay.size, j]
        if not np.all(block == block[0]):
            raise ValueError(
                f"units of layer {layer_index} have different connectivity; centering with tied "
                "offsets needs a regular (e.g. periodic receptive-field) graph"
            )
        d[j] = block[0]
    return bias, d


def bias_names(model: BoltzmannModel) -> tuple[str, ...]:
    """The bias parameters, one per (layer, species), in the order offsets are given."""
    return tuple(model.param_names[k] for k in _structure(model)[0])


def _offsets(model: BoltzmannModel, offsets) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.float64)
    n = len(_structure(model)[0])
    if offsets.shape != (n,):
        raise ValueError(f"offsets must have shape ({n},), one per bias {bias_names(model)}")
    return offsets


def transform(model: BoltzmannModel, offsets) -> np.ndarray:
    """C(μ), (n_params, n_params): natural θ = C(μ) θ^c."""
    bias, d = _structure(model)
    c = np.eye(model.n_params)
    c[bias] -= d @ _offsets(model, offsets)
    return c


def to_natural(model: BoltzmannModel, theta_c, offsets) -> np.ndarray:
    """θ = C(μ) θ^c: plain-model parameters with the same distribution as the centred ones."""
    return transform(model, offsets) @ model._theta(theta_c)


def to_centered(model: BoltzmannModel, theta, offsets) -> np.ndarray:
    """θ^c = C(μ)⁻¹ θ = (2I - C(μ)) θ (since (C - I)² = 0)."""
    return (2 * np.eye(model.n_params) - transform(model, offsets)) @ model._theta(theta)


def shift(model: BoltzmannModel, theta_c, old, new) -> np.ndarray:
    """Centred parameters for offsets ``new`` describing the same distribution as (θ^c, ``old``)."""
    return to_centered(model, to_natural(model, theta_c, old), new)


def gradient(model: BoltzmannModel, natural_gradient, offsets) -> np.ndarray:
    """∂/∂θ^c = C(μ)ᵀ ∂/∂θ: the centred gradient from awake - asleep moments."""
    return transform(model, offsets).T @ np.asarray(natural_gradient, dtype=np.float64)


def data_offsets(model: BoltzmannModel, v, theta) -> np.ndarray:
    """Offsets from data: mean occupation of each visible species per site, and of each hidden
    species under p(h | v) (mean-field for several hidden layers), in :func:`bias_names` order."""
    v = np.asarray(v).reshape(-1, model.n_sites)
    out = [np.mean(v[..., None] == np.arange(1, len(model.visible_species) + 1), axis=(0, 1))]
    if model.n_hidden:
        q = model.hidden_probabilities(v, theta)
        for lay in model.layers[1:]:
            cols = slice(lay.start - model.n_sites, lay.start - model.n_sites + lay.size)
            out.append(q[:, cols, 1 : len(lay.species) + 1].mean(axis=(0, 1)))
    return np.concatenate(out)
