"""Sweep results in SQLite: every replicate exactly once, nothing half-written, never mixed.

A results file is ours only if its SQLite header carries :data:`APPLICATION_ID` and
:data:`SCHEMA_VERSION` (``PRAGMA application_id`` / ``user_version``); this is checked
by reading the header *before* SQLite opens the file for writing, so a file that is not
ours (another application's database, a JSON file, random bytes, an empty file, a
directory) is refused with a ``ValueError`` naming ``--db`` and left untouched. A new
file is made only where nothing exists: initialised under a temporary name and linked
into place atomically (two runs starting together cannot both create it). ``report``
opens the file read-only (``file:...?mode=ro``).

Tables: ``meta(key, value)`` (the spec, its provenance — see :mod:`.provenance` —, the
chunk size and the package versions that wrote rows), ``problems(problem, value,
exact, hash)`` (the exact ``F`` and gradient, JSON, and the problem's content hash),
``estimates(problem, estimator, budget, replicate, gradient, transitions, seconds)``
with primary key ``(problem, estimator, budget, replicate)``, ``diagnostics(problem,
budget, rarest_visits)`` (the rare-event diagnostic of each cell: expected on-policy
visits of the least likely pair in all its replicates together), ``failures(problem,
estimator, budget, replicate, error)`` for replicates whose estimator raised (recorded
once with the message, counted by the report, never retried: the replicate's seed is
fixed, so it would fail again), and ``claims(chunk, owner, host, pid, heartbeat,
done)``: which run computes which chunk of replicates (:func:`claim`), so concurrent
sweeps into one file split the work. Rows are inserted with ``INSERT OR IGNORE`` inside
transactions: a killed run keeps every committed row and no partial one; concurrent
writers (WAL mode, a busy timeout) cannot store a replicate twice.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from .provenance import compare

#: ``PRAGMA application_id`` of a results file ("EBSW").
APPLICATION_ID = 0x45425357
#: ``PRAGMA user_version``: the table layout (1 was the layout before provenance).
SCHEMA_VERSION = 2
TABLES = frozenset({"meta", "problems", "estimates", "diagnostics", "failures", "claims"})
_OLD_TABLES = frozenset({"meta", "problems", "estimates", "diagnostics", "failures"})

SCHEMA = f"""
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE problems (problem TEXT PRIMARY KEY, value REAL NOT NULL, exact TEXT NOT NULL,
                       hash TEXT NOT NULL);
CREATE TABLE estimates (
    problem TEXT NOT NULL, estimator TEXT NOT NULL, budget INTEGER NOT NULL,
    replicate INTEGER NOT NULL, gradient TEXT NOT NULL, transitions INTEGER NOT NULL,
    seconds REAL NOT NULL, PRIMARY KEY (problem, estimator, budget, replicate));
CREATE TABLE diagnostics (
    problem TEXT NOT NULL, budget INTEGER NOT NULL, rarest_visits REAL NOT NULL,
    PRIMARY KEY (problem, budget));
CREATE TABLE failures (
    problem TEXT NOT NULL, estimator TEXT NOT NULL, budget INTEGER NOT NULL,
    replicate INTEGER NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (problem, estimator, budget, replicate));
CREATE TABLE claims (chunk INTEGER PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL,
                     pid INTEGER NOT NULL, heartbeat REAL NOT NULL, done INTEGER NOT NULL);
