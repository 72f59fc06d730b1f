r"""Statistical acceptance tests for hypergradient estimators (public entry point).

The place other projects' test suites import from, like ``numpy.testing``::

    from exact_bilevel.testing import assert_unbiased, assert_consistent

* :func:`unbiasedness_test` / :func:`assert_unbiased` — ``R`` independent
  estimates ``X[R, d]`` against the exact ``g[d]`` (Hotelling ``T^2`` or
  Bonferroni-t; false-alarm rate at most ``alpha``);
* :func:`consistency_test` / :func:`assert_consistent` — the mean squared error
  drops ~4x when the budget grows 4x;
* :func:`bias_bound_test` / :func:`assert_bias_within` — a consistent estimator's
  bias is within an allowance (``O(1/n)``, shrinking with the budget);
* :func:`assert_matches_exact` — a deterministic gradient against the exact one;
* :func:`tail_diagnostic` and :class:`EstimateTailWarning` — when the estimates are
  too skewed for the tests' normal approximation (rare-event regime);
* :func:`check_estimator` — a certification battery for your own estimator
  ``fn(problem, x, budget, seed) -> gradient`` on a curated suite of exact problems;
  with pytest, the ``bilevel_case`` fixture of the bundled plugin runs the suite as
  parametrised cases (``def test_mine(bilevel_case): bilevel_case.assert_passes(fn)``);
  ``reference="bc-hg"`` (or ``"bc-hg-baseline"``, ``"naive"``) when ``fn`` implements a
  registered estimator: its exact mean and covariance drive the exact-covariance test;
* :func:`known_covariance_test` — ``H0: E X = g`` with the exact covariance of one
  estimate (:func:`exact_bilevel.estimators.moments`), no sample covariance (chi-square,
  asymptotic); :func:`chebyshev_test` — the same statistic with a level that holds for
  every law of the estimates (Markov's inequality; for the rare-event regime) and
  :func:`known_covariance_verdict` — the rule that picks one of the two by the regime;
* :func:`plan_sample_size` — transitions per replicate x replicates for which the
  exact-covariance verdict (:func:`known_covariance_verdict`: the chi-square test, or in
  the rare-event regime the Chebyshev test too) FAILs an estimator off by a relative bias
  ``B`` with a given power (also ``exact-bilevel plan``).
  :func:`registered` wraps one of the package's estimators so that the battery draws its
  replicates together;
* :func:`check_game_estimator` — the same battery for two-player Markov-game estimators
  ``fn(game, x, budget, seed) -> gradient`` on a curated suite of exact games
  (:func:`game_suite`; pytest fixture ``bilevel_game_case``; ``reference="bc-hg"``,
  ``"bc-hg-baseline"`` or ``"direct-only"`` for the exact-covariance verdict of
  :func:`exact_bilevel.games.game_moments`); :func:`registered_game` wraps one of the
  package's game estimators.

The implementation lives in :mod:`exact_bilevel.validation.acceptance`.
"""

from .experiments.battery import BatteryResult, Case, Registered, check_estimator, registered, suite
from .experiments.game_battery import (
    GameCase,
    RegisteredGame,
    check_game_estimator,
    game_suite,
    registered_game,
)
from .validation.acceptance import (
    EXACT_RTOL,
    EstimateTailWarning,
    TestResult,
    assert_bias_within,
    assert_consistent,
    assert_matches_exact,
    assert_unbiased,
    bias_bound_test,
    bonferroni_test,
    chebyshev_test,
    consistency_test,
    hotelling_test,
    known_covariance_test,
    tail_diagnostic,
    unbiasedness_test,
)
from .validation.convergence import known_covariance_verdict
from .validation.planning import SamplePlan, plan_sample_size

__all__ = [
    "EXACT_RTOL",
    "BatteryResult",
    "Case",
    "EstimateTailWarning",
    "GameCase",
    "Registered",
    "RegisteredGame",
    "SamplePlan",
    "TestResult",
    "assert_bias_within",
    "assert_consistent",
    "assert_matches_exact",
    "assert_unbiased",
    "bias_bound_test",
    "bonferroni_test",
    "chebyshev_test",
    "check_estimator",
    "check_game_estimator",
    "consistency_test",
    "game_suite",
    "hotelling_test",
    "known_covariance_test",
    "known_covariance_verdict",
    "plan_sample_size",
    "registered",
    "registered_game",
    "suite",
    "tail_diagnostic",
    "unbiasedness_test",
]
