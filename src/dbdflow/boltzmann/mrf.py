"""Tied-parameter Markov random fields, compiled once for the samplers (DESIGN §3 "Energy").

Every Boltzmann machine of dbdflow is written as one structure. Units u = 0..n_units-1 (visible
lattice sites first, then hidden layers) are multinomial, unit u taking states 0..S_u-1 (0 = empty,
1..M = species). A *clique* c is 1-3 distinct units with one required non-empty state each, and
carries a parameter index k(c). The sufficient statistics and the energy (paper eqs. 22, 35) are

    T_k(x) = Σ_{c: k(c)=k} Π_{(u,s) ∈ c} [x_u = s],        E(x; θ) = -Σ_k θ_k T_k(x),

so a species-tied weight W_AX is one parameter with a clique per (visible, hidden) edge, requiring
state A on the visible unit and X on the hidden one.

Compilation. Cliques on the same units are merged into a *factor*, whose log-potential table
φ_f(x_f) = Σ_{c ∈ f} θ_{k(c)} [x_c = s_c] is linear in θ. Factors with the same clique pattern
share one table, stored once per position of the updated unit ("oriented": the updated unit's state
is the last index, the two other units' states the first two; missing units are the dummy unit
``n_units``, always in state 0). The CSR incidence ``inc_ptr`` (unit → factors) with
``inc_table, inc_o1, inc_o2`` gives every unit's conditional log-probabilities

    log p(x_u = s | rest) = Σ_{e ∈ inc(u)} tables[inc_table[e], x[inc_o1[e]], x[inc_o2[e]], s] + c,

which is all one Gibbs kernel needs for every model. Each unit's list holds its one-unit
factors (constant given θ), then two-unit factors from ``inc_first`` (``inc_o2`` is the dummy),
then three-unit factors from ``inc_triple``, so the kernel skips lookups it does not need.

A greedy colouring of the interaction graph (units sharing a factor get different colours) gives
the chromatic / block sweep order: layered models get two classes (block Gibbs), chains with
3-unit cliques three or more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True, eq=False)
class MRF:
    """Flat arrays of a compiled tied-parameter MRF (see the module docstring).

    Arrays are indexed by unit with one extra trailing *dummy* unit (index ``n_units``) that is
    always in state 0 and pads cliques and factors to three units.
    """

    n_units: int
    n_params: int
    n_states: np.ndarray  # int8 (n_units + 1,)
    clique_units: np.ndarray  # int32 (n_cliques, 3), padded with the dummy unit
    clique_states: np.ndarray  # int8 (n_cliques, 3), padded with 0
    clique_param: np.ndarray  # int32 (n_cliques,)
    n_tables: int
    width: int  # S = max states of a unit; tables are (n_tables, S, S, S)
    fill_index: np.ndarray  # int64, flat positions in the tables ...
    fill_param: np.ndarray  # int32, ... receiving θ[fill_param]
    inc_ptr: np.ndarray  # uint64 (n_units + 1,); unsigned indices spare numba's wraparound checks
    inc_first: np.ndarray  # uint64 (n_units,), first incidence of a factor with other units
    inc_triple: np.ndarray  # uint64 (n_units,), first incidence of a three-unit factor
    inc_table: np.ndarray  # uint32
    inc_o1: np.ndarray  # uint32
    inc_o2: np.ndarray  # uint32
    colour: np.ndarray  # int32 (n_units,)
    order: np.ndarray  # int32 (n_units,), units sorted by colour
    class_ptr: np.ndarray  # int64 (n_colours + 1,), colour classes as slices of ``order``

    @property
    def n_colours(self) -> int:
        return self.class_ptr.size - 1

    def tables(self, theta: np.ndarray) -> np.ndarray:
        """The oriented log-potential tables at parameters θ, float64 (n_tables, S, S, S)."""
        theta = np.asarray(theta, dtype=np.float64)
        flat = np.zeros(self.n_tables * self.width**3)
        np.add.at(flat, self.fill_index, theta[self.fill_param])
        return flat.reshape(self.n_tables, self.width, self.width, self.width)

    def kernel_args(self, theta: np.ndarray) -> tuple:
        """(inc_ptr, inc_table, inc_o1, inc_o2, tables(θ), n_states), the kernels' common tail."""
        return (
            self.inc_ptr,
            self.inc_table,
            self.inc_o1,
            self.inc_o2,
            self.tables(theta),
            self.n_states,
        )

    def units_of_colours(self, colours) -> np.ndarray:
        """int32 array of the units whose colour is in ``colours``, in sweep order."""
        mask = np.isin(self.colour[self.order], np.asarray(colours))
        return np.ascontiguousarray(self.order[mask])


