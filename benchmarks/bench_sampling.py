"""Benchmark the samplers and the BC-HG estimator: transitions per second at S = 100.

Baseline, measured in the same run: a per-transition Python loop with
``Generator.choice`` (what a first implementation usually looks like), on 2e4
transitions. Prints transitions/s for fixed-horizon rollouts, discount-
terminated episodes (beta = 0.99), the generative model, and a full BC-HG
estimate (sampling + estimator arithmetic), each with its speed-up over the
baseline. Target (issue 4): >= 1e6 transitions/s on one core.

Usage: ``python benchmarks/bench_sampling.py [--transitions N]``.
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

from exact_bilevel import solve_soft  # noqa: E402
from exact_bilevel.estimators import estimate  # noqa: E402
from exact_bilevel.estimators.sampling import Sampler  # noqa: E402
from exact_bilevel.experiments.examples import random_problem  # noqa: E402


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transitions", type=int, default=1_000_000)
    N = p.parse_args().transitions
    S, A = 100, 8
    problem, x = random_problem(S, A, 4, seed=0, gamma=0.99, tau=0.1)
    mdp = problem.follower_mdp(x)
    pi = solve_soft(mdp, problem.tau).policy
    P = mdp.transitions

    def baseline(n: int = 20_000) -> None:
        rng = np.random.default_rng(0)
        s = int(rng.choice(S, p=mdp.initial))
        for _ in range(n):
            a = int(rng.choice(A, p=pi[s]))
            s = int(rng.choice(S, p=P[s, a]))

    base = 20_000 / _best(baseline, 1)
    rows = [("python loop + Generator.choice (baseline)", base)]
    smp = Sampler(mdp, np.random.default_rng(1))
    rows.append(("rollouts, horizon 100", N / _best(lambda: smp.rollouts(pi, N // 100, 100))))
    t = _best(lambda: smp.episodes(pi, int(N * 0.01), 0.99))
    rows.append(("episodes, beta = 0.99", N / t))
    s_idx = np.random.default_rng(2).integers(S, size=N)
    a_idx = np.random.default_rng(3).integers(A, size=N)
    rows.append(("generative model", N / _best(lambda: smp.step(s_idx, a_idx))))
    t = _best(lambda: estimate(problem, x, "bc-hg", N, np.random.default_rng(4)), 3)
    rows.append(("bc-hg estimate (solve + sampling + sums)", N / t))
    print(f"S = {S}, A = {A}, {N:.0e} transitions per measurement, one thread\n")
    print(f"| {'what':44s} | transitions/s | vs baseline |")
    print(f"| {'-' * 44} | ------------- | ----------- |")
    for name, rate in rows:
        print(f"| {name:44s} | {rate:13.3g} | {rate / base:10.1f}x |")


if __name__ == "__main__":
    main()
