"""The certification battery (``exact_bilevel.testing.check_estimator`` and the pytest
plugin's ``bilevel_case`` fixture) passes our estimators and rejects the mutants.

Each case is tested at alpha = 1e-3 (8 standard cases: a correct estimator fails a
run with probability <= 0.8%); fixed seeds, so the outcome is deterministic.
"""

import numpy as np
import pytest

from exact_bilevel.estimators import leader_knowledge
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.mutants import MUTANTS
from exact_bilevel.testing import check_estimator, registered, suite
from exact_bilevel.validation.acceptance import resolution_known


def _registered(name, critic=None):
    return registered(name, critic)


def _mutant(name):
    m = MUTANTS[name]
    return lambda p, x, b, s: m.fn(leader_knowledge(p, x), Sampler(p.follower_mdp(x),
                                   np.random.default_rng(s)), b, m.critic).gradient


def _plugin_cases(options):
    """The quick suite's cases as the plugin offers them under the command-line
    ``options`` (the others at their defaults), through its real hook."""
    from exact_bilevel import pytest_plugin

    given = {"--bilevel-suite": "quick", "--bilevel-reference": None,
             "--bilevel-require-resolution": None, **options}

    class Config:
        def getoption(self, name):
            return given[name]

    class Metafunc:
        fixturenames = ("bilevel_case",)
        config = Config()

        def parametrize(self, name, values, ids):
            self.cases = values

    meta = Metafunc()
    pytest_plugin.pytest_generate_tests(meta)
    return meta.cases


def test_bilevel_case_fixture_runs_the_suite(bilevel_case):
    """What a user's test file looks like (three lines), here with our BC-HG, naming the
    estimator it implements so that the exact-covariance test decides."""
    res = bilevel_case.assert_passes(_registered("bc-hg-baseline"), reference="bc-hg-baseline")
    assert res.name == "known-covariance" and "sample-covariance" in res.report


def test_battery_passes_unbiased_and_consistent_estimators():
    res = check_estimator(_registered("bc-hg"), "quick")
    assert res.passed, res.table()
    assert check_estimator(_registered("hpgd"), "quick", unbiased=False).passed


def test_battery_rejects_mutants():
    for name in ("sign-flip", "sum-from-t+1", "tau-not-inverse"):
        res = check_estimator(_mutant(name), "quick")
        assert not res.passed, name
        assert "REJECT" in res.table()


def test_suite_cases_are_non_degenerate():
    """No case is in the rare-event regime at the default size (R = 100 x 8000): every
    state-action pair is expected to be visited at least 10 times."""
    from exact_bilevel.validation.convergence import rare_event_diagnostic

    cases = suite()
    assert len(cases) == 8 and len(suite("quick")) == 3
    for c in cases:
        visits, _, _ = rare_event_diagnostic(leader_knowledge(c.problem, c.x), 100 * 8000)
        assert visits >= 10, c.name
    assert cases[-1].problem.follower_mdp(cases[-1].x).is_sparse


def test_battery_with_a_reference_uses_the_exact_covariance():
    """``reference=`` names the registered estimator fn implements: the exact-covariance
    test decides on every case, the sample-covariance test is reported beside it; the
    mutants are rejected, and so is bc-hg claiming to be bc-hg-baseline (its covariance
    is larger on the transition-parameterised case: the exact test sees it, the sample
    test cannot)."""
    res = check_estimator(_registered("bc-hg"), "quick", reference="bc-hg")
    assert res.passed, res.table()
    assert all(r.name == "known-covariance" for _, r in res.results)
    assert all("regular regime" in r.report for _, r in res.results)  # the regime rule ran
    assert len(res.sample_results) == 3 and "sample-covariance p" in res.table()
    assert not check_estimator(_mutant("sign-flip"), "quick", reference="bc-hg").passed
    known, sample = suite("quick")[1].run_both(_registered("bc-hg"), reference="bc-hg-baseline")
    assert known.reject and not sample.reject
    assert suite("quick")[1].run(_registered("naive"), reference="naive").p_value > 0.01


