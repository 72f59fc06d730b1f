"""The certification battery (``exact_bilevel.testing.check_estimator`` and the pytest
plugin's ``bilevel_case`` fixture) passes our estimators and rejects the mutants.

Each case is tested at alpha = 1e-3 (8 standard cases: a correct estimator fails a
run with probability <= 0.8%); fixed seeds, so the outcome is deterministic.
"""

import numpy as np

from exact_bilevel.estimators import leader_knowledge
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.mutants import MUTANTS
from exact_bilevel.testing import check_estimator, registered, suite


def _registered(name, critic=None):
    return registered(name, critic)


def _mutant(name):
    m = MUTANTS[name]
    return lambda p, x, b, s: m.fn(leader_knowledge(p, x), Sampler(p.follower_mdp(x),
                                   np.random.default_rng(s)), b, m.critic).gradient


def test_bilevel_case_fixture_runs_the_suite(bilevel_case):
    """What a user's test file looks like (three lines), here with our BC-HG."""
    bilevel_case.assert_passes(_registered("bc-hg-baseline"))


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
