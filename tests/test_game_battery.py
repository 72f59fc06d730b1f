"""The Markov-game certification battery (``exact_bilevel.testing.check_game_estimator``
and the pytest plugin's ``bilevel_game_case`` fixture) passes the registered game
estimators, rejects every game mutant (naming the case), decides by the exact covariance
with ``reference=``, and refuses bad input.

Each case is tested at alpha = 1e-3 (7 standard cases: a correct estimator fails a run
with probability <= 0.7% in the regular regime); fixed seeds, so the outcome is
deterministic. The cases' exact hypergradients are checked against central differences of
the exact leader objective (``games.value``), an independent route, to 1e-6 relative.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.stats

from exact_bilevel import games as mg
from exact_bilevel.core.streams import replicate_rng
from exact_bilevel.mutants import GAME_MUTANTS
from exact_bilevel.testing import (
    EstimateTailWarning,
    check_game_estimator,
    game_suite,
    registered,
    registered_game,
)
from exact_bilevel.validation.acceptance import resolution_known
from exact_bilevel.validation.convergence import MIN_EXPECTED_VISITS, is_unresolved_rejection
from exact_bilevel.validation.mutants import game_mutant_mean

RARE = "near-deterministic follower (tau = 0.2)"


def _mutant(name):
    m = GAME_MUTANTS[name]
    return lambda game, x, budget, seed: m(game, x, "bc-hg", budget,
                                           np.random.default_rng(seed)).gradient


def test_bilevel_game_case_fixture_runs_the_suite(bilevel_game_case):
    """What a user's test file looks like, here with our game BC-HG (baseline), naming the
    estimator it implements so that the exact-covariance verdict decides on every case
    (the near-deterministic one too)."""
    res = bilevel_game_case.assert_passes(registered_game("bc-hg-baseline"),
                                          reference="bc-hg-baseline")
    assert res.name == "known-covariance" and "sample-covariance" in res.report


def test_registered_game_estimators_pass_every_quick_case():
    for name in ("bc-hg", "bc-hg-baseline"):
        res = check_game_estimator(registered_game(name), "quick")
        assert res.passed and res.conclusive, res.table()
        assert [n for n, _ in res.results] == [c.name for c in game_suite("quick")]
        assert check_game_estimator(registered_game(name), "quick", unbiased=False).passed
    # direct-only drops the follower's response: it passes as itself, never as the gradient
    assert check_game_estimator(registered_game("direct-only"), "quick",
                                reference="direct-only").conclusive
    wrong = check_game_estimator(registered_game("direct-only"), "quick")
    assert all(r.reject for _, r in wrong.results), wrong.table()


def test_game_suite_cases_are_non_degenerate_and_exact():
    """Every case: ``max |g| >= 0.1``, the follower's response >= 10% of it, finite exact
    covariances with a positive diagonal (the resolutions game_suite's docstring states);
    at the defaults (8000 x 100) only the
    near-deterministic case is in the rare-event regime; ``exact`` matches central
    differences of the exact objective."""
    cases, sees = game_suite(), {}
    assert len(cases) == 7 and [c.name for c in game_suite("quick")] == \
        [c.name for c in cases[:3]]
    for c in cases:
        h = mg.hypergradient(c.game, c.x)
        top = np.max(np.abs(h.gradient))
        assert top >= 0.1 and np.max(np.abs(h.indirect)) >= 0.1 * top, c.name
        for est in mg.GAME_ESTIMATORS:
            cov = mg.game_moments(c.game, c.x, est, 8000).covariance
            assert np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0), (c.name, est)
            if est != "direct-only":
                sees.setdefault(est, []).append(resolution_known(cov, 100, h.gradient, 1e-3))
        rare = c.rarest_visits(8000 * 100) < MIN_EXPECTED_VISITS
        assert rare == (c.name == RARE), c.name
        eps = 1e-5
        fd = np.array([(mg.value(c.game, c.x + eps * e) - mg.value(c.game, c.x - eps * e))
                       / (2 * eps) for e in np.eye(c.x.size)])
        np.testing.assert_allclose(c.exact, fd, rtol=1e-6, atol=1e-6 * top, err_msg=c.name)
    # the docstring of game_suite: resolutions 0.02 to 0.46 (bc-hg, weakest on DiscreteToy)
    # and 0.02 to 0.10 (bc-hg-baseline)
    assert [round(min(sees["bc-hg"]), 2), round(max(sees["bc-hg"]), 2)] == [0.02, 0.46]
    assert int(np.argmax(sees["bc-hg"])) == 0
    assert [round(min(sees["bc-hg-baseline"]), 2), round(max(sees["bc-hg-baseline"]), 2)] \
        == [0.02, 0.10]
    assert cases[0].game.observes == mg.OBSERVES_STATE_AND_LEADER_ACTION
    assert {c.game.observes for c in cases} == {mg.OBSERVES_STATE,
                                                mg.OBSERVES_STATE_AND_LEADER_ACTION}
    assert any(c.game.leader is not None for c in cases)
    assert any(c.game.leader_gamma not in (None, c.game.gamma) for c in cases)


TOY, OBS_S, OBS_SA = "DiscreteToy (R = 1, gamma = 0.8, tau = 0.3)", "follower observes s", \
    "follower observes (s, aL)"
ABOVE, BELOW = ("leader discount above the follower's (0.85 vs 0.6)",
                "leader discount below the follower's (0.5 vs 0.85)")
MLP = "MLP leader (4 tanh units; follower observes (s, aL))"

#: Per game mutant, the cases of the standard suite that must reject it (by the exact and
#: by the sample covariance): where its bug shows. The initial-law bugs need a follower
#: that observes (s, aL) and a non-zero term (not DiscreteToy, which starts at S with a
#: leader-independent value there); leader-gamma-swap needs gamma_L != gamma;
#: wrong-discount-power shifts the MLP case's mean by 9% only (the sample test rejects
#: it there, the exact-covariance test at alpha = 1e-3 does not).
EXPECTED_REJECTIONS = {
    "game-no-initial-term": {OBS_SA, BELOW, MLP},
    "game-sign-flip": {TOY, OBS_S, OBS_SA, ABOVE, BELOW, MLP, RARE},
    "game-tau-not-inverse": {TOY, OBS_S, OBS_SA, ABOVE, BELOW, MLP, RARE},
    "game-leader-gamma-swap": {ABOVE, BELOW},
    "game-wrong-discount-power": {TOY, OBS_S, OBS_SA, ABOVE, RARE},
    "game-initial-follower-value": {OBS_SA, BELOW, MLP},
}


def test_every_game_mutant_is_rejected_on_a_named_case():
    """Power: each mutant of ``GAME_MUTANTS`` fails the standard suite on the named cases
    where its bug shows, by the exact-covariance test (``reference="bc-hg"``) and by the
    sample test beside it (the same runs), and is never rejected where its exact mean
    (:func:`game_mutant_mean`) is the gradient (where its bug is invisible)."""
    assert set(EXPECTED_REJECTIONS) == set(GAME_MUTANTS)
    cases = game_suite()
    assert {n for v in EXPECTED_REJECTIONS.values() for n in v} <= {c.name for c in cases}
    for name in GAME_MUTANTS:
        visible = {c.name for c in cases
                   if not np.allclose(game_mutant_mean(name, c.game, c.x), c.exact,
                                      rtol=1e-9, atol=1e-12)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EstimateTailWarning)
            res = check_game_estimator(_mutant(name), reference="bc-hg")
        for results in (res.results, res.sample_results):
            rejected = {case for case, r in results if r.reject}
            assert EXPECTED_REJECTIONS[name] <= rejected <= visible, (name, res.table())
        assert "REJECT" in res.table()


def test_game_mutant_means_are_exact_and_off_the_gradient():
    """:func:`game_mutant_mean`: with no bug it is the game's hypergradient (``games.exact``,
    another route) on every case; each mutant's exact mean is off the gradient (>= 5%
    relative) on a named case and its estimates (2000 replicates, ``bc-hg`` and
    ``bc-hg-baseline``) average to it: every coordinate's z-score within the two-sided
    Bonferroni threshold for a family-wise false-alarm rate of 1e-3 (fixed seeds), while
    against the gradient some coordinate is far outside it."""
    cases = {c.name: c for c in game_suite()}
    for c in cases.values():
        np.testing.assert_allclose(game_mutant_mean(None, c.game, c.x), c.exact, rtol=1e-10,
                                   atol=1e-12 * np.max(np.abs(c.exact)), err_msg=c.name)
    where = {"game-no-initial-term": MLP, "game-sign-flip": MLP, "game-tau-not-inverse": MLP,
             "game-leader-gamma-swap": BELOW, "game-wrong-discount-power": OBS_S,
             "game-initial-follower-value": MLP}
    assert set(where) == set(GAME_MUTANTS)
    R, runs = 2000, [(n, e) for n in sorted(where) for e in ("bc-hg", "bc-hg-baseline")]
    limit = scipy.stats.norm.isf(1e-3 / 2 / sum(cases[where[n]].x.size for n, _ in runs))
    for k, (name, est) in enumerate(runs):
        c = cases[where[name]]
        mean = game_mutant_mean(name, c.game, c.x)
        assert np.linalg.norm(mean - c.exact) >= 0.05 * np.linalg.norm(c.exact), name
        X, _ = mg.estimate_replicates(c.game, c.x, est, 500,
                                      [replicate_rng(11, i, (k,)) for i in range(R)],
                                      fn=GAME_MUTANTS[name])
        se = X.std(axis=0, ddof=1) / math.sqrt(R)
        z = (X.mean(axis=0) - mean) / se
        assert np.max(np.abs(z)) < limit, (name, est, z)
        assert np.max(np.abs((X.mean(axis=0) - c.exact) / se)) > limit, (name, est)
    c = cases[MLP]
    with pytest.raises(ValueError, match="name = 'sign-flip': not a game mutant"):
        game_mutant_mean("sign-flip", c.game, c.x)
    with pytest.raises(ValueError, match="x"):
        game_mutant_mean("game-sign-flip", c.game, c.x[:-1])


def test_rare_event_case_is_flagged_and_decided_by_the_exact_covariance():
    """Without a reference the near-deterministic case's sample verdict is flagged (a
    warning, ``approximation_ok = False``, resolution unknown: 'pass (unresolved)', not
    conclusive); with one, the exact-covariance rule decides in the rare-event regime, and
    a wrong estimator's chi-square-only rejection there is reported unresolved."""
    (case,) = [c for c in game_suite() if c.name == RARE]
    with pytest.warns(EstimateTailWarning, match="rare-event regime"):
        out = case.evaluate(registered_game("bc-hg"))
    assert not out.decide.reject and not out.decide.approximation_ok
    assert math.isnan(out.resolution) and "reference=" in out.decide.report
    with pytest.raises(AssertionError, match="resolve only a relative bias of nan"):
        with pytest.warns(EstimateTailWarning):
            case.assert_passes(registered_game("bc-hg"), require_resolution=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exact route needs no warning
        known = case.evaluate(registered_game("bc-hg"), reference="bc-hg")
        wrong = case.run(registered_game("direct-only"), reference="bc-hg")
    assert not known.decide.reject and "rare-event regime" in known.decide.report
    assert known.resolution < 0.1
    assert wrong.reject and is_unresolved_rejection(wrong)  # 27% off: chi-square only


def test_exact_covariance_route():
    """``reference=`` names the registered game estimator fn implements: the exact
    covariance decides on every case with the sample test beside it; the resolution is the
    exact one; bc-hg claiming to be bc-hg-baseline is caught by its larger covariance."""
    res = check_game_estimator(registered_game("bc-hg"), "quick", reference="bc-hg")
    assert res.conclusive, res.table()
    assert all(r.name == "known-covariance" and "regular regime" in r.report
               for _, r in res.results)
    assert len(res.sample_results) == 3 and "sample-covariance p" in res.table()
    case = game_suite("quick")[0]
    mean, cov = case.reference_moments("bc-hg", 8000)
    np.testing.assert_allclose(mean, case.exact, rtol=1e-10, atol=1e-12)
    assert dict(res.resolutions)[case.name] == resolution_known(cov, 100, mean, 1e-3)
    claimed = check_game_estimator(registered_game("bc-hg"), "quick",
                                   reference="bc-hg-baseline")
    assert case.name in {n for n, r in claimed.results if r.reject}, claimed.table()
    assert not any(r.reject for _, r in claimed.sample_results)  # the sample test cannot


def test_replicates_never_share_a_stream():
    """A user fn gets one distinct seed per replicate, and runs with seeds 0 and 1 share
    none; the registered estimator's batch is its per-replicate streams drawn together."""
    seen = {0: [], 1: []}
    case = game_suite("quick")[1]
    for seed in (0, 1):
        def fn(game, x, budget, s, seed=seed):
            seen[seed].append(s)
            return registered_game("bc-hg")(game, x, budget, s)
        case.run(fn, budget=400, replicates=20, seed=seed)
    assert len(set(seen[0])) == 20 and not set(seen[0]) & set(seen[1])
    X = registered_game("bc-hg").batch(case.game, case.x, 400, 5, 3)
    one = mg.estimate(case.game, case.x, "bc-hg", 400, replicate_rng(3, 4)).gradient
    np.testing.assert_array_equal(X[4], one)
    assert len({tuple(r) for r in X}) == 5


def test_bad_input_gives_clear_errors_or_a_failure():
    case = game_suite("quick")[0]
    d = case.x.size
    with pytest.raises(ValueError, match=r"shape \(5,\) for case 'DiscreteToy.*replicate 0"):
        case.run(lambda g, x, b, s: np.zeros(d - 1), replicates=4)
    with pytest.raises(ValueError, match=r"samples\[0, 2\] = nan.*replicate 0, coordinate 2"):
        case.run(lambda g, x, b, s: np.where(np.arange(d) == 2, np.nan, 0.0), replicates=4)
    with pytest.raises(ValueError, match="not an array of numbers"):
        case.run(lambda g, x, b, s: "gradient", replicates=4)
    with pytest.raises(ValueError, match=r"registered\('bc-hg'\) is a single-follower"):
        case.run(registered("bc-hg"), replicates=4)
    # estimates whose sums of squares overflow: rejected by the exact covariance; the
    # sample test sees only noise, and its pass says so (it resolves nothing)
    def huge(g, x, b, s):
        return np.full(d, 1e307) * (1 + s % 7)

    with np.errstate(all="ignore"):
        assert case.run(huge, replicates=10, reference="bc-hg").reject
        out = case.evaluate(huge, replicates=10)
    assert out.resolution > 1e290 and np.isfinite(out.decide.statistic)
    assert case.run(lambda g, x, b, s: case.exact + 1e-3, replicates=10).reject
    with pytest.raises(ValueError, match="reference = 'naive': must be one of"):
        case.run(registered_game("bc-hg"), reference="naive")
    with pytest.raises(ValueError, match="do not combine it with unbiased=False"):
        case.run(registered_game("bc-hg"), reference="bc-hg", unbiased=False)
    with pytest.raises(ValueError, match="estimator = 'hpgd': must be one of"):
        registered_game("hpgd")
    with pytest.raises(ValueError, match="suite = 'full'"):
        game_suite("full")
    for bad in (0.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="require_resolution"):
            case.assert_passes(registered_game("bc-hg"), require_resolution=bad)
    with pytest.raises(AssertionError, match=r"DiscreteToy.*resolve only a relative bias"):
        case.assert_passes(registered_game("bc-hg"), budget=200, replicates=10,
                           require_resolution=1.0)
    with pytest.raises(AssertionError, match="follower observes"):
        game_suite("quick")[2].assert_passes(_mutant("game-no-initial-term"), replicates=30)


def test_plugin_options_set_the_game_defaults():
    """``--bilevel-suite``, ``--bilevel-require-resolution`` and ``--bilevel-game-reference``
    reach every ``bilevel_game_case``; a call's own ``reference=`` still wins."""
    from exact_bilevel import pytest_plugin

    assert pytest_plugin.GAME_REFERENCES == mg.GAME_ESTIMATORS

    class Config:
        def getoption(self, name):
            return {"--bilevel-suite": "quick", "--bilevel-game-reference": "direct-only",
                    "--bilevel-require-resolution": 1.0}[name]

    class Metafunc:
        fixturenames = ("bilevel_game_case",)
        config = Config()

        def parametrize(self, name, values, ids):
            self.name, self.cases, self.ids = name, values, ids

    meta = Metafunc()
    pytest_plugin.pytest_generate_tests(meta)
    assert meta.name == "bilevel_game_case" and len(meta.cases) == 3
    assert meta.ids == [c.name for c in game_suite("quick")]
    assert all(c.default_reference == "direct-only" and c.default_require_resolution == 1.0
               for c in meta.cases)
    res = meta.cases[1].assert_passes(registered_game("direct-only"))
    assert res.name == "known-covariance"
    assert meta.cases[1].assert_passes(registered_game("bc-hg"), reference="bc-hg").p_value > 0
    with pytest.raises(AssertionError, match="required: 1"):
        meta.cases[0].assert_passes(registered_game("bc-hg"), reference="bc-hg", budget=200,
                                    replicates=10)
