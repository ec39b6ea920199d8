"""Exact asleep moments (dbdflow.boltzmann.asleep.ExactAsleep): ms per batch of θ.

Algorithm 1 asks for the model moments at every data point of the window for every IC: 300 θ
per step for the paper's A+A schedule (window of 5 steps, 6 points, 50 ICs). Table: ms per call
for batches of 1, 64 and 300 θ drawn uniformly from [-1.5, 1.5]^K, for the paper's 1000-site
chains (open and ring) and a two-species chain, and µs per θ. Run on an idle core.
"""

import time

import numpy as np

from dbdflow.boltzmann import chain, chain_rbm
from dbdflow.boltzmann.asleep import ExactAsleep


def per_call_ms(asleep, theta, repeats):
    asleep(theta)  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        asleep(theta)
    return (time.perf_counter() - start) / repeats * 1e3


def main():
    rng = np.random.default_rng(0)
    models = [
        ("chain (b, J, K), open, N = 1000", chain(1000, "reflecting")),
        ("chain (b, J, K), ring, N = 1000", chain(1000, "periodic")),
        ("chain RBM (b, W, b'), open, N = 1000", chain_rbm(1000, "reflecting")),
        ("chain (b, J, K), species A, B, open, N = 1000", chain(1000, "reflecting", ("A", "B"))),
    ]
    print("| model | 1 θ (ms) | 64 θ (ms) | 300 θ (ms) | µs per θ at 300 |")
    print("|---|---|---|---|---|")
    for name, model in models:
        asleep = ExactAsleep(model)
        times = [
            per_call_ms(asleep, rng.uniform(-1.5, 1.5, (n, model.n_params)), max(20, 6000 // n))
            for n in (1, 64, 300)
        ]
        print(
            f"| {name} | {times[0]:.3f} | {times[1]:.3f} | {times[2]:.3f} | "
            f"{times[2] / 300 * 1e3:.2f} |"
        )


if __name__ == "__main__":
    main()
