"""The sample-size planner (issue 25, item 4) and the exact means of the BC-HG mutants.

Independent routes: the mutants' exact means (occupancy measures) against
``moments`` (backward recursions) to 1e-12 and against simulation; Imhof's quadratic-form
tail against ``scipy.stats.ncx2`` and Monte Carlo; the planner's predicted power against
the real test's rejection rate (fixed seeds, 200 repetitions, +-0.1).
"""

import json

import numpy as np
import pytest
import scipy.stats

from exact_bilevel.cli import main
from exact_bilevel.estimators import leader_knowledge, moments, replicates
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import save_problem
from exact_bilevel.validation.acceptance import known_covariance_test
from exact_bilevel.validation.convergence import (
    MIN_EXPECTED_VISITS,
    is_unresolved_rejection,
    known_covariance_verdict,
    rare_event_diagnostic,
)
from exact_bilevel.validation.mutant_moments import mutant_moments
from exact_bilevel.validation.mutants import (
    BCHG_FAMILY,
    MUTANTS,
    bchg_family_mean,
    mutant_mean,
    mutant_replicates,
)
from exact_bilevel.validation.planning import (
    MAX_REPLICATES,
    MIN_TOTAL_EPISODES,
    Alternative,
    chebyshev_power,
    chebyshev_power_under,
    hotelling_power,
    known_covariance_power,
    known_covariance_power_under,
    noncentrality,
    plan_sample_size,
    quadratic_form,
    quadratic_form_sf,
    regular_replicates,
    verdict_replicates,
)

OWN_GAMMA = dict(n_states=4, n_actions=3, n_params=2, seed=3, gamma=0.8, tau=0.5,
                 parameterize="reward", objective="leader_return_own_gamma")

#: A problem whose plan crosses regimes: at tau = 0.1 the rarest pair has occupancy 2.3e-7
#: per transition, so a bias of 0.1 |g| at power 0.9 lands in the regular regime at budget
#: 1000 (where the rule's plan is the regime's boundary) and in the rare-event regime above.
SMALL_TAU = OWN_GAMMA | dict(tau=0.1)


@pytest.mark.parametrize("parameterize,objective", [
    ("reward", "leader_return"), ("transitions", "leader_return_own_gamma"),
    ("both", "leader_return_far_sighted")])
