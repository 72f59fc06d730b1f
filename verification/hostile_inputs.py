"""Hostile inputs against the command line: one row per reported defect.

Runs ``python -m exact_bilevel.cli`` in a subprocess on each hostile file, option
or environment and records the exit code, whether a traceback appeared, whether
stdout (if any) is strict, finite JSON, whether any file other than the row's
declared outputs (the values of ``--output``, ``--out``, ``--db``, symlinks resolved)
changed, and the time. Every row must end with a documented exit code, no
traceback, never exit 0 with non-finite or garbage output, no other file changed
(``/dev/null`` stays a character device), and no allocation over the memory budget
(the budget rows run with a small ``EXACT_BILEVEL_MAX_BYTES``). The output-path rows
(:func:`output_cases`) may send standard output to a file (``/dev/full``). Writes
the section "Hostile inputs" of
``verification/fuzz_loaders.md``. Run: ``python verification/hostile_inputs.py``
(~1 min).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pathlib
import stat
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from exact_bilevel.core._files import atomic_write
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import problem_to_dict

OUT = pathlib.Path(__file__).with_name("fuzz_loaders.md")
#: The repository: ``python -m`` from here runs its package, never another installed copy
#: (an older one would replace ``/dev/null`` with a file in the ``--output`` rows).
ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = "## Hostile inputs"


def _problem(**changes: object) -> dict:
    problem, x = random_problem(3, 2, 2, seed=0, gamma=0.9)
    d = problem_to_dict(problem, x)
    d.update(changes)
    return d


def _lqr(**changes: object) -> dict:
    from exact_bilevel.io import lqr_to_dict
    from exact_bilevel.lqr.tasks import lqr_game

    problem, x = lqr_game()
    d = lqr_to_dict(problem, x)
    d.update(changes)
    return d


def cases(tmp: pathlib.Path) -> list[tuple[str, list[str], dict, str | None]]:
    """(description, argv, extra environment, stdin)."""
    def write(name: str, data: object) -> str:
        path = tmp / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    good = write("good.json", _problem())
    big_r = _problem(gamma=0.999)
    big_r["follower_reward"] = {"base": [[1e306, 0.0], [0.0, 1.0], [1.0, 0.0]],
                                "features": [[[0.0, 0.0]] * 2] * 3}
    text = json.dumps(_problem())
    small = {"EXACT_BILEVEL_MAX_BYTES": "1000"}
    sweep = {"format": "exact-bilevel-sweep/1", "problems": [{"random": {"count": 1}}],
             "estimators": ["bc-hg"], "budgets": [100], "replicates": 2}
    S, A, d = 30, 4, 10_000   # a ~0.1 MB file whose dr[S, A, d] needs 9.6 MB
    wide = {"format": "exact-bilevel/1", "gamma": 0.9, "tau": 0.5,
            "transitions": [[[1.0 / S] * S] * A] * S,
            "follower_reward": {"base": [[0.0] * A] * S,
                                "features": {"entries": [[0, 0, 0, 1.0]]}},
            "leader_reward": {"base": [[1.0] * A] * S}, "x": [0.0] * d}
    return [
        ("rewards 1e306, gamma 0.999 (solve)", ["solve", write("r.json", big_r)], {}, None),
        ("tau 1e305, gamma 0.99999 (hypergradient)",
         ["hypergradient", write("t.json", _problem(tau=1e305, gamma=0.99999))], {}, None),
        ("leader reward 1e308 (value overflows)",
         ["hypergradient", write("l.json", _problem(leader_reward={
             "base": [[1e308, 1e308]] * 3}))], {}, None),
        ("gamma = 1e400 in the file", ["hypergradient", write(
            "g.json", text.replace('"gamma": 0.9', '"gamma": 1e400'))], {}, None),
        ("gamma = a 400-digit integer", ["hypergradient", write(
            "i.json", text.replace('"gamma": 0.9', '"gamma": ' + "9" * 400))], {}, None),
        ("duplicate key", ["hypergradient", write("d.json", text[:-1] + ', "tau": 2}')], {},
         None),
        ("/dev/zero as the problem file", ["solve", "/dev/zero"], {}, None),
        ("file over the memory budget (parse cost)", ["solve", good], small, None),
        ("S*A*d over the budget (0.1 MB file, dr needs 9.6 MB; budget 5 MB)",
         ["hypergradient", write("wide.json", wide)], {"EXACT_BILEVEL_MAX_BYTES": "5e6"},
         None),
        ("--transitions 1e12", ["estimate", good, "--estimator", "bc-hg", "--transitions",
                                str(10**12)], {}, None),
        ("--replicates 1e12", ["estimate", good, "--estimator", "bc-hg", "--transitions",
                               "100", "--replicates", str(10**12)], {}, None),
        ("--transitions 1e12 written as a float", ["estimate", good, "--estimator", "bc-hg",
                                                   "--transitions", "1e12"], {}, None),
        ("budget variable not a number", ["solve", good],
         {"EXACT_BILEVEL_MAX_BYTES": "lots"}, None),
        ("problem on standard input", ["hypergradient", "-"], {}, text),
        ("garbage on standard input", ["hypergradient", "-"], {}, "{not json"),
        ("direct-only on a problem file", ["estimate", good, "--estimator", "direct-only",
                                          "--transitions", "200", "--quiet"], {}, None),
        ("reproduce without --out", ["reproduce", "sobirl"], {}, None),
        ("unknown option", ["solve", good, "--frobnicate"], {}, None),
        ("sweep: /dev/zero as the spec", ["sweep", "/dev/zero", "--db", str(tmp / "a.db")],
         {}, None),
        ("sweep: budget 1e9", ["sweep", write("s1.json", {**sweep, "budgets": [10**9]}),
                               "--db", str(tmp / "b.db")], {}, None),
        ("sweep: 2e7 replicates in total", ["sweep", write(
            "s2.json", {**sweep, "replicates": 10**6, "budgets": [100] * 20}),
            "--db", str(tmp / "c.db")], {}, None),
        ("sweep: a problem file that does not exist", ["sweep", write(
            "s3.json", {**sweep, "problems": [{"path": "nope.json"}]}),
            "--db", str(tmp / "d.db")], {}, None),
        ("soft-LQR file: (A, B) not stabilisable", ["hypergradient", write(
            "lqr1.json", _lqr(follower={"A": [[2.0, 0.0], [0.0, 0.5]], "B": [[0.0], [1.0]],
                                        "Q": [[1.0, 0.0], [0.0, 1.0]], "R": [[1.0]],
                                        "gamma": 0.9, "tau": 0.1},
                              parameters={}, leader={}, x=[]))], {}, None),
        ("soft-LQR file: horizon 1e6 with n = 60 under a 100 MB budget (the means alone "
         "need 0.45 GiB; the covariances are checkpointed)", ["hypergradient",
         write("lqr2.json", _lqr(follower={"A": (0.5 * np.eye(60)).tolist(),
                                           "B": np.eye(60)[:, :1].tolist(),
                                           "Q": np.eye(60).tolist(), "R": [[1.0]],
                                           "gamma": 0.9, "tau": 0.1},
                                 leader={"horizon": 10**6}, parameters={}, x=[],
                                 initial={}))], {"EXACT_BILEVEL_MAX_BYTES": str(10**8)}, None),
        ("soft-LQR file: --transitions 1e12", ["estimate", write("lqr3.json", _lqr()),
         "--estimator", "bc-hg", "--transitions", str(10**12)], {}, None),
        ("soft-LQR file: Q not symmetric", ["solve", write("lqr4.json", _lqr(follower={
            "A": [[0.5, 0.0], [0.0, 0.5]], "B": [[1.0], [0.0]], "Q": [[1.0, 2.0], [0.0, 1.0]],
            "R": [[1.0]], "gamma": 0.9, "tau": 0.1}, parameters={}, leader={}, x=[],
            initial={}))], {}, None),
        ("report: a results file that does not exist",
         ["report", "--db", str(tmp / "none.db"), "--out", str(tmp / "o")], {}, None),
    ]


def output_cases(tmp: pathlib.Path) -> list[tuple[str, list[str], dict, str | None,
                                               str | None]]:
    """The output-path rule (issue 24): (description, argv, extra environment, stdin,
    a file to send standard output to or ``None``)."""
    own = tmp / "own.json"
    own.write_text(json.dumps(_problem()))
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "target.json").write_text("old")
    (tmp / "to-target.json").symlink_to(tmp / "elsewhere" / "target.json")
    (tmp / "to-input.json").symlink_to(own)
    (tmp / "to-nowhere.json").symlink_to(tmp / "missing" / "t.json")
    (tmp / "a-file").write_text("not a directory")
    hg = ["hypergradient", str(own), "--output"]
    return [
        ("--output is the input file", [*hg, str(own)], {}, None, None),
        ("--output a symlink to the input", [*hg, str(tmp / "to-input.json")], {}, None, None),
        ("--output a symlink to a file (written through)", [*hg, str(tmp / "to-target.json")],
         {}, None, None),
        ("--output a dangling symlink into a missing directory",
         [*hg, str(tmp / "to-nowhere.json")], {}, None, None),
        ("--output /dev/null (a character device)", [*hg, os.devnull], {}, None, None),
        ("--output a directory", [*hg, str(tmp / "elsewhere")], {}, None, None),
        ("--output in a missing directory", [*hg, str(tmp / "missing" / "o.json")], {}, None,
         None),
        ("--output under a regular file", [*hg, str(tmp / "a-file" / "o.json")], {}, None,
         None),
        ("--output in /proc (unwritable)", [*hg, "/proc/o.json"], {}, None, None),
        ("--output - (standard output)", [*hg, "-"], {}, None, None),
        ("standard output is /dev/full", ["hypergradient", str(own)], {}, None, "/dev/full"),
        ("report --out an existing file", ["report", "--db", str(tmp / "none.db"), "--out",
                                           str(tmp / "a-file")], {}, None, None),
        ("reproduce --out under /proc", ["reproduce", "sobirl", "--out", "/proc/o"], {}, None,
         None),
        ("reproduce --out an existing file", ["reproduce", "sobirl", "--out",
                                              str(tmp / "a-file")], {}, None, None),
    ]


def verdict_cases(tmp: pathlib.Path) -> list[tuple[str, list[str], dict, str | None,
                                                str | None, dict]]:
    """Verdicts and files that are not ours (issue 24): (description, argv, environment,
    stdin, stdout file, flags). Flags: ``never_pass`` (exit 0 is a false PASS),
    ``untouched`` (no file may change, not even the declared ``--db``)."""
    import sqlite3

    good = tmp / "good.json"
    d = len(_problem()["x"])

    def est(name: str, payload: dict) -> str:
        path = tmp / name
        path.write_text(json.dumps(payload))
        return str(path)

    huge = [("estimates +-1e308 (R = 3)", {"estimates": [[1e308] * d, [-1e308] * d,
                                                        [1e308] * d]}),
            ("estimates 1e308, identical rows", {"estimates": [[1e308] * d] * 5}),
            ("estimates +-1e308 (R = 20)", {"estimates": [[1e308] * d, [-1e308] * d] * 10}),
            ("gradient 1e308", {"gradient": [1e308] * d}),
            ("estimates of max float, opposite signs",
             {"estimates": [[1.7976931348623157e308] * d, [-1.7976931348623157e308] * d] * 30})]
    rows = []
    for i, (desc, payload) in enumerate(huge):
        path = est(f"huge{i}.json", payload)
        for mode in ([], ["--json"]):
            rows.append((f"check: {desc}{' --json' if mode else ''}",
                         ["check", str(good), "--estimate", path, *mode], {}, None, None,
                         {"never_pass": True}))
    foreign = tmp / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    (tmp / "empty.sqlite").write_bytes(b"")
    (tmp / "corrupt.sqlite").write_bytes(bytes(range(256)) * 16)
    (tmp / "results.json").write_text("{}")
    (tmp / "a-dir").mkdir()
    spec = est("spec.json", {"format": "exact-bilevel-sweep/1",
                             "problems": [{"random": {"count": 1}}], "estimators": ["bc-hg"],
                             "budgets": [100], "replicates": 2})
    for desc, db in (("another program's SQLite file", foreign), ("an empty file",
                     tmp / "empty.sqlite"), ("random bytes", tmp / "corrupt.sqlite"),
                     ("a JSON file", tmp / "results.json"), ("a directory", tmp / "a-dir"),
                     ("the spec itself", pathlib.Path(spec)),
                     ("in a missing directory", tmp / "missing" / "r.sqlite")):
        rows.append((f"sweep --db {desc}", ["sweep", spec, "--db", str(db), "--quiet"], {},
                     None, None, {"untouched": True}))
        if desc not in ("the spec itself", "in a missing directory"):
            rows.append((f"report --db {desc}", ["report", "--db", str(db), "--out",
                                                 str(tmp / "rep")], {}, None, None,
                         {"untouched": True}))
    for n in ("1", "3"):  # below bc-hg's minimum of 2 / just above: never billed past it
        rows.append((f"estimate --transitions {n}", ["estimate", str(good), "--estimator",
                                                     "bc-hg", "--transitions", n], {}, None,
                     None, {}))
    gib = 2**30
    for n, budget in ((1_000_000, gib), (10_000_000, 4 * gib)):
        rows.append((f"estimate --transitions {n:.0e} under a {budget / gib:g} GiB budget",
                     ["estimate", str(good), "--estimator", "bc-hg", "--transitions", str(n),
                      "--quiet"], {"EXACT_BILEVEL_MAX_BYTES": str(budget)}, None, None,
                     {"memory_budget": budget}))
    rows.append(("sweep --executor dask --scheduler at a closed port",
                 ["sweep", spec, "--db", str(tmp / "dask.sqlite"), "--executor", "dask",
                  "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2", "--quiet"],
                 {}, None, None, {"untouched": True}))
    return rows


def run(argv: list[str], env: dict, stdin: str | None,
        stdout: str | None = None) -> tuple[int, str, str, float, float]:
    """Run the command line in a subprocess: exit code, stdout, stderr, seconds and the
    child's peak resident memory in MiB (``os.wait4``'s ``ru_maxrss``)."""
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        out = (stack.enter_context(open(stdout, "w")) if stdout else
               stack.enter_context(tempfile.TemporaryFile("w+")))
        err = stack.enter_context(tempfile.TemporaryFile("w+"))
        inp = stack.enter_context(tempfile.TemporaryFile("w+"))
        inp.write(stdin or "")
        inp.seek(0)
        proc = subprocess.Popen([sys.executable, "-m", "exact_bilevel.cli", *argv],
                                stdin=inp if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, text=True,
                                env={**os.environ, **env}, cwd=ROOT)
        timer = threading.Timer(300, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text_err = err.read()
        text_out = ""
        if not stdout:
            out.seek(0)
            text_out = out.read()
    return (proc.returncode, text_out, text_err, time.perf_counter() - t0,
            usage.ru_maxrss / 1024)


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    """File type, inode and content of every entry under ``root`` (symlinks not followed,
    FIFOs not opened), and of ``/dev/null``."""
    snap: dict[str, tuple[int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            content = (pathlib.Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else
                       os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
            snap[p] = (stat.S_IFMT(st.st_mode), st.st_ino, content)
    st = os.stat(os.devnull)
    snap[os.devnull] = (stat.S_IFMT(st.st_mode), st.st_rdev, None)
    return snap


def _others_changed(before: dict, after: dict, argv: list[str], *,
                    declared_ok: bool = True) -> list[str]:
    """Paths that changed but are not a declared output of ``argv`` (the value of
    ``--output``, ``--db`` or ``--out``, symlinks resolved; anything under ``--out``);
    with ``declared_ok=False`` every change counts (a refused ``--db`` stays as it was)."""
    declared = [os.path.realpath(v) for k, v in itertools.pairwise(argv)
                if k in ("--output", "--db", "--out")] if declared_ok else []
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(p for p in changed if not any(
        os.path.realpath(p) == d or os.path.realpath(p).startswith(d + os.sep)
        or p.startswith(d + "-")  # an SQLite journal beside --db
        for d in declared) or p == os.devnull)


def _stdout_ok(code: int, out: str) -> str:
    if not out.strip():
        return "empty"
    try:
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError:
        return "not JSON" if code == 0 else "text"
    return "strict JSON"


def broken_pipe(good: str) -> tuple[int, bool]:
    cmd = (f"{sys.executable} -m exact_bilevel.cli estimate {good} --estimator bc-hg "
           "--transitions 200 --replicates 3000 --quiet | head -c 10 > /dev/null")
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    return proc.returncode, "Traceback" in proc.stderr


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        rows, failures = [], 0
        every = ([(*c, None, {}) for c in cases(tmp)] + [(*c, {}) for c in output_cases(tmp)]
                 + verdict_cases(tmp))
        for desc, argv, env, stdin, stdout_to, flags in every:
            before = _snapshot(tmp)
            code, out, err, secs, peak = run(argv, env, stdin, stdout_to)
            others = _others_changed(before, _snapshot(tmp), argv,
                                     declared_ok=not flags.get("untouched"))
            trace = "Traceback" in err
            stdout = _stdout_ok(code, out) if stdout_to is None else stdout_to
            false_pass = bool(flags.get("never_pass")) and code == 0
            # a run the budget check let through stays within the budget (+ the interpreter,
            # numpy and scipy: the 'peak' of a run refused before any work, ~110 MiB)
            over = (code == 0 and "memory_budget" in flags
                    and peak > flags["memory_budget"] / 2**20 + 150)
            bad = (trace or code not in (0, 1, 2) or (code == 0 and stdout == "not JSON")
                   or bool(others) or false_pass or over)
            failures += bad
            first = err.strip().splitlines()[-1] if err.strip() else ""
            if flags.get("never_pass") and out.strip():  # the verdict the command printed
                first = ("verdict: " + json.loads(out)["verdict"] if stdout == "strict JSON"
                         else "verdict: " + out.strip().splitlines()[-1])
            if false_pass:
                first = "FALSE PASS: " + first
            if over:
                first = f"OVER THE MEMORY BUDGET ({peak:.0f} MiB): " + first
            elif code == 0 and "memory_budget" in flags:
                first = (f"within the budget: peak {peak:.0f} MiB of "
                         f"{flags['memory_budget'] / 2**20:.0f} MiB + interpreter")
            rows.append(f"| {desc} | {code} | {'yes' if trace else 'no'} | {stdout} | "
                        f"{', '.join(others) or 'none'} | {secs:.1f} s | {peak:.0f} MiB | "
                        f"{first[:110].replace('|', '/')} |")
        code, trace = broken_pipe(str(tmp / "good.json"))
        failures += trace
        rows.append(f"| `estimate ... | head -c 10` (broken pipe) | - | "
                    f"{'yes' if trace else 'no'} | - | - | - | - | quiet (exit 141 in the "
                    "command) |")
    section = [MARK, "",
               "Generated by `python verification/hostile_inputs.py`: each defect reported "
               "against the command line, run in a subprocess. A row passes with a "
               "documented exit code (0, 1 numerical failure, 2 bad input or over the memory "
               "budget), no traceback, never exit 0 with non-JSON or non-finite output, and "
               "no file changed other than the row's declared outputs (`--output`, `--out`, "
               "`--db`, symlinks resolved; column 'others changed'). The `--output` rows "
               "follow the output-path rule of the command line's `--help`. A `check` of "
               "absurd estimates must never exit 0 (a false PASS); a refused `--db` must "
               "be left exactly as it was (no declared output there). 'peak' is the "
               "child's peak resident memory (`os.wait4`).",
               "",
               "| input | exit | traceback | stdout | others changed | time | peak "
               "| message (last line of stderr) |",
               "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
               f"Failures: {failures}.", ""]
    text = OUT.read_text()
    head = text.split(MARK)[0].rstrip() + "\n\n"
    atomic_write(OUT, head + "\n".join(section))
    print("\n".join(section))
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
