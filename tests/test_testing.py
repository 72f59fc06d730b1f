"""The acceptance tests themselves: calibrated false-alarm rate and power on synthetic data.

The calibration loops draw Gaussian replicates with a known mean (fixed seed)
and check that the realised rejection rate at alpha = 0.05 over 2000 trials is
within the binomial 99.99% band [0.032, 0.070] (false alarm of this check ~1e-4).
"""

import numpy as np
import pytest

from exact_bilevel.testing import (
    assert_consistent,
    assert_matches_exact,
    assert_unbiased,
    bonferroni_test,
    consistency_test,
    hotelling_test,
    unbiasedness_test,
)

TRIALS, ALPHA = 2000, 0.05


# correlated coordinates: covariance L L^T
L = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 1.2]])


def _gaussian(rng, R, mean, scale):
    return mean + scale * rng.normal(size=(R, mean.size)) @ L.T


@pytest.mark.parametrize("test", [hotelling_test, bonferroni_test])
def test_false_alarm_rate(test):
    rng = np.random.default_rng(11)
    mean = np.array([0.3, -1.0, 2.0])
    rejections = sum(test(_gaussian(rng, 40, mean, 0.5), mean, ALPHA).reject
                     for _ in range(TRIALS))
    rate = rejections / TRIALS
    if test is hotelling_test:  # exact level
        assert 0.032 <= rate <= 0.070
    else:  # Bonferroni is conservative
        assert rate <= 0.070


@pytest.mark.parametrize("test", [hotelling_test, bonferroni_test])
def test_power_against_a_shift_of_four_standard_errors(test):
    rng = np.random.default_rng(12)
    mean = np.array([0.3, -1.0, 2.0])
    se = 0.5 * np.linalg.norm(L[2]) / np.sqrt(40)
    shift = np.array([0.0, 0.0, 4 * se])
    rate = np.mean([test(_gaussian(rng, 40, mean + shift, 0.5), mean, ALPHA).reject
                    for _ in range(500)])
    assert rate > 0.8


def test_deterministic_estimates_are_compared_exactly():
    X = np.tile([1.0, 2.0], (10, 1))
    assert not unbiasedness_test(X, [1.0, 2.0]).reject
    for test in (hotelling_test, bonferroni_test):
        res = test(X, [1.0, 2.0 + 1e-9])
        assert res.reject and "REJECT" in res.report
    mixed = np.column_stack([np.zeros(50), np.random.default_rng(0).normal(size=50)])
    assert hotelling_test(mixed, [0.0, 0.0]).p_value > 0.001
    assert hotelling_test(mixed, [1e-3, 0.0]).reject


def test_assert_unbiased_reports():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 2)) + np.array([5.0, 0.0])
    with pytest.raises(AssertionError, match=r"REJECT; relative error of the mean .* cosine"):
        assert_unbiased(X, [0.0, 0.0])
    assert_unbiased(X, [5.0, 0.0])


def test_consistency_test():
    rng = np.random.default_rng(4)
    g = np.array([1.0, -2.0])
    small = g + rng.normal(size=(200, 2))          # error ~ N^-1/2 at N
    large = g + 0.5 * rng.normal(size=(200, 2))    # ... and at 4N
    assert_consistent(small, large, g)
    biased_small = g + 0.2 + 0.1 * rng.normal(size=(200, 2))
    biased_large = g + 0.2 + 0.05 * rng.normal(size=(200, 2))
    res = consistency_test(biased_small, biased_large, g)
    assert res.reject and res.statistic < 1.5 and "REJECT" in res.report
    with pytest.raises(AssertionError, match="consistency: root-MSE"):
        assert_consistent(biased_small, biased_large, g)


def test_assert_matches_exact():
    assert_matches_exact([1.0, 2.0 + 1e-12], [1.0, 2.0], rtol=1e-11)
    with pytest.raises(AssertionError, match=r"gradient\[1\] = 2.001 but exact\[1\] = 2.0"):
        assert_matches_exact([1.0, 2.001], [1.0, 2.0])


@pytest.mark.parametrize("call, match", [
    (lambda: hotelling_test(np.zeros((1, 2)), [0, 0]), "at least 2 replicates"),
    (lambda: hotelling_test(np.ones((5, 2)), [0, 0, 0]), "exact: axis 0 must have length 2"),
    (lambda: hotelling_test(np.random.default_rng(0).normal(size=(3, 4)), np.zeros(4)),
     "Hotelling needs more replicates"),
    (lambda: bonferroni_test(np.zeros((5, 2)), [0, 0], alpha=1.5), "alpha = 1.5"),
    (lambda: bonferroni_test(np.full((5, 2), np.nan), [0, 0]), "samples"),
])
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- calibration beyond Gaussian data: uniformity of p-values ----------------------
def _ks_uniform(p):
    """Kolmogorov-Smirnov p-value of ``p`` against U(0, 1)."""
    import scipy.stats
    return scipy.stats.kstest(p, "uniform").pvalue