def compile_mrf(n_states, clique_units, clique_states, clique_param, n_params: int) -> MRF:
    """Compile cliques (units -1-padded to 3, required states >= 1) into an :class:`MRF`."""
    n_states = np.asarray(n_states, dtype=np.int8)
    n_units = n_states.size
    units = np.asarray(clique_units, dtype=np.int64).reshape(-1, 3)
    states = np.asarray(clique_states, dtype=np.int64).reshape(-1, 3)
    param = np.asarray(clique_param, dtype=np.int64)
    real = units >= 0
    if np.any(units >= n_units) or np.any(states[real] < 1):
        raise ValueError("cliques must name existing units with required states >= 1")
    if np.any(states[real] >= n_states[units[real]]):
        raise ValueError("a clique requires a state its unit does not have")
    if np.any(param < 0) or np.any(param >= n_params):
        raise ValueError(f"clique parameter indices must lie in 0..{n_params - 1}")
    # canonical form: real units ascending, then dummies (state 0)
    key = np.where(real, units, n_units)
    perm = np.argsort(key, axis=1, kind="stable")
    units = np.take_along_axis(key, perm, axis=1)
    states = np.where(units == n_units, 0, np.take_along_axis(states, perm, axis=1))
    arity = (units < n_units).sum(axis=1)
    if np.any(arity == 0) or np.any((units[:, 1:] == units[:, :-1]) & (units[:, 1:] < n_units)):
        raise ValueError("every clique needs 1-3 distinct units")
    width = int(max(n_states.max(), 1))

    # factors: cliques on the same units; types: factors with the same clique pattern
    factor_units, factor_of = np.unique(units, axis=0, return_inverse=True)
    factor_of = factor_of.ravel()
    rows = np.stack([factor_of, param, states[:, 0], states[:, 1], states[:, 2]], axis=1)
    rows = rows[np.lexsort(rows[:, ::-1].T)]
    bounds = np.flatnonzero(np.diff(rows[:, 0])) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [rows.shape[0]]])
    pattern_type: dict[bytes, int] = {}
    factor_type = np.empty(factor_units.shape[0], dtype=np.int64)
    patterns = []
    for f, (a, b) in enumerate(zip(starts, ends, strict=True)):
        body = rows[a:b, 1:]
        sig = body.tobytes()
        if sig not in pattern_type:
            pattern_type[sig] = len(patterns)
            patterns.append(body)
        factor_type[f] = pattern_type[sig]

    # oriented tables: index (type * 3 + position of the updated unit)
    fill_index, fill_param = [], []
    for t, body in enumerate(patterns):
        for p in range(3):
            others = [q for q in range(3) if q != p]
            flat = (((t * 3 + p) * width + body[:, 1 + others[0]]) * width) + body[:, 1 + others[1]]
            flat = flat * width + body[:, 1 + p]
            keep = body[:, 1 + p] > 0  # only positions holding a real unit
            fill_index.append(flat[keep])
            fill_param.append(body[keep, 0])
    fill_index = np.concatenate(fill_index).astype(np.int64)
    fill_param = np.concatenate(fill_param).astype(np.int32)

    # incidence: one entry per (factor, real position)
    f_arity = (factor_units < n_units).sum(axis=1)
    inc_unit, inc_table, inc_o1, inc_o2 = [], [], [], []
    for p in range(3):
        on = f_arity > p
        others = [q for q in range(3) if q != p]
        inc_unit.append(factor_units[on, p])
        inc_table.append(factor_type[on] * 3 + p)
        inc_o1.append(factor_units[on, others[0]])
        inc_o2.append(factor_units[on, others[1]])
    inc_unit = np.concatenate(inc_unit)
    inc_o1, inc_o2 = np.concatenate(inc_o1), np.concatenate(inc_o2)
    size = (inc_o1 < n_units).astype(np.int64) + (inc_o2 < n_units)  # other units: 0, 1 or 2
    by_unit = np.lexsort((size, inc_unit))  # per unit: one-, two-, then three-unit factors
    inc_ptr = np.zeros(n_units + 1, dtype=np.int64)
    np.add.at(inc_ptr, inc_unit + 1, 1)
    inc_ptr = np.cumsum(inc_ptr)
    inc_first = inc_ptr[:-1] + np.bincount(inc_unit[size == 0], minlength=n_units)
    inc_triple = inc_first + np.bincount(inc_unit[size == 1], minlength=n_units)
    inc_table = np.concatenate(inc_table)[by_unit].astype(np.uint32)
    inc_o1 = inc_o1[by_unit].astype(np.uint32)
    inc_o2 = inc_o2[by_unit].astype(np.uint32)
    inc_ptr = inc_ptr.astype(np.uint64)

    colour = _greedy_colouring(inc_ptr, inc_o1, inc_o2, n_units)
    order = np.argsort(colour, kind="stable").astype(np.int32)
    class_ptr = np.searchsorted(colour[order], np.arange(colour.max(initial=-1) + 2))
    return MRF(
        n_units=n_units,
        n_params=int(n_params),
        n_states=np.append(n_states, np.int8(1)),
        clique_units=units.astype(np.int32),
        clique_states=states.astype(np.int8),
        clique_param=param.astype(np.int32),
        n_tables=3 * len(patterns),
        width=width,
        fill_index=fill_index,
        fill_param=fill_param,
        inc_ptr=inc_ptr,
        inc_first=inc_first.astype(np.uint64),
        inc_triple=inc_triple.astype(np.uint64),
        inc_table=inc_table,
        inc_o1=inc_o1,
        inc_o2=inc_o2,
        colour=colour,
        order=order,
        class_ptr=class_ptr.astype(np.int64),
    )


