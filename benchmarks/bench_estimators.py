"""Estimator throughput: transitions/s of ``replicates()`` against a raw vectorised rollout.

Problem: ``random_problem(10, 4, 5, seed=0, gamma=0.9)`` (S = 10, A = 4, d = 5, reward
parameterisation; ``--parameterize transitions`` for the score terms). For each estimator
with its default critic, and for bc-hg with each critic, ``replicates(problem, x, name,
budget, R, seed=0)`` is timed (the fastest of ``--repeats`` calls in each of ``--rounds``
passes over all rows, the passes interleaved so that a slow spell of the machine hits one
pass, not one row) at budget 2000 (R = 200) and budget 100 (R = 1000); the rate is the
transitions billed (the sum of the replicates' costs) per second of the whole call
(follower solve included, once per call).

Baseline, measured in the same run: 1,000 chains advanced together by a numpy loop over
time steps (inverse-CDF draws of ``a ~ pi(.|s)`` and ``s' ~ P(.|s, a)`` from row
cumulative sums), 200 steps: the rate a vectorised sampler reaches when per-replicate
and per-episode Python overhead is gone. It is timed again (best of ``--repeats``)
before every row, and every ratio ``ours / raw`` divides by the fastest raw rate of the
whole run: on a shared machine whose load changes during the run this is the
conservative choice (a slow moment of the baseline never inflates a ratio). One BLAS
thread (set before numpy is imported).

Clock (``--clock``): ``cpu`` (default) times the process's CPU time
(``time.process_time``), ``wall`` the elapsed time (``time.perf_counter``). Both sides
run on one thread, so their CPU times are the work done; on a shared machine the wall
time also counts the moments another process held the core, which inflate whichever
side they hit (measured on the 2-core development VM under load: the same raw rollout
at 5.3 M/s wall and 10.3 M/s CPU). "faults" is the fewest minor page faults of one
``replicates()`` call among the repeats (``getrusage``): each first touch of a page the
process has just given back to the kernel, a few microseconds on a virtual machine
(:mod:`exact_bilevel.core.heap`).

Heap (``--heap``): ``retain`` (default) keeps freed heap for reuse as the command line
does (:func:`exact_bilevel.core.heap.retain_heap`); ``default`` leaves glibc's thresholds,
as in a process that imports the library without asking.

Usage: ``python benchmarks/bench_estimators.py [--repeats 3] [--rounds 3] [--parameterize reward]
[--clock cpu] [--heap retain]``. Point ``PYTHONPATH`` at another checkout to time its
package with the same script.
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from exact_bilevel import solve_soft  # noqa: E402

try:  # an older checkout (PYTHONPATH, for A/B) may predate exact_bilevel.core.heap
    from exact_bilevel.core.heap import retain_heap
except ImportError:  # pragma: no cover
    retain_heap = None
from exact_bilevel.estimators import ESTIMATORS, replicates  # noqa: E402
from exact_bilevel.experiments.examples import random_problem  # noqa: E402

#: (budget, replicates) pairs of the issue's measurement.
SETTINGS = ((2000, 200), (100, 1000))


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def best_time(fn, repeats: int, clock=time.process_time) -> float:
    """The shortest of ``repeats`` timings of ``fn()`` by ``clock``."""
    return timed(fn, repeats, clock)[0]


def timed(fn, repeats: int, clock=time.process_time) -> tuple[float, int]:
    """The shortest of ``repeats`` timings of ``fn()`` by ``clock``, and the fewest minor
    page faults of one call."""
    best, fewest = float("inf"), None
    for _ in range(repeats):
        f0, t0 = minor_faults(), clock()
        fn()
        best = min(best, clock() - t0)
        n = minor_faults() - f0
        fewest = n if fewest is None else min(fewest, n)
    return best, fewest


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def raw_rollout(P: np.ndarray, pi: np.ndarray, rho: np.ndarray, chains: int, steps: int,
                seed: int = 0) -> np.ndarray:
    """``chains`` trajectories of ``steps`` transitions advanced together; returns the
    final states ``[chains]``. ``P[S, A, S]``, ``pi[S, A]``, ``rho[S]``."""
    rng = np.random.default_rng(seed)
    S, A = pi.shape
    p_cdf = np.cumsum(P.reshape(S * A, S), axis=1)
    pi_cdf = np.cumsum(pi, axis=1)
    s = np.sum(rng.random(chains)[:, None] >= np.cumsum(rho)[None, :], axis=1)
    for _ in range(steps):
        a = np.sum(rng.random(chains)[:, None] >= pi_cdf[s], axis=1)
        s = np.sum(rng.random(chains)[:, None] >= p_cdf[s * A + a], axis=1)
    return np.minimum(s, S - 1)


#: The wide counting floor: as many concurrent chains as the batched walk's episodes at
#: budget 2000, R = 200 (~4e5 transitions in ~10-step episodes).
WIDE_CHAINS, WIDE_STEPS = 40_000, 10


def counting_rollout(P: np.ndarray, pi: np.ndarray, rho: np.ndarray, chains: int,
                     steps: int, seed: int = 0) -> np.ndarray:
    """:func:`raw_rollout` with the draw the package's walk uses for small widths
    (``core._transitions.RowCDFs``): the CDF stored column-major and the inverse-CDF index
    counted one column at a time, ``sum_k [u >= F_k(row)]``, instead of gathering whole
    rows. Same law, a stronger floor (printed beside the plain one)."""
    rng = np.random.default_rng(seed)
    S, A = pi.shape
    p_cols = np.ascontiguousarray(np.cumsum(P.reshape(S * A, S), axis=1)[:, :-1].T)
    pi_cols = np.ascontiguousarray(np.cumsum(pi, axis=1)[:, :-1].T)
    s = np.sum(rng.random(chains)[:, None] >= np.cumsum(rho)[None, :], axis=1)
    for _ in range(steps):
        u = rng.random(chains)
        a = np.zeros(chains, dtype=np.intp)
        for col in pi_cols:
            a += u >= col[s]
        row = s * A + a
        u = rng.random(chains)
        s = np.zeros(chains, dtype=np.intp)
        for col in p_cols:
            s += u >= col[row]
    return s


def rows() -> list[tuple[str, str]]:
    """(estimator, critic): each estimator with its default critic, bc-hg with each."""
    out = [(name, info.default_critic) for name, info in ESTIMATORS.items()]
    out += [("bc-hg", c) for c in ESTIMATORS["bc-hg"].critics
            if c != ESTIMATORS["bc-hg"].default_critic]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3,
                    help="timings per row and round (the fastest counts)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="passes over all rows, interleaved; each row's fastest timing "
                         "over all rounds counts (default 3)")
    ap.add_argument("--parameterize", default="reward")
    ap.add_argument("--only", default=None, help="comma-separated estimator names")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    ap.add_argument("--heap", choices=("retain", "default"), default="retain",
                    help="retain: keep freed heap for reuse, as the command line does "
                         "(exact_bilevel.core.heap); default: glibc's thresholds, as a "
                         "library call in a process that did not ask")
    args = ap.parse_args(argv)
    clock = CLOCKS[args.clock]
    retained = args.heap == "retain" and retain_heap is not None and retain_heap()
    problem, x = random_problem(10, 4, 5, seed=0, gamma=0.9, parameterize=args.parameterize)
    mdp = problem.follower_mdp(x)
    pi = solve_soft(mdp, problem.tau).policy
    P = np.asarray(mdp.transitions)
    chains, steps = 1000, 200

    def raw_rate() -> float:
        return chains * steps / best_time(
            lambda: raw_rollout(P, pi, mdp.initial, chains, steps), args.repeats, clock)

    only = None if args.only is None else set(args.only.split(","))
    chosen = [(n, c) for n, c in rows() if only is None or n in only]
    raws = [raw_rate()]
    best: dict[tuple[str, str, int], float] = {}
    fewest_faults: dict[tuple[str, str, int], int] = {}
    billed: dict[tuple[str, str, int], int] = {}
    for _ in range(args.rounds):  # rounds interleave the rows: a slow spell hits one round
        for name, critic in chosen:
            raws.append(raw_rate())
            for budget, R in SETTINGS:
                cost = []

                def run(budget=budget, R=R, cost=cost, name=name, critic=critic) -> None:
                    cost[:] = [int(replicates(problem, x, name, budget, R, 0,
                                              critic)[1].sum())]

                seconds, fewest = timed(run, args.repeats, clock)
                key = (name, critic, budget)
                best[key] = min(best.get(key, float("inf")), seconds)
                fewest_faults[key] = min(fewest_faults.get(key, fewest), fewest)
                billed[key] = cost[0]
    table = [(name, critic,
              [billed[(name, critic, b)] / best[(name, critic, b)] for b, _ in SETTINGS],
              [fewest_faults[(name, critic, b)] for b, _ in SETTINGS])
             for name, critic in chosen]
    raw = max(raws)
    counting = chains * steps / best_time(
        lambda: counting_rollout(P, pi, mdp.initial, chains, steps), args.repeats, clock)
    wide = WIDE_CHAINS * WIDE_STEPS / best_time(
        lambda: counting_rollout(P, pi, mdp.initial, WIDE_CHAINS, WIDE_STEPS), args.repeats,
        clock)
    print(f"S = 10, A = 4, d = 5, gamma = 0.9, parameterize = {args.parameterize}; "
          f"one thread, best of {args.repeats} x {args.rounds} rounds, {args.clock} time, "
          f"freed heap "
          f"{'retained' if retained else 'returned (glibc defaults)'}\n")
    print(f"raw vectorised rollout ({chains} chains x {steps} steps): fastest {raw:.3g} "
          f"transitions/s of {len(raws)} timings (slowest {min(raws):.3g}); the ratios "
          f"divide by it. Beside it, the same rollout drawing by column counting (as the "
          f"package's walk does): {counting:.3g} transitions/s = {counting / raw:.2f} x "
          f"the plain raw rate; and {WIDE_CHAINS} chains x {WIDE_STEPS} steps by column "
          f"counting (as wide as the batched walk at budget 2000, where per-call overhead is "
          f"amortised over ~40,000 concurrent episodes): {wide:.3g} transitions/s = "
          f"{wide / raw:.2f} x. A ratio above 1 means the batched walk amortises its "
          f"overhead over more chains than the 1,000 of the plain floor\n")
    head = " | ".join(f"budget {b} (R = {R}) | / raw | faults" for b, R in SETTINGS)
    print(f"| estimator | critic | {head} |")
    print("| --- | --- |" + " ---: | ---: | ---: |" * len(SETTINGS))
    for name, critic, rates, faults in table:
        cells = [f"{r / 1e6:.3f} M/s | {r / raw:.3f} | {f}"
                 for r, f in zip(rates, faults, strict=True)]
        print(f"| {name} | {critic} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
