"""Batched hypergradients: ``hypergradients(problem, X)`` against independent calls.

For each problem class of ``bench_peers.py`` (gamma = 0.99, tau = 0.1, d = 16) and two
kinds of point sets — a *path* (20 points, each a step of size 0.01 from the last, as an
optimiser or a line search visits them) and *scattered* points (20 draws of N(0, 0.3^2 I),
as an estimator validation visits them) — the CPU time per point of independent
``hypergradient`` calls (the baseline, measured in the same run) and of one
``hypergradients`` call, their ratio, the LU factorisations per point, and the largest
relative difference between the two (they must agree to the solver tolerance).

Run: ``python benchmarks/bench_batch.py`` (~1 min, single-threaded BLAS).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_peers import make  # noqa: E402

from exact_bilevel import hypergradient, hypergradients  # noqa: E402


def main() -> None:
    print("| problem | S | points | independent (ms/point) | batch (ms/point) | speed-up "
          "| LUs/point independent / batch | max relative difference |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, S in [("dense", 100), ("dense", 400), ("dense", 1000), ("sparse-support", 1000),
                    ("gridworld", 1024), ("fourrooms", 104)]:
        problem, x, _ = make(kind, S)
        rng = np.random.default_rng(0)
        d = x.size
        sets = {"path (steps 0.01)": x + 0.01 * np.cumsum(rng.normal(size=(20, d)), axis=0)
                / np.sqrt(d),
                "scattered (sd 0.3)": 0.3 * rng.normal(size=(20, d))}
        for label, X in sets.items():
            hypergradient(problem, X[0])  # first-call costs out of the way
            t0 = time.process_time()
            ind = [hypergradient(problem, xi) for xi in X]
            t1 = time.process_time()
            batch = hypergradients(problem, X)
            t2 = time.process_time()
            n = len(X)
            lu_ind = np.mean([h.state.factorizations for h in ind])
            diff = max(float(np.max(np.abs(batch.gradients[i] - h.gradient))
                             / np.max(np.abs(h.gradient))) for i, h in enumerate(ind))
            if not diff <= 1e-10:
                raise SystemExit(f"{kind} {label}: batch and independent differ by {diff:.1e}")
            print(f"| {kind} | {problem.n_states} | {label} | {(t1 - t0) * 1e3 / n:.2f} | "
                  f"{(t2 - t1) * 1e3 / n:.2f} | {(t1 - t0) / (t2 - t1):.2f} | "
                  f"{lu_ind:.1f} / {batch.factorizations.mean():.1f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
