"""Scale and competitors: sparse vs dense exact path, complexity plot, and autodiff baselines.

Part 1 (always): open gridworlds (A = 4, gamma = 0.99, tau = 0.1, d = 16 state
incentives) for S from 1e2 to 1e5: time of the follower solve and of the
adjoint hypergradient with sparse storage (and dense where it fits), peak
memory (tracemalloc: Python-level allocations) and resident peak (``VmHWM`` in a fresh
process, which also sees SuperLU's and LAPACK's memory), against the targets
S = 1e4 <= 2 s and S = 1e5 <= 30 s.
Then time versus d (adjoint vs forward) at S = 1e4. Writes
``benchmarks/scale.png`` (log-log) and prints tables.

Part 2 (only with the optional ``bench`` extra: jax, jaxopt, optimistix): at
S = 100, A = 8, d = 16, gamma = 0.99 (random dense MDP, affine reward), the
same-process times and relative errors of JAX grad through K-step unrolled soft
value iteration and of the implicit-differentiation libraries at their default
settings, as ratios to our closed form.

Usage: ``python benchmarks/bench_scale.py [--max-states 100000] [--skip-jax]``
(``--max-states 1000000`` adds S = 1e6: a few minutes and ~3 GB).
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402

from exact_bilevel import (  # noqa: E402
    BilevelProblem,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    hypergradient,
    tabular_incentive,
)
from exact_bilevel.core.generators import open_gridworld  # noqa: E402
from exact_bilevel.experiments.examples import random_problem  # noqa: E402


def _grid_problem(n: int, d: int = 16, storage: str = "sparse") -> tuple[BilevelProblem, int]:
    mdp, _ = open_gridworld(n, n)
    S = mdp.n_states
    P = (scipy.sparse.csr_matrix(mdp.transition_matrix) if storage == "sparse"
         else mdp.transitions)
    follower = tabular_incentive(mdp.reward, states=list(np.linspace(0, S - 1, d).astype(int)),
                                 scale=0.1)
    problem = BilevelProblem(follower, FixedTransitions(P, d, n_actions=4),
                             LeaderReturn(FixedReward(mdp.reward, d)), gamma=0.99, tau=0.1,
                             initial=mdp.initial)
    return problem, S


def _time(problem: BilevelProblem, mode: str = "adjoint") -> tuple[float, float, float]:
    x = np.zeros(problem.n_params)
    tracemalloc.start()
    t0 = time.perf_counter()
    state = problem.follower_state(x)
    t1 = time.perf_counter()
    hypergradient(problem, x, mode=mode, state=state)
    t2 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return t1 - t0, t2 - t1, peak / 2**20


_RESIDENT = r"""
import json, os, sys
sys.path.insert(0, {here!r})
import numpy as np
from bench_scale import _grid_problem
from exact_bilevel import hypergradient

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(key + ":")) / 1024

problem, S = _grid_problem({n}, storage={storage!r})
x = np.zeros(problem.n_params)
base = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")            # reset the peak (VmHWM) to the current resident size
    reset = True
except OSError:
    reset = False
hypergradient(problem, x, state=problem.follower_state(x))
print(json.dumps({{"base": base, "peak": status("VmHWM"), "reset": reset}}))
"""


def _resident(n: int, storage: str) -> float:
    """Resident memory the solve + adjoint hypergradient adds on top of the built problem,
    in MiB: ``VmHWM - VmRSS`` measured in a fresh process (``/proc/self/status``; the
    peak is reset once the problem is built). Unlike tracemalloc it sees SuperLU's and
    LAPACK's own allocations."""
    import json
    import subprocess
    import sys

    code = _RESIDENT.format(here=os.path.dirname(os.path.abspath(__file__)), n=n,
                            storage=storage)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return float(r["peak"] - r["base"])


def part1(max_states: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = [n for n in (10, 32, 100, 316, 1000) if n * n <= max_states]
    rows = []
    print("| S | storage | solve | adjoint hypergradient | total | peak memory (tracemalloc) "
          "| resident peak (VmHWM) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sides:
        for storage in ("sparse", "dense"):
            if storage == "dense" and n * n > 1100:
                continue
            problem, S = _grid_problem(n, storage=storage)
            ts, th, mem = _time(problem)
            rss = _resident(n, storage)
            rows.append((S, storage, ts, th, mem))
            print(f"| {S} | {storage} | {ts:.3g} s | {th:.3g} s | {ts + th:.3g} s | "
                  f"{mem:.1f} MiB | {rss:.1f} MiB |", flush=True)
    target = {10_000: 2.0, 99_856: 30.0}
    for S, storage, ts, th, _ in rows:
        if S in target and storage == "sparse":
            print(f"target S = {S}: {ts + th:.2f} s <= {target[S]} s: "
                  f"{'met' if ts + th <= target[S] else 'MISSED'}")
    ds, t_adj, t_fwd = [1, 4, 16, 64, 256], [], []
    for d in ds:
        problem, _ = _grid_problem(100, d=d)
        t_adj.append(_time(problem, "adjoint")[1])
        t_fwd.append(_time(problem, "forward")[1])
    print("\nS = 10000, time of the hypergradient given the solve:")
    print("| d | adjoint | forward |\n| --- | --- | --- |")
    for d, a, f in zip(ds, t_adj, t_fwd, strict=True):
        print(f"| {d} | {a * 1e3:.1f} ms | {f * 1e3:.1f} ms |")
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for storage, marker in (("sparse", "o-"), ("dense", "s--")):
        pts = [(S, ts + th, mem) for S, st, ts, th, mem in rows if st == storage]
        if pts:
            S_, t_, m_ = zip(*pts, strict=True)
            ax[0].loglog(S_, t_, marker, label=f"{storage}: solve + hypergradient")
            ax[1].loglog(S_, m_, marker, label=storage)
    Ss = np.array([r[0] for r in rows if r[1] == "sparse"], dtype=float)
    ax[0].loglog(Ss, 2.0 * (Ss / 1e4) ** 1.5, "k:", label="S^1.5 (guide)")
    ax[0].set_xlabel("S (states), A = 4, d = 16")
    ax[0].set_ylabel("seconds")
    ax[0].legend()
    ax[1].set_xlabel("S")
    ax[1].set_ylabel("peak traced memory (MiB)")
    ax[1].legend()
    ax[2].loglog(ds, t_adj, "o-", label="adjoint")
    ax[2].loglog(ds, t_fwd, "s-", label="forward")
    ax[2].set_xlabel("d (S = 1e4)")
    ax[2].set_ylabel("hypergradient seconds (given the solve)")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(__file__), "scale.png"), dpi=100)


