"""Statistical checks shared by the simulator tests (tolerances from sampling distributions)."""

import numpy as np

Z = 5.0  # tolerance in standard errors: a correct kernel fails a check with probability < 1e-6


def chi2_upper(df: int, z: float = Z) -> float:
    """Upper quantile of chi-square(df) at the normal z-score (Wilson-Hilferty)."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * np.sqrt(a)) ** 3


def assert_distribution(observed: dict, expected: dict, n: int, z: float = Z) -> None:
    """Chi-square goodness of fit of ``n`` draws; outcomes with an expected count below 5 are
    pooled into one cell, outcomes missing from ``expected`` must not occur."""
    unexpected = set(observed) - set(expected)
    assert not unexpected, f"impossible outcomes occurred: {sorted(unexpected)[:5]}"
    big = [k for k, p in expected.items() if n * p >= 5]
    small = [k for k in expected if k not in big]
    obs = [observed.get(k, 0) for k in big]
    exp = [n * expected[k] for k in big]
    if small and n * sum(expected[k] for k in small) >= 5:
        obs.append(sum(observed.get(k, 0) for k in small))
        exp.append(n * sum(expected[k] for k in small))
    obs, exp = np.array(obs, dtype=float), np.array(exp)
    stat = ((obs - exp) ** 2 / exp).sum()
    df = len(obs) - 1
    assert df >= 1
    assert stat < chi2_upper(df, z), f"chi-square {stat:.1f} > {chi2_upper(df, z):.1f} ({df} df)"


def assert_close(estimate: float, expected: float, stderr: float, z: float = Z) -> None:
    assert abs(estimate - expected) <= z * stderr, (
        f"{estimate:.5g} differs from {expected:.5g} by {abs(estimate - expected) / stderr:.1f} "
        "standard errors"
    )


def assert_binomial(samples: np.ndarray, n: int, p: float, z: float = Z) -> None:
    """Sample mean and variance of independent draws match Binomial(n, p)."""
    m = samples.size
    mean, var = n * p, n * p * (1 - p)
    assert_close(samples.mean(), mean, np.sqrt(var / m), z)
    # Var(s^2) = (mu4 - var^2 (m - 3) / (m - 1)) / m, mu4 the binomial fourth central moment
    mu4 = var * (1 + 3 * (n - 2) * p * (1 - p))
    assert_close(samples.var(ddof=1), var, np.sqrt((mu4 - var**2 * (m - 3) / (m - 1)) / m), z)
