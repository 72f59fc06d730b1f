"""The output-path rule (``exact_bilevel.core._files``; issue 24, items 7, 11 and 12).

A property-based test draws the kind of path given to ``--output`` (a new name, a
regular file, a symlink, a dangling symlink, a character device, a FIFO, ``-``, a
directory, an input of the same command, a missing parent, a path under a regular
file), the command and how the symlinks are spelled, and asserts the documented exit
code and that no path other than the intended target changed: bytes, inode and file
type of every entry under the temporary directory, symlink targets included, before and
after. Then one regression test per reported defect (each failed before the rule).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exact_bilevel
from exact_bilevel.cli import main
from exact_bilevel.core._files import OutputPathError, atomic_write
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import save_problem

_PROBLEM, _X = random_problem(3, 2, 2, seed=0)


def _problem(directory: str) -> tuple[str, str]:
    """A problem file and an estimate file (its exact gradient: ``check`` passes)."""
    from exact_bilevel.core.hypergradient import hypergradient

    path = os.path.join(directory, "in.json")
    save_problem(path, _PROBLEM, _X)
    est = os.path.join(directory, "est.json")
    with open(est, "w") as fh:
        json.dump({"gradient": hypergradient(_PROBLEM, _X).gradient.tolist()}, fh)
    return path, est


def _snapshot(root: str) -> dict[str, tuple[int, int, bytes | str | None]]:
    """File type, inode and content (bytes of a regular file, text of a symlink) of every
    entry under ``root``, never following symlinks or opening FIFOs."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            content: bytes | str | None = None
            if stat.S_ISREG(s.st_mode):
                with open(p, "rb") as fh:
                    content = fh.read()
            elif stat.S_ISLNK(s.st_mode):
                content = os.readlink(p)
            snap[p] = (stat.S_IFMT(s.st_mode), s.st_ino, content)
    return snap


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


#: kind of --output path -> the documented exit code.
KINDS = {"new": 0, "regular": 0, "symlink": 0, "dangling": 0, "dangling-nodir": 2,
         "chardev": 0, "fifo": 0, "dash": 0, "directory": 2, "input": 2,
         "input-symlink": 2, "input-hardlink": 2, "missing-parent": 2, "under-file": 2}

COMMANDS = {"hypergradient": ["hypergradient", "{file}"],
            "solve": ["solve", "{file}", "--quiet"],
            "check": ["check", "{file}", "--estimate", "{est}", "--json"]}


def _make(root: str, kind: str, source: str, relative: bool) -> tuple[str, str | None]:
    """Create the ``--output`` path of ``kind`` under ``root``; return it and the path
    whose entry may change (``None``: nothing under ``root`` may change)."""
    elsewhere = os.path.join(root, "elsewhere")
    os.mkdir(elsewhere)
    with open(os.path.join(elsewhere, "decoy.json"), "w") as fh:
        fh.write("decoy")
    out = os.path.join(root, "out.json")

    def link(target: str) -> None:
        os.symlink(os.path.relpath(target, root) if relative else target, out)

    if kind == "new":
        return out, out
    if kind == "regular":
        with open(out, "w") as fh:
            fh.write("old")
        return out, out
    if kind in ("symlink", "dangling"):
        target = os.path.join(elsewhere, "target.json")
        if kind == "symlink":
            with open(target, "w") as fh:
                fh.write("old target")
        link(target)
        return out, target
    if kind == "dangling-nodir":
        link(os.path.join(elsewhere, "missing", "target.json"))
        return out, None
    if kind == "chardev":
        return os.devnull, None
    if kind == "fifo":
        os.mkfifo(out)
        return out, None
    if kind == "dash":
        return "-", None
    if kind == "directory":
        return elsewhere, None
    if kind == "input":
        return source, None
    if kind == "input-symlink":
        link(source)
        return out, None
    if kind == "input-hardlink":
        os.link(source, out)
        return out, None
    if kind == "missing-parent":
        return os.path.join(root, "missing", "out.json"), None
    if kind == "under-file":
        return os.path.join(source, "out.json"), None
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=5)
@given(command=st.sampled_from(sorted(COMMANDS)), relative=st.booleans(),
       use_estimate=st.booleans())
