"""Validation sweeps: every replicate exactly once, the same numbers whatever the worker
count or interruption (SIGKILL included), a report, and strict spec validation."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import jsonschema
import pytest

from exact_bilevel.cli import main
from exact_bilevel.io import schema
from exact_bilevel.sweeps.run import run_sweep
from exact_bilevel.sweeps.spec import load_spec, parse_spec

SPEC = {"format": "exact-bilevel-sweep/1",
        "problems": [{"random": {"states": 4, "actions": 3, "params": 2, "count": 2,
                                 "gamma": 0.8, "tau": 0.5, "seed": 3}}],
        "estimators": ["bc-hg", {"name": "hpgd", "critic": "exact"}],
        "budgets": [500], "replicates": 60, "seed": 7}


def _write(tmp_path, spec=SPEC, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return str(path)


def _ro(db):
    """Read-only (never creates the file: a 0-byte file would not be a results file)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _rows(db):
    con = _ro(db)
    try:
        return sorted(con.execute("SELECT problem, estimator, budget, replicate, gradient, "
                                  "transitions FROM estimates"))
    finally:
        con.close()


def test_spec_matches_its_schema_and_bad_specs_name_the_field(tmp_path):
    jsonschema.validate(SPEC, schema("sweep"))
    bad = [({"estimators": ["nope"]}, r"estimators\[0\].name = 'nope'"),
           ({"estimators": [{"name": "sobirl", "critic": "exact"}]},
            r"estimators\[0\].critic = 'exact'"),
           ({"budgets": []}, "budgets: must be a non-empty list"),
           ({"replicates": 1}, r"replicates = 1: must be an integer in \[2"),
           ({"extra": 1}, r"unknown field\(s\) \['extra'\]"),
           ({"problems": [{"random": {"states": 0}}]}, r"problems\[0\].random.states = 0"),
           ({"problems": [{"random": {"gamma": 1.5}}]},
            r"problems\[0\]\.random\.gamma = 1\.5: must satisfy 0 <= gamma < 1"),
           ({"problems": [{"random": {"tau": -1}}]},
            r"problems\[0\]\.random\.tau = -1: must be a finite number > 0"),
           ({"problems": [{"random": {"sates": 3}}]},
            r"problems\[0\]\.random\.sates: unknown key"),
           ({"problems": [{"random": {}, "name": ["x"]}]},
            r"problems\[0\]\.name = \['x'\]: must be a non-empty string"),
           ({"estimators": [{"name": ["bc-hg"]}]},
            r"estimators\[0\]\.name = \['bc-hg'\]: must be a string")]
    for k, (change, match) in enumerate(bad):
        with pytest.raises(ValueError, match=match):
            parse_spec({**SPEC, **change}, tmp_path)
        if k >= 2:  # the schema agrees (registry names and critics: the code's check only)
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({**SPEC, **change}, schema("sweep"))


def test_sweep_stores_every_replicate_once_and_is_independent_of_workers(tmp_path, capsys):
    spec = _write(tmp_path)
    assert main(["sweep", spec, "--db", str(tmp_path / "a.sqlite"), "--quiet"]) == 0
    assert run_sweep(load_spec(spec), str(tmp_path / "a.sqlite"), progress=False) == 0
    assert main(["sweep", spec, "--db", str(tmp_path / "b.sqlite"), "--workers", "2",
                 "--quiet"]) == 0
    a, b = _rows(tmp_path / "a.sqlite"), _rows(tmp_path / "b.sqlite")
    assert len(a) == 240 and len({r[:4] for r in a}) == 240
    assert a == b                                    # bit for bit, row by row
    other = _write(tmp_path, {**SPEC, "seed": 8}, "other.json")
    assert main(["sweep", other, "--db", str(tmp_path / "a.sqlite"), "--quiet"]) == 2
    assert "another sweep spec" in capsys.readouterr().err


