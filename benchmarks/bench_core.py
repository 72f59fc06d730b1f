"""Benchmark the exact core: soft solve, adjoint and forward hypergradient, finite differences.

Prints, for S in {100, 1000}, A = 8, d in {16, 256}, gamma = 0.99, tau = 0.1, an
affine-reward problem with the leader-return objective:

* the time of the follower solve (Newton) and of each hypergradient mode given
  that solve (the factorisation is reused), and their ratio to the solve;
* finite differences (central, one level: 2d solves), measured on a few
  coordinates and scaled to all d (the estimate is labelled);
* the time of solve + adjoint hypergradient, against the 10 ms target at S = 100.

Runs single-threaded by default (BLAS threads = 1) so numbers mean "one core";
``--threads N`` changes that. Usage: ``python benchmarks/bench_core.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="S = 100 only")
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args()


ARGS = _parse()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from exact_bilevel import (  # noqa: E402
    AffineReward,
    BilevelProblem,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    hypergradient,
    random_mdp,
)
from exact_bilevel.crosscheck.finite_differences import central_difference  # noqa: E402


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_problem(S: int, A: int, d: int) -> tuple[BilevelProblem, np.ndarray]:
    rng = np.random.default_rng(0)
    mdp = random_mdp(S, A, gamma=0.99, seed=1, support=min(S, 20))
    reward = AffineReward(mdp.reward, 0.1 * rng.normal(size=(S, A, d)))
    leader = LeaderReturn(FixedReward(rng.normal(size=(S, A)), d))
    problem = BilevelProblem(reward, FixedTransitions(mdp.transitions, d), leader,
                             gamma=0.99, tau=0.1)
    return problem, rng.normal(size=d)


def main() -> int:
    sizes = [100] if ARGS.quick else [100, 1000]
    print(f"# exact_bilevel core benchmark (A = 8, gamma = 0.99, tau = 0.1, "
          f"BLAS threads = {ARGS.threads}, best of {ARGS.repeats})")
    header = (f"{'S':>5} {'d':>4} | {'solve ms':>9} {'adjoint ms':>10} {'forward ms':>10} "
              f"{'FD ms':>10} | {'adj/solve':>9} {'fwd/solve':>9} {'FD/solve':>9} | "
              f"{'solve+adj ms':>12}")
    print(header)
    print("-" * len(header))
    for S in sizes:
        for d in (16, 256):
            problem, x = make_problem(S, 8, d)
            state = problem.follower_state(x)
            t_solve = best_time(lambda problem=problem, x=x: problem.follower_state(x),
                                ARGS.repeats)
            t_adj = best_time(lambda problem=problem, x=x, state=state: hypergradient(
                problem, x, "adjoint", state=state), ARGS.repeats)
            t_fwd = best_time(lambda problem=problem, x=x, state=state: hypergradient(
                problem, x, "forward", state=state), ARGS.repeats)
            k = min(d, 4)  # finite differences on k coordinates, scaled to d
            t_fd = best_time(lambda problem=problem, x=x, k=k: central_difference(
                lambda z: problem.value(np.concatenate([z, x[k:]])), x[:k], 1e-4), 1) * d / k
            t_total = best_time(lambda problem=problem, x=x: hypergradient(problem, x),
                                ARGS.repeats)
            print(f"{S:>5} {d:>4} | {1e3 * t_solve:9.2f} {1e3 * t_adj:10.2f} "
                  f"{1e3 * t_fwd:10.2f} {1e3 * t_fd:10.0f}* | {t_adj / t_solve:9.3f} "
                  f"{t_fwd / t_solve:9.3f} {t_fd / t_solve:9.0f} | {1e3 * t_total:12.2f}")
            sys.stdout.flush()
    print("* finite differences: central, 2d follower solves, timed on 4 coordinates and "
          "scaled to d.")
    print("'solve' = follower solve + factorisation of I - gamma P_pi; hypergradient modes "
          "reuse it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
