"""Asleep-phase moments μ̃(θ) = ⟨T⟩_θ (paper eqs. 23-25, Algorithm 1 line 11) for many θ at once.

Algorithm 1 needs the model moments at every point θ(t_n) of a batch of solved trajectories, so
each provider here maps θ (n, K) to moments (n, K), extensive, in ``model.param_names`` order.

:class:`ExactAsleep` (1D ``chain`` and ``chain_rbm``): exact transfer-matrix moments, computed
for a whole batch in one compiled call. With the window chain of :mod:`~dbdflow.boltzmann.
transfer` (transition weights M(x', x) = e^{φ(x', x)}, φ linear in θ for chains, plus the bond
softplus ln(1 + e^{b_X + W s}) for the chain RBM), Z = a₀ᵀ M^n 1 (open) or Tr M^N (ring) and
∂ln Z/∂θ_p = ∂_p Z / Z. M^n is built by binary powering, every entry rescaled by the largest after
each product, and ∂ln Z/∂θ is its reverse-mode derivative (three small matrix products per
squaring, independent of the number of parameters). All terms are non-negative (statistics are
counts, the softplus is increasing), so nothing cancels and the result agrees with
:func:`~dbdflow.boltzmann.transfer.exact_moments` to rounding. θ's go through in batches with
the batch index innermost, so the small products vectorise: about 1 µs per θ for the paper's
1000-site chains (0.2-0.4 ms per 300 θ, 5-6× the per-θ loop; ``benchmarks/asleep.py``).

:class:`SampledAsleep` (any family): Gibbs estimates, the modes of the paper §IV.B: ``random``
(k sweeps from random states), ``pcd`` (persistent chains, one set per data point (ic, step),
kept between training steps; :meth:`SampledAsleep.state` saves them for bit-identical resumes) or
``cd`` (k sweeps from data lattices). Hidden units enter at their conditional probabilities
(``hidden="probabilities"``, the paper's "raw probabilities") or as sampled states.
"""

from __future__ import annotations

import numba
import numpy as np

from dbdflow.boltzmann import gibbs
from dbdflow.boltzmann import transfer as _transfer

EXACT_FAMILIES = ("chain", "chain_rbm")
SAMPLED = ("random", "pcd", "cd")
BLOCK = 64  # θ per batch of the exact kernel: the batch index is innermost, so it vectorises


