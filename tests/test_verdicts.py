"""A verdict is a claim: never PASS on a statistic that is not a number; text and JSON
modes of ``exact-bilevel check`` agree; replicates that cannot resolve the answer give
INCONCLUSIVE, not PASS (issue 24, item 1)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exact_bilevel.cli import main
from exact_bilevel.core.hypergradient import hypergradient
from exact_bilevel.estimators import replicates
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import save_problem
from exact_bilevel.validation import acceptance


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory) -> tuple[str, np.ndarray]:
    problem, x = random_problem(4, 3, 2, seed=9)
    path = tmp_path_factory.mktemp("verdicts") / "p.json"
    save_problem(path, problem, x)
    return str(path), hypergradient(problem, x).gradient


def _check(tmp_path, problem: str, payload: dict, capsys, *extra: str
           ) -> tuple[int, str, int, dict]:
    est = tmp_path / "est.json"
    est.write_text(json.dumps(payload))
    rc_text = main(["check", problem, "--estimate", str(est), *extra])
    text = capsys.readouterr().out
    rc_json = main(["check", problem, "--estimate", str(est), "--json", *extra])
    report = json.loads(capsys.readouterr().out)  # strict JSON: no NaN / Infinity
    return rc_text, text, rc_json, report


HUGE = [
    ("alternating 1e308, R = 3", {"estimates": [[1e308, 1e308], [-1e308, -1e308],
                                                [1e308, 1e308]]}, "inconclusive"),
    ("identical 1e308 rows", {"estimates": [[1e308, 1e308]] * 5}, "fail"),
    ("alternating +-1e308, R = 20", {"estimates": [[1e308, 1e308], [-1e308, -1e308]] * 10},
     "inconclusive"),
    ("deterministic 1e308", {"gradient": [1e308, 1e308]}, "fail"),
    ("deterministic -1e308 vs +", {"gradient": [-1e308, 1e308]}, "fail"),
    ("max float spread", {"estimates": [[1.7976931348623157e308, 0.0],
                                        [-1.7976931348623157e308, 0.0]] * 30}, "inconclusive"),
]


@pytest.mark.parametrize("label, payload, outcome", HUGE, ids=[h[0] for h in HUGE])
def test_huge_estimates_never_pass_and_modes_agree(tmp_path, capsys, problem_file, label,
                                                   payload, outcome) -> None:
    """Regression: +-1e308 estimates printed 'relative error inf, cosine nan ... PASS'
    (exit 0) in text mode and exited 1 in JSON mode."""
    rc_text, text, rc_json, report = _check(tmp_path, problem_file[0], payload, capsys)
    assert rc_text == rc_json == 1
    assert report["pass"] is False and report["verdict"] == outcome
    assert text.rstrip().splitlines()[-1] == outcome.upper()
    assert "nan" not in text.lower() and " inf" not in text.lower()


def test_a_good_estimate_passes_in_both_modes(tmp_path, capsys, problem_file) -> None:
    problem, g = problem_file
    rng = np.random.default_rng(0)
    X = g + 0.01 * rng.normal(size=(200, g.size))
    rc_text, text, rc_json, report = _check(tmp_path, problem, {"estimates": X.tolist()},
                                            capsys)
    assert rc_text == rc_json == 0 and report["verdict"] == "pass" and "PASS" in text
    assert report["resolution"] < 0.01 and report["nonfinite"] == []


def test_too_few_or_too_noisy_replicates_are_inconclusive(tmp_path, capsys,
                                                          problem_file) -> None:
    """An unbiased but hopelessly noisy estimator: the test cannot reject, and the
    replicates cannot tell it from one off by 100%: INCONCLUSIVE, exit 1."""
    problem, g = problem_file
    X = g + 50.0 * np.abs(g).max() * np.random.default_rng(1).normal(size=(10, g.size))
    rc_text, text, rc_json, report = _check(tmp_path, problem, {"estimates": X.tolist()},
                                            capsys)
    assert rc_text == rc_json == 1 and report["verdict"] == "inconclusive"
    assert report["resolution"] > 1 and "off by 100%" in text


def test_naive_from_the_cli_fails(tmp_path, capsys,
                                  problem_file) -> None:
    problem = problem_file[0]
    problem_obj, x = random_problem(4, 3, 2, seed=9)
    X, _ = replicates(problem_obj, x, "naive", 20000, 60, seed=0)
    rc_text, _, rc_json, report = _check(tmp_path, problem, {"estimates": X.tolist()}, capsys)
    assert rc_text == rc_json == 1 and report["verdict"] == "fail"


# --- the acceptance tests themselves ---------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(-1000, 960), st.integers(0, 2**32 - 1))
def test_statistics_are_invariant_under_a_common_power_of_two(k: int, seed: int) -> None:
    """Scaling estimates and exact value by 2^k (exact in floating point) changes no
    statistic and no verdict, up to k = 960 where sums of squares would overflow float64
    without the common scaling (and down to k = -1000, where they would underflow)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=3)
    X = g + 0.3 * rng.normal(size=(40, 3)) + 0.05
    for test in (acceptance.hotelling_test, acceptance.bonferroni_test):
        a, b = test(X, g), test(np.ldexp(X, k), np.ldexp(g, k))
        assert a.reject == b.reject and math.isfinite(b.statistic)
        assert b.statistic == pytest.approx(a.statistic, rel=1e-12)
        assert b.p_value == pytest.approx(a.p_value, rel=1e-9, abs=1e-300)
    a = acceptance.bias_bound_test(X, g, 0.01)
    b = acceptance.bias_bound_test(np.ldexp(X, k), np.ldexp(g, k), np.ldexp(0.01, k))
    assert a.reject == b.reject and b.p_value == pytest.approx(a.p_value, rel=1e-9)
    assert acceptance.resolution(np.ldexp(X, k), np.ldexp(g, k)) == pytest.approx(
        acceptance.resolution(X, g), rel=1e-12)
    m, rel, cos = acceptance.summary(np.ldexp(X, k), np.ldexp(g, k))
    m0, rel0, cos0 = acceptance.summary(X, g)
    assert rel == pytest.approx(rel0, rel=1e-12) and cos == pytest.approx(cos0, rel=1e-12)
    np.testing.assert_allclose(np.ldexp(m, -k), m0, rtol=1e-14)


