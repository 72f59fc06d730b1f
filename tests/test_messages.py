"""Clear messages and prose that follows the numbers (issue 24, items 12-13): complex x,
numpy warnings on stderr, help texts, one-seed reports and generated readings."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from exact_bilevel.cli import build_parser, main
from exact_bilevel.core.hypergradient import hypergradient
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.experiments.reproduce import discrete_toy
from exact_bilevel.experiments.reproduce._common import RunSize, mean_se, pm
from exact_bilevel.io import problem_to_dict


def test_complex_x_is_refused_unless_it_is_a_complex_step_point() -> None:
    problem, x = random_problem(4, 2, 2, seed=0)
    for call in (lambda z: hypergradient(problem, z), problem.value):
        with pytest.raises(ValueError, match=r"^x\[0\] = .*: must be real"):
            call(x + 1j)
    v = problem.value(x + 1e-30j)  # the complex-step route still works
    assert abs(v.real - problem.value(x)) < 1e-12 and 0 < abs(v.imag) < 1e-28


def test_lqr_complex_x_is_refused_with_the_field() -> None:
    from exact_bilevel.lqr.tasks import lqr_game

    problem, x = lqr_game()
    with pytest.raises(ValueError, match=r"^x\[0\] = .*: must be real"):
        problem.check_x(x + 1j)


def test_overflow_reports_one_line_without_numpy_warnings(tmp_path) -> None:
    problem, x = random_problem(3, 2, 2, seed=0, gamma=0.9)
    d = problem_to_dict(problem, x)
    d["leader_reward"] = {"base": [[1e308, -1e308]] * 3}
    path = tmp_path / "overflow.json"
    path.write_text(json.dumps(d))
    for args in (["hypergradient", str(path)],
                 ["estimate", str(path), "--estimator", "bc-hg", "--transitions", "100"]):
        proc = subprocess.run([sys.executable, "-m", "exact_bilevel.cli", *args],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "RuntimeWarning" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "not finite" in proc.stderr


def _option_helps() -> list[tuple[str, str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    rows = []
    for name, p in sub.choices.items():
        text = p.format_help()
        for m in re.finditer(r"^  (-[-\w]+|\w+)[^\n]*(?:\n {20,}[^\n]*)*", text, re.M):
            rows.append((name, m.group(1), m.group(0)))
    return rows


def test_help_states_each_default_once() -> None:
    rows = _option_helps()
    assert len(rows) > 30
    for command, option, text in rows:
        assert text.count("default") <= 1, (command, option, text)


def test_one_seed_prints_no_standard_error() -> None:
    m, se = mean_se([1.25])
    assert se is None and pm(m, se, ".2f") == "1.25 (one seed, no s.e.)"
    assert pm(*mean_se([1.0, 2.0]), ".2f") == "1.50 +- 0.50"


def test_discrete_toy_reading_follows_the_numbers() -> None:
    """The reading is computed from the run: swap which estimator reaches the optimum
    and the prose swaps with it."""
    size = RunSize(steps=2, seeds=2, budgets=(450,), learning_rates=(0.05,), label="t")

    def curves(finals_r1: dict, finals_r2: dict) -> dict:
        out = {}
        for R, finals, start in ((1.0, finals_r1, 0.48), (2.0, finals_r2, 59.75)):
            for m, f in finals.items():
                for s in range(2):
                    out[R, m, s] = np.array([start, (start + f) / 2, f + 0.01 * s])
        return out

    good = {"exact": 27.3, "bc-hg-baseline": 27.2, "bc-hg": 10.0, "direct-only": 0.2}
    bad = {"exact": 27.3, "bc-hg-baseline": 12.0, "bc-hg": 27.25, "direct-only": 0.2}
    flat = {"exact": 59.75, "bc-hg-baseline": 59.7, "bc-hg": 59.75, "direct-only": 59.74}
    r = discrete_toy._reading(curves(good, flat), size, 0.05)
    assert "bc-hg-baseline 27.2" in r.split("do not")[0] and "drift" not in r
    r = discrete_toy._reading(curves(bad, flat), size, 0.05)
    first = r.split("at R = 2")[0]
    assert "bc-hg-baseline 12.00" in first.split("within")[1]   # listed among the misses
    drifting = {"exact": 59.75, "bc-hg-baseline": 40.0, "bc-hg": 33.0, "direct-only": 7.0}
    r = discrete_toy._reading(curves(good, drifting), size, 0.05)
    assert "direct-only drift below it" in r and "Adam at lr 0.05" in r  # three drift


def test_discrete_toy_mlp_reading_follows_the_numbers() -> None:
    """The MLP-leader reading lists an estimator as reaching the exact run only when its
    final score is within 1% or 2 s.e.; swap the finals and the prose swaps."""
    def curves(finals: dict) -> dict:
        return {(R, m, s): np.array([1.0, f + 0.02 * s])
                for R in (1.0, 2.0) for m, f in finals.items() for s in range(2)}

    r = discrete_toy._mlp_reading(curves({"exact": 27.3, "bc-hg-baseline": 27.2,
                                          "direct-only": 0.2}), 2)
    first = r.split("at R = 2")[0]
    assert "bc-hg-baseline 27.21 ends within" in first and "direct-only 0.21 does not" in first
    r = discrete_toy._mlp_reading(curves({"exact": 27.3, "bc-hg-baseline": 12.0,
                                          "direct-only": 27.25}), 2)
    first = r.split("at R = 2")[0]
    assert "direct-only 27.26 ends within" in first and "bc-hg-baseline 12.01 does not" in first


def test_reproduce_one_seed_says_so(tmp_path, capsys) -> None:
    assert main(["reproduce", "discrete-toy", "--out", str(tmp_path), "--seeds", "1",
                 "--steps", "2"]) == 0
    text = (tmp_path / "reproduce_discrete_toy.md").read_text()
    assert "+- 0.00" not in text and "one seed, no s.e." in text
    assert "Reading (this run, one seed" in text


def test_fourrooms_suboptimal_reading_follows_the_numbers() -> None:
    from exact_bilevel.experiments.reproduce.fourrooms_suboptimal import SWEEPS, _reading

    falling = {(m, k): (1.0 if m == "reset" else 0.5) / k for m in ("reset", "carried")
               for k in SWEEPS}
    r = _reading(falling)
    assert "falls from 1 at k = 1" in r and "smaller with Q carried at every k" in r
    rising = {(m, k): (0.1 if m == "carried" else 0.01) * k for m in ("reset", "carried")
              for k in SWEEPS}
    r = _reading(rising)
    assert "does not fall" in r and "not smaller with Q carried at any k" in r


def test_lqr_adjoint_refuses_a_complex_step_point() -> None:
    from exact_bilevel.lqr.hypergradient import hypergradient as lqr_hypergradient
    from exact_bilevel.lqr.objective import value as lqr_value
    from exact_bilevel.lqr.tasks import lqr_game

    problem, x = lqr_game()
    with pytest.raises(ValueError, match=r"^x: must be real"):
        lqr_hypergradient(problem, x + 1e-30j)
    v = lqr_value(problem, x + 1e-30j)  # the complex-step route
    assert abs(v.imag) < 1e-25
