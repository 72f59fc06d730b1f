"""Run the missing replicates of a sweep (standard library process pool).

Replicate ``i`` of estimator ``e`` at budget ``n`` on problem ``p`` draws from
``numpy.random.default_rng([seed, crc32(p), crc32(e), n, i])``: the numbers depend on
nothing else (not the worker count, not the order, not an interruption).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core._progress import progress_bar
from ..core.errors import ConvergenceError, require_finite
from ..core.hypergradient import hypergradient
from ..estimators.registry import ESTIMATORS, check_sample_buffers, leader_knowledge
from ..estimators.sampling import Sampler
from ..experiments.examples import random_problem
from ..formats.files import load_problem
from ..validation.convergence import rare_event_diagnostic
from ..validation.mutants import MUTANTS
from . import store
from .spec import EstimatorSpec, ProblemSpec, SweepSpec

Task = tuple[str, str, str, bool, int, int]  # problem, estimator, critic, baseline, budget, rep
#: What an estimator may raise on a valid sweep (its own documented limits, a numerical
#: failure): recorded in the ``failures`` table. Anything else is a bug and stops the run.
RECORDED = (ValueError, ArithmeticError, ConvergenceError)


def replicate_seed(seed: int, problem: str, estimator: str, budget: int,
                   replicate: int) -> np.random.Generator:
    """The generator of one replicate, from its coordinates alone."""
    return np.random.default_rng([seed, zlib.crc32(problem.encode()),
                                  zlib.crc32(estimator.encode()), budget, replicate])


def build(p: ProblemSpec) -> tuple[Any, np.ndarray]:
    """``(problem, x)`` of a problem entry."""
    if p.path is not None:
        return load_problem(p.path)
    return random_problem(**dict(p.random or ()))


@functools.lru_cache(maxsize=64)
def _knowledge(p: ProblemSpec) -> Any:
    problem, x = build(p)
    return problem, x, leader_knowledge(problem, x)


def _run_chunk(args: tuple[SweepSpec, list[Task]]
               ) -> tuple[list[store.Row], list[store.Failure]]:
    spec, tasks = args
    by_name = {p.name: p for p in spec.problems}
    rows, failures = [], []
    for pname, est, critic, baseline, budget, rep in tasks:
        _, _, know = _knowledge(by_name[pname])
        label = EstimatorSpec(est, critic, baseline).label
        t0 = time.perf_counter()
        rng = replicate_seed(spec.seed, pname, label, budget, rep)
        sampler = Sampler(know.state.mdp, rng)
        try:
            if est.startswith("mutant:"):
                fn = MUTANTS[est[len("mutant:"):]].fn
                e = (fn(know, sampler, budget, critic, True) if baseline
                     else fn(know, sampler, budget, critic))
            else:
                e = ESTIMATORS[est].fn(know, sampler, budget, critic)
            require_finite(f"{label} on {pname}, replicate {rep}: the estimate", e.gradient,
                           "sampling")
        except RECORDED as exc:
            failures.append((pname, label, budget, rep, f"{type(exc).__name__}: {exc}"))
            continue
        rows.append((pname, label, budget, rep, json.dumps(e.gradient.tolist()),
                     int(e.transitions), time.perf_counter() - t0))
    return rows, failures


EXECUTORS = ("local", "dask")


def run_sweep(spec: SweepSpec, db: str, *, workers: int = 1, chunk: int = 10,
              progress: bool = True, executor: str = "local",
              scheduler: str | None = None) -> int:
    """Compute every replicate not yet in ``db``; returns how many were settled (estimated
    or recorded as failed: an estimator raising ``ValueError``, ``ArithmeticError`` or
    ``ConvergenceError`` on a replicate is recorded in the ``failures`` table with its
    message and the sweep goes on).

    ``executor="local"``: the standard library's process pool (``workers`` processes;
    one worker runs in this process). ``executor="dask"``: Dask distributed (the ``dask``
    extra) on the cluster at ``scheduler``, or on a ``LocalCluster`` of ``workers``
    processes when no address is given. Both run the same function on the same chunks;
    rows are written by this process only, one transaction per chunk.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor = {executor!r}: must be one of {EXECUTORS}")
    if scheduler is not None and executor != "dask":
        raise ValueError("scheduler: only with executor 'dask'")
    for b in spec.budgets:
        check_sample_buffers(b)
    exact = []  # every problem loads and solves before anything is written
    rare = []
    for p in spec.problems:
        problem, x = build(p)
        h = hypergradient(problem, x)
        exact.append((p.name, float(h.value), h.gradient.tolist()))
        know = leader_knowledge(problem, x)
        rare += [(p.name, b, rare_event_diagnostic(know, b * spec.replicates)[0])
                 for b in spec.budgets]
    con = store.connect(db)
    try:
        store.bind_spec(con, spec.canonical)
        con.execute("BEGIN IMMEDIATE")
        for name, value, grad in exact:  # the exact answer beside every estimate
            store.put_problem(con, name, value, grad)
        for name, b, visits in rare:
            store.put_diagnostic(con, name, b, visits)
        con.execute("COMMIT")
        have = store.done(con)
        todo = [(p.name, e.name, e.critic, e.baseline, b, i) for p in spec.problems
                for e in spec.estimators for b in spec.budgets for i in range(spec.replicates)
                if (p.name, e.label, b, i) not in have]
        chunks = [(spec, todo[k:k + chunk]) for k in range(0, len(todo), chunk)]
        bar = progress_bar(total=len(todo), desc="sweep (replicates)", enabled=progress)
        added = 0
        for rows, failures in _results(chunks, executor, workers, scheduler):
            store.put_rows(con, rows, failures)
            added += len(rows) + len(failures)
            bar.update(len(rows) + len(failures))
        bar.close()
        return added
    finally:
        con.close()


def _results(chunks: list, executor: str, workers: int,
             scheduler: str | None
             ) -> Iterator[tuple[list[store.Row], list[store.Failure]]]:
    """The rows of every chunk, as they complete."""
    if executor == "dask":
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise ValueError("executor: 'dask' needs the dask extra "
                             "(pip install exact_bilevel[dask])") from None
        cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                      processes=True, dashboard_address=None)
        client = Client(scheduler or cluster)
        try:
            for future in as_completed(client.map(_run_chunk, chunks, pure=False)):
                yield future.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    if workers > 1:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_run_chunk, c) for c in chunks]
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        return
    for c in chunks:
        yield _run_chunk(c)
