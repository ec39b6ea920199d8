"""SGD and Adam updates (Algorithm 1, line 18) on quadratics with known solutions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbdflow.dynamics import SGD, Adam, clip_by_norm, group_rates
from dbdflow.dynamics.optim import NonFiniteGradient

CURVATURE = np.array([1.0, 4.0, 0.5, 2.0, 3.0])
TARGET = np.array([1.0, -2.0, 0.5, 3.0, -1.0])


def quadratic_gradient(u):
    """∇ of ½ Σ h_i (u_i − c_i)²."""
    return CURVATURE * (u - TARGET)


def test_sgd_on_a_quadratic_follows_the_exact_contraction():
    """u_i − c_i shrinks by (1 − λ_i h_i) per step, with per-group rates λ_i."""
    slices = [slice(0, 2), slice(2, 5)]
    rates = group_rates(slices, [0.1, 0.3])
    assert rates.tolist() == [0.1, 0.1, 0.3, 0.3, 0.3]
    opt = SGD(rates)
    u0 = np.zeros(5)
    u = u0.copy()
    for _ in range(100):
        u = opt.step(u, quadratic_gradient(u))
    expected = TARGET + (u0 - TARGET) * (1 - rates * CURVATURE) ** 100
    assert np.allclose(u, expected, rtol=1e-12, atol=1e-12)
    assert np.abs(u - TARGET).max() < 1e-3


def test_adam_first_step_and_convergence():
    """Adam's first bias-corrected step is −λ g/(|g| + ε); with a decaying-free rate it reaches
    the minimum to within a few λ (its steady-state step size)."""
    opt = Adam(0.01)
    u = np.zeros(5)
    g = quadratic_gradient(u)
    u1 = opt.step(u.copy(), g)
    assert np.allclose(u1, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    u = u1
    for _ in range(3000):
        u = opt.step(u, quadratic_gradient(u))
    assert np.abs(u - TARGET).max() < 0.05


def test_clipping_rescales_long_gradients_only():
    g = np.array([3.0, 4.0])
    clipped, norm = clip_by_norm(g, 1.0)
    assert norm == 5.0 and np.allclose(clipped, [0.6, 0.8])
    same, _ = clip_by_norm(g, 10.0)
    assert np.array_equal(same, g)
    opt = SGD(1.0, max_norm=1.0)
    assert np.allclose(opt.step(np.zeros(2), g), [-0.6, -0.8]) and opt.grad_norm == 5.0


def dense_adam(u, grads, lr, max_norm=None, b1=0.9, b2=0.999, eps=1e-8):
    """The textbook dense Adam in numpy, for comparison."""
    m = v = np.zeros_like(u)
    for t, g in enumerate(grads, start=1):
        norm = np.sqrt(sum(x * x for x in g))  # sequential, as the kernel sums
        if max_norm is not None and norm > max_norm:
            g = g * (max_norm / norm)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = u - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return u


@given(
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.0, 1.0),
    max_norm=st.one_of(st.none(), st.floats(0.1, 10.0)),
    per_coefficient=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_sparse_updates_equal_the_dense_formulas(seed, density, max_norm, per_coefficient):
    """Only coefficients with a non-zero gradient so far move; the result equals the dense
    Adam and SGD formulas to the last bit, whatever the sparsity, clipping and rates."""
    rng = np.random.default_rng(seed)
    n, steps = 40, 15
    grads = rng.normal(size=(steps, n)) * (rng.random((steps, n)) < density * rng.random(n))
    lr = rng.uniform(0.01, 0.1, n) if per_coefficient else 0.03
    u0 = rng.normal(size=n)
    adam, sgd = Adam(lr, max_norm=max_norm), SGD(lr, max_norm=max_norm)
    u, w, dense_sgd = u0.copy(), u0.copy(), u0.copy()
    for g in grads:
        assert adam.step(u, g) is u  # in place
        sgd.step(w, g)
        norm = np.sqrt(sum(x * x for x in g))  # sequential, as the kernel sums
        scaled = g * (max_norm / norm) if max_norm is not None and norm > max_norm else g
        dense_sgd = dense_sgd - lr * scaled
    np.testing.assert_array_equal(u, dense_adam(u0, grads, lr, max_norm))
    np.testing.assert_array_equal(w, dense_sgd)
    # told where the gradient may be non-zero (any order, zeros allowed), the same updates
    adam2, sgd2 = Adam(lr, max_norm=max_norm), SGD(lr, max_norm=max_norm)
    u2, w2 = u0.copy(), u0.copy()
    for g in grads:
        where = rng.permutation(np.flatnonzero((g != 0) | (rng.random(n) < 0.3)))
        adam2.step(u2, g, where)
        sgd2.step(w2, g, where)
    np.testing.assert_allclose(u2, u, rtol=1e-13, atol=1e-15)  # the norm sums in another order
    np.testing.assert_allclose(w2, w, rtol=1e-13, atol=1e-15)
    if max_norm is None:
        np.testing.assert_array_equal(u2, u)
    assert np.isclose(adam.grad_norm, np.linalg.norm(grads[-1]), rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: SGD(0.05, max_norm=2.0), lambda: Adam(0.05)])
def test_state_round_trip_continues_bit_identically(make):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(20, 5))
    opt = make()
    u = np.zeros(5)
    for i in range(10):
        u = opt.step(u, quadratic_gradient(u) + noise[i])
    state = {k: np.array(v) for k, v in opt.state().items()}  # as read back from a file
    saved = u.copy()
    for i in range(10, 20):
        u = opt.step(u, quadratic_gradient(u) + noise[i])
    resumed = make()
    resumed.load_state(state)
    v = saved
    for i in range(10, 20):
        v = resumed.step(v, quadratic_gradient(v) + noise[i])
    assert v is not u
    assert np.array_equal(u, v) and resumed.t == opt.t == 20


def test_bad_inputs_raise():
    with pytest.raises(FloatingPointError, match="coefficient 1"):
        SGD(0.1).step(np.zeros(3), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="lr"):
        SGD(-1.0)
    with pytest.raises(ValueError, match="disagree"):
        SGD(np.ones(2)).step(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="one rate per group"):
        group_rates([slice(0, 2)], [0.1, 0.2])
    with pytest.raises(ValueError, match="cover"):
        group_rates([slice(0, 2), slice(3, 4)], [0.1, 0.2])
    with pytest.raises(ValueError, match="beta1"):
        Adam(0.1, beta1=1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(0.1),
        lambda: SGD(0.1, max_norm=1.0),
        lambda: Adam(0.1),
        lambda: Adam(0.1, max_norm=1.0),
    ],
    ids=["sgd", "sgd-clipped", "adam", "adam-clipped"],
)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_overflowing_gradient_norm_raises(make, sparse):
    """Finite entries whose squares sum past the float64 range (as moments of ~1e308 give) make
    the norm inf: with clipping that would silently scale the step to 0, without it the norm
    logged would be inf. The optimiser names the entry at which the sum overflows and changes
    nothing."""
    opt = make()
    g = np.array([0.0, 1e154, 1e154, 1.0])  # 1e308 + 1e308 > 1.8e308 at coefficient 2
    with np.errstate(over="ignore"):
        assert np.all(np.isfinite(g * g)) and not np.isfinite(np.sum(g * g))
    u = np.ones(4)
    where = np.array([3, 1, 2]) if sparse else None
    with pytest.raises(FloatingPointError, match="norm overflows at coefficient 2") as err:
        opt.step(u, g, where)
    assert isinstance(err.value, NonFiniteGradient) and err.value.index == 2
    assert np.array_equal(u, np.ones(4)) and opt.t == 0
    assert all(not np.any(x) for k, x in opt.state().items() if k != "t")  # Adam: m = v = 0
    with pytest.raises(NonFiniteGradient, match="norm overflows at coefficient 2"):
        clip_by_norm(g, 1.0)
    # a gradient just inside the range still works and is clipped as usual
    opt.step(u, g / 2)
    assert opt.t == 1 and np.isfinite(opt.grad_norm) and np.all(np.isfinite(u))


@pytest.mark.parametrize("adam", [False, True])
def test_update_that_makes_u_non_finite_raises_and_changes_nothing(adam):
    """A finite gradient and a finite rate can still push a coefficient past the float64
    range: the optimiser names it, and u, Adam's moments and the step count stay as they were,
    so the next (sane) step equals a fresh optimiser's first step."""
    make = (lambda: Adam(1e308)) if adam else (lambda: SGD(1e300))
    g = np.array([1e-300, 0.0, -1e10, 2e-300])
    u0 = np.array([0.5, 0.0, 1.7e308, -0.25])  # coefficient 2 would become +inf
    opt, u = make(), u0.copy()
    with pytest.raises(NonFiniteGradient, match="coefficient 2 non-finite") as err:
        opt.step(u, g)
    assert err.value.index == 2
    assert np.array_equal(u, u0) and opt.t == 0
    safe = np.array([1.0, 0.0, 0.0, 2.0])
    fresh, w = make(), np.zeros(4)
    u[:] = 0
    opt.step(u, safe * 1e-300)
    fresh.step(w, safe * 1e-300)
    assert np.array_equal(u, w) and opt.t == fresh.t == 1
    assert all(np.array_equal(opt.state()[k], fresh.state()[k]) for k in fresh.state())