class ExactAsleep:
    """Exact μ̃(θ) for a 1D ``chain`` or ``chain_rbm`` model, batched over θ."""

    random = False  # draws nothing: training passes no generator

    def __init__(self, model):
        if model.family not in EXACT_FAMILIES:
            raise ValueError(
                f"exact asleep moments need a model of family {EXACT_FAMILIES}, got "
                f"{model.family!r}"
            )
        self.model = model
        # the transfer module's window-chain tables (one private helper, shared on purpose)
        lay = _transfer._layout(_transfer._key(model), ())
        self._q, self._w, self._periodic, self._n_trans = lay.q, lay.w, lay.periodic, lay.n_trans
        self._lin0 = np.ascontiguousarray(lay.lin0, dtype=np.float64)
        self._lin = np.ascontiguousarray(lay.lin, dtype=np.float64)
        if lay.rbm is None:
            self._rbm = (
                -1,
                -1,
                np.zeros((self._lin0.shape[0], 0)),
                np.zeros((self._lin.shape[0], 0)),
            )
        else:
            i_w, i_x, bonds0, bonds = lay.rbm
            self._rbm = (
                int(i_w),
                int(i_x),
                np.ascontiguousarray(bonds0),
                np.ascontiguousarray(bonds),
            )

    def __call__(self, theta, ics=None, steps=None, rng=None) -> np.ndarray:
        """⟨T⟩ at each row of θ (n, K), float (n, K). ``ics``, ``steps`` and ``rng`` are unused
        (the interface of :class:`SampledAsleep`)."""
        theta = np.ascontiguousarray(np.atleast_2d(theta), dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != self.model.n_params:
            raise ValueError(f"theta must have shape (n, {self.model.n_params}), got {theta.shape}")
        i_w, i_x, bonds0, bonds = self._rbm
        return _exact_moments_many(
            theta,
            self._lin0,
            self._lin,
            i_w,
            i_x,
            bonds0,
            bonds,
            self._q,
            self._w,
            self._periodic,
            self._n_trans,
        )


@numba.njit(cache=True)
def _potentials(thetas, start, nb, lin0, lin, i_w, i_x, bonds0, bonds, g0, dg0, g, dg):
    """φ and ∂φ/∂θ on first windows (g0, dg0) and transitions (g, dg) at θ_{start + r},
    r < nb, stored at [..., r]."""
    P = thetas.shape[1]
    for table, out, dout, sums in ((lin0, g0, dg0, bonds0), (lin, g, dg, bonds)):
        for e in range(table.shape[0]):
            for r in range(nb):
                theta = thetas[start + r]
                acc = 0.0
                for p in range(P):
                    acc += table[e, p] * theta[p]
                    dout[e, p, r] = table[e, p]
                if i_w >= 0:
                    for b in range(sums.shape[1]):
                        z = theta[i_x] + theta[i_w] * sums[e, b]
                        soft = max(z, 0.0) + np.log1p(np.exp(-abs(z)))
                        sig = np.exp(z - soft)
                        acc += soft
                        dout[e, i_w, r] += sig * sums[e, b]
                        dout[e, i_x, r] += sig
                out[e, r] = acc


@numba.njit(cache=True, inline="always")
def _scale_to_max(a, inv, nb):
    """a[:, :, r] /= max(a[:, :, r]); inv[r] = 1/max (r < nb)."""
    inv[:nb] = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for r in range(nb):
                inv[r] = max(inv[r], a[i, j, r])
    for r in range(nb):
        inv[r] = 1.0 / inv[r]
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for r in range(nb):
                a[i, j, r] *= inv[r]


@numba.njit(cache=True, inline="always")
def _matmul(a, b, out, scale, trans_a, trans_b, nb):
    """out[:, :, r] = scale[r] · op(a[:, :, r]) op(b[:, :, r]), op = transpose where asked, for
    a batch of small dense matrices (r < nb, innermost)."""
    n = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    m = b.shape[0] if trans_b else b.shape[1]
    for i in range(n):
        for j in range(m):
            out[i, j, :nb] = 0.0
            for l in range(k):
                ai, al = (l, i) if trans_a else (i, l)
                bl, bj = (j, l) if trans_b else (l, j)
                for r in range(nb):
                    out[i, j, r] += a[ai, al, r] * b[bl, bj, r]
            for r in range(nb):
                out[i, j, r] *= scale[r]


@numba.njit(cache=True, inline="always")
def _exp_shifted(values, out, nb):
    """out[e, r] = exp(values[e, r] − max_e values[e, r])."""
    for r in range(nb):
        top = values[0, r]
        for e in range(1, values.shape[0]):
            top = max(top, values[e, r])
        for e in range(values.shape[0]):
            out[e, r] = np.exp(values[e, r] - top)


@numba.njit(cache=True)
def _exact_moments_many(thetas, lin0, lin, i_w, i_x, bonds0, bonds, q, w, periodic, n_trans):
    """Z by binary powering (forward), ∂ln Z/∂θ by reverse-mode differentiation of it.

    Forward: B_0 = M, B_{k+1} = s_k B_k B_k; the accumulator R (a₀ᵀ for open chains, 1 for rings)
    is multiplied by r_k B_k where bit k of n_trans is set. The scales s_k, r_k = 1/max keep the
    numbers in range and are held constant in the reverse pass (ln Z and ln Z_scaled differ by a
    constant). Reverse: from R̄ = ∂ln Z_scaled/∂R, through R' = r R B (R̄ ← r R̄ Bᵀ, B̄ += r Rᵀ R̄')
    and B' = s B B (B̄ += s (B̄' Bᵀ + Bᵀ B̄')), down to B̄_0 and R̄_0; then
    ∂ln Z/∂θ_p = Σ B̄_0 ∘ M ∘ ∂_pφ (+ Σ R̄_0 ∘ a₀ ∘ ∂_pφ₀ on open chains): three matrix products
    per squaring, whatever the number of parameters. ``BLOCK`` θ go through together, the batch
    index innermost in every array, so the S×S products (S = 2 or 4 for the paper's chains)
    vectorise over θ instead of paying loop overhead per θ.
    """
    n, P = thetas.shape
    S = q**w
    qw1 = q ** (w - 1)
    B = max(1, min(BLOCK, n))  # block arrays no larger than the batch
    out = np.empty((n, P))
    rows = S if periodic else 1
    n_bits = 0
    while (n_trans >> n_bits) > 0:
        n_bits += 1
    g0, dg0 = np.empty((S, B)), np.empty((S, P, B))
    g, dg = np.empty((S * q, B)), np.empty((S * q, P, B))
    weights, weights0 = np.empty((S * q, B)), np.empty((S, B))
    base = np.empty((n_bits + 1, S, S, B))  # B_0 .. B_{n_bits}
    acc = np.empty((n_bits + 1, rows, S, B))  # R before bit k
    bbar = np.empty((S, S, B))
    bbar_next = np.empty((S, S, B))
    tmp = np.empty((S, S, B))
    rbar = np.empty((rows, S, B))
    rtmp = np.empty((rows, S, B))
    scale_b = np.empty((n_bits + 1, B))
    scale_r = np.empty((n_bits + 1, B))
    ones = np.ones(B)
    for start in range(0, n, B):
        nb = min(B, n - start)
        _potentials(thetas, start, nb, lin0, lin, i_w, i_x, bonds0, bonds, g0, dg0, g, dg)
        _exp_shifted(g, weights, nb)
        base[0] = 0.0
        for e in range(S * q):  # e = a S + x: window (a, x_0..x_{w-2}) → x
            xp, x = (e // S) * qw1 + (e % S) // q, e % S
            base[0, xp, x, :nb] = weights[e, :nb]
        acc[0] = 0.0
        if periodic:
            for x in range(S):
                acc[0, x, x, :nb] = 1.0
        else:
            _exp_shifted(g0, weights0, nb)
            for x in range(S):
                acc[0, 0, x, :nb] = weights0[x, :nb]
        for k in range(n_bits):
            if (n_trans >> k) & 1:
                _matmul(acc[k], base[k], acc[k + 1], ones, False, False, nb)
                _scale_to_max(acc[k + 1], scale_r[k], nb)
            else:
                acc[k + 1] = acc[k]
            if k + 1 < n_bits:
                _matmul(base[k], base[k], base[k + 1], ones, False, False, nb)
                _scale_to_max(base[k + 1], scale_b[k], nb)
        rbar[:] = 0.0
        for r in range(nb):
            z = 0.0
            for j in range(S):
                z += acc[n_bits, j if periodic else 0, j, r]
            for j in range(S):
                rbar[j if periodic else 0, j, r] = 1.0 / z
        bbar_next[:] = 0.0  # B̄_{k+1}
        for k in range(n_bits - 1, -1, -1):
            # B_{k+1} = s B_k B_k  →  B̄_k = s (B̄_{k+1} B_kᵀ + B_kᵀ B̄_{k+1})
            if k + 1 < n_bits:
                _matmul(bbar_next, base[k], bbar, scale_b[k], False, True, nb)
                _matmul(base[k], bbar_next, tmp, scale_b[k], True, False, nb)
                bbar += tmp
            else:
                bbar[:] = 0.0
            if (n_trans >> k) & 1:
                # R_{k+1} = r R_k B_k  →  B̄_k += r R_kᵀ R̄,  R̄ ← r R̄ B_kᵀ
                _matmul(acc[k], rbar, tmp, scale_r[k], True, False, nb)
                bbar += tmp
                _matmul(rbar, base[k], rtmp, scale_r[k], False, True, nb)
                rbar[:] = rtmp
            bbar, bbar_next = bbar_next, bbar
        # now bbar_next = B̄_0 and rbar = R̄_0
        out[start : start + nb] = 0.0
        for e in range(S * q):
            xp, x = (e // S) * qw1 + (e % S) // q, e % S
            for p in range(P):
                for r in range(nb):
                    out[start + r, p] += bbar_next[xp, x, r] * base[0, xp, x, r] * dg[e, p, r]
        if not periodic:
            for x in range(S):
                for p in range(P):
                    for r in range(nb):
                        out[start + r, p] += rbar[0, x, r] * acc[0, 0, x, r] * dg0[x, p, r]
    return out


class SampledAsleep:
    """Gibbs estimates of μ̃(θ) for any family (paper §IV.B).

    ``method``: "random" (``sweeps`` sweeps of ``chains`` chains from random states per θ),
    "pcd" (``chains`` persistent chains per data point (ic, step), advanced ``sweeps`` sweeps per
    call) or "cd" (``sweeps`` sweeps from the data lattices ``data(ic, step)`` (n, n_sites)).
    ``hidden``: "probabilities" (hidden units at p(h | v); fully visible models use the states)
    or "sample".
    """

    def __init__(self, model, method, *, sweeps=10, chains=20, hidden="probabilities", data=None):
        if method not in SAMPLED:
            raise ValueError(f"method must be one of {SAMPLED}, got {method!r}")
        if hidden not in gibbs.HIDDEN_MODES:
            raise ValueError(f"hidden must be one of {gibbs.HIDDEN_MODES}, got {hidden!r}")
        if method == "cd" and data is None:
            raise ValueError("method 'cd' needs data lattices (a function (ic, step) -> states)")
        if int(sweeps) < 1 or int(chains) < 1:
            raise ValueError(f"sweeps and chains must be >= 1, got {sweeps}, {chains}")
        self.model, self.method, self.sweeps, self.chains = model, method, int(sweeps), int(chains)
        self.hidden = hidden if model.n_hidden else "sample"
        self.data = data
        self.persistent: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, theta, ics, steps, rng) -> np.ndarray:
        """Mean statistics over the chains at each θ (n, K); ``ics``/``steps`` name the data
        point of each row (used by pcd and cd)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        out = np.empty(theta.shape)
        for r, (th, ic, step) in enumerate(zip(theta, ics, steps, strict=True)):
            key = (int(ic), int(step))
            if self.method == "cd":
                state = gibbs.data_state(self.model, th, self.data(*key), rng)
            elif self.method == "pcd" and key in self.persistent:
                state = gibbs.GibbsState(self.model, self.persistent[key])
            else:
                state = gibbs.random_state(self.model, self.chains, rng)
            gibbs.sweep(self.model, th, state, self.sweeps, rng)
            if self.method == "pcd":
                self.persistent[key] = state.x
            if self.hidden == "probabilities":
                out[r] = gibbs.conditional_statistics(self.model, th, state).mean(axis=0)
            else:
                out[r] = state.statistics().mean(axis=0)
        return out

    def state(self) -> dict[str, np.ndarray]:
        """The persistent chains as arrays (keys int64 (n, 2), chains int8 (n, chains, units))."""
        keys = sorted(self.persistent)
        units = self.model.n_units + 1
        return {
            "keys": np.array(keys, dtype=np.int64).reshape(-1, 2),
            "chains": np.array([self.persistent[k] for k in keys], dtype=np.int8).reshape(
                len(keys), self.chains, units
            ),
        }

    def load_state(self, state) -> None:
        self.persistent = {
            (int(k[0]), int(k[1])): np.ascontiguousarray(c)
            for k, c in zip(state["keys"], state["chains"], strict=True)
        }