def part2() -> None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("\n(part 2 skipped: install the 'bench' extra for the JAX competitors)")
        return
    jax.config.update("jax_enable_x64", True)
    S, A, d, gamma, tau = 100, 8, 16, 0.99, 0.1
    problem, x = random_problem(S, A, d, seed=0, gamma=gamma, tau=tau)
    mdp = problem.follower_mdp(x)
    P = jnp.asarray(mdp.transitions)
    r0, phi = problem.follower_reward.base, problem.follower_reward.features
    rL = jnp.asarray(problem.objective.leader_reward.value(x))
    rho = jnp.asarray(problem.initial)

    def follower_reward(z):
        return jnp.asarray(r0) + jnp.asarray(phi) @ z

    def soft_T(v, z):
        q = follower_reward(z) + gamma * P @ v
        return tau * jax.scipy.special.logsumexp(q / tau, axis=1)

    def leader_value(v, z):
        q = follower_reward(z) + gamma * P @ v
        pi = jax.nn.softmax(q / tau, axis=1)
        P_pi = jnp.einsum("sa,sat->st", pi, P)
        vL = jnp.linalg.solve(jnp.eye(S) - gamma * P_pi, jnp.sum(pi * rL, axis=1))
        return rho @ vL

    exact = hypergradient(problem, x).gradient
    t0 = time.perf_counter()
    for _ in range(20):
        hypergradient(problem, x)
    t_ours = (time.perf_counter() - t0) / 20
    print(f"\nS = {S}, A = {A}, d = {d}, gamma = {gamma}: ours (solve + adjoint) "
          f"{t_ours * 1e3:.2f} ms")
    print("| method | time | ratio to ours | relative error |\n| --- | --- | --- | --- |")
    print(f"| exact_bilevel closed form | {t_ours * 1e3:.2f} ms | 1 | ~1e-12 (tests) |")

    def report(name, fn):
        g = np.asarray(fn(jnp.asarray(x)))  # compile
        t0 = time.perf_counter()
        for _ in range(5):
            g = np.asarray(jax.block_until_ready(fn(jnp.asarray(x))))
        t = (time.perf_counter() - t0) / 5
        err = np.linalg.norm(g - exact) / np.linalg.norm(exact)
        print(f"| {name} | {t * 1e3:.2f} ms | {t / t_ours:.1f}x | {err:.2e} |")

    for K in (500, 3000):
        def unrolled(z, K=K):
            v = jax.lax.fori_loop(0, K, lambda _, v: soft_T(v, z), jnp.zeros(S))
            return leader_value(v, z)
        report(f"JAX grad, unrolled soft VI K = {K}", jax.jit(jax.grad(unrolled)))
    try:
        import jaxopt

        def solve_fp(z):
            return jaxopt.FixedPointIteration(fixed_point_fun=soft_T, implicit_diff=True
                                              ).run(jnp.zeros(S), z).params

        report("jaxopt FixedPointIteration (defaults)",
               jax.jit(jax.grad(lambda z: leader_value(solve_fp(z), z))))
    except ImportError:
        print("| jaxopt | not installed | | |")
    try:
        import optimistix as optx

        def solve_ox(z):
            return optx.fixed_point(lambda v, z: soft_T(v, z), optx.FixedPointIteration(
                rtol=1e-8, atol=1e-8), jnp.zeros(S), args=z, max_steps=100_000).value

        report("optimistix fixed_point (rtol = atol = 1e-8)",
               jax.jit(jax.grad(lambda z: leader_value(solve_ox(z), z))))
    except ImportError:
        print("| optimistix | not installed | | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-states", type=int, default=100_000)
    ap.add_argument("--skip-jax", action="store_true")
    args = ap.parse_args()
    part1(args.max_states)
    if not args.skip_jax:
        part2()


if __name__ == "__main__":
    main()
