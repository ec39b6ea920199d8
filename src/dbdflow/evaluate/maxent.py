"""The maximum-entropy moment closure of a fully visible chain (and, through its marginal, of
the chain RBM), and the prior it gives F.

A chain Boltzmann machine p̃(v; θ) ∝ exp(Σ_k θ_k T_k(v)) (eq. 37, family ``chain``) has moments
μ(θ) = ⟨T⟩_θ with Jacobian ∂μ/∂θ = Cov_θ(T) (eq. 25). If the lattice process were at every
instant in the maximum-entropy state p̃(·; θ(t)), its moments would change at the rate
⟨L T_k⟩_θ, L the process's generator: the moment equations (eq. 36) closed by the model's own
higher moments. Asking μ(θ(t)) to follow them gives an autonomous θ dynamics,

    dθ/dt = F_ME(θ) = Cov_θ(T)⁻¹ ⟨L T⟩_θ,

the right-hand side for which the DBD (eqs. 26-27) *is* the maximum-entropy closure of its own
moment equations. F_ME needs no data; it is the natural prior of a learned F (``prior: maxent``,
training learns the correction F − F_ME, and the roughness penalty pulls towards F_ME where no
trajectory passes) and a closure baseline in its own right (:func:`maxent_closure`, evaluated as
``maxent`` next to mean field and the pair approximation: it closes the same moment equations by
the maximum-entropy chain instead of the Kirkwood superposition).

Fully visible models in any dimension (``chain``, ``lattice``) also get the simplest member of
this family as a prior (``prior: mean_field``, :class:`MeanFieldPrior`): the max-ent closure of
the counts alone, i.e. the mean-field rate equations on the product measure, which moves the
biases and leaves the couplings' F at 0.

L is the continuous-time picture of one step Δt of :mod:`dbdflow.evaluate.closures` (its rate
tables, :class:`~dbdflow.evaluate.closures.Process`): every ordered bond (a, b) turns into
(a', b') at ``bond[a, b, a', b']`` (exchange hops and collisions, both directions) and every site
a into a' at ``site[a, a']`` (in-place rules; creation per empty site). Births onto a neighbour
and the paper's global creation rate are not local bond or site events and are not covered.

**The chain RBM** (eq. 39, family ``chain_rbm``, θ = (b, W, b')) sums out to a chain: with
f(s) = ln(1 + e^(b' + W s)) for the hidden unit between sites whose occupations add up to s,

    p̃(v; θ) ∝ exp(b_eff Σ_i v_i + J_eff Σ_i v_i v_{i+1}),
    b_eff = b + 2 (f(1) − f(0)),   J_eff = f(0) + f(2) − 2 f(1) ≥ 0 (f convex),

per site of the infinite chain. Of its three parameters two are identifiable: every
(b_eff, J_eff) with 0 ≤ J_eff < ln(1 + e^(−b')) is reached by one (b, W ≥ 0) at any fixed b'.
The closure therefore keeps b' where fit-initial put it (the gauge) and moves (b, W) so that
the marginal follows the max-ent closure of the (b, J) chain, in the least-squares sense of
the marginal's Fisher metric C₂ = Cov(T₂)/N, T₂ = (Σv, Σvv), with a ridge ε (``RBM_RIDGE``):

    (F_b, F_W) = (Aᵀ C₂ A + ε I)⁻¹ Aᵀ ⟨L T₂⟩,   F_b' = 0,
    A = ∂(b_eff, J_eff)/∂(b, W) = [[1, 2σ(b' + W)], [0, 2(σ(b' + 2W) − σ(b' + W))]],

(:class:`ChainRbmMaxEnt`). As ε → 0, A F → C₂⁻¹ ⟨L T₂⟩ wherever A is invertible (W ≠ 0). At
W = 0 the row of J_eff vanishes (J_eff ≈ σ'(b') W²) and anticorrelation (J_eff < 0) is out of
the model's reach; the ridge lets W settle at 0 instead of diverging, and bounds the
stiffness there. Fixing b' instead of taking the smallest step in all three parameters gives
the same marginal flow and is half as stiff (ε = 1e-4: Jacobian spectral radii up to 289
against 528 per unit time along the closure's trajectories from the paper's training θ(t0)).

Everything is per site of the infinite chain (translation invariant), so F_ME does not depend
on N. The chain is a Markov chain of the pair states s_i = (v_i, v_{i+1}) with transfer matrix
M[(a, b), (b, c)] = exp(Σ_k θ_k ι_k(a, b, c)), ι_k the increment of T_k when site c is appended
after (a, b) (its field, its bond with b, its triple with a, b). With Perron eigenvalue λ and
left/right eigenvectors l, r, a window of L ≥ 2 sites has probability

    P(v_1 … v_L) = l[s_1] Π_{j<L-1} M[s_j, s_{j+1}] r[s_{L-1}] / (λ^{L-2} l·r),

the moments per site are m_k = Σ P(a, b, c) ι_k(a, b, c) = ∂ln λ/∂θ_k, and Cov per site is
∂m/∂θ (central differences, step ``COV_STEP``). A bond event on sites (2, 3) of a six-site window
changes T through the triples ending at sites 2 … 5, all inside the window, so
⟨L T⟩ per site = (B/N) Σ_w P(w) G_bond[w] + Σ_w P(w) G_site[w] with static tables G of the
expected change rates of T given the window (B/N bonds per site, as in the closures).
"""

