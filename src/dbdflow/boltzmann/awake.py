"""Awake-phase (data) moments μ(t) per model family (paper eqs. 22-25, Algorithm 1 line 10).

For a data point (initial condition ``ic``, data step ``step``) the awake moment of statistic T_k
is the mean over that point's simulated lattices of E[T_k | v], with hidden units at their
conditional probabilities p(h | v) (DESIGN §3 "Awake phase"). Every provider here is a callable
``awake(ics, steps, theta) -> (n, K)`` (extensive, ``model.param_names`` order); θ (n, K) is the
model's parameter at each point, needed only when hidden units are present.

- ``chain`` (fully visible, eq. 37): the statistics are observables, θ-independent:
  b_a ← ``counts``, J_ab ← ``pairs`` (same unordered-pair order), K_AAA ← ``strings3`` (one
  species). Open chains count the pairs/triples inside the chain, like the model.
- one-hidden-layer species-tied RBMs (``chain_rbm``, eq. 39; ``lattice_rbm``, eq. 44): hidden
  unit j sees a receptive field of F visible sites; given v its conditional depends only on the
  *key* c = (c_1..c_M), the number of sites of each visible species in its field:
  p(h_j = t | v) = e^{a_t(c)} / (1 + Σ_t' e^{a_t'(c)}), a_t(c) = b_t + Σ_s W_st c_s. So

      E[T | v]:  b_s → count of s,   W_st → Σ_c H(c) c_s q_t(c),   b_t → Σ_c H(c) q_t(c),

  with H(c) the *receptive-field histogram* (how many hidden units have key c), θ-independent.
  Mean histograms per data point are computed once (:func:`field_histograms`, a numba kernel
  over the stored lattices, every trajectory used); each training step then costs O(keys) per
  point. For the chain RBM the field is a bond and c = v_j + v_{j+1} ∈ {0, 1, 2}; on a ring the
  bond histogram follows exactly from the observables (n_2 = ``pairs``, n_1 = 2·``counts`` −
  2·n_2, n_0 = N − n_1 − n_2, :func:`bond_histogram_from_moments`). An open chain has N − 1
  bonds and the end sites have one bond each, so n_1 needs the end occupancy, which the
  observables do not hold: use the lattices.
"""

from __future__ import annotations

import numba
import numpy as np

from dbdflow import io

MAX_KEYS = 1 << 20


def chain_statistics(model, mean: dict[str, np.ndarray]) -> np.ndarray:
    """Data moments (n_ics, n_times, K) of a fully visible ``chain`` or ``lattice`` model from the
    moments file's ``mean`` observables (arrays (n_ics, n_times, ...)): its statistics are
    recorded observables (counts, pairs, strings of 3), so the awake moments are data."""
    if model.n_hidden:
        raise ValueError(f"chain_statistics needs a fully visible model, got {model.family!r}")
    species = list(model.visible_species)
    pairs = [a + b for i, a in enumerate(species) for b in species[i:]]
    cols = []
    for name in model.param_names:
        term, word = name.split("_", 1)
        if term == "b":
            cols.append(mean["counts"][..., species.index(word)])
        elif term == "J":
            cols.append(mean["pairs"][..., pairs.index(word)])
        elif len(species) == 1:
            cols.append(mean["strings3"][..., 0])
        else:
            raise ValueError(
                f"parameter {name}: three-site statistics of several species are not among the "
                "stored observables (strings3 counts same-species strings only); drop term K"
            )
    return np.stack(cols, axis=-1).astype(np.float64)


class FixedAwake:
    """θ-independent awake moments: ``awake(ics, steps, theta) = moments[ics, steps]``."""

    def __init__(self, moments):
        self.moments = np.ascontiguousarray(moments, dtype=np.float64)

    def __call__(self, ics, steps, theta=None) -> np.ndarray:
        return self.moments[np.asarray(ics), np.asarray(steps)]


# ---- receptive fields -------------------------------------------------------------------------