def test_consistency_test_is_scale_invariant_and_finite() -> None:
    rng = np.random.default_rng(3)
    g = np.ones(2)
    small, large = g + rng.normal(size=(50, 2)), g + 0.5 * rng.normal(size=(50, 2))
    a = acceptance.consistency_test(small, large, g)
    b = acceptance.consistency_test(small * 2.0**1000, large * 2.0**1000, g * 2.0**1000)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-12) and a.reject == b.reject


def test_a_nan_p_value_rejects() -> None:
    """The decision rule itself: a p-value that is not a number never accepts."""
    assert acceptance._decide(math.nan, 0.01)
    assert not acceptance._decide(0.5, 0.01) and acceptance._decide(0.001, 0.01)


# --- the exact-covariance test (issue 25, item 3) ----------------------------------------
def test_known_covariance_test_false_alarm_and_power() -> None:
    """Gaussian estimates with a known covariance: the realised false-alarm rate over 2000
    draws lies in its binomial 99.9% interval around alpha = 0.05, and a mean shifted by
    two exact standard errors of the mean on every coordinate is rejected far more often."""
    rng = np.random.default_rng(11)
    d, R, n = 3, 40, 2000
    L = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 0.5]])
    cov = L @ L.T
    g = np.array([1.0, -2.0, 0.5])
    reject = [acceptance.known_covariance_test(g + rng.normal(size=(R, d)) @ L.T, g, cov,
                                               0.05).reject for _ in range(n)]
    lo, hi = (float(q) / n for q in __import__("scipy").stats.binom.ppf([5e-4, 1 - 5e-4], n,
                                                                        0.05))
    assert lo <= np.mean(reject) <= hi
    shift = np.sqrt(np.diag(cov) / R)
    power = np.mean([acceptance.known_covariance_test(g + 2 * shift + rng.normal(size=(R, d)) @ L.T,
                                                      g, cov, 0.05).reject for _ in range(500)])
    assert power > 0.5


def test_known_covariance_is_not_fooled_by_a_rare_event() -> None:
    """Estimates that are 0 unless a 1-in-1000 event happens (then 1000): mean 1, variance
    ~1000. R = 100 replicates usually miss the event: the sample-covariance test sees a
    zero-variance coordinate off by 1 and rejects a correct estimator; the exact-covariance
    test knows the variance and accepts (z = -1 / sqrt(1000 / 100) = -0.32)."""
    X = np.zeros((100, 1))
    g, cov = np.array([1.0]), np.array([[1000.0 - 1.0]])
    assert acceptance.unbiasedness_test(X, g, 0.01).reject
    res = acceptance.known_covariance_test(X, g, cov, 0.01)
    assert not res.reject and abs(res.z[0] + 0.316) < 0.01


def test_known_covariance_rejects_movement_in_its_null_space() -> None:
    X = np.array([[1.0, 2.0], [1.0, 2.5], [1.0, 1.5]])
    cov = np.diag([0.0, 0.25])
    assert not acceptance.known_covariance_test(X, np.array([1.0, 2.0]), cov).reject
    assert acceptance.known_covariance_test(X, np.array([1.1, 2.0]), cov).reject
    with pytest.raises(ValueError, match="positive semi-definite"):
        acceptance.known_covariance_test(X, np.array([1.0, 2.0]), np.diag([1.0, -1.0]))


def test_check_uses_the_exact_covariance_where_it_is_known(tmp_path, capsys,
                                                          problem_file) -> None:
    problem = problem_file[0]
    out = tmp_path / "est.json"
    assert main(["estimate", problem, "--estimator", "bc-hg", "--transitions", "20000",
                 "--replicates", "40", "--quiet", "--output", str(out)]) == 0
    assert main(["check", problem, "--estimate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test"] == "known-covariance" and "sample_covariance_test" in report
    assert report["covariance"].startswith("exact (moments of bc-hg at budget 20000")
    # a learned critic: the moments do not cover it, the sample-covariance test decides
    assert main(["estimate", problem, "--estimator", "bc-hg", "--critic", "monte-carlo",
                 "--transitions", "20000", "--replicates", "40", "--quiet", "--output",
                 str(out)]) == 0
    main(["check", problem, "--estimate", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["test"] in ("hotelling", "bonferroni-t") and "covariance" not in report