def test_output_path_rule(tmp_path_factory, kind, command, relative, use_estimate):
    root = str(tmp_path_factory.mktemp("out"))
    file, est = _problem(root)
    source = est if (command == "check" and use_estimate) else file
    path, changes = _make(root, kind, source, relative)
    argv = [a.format(file=file, est=est) for a in COMMANDS[command]] + ["--output", path]
    before = _snapshot(root)
    null_before = os.stat(os.devnull)
    received: list[bytes] = []
    reader = None
    if kind == "fifo":
        def read() -> None:
            with open(path, "rb") as fh:
                received.append(fh.read())
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
    code, out, err = _run(argv)
    if reader is not None:
        reader.join(10)
        assert not reader.is_alive()
    after = _snapshot(root)
    assert code == KINDS[kind], err
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert changed == ({changes} if changes and code == 0 else set()), changed
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert os.stat(os.devnull).st_rdev == null_before.st_rdev
    if code == 2:
        assert err.count("\n") == 1 and "--output" in err and path in err, err
        return
    if changes:
        with open(changes, "rb") as fh:
            result = json.loads(fh.read())
    elif kind == "fifo":
        result = json.loads(received[0])
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    elif kind == "dash":
        result = json.loads(out)
    else:
        result = {"value": 0, "q": 0, "pass": True}
    assert {"value", "q", "pass"} & set(result)
    if kind != "dash":
        assert out == ""


# --- one regression test per reported defect ------------------------------------------
def test_output_equal_to_the_input_is_refused_and_the_input_is_intact(tmp_path):
    file, est = _problem(str(tmp_path))
    before = _snapshot(str(tmp_path))
    code, _, err = _run(["hypergradient", file, "--output", file])
    assert code == 2 and "--output" in err and "input" in err
    code, _, err = _run(["check", file, "--estimate", est, "--json", "--output", est])
    assert code == 2 and "--output" in err
    assert _snapshot(str(tmp_path)) == before


def test_symlink_output_is_written_through_and_survives(tmp_path):
    file, _ = _problem(str(tmp_path))
    target = tmp_path / "sub" / "t.json"
    target.parent.mkdir()
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    assert _run(["hypergradient", file, "--output", str(tmp_path / "link.json")])[0] == 0
    assert (tmp_path / "link.json").is_symlink()
    assert os.readlink(tmp_path / "link.json") == str(target)
    assert "gradient" in json.loads(target.read_text())
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.json"]  # no temp left


def test_dangling_symlink_creates_its_target_or_exits_2(tmp_path):
    file, _ = _problem(str(tmp_path))
    (tmp_path / "a").symlink_to("made.json")
    assert _run(["hypergradient", file, "--output", str(tmp_path / "a")])[0] == 0
    assert (tmp_path / "a").is_symlink() and "value" in (tmp_path / "made.json").read_text()
    (tmp_path / "b").symlink_to("nowhere/t.json")
    code, _, err = _run(["hypergradient", file, "--output", str(tmp_path / "b")])
    assert code == 2 and "--output" in err and "does not exist" in err


def test_fifo_output_is_written_directly_not_replaced(tmp_path):
    file, _ = _problem(str(tmp_path))
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    assert _run(["hypergradient", file, "--output", fifo])[0] == 0
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and "gradient" in json.loads(got[0])


def test_dev_null_output_stays_a_character_device(tmp_path):
    file, _ = _problem(str(tmp_path))
    assert _run(["hypergradient", file, "--output", os.devnull])[0] == 0
    assert stat.S_ISCHR(os.lstat(os.devnull).st_mode)