from __future__ import annotations

import abc
import itertools

import numpy as np

from dbdflow.evaluate.closures import Process, integrate_rk4

WINDOW = 6  # sites a bond event can reach through the triples of T
COV_STEP = 1e-5  # central-difference step of Cov = ∂m/∂θ
FD_STEP = 1e-2  # central-difference step of the vertex derivatives of the Hermite prior
CHUNK = 4096
SQUARINGS = 32  # Perron vectors by repeated squaring: (λ₂/λ)^(2^32) ≈ 0 for λ₂/λ < 1 − 1e-8
STEP_TOL = 1e-4  # θ agreement of step doublings in maxent_closure (counts: ≲ 3e-5 N)
MAX_DOUBLINGS = 6
# Ridge of the chain RBM's closure (per site). Without it F_W ∝ 1/W near W = 0, and a grid of
# cells 0.5 in W cannot represent the layer of width ~√ε/σ' there. Chosen on the paper 1D
# TRAIN split (RMSE orders 1-4): F_ME itself from the training θ(t0), ε = 1e-2, 1e-3, 1e-4,
# 1e-5: 3.31/4.23/3.67/3.18, 2.54/2.34/2.42/2.35, 2.76/2.18/2.29/2.25, 2.79/2.17/2.27/2.24;
# its Hermite interpolant on the model's grid, ε = 3e-2, 1e-2, 3e-3, 1e-3, 1e-4:
# 9.3/8.4/6.2/4.8, 3.4/3.7/3.5/3.2, 11.0/4.2/2.5/2.4, 23.9/9.5/4.0/2.5, 25.8/14.6/6.7/3.4;
# trained from it (hidden_maxent, 5-fold cross-validation, held-out ICs), ε = 1e-2, 3e-3,
# 1e-4: 2.56/3.05/2.80/2.54, 2.39/2.70/2.58/2.43, 2.81/3.03/2.61/2.33.
RBM_RIDGE = 3e-3
_MAXENT_STATS = ("counts", "pairs", "strings3")  # the chain's sufficient statistics


