"""Problem files (format exact-bilevel/1) and the command line."""

import json
import math
import pathlib

import numpy as np
import pytest

from exact_bilevel import hypergradient, solve_soft
from exact_bilevel.cli import main
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import FORMAT, load_problem, problem_from_dict, problem_to_dict, save_problem


def _file_dict():
    problem, x = random_problem(3, 2, 2, seed=1, objective="leader_return_x_reward")
    return problem_to_dict(problem, x)


@pytest.mark.parametrize("parameterize", ["reward", "transitions", "both"])
def test_round_trip_gives_identical_values(tmp_path, parameterize):
    problem, x = random_problem(4, 3, 2, seed=2, parameterize=parameterize,
                                objective="leader_return_own_gamma")
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    loaded, x2 = load_problem(path)
    np.testing.assert_array_equal(x, x2)
    a, b = hypergradient(problem, x), hypergradient(loaded, x2)
    assert a.value == b.value
    np.testing.assert_array_equal(a.gradient, b.gradient)


def test_structural_zero_logits_are_null(tmp_path):
    from exact_bilevel.experiments.examples import random_softmax_transitions
    rng = np.random.default_rng(0)
    tr = random_softmax_transitions(rng, 4, 2, 2, support=2)
    problem, x = random_problem(4, 2, 2, seed=3)
    from exact_bilevel import BilevelProblem
    p = BilevelProblem(problem.follower_reward, tr, problem.objective, gamma=0.9, tau=0.5)
    data = problem_to_dict(p, x)
    assert sum(v is None for block in data["transitions"]["logits"] for row in block
               for v in row) == 4 * 2 * 2
    loaded, _ = problem_from_dict(json.loads(json.dumps(data)))
    np.testing.assert_array_equal(loaded.transitions.value(x), tr.value(x))


def _mutated(**changes):
    d = _file_dict()
    for key, value in changes.items():
        parts = key.split(".")
        target = d
        for p in parts[:-1]:
            target = target[p]
        if value is KeyError:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value
    return d


