"""Run the missing replicates of a sweep (standard library process pool, or Dask).

Replicate ``i`` of estimator ``e`` at budget ``n`` on problem ``p`` reads block ``i`` of the
uniforms of its cell under the package's one stream rule (:mod:`exact_bilevel.core.streams`,
``cell-block/3``), the cell key being ``(crc32(p), crc32(e), n)``: the generator
``PCG64(SeedSequence(seed, spawn_key=(4, 3, crc32(p), crc32(e), n)))`` advanced by ``i B``
draws, ``B = block_size(n, d)``. The replicates of a claimed chunk that share a cell are
drawn together in one vectorised call (:func:`exact_bilevel.estimators.registry.
run_replicates`); the numbers depend on nothing else (not the worker count, not the
chunking, not an interruption), and distinct coordinates never share a uniform. Two
problem names (or two estimator labels) of one sweep with the same crc32 would share
streams; such a sweep is refused (rename one).

The work is cut into chunks of replicates that a run *claims* in the results file
(:func:`.store.claim`) before computing them, so several sweeps into one file split the
work and each counts only the rows it inserted. A claim is refreshed every
:data:`HEARTBEAT_SECONDS`; another run takes it over when its process is dead (same
host) or its heartbeat is older than :data:`.store.STALE_SECONDS`. A run ends when every
chunk is done (it waits for chunks other live runs hold).

Dask: the scheduler must answer within ``connect_timeout`` seconds, and a run whose
cluster has had no worker for ``no_worker_timeout`` seconds (default 60, the CLI's
``--no-worker-timeout``) stops with a ``ValueError`` naming ``--scheduler`` (exit 2);
the rows stored so far are kept and a rerun resumes.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import threading
import time
import uuid
import zlib
from typing import Any

import numpy as np

from ..core._progress import progress_bar
from ..core.errors import ConvergenceError, require_finite
from ..core.hypergradient import hypergradient
from ..core.streams import block_rng, cell_uniforms
from ..estimators._common import vectorised
from ..estimators.registry import (
    ESTIMATORS,
    check_sample_buffers,
    leader_knowledge,
    run_replicates,
)
from ..estimators.sampling import Sampler, block_size
from ..experiments.examples import random_problem
from ..formats.files import load_problem
from ..validation.convergence import rare_event_diagnostic
from ..validation.mutants import MUTANTS
from . import store
from .provenance import problem_hash, provenance
from .spec import EstimatorSpec, ProblemSpec, SweepSpec

Task = tuple[str, str, str, bool, int, int]  # problem, estimator, critic, baseline, budget, rep
#: What an estimator may raise on a valid sweep (its own documented limits, a numerical
#: failure): recorded in the ``failures`` table. Anything else is a bug and stops the run.
RECORDED = (ValueError, ArithmeticError, ConvergenceError)


def cell_key(problem: str, estimator: str, budget: int) -> tuple[int, int, int]:
    """The stream key of a cell: ``(crc32(problem), crc32(estimator label), budget)``."""
    return (zlib.crc32(problem.encode()), zlib.crc32(estimator.encode()), budget)


def replicate_seed(seed: int, problem: str, estimator: str, budget: int, replicate: int,
                   block: int) -> np.random.Generator:
    """The stream of one replicate alone, from its coordinates: its cell's generator
    advanced to its block (:func:`exact_bilevel.core.streams.block_rng`).

    Parameters
    ----------
    seed, budget, replicate : int
        The sweep's seed and the replicate's coordinates (each below 2**32).
    problem, estimator : str
        The problem name and the estimator label.
    block : int
        Uniforms per replicate, :func:`exact_bilevel.estimators.sampling.block_size`.
    """
    return block_rng(seed, replicate, block, cell_key(problem, estimator, budget))


def replicate_uniforms(seed: int, problem: str, estimator: str, budget: int, first: int,
                       count: int, block: int) -> np.ndarray:
    """Uniforms ``[count, block]`` of replicates ``first, ..., first + count - 1`` of a
    cell, in one call (:func:`exact_bilevel.core.streams.cell_uniforms`)."""
    return cell_uniforms(seed, count, block, cell_key(problem, estimator, budget), first)


def build(p: ProblemSpec) -> tuple[Any, np.ndarray]:
    """``(problem, x)`` of a problem entry."""
    if p.path is not None:
        return load_problem(p.path)
    return random_problem(**dict(p.random or ()))


@functools.lru_cache(maxsize=64)
def _knowledge(p: ProblemSpec) -> Any:
    problem, x = build(p)
    return problem, x, leader_knowledge(problem, x)


def _estimator_fn(est: str, baseline: bool) -> Any:
    if est.startswith("mutant:"):
        fn = MUTANTS[est[len("mutant:"):]].fn
        return vectorised(functools.partial(fn, baseline=True)) if baseline else fn
    return ESTIMATORS[est].fn


def _one(spec: SweepSpec, know: Any, fn: Any, task: Task, label: str, block: int
         ) -> tuple[store.Row | None, store.Failure | None]:
    """One replicate alone (its own stream): the fallback that records each failure."""
    pname, _, critic, _, budget, rep = task
    t0 = time.perf_counter()
    rng = replicate_seed(spec.seed, pname, label, budget, rep, block)
    try:
        e = fn(know, Sampler(know.state.mdp, rng), budget, critic)
        require_finite(f"{label} on {pname}, replicate {rep}: the estimate", e.gradient,
                       "sampling")
    except RECORDED as exc:
        return None, (pname, label, budget, rep, f"{type(exc).__name__}: {exc}")
    return (pname, label, budget, rep, json.dumps(e.gradient.tolist()), int(e.transitions),
            time.perf_counter() - t0), None


def _runs(tasks: list[Task]) -> list[list[Task]]:
    """Maximal runs of consecutive replicates of one cell."""
    out: list[list[Task]] = []
    for task in tasks:
        last = out[-1][-1] if out else None
        if last is not None and last[:5] == task[:5] and task[5] == last[5] + 1:
            out[-1].append(task)
        else:
            out.append([task])
    return out


def _run_chunk(args: tuple[SweepSpec, list[Task]]
               ) -> tuple[list[store.Row], list[store.Failure]]:
    spec, tasks = args
    by_name = {p.name: p for p in spec.problems}
    rows, failures = [], []
    for run in _runs(tasks):
        pname, est, critic, baseline, budget, first = run[0]
        _, _, know = _knowledge(by_name[pname])
        label = EstimatorSpec(est, critic, baseline).label
        fn = _estimator_fn(est, baseline)
        block = block_size(budget, know.dr.shape[-1])
        t0 = time.perf_counter()
        try:
            U = replicate_uniforms(spec.seed, pname, label, budget, first, len(run), block)
            X, cost = run_replicates(fn, know, budget, len(run), spec.seed, critic,
                                     uniforms=U)
        except RECORDED:  # one replicate's documented limit: find which, one by one
            for task in run:
                row, failure = _one(spec, know, fn, task, label, block)
                rows += [row] if row is not None else []
                failures += [failure] if failure is not None else []
            continue
        seconds = (time.perf_counter() - t0) / len(run)
        for task, g, c in zip(run, X, cost, strict=True):
            if not np.all(np.isfinite(g)):
                row, failure = _one(spec, know, fn, task, label, block)
                rows += [row] if row is not None else []
                failures += [failure] if failure is not None else []
                continue
            rows.append((pname, label, budget, task[5], json.dumps(g.tolist()), int(c),
                         seconds))
    return rows, failures


EXECUTORS = ("local", "dask")
#: Default replicates per claimed chunk: large enough that a cell's replicates are drawn
#: together (one vectorised call per cell and chunk), small enough to spread the work.
CHUNK = 100
#: Seconds between heartbeats of a run's open claims.
HEARTBEAT_SECONDS = 10.0
#: Default seconds a Dask run waits with no worker before it stops (``--no-worker-timeout``).
NO_WORKER_TIMEOUT = 60.0
#: Default seconds to reach a Dask scheduler (``--connect-timeout``).
CONNECT_TIMEOUT = 10.0


def _check_streams(spec: SweepSpec) -> None:
    """Refuse a sweep in which two problem names or two estimator labels share a crc32
    (their replicates would share random streams)."""
    for kind, names in (("problems", [p.name for p in spec.problems]),
                        ("estimators", [e.label for e in spec.estimators])):
        seen: dict[int, str] = {}
        for n in names:
            c = zlib.crc32(n.encode())
            if c in seen and seen[c] != n:
                raise ValueError(f"{kind}: {seen[c]!r} and {n!r} have the same crc32, so their "
                                 "replicates would share random streams; rename one")
            seen[c] = n


def run_sweep(spec: SweepSpec, db: str, *, workers: int = 1, chunk: int = CHUNK,
              progress: bool = True, executor: str = "local",
              scheduler: str | None = None, no_worker_timeout: float = NO_WORKER_TIMEOUT,
              connect_timeout: float = CONNECT_TIMEOUT) -> int:
    """Compute every replicate not yet in ``db``.

    An estimator raising ``ValueError``, ``ArithmeticError`` or ``ConvergenceError`` on a
    replicate is recorded in the ``failures`` table with its message and the sweep goes on.

    Parameters
    ----------
    spec : SweepSpec
        The validated sweep.
    db : str
        The results file: created if nothing is at this path, else it must be a results
        file of this very provenance (:mod:`.provenance`); anything else is a
        ``ValueError`` naming ``--db`` and the file is left untouched.
    workers : int
        ``executor="local"``: processes (one runs in this process); ``"dask"`` without
        ``scheduler``: worker processes of a ``LocalCluster``.
    chunk : int
        Replicates per claimed chunk (the first run's value is kept in the file); the
        replicates of one cell within a chunk are drawn in one vectorised call.
    progress : bool
        Show a progress bar.
    executor : {"local", "dask"}
        The standard library's process pool, or Dask distributed (the ``dask`` extra).
    scheduler : str, optional
        A running Dask scheduler's address.
    no_worker_timeout : float
        Dask: seconds with no worker before the run stops (``ValueError``, rows kept).
    connect_timeout : float
        Dask: seconds to reach ``scheduler``.

    Returns
    -------
    int
        Replicates this run inserted (estimated or recorded as failed); rows another
        concurrent run stored are not counted.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor = {executor!r}: must be one of {EXECUTORS}")
    if scheduler is not None and executor != "dask":
        raise ValueError("--scheduler: only with --executor dask")
    for name, v in (("--no-worker-timeout", no_worker_timeout),
                    ("--connect-timeout", connect_timeout)):
        if not v > 0:
            raise ValueError(f"{name} = {v!r}: must be a positive number of seconds")
    for b in spec.budgets:
        check_sample_buffers(b)
    _check_streams(spec)
    store.check_ours(db, create=True)  # before the (possibly long) exact solves
    exact = []  # every problem loads and solves before anything is written
    rare = []
    hashes = {}
    for p in spec.problems:
        problem, x = build(p)
        hashes[p.name] = problem_hash(problem, x)
        h = hypergradient(problem, x)
        exact.append((p.name, float(h.value), h.gradient.tolist()))
        know = leader_knowledge(problem, x)
        rare += [(p.name, b, rare_event_diagnostic(know, b * spec.replicates)[0])
                 for b in spec.budgets]
    # the executor first: an unreachable scheduler leaves no results file behind
    with _Executor(executor, workers, scheduler, no_worker_timeout, connect_timeout) as ex:
        con = store.connect(db)
        try:
            chunk = store.bind(con, db, provenance(spec, hashes), spec.canonical, chunk)
            con.execute("BEGIN IMMEDIATE")
            for name, value, grad in exact:  # the exact answer beside every estimate
                store.put_problem(con, name, value, grad, hashes[name])
            for name, b, visits in rare:
                store.put_diagnostic(con, name, b, visits)
            con.execute("COMMIT")
            have = store.done(con)
            tasks = [(p.name, e.name, e.critic, e.baseline, b, i) for p in spec.problems
                     for e in spec.estimators for b in spec.budgets
                     for i in range(spec.replicates)]
            todo: dict[int, list[Task]] = {}
            for k in range(0, len(tasks), chunk):
                left = [t for t in tasks[k:k + chunk] if
                        (t[0], EstimatorSpec(t[1], t[2], t[3]).label, t[4], t[5]) not in have]
                if left:
                    todo[k // chunk] = left
            bar = progress_bar(total=sum(map(len, todo.values())), desc="sweep (replicates)",
                               enabled=progress)
            try:
                return _drive(con, db, spec, todo, ex, bar)
            finally:
                bar.close()
        finally:
            store.close(con)


def _drive(con: Any, db: str, spec: SweepSpec, todo: dict[int, list[Task]],
           ex: _Executor, bar: Any) -> int:
    """Claim chunks, compute them on ``ex``, store them; return the rows inserted."""
    owner = f"{store.HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    candidates = sorted(todo)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(db, owner, stop), daemon=True)
    beat.start()
    pending: dict[Any, int] = {}
    added = 0
    try:
        while True:
            while len(pending) < ex.capacity():
                c = store.claim(con, owner, candidates)
                if c is None:
                    break
                pending[ex.submit((spec, todo[c]))] = c
                candidates.remove(c)
            if not pending:
                if not candidates or not store.unfinished(con, candidates):
                    return added
                time.sleep(1.0)  # chunks held by other live runs: wait, take over if stale
                continue
            for future in ex.wait(list(pending)):
                c = pending.pop(future)
                rows, failures = ex.result(future)
                added += store.put_rows(con, rows, failures, chunk=c)
                bar.update(len(todo[c]))
    finally:
        stop.set()
        beat.join()
        store.release(con, owner)


def _heartbeat(db: str, owner: str, stop: threading.Event) -> None:
    import sqlite3

    con = sqlite3.connect(db, timeout=60.0, isolation_level=None)
    try:
        while not stop.wait(HEARTBEAT_SECONDS):
            store.heartbeat(con, owner)
    finally:
        con.close()


class _Executor:
    """One interface over the in-process loop, the process pool and Dask distributed."""

    def __init__(self, kind: str, workers: int, scheduler: str | None,
                 no_worker_timeout: float, connect_timeout: float) -> None:
        self.kind, self.workers, self.scheduler = kind, workers, scheduler
        self.no_worker_timeout, self.connect_timeout = no_worker_timeout, connect_timeout
        self.pool: Any = None
        self.client: Any = None
        self.cluster: Any = None
        self._idle_since: float | None = None

    def __enter__(self) -> _Executor:
        if self.kind == "dask":
            self._start_dask()
        elif self.workers > 1:
            self.pool = concurrent.futures.ProcessPoolExecutor(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def _where(self) -> str:
        return (f"--scheduler {self.scheduler}" if self.scheduler
                else "--executor dask (its LocalCluster)")

    def _start_dask(self) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("--executor: 'dask' needs the dask extra "
                             "(pip install exact_bilevel[dask])") from None
        if self.scheduler is None:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                        processes=True, dashboard_address=None)
        try:
            self.client = Client(self.scheduler or self.cluster,
                                 timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"{self._where()}: no Dask scheduler reachable within "
                             f"{self.connect_timeout:g} s (--connect-timeout): "
                             f"{type(exc).__name__}: {exc}") from None

    def capacity(self) -> int:
        """How many chunks to keep in flight."""
        if self.kind == "dask":
            return max(4, 2 * len(self._workers()))
        return 1 if self.pool is None else 2 * self.workers

    def _workers(self) -> dict:
        try:
            return dict(self.client.nthreads())
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"{self._where()}: lost the Dask scheduler "
                             f"({type(exc).__name__}: {exc}); rows stored so far are kept, "
                             "rerun to resume") from None

    def submit(self, args: tuple[SweepSpec, list[Task]]) -> Any:
        if self.kind == "dask":
            return self.client.submit(_run_chunk, args, pure=False)
        if self.pool is not None:
            return self.pool.submit(_run_chunk, args)
        f: concurrent.futures.Future = concurrent.futures.Future()
        f.set_result(_run_chunk(args))
        return f

    def wait(self, futures: list) -> list:
        """Some completed futures (waits; Dask: stops if there has been no worker for
        ``no_worker_timeout`` seconds)."""
        if self.kind != "dask":
            done, _ = concurrent.futures.wait(futures,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            return list(done)
        from distributed import wait

        while True:
            try:
                done, _ = wait(futures, timeout=min(1.0, self.no_worker_timeout),
                               return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            if done:
                return list(done)
            if self._workers():
                self._idle_since = None
                continue
            now = time.monotonic()
            self._idle_since = self._idle_since or now
            if now - self._idle_since >= self.no_worker_timeout:
                raise ValueError(f"{self._where()}: no Dask worker for "
                                 f"{self.no_worker_timeout:g} s (--no-worker-timeout); "
                                 "stopped, the rows stored so far are kept: rerun to resume")

    def result(self, future: Any) -> tuple[list[store.Row], list[store.Failure]]:
        if self.kind != "dask":
            return future.result()
        try:
            return future.result()
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker":
                raise ValueError(f"{self._where()}: Dask workers died running a chunk "
                                 f"({exc}); the rows stored so far are kept: rerun to "
                                 "resume") from None
            raise