def maxent_closure(
    network,
    lattice,
    dt: float,
    initial,
    times,
    *,
    semantics: str = "standard",
    tol: float = STEP_TOL,
) -> dict[str, np.ndarray]:
    """Max-ent closure predictions of the observables' means at ``times`` (a closure baseline,
    with the interface of :func:`~dbdflow.evaluate.closures.mean_field`; 1D, one species).

    θ(t0) is the data's maximum-entropy chain (b, J, K): the chain on the lattice whose counts,
    pairs and strings of three equal ``initial``'s (each (n_ic, 1) or (1,)); θ then follows
    dθ/dt = F_ME(θ) by RK4 with n substeps per interval of ``times``, n the power of two with
    h ρ(∂F/∂θ(t0)) ≤ 1 for every IC, doubled until the finer of two successive solutions is
    within ``tol`` in θ (Richardson: its error ≈ their difference / 15; at most
    ``MAX_DOUBLINGS`` doublings, else the finest is kept); the observables are the chain's exact
    means on the lattice (:func:`~dbdflow.evaluate.predictions.exact_observables`).
    """
    from dbdflow.boltzmann import chain
    from dbdflow.evaluate import predictions

    if lattice.ndim != 1 or network.n_species != 1:
        raise ValueError("the max-ent closure needs one species on a 1D lattice")
    species = network.species[0]
    batched = np.ndim(initial["counts"]) == 2
    start = {k: np.atleast_2d(np.asarray(initial[k], float))[:, None, :] for k in _MAXENT_STATS}
    theta0 = predictions.maxent_theta(lattice.n_sites, lattice.boundary, species, start)[:, 0]
    model = chain(lattice.n_sites, lattice.boundary, species=(species,))
    closure = MaxEntClosure(model.param_names, (species,), network, lattice, dt, semantics)
    times = np.asarray(times, dtype=np.float64)
    theta = np.full((theta0.shape[0], times.size, 3), np.nan)
    todo = np.flatnonzero(np.all(np.isfinite(theta0), axis=1))
    theta[todo, 0] = theta0[todo]
    if todo.size and times.size > 1:
        step = float(np.max(np.diff(times)))
        need = max(step * float(closure.stiffness(theta0[todo]).max()), 1.0)
        substeps = 2 ** int(np.ceil(np.log2(need)))  # one batch: a call costs ~ the same for any n
        coarse = integrate_rk4(closure.rhs, theta0[todo], times, step / substeps)
        for _ in range(MAX_DOUBLINGS):
            substeps *= 2
            fine = integrate_rk4(closure.rhs, theta0[todo], times, step / substeps)
            with np.errstate(invalid="ignore"):  # RK4: the finer one's error ≈ gap / (2^4 − 1)
                done = np.abs(fine - coarse).max(axis=(1, 2)) <= 15 * tol
            theta[todo[done]] = fine[done]
            todo, coarse = todo[~done], fine[~done]
            if todo.size == 0:
                break
        theta[todo] = coarse  # not converged: the finest solution
    out = predictions.exact_observables(model, theta)
    return out if batched else {k: v[0] for k, v in out.items()}


class _GridPrior(abc.ABC):
    """What a prior F⁰(θ) gives the learned F: its stiffness and its Hermite interpolant.
    Subclasses define ``names`` (the model's parameters) and ``rhs`` (n, K) → (n, K); F⁰
    depends on the parameters ``inputs`` (indices; all of them unless a subclass says less)."""

    names: tuple[str, ...]

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def inputs(self) -> tuple[int, ...]:
        return tuple(range(self.n_params))

    @abc.abstractmethod
    def rhs(self, theta) -> np.ndarray:
        """F⁰ at each θ (n, K) → (n, K)."""

    def stiffness(self, theta) -> np.ndarray:
        """Spectral radius of the Jacobian ∂F_ME/∂θ at each θ, float (n,) (central differences):
        an explicit step h is stable near θ only if h times this is inside the scheme's
        stability region."""
        jac = _jacobian(self.rhs, self._theta(theta), FD_STEP)
        return np.abs(np.linalg.eigvals(jac)).max(axis=1)

    def coefficients(self, model, coords) -> np.ndarray:
        """Flat u of the Hermite interpolant of F⁰ on every F_k of ``model`` (a
        :class:`~dbdflow.dynamics.ode.DynamicsModel` whose F_k are over ``coords``, indices of
        parameters that include all ``inputs``; the others are 0 at the vertices). Vertex
        derivatives by central differences (step ``FD_STEP``)."""
        coords = tuple(int(c) for c in coords)
        if not set(self.inputs) <= set(coords):
            raise ValueError(
                f"this prior needs F over {[self.names[c] for c in self.inputs]}, got "
                f"coordinates {[self.names[c] for c in coords]}"
            )
        cache: dict[tuple, np.ndarray] = {}
        funcs = []
        for grid, k in zip(model.grids, range(model.n_params), strict=True):
            key = grid.key()
            if key not in cache:
                cache[key] = _vertex_derivatives(self.rhs, grid.vertices(), coords, self.n_params)
            funcs.append(lambda x, table=cache[key], k=k: table[:, :, k])
        return model.interpolate(funcs)

    def _theta(self, theta) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(f"θ must have shape (n, {self.n_params}), got {theta.shape}")
        return theta