@numba.njit(cache=True)
def _greedy_colouring(inc_ptr, inc_o1, inc_o2, n_units):
    colour = np.full(n_units, -1, dtype=np.int32)
    most = 0
    for u in range(n_units):
        most = max(most, np.int64(inc_ptr[u + 1] - inc_ptr[u]))
    used = np.full(2 * most + 2, -1, dtype=np.int64)  # greedy needs <= 2·degree + 1 colours
    for u in range(n_units):
        for e in range(inc_ptr[u], inc_ptr[u + 1]):
            for o in (inc_o1[e], inc_o2[e]):
                if o < n_units and colour[o] >= 0:
                    used[colour[o]] = u
        c = 0
        while used[c] == u:
            c += 1
        colour[u] = c
    return colour


@numba.njit(cache=True)
def statistics_kernel(x, clique_units, clique_states, clique_param, n_params):
    """T_k(x) for each row of ``x`` (n, n_units + 1) int8 with the dummy column last."""
    out = np.zeros((x.shape[0], n_params), dtype=np.int64)
    for i in range(x.shape[0]):
        row = x[i]
        for c in range(clique_param.size):
            if (
                row[clique_units[c, 0]] == clique_states[c, 0]
                and row[clique_units[c, 1]] == clique_states[c, 1]
                and row[clique_units[c, 2]] == clique_states[c, 2]
            ):
                out[i, clique_param[c]] += 1
    return out


@numba.njit(cache=True)
def expected_statistics_kernel(q, clique_units, clique_states, clique_param, n_params):
    """E[T_k] under the product distribution q (n, n_units + 1, S) over units, per row.

    Exact conditional expectations when every clique has at most one unit that is not one-hot
    (Rao-Blackwellisation over one colour class); the mean-field expectation otherwise.
    """
    out = np.zeros((q.shape[0], n_params))
    for i in range(q.shape[0]):
        qi = q[i]
        for c in range(clique_param.size):
            out[i, clique_param[c]] += (
                qi[clique_units[c, 0], clique_states[c, 0]]
                * qi[clique_units[c, 1], clique_states[c, 1]]
                * qi[clique_units[c, 2], clique_states[c, 2]]
            )
    return out


