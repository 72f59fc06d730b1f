"""Batched replicates of the Markov-game and soft-LQR estimators against the per-replicate
loop they replace and against a raw vectorised rollout of the same model, one run.

For each case, the same ``R`` replicates three ways, each timed (CPU time of this
process, best of ``--repeats``; one BLAS thread, set before numpy is imported):

* **loop** — the per-replicate path of the code before batching: one call per replicate
  on its own generator (``games.estimate(..., replicate_rng(0, i))``;
  ``lqr.estimators.estimate(..., seed=replicate_sequence(0, i))``);
* **batch** — ``games.replicates`` / ``lqr.estimators.replicates``: the same replicates,
  walked together (the script stops if a single number differs: ``np.array_equal``);
* **raw** — the sampling floor: the same number of transitions drawn by one vectorised
  numpy rollout with no estimator around it (games: 1,000 chains of the follower's MDP
  advanced together by inverse-CDF draws, ``bench_estimators.raw_rollout``; LQR:
  ``lqr.sampling.rollout`` of all ``R N`` episodes at once).

Rates are transitions billed per second of the whole call (follower solve included, once
per call for batch and raw, once per replicate for the loop). Printed: the rates, the
speed-up ``batch / loop`` and the fractions ``loop / raw`` and ``batch / raw``.

Usage: ``python benchmarks/bench_game_lqr_batch.py [--repeats 3] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_estimators import raw_rollout  # noqa: E402

from exact_bilevel import games as mg  # noqa: E402
from exact_bilevel import lqr, solve_soft  # noqa: E402
from exact_bilevel.core.streams import replicate_rng, replicate_sequence  # noqa: E402
from exact_bilevel.lqr import estimators as lqr_est  # noqa: E402
from exact_bilevel.lqr import tasks  # noqa: E402
from exact_bilevel.lqr.sampling import rollout  # noqa: E402


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def random_game(observes: str) -> tuple[mg.MarkovGame, np.ndarray]:
    rng = np.random.default_rng(0)
    S, AL, AF = 10, 2, 4
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), 0.9, 0.5, observes=observes)
    return game, rng.normal(size=game.n_params)


def games_cases(quick: bool) -> list[tuple[str, mg.MarkovGame, np.ndarray]]:
    toy = mg.discrete_toy(1.0)
    S, AL, _ = toy.shape
    mlp = dataclasses.replace(toy, leader=mg.MLPLeader(S, AL, hidden=(64, 64)))
    out = [("DiscreteToy R=1 (s, aL), tabular", toy, np.zeros(toy.n_params)),
           ("DiscreteToy R=1, MLP (64, 64) leader", mlp,
            mlp.leader.xavier_uniform(np.random.default_rng(0)))]
    if not quick:
        out += [("random S=10 AL=2 AF=4, follower sees s",
                 *random_game(mg.OBSERVES_STATE))]
    return out


def game_rows(repeats: int, quick: bool) -> None:
    settings = ((450, 200), (100, 1000)) if not quick else ((450, 50),)
    print("## Markov games (exact leader critic)\n")
    print("| game | estimator | budget | R | loop (M/s) | batch (M/s) | raw (M/s) | "
          "batch / loop | loop / raw | batch / raw |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, game, x in games_cases(quick):
        mdp = mg.follower_problem(game, x).follower_mdp(x)
        pi = solve_soft(mdp, game.tau).policy
        P = np.asarray(mdp.transitions)
        t_raw, _ = best_time(lambda P=P, pi=pi, mdp=mdp: raw_rollout(P, pi, mdp.initial,
                                                                    1000, 200), repeats)
        raw = 1000 * 200 / t_raw
        for e in mg.GAME_ESTIMATORS if not quick else ("bc-hg",):
            for budget, R in settings:
                t_loop, ests = best_time(lambda g=game, x=x, e=e, b=budget, R=R: [
                    mg.estimate(g, x, e, b, replicate_rng(0, i)) for i in range(R)], repeats)
                t_batch, (X, C) = best_time(lambda g=game, x=x, e=e, b=budget, R=R:
                                            mg.replicates(g, x, e, b, R, 0), repeats)
                if not (np.array_equal(X, [a.gradient for a in ests])
                        and np.array_equal(C, [a.transitions for a in ests])):
                    raise SystemExit(f"{label} {e} {budget}: batch differs from the loop")
                n = float(C.sum())
                loop, batch = n / t_loop, n / t_batch
                print(f"| {label} | {e} | {budget} | {R} | {loop / 1e6:.3f} | "
                      f"{batch / 1e6:.3f} | {raw / 1e6:.2f} | {batch / loop:.1f}x | "
                      f"{loop / raw:.3f} | {batch / raw:.3f} |", flush=True)


def lqr_cases() -> list[tuple[str, lqr.LQRProblem, np.ndarray, str, str]]:
    b, xb = tasks.building_thermal_control()
    g, xg = tasks.lqr_game()
    return [("BuildingThermal n=4 m=2 d=8 T=100", b, xb, "bc-hg", "exact"),
            ("BuildingThermal", b, xb, "bc-hg", "monte-carlo"),
            ("BuildingThermal", b, xb, "zeroth-order", "monte-carlo"),
            ("LQR game n=2 m=1 p=1 T=100", g, xg, "bc-hg", "monte-carlo"),
            ("LQR game", g, xg, "zeroth-order", "monte-carlo")]


def lqr_rows(repeats: int, quick: bool) -> None:
    settings = ((10_000, 30), (400, 200)) if not quick else ((400, 50),)
    print("\n## Soft LQR (T = 100)\n")
    print("| problem | estimator | critic | budget | R | loop (M/s) | batch (M/s) | "
          "raw (M/s) | batch / loop | loop / raw | batch / raw |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, problem, x, e, critic in lqr_cases():
        inst = problem.instance(x)
        T = problem.horizon
        for budget, R in settings:
            N = budget // T

            def raw_call(problem=problem, inst=inst, x=x, R=R, N=N) -> None:
                rollout(problem, inst, lqr.solve_soft_lqr(inst), problem.z(x), R * N,
                        np.random.default_rng(0))

            t_raw, _ = best_time(raw_call, repeats)
            t_loop, Y = best_time(lambda p=problem, x=x, e=e, b=budget, R=R, c=critic: [
                lqr_est.estimate(p, x, e, b, seed=replicate_sequence(0, i), critic=c)
                for i in range(R)], repeats)
            t_batch, X = best_time(lambda p=problem, x=x, e=e, b=budget, R=R, c=critic:
                                   lqr_est.replicates(p, x, e, b, R, 0, critic=c), repeats)
            if not np.array_equal(X, np.array(Y)):
                raise SystemExit(f"{label} {e} {budget}: batch differs from the loop")
            n = float(R * N * T)
            loop, batch, raw = n / t_loop, n / t_batch, n / t_raw
            print(f"| {label} | {e} | {critic} | {budget} | {R} | {loop / 1e6:.3f} | "
                  f"{batch / 1e6:.3f} | {raw / 1e6:.2f} | {batch / loop:.1f}x | "
                  f"{loop / raw:.3f} | {batch / raw:.3f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few rows, small R (a smoke run)")
    args = ap.parse_args(argv)
    print(f"One BLAS thread, CPU time, best of {args.repeats}; transitions billed per "
          "second (M/s).\n")
    game_rows(args.repeats, args.quick)
    lqr_rows(args.repeats, args.quick)


if __name__ == "__main__":
    main()