def prior_closure(
    family, names, species, network, lattice, dt, semantics="standard", kind="maxent"
):
    """The prior F⁰ named ``kind`` (config ``dynamics.prior``) of a model with parameters
    ``names``: ``maxent``, the max-ent closure of a ``chain`` (:class:`MaxEntClosure`) or
    ``chain_rbm`` (:class:`ChainRbmMaxEnt`); ``mean_field``, the mean-field closure of the
    biases of a fully visible ``chain`` or ``lattice`` (:class:`MeanFieldPrior`)."""
    if kind == "mean_field":
        if family not in ("chain", "lattice"):
            raise ValueError(f"the mean-field prior needs family chain or lattice, not {family!r}")
        return MeanFieldPrior(names, species, network, lattice, dt, semantics)
    if kind != "maxent":
        raise ValueError(f"prior must be maxent or mean_field, got {kind!r}")
    if family == "chain":
        return MaxEntClosure(names, species, network, lattice, dt, semantics)
    if family == "chain_rbm":
        if tuple(names) != ChainRbmMaxEnt.names:
            raise ValueError(f"a chain RBM has parameters {ChainRbmMaxEnt.names}, got {names}")
        return ChainRbmMaxEnt(species, network, lattice, dt, semantics)
    raise ValueError(f"the max-ent closure needs family chain or chain_rbm, not {family!r}")