def _pvalues(test, draw, trials, mean):
    rng = np.random.default_rng(21)
    return np.array([test(draw(rng), mean, 0.05).p_value for _ in range(trials)])


CENTRED = {  # zero-mean laws: Gaussian, skewed, heavy-tailed, each in 3 correlated coordinates
    "gaussian": lambda rng, R: rng.normal(size=(R, 3)) @ L.T,
    "exponential": lambda rng, R: (rng.exponential(size=(R, 3)) - 1.0) @ L.T,
    "student-t5": lambda rng, R: rng.standard_t(5, size=(R, 3)) @ L.T,
}


@pytest.mark.parametrize("law, R", [("gaussian", 6), ("gaussian", 40), ("exponential", 200),
                                    ("student-t5", 60)])
@pytest.mark.parametrize("test", [hotelling_test, bonferroni_test])
def test_p_values_are_uniform_or_conservative(law, R, test):
    """Under H0 the p-values are U(0, 1) (Hotelling on Gaussian data: exact) or
    stochastically larger (Bonferroni; skewed or heavy-tailed data where Cochran's
    rule R > 25 G1^2 holds: exponential G1 = 2 needs R > 100). Checked by the
    realised rate at alpha = 0.05 over 1500 trials (binomial 99.99% band upper end
    0.075) and, for Hotelling, a KS test of uniformity (false alarm 1e-3)."""
    import warnings as _w
    mean = np.array([0.3, -1.0, 2.0])
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        p = _pvalues(test, lambda rng: mean + CENTRED[law](rng, R), 1500, mean)
    assert np.mean(p < 0.05) <= 0.075
    if test is hotelling_test:
        assert _ks_uniform(p) > 1e-3


def test_a_chi_square_p_value_would_be_caught():
    """Power of the calibration check: Hotelling with the large-R chi-square law in place
    of the exact F law is anti-conservative at small R, and the KS check rejects it."""
    import scipy.stats
    mean = np.array([0.3, -1.0, 2.0])
    rng = np.random.default_rng(22)
    p = []
    for _ in range(1500):
        X = mean + CENTRED["gaussian"](rng, 6)
        t2 = hotelling_test(X, mean, 0.05).statistic
        p.append(scipy.stats.chi2.sf(t2, 3))  # the wrong law
    assert _ks_uniform(np.array(p)) < 1e-6


def test_rare_event_estimates_are_flagged_not_silently_rejected():
    """Heavy right tail (lognormal sigma = 1.5, skewness ~ 33): Cochran's rule fires,
    the result says so and an EstimateTailWarning is emitted; Gaussian data never
    trigger it here."""
    from exact_bilevel.testing import EstimateTailWarning, tail_diagnostic

    rng = np.random.default_rng(5)
    X = rng.lognormal(0.0, 1.5, size=(100, 2))
    with pytest.warns(EstimateTailWarning, match="Cochran"):
        res = hotelling_test(X, np.full(2, np.exp(1.5 ** 2 / 2)), 0.01)
    assert not res.approximation_ok and "WARNING" in res.report
    ok = [tail_diagnostic(rng.normal(size=(100, 3)))[0] for _ in range(200)]
    assert all(ok)


def test_near_deterministic_follower_triggers_the_diagnostic():
    """BC-HG on a follower whose smallest action probability is 2.5e-7: the estimates'
    mean lives in an event no replicate contains, so the correct estimator is rejected
    at p ~ 1e-122 while its samples look normal. The problem-aware check says why
    (expected visits of the rare pair) instead of a silent verdict."""
    from exact_bilevel.experiments.examples import random_problem
    from exact_bilevel.testing import EstimateTailWarning
    from exact_bilevel.validation import convergence

    problem, x = random_problem(3, 2, 2, seed=0, gamma=0.5, tau=0.05)
    assert problem.follower_state(x).solution.policy.min() < 1e-6
    with pytest.warns(EstimateTailWarning, match="rare-event regime"):
        res = convergence.check(problem, x, "bc-hg", "exact", seed=0, alpha=0.01)
    assert not res.approximation_ok and "expected to be visited" in res.report


def test_bias_bound_test_levels_and_power():
    """At the boundary of H0 (bias = allowance) the rejection rate is <= alpha; a bias
    of allowance + 5 se is caught; allowance 0 reduces to a two-sided t test."""
    from exact_bilevel.testing import bias_bound_test

    rng = np.random.default_rng(8)
    g = np.zeros(3)
    se = 1.0 / np.sqrt(50)
    at_boundary = np.mean([bias_bound_test(0.2 + rng.normal(size=(50, 3)), g, 0.2, 0.05).reject
                           for _ in range(1000)])
    assert at_boundary <= 0.05
    beyond = np.mean([bias_bound_test(0.2 + 5 * se + rng.normal(size=(50, 3)), g, 0.2,
                                      0.05).reject for _ in range(300)])
    assert beyond > 0.9
    with pytest.raises(ValueError, match=r"allowance\[1\] = -1.0: must be >= 0"):
        bias_bound_test(rng.normal(size=(10, 3)), g, [0.0, -1.0, 0.0])