def test_mutant_means_agree_with_moments_and_exact_identities(parameterize, objective):
    """The occupancy route with the correct options is moments' bc-hg mean (backward
    recursions) to 1e-12; sign-flip and tau-not-inverse are exact combinations of bc-hg
    and naive (indirect term times -1, tau^2)."""
    problem, x = random_problem(4, 3, 2, seed=11, gamma=0.7, tau=0.6,
                                parameterize=parameterize, objective=objective)
    know = leader_knowledge(problem, x)
    bchg = moments(problem, x, "bc-hg", know=know).mean
    naive = moments(problem, x, "naive", know=know).mean
    scale = np.max(np.abs(bchg)) + np.max(np.abs(naive))
    np.testing.assert_allclose(bchg_family_mean(know), bchg, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(mutant_mean("sign-flip", know), 2 * naive - bchg, rtol=0,
                               atol=1e-12 * scale)
    np.testing.assert_allclose(mutant_mean("tau-not-inverse", know),
                               naive + problem.tau**2 * (bchg - naive), rtol=0,
                               atol=1e-12 * scale)


def test_mutant_means_agree_with_simulation():
    """Each BC-HG mutant's exact mean against the mean of 40 of its estimates (budget
    5000): |z| below the two-sided Bonferroni quantile at 1e-4 over 16 coordinates; the
    same check rejects a mutant's replicates against another mutant's mean (power)."""
    problem, x = random_problem(**OWN_GAMMA)
    know = leader_knowledge(problem, x)
    crit = scipy.stats.norm.isf(1e-4 / (2 * 2 * len(BCHG_FAMILY)))
    means, sims = {}, {}
    for k, name in enumerate(BCHG_FAMILY):
        X = mutant_replicates(name, know, 5000, 40, seed=100 + k)
        means[name], sims[name] = mutant_mean(name, know), X
        z = (X.mean(axis=0) - means[name]) / (X.std(axis=0, ddof=1) / np.sqrt(40))
        assert np.max(np.abs(z)) < crit, (name, z)
    X = sims["sum-from-t+1"]
    z = (X.mean(axis=0) - means["grad-r-for-dQ"]) / (X.std(axis=0, ddof=1) / np.sqrt(40))
    assert np.max(np.abs(z)) > crit
    with pytest.raises(ValueError, match="no exact mean"):
        mutant_mean("sobirl-no-centring", know)
    assert MUTANTS["sign-flip"].options is not None and MUTANTS["hpgd-dq-from-t+1"].options is None


def test_quadratic_form_tail_against_ncx2_and_monte_carlo():
    for d, nc, thr in [(1, 0.0, 3.8), (2, 5.0, 9.21), (3, 0.1, 11.3), (4, 10.0, 13.3)]:
        want = scipy.stats.ncx2.sf(thr, d, nc) if nc > 0 else scipy.stats.chi2.sf(thr, d)
        got = quadratic_form_sf(thr, np.ones(d), np.r_[nc, np.zeros(d - 1)])
        assert abs(got - want) < 1e-7
    rng = np.random.default_rng(0)
    y = rng.standard_normal((200_000, 3))
    for w, nc, thr in [([0.3, 2.0], [1.0, 4.0], 6.0), ([5.0, 0.2], [30.0, 0.1], 9.2),
                       ([0.5, 1.0, 2.0], [1.0, 0.0, 3.0], 8.0)]:
        w, nc = np.array(w), np.array(nc)
        mc = np.mean(np.sum(w * (y[:, :w.size] + np.sqrt(nc)) ** 2, axis=1) > thr)
        assert abs(quadratic_form_sf(thr, w, nc) - mc) < 5 * np.sqrt(mc * (1 - mc) / y.shape[0])
    S = np.array([[2.0, 0.5], [0.5, 1.0]])
    b = np.array([0.3, -0.2])
    same = known_covariance_power_under(S, b, S, 30, 0.01)
    assert abs(same - known_covariance_power(30 * noncentrality(S, b)[0], 2, 0.01)) < 1e-7
    assert abs(known_covariance_power(0.0, 2, 0.01) - 0.01) < 1e-12


def test_plan_is_the_smallest_R_and_states_its_terms():
    problem, x = random_problem(**OWN_GAMMA)
    plan = plan_sample_size(problem, x, "bc-hg", 0.1, power=0.8, alpha=0.01,
                            budgets=[500, 4000])
    one = moments(problem, x, "bc-hg")
    lam = np.linalg.eigvalsh(one.covariance)
    g = one.mean
    # the worst direction: |b|^2 / lambda_max per episode
    assert plan.noncentrality_per_episode == pytest.approx(
        (0.1 * np.linalg.norm(g)) ** 2 / lam.max(), rel=1e-10)
    assert np.linalg.norm(plan.bias_vector) == pytest.approx(0.1 * np.linalg.norm(g))
    for r in plan.rows:
        per = r.episodes * plan.noncentrality_per_episode
        assert r.power == known_covariance_power(r.replicates * per, 2, 0.01) >= 0.8
        assert (known_covariance_power((r.replicates - 1) * per, 2, 0.01) < 0.8
                or r.replicates * r.episodes <= MIN_TOTAL_EPISODES + r.episodes)
        assert r.total == r.replicates * r.budget
        assert r.sample_replicates >= r.replicates and r.sample_replicates > 4
    assert plan.cheapest.total == min(r.total for r in plan.rows)
    along_g = plan_sample_size(problem, x, "bc-hg", 0.1, power=0.8, budgets=[4000],
                               direction="gradient")
    assert along_g.noncentrality_per_episode >= plan.noncentrality_per_episode
    assert plan_sample_size(problem, x, "naive", 0.1, budgets=[4000]).estimator_bias > 0.1


@pytest.mark.parametrize("kwargs,message", [
    (dict(bias=0.0), "bias = 0.0: must be a finite number > 0"),
    (dict(bias=-1.0), "bias = -1.0"),
    (dict(power=1.0), "power = 1.0: must satisfy 0 < power < 1"),
    (dict(alpha=0.0), "alpha = 0.0"),
    (dict(power=0.005), "must exceed alpha"),
    (dict(estimator="hpgd"), "estimator = 'hpgd': out of scope for exact moments: its dQ_hat"),
    (dict(estimator="nope"), "estimator = 'nope': unknown"),
    (dict(budgets=[2]), "budget = 2: its batch of 1 episode"),
    (dict(budgets=[0]), "budgets\\[0\\] = 0"),
    (dict(direction="up"), "direction = 'up'"),
])
def test_plan_bad_input_names_the_field(kwargs, message):
    problem, x = random_problem(**OWN_GAMMA)
    args = dict(estimator="bc-hg", bias=0.1) | kwargs
    with pytest.raises(ValueError, match=message):
        plan_sample_size(problem, x, args.pop("estimator"), args.pop("bias"), **args)


def test_planned_power_matches_the_real_test():
    """Fixed seeds, 200 repetitions of the real exact-covariance test at the planned
    (N, R), +-0.1: (a) bc-hg shifted by the planned bias b (exactly the planner's
    alternative: mean g + b, bc-hg's covariance); (b) the mutant sum-from-t+1, whose
    exact bias is planned and whose own covariance (1000 independent estimates) enters
    known_covariance_power_under."""
    problem, x = random_problem(**OWN_GAMMA)
    know = leader_knowledge(problem, x)
    N, reps = 1024, 200
    cov = moments(problem, x, "bc-hg", N, know=know).covariance
    g = moments(problem, x, "bc-hg", know=know).mean
    plan = plan_sample_size(problem, x, "bc-hg", 0.6, power=0.7, budgets=[N])
    R = plan.rows[0].replicates
    X, _ = replicates(problem, x, "bc-hg", N, reps * R, seed=1)
    X = X + plan.bias_vector
    rate = np.mean([known_covariance_test(X[j * R:(j + 1) * R], g, cov).reject
                    for j in range(reps)])
    assert abs(rate - plan.rows[0].power) <= 0.1, (rate, plan.rows[0].power)
    N = 256
    cov = moments(problem, x, "bc-hg", N, know=know).covariance
    b = mutant_mean("sum-from-t+1", know) - g
    plan = plan_sample_size(problem, x, "bc-hg", float(np.linalg.norm(b) / np.linalg.norm(g)),
                            power=0.7, budgets=[N], direction=b)
    R = plan.rows[0].replicates
    X = mutant_replicates("sum-from-t+1", know, N, reps * R, seed=2)
    cov_m = np.cov(mutant_replicates("sum-from-t+1", know, N, 1000, seed=3), rowvar=False)
    predicted = known_covariance_power_under(cov, b, cov_m, R, 0.01)
    rate = np.mean([known_covariance_test(X[j * R:(j + 1) * R], g, cov).reject
                    for j in range(reps)])
    assert abs(rate - predicted) <= 0.1, (rate, predicted)


def _problem_file(tmp_path):
    problem, x = random_problem(**OWN_GAMMA)
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    return str(path)


def test_cli_plan_text_and_json(tmp_path, capsys):
    path = _problem_file(tmp_path)
    assert main(["plan", path, "--estimator", "bc-hg", "--bias", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "cheapest (exact covariance)" in out and "R (sample cov.)" in out
    assert "least detectable direction" in out and "FAIL verdict" in out
    assert "regime" in out and "R (no pass)" in out and "rests on the chi-square test" in out
    assert main(["plan", path, "--estimator", "direct-only", "--bias", "0.2", "--budget",
                 "1000", "4000", "--power", "0.8", "--direction", "gradient", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["estimator"] == "naive" and [r["budget"] for r in data["rows"]] == [1000, 4000]
    assert data["cheapest"]["total"] == min(r["total"] for r in data["rows"])
    assert data["estimator_bias"] > 0.2 and data["direction"] == "gradient"
    assert {"regime", "rarest_visits", "chi2_replicates", "chi2_power"} <= set(data["rows"][0])
    assert data["min_expected_visits"] == MIN_EXPECTED_VISITS


def test_cli_plan_names_the_test_a_rare_event_plan_rests_on(tmp_path, capsys):
    problem, x = random_problem(**SMALL_TAU)
    path = tmp_path / "small_tau.json"
    save_problem(path, problem, x)
    assert main(["plan", str(path), "--estimator", "bc-hg", "--bias", "0.1", "--budget",
                 "4000", "64000"]) == 0
    out = capsys.readouterr().out
    assert "rests on the Chebyshev test (rare-event regime" in out
    assert "T >= r / alpha = 200" in out
    assert main(["plan", str(path), "--estimator", "bc-hg", "--bias", "0.1", "--budget",
                 "4000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rare_event_regime"] and data["cheapest"]["regime"] == "rare-event"
    assert data["cheapest"]["replicates"] > 10 * data["cheapest"]["chi2_replicates"]


@pytest.mark.parametrize("argv,message", [
    (["--bias", "0"], "argument --bias: 0.0 must be a finite number > 0"),
    (["--bias", "0.1", "--power", "1.5"], "argument --power: 1.5 must lie in (0, 1)"),
    (["--bias", "0.1", "--alpha", "0"], "argument --alpha: 0.0 must lie in (0, 1)"),
    (["--bias", "0.1", "--estimator", "nope"], "argument --estimator: invalid choice"),
])
def test_cli_plan_bad_options_exit_2(tmp_path, capsys, argv, message):
    path = _problem_file(tmp_path)
    args = ["plan", path, "--estimator", "bc-hg", *argv]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--estimator", "hpgd", "--bias", "0.1"], "--estimator 'hpgd': out of scope"),
    (["--estimator", "bc-hg", "--bias", "0.1", "--budget", "2"], "--budget 2: its batch"),
    (["--estimator", "bc-hg", "--bias", "0.1", "--power", "0.005"], "--power 0.005: must "
     "exceed alpha"),
])
def test_cli_plan_refusals_exit_2(tmp_path, capsys, argv, message):
    path = _problem_file(tmp_path)
    assert main(["plan", path, *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_plan_refuses_a_markov_game(tmp_path, capsys):
    from exact_bilevel import games as mg
    from exact_bilevel.io import game_to_dict

    game = mg.discrete_toy(5)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(game_to_dict(game, np.zeros(game.n_params))))
    assert main(["plan", str(path), "--estimator", "bc-hg", "--bias", "0.1"]) == 2
    assert "plan needs a bilevel problem file" in capsys.readouterr().err


# -- the alternative (issue 25, item 4): a mutant's exact mean and covariance ----------

@pytest.mark.parametrize("kwargs,message", [
    (dict(alternative="nope"), "alternative = 'nope': not a mutant; one of"),
    (dict(alternative="hpgd-dq-from-t+1"),
     "alternative = 'hpgd-dq-from-t\\+1': no exact moments: as hpgd: its dQ_hat"),
    (dict(alternative="td-critic-follower-gamma"), "fitted on the same batch"),
    (dict(estimator="naive", alternative="sign-flip"),
     "alternative = 'sign-flip': mutates bc-hg or bc-hg-baseline, not estimator 'naive'"),
    (dict(alternative="zeroth-order-no-factor-2"),
     "mutates zeroth-order, not estimator 'bc-hg'"),
    (dict(bias=0.1, alternative="sign-flip"),
     "bias = 0.1: the alternative 'sign-flip' fixes the mean \\(relative bias 2\\); omit"),
    (dict(direction="gradient", alternative="sign-flip"),
     "direction = 'gradient': the alternative 'sign-flip' fixes the mean"),
    (dict(), "bias: required"),
    (dict(bias=0.1, alternative=np.eye(3)), "alternative.covariance: axis 0 must have"),
    (dict(bias=0.1, alternative=[[1.0, 2.0], [0.0, 1.0]]),
     "alternative.covariance: must be symmetric"),
    (dict(bias=0.1, alternative=[[1.0, 0.0], [0.0, -1.0]]),
     "alternative.covariance: must be positive semi-definite"),
    (dict(bias=0.1, alternative=[[np.nan, 0.0], [0.0, 1.0]]),
     "alternative.covariance\\[0, 0\\] = nan: must be finite"),
    (dict(alternative=Alternative(np.eye(2), mean=[1.0, 2.0, 3.0])),
     "alternative.mean: axis 0 must have length 2"),
    (dict(estimator="zeroth-order", bias=0.1),
     "estimator = 'zeroth-order': not plannable: its covariance at a budget"),
])
def test_plan_alternative_bad_input_names_the_field(kwargs, message):
    problem, x = random_problem(**OWN_GAMMA)
    args = dict(estimator="bc-hg", bias=None) | kwargs
    with pytest.raises(ValueError, match=message):
        plan_sample_size(problem, x, args.pop("estimator"), args.pop("bias"), **args)


def test_alternative_with_the_reference_covariance_is_the_pure_shift():
    """Imhof's route (the alternative) with the reference's own covariance gives the
    pure shift's plan: the same R and powers within 1e-9 (noncentral chi-square)."""
    problem, x = random_problem(**OWN_GAMMA)
    cov = moments(problem, x, "bc-hg").covariance
    for direction in (None, "gradient"):
        shift = plan_sample_size(problem, x, "bc-hg", 0.2, power=0.8, budgets=[500, 4000],
                                 direction=direction)
        alt = plan_sample_size(problem, x, "bc-hg", 0.2, power=0.8, budgets=[500, 4000],
                               direction=direction, alternative=cov)
        assert alt.alternative == "given" and shift.alternative == "shift"
        for a, s in zip(alt.rows, shift.rows, strict=True):
            assert (a.replicates, a.sample_replicates) == (s.replicates, s.sample_replicates)
            assert abs(a.power - s.power) < 1e-9 and abs(a.sample_power - s.sample_power) < 1e-9


@pytest.mark.parametrize("estimator,name", [("bc-hg", "tau-not-inverse"),
                                            ("bc-hg-baseline", "sign-flip")])
def test_plan_with_a_mutant_uses_its_exact_mean_and_covariance(estimator, name):
    problem, x = random_problem(**(OWN_GAMMA | dict(seed=5, parameterize="both")))
    know = leader_knowledge(problem, x)
    baseline = estimator == "bc-hg-baseline"
    plan = plan_sample_size(problem, x, estimator, power=0.7, budgets=[256, 2048],
                            alternative=name)
    g = moments(problem, x, estimator, know=know).mean
    b = mutant_mean(name, know) - g
    assert plan.alternative == name and plan.direction == "alternative mean"
    np.testing.assert_allclose(plan.bias_vector, b, rtol=0, atol=1e-12 * np.max(np.abs(b)))
    assert plan.bias == pytest.approx(np.linalg.norm(b) / np.linalg.norm(g), rel=1e-12)
    for r in plan.rows:
        cov = moments(problem, x, estimator, r.budget, know=know).covariance
        alt = mutant_moments(problem, x, name, r.budget, baseline=baseline, know=know)
        assert r.episodes == alt.episodes
        def rule(R, N=r.budget, cov=cov, cov_a=alt.covariance):  # the rule's FAIL power:
            regular = rare_event_diagnostic(know, R * N)[0] >= MIN_EXPECTED_VISITS  # the
            under = known_covariance_power_under if regular else chebyshev_power_under
            return under(cov, b, cov_a, R, 0.01)  # threshold by the regime at R x N
        assert r.power == pytest.approx(rule(r.replicates), abs=1e-9) and r.power >= 0.7
        assert (r.replicates == 2 or r.replicates * r.episodes <= MIN_TOTAL_EPISODES + r.episodes
                or rule(r.replicates - 1) < 0.7)
        assert r.chi2_power == pytest.approx(known_covariance_power_under(
            cov, b, alt.covariance, r.chi2_replicates, 0.01), abs=1e-9)
        per = noncentrality(alt.covariance, b)[0]   # Hotelling with the mutant's noise
        assert r.sample_power == pytest.approx(
            hotelling_power(r.sample_replicates * per, 2, r.sample_replicates, 0.01), abs=1e-12)


def test_planned_power_with_the_alternative_matches_the_real_test():
    """tau-not-inverse on the reward-parameterised problem, budget 256: the plan with the
    alternative (R = 7 at power 0.5, predicted 0.778) against 200 repetitions of the real
    exact-covariance test on fresh mutant estimates (fixed seed): within +-0.1 and
    inside the 95% Clopper-Pearson interval of the rejection rate (0.80); the pure
    shift's prediction at the same (N, R) (0.635) lies outside that interval (power of
    the comparison: the alternative is what makes the plan right here)."""
    problem, x = random_problem(**OWN_GAMMA)
    know = leader_knowledge(problem, x)
    N, reps, name = 256, 200, "tau-not-inverse"
    plan = plan_sample_size(problem, x, "bc-hg", power=0.5, budgets=[N], alternative=name)
    row = plan.rows[0]
    R = row.replicates
    cov = moments(problem, x, "bc-hg", N, know=know).covariance
    g = moments(problem, x, "bc-hg", know=know).mean
    X = mutant_replicates(name, know, N, reps * R, seed=11)
    k = sum(known_covariance_test(X[j * R:(j + 1) * R], g, cov).reject for j in range(reps))
    ci = scipy.stats.binomtest(int(k), reps).proportion_ci(0.95, method="exact")
    assert abs(k / reps - row.power) <= 0.1 and ci.low <= row.power <= ci.high, (k, row)
    delta1 = noncentrality(moments(problem, x, "bc-hg", know=know).covariance, b=plan.bias_vector)
    shift = known_covariance_power(R * row.episodes * delta1[0], 2, 0.01)
    assert not ci.low <= shift <= ci.high, (shift, ci)


def test_quadratic_form_with_a_singular_alternative():
    """Positive semi-definite alternatives: noise only along the first axis of a singular
    reference (closed form: a scaled noncentral chi-square with one degree of freedom),
    noise in the reference's null space (rejected outright), no noise at all (a
    deterministic statistic), and the plan refuses nothing of these."""
    S = np.diag([1.0, 0.0])
    b = np.array([0.3, 0.0])
    crit = scipy.stats.chi2.isf(0.01, 1)
    for R in (5, 40):
        got = known_covariance_power_under(S, b, np.diag([2.0, 0.0]), R, 0.01)
        assert got == pytest.approx(scipy.stats.ncx2.sf(crit / 2, 1, R * 0.09 / 2), abs=1e-12)
        assert known_covariance_power_under(S, b, np.eye(2), R, 0.01) == 1.0
        det = known_covariance_power_under(S, b, np.zeros((2, 2)), R, 0.01)
        assert det == (1.0 if R * 0.09 > crit else 0.0)
    assert quadratic_form(S, [0.0, 1e-3], S, 0.01).certain  # bias in the null space


def test_plan_counts_the_units_the_estimator_averages():
    """sobirl-simplified averages budget // (S A) generative draws per pair, not
    episodes: the plan's units are moments' at each budget."""
    problem, x = random_problem(4, 3, 2, seed=2, parameterize="both", objective="leader_return")
    plan = plan_sample_size(problem, x, "sobirl-simplified", 0.05, budgets=[1200, 4800])
    assert [r.episodes for r in plan.rows] == [100, 400]


def test_cli_plan_alternative(tmp_path, capsys):
    path = _problem_file(tmp_path)
    assert main(["plan", path, "--estimator", "bc-hg", "--alternative", "tau-not-inverse",
                 "--power", "0.5", "--budget", "256", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["alternative"] == "tau-not-inverse" and data["direction"] == "alternative mean"
    assert data["rows"][0]["replicates"] == 7 and data["bias"] == pytest.approx(0.75)
    assert main(["plan", path, "--estimator", "bc-hg", "--alternative", "sign-flip"]) == 0
    out = capsys.readouterr().out
    assert "along the exact mean of sign-flip" in out and "alternative: sign-flip" in out
    assert main(["plan", path, "--estimator", "bc-hg", "--bias", "0.1"]) == 0
    assert "alternative: pure shift" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--alternative", "nope"], "--alternative 'nope': not a mutant; one of"),
    (["--alternative", "mc-dq-leader-gamma"], "--alternative 'mc-dq-leader-gamma': no "
     "exact moments: as hpgd"),
    (["--alternative", "sign-flip", "--bias", "0.1"], "--bias 0.1: the alternative "
     "'sign-flip' fixes the mean"),
    (["--alternative", "sign-flip", "--direction", "worst"], "--direction 'worst': the "
     "alternative"),
    ([], "--bias: required unless --alternative names a mutant"),
])
def test_cli_plan_alternative_refusals_exit_2(tmp_path, capsys, argv, message):
    path = _problem_file(tmp_path)
    assert main(["plan", path, "--estimator", "bc-hg", *argv]) == 2
    assert message in capsys.readouterr().err


# -- plans for the verdict rule (known_covariance_verdict): the regime decides the test -----

def test_chebyshev_power_is_the_noncentral_chi_square_tail_at_r_over_alpha():
    """An independent formula (scipy's ncx2 at r / alpha) and Monte Carlo; never above the
    chi-square's power; Imhof's route with the reference's covariance is the same."""
    for r, delta, a in [(1, 50.0, 0.01), (2, 300.0, 0.01), (5, 555.0, 0.01), (3, 40.0, 0.05)]:
        assert chebyshev_power(delta, r, a) == pytest.approx(
            scipy.stats.ncx2.sf(r / a, r, delta), abs=1e-14)
        assert chebyshev_power(delta, r, a) <= known_covariance_power(delta, r, a)
    rng = np.random.default_rng(4)
    y = rng.standard_normal((200_000, 2)) + np.sqrt([250.0, 0.0])
    mc = np.mean(np.sum(y * y, axis=1) >= 2 / 0.01)
    assert abs(chebyshev_power(250.0, 2, 0.01) - mc) < 5 * np.sqrt(mc * (1 - mc) / 200_000)
    assert chebyshev_power(0.0, 0, 0.01) == 0.0 and chebyshev_power(np.inf, 2, 0.01) == 1.0
    S = np.array([[2.0, 0.5], [0.5, 1.0]])
    b = np.array([0.3, -0.2])
    delta = 400 * noncentrality(S, b)[0]
    assert chebyshev_power_under(S, b, S, 400, 0.01) == pytest.approx(
        chebyshev_power(delta, 2, 0.01), abs=1e-7)


@pytest.mark.parametrize("rank", [1, 2, 5])
def test_verdict_replicates_is_the_first_R_of_a_scan_and_the_set_is_upward_closed(rank):
    """The monotonicity the rule's plan rests on, checked by brute force: the rule's FAIL
    power (Chebyshev below R_reg, chi-square from it) over R = 1..600 for several
    noncentralities and regime boundaries; the set reaching the target is upward closed
    (though the power jumps at R_reg) and starts at verdict_replicates(...)."""
    for per in (0.05, 0.4, 3.0):
        chi = [known_covariance_power(R * per, rank, 0.01) for R in range(601)]
        cheb = [chebyshev_power(R * per, rank, 0.01) for R in range(601)]
        assert all(c <= k for c, k in zip(cheb, chi, strict=True))
        assert all(np.diff(chi) >= 0) and all(np.diff(cheb) >= 0)
        for target in (0.5, 0.9):
            first = [next((R for R in range(1, 601) if p[R] >= target), None)
                     for p in (chi, cheb)]
            for R_reg in (1, 7, 60, 250, 599, None):
                ok = [R >= 1 and (chi[R] if R_reg is not None and R >= R_reg else cheb[R])
                      >= target for R in range(601)]
                scan = next((R for R in range(1, 601) if ok[R]), None)
                assert scan is None or all(ok[scan:]), (per, target, R_reg)
                want = verdict_replicates(first[0], first[1], R_reg)
                if want is not None and want <= 600:
                    assert want == scan, (per, target, R_reg, first)
                else:
                    assert scan is None
    assert verdict_replicates(10, None, MAX_REPLICATES + 1) is None
    assert verdict_replicates(None, None, 5) is None


def test_plan_rests_on_the_rule_and_crosses_regimes():
    """Each row's power is the chi-square's where its R x N is regular and
    ncx2.sf(r / alpha, r, R n delta1) where it is rare-event (the regime recomputed with
    rare_event_diagnostic); R is the first at which the rule reaches the target (R - 1
    does not); the chi-square-only plan is the old one; the budget-1000 row sits exactly
    at the regime boundary (the Chebyshev plan there would need more)."""
    problem, x = random_problem(**SMALL_TAU)
    know = leader_knowledge(problem, x)
    target, a = 0.9, 0.01
    plan = plan_sample_size(problem, x, "bc-hg", 0.1, power=target, alpha=a,
                            budgets=[1000, 4000, 64000])
    r, d1 = plan.rank, plan.noncentrality_per_episode

    def rule(R, row):  # independent: scipy's ncx2 at the regime's threshold
        regular = rare_event_diagnostic(know, R * row.budget)[0] >= MIN_EXPECTED_VISITS
        thr = scipy.stats.chi2.isf(a, r) if regular else r / a
        return scipy.stats.ncx2.sf(thr, r, R * row.episodes * d1), regular

    for row in plan.rows:
        p, regular = rule(row.replicates, row)
        assert row.regime == ("regular" if regular else "rare-event")
        assert row.rarest_visits == rare_event_diagnostic(know, row.total)[0]
        assert row.power == pytest.approx(p, abs=1e-12) and row.power >= target
        assert rule(row.replicates - 1, row)[0] < target
        old = row.chi2_replicates
        assert known_covariance_power(old * row.episodes * d1, r, a) >= target > \
            known_covariance_power((old - 1) * row.episodes * d1, r, a)
    assert [row.regime for row in plan.rows] == ["regular", "rare-event", "rare-event"]
    first = plan.rows[0]
    assert first.replicates == regular_replicates(know, 1000) > first.chi2_replicates
    assert chebyshev_power((first.replicates - 1) * first.episodes * d1, r, a) < target
    assert plan.rows[1].replicates > 10 * plan.rows[1].chi2_replicates  # Chebyshev's price
    assert plan.rarest_visits == plan.cheapest.rarest_visits
    data = plan.to_dict()
    assert data["rare_event_regime"] == (plan.cheapest.regime == "rare-event")
    assert [row["regime"] for row in data["rows"]] == ["regular", "rare-event", "rare-event"]
    json.dumps(data)  # JSON-ready
    for R in (1, first.replicates - 1, first.replicates):
        assert (rare_event_diagnostic(know, R * 1000)[0] >= MIN_EXPECTED_VISITS) == \
            (R >= first.replicates)


def test_planned_fail_power_in_the_rare_event_regime_matches_the_verdicts():
    """Simulation: problem B (rarest pair 2.2e-6 per transition), the mutant sign-flip of
    bc-hg, budget 1024, target 0.5: the plan (with the mutant's exact law) is rare-event,
    R = 66, FAIL power 0.516 (Imhof at T >= r / alpha). Over 200 sets of R fresh mutant
    estimates (fixed seed), the FAIL rate of known_covariance_verdict is within +-0.1 of it
    and inside its 95% Clopper-Pearson interval. Power of the check: at the chi-square-only
    plan's R (3; power 0.5 for the chi-square, i.e. for 'not a pass') the verdicts FAIL
    almost never (they are INCONCLUSIVE), so the old plan was optimistic for a FAIL."""
    problem, x = random_problem(**(OWN_GAMMA | dict(seed=5, parameterize="both")))
    know = leader_knowledge(problem, x)
    N, reps, name = 1024, 200, "sign-flip"
    plan = plan_sample_size(problem, x, "bc-hg", power=0.5, budgets=[N], alternative=name)
    row = plan.rows[0]
    assert row.regime == "rare-event" and row.rarest_visits < 1.0
    cov = moments(problem, x, "bc-hg", N, know=know).covariance
    g = moments(problem, x, "bc-hg", know=know).mean

    def outcomes(R, seed):
        X = mutant_replicates(name, know, N, reps * R, seed=seed)
        visits = rare_event_diagnostic(know, R * N)[0]
        res = [known_covariance_verdict(X[j * R:(j + 1) * R], g, cov, visits, 0.01)
               for j in range(reps)]
        fail = sum(v.reject and not is_unresolved_rejection(v) for v in res)
        return fail, sum(v.reject for v in res)

    fail, _ = outcomes(row.replicates, 21)
    ci = scipy.stats.binomtest(fail, reps).proportion_ci(0.95, method="exact")
    assert abs(fail / reps - row.power) <= 0.1 and ci.low <= row.power <= ci.high, (fail, row)
    fail_old, no_pass_old = outcomes(row.chi2_replicates, 22)
    assert fail_old / reps < row.chi2_power - 0.3, (fail_old, row)
    assert abs(no_pass_old / reps - row.chi2_power) <= 0.1, (no_pass_old, row)