class MaxEntClosure(_GridPrior):
    """F_ME(θ) of a ``chain`` model (module docstring) on a lattice process.

    ``names``: the chain's parameter names (``dbdflow.boltzmann.chain(...).param_names``, e.g.
    ``("b_A", "J_AA", "K_AAA")``), ``species`` its species; the process is
    ``Process.build(network, lattice, dt, semantics)``.
    """

    def __init__(self, names, species, network, lattice, dt, semantics="standard"):
        self.names = tuple(names)
        self.species = tuple(species)
        process = Process.build(network, lattice, dt, semantics)
        unsupported = check_process(process)
        if unsupported:
            raise ValueError(
                f"the max-ent closure covers hops, collisions and in-place rules, not {unsupported}"
            )
        if tuple(network.species) != self.species:
            raise ValueError(
                f"the chain's species {self.species} differ from the network's "
                f"{tuple(network.species)}"
            )
        self.n_states = len(self.species) + 1
        self.increments = _increments(self.names, self.species)  # (K, S, S, S)
        self.bonds_per_site = process.n_bonds / process.n_sites
        self.gain = _gain_table(self.increments, process.bond, process.site, self.bonds_per_site)

    def window_probabilities(self, theta, length: int) -> np.ndarray:
        """P(v_1 … v_L) of the infinite chain, float (n, S^L) (C order over v_1 … v_L)."""
        theta = self._theta(theta)
        weights, left, right = self._perron(theta)
        s = self.n_states
        prob = left  # (n, S·S): (v1, v2)
        for _ in range(length - 2):  # append a site c through M[(a, b), (b, c)]
            head = prob.reshape(theta.shape[0], -1, s, s)  # (n, rest, a, b)
            prob = np.einsum("nrab,nabc->nrabc", head, weights).reshape(theta.shape[0], -1)
        out = (prob.reshape(theta.shape[0], -1, s * s) * right[:, None, :]).reshape(
            theta.shape[0], -1
        )
        return out / out.sum(axis=1, keepdims=True)  # the sum is λ^(L-2) l·r

    def moments(self, theta) -> np.ndarray:
        """Moments per site m_k = ⟨T_k⟩/N, float (n, K)."""
        p3 = self.window_probabilities(theta, 3)
        return p3 @ self.increments.reshape(self.n_params, -1).T

    def covariance(self, theta) -> np.ndarray:
        """Cov(T)/N = ∂m/∂θ per site, float (n, K, K) (central differences)."""
        cov = _jacobian(self.moments, self._theta(theta), COV_STEP)
        return 0.5 * (cov + cov.transpose(0, 2, 1))

    def generator(self, theta) -> np.ndarray:
        """⟨L T_k⟩ per site, float (n, K): the moment equations closed by p̃(·; θ)."""
        return self.window_probabilities(theta, WINDOW) @ self.gain

    def rhs(self, theta) -> np.ndarray:
        """F_ME(θ) = Cov⁻¹ ⟨L T⟩, float (n, K), in chunks of ``CHUNK`` points."""
        theta = self._theta(theta)
        out = np.empty_like(theta)
        for start in range(0, theta.shape[0], CHUNK):
            part = theta[start : start + CHUNK]
            out[start : start + CHUNK] = np.linalg.solve(
                self.covariance(part), self.generator(part)[..., None]
            )[..., 0]
        return out

    def _perron(self, theta):
        """Transfer weights w[n, a, b, c] = M[(a, b), (b, c)] (rescaled per θ) and the Perron
        left/right eigenvectors (n, S²) of the matrices M (zero where the middle sites differ)."""
        s = self.n_states
        phi = np.einsum("nk,kabc->nabc", theta, self.increments)
        weights = np.exp(phi - phi.max(axis=(1, 2, 3), keepdims=True))
        m = np.zeros((theta.shape[0], s, s, s, s))
        for b in range(s):
            m[:, :, b, b, :] = weights[:, :, b, :]
        return (weights, *_perron_vectors(m.reshape(theta.shape[0], s * s, s * s)))


class ChainRbmMaxEnt(_GridPrior):
    """F_ME(θ) of the chain RBM (eq. 39) with ``names`` ``("b_A", "W_AX", "b_X")``: the
    closure of its marginal chain, mapped to (b, W) by Fisher-weighted ridge least squares at
    fixed b' (module docstring)."""

    names = ("b_A", "W_AX", "b_X")

    def __init__(self, species, network, lattice, dt, semantics="standard", ridge=RBM_RIDGE):
        (a,) = species
        self.marginal_closure = MaxEntClosure(
            (f"b_{a}", f"J_{a}{a}"), species, network, lattice, dt, semantics
        )
        self.ridge = float(ridge)

    def marginal(self, theta) -> np.ndarray:
        """(b_eff, J_eff) of the marginal chain, float (n, 2)."""
        b, w, c = self._theta(theta).T
        f0, f1, f2 = np.logaddexp(0.0, c), np.logaddexp(0.0, c + w), np.logaddexp(0.0, c + 2 * w)
        return np.column_stack([b + 2 * (f1 - f0), f0 + f2 - 2 * f1])

    def marginal_jacobian(self, theta) -> np.ndarray:
        """A = ∂(b_eff, J_eff)/∂(b, W), float (n, 2, 2) (f' = σ, the logistic function)."""
        _, w, c = self._theta(theta).T
        s1, s2 = (0.5 * (1.0 + np.tanh(0.5 * x)) for x in (c + w, c + 2 * w))
        out = np.zeros((w.size, 2, 2))
        out[:, 0, 0] = 1.0
        out[:, 0, 1] = 2 * s1
        out[:, 1, 1] = 2 * (s2 - s1)
        return out

    def rhs(self, theta) -> np.ndarray:
        """F_ME(θ): (F_b, F_W) = (Aᵀ C₂ A + ε I)⁻¹ Aᵀ ⟨L T₂⟩, F_b' = 0, float (n, 3), in
        chunks of ``CHUNK``."""
        theta = self._theta(theta)
        out = np.zeros_like(theta)
        for start in range(0, theta.shape[0], CHUNK):
            part = theta[start : start + CHUNK]
            v, a = self.marginal(part), self.marginal_jacobian(part)
            cov = self.marginal_closure.covariance(v)
            gain = self.marginal_closure.generator(v)
            lhs = np.einsum("nki,nkl,nlj->nij", a, cov, a) + self.ridge * np.eye(2)
            out[start : start + CHUNK, :2] = np.linalg.solve(
                lhs, np.einsum("nki,nk->ni", a, gain)[..., None]
            )[..., 0]
        return out