def receptive_fields(model) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(fields int32 (n_hidden, F): visible sites seen by each hidden unit, couplings: (parameter
    index, visible code s, hidden code t) for every weight W_st) of a one-hidden-layer model."""
    if len(model.layers) != 2:
        raise ValueError(f"receptive fields need exactly one hidden layer ({model.family})")
    visible, hidden = model.visible_species, model.hidden_species
    couplings = [
        (model.param_names.index(f"W_{s}{t}"), a + 1, b + 1)
        for a, s in enumerate(visible)
        for b, t in enumerate(hidden)
        if f"W_{s}{t}" in model.param_names
    ]
    if not couplings:
        raise ValueError(f"the {model.family} model has no weights W_<visible><hidden>")
    units, _, param = model.cliques
    edges = units[param == couplings[0][0]][:, :2].astype(np.int64)
    edges = edges[np.lexsort((edges[:, 0], edges[:, 1]))]
    sizes = np.bincount(edges[:, 1] - model.n_sites, minlength=model.n_hidden)
    if sizes.min() != sizes.max() or edges[:, 0].max() >= model.n_sites:
        raise ValueError("hidden units must all see the same number of visible sites")
    return edges[:, 0].reshape(model.n_hidden, -1).astype(np.int32), couplings


@numba.njit(cache=True)
def _histogram_kernel(states, fields, n_species, radix, hist, counts):
    """Add the key histogram and the species counts of every lattice states[r, n] into
    hist[n, code] and counts[n, s]; code = Σ_s c_s radix^s."""
    n_traj, n_times, n_sites = states.shape
    for r in range(n_traj):
        for n in range(n_times):
            row = states[r, n]
            for i in range(n_sites):
                if row[i] > 0:
                    counts[n, row[i] - 1] += 1
            for j in range(fields.shape[0]):
                code = 0
                for f in range(fields.shape[1]):
                    s = row[fields[j, f]]
                    if s > 0:
                        code += radix ** (s - 1)
                hist[n, code] += 1


def field_histograms(model, states: np.ndarray):
    """Summed receptive-field histograms and species counts of lattices (n_traj, n_times,
    n_sites): int64 (n_times, (F+1)^M) indexed by code Σ_s c_s (F+1)^s, and int64 (n_times, M)."""
    fields, _ = receptive_fields(model)
    m, radix = len(model.visible_species), fields.shape[1] + 1
    if radix**m > MAX_KEYS:
        raise ValueError(f"{radix}^{m} receptive-field keys exceed {MAX_KEYS}")
    states = np.ascontiguousarray(states, dtype=np.int8)
    if states.ndim != 3 or states.shape[2] != model.n_sites:
        raise ValueError(
            f"states must have shape (n_traj, n_times, {model.n_sites}), got {states.shape}"
        )
    hist = np.zeros((states.shape[1], radix**m), dtype=np.int64)
    counts = np.zeros((states.shape[1], m), dtype=np.int64)
    _histogram_kernel(states, fields, m, radix, hist, counts)
    return hist, counts


def histograms_from_sims(model, files, n_ics: int):
    """Mean receptive-field histograms and species counts per IC and data step from sims files.

    Returns (keys int64 (n_keys, M): species counts c of each used key, hist float (n_ics,
    n_times, n_keys), counts float (n_ics, n_times, M)), means over each IC's trajectories.
    """
    hist = counts = None
    n_traj = np.zeros(n_ics, dtype=np.int64)
    for path in sorted(str(f) for f in files):
        _, _, attrs = io.read_sims_observables(path)
        ic = int(attrs["ic"])
        if not 0 <= ic < n_ics:
            raise ValueError(f"{path}: ic {ic} outside 0..{n_ics - 1}")
        states = io.read_sims_states(path)
        h, c = field_histograms(model, states)
        if hist is None:
            hist = np.zeros((n_ics, *h.shape), dtype=np.int64)
            counts = np.zeros((n_ics, *c.shape), dtype=np.int64)
        hist[ic] += h
        counts[ic] += c
        n_traj[ic] += states.shape[0]
    if hist is None or np.any(n_traj == 0):
        missing = np.flatnonzero(n_traj == 0).tolist()
        raise ValueError(f"no simulation files with lattices for ICs {missing}")
    used = np.flatnonzero(hist.sum(axis=(0, 1)))
    radix = round(hist.shape[2] ** (1 / counts.shape[2]))
    keys = (used[:, None] // radix ** np.arange(counts.shape[2])) % radix
    scale = 1.0 / n_traj[:, None, None]
    return keys, hist[:, :, used] * scale, counts * scale


def bond_histogram_from_moments(model, mean: dict[str, np.ndarray]):
    """(keys [[0], [1], [2]], bond histogram (n_ics, n_times, 3), counts (n_ics, n_times, 1))
    of a periodic ``chain_rbm`` from the observables ``counts`` and ``pairs`` (exact on a ring)."""
    if model.family != "chain_rbm":
        raise ValueError(f"bond histograms are for chain_rbm models, got {model.family!r}")
    if model.boundary != "periodic":
        raise ValueError(
            "an open chain's bond histogram needs the end sites' occupancy, which the moments "
            "do not hold: compute it from the lattices (histograms_from_sims)"
        )
    counts = mean["counts"][..., 0].astype(np.float64)
    n2 = mean["pairs"][..., 0].astype(np.float64)
    n1 = 2.0 * counts - 2.0 * n2
    hist = np.stack([model.n_sites - n1 - n2, n1, n2], axis=-1)
    return np.arange(3)[:, None], hist, counts[..., None]


class FieldAwake:
    """Awake moments of a one-hidden-layer species-tied RBM from receptive-field histograms.

    ``keys`` (n_keys, M) species counts per key, ``hist`` (n_ics, n_times, n_keys) and
    ``counts`` (n_ics, n_times, M) mean histograms and visible species counts per data point.
    """

    def __init__(self, model, keys, hist, counts):
        _, couplings = receptive_fields(model)
        hidden = model.layers[1].species
        self.n_params = model.n_params
        self.keys = np.asarray(keys, dtype=np.float64)
        self.hist = np.asarray(hist, dtype=np.float64)
        self.counts = np.asarray(counts, dtype=np.float64)
        if self.hist.shape[-1] != self.keys.shape[0] or self.counts.shape[-1] != len(
            model.visible_species
        ):
            raise ValueError("hist, keys and counts disagree in their number of keys or species")
        self.visible_bias = [model.index(f"b_{s}") for s in model.visible_species]
        self.hidden_bias = [model.index(f"b_{t}") for t in hidden]
        self.couplings = couplings
        self._kernel_couplings = (
            np.array(self.hidden_bias, dtype=np.int64),
            *np.array(couplings, dtype=np.int64).reshape(-1, 3).T.copy(),
        )

    def _activations(self, theta) -> np.ndarray:
        """(n, n_keys, 1 + hidden species): a_t(c) with a_0 = 0 (the empty hidden state)."""
        theta = np.atleast_2d(theta)
        act = np.zeros((theta.shape[0], self.keys.shape[0], len(self.hidden_bias) + 1))
        for b, k in enumerate(self.hidden_bias):
            act[..., b + 1] = theta[:, k, None]
        for k, s, t in self.couplings:
            act[..., t] += theta[:, k, None] * self.keys[None, :, s - 1]
        return act

    def _conditionals(self, theta):
        """(q (n, n_keys, 1 + hidden species): p(h_j = t | key), e (n_keys, hidden, K): the
        statistics of one hidden unit in state t ≥ 1 (b_t → 1, W_st → c_s))."""
        act = self._activations(theta)
        act -= act.max(axis=-1, keepdims=True)
        q = np.exp(act)
        q /= q.sum(axis=-1, keepdims=True)
        e = np.zeros((self.keys.shape[0], len(self.hidden_bias), self.n_params))
        for b, k in enumerate(self.hidden_bias):
            e[:, b, k] = 1.0
        for k, s, t in self.couplings:
            e[:, t - 1, k] = self.keys[:, s - 1]
        return q, e

    def covariance(self, ics, steps, theta) -> np.ndarray:
        """(n, K, K): the data mean of Cov[T | v] (hidden units independent given v), the part
        of the log-likelihood's Hessian that comes from the hidden units."""
        ics, steps = np.asarray(ics), np.asarray(steps)
        q, e = self._conditionals(theta)
        mean = np.einsum("nct,ctk->nck", q[..., 1:], e)
        second = np.einsum("nct,ctk,ctl->nckl", q[..., 1:], e, e)
        cov = second - mean[..., :, None] * mean[..., None, :]
        return np.einsum("nc,nckl->nkl", self.hist[ics, steps], cov)

    def __call__(self, ics, steps, theta) -> np.ndarray:
        ics, steps = np.asarray(ics, dtype=np.int64), np.asarray(steps, dtype=np.int64)
        theta = np.ascontiguousarray(np.atleast_2d(theta), dtype=np.float64)
        out = _field_moments(theta, ics, steps, self.hist, self.keys, *self._kernel_couplings)
        out[:, self.visible_bias] = self.counts[ics, steps]
        return out

    def log_partial(self, ics, steps, theta) -> np.ndarray:
        """Mean over the data of ln Σ_h exp(-E(v, h)) (n,): the data part of the log-likelihood."""
        theta = np.atleast_2d(theta)
        ics, steps = np.asarray(ics), np.asarray(steps)
        act = self._activations(theta)
        top = act.max(axis=-1)
        soft = top + np.log(np.exp(act - top[..., None]).sum(axis=-1))
        visible = (self.counts[ics, steps] * theta[:, self.visible_bias]).sum(axis=-1)
        return visible + np.einsum("nc,nc->n", self.hist[ics, steps], soft)


