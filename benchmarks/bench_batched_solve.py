"""Batched follower solves against one ``solve_soft`` per MDP, in the same run.

Two workloads of the estimators (``S = 10``, ``A = 4``, ``gamma = 0.9``, ``tau = 0.5``,
one BLAS thread, best of ``--repeats``):

* **empirical models** (model-based): ``R`` random transition kernels with one reward,
  solved from zeros with three value-iteration sweeps (both routes);
* **perturbed points** (zeroth-order): one kernel, ``R`` rewards ``r + 0.05 N(0, 1)``,
  solved from the unperturbed solution's values (``v0``; the batched route without
  sweeps, ``solve_soft`` with its default warm start from ``v0``).

Each row prints both times and their ratio, and the largest difference of the values
(relative) and policies between the routes.

Usage: ``python benchmarks/bench_batched_solve.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from exact_bilevel import FiniteMDP, solve_soft, solve_soft_batch  # noqa: E402

S, A, GAMMA, TAU = 10, 4, 0.9, 0.5


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def workloads(R: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(R, S, A))
    r0 = rng.normal(size=(S, A))
    yield "empirical models", P, np.broadcast_to(r0, (R, S, A)), None
    base = solve_soft(FiniteMDP(P[0], r0, GAMMA), TAU).v
    yield "perturbed points", P[:1], r0 + 0.05 * rng.normal(size=(R, S, A)), base


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"S = {S}, A = {A}, gamma = {GAMMA}, tau = {TAU}; one thread, best of "
          f"{args.repeats}\n")
    print("| workload | R | solve_soft each | batched | speed-up | max dV (rel) | max dpi |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for R in (200, 1000, 8000):
        for name, P, r, v0 in workloads(R):
            mdps = [FiniteMDP(P[0 if len(P) == 1 else m], r[m], GAMMA) for m in range(R)]

            def each(mdps=mdps, v0=v0):
                return [solve_soft(mdp, TAU, v0=v0) for mdp in mdps]

            def batched(P=P, r=r, v0=v0):
                return solve_soft_batch(P, r, GAMMA, TAU, v0=v0,
                                        warm_start=3 if v0 is None else 0)

            t_each, sols = best_time(each, args.repeats)
            t_batch, sol = best_time(batched, args.repeats)
            v = np.stack([s.v for s in sols])
            pi = np.stack([s.policy for s in sols])
            dv = float(np.max(np.abs(sol.v - v)) / np.max(np.abs(v)))
            dpi = float(np.max(np.abs(sol.policy - pi)))
            print(f"| {name} | {R} | {t_each * 1e3:.1f} ms | {t_batch * 1e3:.1f} ms | "
                  f"{t_each / t_batch:.1f}x | {dv:.1e} | {dpi:.1e} |", flush=True)


if __name__ == "__main__":
    main()