@pytest.mark.parametrize(("changes", "pattern"), [
    ({"format": "exact-bilevel/2"}, r"format: 'exact-bilevel/2' is not a known version"),
    ({"extra": 1}, r"problem: unknown field\(s\) \['extra'\]"),
    ({"gamma": KeyError}, r"problem: missing required field\(s\) \['gamma'\]"),
    ({"gamma": "0.9"}, r"gamma: must be a number, got str"),
    ({"gamma": 1.5}, r"gamma = 1.5: must satisfy 0 <= gamma < 1"),
    ({"tau": -1}, r"tau = -1.0: must be > 0"),
    ({"x": [1.0, "2"]}, r"x\[1\]: must be a number, got str '2'"),
    ({"x": [1.0, True]}, r"x\[1\]: must be a number, got bool"),
    ({"transitions": [[[0.5, 0.6, 0.0]] * 2] * 3},
     r"transitions\[0, 0, :\]: sums to 1.1 but must sum to 1"),
    ({"transitions": [[[1.0, 0.0]] * 2] * 3}, r"transitions: shape must be \(S, A, S\)"),
    ({"follower_reward.base": [[0.0, 0.0]] * 2}, r"follower_reward.base: axis 0 must have "
                                                 r"length 3"),
    ({"follower_reward.features": [[[0.0]] * 2] * 3},
     r"follower_reward.features: axis 2 must have length 2"),
    ({"follower_reward.bias": 0}, r"follower_reward: unknown field\(s\) \['bias'\]"),
    ({"leader_reward": [1, 2]}, r"leader_reward: must be a JSON object, got list"),
    ({"initial": [0.5, 0.5, 0.5]}, r"initial: sums to 1.5"),
    ({"leader_gamma": 1.0}, r"leader_gamma = 1.0: must satisfy"),
    ({"transitions": {"logits": [[[0.0, None, 1.0]] * 2] * 3}},
     r"transitions: missing required field\(s\) \['features'\]"),
])
def test_bad_files_name_the_field_and_rule(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        problem_from_dict(_mutated(**changes))


def test_load_problem_rejects_non_json_constants_and_missing_files(tmp_path):
    path = tmp_path / "nan.json"
    text = json.dumps(_file_dict()).replace('"gamma": 0.9', '"gamma": NaN')
    path.write_text(text)
    with pytest.raises(ValueError, match="NaN is not a JSON number"):
        load_problem(path)
    with pytest.raises(ValueError, match="cannot read file"):
        load_problem(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_problem(tmp_path / "bad.json")


def test_cli_hypergradient_and_solve(tmp_path, capsys):
    problem, x = random_problem(4, 3, 2, seed=9, parameterize="both")
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    assert main(["hypergradient", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    hg = hypergradient(problem, x)
    assert out["value"] == hg.value and out["gradient"] == hg.gradient.tolist()
    assert out["residual"] <= 1e-12
    assert main(["hypergradient", str(path), "--mode", "forward"]) == 0
    fwd = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(fwd["gradient"], out["gradient"], rtol=1e-12)
    assert main(["solve", str(path)]) == 0
    sol = json.loads(capsys.readouterr().out)
    ref = solve_soft(problem.follower_mdp(x), problem.tau)
    np.testing.assert_array_equal(sol["policy"], ref.policy)
    assert set(sol) >= {"q", "v", "policy", "residual", "iterations", "method"}


def test_cli_bad_file_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_mutated(tau=0)))
    assert main(["hypergradient", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tau = 0.0: must be > 0" in err
    assert main(["solve", str(tmp_path / "nope.json")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["hypergradient"])
    assert exc.value.code == 2


def test_cli_demo_runs(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "agreement: OK" in out and "exact hypergradient" in out
    assert FORMAT == "exact-bilevel/1"
    assert math.isfinite(float(out.split("F(x)")[1].split("=")[1].split()[0]))


def test_cli_estimate(tmp_path, capsys):
    problem, x = random_problem(4, 3, 2, seed=9, parameterize="both")
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    args = ["estimate", str(path), "--estimator", "bc-hg", "--transitions", "500",
            "--replicates", "3", "--seed", "4"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert np.array(out["estimates"]).shape == (3, 2) and len(out["transitions"]) == 3
    assert out["critic"] == "exact" and out["budget"] == 500
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == out  # reproducible
    assert main([*args[:3], "hpgd", "--critic", "td", "--transitions", "300"]) == 0
    assert len(json.loads(capsys.readouterr().out)["estimates"]) == 1


@pytest.mark.parametrize("extra, message", [
    (["--estimator", "sobirl", "--critic", "exact", "--transitions", "100"],
     "critic = 'exact': estimator 'sobirl' accepts"),
    (["--estimator", "model-based", "--transitions", "5"], "model-based needs at least"),
])
def test_cli_estimate_bad_options_exit_2(tmp_path, capsys, extra, message):
    problem, x = random_problem(4, 3, 2, seed=9)
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    assert main(["estimate", str(path), *extra]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["estimate", str(path), "--estimator", "bc-hg", "--transitions", "0"])
    assert exc.value.code == 2


def test_golden_files_load_as_problems():
    golden = pathlib.Path(__file__).resolve().parent.parent / "verification" / "golden"
    problem, x = load_problem(golden / "01_random_reward_S3A2.json")
    assert problem.n_states == 3 and x.shape == (2,)


def _est_file(tmp_path, name, payload):
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return str(path)


def test_cli_check_statistical_pass_and_fail(tmp_path, capsys):
    from exact_bilevel.estimators import replicates

    problem, x = random_problem(4, 3, 2, seed=9)
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    assert main(["estimate", str(path), "--estimator", "bc-hg", "--transitions", "20000",
                 "--replicates", "60"]) == 0
    good = _est_file(tmp_path, "good.json", json.loads(capsys.readouterr().out))
    assert main(["check", str(path), "--estimate", good]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "false-alarm rate" in out and "cosine" in out
    X, _ = replicates(problem, x, "naive", 2000, 60, seed=0)
    bad = _est_file(tmp_path, "bad.json", {"estimates": X.tolist()})
    assert main(["check", str(path), "--estimate", bad, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["pass"] is False and report["mode"] == "statistical"
    assert len(report["coordinates"]) == 2 and "z" in report["coordinates"][0]


def test_cli_check_deterministic(tmp_path, capsys):
    problem, x = random_problem(4, 3, 2, seed=9, parameterize="both")
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    g = hypergradient(problem, x).gradient
    ok = _est_file(tmp_path, "ok.json", {"gradient": (g * (1 + 1e-10)).tolist()})
    assert main(["check", str(path), "--estimate", ok]) == 0
    off = _est_file(tmp_path, "off.json", {"gradient": (g * (1 + 1e-6)).tolist()})
    assert main(["check", str(path), "--estimate", off, "--json"]) == 1
    rep = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert rep["mode"] == "deterministic" and rep["max_error"] > rep["tolerance"]
    assert main(["check", str(path), "--estimate", off, "--rtol", "1e-5"]) == 0


@pytest.mark.parametrize("payload, message", [
    ({"gradient": [1.0]}, r"estimate.gradient: axis 0 must have length 2"),
    ({"gradient": [1.0, 2.0], "estimates": [[1.0, 2.0]]}, "give exactly one of"),
    ({"grad": [1.0, 2.0]}, r"estimate: unknown field\(s\) \['grad'\]"),
    ({"estimates": [[1.0, "a"]]}, "estimate.estimates"),
    ([1, 2], "must be a JSON object"),
])
def test_cli_check_bad_estimate_exits_2(tmp_path, capsys, payload, message):
    problem, x = random_problem(4, 3, 2, seed=9)
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    est = _est_file(tmp_path, "e.json", payload)
    assert main(["check", str(path), "--estimate", est]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    import re
    assert re.search(message, err)