@numba.njit(cache=True)
def _field_moments(theta, ics, steps, hist, keys, hidden_bias, cpl_param, cpl_s, cpl_t):
    """(n, K) Σ_c H(c) E[T | key c] at θ_r, H = hist[ics[r], steps[r]] (module docstring); the
    visible biases' entries are left 0 for the caller. Keys with H(c) = 0 are skipped."""
    n, n_params = theta.shape
    n_hidden = hidden_bias.size
    act = np.empty(n_hidden + 1)  # a_0 = 0: the empty hidden state
    out = np.zeros((n, n_params))
    for r in range(n):
        row = hist[ics[r], steps[r]]
        for c in range(keys.shape[0]):
            weight = row[c]
            if weight == 0.0:
                continue
            act[0] = 0.0
            for b in range(n_hidden):
                act[b + 1] = theta[r, hidden_bias[b]]
            for j in range(cpl_param.size):
                act[cpl_t[j]] += theta[r, cpl_param[j]] * keys[c, cpl_s[j] - 1]
            top = act.max()
            total = 0.0
            for t in range(n_hidden + 1):
                act[t] = np.exp(act[t] - top)
                total += act[t]
            scale = weight / total  # H(c) q_t(c) = scale · act[t]
            for b in range(n_hidden):
                out[r, hidden_bias[b]] += scale * act[b + 1]
            for j in range(cpl_param.size):
                out[r, cpl_param[j]] += scale * act[cpl_t[j]] * keys[c, cpl_s[j] - 1]
    return out