@numba.njit(cache=True)
def conditional_statistics_kernel(
    x, units, free, inc_ptr, inc_table, inc_o1, inc_o2, tables, n_states, cliques, n_params
):
    """E[T_k | x outside ``units``] per row of x, for ``units`` of one colour class.

    ``free`` marks those units (n_units + 1 bools); they are conditionally independent given
    the rest, and every clique holds at most one of them, so the expectation of a clique's
    indicator is p(x_u = s_u | rest) times the indicators of its other units.
    ``cliques`` = (clique_units, clique_states, clique_param).
    """
    clique_units, clique_states, clique_param = cliques
    width = tables.shape[3]
    out = np.zeros((x.shape[0], n_params))
    prob = np.zeros((free.size, width))
    for i in range(x.shape[0]):
        xi = x[i]
        for idx in range(units.size):
            u = units[idx]
            m = n_states[u]
            prob[u, :m] = 0.0
            for e in range(inc_ptr[u], inc_ptr[u + 1]):
                for s in range(m):
                    prob[u, s] += tables[inc_table[e], xi[inc_o1[e]], xi[inc_o2[e]], s]
            top = prob[u, :m].max()
            total = 0.0
            for s in range(m):
                prob[u, s] = np.exp(prob[u, s] - top)
                total += prob[u, s]
            prob[u, :m] /= total
        for c in range(clique_param.size):
            value = 1.0
            for j in range(3):
                u = clique_units[c, j]
                s = clique_states[c, j]
                if free[u]:
                    value *= prob[u, s]
                elif xi[u] != s:
                    value = 0.0
                    break
            out[i, clique_param[c]] += value
    return out


@numba.njit(cache=True)
def mean_field_kernel(
    q, units, max_passes, tol, inc_ptr, inc_table, inc_o1, inc_o2, tables, n_states
):
    """Mean-field updates q_u(s) ∝ exp(E_q[Σ_factors φ]) of ``units``, in place on q (n, U+1, S).

    Sequential passes over ``units`` until the largest change is below ``tol`` or after
    ``max_passes``. Units of one colour class do not interact, so a single pass over one class
    with the others one-hot gives their exact conditional probabilities p(x_u | rest).
    Returns the number of passes made per row.
    """
    width = tables.shape[3]
    field = np.empty(width)
    passes = np.zeros(q.shape[0], dtype=np.int64)
    for i in range(q.shape[0]):
        qi = q[i]
        for it in range(max_passes):
            change = 0.0
            for idx in range(units.size):
                u = units[idx]
                m = n_states[u]
                field[:m] = 0.0
                for e in range(inc_ptr[u], inc_ptr[u + 1]):
                    t, o1, o2 = inc_table[e], inc_o1[e], inc_o2[e]
                    for a in range(n_states[o1]):
                        qa = qi[o1, a]
                        if qa == 0.0:
                            continue
                        for b in range(n_states[o2]):
                            qab = qa * qi[o2, b]
                            if qab == 0.0:
                                continue
                            for s in range(m):
                                field[s] += qab * tables[t, a, b, s]
                top = field[:m].max()
                total = 0.0
                for s in range(m):
                    field[s] = np.exp(field[s] - top)
                    total += field[s]
                for s in range(m):
                    new = field[s] / total
                    change = max(change, abs(new - qi[u, s]))
                    qi[u, s] = new
            passes[i] = it + 1
            if change < tol:
                break
    return passes


