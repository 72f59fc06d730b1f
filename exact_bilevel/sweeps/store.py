"""Sweep results in SQLite: every replicate exactly once, nothing half-written.

Tables: ``meta(key, value)`` (the spec), ``problems(problem, value, exact)`` (the exact
``F`` and gradient, JSON), ``estimates(problem, estimator, budget, replicate,
gradient, transitions, seconds)`` with primary key ``(problem, estimator, budget,
replicate)``, ``diagnostics(problem, budget, rarest_visits)`` (the rare-event
diagnostic of each cell: expected on-policy visits of the least likely pair in all its
replicates together), and ``failures(problem, estimator, budget, replicate, error)`` for
replicates whose estimator raised (a documented limit such as too small a budget, or
a numerical failure): recorded once with the message, counted by the report, never
retried (the replicate's seed is fixed, so it would fail again). Rows are inserted
with ``INSERT OR IGNORE`` inside transactions: a killed run keeps every committed row
and no partial one; concurrent writers (WAL mode, a busy timeout) cannot store a
replicate twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS problems (problem TEXT PRIMARY KEY, value REAL NOT NULL,
                                     exact TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS estimates (
    problem TEXT NOT NULL, estimator TEXT NOT NULL, budget INTEGER NOT NULL,
    replicate INTEGER NOT NULL, gradient TEXT NOT NULL, transitions INTEGER NOT NULL,
    seconds REAL NOT NULL, PRIMARY KEY (problem, estimator, budget, replicate));
CREATE TABLE IF NOT EXISTS diagnostics (
    problem TEXT NOT NULL, budget INTEGER NOT NULL, rarest_visits REAL NOT NULL,
    PRIMARY KEY (problem, budget));
CREATE TABLE IF NOT EXISTS failures (
    problem TEXT NOT NULL, estimator TEXT NOT NULL, budget INTEGER NOT NULL,
    replicate INTEGER NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (problem, estimator, budget, replicate));
"""

Row = tuple[str, str, int, int, str, int, float]
Failure = tuple[str, str, int, int, str]


def connect(path: str) -> sqlite3.Connection:
    """Open (or create) a results file."""
    con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA busy_timeout=60000")
    con.executescript(SCHEMA)
    return con


def bind_spec(con: sqlite3.Connection, canonical: str) -> None:
    """Record the spec, or check that the file holds this very spec."""
    con.execute("BEGIN IMMEDIATE")
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()
        if row is None:
            con.execute("INSERT INTO meta VALUES ('spec', ?)", (canonical,))
        elif row[0] != canonical:
            raise ValueError("db: holds the results of another sweep spec; use a new file")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def spec_text(con: sqlite3.Connection) -> str:
    row = con.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()
    if row is None:
        raise ValueError("db: no sweep has been run into this file")
    return str(row[0])


def done(con: sqlite3.Connection) -> set[tuple[str, str, int, int]]:
    """Replicates already settled: estimated or failed."""
    return (set(con.execute("SELECT problem, estimator, budget, replicate FROM estimates"))
            | set(con.execute("SELECT problem, estimator, budget, replicate FROM failures")))


def put_problem(con: sqlite3.Connection, name: str, value: float, exact: list[float]) -> None:
    con.execute("INSERT OR IGNORE INTO problems VALUES (?, ?, ?)",
                (name, value, json.dumps(exact)))


def put_diagnostic(con: sqlite3.Connection, problem: str, budget: int, visits: float) -> None:
    """The expected on-policy visits of the rarest pair in all replicates of a cell."""
    con.execute("INSERT OR IGNORE INTO diagnostics VALUES (?, ?, ?)", (problem, budget, visits))


def put_rows(con: sqlite3.Connection, rows: Iterable[Row],
             failures: Iterable[Failure] = ()) -> None:
    """Insert replicates and failures in one transaction (all or nothing)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        con.executemany("INSERT OR IGNORE INTO estimates VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT OR IGNORE INTO failures VALUES (?, ?, ?, ?, ?)", failures)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
