"""Nothing lost, nothing silent: one regression test per defect found by hostile use.

Each test reproduces a reported defect (a hostile file, option or environment) and
checks the fixed behaviour: an atomic write, one clear line with a documented
exit code, no traceback, never exit 0 with non-finite or wrong numbers, no
allocation over the memory budget.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from exact_bilevel import NumericalError, random_mdp, solve_soft
from exact_bilevel.cli import ESTIMATOR_ALIASES, ESTIMATOR_NAMES, GAME_ESTIMATOR_NAMES, main
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import problem_to_dict, save_problem


def _write(tmp_path, data, name="p.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def _problem_dict(**changes):
    problem, x = random_problem(3, 2, 2, seed=0, gamma=0.9)
    d = problem_to_dict(problem, x)
    d.update(changes)
    return d


def _cli(*args, stdin=None):
    """Run the installed command in a subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "exact_bilevel.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


# --- files are written atomically -----------------------------------------------------
def test_save_problem_validates_before_touching_the_file(tmp_path):
    problem, x = random_problem(3, 2, 2, seed=0)
    path = tmp_path / "good.json"
    save_problem(path, problem, x)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="x"):
        save_problem(path, problem, np.zeros(5))           # wrong length
    assert path.read_bytes() == before                     # the good file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json"]  # no temp left


def test_save_problem_crash_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    import exact_bilevel.core._files as files

    problem, x = random_problem(3, 2, 2, seed=0)
    path = tmp_path / "good.json"
    save_problem(path, problem, x)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_problem(path, problem, x)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json"]


def test_output_option_writes_atomically(tmp_path):
    path = _write(tmp_path, _problem_dict())
    out = tmp_path / "hg.json"
    assert main(["hypergradient", path, "--output", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"value", "gradient", "residual"}


# --- overflow is a numerical failure, never exit 0 -----------------------------------
@pytest.mark.parametrize("changes", [
    dict(follower_reward={"base": [[1e306, 0.0], [0.0, 1.0], [1.0, 0.0]]}, gamma=0.999),
    dict(tau=1e305, gamma=0.99999),
])
def test_overflow_exits_1_naming_the_quantity(tmp_path, changes, capsys):
    d = _problem_dict(**changes)
    if "follower_reward" in changes:
        d["follower_reward"]["features"] = [[[0.0, 0.0]] * 2] * 3
    path = _write(tmp_path, d)
    assert main(["solve", path, "--quiet"]) == 1
    assert main(["hypergradient", path]) == 1
    err = capsys.readouterr().err
    assert "value scale" in err and "Traceback" not in err


def test_solver_raises_instead_of_returning_overflowed_values():
    mdp = random_mdp(3, 2, gamma=0.999, seed=0)
    big = type(mdp)(mdp.transitions, mdp.reward * 1e306, 0.999)
    with pytest.raises(NumericalError, match="value scale"):
        solve_soft(big, 0.1)


def test_non_finite_output_is_never_printed(tmp_path, capsys):
    """A leader value that overflows: exit 1 and no JSON with NaN."""
    d = _problem_dict(leader_reward={"base": [[1e308, 1e308]] * 3}, gamma=0.9)
    path = _write(tmp_path, d)
    code = main(["hypergradient", path])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "not finite" in err


def test_json_numbers_that_overflow_are_rejected(tmp_path, capsys):
    text = json.dumps(_problem_dict()).replace('"gamma": 0.9', '"gamma": 1e400')
    assert main(["hypergradient", _write(tmp_path, text)]) == 2
    text = json.dumps(_problem_dict()).replace('"gamma": 0.9', '"gamma": ' + "9" * 400)
    assert main(["hypergradient", _write(tmp_path, text, "q.json")]) == 2
    err = capsys.readouterr().err
    assert "overflows float64" in err and "Traceback" not in err


# --- the memory budget is checked before allocating -----------------------------------
def test_follower_jacobian_over_the_budget_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", "1000")
    assert main(["hypergradient", _write(tmp_path, _problem_dict())]) == 2
    err = capsys.readouterr().err
    assert "memory budget" in err and "EXACT_BILEVEL_MAX_BYTES" in err


def test_game_augmented_jacobian_over_the_budget_is_refused(tmp_path, monkeypatch, capsys):
    from exact_bilevel import games as mg
    from exact_bilevel.io import game_to_dict

    rng = np.random.default_rng(0)
    S, AL, AF = 10, 4, 2        # file ~1e3 numbers (parse ~0.2 MB); Jacobian 1 MB
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         np.full(S, 1 / S), 0.9, 0.5)
    path = _write(tmp_path, game_to_dict(game, np.zeros(game.n_params)))
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", "500000")
    assert main(["hypergradient", path]) == 2
    assert "augmented transition Jacobian" in capsys.readouterr().err