"""

Row = tuple[str, str, int, int, str, int, float]
Failure = tuple[str, str, int, int, str]
_MAGIC = b"SQLite format 3\x00"


def _tables_readonly(path: str) -> set[str]:
    con = sqlite3.connect(f"{pathlib.Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def check_ours(db: str, *, create: bool) -> bool:
    """Check, without writing anything, that ``db`` is a results file of ours.

    Parameters
    ----------
    db : str
        The path.
    create : bool
        Whether a missing file may be created (``sweep``; ``report`` never creates).

    Returns
    -------
    bool
        ``True`` if the file exists (and is ours), ``False`` if it is to be created.

    Raises
    ------
    ValueError
        Naming ``--db`` and the rule, for anything that is not a results file of ours.
    """
    p = pathlib.Path(db)
    where = f"--db {db}"
    if p.is_dir():
        raise ValueError(f"{where}: is a directory; must be a results file (SQLite)")
    if not p.exists():
        if not create:
            raise ValueError(f"{where}: does not exist; must be a results file written by "
                             "'exact-bilevel sweep'")
        if not p.parent.resolve().is_dir():
            raise ValueError(f"{where}: directory {p.parent} does not exist (it is not "
                             "created for you)")
        return False
    if not p.is_file():
        raise ValueError(f"{where}: is not a regular file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise ValueError(f"{where}: cannot be read ({exc.strerror})") from None
    if not head:
        raise ValueError(f"{where}: is an empty file, not a results file; it is left alone "
                         "(remove it, or give a path that does not exist yet)")
    if len(head) < 100 or not head.startswith(_MAGIC):
        raise ValueError(f"{where}: is not an SQLite results file (no SQLite header); it is "
                         "left alone")
    user_version = int.from_bytes(head[60:64], "big")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != APPLICATION_ID:
        try:
            tables = _tables_readonly(db)
        except sqlite3.Error as exc:
            raise ValueError(f"{where}: is a corrupt or unreadable SQLite file ({exc}); it is "
                             "left alone") from None
        if app_id == 0 and _OLD_TABLES <= tables:
            raise ValueError(f"{where}: predates provenance (written by exact_bilevel before "
                             "results recorded what they were computed from); it cannot be "
                             "resumed or reported: rerun the sweep into a new file")
        raise ValueError(f"{where}: is an SQLite database of another application (tables "
                         f"{sorted(tables)[:8]}); it is left alone")
    if user_version != SCHEMA_VERSION:
        raise ValueError(f"{where}: results layout version {user_version}, this code reads "
                         f"version {SCHEMA_VERSION}; rerun the sweep into a new file")
    return True


def _configure(con: sqlite3.Connection) -> None:
    con.execute("PRAGMA busy_timeout=60000")


def _create(db: str) -> None:
    """Make a new results file at ``db`` atomically (no-op if one appeared meanwhile)."""
    tmp = f"{db}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.executescript(SCHEMA)
        finally:
            con.close()
        try:
            os.link(tmp, db)
        except FileExistsError:
            pass  # another run created it first: it is checked like any existing file
        except OSError as exc:
            raise ValueError(f"--db {db}: cannot be created ({exc.strerror})") from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(tmp + suffix)
            except FileNotFoundError:
                pass


def connect(db: str) -> sqlite3.Connection:
    """Open a results file for a sweep, creating it if (and only if) nothing is at ``db``."""
    if not check_ours(db, create=True):
        _create(db)
        check_ours(db, create=False)
    con = sqlite3.connect(db, timeout=60.0, isolation_level=None)
    return _checked(con, db, wal=True)


def close(con: sqlite3.Connection) -> None:
    """Close a sweep's connection; the last one out leaves the file in rollback-journal mode
    (no ``-wal``/``-shm`` beside it), so a read-only report of a quiescent file creates
    nothing. While other runs are connected the file stays in WAL mode."""
    try:
        con.execute("PRAGMA busy_timeout=0")
        con.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error:
        pass  # another run is connected: it needs WAL
    finally:
        con.close()


def connect_readonly(db: str) -> sqlite3.Connection:
    """Open an existing results file read-only (``report``): nothing is ever written."""
    check_ours(db, create=False)
    con = sqlite3.connect(f"{pathlib.Path(db).resolve().as_uri()}?mode=ro", uri=True,
                          timeout=60.0, isolation_level=None)
    return _checked(con, db, wal=False)


def _checked(con: sqlite3.Connection, db: str, *, wal: bool) -> sqlite3.Connection:
    """Configure ``con`` (WAL mode for a writer: concurrent runs, see :func:`close`) and
    check that it holds exactly the results tables; closes it and raises ``ValueError``
    naming ``--db`` otherwise."""
    try:
        _configure(con)
        if wal:
            con.execute("PRAGMA journal_mode=WAL")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE "
                                            "type='table'")}
    except sqlite3.DatabaseError as exc:
        con.close()
        raise ValueError(f"--db {db}: is a corrupt results file ({exc})") from None
    if tables != TABLES:
        con.close()
        raise ValueError(f"--db {db}: tables {sorted(tables)} are not those of a results file")
    return con


def _meta(con: sqlite3.Connection, key: str) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def bind(con: sqlite3.Connection, db: str, prov: dict[str, Any], canonical: str,
         chunk: int) -> int:
    """Record the provenance (first run), or check that the file holds rows of this very
    provenance (``ValueError`` otherwise); record this package version as a writer.

    Returns
    -------
    int
        The chunk size of the file's claims (the first run's).
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        stored = _meta(con, "provenance")
        if stored is None:
            con.executemany("INSERT INTO meta VALUES (?, ?)",
                            [("provenance", json.dumps(prov, sort_keys=True)),
                             ("spec", canonical), ("chunk", str(chunk)),
                             ("writers", json.dumps([prov["package_version"]]))])
        else:
            compare(db, json.loads(stored), prov)
            writers = json.loads(_meta(con, "writers") or "[]")
            if prov["package_version"] not in writers:
                con.execute("UPDATE meta SET value = ? WHERE key = 'writers'",
                            (json.dumps([*writers, prov["package_version"]]),))
            chunk = int(_meta(con, "chunk") or chunk)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return chunk


