"""The distribution-free exact-covariance test (issue 25, item 3): its level holds where
the chi-square's does not (a rare event carrying the variance), its power on a biased
mean is the one the docs state, the verdict rule picks it in the rare-event regime, and
the exact-covariance statistics stay finite on estimates of any finite magnitude."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from exact_bilevel.cli import main
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import save_problem
from exact_bilevel.validation import acceptance
from exact_bilevel.validation.convergence import (
    MIN_EXPECTED_VISITS,
    is_unresolved_rejection,
    known_covariance_verdict,
)

D, R, ALPHA = 5, 100, 0.01
MIX = np.linalg.qr(np.random.default_rng(5).normal(size=(D, D)))[0] @ np.diag(
    [1.0, 2.0, 0.5, 3.0, 1.5])  # a non-diagonal covariance: Sigma = MIX MIX^T (q (1 - q))


def _rare_sets(n_sets: int, q: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_sets`` sets of ``R`` replicates ``X = g + MIX (B - q) / sqrt(q (1 - q))``, ``B``
    independent Bernoulli(q) per coordinate: mean ``g``, covariance ``MIX MIX^T`` exactly,
    and almost all the variance in rare hits (``R q`` expected hits per coordinate)."""
    rng = np.random.default_rng(seed)
    B = (rng.random(size=(n_sets, R, D)) < q).astype(float)
    g = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    X = g + ((B - q) / math.sqrt(q * (1 - q))) @ MIX.T
    return X, g, MIX @ MIX.T


def test_chebyshev_holds_its_level_where_the_chi_square_does_not() -> None:
    """Rare events (q = 2e-4 per replicate and coordinate, 0.1 hits expected per set of
    100 replicates): one hit moves T by ~1 / (R q) = 50 > chi2_5(0.99) = 15.1, so the
    chi-square rejects a correct mean about 1 - exp(-0.1) = 9.5% of the time; the
    Chebyshev bound needs T >= 500 (some four hits at once) and holds alpha. E T = r is
    exact under any law (mean of T within 4 standard errors of 5)."""
    X, g, cov = _rare_sets(3000, 2e-4, seed=1)
    chi = [acceptance.known_covariance_test(x, g, cov, ALPHA) for x in X]
    cheb = [acceptance.chebyshev_test(x, g, cov, ALPHA) for x in X]
    chi_rejections = sum(r.reject for r in chi)
    cheb_rate = np.mean([r.reject for r in cheb])
    lo = scipy.stats.binomtest(chi_rejections, len(chi)).proportion_ci(0.999).low
    assert lo > 5 * ALPHA  # the chi-square's level fails, with 99.9% confidence
    assert cheb_rate <= ALPHA  # ... and the distribution-free bound holds
    T = np.array([r.statistic for r in cheb])
    assert abs(T.mean() - D) < 4 * T.std() / math.sqrt(T.size)
    np.testing.assert_allclose(T, [r.statistic for r in chi], rtol=1e-13)  # same statistic
    # its p-value is r / T: valid (P(p <= u) <= u) at every u, not only at alpha
    p = np.array([r.p_value for r in cheb])
    for u in (0.02, 0.05, 0.2, 0.5):
        assert np.mean(p <= u) <= u


@pytest.mark.parametrize("test, mahalanobis", [(acceptance.known_covariance_test, 4.693),
                                               (acceptance.chebyshev_test, 23.555)])
def test_power_cost_at_d_5(test, mahalanobis: float) -> None:
    """The documented power cost: Gaussian estimates whose mean is off by the stated
    Mahalanobis length (in standard errors of the mean) are rejected with power 0.9 at
    d = 5, alpha = 0.01 (1500 sets; binomial 99.9% interval). The lengths are the
    noncentral chi-square solutions, re-derived here."""
    crit = D / ALPHA if test is acceptance.chebyshev_test else scipy.stats.chi2.isf(ALPHA, D)
    lam = scipy.optimize.brentq(lambda v: scipy.stats.ncx2.sf(crit, D, v) - 0.9, 1.0, 1e4)
    assert math.sqrt(lam) == pytest.approx(mahalanobis, abs=1e-3)
    rng = np.random.default_rng(2)
    cov = MIX @ MIX.T
    u = rng.normal(size=D)
    bias = u * mahalanobis / math.sqrt(R * u @ np.linalg.solve(cov, u))
    g = np.zeros(D)
    n = 1500
    power = np.mean([test(g + bias + rng.normal(size=(R, D)) @ MIX.T, g, cov, ALPHA).reject
                     for _ in range(n)])
    lo, hi = scipy.stats.binom.ppf([5e-4, 1 - 5e-4], n, 0.9) / n
    assert lo <= power <= hi


def test_chebyshev_rejects_a_biased_rare_event_estimator() -> None:
    """Power on a mutant in the rare-event law: the same estimates shifted by 30 standard
    errors (Mahalanobis) are rejected in >= 90% of sets."""
    X, g, cov = _rare_sets(300, 2e-4, seed=3)
    u = np.ones(D)
    shift = u * 30.0 / math.sqrt(R * u @ np.linalg.solve(cov, u))
    assert np.mean([acceptance.chebyshev_test(x + shift, g, cov).reject for x in X]) >= 0.9