class MeanFieldPrior(_GridPrior):
    """F⁰(θ) of a fully visible model (``chain`` or ``lattice``) from the mean-field closure.

    On the slice where every coupling is 0 the model is the product measure

        ρ_s = e^(b_s) / (1 + Σ_r e^(b_r)),   ρ_∅ = 1 / (1 + Σ_r e^(b_r)),

    the maximum-entropy distribution of the counts alone, and the mean-field closure
    (:meth:`~dbdflow.evaluate.closures.Process.mean_field_rhs`, every rule the simulator
    knows, births included) moves it by dρ/dt. Since b_s = ln(ρ_s/ρ_∅),

        F⁰_{b_s}(b) = ρ̇_s/ρ_s − ρ̇_∅/ρ_∅,   F⁰ = 0 for every coupling,

    a function of the biases alone (``inputs``), exact for the counts at every product state.
    As a prior it gives F the rates of the unimolecular and collision terms at the start, and
    training learns the correlation correction F − F⁰.
    """

    def __init__(self, names, species, network, lattice, dt, semantics="standard"):
        self.names = tuple(names)
        self.species = tuple(species)
        if tuple(network.species) != self.species:
            raise ValueError(
                f"the model's species {self.species} differ from the network's "
                f"{tuple(network.species)}"
            )
        missing = [f"b_{s}" for s in self.species if f"b_{s}" not in self.names]
        if missing:
            raise ValueError(f"the mean-field prior needs the biases {missing} in {self.names}")
        self.bias = tuple(self.names.index(f"b_{s}") for s in self.species)
        self.process = Process.build(network, lattice, dt, semantics)

    @property
    def inputs(self) -> tuple[int, ...]:
        return self.bias

    def rhs(self, theta) -> np.ndarray:
        """F⁰ at each θ (n, K), float (n, K)."""
        theta = self._theta(theta)
        logits = np.concatenate([np.zeros((theta.shape[0], 1)), theta[:, self.bias]], axis=1)
        rho = np.exp(logits - logits.max(axis=1, keepdims=True))
        rho /= rho.sum(axis=1, keepdims=True)
        rate = self.process.mean_field_rhs(rho) / rho
        out = np.zeros_like(theta)
        out[:, self.bias] = rate[:, 1:] - rate[:, :1]
        return out


def check_process(process) -> list[str]:
    """The events of ``process`` that the closure does not cover (births, paper creation)."""
    out = [f"a birth of species code {p} onto a neighbour" for p, _, _, _ in process.births]
    out += [f"the paper's global creation of species code {c}" for c, _ in process.creations]
    return out


def _jacobian(f, theta: np.ndarray, step: float) -> np.ndarray:
    """[n, l, k] = ∂f_l/∂θ_k at each θ (n, K) by central differences, in one call of f."""
    n, k = theta.shape
    shifts = step * np.concatenate([np.eye(k), -np.eye(k)])
    values = f((theta[None, :, :] + shifts[:, None, :]).reshape(-1, k))
    values = values.reshape(2, k, n, -1)  # (±, k, n, l)
    return ((values[0] - values[1]) / (2 * step)).transpose(1, 2, 0)