def test_dash_output_is_stdout_not_a_file_named_dash(tmp_path, monkeypatch):
    file, _ = _problem(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(["hypergradient", file, "--output", "-"])
    assert code == 0 and "gradient" in json.loads(out)
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("where, rule", [
    ("missing/out.json", "does not exist"),         # missing directory
    ("dir", "is a directory"),                       # a directory
    ("in.json/out.json", "is a file, not a directory"),  # under a regular file (ENOTDIR)
    ("/proc/out.json", "cannot write"),              # an unwritable directory
    ("/proc/version", "cannot write"),               # an unwritable file
])
def test_unwritable_outputs_exit_2_naming_output(tmp_path, where, rule):
    file, _ = _problem(str(tmp_path))
    (tmp_path / "dir").mkdir()
    path = where if where.startswith("/") else str(tmp_path / where)
    before = _snapshot(str(tmp_path))
    code, _, err = _run(["hypergradient", file, "--output", path])
    assert code == 2, err
    assert err.startswith("exact-bilevel: error: --output ") and rule in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _snapshot(str(tmp_path)) == before


#: The directory holding the package under test: the subprocesses import it, never another
#: installed copy (an older one would replace the symlink /dev/stdout with a file).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(exact_bilevel.__file__)))


def _subprocess(argv: list[str], stdout: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
    where = subprocess.run([sys.executable, "-c", "import exact_bilevel; "
                            "print(exact_bilevel.__file__)"], capture_output=True, text=True,
                           cwd=_ROOT, env=env, timeout=60).stdout.strip()
    assert where == exact_bilevel.__file__, where  # the package under test, or nothing runs
    return subprocess.run([sys.executable, "-m", "exact_bilevel.cli", *argv], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120, env=env, cwd=_ROOT)


@pytest.mark.parametrize("argv", [["hypergradient", "{file}"], ["estimators"]])
def test_full_stdout_is_exit_2_naming_stdout(tmp_path, argv):
    file, _ = _problem(str(tmp_path))
    with open("/dev/full", "w") as full:
        proc = _subprocess([a.format(file=file) for a in argv], full)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("exact-bilevel: error: stdout") and \
        "No space left on device" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_dev_stdout_output_to_a_pipe_is_written_directly(tmp_path):
    file, _ = _problem(str(tmp_path))
    proc = _subprocess(["hypergradient", file, "--output", "/dev/stdout"], subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    assert "gradient" in json.loads(proc.stdout)


def test_report_out_an_existing_file_exits_2_naming_out(tmp_path):
    (tmp_path / "f").write_text("mine")
    code, _, err = _run(["report", "--db", str(tmp_path / "r.sqlite"), "--out",
                         str(tmp_path / "f")])
    assert code == 2 and "--out" in err and "not a directory" in err
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize("where, rule", [("/proc/exact-bilevel-out", "cannot create"),
                                         ("f", "exists and is not a directory")])
def test_reproduce_out_unusable_exits_2_naming_out(tmp_path, where, rule):
    (tmp_path / "f").write_text("mine")
    out = where if where.startswith("/") else str(tmp_path / where)
    code, _, err = _run(["reproduce", "sobirl", "--out", out, "--steps", "1", "--seeds", "1"])
    assert code == 2 and err.startswith("exact-bilevel: error: --out ") and rule in err, err
    assert "Errno" not in err
    assert (tmp_path / "f").read_text() == "mine"


def test_save_problem_into_a_directory_names_the_path_and_the_rule(tmp_path):
    rule = re.escape(f"path {tmp_path}: is a directory")
    with pytest.raises(OutputPathError, match=rule) as info:
        save_problem(tmp_path, _PROBLEM, _X)
    assert ".tmp" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, OSError)


def test_failed_write_through_a_symlink_leaves_the_target_and_no_temporary(tmp_path,
                                                                          monkeypatch):
    import exact_bilevel.core._files as files

    target = tmp_path / "sub" / "t.json"
    target.parent.mkdir()
    target.write_text("old")
    (tmp_path / "link").symlink_to(target)

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(OutputPathError, match=r"out .*link: cannot write: No space left"):
        atomic_write(tmp_path / "link", "new", option="out")
    assert target.read_text() == "old" and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.json"]