def test_chebyshev_edge_cases() -> None:
    cov = np.diag([0.0, 0.25])
    X = np.array([[1.0, 2.0], [1.0, 2.5], [1.0, 1.5]])
    res = acceptance.chebyshev_test(X, np.array([1.0, 2.0]), cov)
    assert res.statistic == 0.0 and res.p_value == 1.0 and not res.reject
    off = acceptance.chebyshev_test(X, np.array([1.1, 2.0]), cov)  # off in the null space
    assert off.statistic == math.inf and off.p_value == 0.0 and off.reject
    assert acceptance.chebyshev_test(np.ones((4, 2)), np.ones(2), np.zeros((2, 2))).p_value == 1
    with pytest.raises(ValueError, match="alpha"):
        acceptance.chebyshev_test(X, np.array([1.0, 2.0]), cov, alpha=1.5)
    with pytest.raises(ValueError, match="covariance"):
        acceptance.chebyshev_test(X, np.array([1.0, 2.0]), np.eye(3))


def test_a_non_number_statistic_never_accepts(monkeypatch) -> None:
    """Both exact-covariance tests reject (and say so) if the statistic is not a number."""
    monkeypatch.setattr(acceptance, "_known_covariance_statistic",
                        lambda X, g, S: (math.nan, 1, np.zeros(X.shape[1])))
    for test in (acceptance.known_covariance_test, acceptance.chebyshev_test):
        res = test(np.zeros((3, 1)), np.zeros(1), np.eye(1))
        assert res.reject and "not a number: REJECT" in res.report


