r"""Validation sweeps: many problems x estimators x budgets x replicates, resumable.

* :mod:`.spec` — the sweep file (``"format": "exact-bilevel-sweep/1"``): problems
  (files, or seeded random generators with counts and sizes), estimators (with
  critics), budgets, replicates, seed; strict validation naming the field path and rule;
* :mod:`.provenance` — what rows were computed from: each problem's content hash *as
  loaded* (SHA-256 of its canonical JSON, whatever the file's path or whitespace), the
  estimator settings, seed, budgets, replicates, :data:`~.provenance.NUMERICS_VERSION`
  and the stream rule; a results file is bound to one provenance, and a sweep or report
  that would mix inputs is refused naming the problem and both short hashes (the
  package ``__version__`` of every writer is recorded, not compared);
* :mod:`.store` — results in SQLite (standard library): one row per replicate, written
  in transactions (a run killed at any moment, even by SIGKILL, loses only rows not yet
  committed), primary key ``(problem, estimator, budget, replicate)`` so every replicate
  is stored exactly once. Only files of ours are written: the SQLite header
  (``application_id``, ``user_version``) is checked before anything is opened for
  writing; a new file is made only where nothing exists; a results file from before
  provenance is refused, not adopted; ``report`` opens read-only;
* :mod:`.run` — the missing replicates on the standard library's process pool or Dask;
  replicate seeds derive from ``(seed, problem, estimator, budget, replicate)`` alone,
  so the numbers do not depend on the worker count or on interruptions. Concurrent
  sweeps into one file split the work by claiming chunks (a heartbeat; a dead or silent
  run's claims are taken over) and each counts only the rows it inserted. Dask: a
  scheduler that does not answer within ``--connect-timeout`` (10 s) or a cluster with
  no worker for ``--no-worker-timeout`` (60 s) stops the run with a ``ValueError``
  naming ``--scheduler`` (CLI exit 2), the rows stored so far kept;
* :mod:`.report` — a markdown report (headed by the provenance) and a PNG from a
  results file; a file with no rows yet gives a report saying so.

Errors in the input (the spec, ``--db``, the Dask environment) are ``ValueError``\ s
naming the option or field and the rule: CLI exit 2, files left untouched.

May import: every other subpackage.
"""