def test_battery_reference_refusals_and_non_finite_estimates():
    import pytest

    case = suite("quick")[0]
    with pytest.raises(ValueError, match="reference = 'hpgd': out of scope for exact moments"):
        case.run(_registered("bc-hg"), reference="hpgd")
    with pytest.raises(ValueError, match="reference = 'nope': unknown"):
        case.run(_registered("bc-hg"), reference="nope")
    with pytest.raises(ValueError, match="do not combine it with unbiased=False"):
        case.run(_registered("bc-hg"), reference="bc-hg", unbiased=False)
    # estimates so large that the statistic overflows: never a pass
    with np.errstate(all="ignore"):
        huge = case.run(lambda p, x, b, s: np.full(x.size, 1e307) * (1 + s % 7),
                        replicates=10, reference="bc-hg")
    assert huge.reject
    with pytest.raises(ValueError, match="samples"):  # NaN estimates: refused, not passed
        case.run(lambda p, x, b, s: np.full(x.size, np.nan), replicates=4, reference="bc-hg")


def test_plugin_option_sets_the_default_reference():
    """``--bilevel-reference NAME`` gives every case a default reference (a call's own
    ``reference=`` still wins)."""
    cases = _plugin_cases({"--bilevel-reference": "bc-hg"})
    assert len(cases) == 3 and all(c.default_reference == "bc-hg" for c in cases)
    res = cases[0].assert_passes(_registered("bc-hg"), replicates=20)
    assert res.name == "known-covariance"


def test_battery_reports_what_each_case_can_resolve():
    """A pass is only as strong as its replicates: at a tiny budget some case cannot see a
    100% bias (listed in ``unresolved``, 'pass (unresolved)' in the table, not
    ``conclusive``); with the exact covariance the resolution is the exact one."""
    weak = check_estimator(_registered("bc-hg"), "quick", budget=60, replicates=10)
    assert weak.passed and weak.unresolved and not weak.conclusive
    assert "pass (unresolved)" in weak.table()
    # at the defaults (8000 x 100) the transition-parameterised case resolves only ~210%
    default = check_estimator(_registered("bc-hg"), "quick", reference="bc-hg")
    assert default.unresolved == ["transition-parameterised"], default.table()
    strong = check_estimator(_registered("bc-hg"), "quick", reference="bc-hg", budget=40_000)
    assert strong.conclusive and not strong.unresolved, strong.table()
    case = suite("quick")[0]
    out = case.evaluate(_registered("bc-hg"), reference="bc-hg")
    _, cov = case.reference_moments("bc-hg", 8000)
    assert out.resolution == pytest.approx(resolution_known(cov, 100, case.exact, 1e-3),
                                           rel=1e-12)  # relative to m = g up to rounding
    assert dict(default.resolutions)[case.name] == out.resolution


def test_assert_passes_can_require_a_resolution():
    """``require_resolution`` fails a pass that cannot see the stated relative bias (here
    a 100% bias at a tiny budget), names the resolution reached, leaves a strong pass
    alone, refuses a bad value, and the plugin option sets it for every case."""
    from exact_bilevel import pytest_plugin

    case = suite("quick")[0]
    weak = case.evaluate(_registered("bc-hg"), budget=60, replicates=10)
    assert not weak.decide.reject and weak.resolution > 1.0
    case.assert_passes(_registered("bc-hg"), budget=60, replicates=10)  # stands by default
    with pytest.raises(AssertionError, match="resolve only a relative bias of"):
        case.assert_passes(_registered("bc-hg"), budget=60, replicates=10,
                           require_resolution=1.0)
    case.assert_passes(_registered("bc-hg"), reference="bc-hg", require_resolution=1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="require_resolution"):
            case.assert_passes(_registered("bc-hg"), require_resolution=bad)

    cases = _plugin_cases({"--bilevel-require-resolution": 1.0})
    assert all(c.default_require_resolution == 1.0 for c in cases)
    with pytest.raises(AssertionError, match="required: 1"):
        cases[0].assert_passes(_registered("bc-hg"), budget=60, replicates=10)
    import argparse
    assert pytest_plugin._positive_float("0.5") == 0.5
    for bad in ("0", "-2", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            pytest_plugin._positive_float(bad)
