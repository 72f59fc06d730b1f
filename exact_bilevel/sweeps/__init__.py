r"""Validation sweeps: many problems x estimators x budgets x replicates, resumable.

* :mod:`.spec` — the sweep file (``"format": "exact-bilevel-sweep/1"``): problems
  (files, or seeded random generators with counts and sizes), estimators (with
  critics), budgets, replicates, seed; strict validation naming the field;
* :mod:`.store` — results in SQLite (standard library): one row per replicate,
  written in transactions (a run killed at any moment, even by SIGKILL, loses only
  rows not yet committed), primary key ``(problem, estimator, budget, replicate)``
  so every replicate is stored exactly once, WAL mode for concurrent writers;
* :mod:`.run` — the missing replicates on the standard library's process pool;
  replicate seeds derive from ``(seed, problem, estimator, budget, replicate)``
  alone, so the numbers do not depend on the worker count or on interruptions;
* :mod:`.report` — a markdown report and a PNG from a results file.

May import: every other subpackage.
"""