def read_provenance(con: sqlite3.Connection, db: str) -> tuple[dict[str, Any], list[str], str]:
    """``(provenance, writers, spec text)`` of a results file; ``ValueError`` if the file
    holds no sweep yet or its problems disagree with the provenance."""
    text = _meta(con, "provenance")
    if text is None:
        raise ValueError(f"--db {db}: no sweep has been run into this file")
    prov = json.loads(text)
    for name, h in con.execute("SELECT problem, hash FROM problems"):
        want = prov["problems"].get(name)
        if want != h:
            compare(db, prov, {**prov, "problems": {**prov["problems"], name: h}})
    return prov, json.loads(_meta(con, "writers") or "[]"), _meta(con, "spec") or ""


def done(con: sqlite3.Connection) -> set[tuple[str, str, int, int]]:
    """Replicates already settled: estimated or failed."""
    return (set(con.execute("SELECT problem, estimator, budget, replicate FROM estimates"))
            | set(con.execute("SELECT problem, estimator, budget, replicate FROM failures")))


def put_problem(con: sqlite3.Connection, name: str, value: float, exact: list[float],
                content_hash: str) -> None:
    con.execute("INSERT OR IGNORE INTO problems VALUES (?, ?, ?, ?)",
                (name, value, json.dumps(exact), content_hash))


def put_diagnostic(con: sqlite3.Connection, problem: str, budget: int, visits: float) -> None:
    """The expected on-policy visits of the rarest pair in all replicates of a cell."""
    con.execute("INSERT OR IGNORE INTO diagnostics VALUES (?, ?, ?)", (problem, budget, visits))


def put_rows(con: sqlite3.Connection, rows: Iterable[Row],
             failures: Iterable[Failure] = (), *, chunk: int | None = None) -> int:
    """Insert replicates and failures in one transaction (all or nothing), marking claimed
    ``chunk`` done in the same transaction; returns how many were actually inserted (rows
    another run stored first are ignored and not counted)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        before = con.total_changes
        con.executemany("INSERT OR IGNORE INTO estimates VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT OR IGNORE INTO failures VALUES (?, ?, ?, ?, ?)", failures)
        added = con.total_changes - before
        if chunk is not None:
            con.execute("UPDATE claims SET done = 1 WHERE chunk = ?", (chunk,))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return added


# --- claims: concurrent sweeps into one file split the work --------------------------------

#: A claim whose owner has not refreshed its heartbeat for this long (seconds) is taken
#: over by another run; a claim of a dead process on this host is taken over at once.
STALE_SECONDS = float(os.environ.get("EXACT_BILEVEL_SWEEP_STALE_SECONDS", "120"))
HOST = socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def claim(con: sqlite3.Connection, owner: str, candidates: list[int],
          stale: float = STALE_SECONDS) -> int | None:
    """Claim the first of ``candidates`` (chunk numbers with replicates missing) that no
    live run holds and that is not done; ``None`` if there is none right now."""
    con.execute("BEGIN IMMEDIATE")
    try:
        held = {c: (o, h, p, hb, d) for c, o, h, p, hb, d in
                con.execute("SELECT chunk, owner, host, pid, heartbeat, done FROM claims")}
        now = time.time()
        for c in candidates:
            row = held.get(c)
            if row is not None:
                o, h, p, hb, d = row
                if d or o == owner:
                    continue
                if not ((h == HOST and not _alive(p)) or now - hb > stale):
                    continue
            con.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, 0)",
                        (c, owner, HOST, os.getpid(), now))
            con.execute("COMMIT")
            return c
        con.execute("COMMIT")
        return None
    except BaseException:
        con.execute("ROLLBACK")
        raise


def unfinished(con: sqlite3.Connection, candidates: list[int]) -> int:
    """How many of ``candidates`` are not done yet (held by a run, or free)."""
    done_ = {c for (c,) in con.execute("SELECT chunk FROM claims WHERE done = 1")}
    return sum(c not in done_ for c in candidates)


def heartbeat(con: sqlite3.Connection, owner: str) -> None:
    """Refresh the heartbeat of ``owner``'s open claims."""
    con.execute("UPDATE claims SET heartbeat = ? WHERE owner = ? AND done = 0",
                (time.time(), owner))


def release(con: sqlite3.Connection, owner: str) -> None:
    """Give up ``owner``'s open claims (a run that stops early: others take them at once)."""
    con.execute("DELETE FROM claims WHERE owner = ? AND done = 0", (owner,))
