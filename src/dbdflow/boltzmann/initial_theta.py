"""θ(t0) per initial condition: static Boltzmann learning on the data at t0 (paper §IV.A).

Maximum likelihood for one IC's lattices v⁽¹⁾..v⁽ⁿ⁾ maximises, per site,

    ℓ(θ) = [ (1/n) Σ_d ln Σ_h exp(−E(v⁽ᵈ⁾, h; θ)) − ln Z(θ) ] / N,
    ∇ℓ = (μ(θ) − μ̃(θ)) / N         (awake minus asleep moments, eqs. 22-25).

For the 1D families both terms are exact and cheap: μ̃ and ln Z from transfer matrices, the data
term from the aggregated observables (θ·T for the fully visible chain, receptive-field histograms
for the chain RBM, :mod:`dbdflow.boltzmann.awake`), so :func:`fit_exact` takes damped Newton steps
θ ← θ + α (−H)⁻¹ ∇ℓ with the exact Hessian −H = [Cov_θ(T) − E_data Cov(T | v)] / N (the second
term from the hidden units, zero for visible models), α halved until ℓ increases. For the fully
visible chain this is Newton's method on a concave objective (moment matching: μ̃ = μ at the
optimum). A chain RBM's likelihood depends on (b, W, b') only through the visible marginal, so
its maximisers form a curve (H is singular along it); Newton from ``start`` lands on one point.

Other families (lattice RBMs) use :func:`dbdflow.boltzmann.fit` on the lattices themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dbdflow.boltzmann import transfer


def fit_exact(
    model,
    awake: Callable[[np.ndarray], np.ndarray],
    log_data: Callable[[np.ndarray], float],
    start,
    awake_cov: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    steps: int = 500,
    tol: float = 1e-9,
    l2: float = 0.0,
) -> tuple[np.ndarray, dict]:
    """Maximum-likelihood θ of a ``chain``/``chain_rbm`` model (see the module docstring).

    ``awake(θ)``: mean E[T | v] over the data (K,); ``log_data(θ)``: mean ln Σ_h e^{−E(v, h)};
    ``awake_cov(θ)``: mean Cov[T | v] (K, K) for hidden units (None: fully visible, zero).
    ``l2``: penalty (l2/2)|θ|² subtracted from ℓ (finite θ when the data put the maximum at
    infinity, e.g. no neighbouring pairs at all). Stops when max_k |∇ℓ_k| < ``tol`` or after
    ``steps`` iterations. Returns θ and
    ``{"iterations", "residual" (max |∇ℓ|), "converged", "log_likelihood" (per site)}``.
    """
    n = float(model.n_sites)
    theta = np.asarray(start, dtype=np.float64).copy()

    def objective(th):
        return (log_data(th) - transfer.exact_log_partition(model, th)) / n - l2 / 2 * th @ th

    value = objective(theta)
    converged, residual, it = False, np.inf, 0
    for it in range(1, steps + 1):  # noqa: B007 (the count is reported)
        grad = (awake(theta) - transfer.exact_moments(model, theta)) / n - l2 * theta
        residual = float(np.max(np.abs(grad)))
        if residual < tol:
            converged = True
            break
        neg_hessian = transfer.exact_covariance(model, theta) / n
        if awake_cov is not None:
            neg_hessian -= awake_cov(theta) / n
        neg_hessian += l2 * np.eye(grad.size)
        # saddle-free Newton: curvatures |λ|, floored (ℓ of an RBM need not be concave, and it
        # is flat along non-identifiable directions)
        lam, vec = np.linalg.eigh(neg_hessian)
        lam = np.maximum(np.abs(lam), 1e-6 * np.abs(lam).max() + 1e-300)
        step = vec @ ((vec.T @ grad) / lam)
        alpha = 1.0
        for _ in range(60):
            trial = theta + alpha * step
            trial_value = objective(trial) if np.all(np.abs(trial) < 50) else -np.inf
            if trial_value >= value:
                break
            alpha /= 2
        else:
            break  # no ascent along the scoring direction: at the optimum to rounding
        theta, value = trial, trial_value
    return theta, {
        "iterations": it,
        "residual": residual,
        "converged": converged,
        "log_likelihood": value,
    }