@dataclass(frozen=True)
class Histogram:
    """Receptive-field histogram of visible states, for models with one hidden layer.

    Given v, a hidden unit's conditional p(h_j | v) and its cliques' expected statistics depend
    only on its *key*: the sorted codes (table, x_o1, x_o2) of its factors. So E[T | v] =
    ``base`` + ``counts`` @ F(θ), with F(θ)[key] the expected statistics of one hidden unit with
    that key. Keys and counts do not depend on θ: computed once, they give awake moments at any θ
    for the cost of evaluating F on the distinct keys (DESIGN §3 "Awake phase").

    keys (n_keys, L) int64 (-1 padded); counts (n, n_keys) int64; base (n, n_params) int64, the
    statistics of the cliques without hidden units.
    """

    keys: np.ndarray
    counts: np.ndarray
    base: np.ndarray


def histogram(m: MRF, x: np.ndarray, hidden: np.ndarray) -> Histogram:
    """The :class:`Histogram` of joint states x (visible part used) for the hidden units."""
    per_unit = np.diff(m.inc_ptr.astype(np.int64))[hidden]
    codes = _unit_keys(
        x, hidden, int(per_unit.max()), m.width, m.inc_ptr, m.inc_table, m.inc_o1, m.inc_o2
    )
    flat = codes.reshape(-1, codes.shape[-1])
    order = np.lexsort(flat.T[::-1])  # unique rows (much faster than np.unique(axis=0))
    ranked = flat[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    keys = ranked[first]
    inverse = np.empty(len(flat), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    sample = np.repeat(np.arange(x.shape[0]), hidden.size)
    counts = np.bincount(
        sample * keys.shape[0] + inverse, minlength=x.shape[0] * keys.shape[0]
    ).reshape(x.shape[0], keys.shape[0])
    visible_only = ~np.isin(m.clique_units, hidden).any(axis=1)
    base = statistics_kernel(
        x,
        np.ascontiguousarray(m.clique_units[visible_only]),
        np.ascontiguousarray(m.clique_states[visible_only]),
        np.ascontiguousarray(m.clique_param[visible_only]),
        m.n_params,
    )
    return Histogram(keys, counts, base)


def histogram_statistics(m: MRF, hist: Histogram, theta, n_hidden_states: int) -> np.ndarray:
    """E[T | v] (n, n_params) from a :class:`Histogram` at θ."""
    w = m.width
    cliques = np.zeros(m.n_tables * w**3 * m.n_params)
    np.add.at(cliques, m.fill_index * m.n_params + m.fill_param, 1.0)
    cliques = cliques.reshape(m.n_tables, w, w, w, m.n_params)
    per_key = _key_statistics(hist.keys, m.tables(theta), cliques, n_hidden_states)
    return hist.base + hist.counts @ per_key


@numba.njit(cache=True)
def _unit_keys(x, units, length, width, inc_ptr, inc_table, inc_o1, inc_o2):
    out = np.full((x.shape[0], units.size, length), -1, dtype=np.int64)
    for i in range(x.shape[0]):
        for j in range(units.size):
            u = units[j]
            n = 0
            for e in range(inc_ptr[u], inc_ptr[u + 1]):
                out[i, j, n] = (np.int64(inc_table[e]) * width + x[i, inc_o1[e]]) * width + x[
                    i, inc_o2[e]
                ]
                n += 1
            out[i, j, :n].sort()
    return out


@numba.njit(cache=True)
def _key_statistics(keys, tables, cliques, m):
    """F[key, k]: expected statistics of the cliques of one hidden unit with that key."""
    width = cliques.shape[1]
    out = np.zeros((keys.shape[0], cliques.shape[4]))
    field = np.empty(m)
    for r in range(keys.shape[0]):
        field[:] = 0.0
        for c in range(keys.shape[1]):
            code = keys[r, c]
            if code < 0:
                continue
            t, rest = divmod(code, width * width)
            a, b = divmod(rest, width)
            for s in range(m):
                field[s] += tables[t, a, b, s]
        q = np.exp(field - field.max())
        q /= q.sum()
        for c in range(keys.shape[1]):
            code = keys[r, c]
            if code < 0:
                continue
            t, rest = divmod(code, width * width)
            a, b = divmod(rest, width)
            for s in range(m):
                out[r] += q[s] * cliques[t, a, b, s]
    return out