def _perron_vectors(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right Perron vectors of each primitive non-negative m (n, k, k): m^(2^j) tends to
    λ^(2^j) r lᵀ/(l·r), so repeated squaring (rescaled to max 1) gives r as its row sums and l as
    its column sums; after ``SQUARINGS`` the rest decays as (λ₂/λ)^(2^SQUARINGS)."""
    p = m / m.max(axis=(1, 2), keepdims=True)
    for _ in range(SQUARINGS):
        p = p @ p
        p /= p.max(axis=(1, 2), keepdims=True)
    return p.sum(axis=1), p.sum(axis=2)


def _increments(names, species) -> np.ndarray:
    """ι[k, a, b, c]: change of T_k when site c is appended after (a, b) (``models.chain``)."""
    s = len(species) + 1
    out = np.zeros((len(names), s, s, s))
    for k, name in enumerate(names):
        term, _, word = name.partition("_")
        length = {"b": 1, "J": 2, "K": 3}.get(term)
        codes = _word_codes(word, species)
        if length is None or codes is None or len(codes) != length:
            raise ValueError(f"{name!r} is not a chain parameter over species {species}")
        for a, b, c in itertools.product(range(s), repeat=3):
            if sorted((a, b, c)[3 - length :]) == codes:
                out[k, a, b, c] = 1.0
    return out


def _word_codes(word, species) -> list[int] | None:
    """Species codes (1..M, sorted) of a concatenated species word, or None."""
    if not word:
        return []
    for code, name in enumerate(species, start=1):
        if word.startswith(name):
            rest = _word_codes(word[len(name) :], species)
            if rest is not None:
                return sorted([code, *rest])
    return None


def _delta_t(increments, before, after) -> np.ndarray:
    """Change of T (K,) when window ``before`` becomes ``after`` (triples ending at 2 … 5)."""
    out = np.zeros(increments.shape[0])
    for j in range(2, WINDOW):
        out += increments[:, after[j - 2], after[j - 1], after[j]]
        out -= increments[:, before[j - 2], before[j - 1], before[j]]
    return out


def _gain_table(increments, bond, site, bonds_per_site) -> np.ndarray:
    """G[w, k]: expected rate of change of T_k given window w (bond (2, 3), site 2)."""
    s = bond.shape[0]
    configs = list(itertools.product(range(s), repeat=WINDOW))
    gain = np.zeros((len(configs), increments.shape[0]))
    for i, w in enumerate(configs):
        for a2, b2 in itertools.product(range(s), repeat=2):
            rate = bond[w[2], w[3], a2, b2]
            if rate:
                after = (*w[:2], a2, b2, *w[4:])
                gain[i] += bonds_per_site * rate * _delta_t(increments, w, after)
        for a2 in range(s):
            rate = site[w[2], a2]
            if rate:
                gain[i] += rate * _delta_t(increments, w, (*w[:2], a2, *w[3:]))
    return gain


def _vertex_derivatives(rhs, vertices, coords, n_params) -> np.ndarray:
    """(n_vertices, 2^d, K): F and its mixed first derivatives at each vertex by central
    differences, column s differentiating along the axes in bit set s (``HermiteGrid``);
    parameters outside ``coords`` are 0."""
    n, d = vertices.shape
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=d)), dtype=np.float64)
    points = vertices[:, None, :] + FD_STEP * shifts[None, :, :]
    theta = np.zeros((n * shifts.shape[0], n_params))
    theta[:, list(coords)] = points.reshape(-1, d)
    values = rhs(theta).reshape(n, shifts.shape[0], -1)
    index = {tuple(int(x) for x in row): i for i, row in enumerate(shifts)}
    out = np.zeros((n, 1 << d, values.shape[2]))
    for mask in range(1 << d):
        axes = [a for a in range(d) if mask >> a & 1]
        for signs in itertools.product((-1, 1), repeat=len(axes)):
            offset = [0] * d
            for a, sg in zip(axes, signs, strict=True):
                offset[a] = sg
            out[:, mask] += np.prod(signs) * values[:, index[tuple(offset)]]
        out[:, mask] /= (2 * FD_STEP) ** len(axes)
    return out
