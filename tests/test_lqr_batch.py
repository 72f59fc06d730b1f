"""Batched replicates of the soft-LQR estimators against the per-replicate path, bit for
bit, and the CLI's progress bars on long horizons.

* ``lqr.estimators.replicates`` (replicate ``i`` on ``replicate_sequence(seed, i)``, the
  CLI's rule) equals ``[estimate(..., seed=replicate_sequence(seed, i)) for i]`` and
  ``estimate_many`` (one generator read in turn) equals consecutive ``estimate`` calls on
  that generator, with ``np.array_equal``, for every estimator and mutant, both critics,
  an exploring leader, a problem without leader actions, and across chunks;
  ``sampling.rollouts`` row ``r`` equals ``rollout`` on row ``r``'s normals.
* Memory is checked before the normals are drawn; bad input names the field.
* ``exact-bilevel hypergradient`` / ``check --json`` on a long-horizon file draw the
  sweeps' progress bars on stderr when it is a terminal (a pseudo-terminal here), and
  stdout stays the JSON alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_lqr import random_problem

from exact_bilevel import lqr
from exact_bilevel.cli import main
from exact_bilevel.core.streams import replicate_sequence
from exact_bilevel.io import save_lqr
from exact_bilevel.lqr import estimators as est
from exact_bilevel.lqr import sampling, tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = {
    "random-bump-hinge": lambda: random_problem(0, horizon=7),
    "random-quadratic": lambda: random_problem(2, leader_terms=False, horizon=6),
    "random-no-leader-action": lambda: random_problem(1, p=0, m=1, horizon=5),
    "game": lambda: (tasks.lqr_game(horizon=8)[0], np.array([-0.4, 0.3])),
}
NAMES = (*est.ESTIMATORS, *est.MUTANTS)


def _critics(problem: lqr.LQRProblem, name: str) -> list[str]:
    quadratic = problem.leader.bump_weight == 0.0 and problem.leader.hinge_weight == 0.0
    if name == "zeroth-order":
        return ["monte-carlo"]
    return ["monte-carlo", "exact"] if quadratic else ["monte-carlo"]


@pytest.mark.parametrize("case", sorted(PROBLEMS))
def test_batch_equals_the_per_replicate_path_bit_for_bit(case):
    problem, x = PROBLEMS[case]()
    T = problem.horizon
    for name in NAMES:
        for critic in _critics(problem, name):
            budget = 3 * T + 1
            X = est.replicates(problem, x, name, budget, 3, 21, critic=critic)
            Y = [est.estimate(problem, x, name, budget, seed=replicate_sequence(21, i),
                              critic=critic) for i in range(3)]
            assert np.array_equal(X, np.array(Y)), (name, critic)
            M = est.estimate_many(problem, x, name, budget, 3, seed=8, critic=critic)
            g = np.random.default_rng(8)
            Z = [est.estimate(problem, x, name, budget, seed=g, critic=critic)
                 for _ in range(3)]
            assert np.array_equal(M, np.array(Z)), (name, critic)


def test_exploring_leader_and_chunks_bit_for_bit(monkeypatch):
    problem, x = PROBLEMS["game"]()
    beh = (np.zeros((1, 2)), np.eye(1))
    whole = est.estimate_many(problem, x, "bc-hg", 40, 4, seed=3, leader_behaviour=beh)
    g = np.random.default_rng(3)
    single = [est.estimate(problem, x, "bc-hg", 40, seed=g, leader_behaviour=beh)
              for _ in range(4)]
    assert np.array_equal(whole, np.array(single))
    monkeypatch.setattr(est, "CHUNK_ENTRIES", 1)  # one replicate per chunk
    steps = []
    assert np.array_equal(est.estimate_many(problem, x, "bc-hg", 40, 4, seed=3,
                                            leader_behaviour=beh, progress=steps.append), whole)
    assert steps == [1] * 4
    zo = est.replicates(problem, x, "zeroth-order", 40, 3, 5)
    monkeypatch.setattr(est, "CHUNK_ENTRIES", 10**9)
    assert np.array_equal(est.replicates(problem, x, "zeroth-order", 40, 3, 5), zo)


def test_rollouts_rows_equal_single_rollouts():
    problem, x = PROBLEMS["random-bump-hinge"]()
    inst, z = problem.instance(x), problem.z(x)
    sol = lqr.solve_soft_lqr(inst)
    K = sampling.rollout_normals(problem, 5)
    assert K == 5 * problem.n + problem.horizon * 5 * (problem.p + problem.m + problem.n)
    noise = np.random.default_rng(0).standard_normal((3, K))
    batch = sampling.rollouts(problem, [inst], [sol], [z], 5, noise)
    g = np.random.default_rng(0)
    for r in range(3):
        one = sampling.rollout(problem, inst, sol, z, 5, g)
        for f in ("s", "a", "u", "r"):
            assert np.array_equal(getattr(batch, f)[r], getattr(one, f)), (r, f)


def test_cli_estimate_on_an_lqr_file_equals_single_calls(tmp_path):
    problem, x = PROBLEMS["random-quadratic"]()
    path, out = str(tmp_path / "p.json"), tmp_path / "e.json"
    save_lqr(path, problem, x)
    assert main(["estimate", path, "--estimator", "bc-hg", "--critic", "exact",
                 "--transitions", "30", "--replicates", "5", "--seed", "4", "--quiet",
                 "--output", str(out)]) == 0
    Y = [est.estimate(problem, x, "bc-hg", 30, seed=replicate_sequence(4, i), critic="exact")
         for i in range(5)]
    assert np.array_equal(np.array(json.loads(out.read_text())["estimates"]), np.array(Y))


def test_memory_is_checked_before_any_normal_is_drawn(monkeypatch):
    problem, x = PROBLEMS["random-bump-hinge"]()
    gens = [np.random.default_rng(i) for i in range(2)]
    before = [g.bit_generator.state for g in gens]
    T, N = problem.horizon, 1000
    row = N * (T + 1) * (problem.n + problem.m + problem.p + 1)  # rollout entries
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", str(8 * row - 1))
    with pytest.raises(ValueError, match="memory budget"):
        est.estimates_from_generators(problem, x, "bc-hg", N * T, gens)
    with pytest.raises(ValueError, match="memory budget"):
        est.estimates_from_generators(problem, x, "zeroth-order", 2 * N * T, gens)
    assert [g.bit_generator.state for g in gens] == before
    with pytest.raises(ValueError, match=r"rollout states \[R, N, T \+ 1, n \+ m \+ p \+ 1\]"):
        sampling.rollouts(problem, [problem.instance(x)],
                          [lqr.solve_soft_lqr(problem.instance(x))], [problem.z(x)], N,
                          np.zeros((1, sampling.rollout_normals(problem, N))))


@pytest.mark.parametrize("call,match", [
    (lambda p, x: est.replicates(p, x, "bc-hg", 50, 0, 0), "replicates = 0"),
    (lambda p, x: est.replicates(p, x, "bc-hg", 50, True, 0), "replicates = True"),
    (lambda p, x: est.replicates(p, x, "hpgd", 50, 2, 0), "estimator = 'hpgd'"),
    (lambda p, x: est.replicates(p, x, "bc-hg", 3, 2, 0), "budget = 3"),
    (lambda p, x: est.replicates(p, x, "bc-hg", 50, 2, -1), "seed = -1"),
    (lambda p, x: est.replicates(p, x, "bc-hg", 50, 2, 0, critic="td"), "critic = 'td'"),
    (lambda p, x: est.replicates(p, x, "bc-hg", 50, 2, 0, critic="exact"), "quadratic"),
    (lambda p, x: est.replicates(p, x, "zeroth-order", 50, 2, 0, smoothing=np.nan),
     "smoothing"),
    (lambda p, x: est.replicates(p, np.full_like(x, np.nan), "bc-hg", 50, 2, 0), "x"),
    (lambda p, x: est.estimates_from_generators(p, x, "bc-hg", 50, [0]),
     r"generators\[0\]: must be a numpy.random.Generator"),
    (lambda p, x: est.estimates_from_generators(p, x, "bc-hg", 50, []), "replicates = 0"),
    (lambda p, x: sampling.rollouts(p, [p.instance(x)], [lqr.solve_soft_lqr(p.instance(x))],
                                    [p.z(x)], 2, np.zeros((2, 5))), r"noise: must be"),
    (lambda p, x: sampling.rollouts(p, [p.instance(x)] * 2,
                                    [lqr.solve_soft_lqr(p.instance(x))] * 2, [p.z(x)], 2,
                                    np.zeros((3, sampling.rollout_normals(p, 2)))),
     "2 matrices for 3 replicates"),
    (lambda p, x: sampling.rollouts(p, [p.instance(x)], [lqr.solve_soft_lqr(p.instance(x))],
                                    [p.z(x)] * 2, 2,
                                    np.zeros((3, sampling.rollout_normals(p, 2)))),
     "z: 2 entries for 3 replicates"),
])
def test_hostile_inputs_name_the_field(call, match):
    problem, x = PROBLEMS["random-bump-hinge"]()
    with pytest.raises(ValueError, match=match):
        call(problem, x)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_cli_progress_on_stderr_for_a_long_horizon_and_not_in_json(tmp_path):
    """The O(T n^3) sweeps of a 5,000-step horizon show their bars on a terminal's
    stderr; stdout (``check --json``) is the JSON report alone."""
    import fcntl
    import pty
    import struct
    import termios

    problem = lqr.make_problem(
        A=[[0.9, 0.1], [0.0, 0.8]], B=[[1.0], [0.5]], Q=np.eye(2), R=[[1.0]], gamma=0.9,
        tau=0.5, jac={"A": 0.1 * np.ones((2, 2, 1))}, Q_L=np.eye(2), gamma_L=0.999,
        horizon=5_000, mu0=[1.0, -1.0], Sigma0=0.1 * np.eye(2))
    x = np.array([0.2])
    path, grad = tmp_path / "long.json", tmp_path / "g.json"
    save_lqr(str(path), problem, x)
    grad.write_text(json.dumps({"gradient": lqr.hypergradient(problem, x).gradient.tolist()}))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "exact_bilevel.cli", "check", str(path),
                             "--estimate", str(grad), "--json"], stdout=subprocess.PIPE,
                            stderr=slave, env=env)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0, err.decode(errors="replace")
    os.close(master)
    text = err.decode(errors="replace")
    assert "LQR marginals" in text and "LQR adjoint sweep" in text
    report = json.loads(out)  # nothing but the report on stdout
    assert report["pass"] is True and b"LQR" not in out and b"\r" not in out
