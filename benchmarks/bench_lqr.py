"""Soft-LQR hypergradient cost against one scipy DARE solve at the same n, same run.

For n in 2 ... 1000: a random stabilisable problem (``A`` with spectral radius about 0.9,
``m = max(1, n // 5)`` inputs, one leader action, ``d = 4`` parameters entering ``A``,
``B`` and ``K_L``, quadratic + hinge leader reward) and a diagonal problem (``A``,
``B``, ``Q``, ``R`` diagonal, ``d = 4`` parameters on the diagonal of ``A``), each with
``T = 100`` and ``horizon=None``. Prints the time of ``lqr.hypergradient`` (best of a
few calls), the time of one ``scipy.linalg.solve_discrete_are`` on the same
``(sqrt(gamma) A_bar, sqrt(gamma) B, Q, R)``, their ratio and the peak memory of the
hypergradient (tracemalloc: numpy's allocations). One BLAS thread, set before numpy
is imported, so the ratio is not a thread-count artefact.

``--ref REV`` also times the LQR code of a git revision (``lqr/objective.py``,
``lqr/hypergradient.py``, ``lqr/riccati.py`` loaded from ``git show REV:...`` into
private modules) in the same process, with a time limit per call
(``--ref-limit`` seconds: a size whose previous call took longer is skipped).

Usage: ``python benchmarks/bench_lqr.py [--sizes 2,5,10,...] [--ref HEAD~3]``
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from exact_bilevel import lqr  # noqa: E402

SIZES = (2, 5, 10, 30, 60, 100, 200, 400, 1000)
HERE = os.path.dirname(os.path.abspath(__file__))


def random_problem(n: int, horizon: int | None, seed: int = 0) -> tuple[lqr.LQRProblem, np.ndarray]:
    """Random stabilisable problem: ``rho(A) ~ 0.9`` (circular law), hinge leader term."""
    rng = np.random.default_rng(seed)
    m, p, d = max(1, n // 5), 1, 4
    A = 0.9 * rng.normal(size=(n, n)) / np.sqrt(n)
    jac = {"A": 0.05 * rng.normal(size=(n, n, d)) / np.sqrt(n),
           "B": 0.05 * rng.normal(size=(n, m, d)),
           "K_L": 0.05 * rng.normal(size=(p, n, d)) / np.sqrt(n)}
    prob = lqr.make_problem(
        A=A, B=rng.normal(size=(n, m)) / np.sqrt(n), C=rng.normal(size=(n, p)) / np.sqrt(n),
        K_L=0.1 * rng.normal(size=(p, n)) / np.sqrt(n), Sigma_L=0.2 * np.eye(p),
        Q=np.eye(n), R=np.eye(m), W=0.1 * np.eye(n), gamma=0.95, tau=0.5, jac=jac, d=d,
        Q_L=np.eye(n), R_L=0.1 * np.eye(m), hinge_weight=1.0, hinge_index=0,
        gamma_L=0.95, horizon=horizon, mu0=np.ones(n), Sigma0=0.1 * np.eye(n))
    return prob, 0.1 * rng.normal(size=d)


def diagonal_problem(n: int, horizon: int | None) -> tuple[lqr.LQRProblem, np.ndarray]:
    """Diagonal ``A`` (entries 0.5 ... 1.02, some unstable), ``B = I``, four parameters
    each scaling a quarter of ``A``'s diagonal."""
    d = 4
    a = np.linspace(0.5, 1.02, n)
    jac = np.zeros((n, n, d))
    for i in range(n):
        jac[i, i, i * d // n] = 0.1
    prob = lqr.make_problem(
        A=np.diag(a), B=np.eye(n), Q=np.diag(np.linspace(1.0, 2.0, n)), R=np.eye(n),
        W=0.1 * np.eye(n), gamma=0.95, tau=0.5, jac={"A": jac}, d=d, Q_L=np.eye(n),
        R_L=0.1 * np.eye(n), gamma_L=0.95, horizon=horizon, mu0=np.ones(n),
        Sigma0=0.1 * np.eye(n))
    return prob, np.zeros(d)


def load_ref(rev: str):
    """``hypergradient`` of revision ``rev`` (its lqr objective / hypergradient / riccati)."""
    mods = {}
    for name in ("riccati", "objective", "hypergradient"):
        src = subprocess.run(["git", "show", f"{rev}:exact_bilevel/lqr/{name}.py"], cwd=HERE,
                             check=True, capture_output=True, text=True).stdout
        for dep in ("riccati", "objective"):
            src = src.replace(f"from .{dep} import", f"from ._ref_{dep} import")
        full = f"exact_bilevel.lqr._ref_{name}"
        spec = importlib.util.spec_from_loader(full, loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "exact_bilevel.lqr"
        sys.modules[full] = mod
        exec(compile(src, f"{rev}:{name}.py", "exec"), mod.__dict__)
        mods[name] = mod
    return mods["hypergradient"].hypergradient


def best_time(fn, repeats: int, limit: float) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if best > limit:
            break
    return best


def timed_peak(fn) -> tuple[float, float]:
    """``(seconds, peak MiB)`` of one call under tracemalloc (few, large allocations
    here: its overhead is small; the time is used as is only for the largest sizes)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return dt, peak / 2**20


def row(make, kind: str, n: int, T: int | None, ref, ref_name: str, ref_limit: float,
        skip_ref: set) -> str:
    """One table row: DARE, our hypergradient (time, peak memory) and optionally ``ref``."""
    prob, x = make(n, T)
    inst = prob.instance(x)
    g = np.sqrt(inst.gamma)
    reps = 5 if n <= 100 else 1
    t_dare = best_time(lambda: scipy.linalg.solve_discrete_are(
        g * inst.A_bar, g * inst.B, inst.Q, inst.R), reps + 2, 10.0)
    t_hg, mem = timed_peak(lambda: lqr.hypergradient(prob, x))
    if reps > 1:                                  # the timing run without tracemalloc
        t_hg = best_time(lambda: lqr.hypergradient(prob, x), reps, 1e9)
    line = (f"| {kind} | {n} | {T} | {t_dare * 1e3:.3g} ms | {t_hg * 1e3:.4g} ms | "
            f"{t_hg / t_dare:.3g} | {mem:.3g} MiB |")
    if ref is not None:
        if (kind, T) in skip_ref:
            return line + " skipped | | |"
        t_ref = best_time(lambda: ref(prob, x), reps, ref_limit)
        if t_ref > ref_limit:
            skip_ref.add((kind, T))
        line += f" {t_ref * 1e3:.4g} ms | {t_ref / t_dare:.3g} | {t_ref / t_hg:.3g} |"
    return line


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--kinds", default="random,diagonal")
    ap.add_argument("--horizons", default="100,None")
    ap.add_argument("--ref", default=None, help="git revision to time as well")
    ap.add_argument("--ref-limit", type=float, default=60.0)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    horizons = [None if h == "None" else int(h) for h in args.horizons.split(",")]
    ref = load_ref(args.ref) if args.ref else None
    makers = {"random": random_problem, "diagonal": diagonal_problem}
    print("| problem | n | T | DARE | hypergradient | ratio | peak memory |"
          + (f" {args.ref} | {args.ref} ratio | {args.ref} / now |" if ref else ""))
    print("| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if ref else ""))
    skip_ref: set = set()
    for kind in args.kinds.split(","):
        for T in horizons:
            for n in sizes:
                print(row(makers[kind], kind, n, T, ref, args.ref, args.ref_limit, skip_ref),
                      flush=True)
    print("Target (issue 27): random n = 100, T = 100 at most 20x one DARE; n = 1000 completes.")


if __name__ == "__main__":
    main()
