"""pytest plugin: the certification battery as a parametrised fixture.

Registered through the ``pytest11`` entry point when exact_bilevel is installed,
so any test that asks for ``bilevel_case`` runs once per case of
:func:`exact_bilevel.testing.suite`::

    def test_my_estimator(bilevel_case):
        bilevel_case.assert_passes(my_estimator)        # fn(problem, x, budget, seed)

``--bilevel-suite quick`` runs the first 3 cases instead of the standard 8.

If your function implements a registered estimator with known exact moments, name it
and the exact-covariance chi-square test decides (the sample-covariance test is
reported beside it; :func:`exact_bilevel.testing.check_estimator`)::

    def test_my_bchg(bilevel_case):
        bilevel_case.assert_passes(my_bchg, reference="bc-hg")

``--bilevel-reference NAME`` sets that reference for every ``assert_passes`` call that
does not give one (e.g. to run a suite of BC-HG implementations against the exact
covariance without editing the tests).

A pass is only as strong as its replicates: ``--bilevel-require-resolution Q`` (or
``assert_passes(..., require_resolution=Q)``) also fails a case whose replicates cannot
see a relative bias of ``Q`` (e.g. ``1.0``: at the defaults, 8000 x 100, two of the
standard cases cannot see a 100% bias of BC-HG; see
:attr:`exact_bilevel.experiments.battery.CaseOutcome.resolution`).

Markov-game estimators ``fn(game, x, budget, seed)`` get the game battery
(:func:`exact_bilevel.testing.check_game_estimator`) as the ``bilevel_game_case`` fixture,
with the same ``--bilevel-suite`` and ``--bilevel-require-resolution`` options and its
own ``--bilevel-game-reference NAME`` (``bc-hg``, ``bc-hg-baseline``, ``direct-only``)::

    def test_my_game_estimator(bilevel_game_case):
        bilevel_game_case.assert_passes(my_game_bchg)
"""

from __future__ import annotations

from typing import Any

#: The game estimators with exact moments (``exact_bilevel.games.GAME_ESTIMATORS``; spelt
#: out so that loading the plugin imports nothing).
GAME_REFERENCES = ("bc-hg", "bc-hg-baseline", "direct-only")


def pytest_addoption(parser: Any) -> None:
    parser.getgroup("exact_bilevel").addoption(
        "--bilevel-suite", default="standard", choices=("standard", "quick"),
        help="cases offered by the bilevel_case and bilevel_game_case fixtures (default: "
             "standard)")
    parser.getgroup("exact_bilevel").addoption(
        "--bilevel-reference", default=None,
        choices=("bc-hg", "bc-hg-baseline", "naive"),
        help="default reference of bilevel_case.assert_passes: the registered estimator "
             "whose exact mean and covariance the exact-covariance test uses")
    parser.getgroup("exact_bilevel").addoption(
        "--bilevel-require-resolution", default=None, type=_positive_float, metavar="Q",
        help="default require_resolution of bilevel_case.assert_passes and "
             "bilevel_game_case.assert_passes: fail a pass whose replicates cannot see a "
             "relative bias of Q (e.g. 1.0 for 100%%)")
    parser.getgroup("exact_bilevel").addoption(
        "--bilevel-game-reference", default=None, choices=GAME_REFERENCES,
        help="default reference of bilevel_game_case.assert_passes: the registered game "
             "estimator whose exact mean and covariance the exact-covariance test uses")



def _positive_float(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number > 0")
    return value


def pytest_generate_tests(metafunc: Any) -> None:
    if "bilevel_case" in metafunc.fixturenames:
        from .experiments.battery import suite

        cases = suite(metafunc.config.getoption("--bilevel-suite"))
        reference = metafunc.config.getoption("--bilevel-reference")
        required = metafunc.config.getoption("--bilevel-require-resolution")
        for c in cases:
            if reference is not None:
                c.default_reference = reference
            if required is not None:
                c.default_require_resolution = required
        metafunc.parametrize("bilevel_case", cases, ids=[c.name for c in cases])
    if "bilevel_game_case" in metafunc.fixturenames:
        from .experiments.game_battery import game_suite

        games = game_suite(metafunc.config.getoption("--bilevel-suite"))
        reference = metafunc.config.getoption("--bilevel-game-reference")
        required = metafunc.config.getoption("--bilevel-require-resolution")
        for g in games:
            g.default_reference = reference
            g.default_require_resolution = required
        metafunc.parametrize("bilevel_game_case", games, ids=[g.name for g in games])
