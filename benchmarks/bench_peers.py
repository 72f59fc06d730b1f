"""A fair peer benchmark: every method at its best settings for each problem, one process.

For each problem (random dense, random sparse-support, open gridworld, FourRooms) and
size, the exact hypergradient ``grad F(x)`` of the leader's return is computed by:

* **exact_bilevel** — ``hypergradient(problem, x)``: Newton solve + adjoint, with the
  *LU floor* beside it: the time of the LU factorisations we perform (counted, x one
  ``factorize(I - gamma P_pi)``), and the *least* any factorisation-based exact method
  needs: one LU and one pass over ``P`` (a Bellman backup certifying the residual);
* **numpy, careful user** — soft policy iteration with ``numpy.linalg.solve`` and the
  forward-mode solve for all ``d`` columns;
* **JAX unrolled** — ``jax.grad`` through ``K`` soft value-iteration sweeps, with the
  *smallest* ``K`` (doubling from 8) whose gradient is within 1e-10 of the exact one
  *for that problem* (compilation excluded);
* **jaxopt** — ``FixedPointIteration`` with implicit differentiation, at its defaults
  (tol 1e-5, its default linear solve) and at its best: tol 1e-12 and GMRES at 1e-12;
* **optimistix** — ``root_find`` of ``v - T(v)`` with ``Newton`` at rtol = atol = 1e-12
  and its implicit adjoint.

Every row states its relative error against our exact gradient, which is itself
checked against mpmath (50 digits, ``exact_bilevel.crosscheck.highprec``) on the rows
with S <= 30. Times are CPU time per call with single-threaded BLAS and XLA, measured
in interleaved rounds (every method in turn, 7 rounds, median over rounds), so drifts of
the machine's speed hit every method alike.
Writes ``benchmarks/peers.md``. Needs the ``bench`` extra (jax, jaxopt, optimistix).
Run: ``python benchmarks/bench_peers.py [--quick]`` (~15 min; ``--quick``: S <= 100).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")

import pathlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from exact_bilevel import (  # noqa: E402
    AffineReward,
    BilevelProblem,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    hypergradient,
)
from exact_bilevel.core.generators import four_rooms, open_gridworld, random_mdp  # noqa: E402
from exact_bilevel.core.linalg import factorize  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
GAMMA, TAU, D = 0.99, 0.1, 16


def _problem(P: np.ndarray, r0: np.ndarray, phi: np.ndarray, rho: np.ndarray,
             seed: int) -> tuple[BilevelProblem, np.ndarray]:
    S, A, d = phi.shape
    rng = np.random.default_rng(seed)
    rL = rng.normal(size=(S, A))
    problem = BilevelProblem(AffineReward(r0, phi), FixedTransitions(P, d),
                             LeaderReturn(FixedReward(rL, d)), gamma=GAMMA, tau=TAU,
                             initial=rho)
    return problem, 0.3 * rng.normal(size=d)


def make(kind: str, S: int) -> tuple[BilevelProblem, np.ndarray, dict]:
    """A problem of class ``kind`` with about ``S`` states, and its dense arrays."""
    rng = np.random.default_rng(S)
    if kind in ("dense", "sparse-support"):
        mdp = random_mdp(S, 8, gamma=GAMMA, seed=S, support=None if kind == "dense" else 5)
        phi = rng.normal(size=(S, 8, D))
        rho = rng.dirichlet(np.ones(S))
    else:
        if kind == "gridworld":
            n = round(float(np.sqrt(S)))
            mdp, _ = open_gridworld(n, n, gamma=GAMMA)
        else:
            mdp, _ = four_rooms(gamma=GAMMA, random_action_prob=0.44)
        S = mdp.n_states
        cells = np.linspace(0, S - 1, D).astype(int)
        phi = np.zeros((S, mdp.n_actions, D))
        phi[cells, :, np.arange(D)] = 0.2                  # state incentives
        rho = mdp.initial
    P = np.asarray(mdp.transitions)
    problem, x = _problem(P, mdp.reward, phi, rho, S)
    arrays = {"P": P, "r0": mdp.reward, "phi": phi, "rL": problem.objective.leader_reward.value(x),
              "rho": rho}
    return problem, x, arrays


def interleaved_medians(calls: dict[str, Callable[[], object]], slice_s: float = 0.04,
                        rounds: int = 7) -> dict[str, float]:
    """CPU seconds per call of each of ``calls``, measured in interleaved rounds.

    In each round every method runs for about ``slice_s`` seconds (at least one call),
    one after the other; a method's time is the median over the rounds of its mean time
    per call in the round. Interleaving puts every method under the same machine
    conditions (this VM's speed drifts by +-30% over seconds), so the *ratios* are fair
    even when the absolute times drift. Methods slower than 0.5 s a call get 3 rounds.
    """
    first = {}
    for name, fn in calls.items():
        t0 = time.process_time()
        fn()
        first[name] = max(time.process_time() - t0, 1e-6)
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        for name, fn in calls.items():
            if first[name] > 0.5 and r >= 3:
                continue
            n = max(1, int(slice_s / first[name]))
            t0 = time.process_time()
            for _ in range(n):
                fn()
            per_round[name].append((time.process_time() - t0) / n)
    return {name: float(np.median(v)) for name, v in per_round.items()}


def count_factorizations(problem: BilevelProblem, x: np.ndarray) -> int:
    """How many LU factorisations one ``hypergradient(problem, x)`` performs (the solve's,
    a fresh one at the final policy, a refinement's fallback), at least 1."""
    return max(1, hypergradient(problem, x).state.factorizations)


# --- the numpy closed form a careful user writes ------------------------------------------
def numpy_careful(a: dict, x: np.ndarray) -> np.ndarray:
    P, r0, phi, rL, rho = a["P"], a["r0"], a["phi"], a["rL"], a["rho"]
    S = P.shape[0]
    r = r0 + phi @ x
    v = np.zeros(S)
    for _ in range(200):                       # soft policy iteration (Newton)
        q = r + GAMMA * P @ v
        m = q.max(axis=1, keepdims=True)
        pi = np.exp((q - m) / TAU)
        pi /= pi.sum(axis=1, keepdims=True)
        P_pi = np.einsum("sa,sat->st", pi, P)
        ent = -TAU * np.sum(pi * np.log(np.where(pi > 0, pi, 1.0)), axis=1)
        v_new = np.linalg.solve(np.eye(S) - GAMMA * P_pi, np.sum(pi * r, axis=1) + ent)
        if np.max(np.abs(v_new - v)) < 1e-13 * max(1.0, np.max(np.abs(v_new))):
            v = v_new
            break
        v = v_new
    q = r + GAMMA * P @ v
    m = q.max(axis=1, keepdims=True)
    pi = np.exp((q - m) / TAU)
    pi /= pi.sum(axis=1, keepdims=True)
    M = np.eye(S) - GAMMA * np.einsum("sa,sat->st", pi, P)
    dV = np.linalg.solve(M, np.einsum("sa,sak->sk", pi, phi))
    dQ = phi + GAMMA * np.einsum("sat,tk->sak", P, dV)
    dpi = pi[:, :, None] * (dQ - dV[:, None, :]) / TAU
    vL = np.linalg.solve(M, np.sum(pi * rL, axis=1))
    occ = np.linalg.solve(M.T, rho)
    QL = rL + GAMMA * P @ vL
    return np.einsum("s,sak,sa->k", occ, dpi, QL)


# --- JAX peers ------------------------------------------------------------------------------
def jax_peers(a: dict, x: np.ndarray,
              exact: np.ndarray) -> list[tuple[str, Callable[[], object] | None, float]]:
    """The JAX-based peers, compiled and checked: ``(name, call, relative error)`` rows
    (``call`` is None for a peer that is missing or never reached 1e-10)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    P, r0, phi = jnp.asarray(a["P"]), jnp.asarray(a["r0"]), jnp.asarray(a["phi"])
    rL, rho = jnp.asarray(a["rL"]), jnp.asarray(a["rho"])
    S = a["P"].shape[0]
    z0 = jnp.asarray(x)

    def soft_T(v, z):
        q = r0 + phi @ z + GAMMA * P @ v
        return TAU * jax.scipy.special.logsumexp(q / TAU, axis=1)

    def leader_value(v, z):
        q = r0 + phi @ z + GAMMA * P @ v
        pi = jax.nn.softmax(q / TAU, axis=1)
        P_pi = jnp.einsum("sa,sat->st", pi, P)
        vL = jnp.linalg.solve(jnp.eye(S) - GAMMA * P_pi, jnp.sum(pi * rL, axis=1))
        return rho @ vL

    rows: list[tuple[str, Callable[[], object] | None, float]] = []

    def measure(name: str, fn: Callable) -> float:
        g = np.asarray(jax.block_until_ready(fn(z0)))           # compile + first run
        err = float(np.linalg.norm(g - exact) / np.linalg.norm(exact))
        rows.append((name, lambda: jax.block_until_ready(fn(z0)), err))
        return err

    K, err = 8, np.inf
    while K <= 2**15:
        def unrolled(z, K=K):
            v = jax.lax.fori_loop(0, K, lambda _, v: soft_T(v, z), jnp.zeros(S))
            return leader_value(v, z)
        f = jax.jit(jax.grad(unrolled))
        g = np.asarray(f(z0))
        err = float(np.linalg.norm(g - exact) / np.linalg.norm(exact))
        if err <= 1e-10:
            measure(f"JAX grad, unrolled soft VI, smallest K = {K}", f)
            break
        K *= 2
    else:
        rows.append((f"JAX grad, unrolled soft VI: K = {K // 2} still {err:.1e} off", None,
                     err))
    try:
        import functools

        import jaxopt
        from jaxopt.linear_solve import solve_gmres

        def fp(tol, solve=None, maxiter=100):
            kw = {} if solve is None else {"implicit_diff_solve": solve}
            solver = jaxopt.FixedPointIteration(fixed_point_fun=soft_T, tol=tol,
                                                maxiter=maxiter, implicit_diff=True, **kw)
            return jax.jit(jax.grad(lambda z: leader_value(solver.run(jnp.zeros(S), z).params,
                                                            z)))

        measure("jaxopt FixedPointIteration, defaults (tol 1e-5, maxiter 100)", fp(1e-5))
        measure("jaxopt FixedPointIteration, tol 1e-12 + GMRES 1e-12",
                fp(1e-12, functools.partial(solve_gmres, tol=1e-12), maxiter=100_000))
    except ImportError:
        rows.append(("jaxopt: not installed", None, np.nan))
    try:
        import optimistix as optx

        def root(z):
            sol = optx.root_find(lambda v, z: v - soft_T(v, z),
                                 optx.Newton(rtol=1e-12, atol=1e-12), jnp.zeros(S), args=z,
                                 max_steps=200)
            return leader_value(sol.value, z)

        measure("optimistix root_find, Newton rtol = atol = 1e-12", jax.jit(jax.grad(root)))
    except ImportError:
        rows.append(("optimistix: not installed", None, np.nan))
    return rows


def run(sizes: dict[str, list[int]], with_jax: bool) -> str:
    lines = ["# Peer benchmark", "",
             "Generated by `python benchmarks/bench_peers.py`. CPU time per call, single-threaded "
             "BLAS and XLA, same process, methods interleaved in 7 rounds (median over "
             "rounds); gamma = 0.99, tau = 0.1, d = 16 (FourRooms: d = 16 "
             "state incentives). 'error': relative error of the gradient against exact_bilevel; "
             "'LU floor': the LU factorisations we perform (counted) x one LU; 'least': one LU "
             "and one pass over P, what any factorisation-based exact method needs at least "
             "(an LU at the solution's policy and one Bellman backup to certify the residual). "
             "Every method at its best settings for the "
             "problem (JAX: the smallest K reaching 1e-10 on that problem).", ""]
    for kind, Ss in sizes.items():
        for S in Ss:
            problem, x, a = make(kind, S)
            S = problem.n_states
            hg = hypergradient(problem, x)
            exact = hg.gradient
            state = problem.follower_state(x)
            P_pi = state.mdp.P_pi(state.solution.policy)
            n_lu = count_factorizations(problem, x)
            g_np = numpy_careful(a, x)
            peers = jax_peers(a, x, exact) if with_jax and S <= 1100 else []
            calls: dict[str, Callable[[], object]] = {
                "ours": lambda problem=problem, x=x: hypergradient(problem, x),
                "lu": lambda P_pi=P_pi: factorize(P_pi, GAMMA),
                "pass": lambda v=state.solution.v, mdp=state.mdp: mdp.expect(v),
                "numpy": lambda a=a, x=x: numpy_careful(a, x)}
            calls.update({name: fn for name, fn, _ in peers if fn is not None})
            t = interleaved_medians(calls)
            t_ours, t_lu, t_pass = t["ours"], t["lu"], t["pass"]
            floor = n_lu * t_lu
            least = t_lu + t_pass
            head = (f"## {kind}, S = {S}, A = {problem.n_actions}, d = {problem.n_params}: "
                    f"ours {t_ours * 1e3:.2f} ms = {t_ours / floor:.2f} x the LU floor "
                    f"({n_lu} LU x {t_lu * 1e3:.2f} ms) = {t_ours / least:.2f} x one LU + one "
                    f"pass over P ({t_pass * 1e3:.2f} ms)")
            lines += [head, "", "| method | CPU time | ratio to ours | relative error |",
                      "| --- | --- | --- | --- |"]
            ref = ""
            if S <= 30:
                from exact_bilevel.crosscheck.highprec import hypergradient as mp_hg

                g_mp = np.array([float(v) for v in mp_hg(problem, x, dps=50).gradient])
                ref = f"{np.linalg.norm(exact - g_mp) / np.linalg.norm(g_mp):.1e} vs mpmath"
            lines.append(f"| exact_bilevel (Newton + adjoint) | {t_ours * 1e3:.2f} ms | 1 | "
                         f"{ref or 'reference'} |")
            lines.append(f"| LU floor ({n_lu} x factorize(I - gamma P_pi)) | {floor * 1e3:.2f} ms"
                         f" | {floor / t_ours:.2f} | - |")
            lines.append(f"| least: 1 LU + 1 pass over P (r + gamma P V) | {least * 1e3:.2f} ms"
                         f" | {least / t_ours:.2f} | - |")
            lines.append(f"| numpy, careful user (policy iteration + forward solve) | "
                         f"{t['numpy'] * 1e3:.2f} ms | {t['numpy'] / t_ours:.2f} | "
                         f"{np.linalg.norm(g_np - exact) / np.linalg.norm(exact):.1e} |")
            for name, fn, err in peers:
                tt = "-" if fn is None else f"{t[name] * 1e3:.2f} ms"
                rr = "-" if fn is None else f"{t[name] / t_ours:.2f}"
                lines.append(f"| {name} | {tt} | {rr} | {err:.1e} |")
            lines.append("")
            print("\n".join(lines[-(9 if with_jax else 6):]), flush=True)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="S <= 100 only")
    ap.add_argument("--skip-jax", action="store_true")
    args = ap.parse_args()
    full = {"dense": [20, 100, 400, 1000], "sparse-support": [20, 100, 400, 1000],
            "gridworld": [25, 100, 400, 1024], "fourrooms": [104]}
    sizes = {k: [s for s in v if not args.quick or s <= 104] for k, v in full.items()}
    text = run(sizes, not args.skip_jax)
    from exact_bilevel.core._files import atomic_write

    atomic_write(HERE / "peers.md", text + "\n")


if __name__ == "__main__":
    main()
