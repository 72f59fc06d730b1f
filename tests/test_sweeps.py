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
           ({"problems": [{"random": {"states": 0}}]}, r"problems\[0\].random.states = 0")]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            parse_spec({**SPEC, **change}, tmp_path)


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
    spec = _write(tmp_path, {**SPEC, "budgets": [20000]})
    db = str(tmp_path / "k.sqlite")
    proc = subprocess.Popen([sys.executable, "-m", "exact_bilevel.cli", "sweep", spec, "--db",
                             db, "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
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
    from exact_bilevel.estimators.sampling import Sampler
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
    want = fn(know, Sampler(know.state.mdp, replicate_seed(7, pname, label, budget, rep)),
              budget, "exact", True).gradient
    plain = fn(know, Sampler(know.state.mdp, replicate_seed(7, pname, label, budget, rep)),
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
