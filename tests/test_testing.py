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
    with pytest.raises(AssertionError, match="consistency: MSE"):
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