def test_estimate_buffers_over_the_budget_are_refused(tmp_path, capsys):
    path = _write(tmp_path, _problem_dict())
    assert main(["estimate", path, "--estimator", "bc-hg", "--transitions",
                 str(10**12)]) == 2
    assert main(["estimate", path, "--estimator", "bc-hg", "--transitions", "100",
                 "--replicates", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert err.count("memory budget") == 2


def test_reads_are_bounded_whatever_the_file_claims(tmp_path, monkeypatch, capsys):
    import exact_bilevel.formats.files as io

    monkeypatch.setattr(io, "MAX_FILE_BYTES", 1000)
    assert main(["solve", "/dev/zero"]) == 2            # getsize is 0; read stops at 1001
    assert "more than MAX_FILE_BYTES" in capsys.readouterr().err


def test_parse_cost_is_budgeted(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", "5000")
    assert main(["solve", _write(tmp_path, _problem_dict())]) == 2
    assert "parsing about" in capsys.readouterr().err


# --- every failure is one line with a documented code ----------------------------------
def test_duplicate_keys_are_an_error(tmp_path, capsys):
    text = json.dumps(_problem_dict())[:-1] + ', "gamma": 0.5}'
    assert main(["hypergradient", _write(tmp_path, text)]) == 2
    assert "duplicate key" in capsys.readouterr().err


def test_broken_pipe_exits_quietly(tmp_path):
    path = _write(tmp_path, _problem_dict())
    proc = subprocess.run(f"{sys.executable} -m exact_bilevel.cli estimate {path} "
                          "--estimator bc-hg --transitions 200 --replicates 2000 --quiet "
                          "| head -c 10", shell=True, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_stdin_version_and_help(tmp_path):
    code, out, _ = _cli("hypergradient", "-", stdin=json.dumps(_problem_dict()))
    assert code == 0 and "gradient" in json.loads(out)
    code, out, _ = _cli("--version")
    assert code == 0 and out.startswith("exact-bilevel ")
    code, out, _ = _cli("estimate", "--help")
    assert code == 0 and "default: 1)" in out and "exit codes" in out


def test_help_imports_no_numerical_stack():
    """``--help`` starts fast: the command line imports numpy/scipy only when a command
    needs them (checked as imports, not as a timing)."""
    code = ("import sys, exact_bilevel.cli as c\n"
            "try:\n    c.build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'scipy') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy), file=sys.stderr)")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stderr
    assert "HEAVY=\n" in err


def test_estimators_command_and_static_names_match_the_registries(capsys):
    from exact_bilevel import games as mg
    from exact_bilevel.estimators import ESTIMATORS

    assert set(ESTIMATOR_NAMES) == set(ESTIMATORS)
    assert set(GAME_ESTIMATOR_NAMES) == set(mg.GAME_ESTIMATORS)
    assert main(["estimators", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["estimators"]
    assert {r["name"] for r in rows} == set(ESTIMATORS) | set(ESTIMATOR_ALIASES)
    by_name = {r["name"]: r for r in rows}
    assert by_name["bc-hg"]["bias"] == "unbiased"
    # every name `estimate` takes on a problem file is listed (direct-only was missing)
    assert by_name["direct-only"]["alias_of"] == "naive"
    assert by_name["direct-only"]["bias"] == by_name["naive"]["bias"]


def test_direct_only_works_on_problem_files_and_zeroth_order_claims_no_critic(tmp_path,
                                                                               capsys):
    path = _write(tmp_path, _problem_dict())
    assert main(["estimate", path, "--estimator", "direct-only", "--transitions", "200",
                 "--quiet"]) == 0
    assert main(["estimate", path, "--estimator", "zeroth-order", "--transitions", "400",
                 "--quiet"]) == 0
    outs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert outs[0]["estimator"] == "direct-only"
    assert "critic" not in outs[1]


def test_reproduce_refuses_to_overwrite_and_needs_an_explicit_directory(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "sobirl"])                    # --out is required
    (tmp_path / "reproduce_sobirl.md").write_text("keep")
    assert main(["reproduce", "sobirl", "--out", str(tmp_path), "--steps", "2",
                 "--seeds", "1"]) == 2
    assert (tmp_path / "reproduce_sobirl.md").read_text() == "keep"
    assert "--force" in capsys.readouterr().err


def test_memory_budget_variable_is_validated(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", "lots")
    assert main(["hypergradient", _write(tmp_path, _problem_dict())]) == 2
    assert "EXACT_BILEVEL_MAX_BYTES" in capsys.readouterr().err
    del os.environ["EXACT_BILEVEL_MAX_BYTES"]


def test_atomic_writes_keep_the_usual_permissions(tmp_path):
    """mkstemp creates 0600 files; an atomically written file gets 0666 less the umask
    (or keeps the mode of the file it replaces)."""
    from exact_bilevel.core._files import atomic_write

    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        assert (os.stat(tmp_path / "a.txt").st_mode & 0o777) == 0o644
        os.chmod(tmp_path / "a.txt", 0o640)
        atomic_write(tmp_path / "a.txt", "y")
        assert (os.stat(tmp_path / "a.txt").st_mode & 0o777) == 0o640
    finally:
        os.umask(umask)