def test_sweep_killed_with_sigkill_resumes_to_the_same_rows(tmp_path):
    # a cell must take longer than the polling interval (0.05 s): ~0.15 s of sampling
    # per cell of 60 replicates at 50,000 transitions (batched replicates, issue 27)
    spec = _write(tmp_path, {**SPEC, "budgets": [50000]})
    db = str(tmp_path / "k.sqlite")
    proc = subprocess.Popen([sys.executable, "-m", "exact_bilevel.cli", "sweep", spec, "--db",
                             db, "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            n = len(_rows(db))
        except sqlite3.Error:
            n = 0
        if n >= 20 or proc.poll() is not None:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(db)
    assert 0 < len(partial) < 240
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 0
    rows = _rows(db)
    assert len(rows) == 240 and len({r[:4] for r in rows}) == 240
    assert set(partial) <= set(rows)
    clean = str(tmp_path / "clean.sqlite")
    assert main(["sweep", spec, "--db", clean, "--quiet"]) == 0
    assert rows == _rows(clean)


def test_report_from_a_results_file(tmp_path):
    spec = _write(tmp_path, {**SPEC, "budgets": [250, 1000],
                             "estimators": ["bc-hg", {"name": "hpgd", "critic": "exact"},
                                            "mutant:sign-flip"]})
    db = str(tmp_path / "r.sqlite")
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 0
    out = tmp_path / "out"
    assert main(["report", "--db", db, "--out", str(out)]) == 0
    text = (out / "sweep_report.md").read_text()
    assert text.count("| random-") == 12 and "bc-hg[exact]" in text
    assert "| mutant:sign-flip[exact] | 4 | 4 | 1.000 |" in text      # power
    # the exact-covariance test beside it (issue 25): a p-value where moments cover the
    # cell (bc-hg; the mutant against bc-hg's covariance), '-' for hpgd
    assert "exact-cov p |" in text and "exact-cov rejected |" in text
    cells = [line for line in text.splitlines() if line.startswith("| random-")]
    assert all(line.endswith("| - |") for line in cells if "hpgd[exact]" in line)
    assert not any(line.endswith("| - |") for line in cells if "hpgd" not in line)
    assert "| mutant:sign-flip[exact] | 4 | 4 | 1.000 | 4/4 = 1.000 | 4/4 = 1.000 |" in text
    assert "| hpgd[exact] |" in text and text.count(" | - |\n") >= 5
    assert (out / "sweep_report.png").stat().st_size > 1000
    assert main(["report", "--db", db, "--out", str(out)]) == 2      # exists: refused


def test_dask_executor_gives_the_same_rows(tmp_path):
    """Dask distributed on a LocalCluster (2 worker processes): row for row the numbers of
    the local run."""
    spec = _write(tmp_path)
    local, dask = str(tmp_path / "l.sqlite"), str(tmp_path / "d.sqlite")
    assert run_sweep(load_spec(spec), local, progress=False) == 240
    assert run_sweep(load_spec(spec), dask, workers=2, executor="dask", progress=False) == 240
    assert _rows(local) == _rows(dask)


def test_baseline_mutants_are_nameable_and_bad_entries_name_the_field(tmp_path):
    spec = parse_spec({**SPEC, "estimators": [
        "bc-hg-baseline", {"name": "mutant:sign-flip", "baseline": True}]}, tmp_path)
    assert [e.label for e in spec.estimators] == ["bc-hg-baseline[exact]",
                                                  "mutant:sign-flip[exact,baseline]"]
    jsonschema.validate({**SPEC, "estimators": [{"name": "mutant:sign-flip",
                                                 "baseline": True}]}, schema("sweep"))
    bad = [([{"name": "mutant:hpgd-dq-from-t+1", "baseline": True}],
            r"estimators\[0\].baseline: mutant:hpgd-dq-from-t\+1 has no baseline variant"),
           ([{"name": "bc-hg", "baseline": True}], r"estimators\[0\].baseline: only for mutants"),
           ([{"name": "mutant:sign-flip", "baseline": "yes"}],
            r"estimators\[0\].baseline = 'yes': must be true or false"),
           ([{"name": "mutant:sign-flip", "critic": "td"}],
            r"estimators\[0\].critic: a mutant has its own critic")]
    for estimators, match in bad:
        with pytest.raises(ValueError, match=match):
            parse_spec({**SPEC, "estimators": estimators}, tmp_path)


def test_baseline_mutant_rows_are_the_mutated_baseline_estimator(tmp_path):
    """The sweep's baseline-mutant replicate equals mutant_replicates(..., baseline=True)
    with the same generator, and differs from the plain mutant."""
    from exact_bilevel.estimators.registry import leader_knowledge
    from exact_bilevel.estimators.sampling import Sampler, block_size
    from exact_bilevel.sweeps.run import build, replicate_seed
    from exact_bilevel.validation.mutants import MUTANTS

    spec_d = {**SPEC, "estimators": [{"name": "mutant:sign-flip", "baseline": True}],
              "replicates": 2,
              "problems": [{"random": {"states": 4, "actions": 3, "params": 2,
                                       "parameterize": "both", "seed": 3}}]}
    spec = parse_spec(spec_d, tmp_path)
    db = str(tmp_path / "m.sqlite")
    assert run_sweep(spec, db, progress=False) == 2
    (pname, label, budget, rep, grad, _), _ = _rows(db)
    problem, x = build(spec.problems[0])
    know = leader_knowledge(problem, x)
    fn = MUTANTS["sign-flip"].fn
    block = block_size(budget, problem.n_params)
    want = fn(know, Sampler(know.state.mdp,
                            replicate_seed(7, pname, label, budget, rep, block)),
              budget, "exact", True).gradient
    plain = fn(know, Sampler(know.state.mdp,
                             replicate_seed(7, pname, label, budget, rep, block)),
               budget, "exact").gradient
    assert json.loads(grad) == want.tolist()
    assert want.tolist() != plain.tolist()


def test_a_failing_estimator_is_recorded_and_the_sweep_goes_on(tmp_path):
    """model-based needs S*A = 12 generative draws: at budget 5 every replicate fails with
    that message; the other estimator's rows are complete; a rerun adds nothing; the
    report lists the failures."""
    spec = _write(tmp_path, {**SPEC, "estimators": ["bc-hg", "model-based"],
                             "budgets": [5, 200], "replicates": 3})
    db = str(tmp_path / "f.sqlite")
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 0
    con = _ro(db)
    try:
        failures = con.execute("SELECT estimator, budget, error FROM failures").fetchall()
    finally:
        con.close()
    assert len(failures) == 2 * 3                          # 2 problems x 3 replicates
    assert all(e == "model-based[exact]" and b == 5 and "at least S*A = 12" in m
               for e, b, m in failures)
    assert len(_rows(db)) == 2 * 2 * 2 * 3 - 6
    assert run_sweep(load_spec(spec), db, progress=False) == 0
    out = tmp_path / "rep"
    assert main(["report", "--db", db, "--out", str(out)]) == 0
    text = (out / "sweep_report.md").read_text()
    assert "## Failed replicates" in text and "at least S*A = 12" in text
    assert "| model-based[exact] | 5 | 0 | 3 |" in text


def test_report_marks_cells_in_the_rare_event_regime(tmp_path):
    """The sweep stores each cell's rare-event diagnostic; at tau = 0.02 the rarest pair is
    expected far less than 10 times in all replicates and the report marks the verdict."""
    spec = _write(tmp_path, {**SPEC, "estimators": ["bc-hg"], "budgets": [200, 400],
                             "replicates": 4,
                             "problems": [{"random": {"states": 4, "actions": 3, "params": 2,
                                                      "tau": 0.02, "seed": 3}},
                                          {"random": {"states": 3, "actions": 2, "params": 2,
                                                      "tau": 5.0, "seed": 4}}]})
    db = str(tmp_path / "rare.sqlite")
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 0
    con = _ro(db)
    try:
        diag = dict(((p, b), v) for p, b, v in con.execute("SELECT * FROM diagnostics"))
    finally:
        con.close()
    assert len(diag) == 4
    cold = [v for (p, _), v in diag.items() if "-3" in p]
    warm = [v for (p, _), v in diag.items() if "-4" in p]
    assert max(cold) < 10 < min(warm)
    out = tmp_path / "rep"
    assert main(["report", "--db", db, "--out", str(out)]) == 0
    text = (out / "sweep_report.md").read_text()
    assert text.count("(rare)") == 2 and "rate outside the rare-event regime" in text


# --- provenance: rows record what they were computed from and never mix (issue 24.2) ------

SMALL = {**SPEC, "estimators": ["bc-hg"], "budgets": [100], "replicates": 3}


def _problem_file(path, seed=3, gamma=0.8):
    from exact_bilevel.experiments.examples import random_problem
    from exact_bilevel.io import problem_to_dict

    problem, x = random_problem(n_states=4, n_actions=3, n_params=2, seed=seed, gamma=gamma)
    path.write_text(json.dumps(problem_to_dict(problem, x)))
    return problem_to_dict(problem, x)


def _snapshot(path):
    """Every file at or beside ``path`` (with SQLite's -wal/-shm) and its bytes."""
    return {p.name: p.read_bytes() for p in path.parent.iterdir()
            if p.name.startswith(path.name) and p.is_file()}


def test_an_edited_problem_file_is_refused_naming_the_problem_and_both_hashes(tmp_path, capsys):
    """On today's main the rerun exits 0 and mixes old and new rows."""
    from exact_bilevel.sweeps.provenance import problem_hash
    from exact_bilevel.sweeps.run import build

    _problem_file(tmp_path / "p.json")
    spec = _write(tmp_path, {**SMALL, "problems": [{"path": "p.json"}]})
    db = tmp_path / "r.sqlite"
    assert main(["sweep", spec, "--db", str(db), "--quiet"]) == 0
    old = problem_hash(*build(load_spec(spec).problems[0]))
    rows = _rows(db)
    capsys.readouterr()
    # the same content re-serialised (indentation, key order) is the same problem
    data = json.loads((tmp_path / "p.json").read_text())
    (tmp_path / "p.json").write_text(json.dumps(data, indent=3, sort_keys=True))
    assert main(["sweep", spec, "--db", str(db), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["replicates_added"] == 0
    _problem_file(tmp_path / "p.json", gamma=0.81)                    # an edit
    new = problem_hash(*build(load_spec(spec).problems[0]))
    assert main(["sweep", spec, "--db", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--db" in err and "problem 'p' changed" in err and old[:12] in err and new[:12] in err
    assert _rows(db) == rows                                          # nothing added
    out = tmp_path / "rep"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0  # the old rows: fine
    text = (out / "sweep_report.md").read_text()
    assert f"| `p` | {old[:12]} |" in text and "numerics version" in text


def test_a_copy_of_the_spec_elsewhere_is_bound_by_content_not_path(tmp_path, capsys):
    """The spec text is the same (relative path 'p.json'), the file it names is not: refused.
    A copy naming identical content elsewhere is the same sweep."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    _problem_file(tmp_path / "a" / "p.json", seed=3)
    _problem_file(tmp_path / "b" / "p.json", seed=4)
    _problem_file(tmp_path / "c" / "p.json", seed=3)
    d = {**SMALL, "problems": [{"path": "p.json"}]}
    db = str(tmp_path / "r.sqlite")
    assert main(["sweep", _write(tmp_path / "a", d), "--db", db, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", _write(tmp_path / "b", d), "--db", db, "--quiet"]) == 2
    assert "problem 'p' changed" in capsys.readouterr().err
    assert main(["sweep", _write(tmp_path / "c", d), "--db", db, "--quiet"]) == 0


def test_other_settings_or_numerics_version_are_refused(tmp_path, capsys, monkeypatch):
    from exact_bilevel.sweeps import provenance

    spec = _write(tmp_path, SMALL)
    db = str(tmp_path / "r.sqlite")
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 0
    capsys.readouterr()
    other = _write(tmp_path, {**SMALL, "estimators": [{"name": "bc-hg", "critic": "td"}]},
                   "o.json")
    assert main(["sweep", other, "--db", db, "--quiet"]) == 2
    assert "another sweep spec (estimators" in capsys.readouterr().err
    monkeypatch.setattr(provenance, "NUMERICS_VERSION", provenance.NUMERICS_VERSION + 1)
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 2
    assert "numerics_version" in capsys.readouterr().err


def test_a_results_file_from_before_provenance_is_refused_untouched(tmp_path, capsys):
    """The layout main wrote (no application id, no provenance): a clear error, never adopted."""
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE problems (problem TEXT PRIMARY KEY, value REAL NOT NULL, exact TEXT);
        CREATE TABLE estimates (problem TEXT, estimator TEXT, budget INTEGER,
            replicate INTEGER, gradient TEXT, transitions INTEGER, seconds REAL);
        CREATE TABLE diagnostics (problem TEXT, budget INTEGER, rarest_visits REAL);
        CREATE TABLE failures (problem TEXT, estimator TEXT, budget INTEGER,
            replicate INTEGER, error TEXT);
        INSERT INTO meta VALUES ('spec', '{}');""")
    con.close()
    before = _snapshot(db)
    assert main(["sweep", _write(tmp_path, SMALL), "--db", str(db), "--quiet"]) == 2
    assert "predates provenance" in capsys.readouterr().err
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "o")]) == 2
    assert "predates provenance" in capsys.readouterr().err
    assert _snapshot(db) == before


# --- files that are not ours are never written (issue 24.8, 11, 12) -----------------------

def _foreign(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE contacts (name TEXT)")
    con.execute("INSERT INTO contacts VALUES ('ada')")
    con.commit()
    con.close()


@pytest.mark.parametrize("kind", ["foreign", "empty", "corrupt", "json", "directory",
                                  "missing-dir", "spec-itself"])
def test_sweep_refuses_a_db_that_is_not_ours_and_leaves_it_untouched(tmp_path, capsys, kind):
    """On today's main: exit 3 (and a foreign file gains 4 tables and WAL mode)."""
    spec = _write(tmp_path, SMALL)
    db = tmp_path / "x.sqlite"
    if kind == "foreign":
        _foreign(db)
    elif kind == "empty":
        db.write_bytes(b"")
    elif kind == "corrupt":
        db.write_bytes(os.urandom(4096))
    elif kind == "json":
        db.write_text(json.dumps(SMALL))
    elif kind == "directory":
        db.mkdir()
    elif kind == "missing-dir":
        db = tmp_path / "nowhere" / "x.sqlite"
    elif kind == "spec-itself":
        db = tmp_path / "spec.json"
    before = _snapshot(db) if db.parent.exists() else None
    assert main(["sweep", spec, "--db", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--db {db}" in err and "internal error" not in err
    if before is not None:
        assert _snapshot(db) == before
    else:
        assert not db.parent.exists()


@pytest.mark.parametrize("kind", ["foreign", "empty", "corrupt", "json", "missing"])
def test_report_refuses_a_db_that_is_not_ours_and_never_writes(tmp_path, capsys, kind):
    """On today's main: exit 3 for corrupt/foreign/JSON, and a 0-byte file becomes a
    results file."""
    db = tmp_path / "x.sqlite"
    if kind == "foreign":
        _foreign(db)
    elif kind == "empty":
        db.write_bytes(b"")
    elif kind == "corrupt":
        db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    elif kind == "json":
        db.write_text(json.dumps(SMALL))
    before = _snapshot(db)
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"--db {db}" in err and "internal error" not in err
    assert _snapshot(db) == before and not (tmp_path / "o").exists()


def test_report_opens_read_only_and_reports_an_empty_results_file(tmp_path, capsys):
    """A results file with no rows yet (bound, nothing computed) gives a valid report
    saying so (today: a matplotlib error); a read-only file reports and stays unchanged."""
    from exact_bilevel.sweeps import store
    from exact_bilevel.sweeps.provenance import provenance

    spec = load_spec(_write(tmp_path, SMALL))
    db = str(tmp_path / "e.sqlite")
    con = store.connect(db)
    store.bind(con, db, provenance(spec, {p.name: "0" * 64 for p in spec.problems}),
               spec.canonical, 10)
    store.close(con)
    os.chmod(db, 0o444)
    before = _snapshot(tmp_path / "e.sqlite")
    assert main(["report", "--db", db, "--out", str(tmp_path / "o")]) == 0
    assert "No replicates are stored yet" in (tmp_path / "o" / "sweep_report.md").read_text()
    assert _snapshot(tmp_path / "e.sqlite") == before


# --- concurrent sweeps split the work and count truly (issue 24.9) ------------------------

def test_two_concurrent_sweeps_split_the_work_and_count_only_their_rows(tmp_path):
    """On today's main both runs compute all 240 replicates and both say 240."""
    # each cell long enough (~0.1 s) that the second run starts before the first is done
    spec = _write(tmp_path, {**SPEC, "budgets": [30000]})
    db = str(tmp_path / "c.sqlite")
    cmd = [sys.executable, "-m", "exact_bilevel.cli", "sweep", spec, "--db", db, "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    added = [json.loads(o)["replicates_added"] for o, _ in outs]
    rows = _rows(db)
    assert len(rows) == 240 and len({r[:4] for r in rows}) == 240
    assert sum(added) == 240 and min(added) > 0, added
    clean = str(tmp_path / "clean.sqlite")
    assert run_sweep(load_spec(spec), clean, progress=False) == 240
    assert _rows(clean) == rows                       # the same numbers, whoever computed them


def test_claims_of_a_dead_or_silent_run_are_taken_over_and_live_ones_are_not(tmp_path):
    from exact_bilevel.sweeps import store
    from exact_bilevel.sweeps.provenance import provenance

    spec = load_spec(_write(tmp_path, SMALL))
    db = str(tmp_path / "c.sqlite")
    con = store.connect(db)
    store.bind(con, db, provenance(spec, {p.name: "0" * 64 for p in spec.problems}),
               spec.canonical, 10)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    con.executemany("INSERT INTO claims VALUES (?, ?, ?, ?, ?, 0)", [
        (0, "dead", store.HOST, dead.pid, now),                 # its process has exited
        (1, "live", store.HOST, os.getpid(), now),              # alive, fresh heartbeat
        (2, "silent", "elsewhere", 1, now - 10 * store.STALE_SECONDS),  # no heartbeat
        (3, "live", store.HOST, os.getpid(), now)])
    con.execute("UPDATE claims SET done = 1 WHERE chunk = 3")
    got = [store.claim(con, "me", [0, 1, 2, 3]) for _ in range(3)]
    assert got == [0, 2, None]
    assert store.unfinished(con, [0, 1, 2, 3]) == 3
    store.release(con, "me")                                    # stopping early: given back
    assert store.claim(con, "other", [0, 1, 2, 3]) == 0
    store.close(con)


# --- Dask: no worker, unreachable scheduler (issue 24.10) ---------------------------------

def test_dask_run_with_no_worker_left_stops_in_bounded_time_keeping_rows(tmp_path):
    """On today's main the sweep waits forever once the last worker is gone."""
    import threading

    from distributed import LocalCluster

    spec = load_spec(_write(tmp_path, {**SPEC, "budgets": [20000]}))
    db = str(tmp_path / "d.sqlite")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        def kill_workers_after_some_rows():
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if len(_rows(db)) >= 10:
                        break
                except sqlite3.Error:
                    pass
                time.sleep(0.1)
            cluster.scale(0)

        killer = threading.Thread(target=kill_workers_after_some_rows)
        killer.start()
        t0 = time.time()
        with pytest.raises(ValueError, match=r"no Dask worker for 2 s \(--no-worker-timeout\)"):
            run_sweep(spec, db, executor="dask", scheduler=cluster.scheduler_address,
                      no_worker_timeout=2.0, progress=False)
        killer.join()
        assert time.time() - t0 < 60
    assert 10 <= len(_rows(db)) < 240                  # the rows computed are kept
    con = _ro(db)
    assert con.execute("SELECT COUNT(*) FROM claims WHERE done = 0").fetchone()[0] == 0
    con.close()


def test_an_unreachable_scheduler_is_exit_2_naming_scheduler(tmp_path, capsys):
    """On today's main: exit 3 'internal error' after 30 s."""
    import socket

    with socket.socket() as s:           # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    assert main(["sweep", _write(tmp_path, SMALL), "--db", str(tmp_path / "u.sqlite"),
                 "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                 "--connect-timeout", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--scheduler tcp://127.0.0.1:{port}" in err and "--connect-timeout" in err
    assert time.time() - t0 < 20
    assert not (tmp_path / "u.sqlite").exists()          # no results file left behind


# --- random streams (issue 24.3) ----------------------------------------------------------

def _cells_with_repeated_replicates(db):
    """Cells (problem, estimator, budget) in which two replicates gave the same gradient."""
    con = _ro(db)
    try:
        return con.execute("SELECT problem, estimator, budget FROM estimates GROUP BY "
                           "problem, estimator, budget HAVING COUNT(DISTINCT gradient) < "
                           "COUNT(*)").fetchall()
    finally:
        con.close()


def test_replicates_of_a_cell_differ_and_a_seed_rule_dropping_the_index_is_caught(
        tmp_path, monkeypatch):
    from exact_bilevel.sweeps import run

    d = {**SPEC, "replicates": 5, "budgets": [100, 300]}
    good = str(tmp_path / "g.sqlite")
    assert run_sweep(parse_spec(d, tmp_path), good, progress=False) == 40
    assert _cells_with_repeated_replicates(good) == []
    original = run.replicate_uniforms

    def first_block_only(seed, p, e, b, first, count, block):  # the mutant: index dropped
        import numpy as np

        return np.repeat(original(seed, p, e, b, 0, 1, block), count, axis=0)

    monkeypatch.setattr(run, "replicate_uniforms", first_block_only)
    bad = str(tmp_path / "b.sqlite")
    assert run_sweep(parse_spec(d, tmp_path), bad, progress=False) == 40
    assert len(_cells_with_repeated_replicates(bad)) == 8      # every cell: caught


def test_two_sweep_seeds_share_no_stream():
    """Every cell's generator is SeedSequence(seed, spawn key = (4, 3, its three
    coordinates), each below 2**32) and its replicates read consecutive blocks: the
    (entropy, key) sets of two seeds are disjoint, distinct cells give distinct keys,
    and the replicates' streams themselves differ."""
    from exact_bilevel.sweeps.run import replicate_seed

    def entropies(seed):
        out, draws = set(), set()
        for p in ("random-S4-A3-d2-reward-leader_return-3", "fourrooms"):
            for e in ("bc-hg[exact]", "hpgd[monte-carlo]"):
                for b in (1, 1000, 10**9):
                    for i in (0, 1, 999_999):
                        rng = replicate_seed(seed, p, e, b, i, 16)
                        seq = rng.bit_generator.seed_seq
                        assert seq.entropy == seed and len(seq.spawn_key) == 5
                        out.add((seq.entropy, seq.spawn_key))
                        draws.add(tuple(rng.integers(0, 2**63, 2).tolist()))
        assert len(draws) == 3 * len(out)
        return out

    a, b, c = entropies(0), entropies(1), entropies(2**31)
    assert len(a) == len(b) == 2 * 2 * 3
    assert not a & b and not a & c and not b & c


def test_names_with_colliding_crc32_are_refused(tmp_path, capsys):
    """'plumless' and 'buckeroo' share a crc32: their replicates would share streams."""
    _problem_file(tmp_path / "a.json", seed=1)
    _problem_file(tmp_path / "b.json", seed=2)
    d = {**SMALL, "problems": [{"name": "plumless", "path": "a.json"},
                               {"name": "buckeroo", "path": "b.json"}]}
    assert main(["sweep", _write(tmp_path, d), "--db", str(tmp_path / "x.sqlite"),
                 "--quiet"]) == 2
    assert "'plumless' and 'buckeroo' have the same crc32" in capsys.readouterr().err
    assert not (tmp_path / "x.sqlite").exists()


def test_report_exact_covariance_needs_the_same_problem(tmp_path):
    """A file problem is rebuilt beside the results file and used only if its content hash
    is the stored one: after the file changes, its cells show '-' (never the covariance
    of another problem)."""
    from exact_bilevel.experiments.examples import random_problem
    from exact_bilevel.io import save_problem

    problem, x = random_problem(3, 2, 2, seed=4, gamma=0.7)
    save_problem(tmp_path / "prob.json", problem, x)
    spec = _write(tmp_path, {**SPEC, "problems": [{"path": "prob.json"}],
                             "estimators": ["bc-hg"], "budgets": [500], "replicates": 5})
    db = str(tmp_path / "f.sqlite")
    assert main(["sweep", spec, "--db", db, "--quiet"]) == 0
    assert main(["report", "--db", db, "--out", str(tmp_path / "a")]) == 0
    line = next(x for x in (tmp_path / "a" / "sweep_report.md").read_text().splitlines()
                if x.startswith("| prob | bc-hg[exact] | 500 |"))
    assert not line.endswith("| - |")
    save_problem(tmp_path / "prob.json", problem, x + 1.0)  # another problem, same name
    assert main(["report", "--db", db, "--out", str(tmp_path / "b")]) == 0
    line = next(x for x in (tmp_path / "b" / "sweep_report.md").read_text().splitlines()
                if x.startswith("| prob | bc-hg[exact] | 500 |"))
    assert line.endswith("| - |")