def test_exact_covariance_statistics_stay_finite_on_huge_estimates() -> None:
    """Regression: estimates of ~1e307 gave a NaN statistic with a RuntimeWarning (the
    mean of 100 of them overflowed). Now: exact estimates -> T = 0 and accept;
    estimates a few ulps off -> a finite (huge) T and reject; a T beyond float64's range
    -> inf, a computed value, reject. No warning in any case."""
    g = np.array([1e307, -3e306])
    X = np.tile(g, (100, 1))
    Y = X.copy()
    Y[:7, 0] = np.nextafter(Y[:7, 0], np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for test in (acceptance.known_covariance_test, acceptance.chebyshev_test):
            ok = test(X, g, np.eye(2))
            assert ok.statistic == 0.0 and not ok.reject
            off = test(Y, g, 1e308 * np.eye(2))
            assert math.isfinite(off.statistic) and off.statistic > 1e250 and off.reject
            assert np.all(np.isfinite(off.z)) and off.p_value == pytest.approx(
                0.0, abs=1e-200)
            over = test(Y, g, np.eye(2))
            assert over.statistic == math.inf and over.reject and over.p_value == 0.0


@pytest.mark.parametrize("k", [-1000, -300, 0, 300, 500])
def test_exact_covariance_statistics_are_invariant_under_powers_of_two(k: int) -> None:
    """(X, g, Sigma) -> (2^k X, 2^k g, 2^2k Sigma) changes neither statistic nor verdict,
    and so does scaling Sigma alone by 2^2j together with X - g by 2^j (k = +-1000:
    estimates of 1e-301 / 1e301)."""
    rng = np.random.default_rng(4)
    cov = MIX @ MIX.T
    g = rng.normal(size=D)
    X = g + 0.2 + rng.normal(size=(R, D)) @ MIX.T
    for test in (acceptance.known_covariance_test, acceptance.chebyshev_test):
        a = test(X, g, cov)
        j = max(-500, min(500, k))  # 2^2j Sigma stays finite and normal
        b = test(np.ldexp(X, j), np.ldexp(g, j), np.ldexp(cov, 2 * j))
        c = test(np.ldexp(X, k), np.ldexp(g, k), cov)  # the statistic scales by 2^2k
        assert b.statistic == pytest.approx(a.statistic, rel=1e-12) and b.reject == a.reject
        np.testing.assert_allclose(b.z, a.z, rtol=1e-12)
        with np.errstate(over="ignore"):
            want = float(np.ldexp(a.statistic, 2 * k))
        assert c.statistic == pytest.approx(want, rel=1e-12)


def test_the_verdict_rule_by_regime() -> None:
    """Regular regime: the chi-square decides. Rare-event regime: a chi-square acceptance
    stands, a rejection counts only when the Chebyshev test rejects too, and a rejection by
    the chi-square alone is unresolved (all three outcomes exercised)."""
    X, g, cov = _rare_sets(400, 2e-4, seed=6)
    seen = set()
    for Xi in X:
        chi = acceptance.known_covariance_test(Xi, g, cov, ALPHA)
        cheb = acceptance.chebyshev_test(Xi, g, cov, ALPHA)
        regular = known_covariance_verdict(Xi, g, cov, MIN_EXPECTED_VISITS, ALPHA)
        rare = known_covariance_verdict(Xi, g, cov, 0.02, ALPHA)
        assert regular.name == "known-covariance" and "regular regime" in regular.report
        assert regular.reject == chi.reject and not is_unresolved_rejection(regular)
        assert "rare-event regime" in rare.report
        assert rare.statistic == regular.statistic
        if not chi.reject:
            outcome = "pass"
            assert rare.name == "known-covariance" and not rare.reject
        elif cheb.reject:
            outcome = "fail"
            assert rare.name == "chebyshev" and rare.reject
        else:
            outcome = "unresolved"
            assert rare.reject and "UNRESOLVED" in rare.report
        assert is_unresolved_rejection(rare) == (outcome == "unresolved")
        seen.add(outcome)
    assert seen == {"pass", "unresolved"}  # a correct estimator never fails the bound here
    biased = known_covariance_verdict(X[0] + 40 * np.sqrt(np.diag(cov) / X.shape[1]), g, cov,
                                      0.02, ALPHA)
    assert biased.name == "chebyshev" and biased.reject and not is_unresolved_rejection(biased)
    with pytest.raises(ValueError, match="rarest_visits"):
        known_covariance_verdict(X[0], g, cov, math.nan, ALPHA)


@pytest.mark.filterwarnings("ignore::exact_bilevel.validation.acceptance.EstimateTailWarning")
def test_check_reports_the_regime_and_both_exact_tests(tmp_path, capsys) -> None:
    """`exact-bilevel check` on bc-hg estimates: in the regular regime the chi-square
    decides; on a near-deterministic follower (tau = 0.02: some on-policy pair expected far
    fewer than 10 times) a rejection would also need the Chebyshev test; both are
    reported."""
    for tau, rare in ((1.0, False), (0.02, True)):
        problem, x = random_problem(4, 3, 2, seed=9, tau=tau)
        path = tmp_path / f"p{tau}.json"
        save_problem(path, problem, x)
        out = tmp_path / f"e{tau}.json"
        assert main(["estimate", str(path), "--estimator", "bc-hg", "--transitions", "4000",
                     "--replicates", "40", "--quiet", "--output", str(out)]) == 0
        main(["check", str(path), "--estimate", str(out), "--json"])
        report = json.loads(capsys.readouterr().out)
        assert report["regime"]["rare_event"] is rare
        # a correct estimator: the chi-square accepts (or, rare, only it rejects)
        assert report["test"] == "known-covariance"
        assert report["other_known_covariance_test"]["test"] == "chebyshev"
        assert report["verdict"] in ("pass", "inconclusive")  # never a fail here
        main(["check", str(path), "--estimate", str(out)])
        text = capsys.readouterr().out
        assert ("rare-event regime" if rare else "regular regime") in text


@pytest.mark.filterwarnings("ignore::exact_bilevel.validation.acceptance.EstimateTailWarning")
def test_check_calls_a_chi_square_only_rejection_inconclusive_when_rare(tmp_path,
                                                                        capsys) -> None:
    """Estimates shifted so that T = R delta^T Sigma^-1 delta lies between the chi-square's
    threshold and the Chebyshev threshold r / alpha: in the rare-event regime `check`
    says INCONCLUSIVE (exit 1), in the regular regime FAIL (exit 1); shifted beyond r /
    alpha, FAIL in both."""
    from exact_bilevel.estimators import moments

    budget, R = 4000, 40
    for tau, rare in ((1.0, False), (0.02, True)):
        problem, x = random_problem(4, 3, 2, seed=9, tau=tau)
        path = tmp_path / f"p{tau}.json"
        save_problem(path, problem, x)
        out = tmp_path / f"e{tau}.json"
        assert main(["estimate", str(path), "--estimator", "bc-hg", "--transitions",
                     str(budget), "--replicates", str(R), "--quiet", "--output", str(out)]) == 0
        data = json.loads(out.read_text())
        m = moments(problem, x, "bc-hg", budget)
        X = np.asarray(data["estimates"], dtype=float)
        v = np.zeros(X.shape[1])
        v[0] = 1.0
        unit = v / math.sqrt(R * v @ np.linalg.solve(m.covariance, v))  # T(unit) = 1
        for T_target, want in ((60.0, "inconclusive" if rare else "fail"), (4000.0, "fail")):
            shifted = m.mean + T_target ** 0.5 * unit + 1e-9 * (X - X.mean(axis=0))
            data["estimates"] = shifted.tolist()
            est = tmp_path / f"s{tau}-{T_target}.json"
            est.write_text(json.dumps(data))
            code = main(["check", str(path), "--estimate", str(est), "--json"])
            report = json.loads(capsys.readouterr().out)
            assert report["regime"]["rare_event"] is rare
            assert code == 1 and report["verdict"] == want, report["regime"]
            if want == "inconclusive":
                assert main(["check", str(path), "--estimate", str(est)]) == 1
                assert "only the chi-square rejects" in capsys.readouterr().out
