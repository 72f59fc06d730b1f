"""The central promise: every sample-based estimator converges to the exact hypergradient.

Property tests on *non-degenerate* problems drawn afresh on every run
(:func:`exact_bilevel.strategies.nondegenerate_problems`: S, A >= 2, gamma in
[0.3, 0.8], tau in [0.3, 3], smallest policy probability >= 0.02; reward-,
transition- and jointly-parameterised; gamma_L equal to, below and above gamma).
Each example runs the estimator's protocol of
:mod:`exact_bilevel.validation.convergence` (unbiasedness test, or a bias bound
with an O(1/n) allowance for consistent estimators, or the smoothed target for
zeroth-order) at alpha = 2e-4.

False-alarm rate of this file per run: 15 protocols x EXAMPLES (2 in CI) checks
at alpha = 2e-4 each, so <= 0.6% by the union bound when every correct estimator
meets its null; measured realised rates in ``verification/convergence_power.md``.
Hypothesis prints the failing example and the ``@seed`` to replay it. For a
nightly-style run with 25 examples per property: ``HYPOTHESIS_PROFILE=explore``.

Power: every mutant of :mod:`exact_bilevel.mutants` must be rejected on at least
``floor`` of ``trials`` problems drawn from the class where its bug is visible; both
come from the measured power table ``verification/convergence_power.json`` (a
floor is missed with probability <= 1e-3 if the power is at least the one-sided
95% lower bound of the measured rate; 15 mutants, so a correct suite fails on
power with probability <= 1.5% per run at the bound, far less at the measured rates).
"""

import json
import os
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from exact_bilevel.mutants import GAME_MUTANTS, MUTANTS
from exact_bilevel.strategies import CONVERGENCE_CLASSES, convergence_class
from exact_bilevel.validation import convergence

EXAMPLES = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 2
ALPHA = 2e-4
RANDOM = settings(max_examples=EXAMPLES, derandomize=False, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
POWER = json.loads((pathlib.Path(__file__).resolve().parent.parent / "verification"
                    / "convergence_power.json").read_text())
seeds = st.integers(0, 2**31)


@pytest.mark.parametrize("estimator, critic", sorted(convergence.PROTOCOLS))
def test_estimator_converges_to_the_exact_hypergradient(estimator, critic):
    @RANDOM
    @given(case=CONVERGENCE_CLASSES[convergence_class(estimator)], seed=seeds)
    def run(case, seed):
        res = convergence.check(case.problem, case.x, estimator, critic, seed=seed,
                                alpha=ALPHA)
        assert not res.reject, f"{case.problem!r} ({case.parameterize}, {case.objective}): " \
                               f"{res.report}"
    run()


@pytest.mark.parametrize("estimator", ["bc-hg", "bc-hg-baseline"])
def test_game_estimator_is_unbiased(estimator):
    @RANDOM
    @given(case=CONVERGENCE_CLASSES["games"], seed=seeds)
    def run(case, seed):
        res = convergence.check_game(case.game, case.x, estimator, seed=seed, alpha=ALPHA)
        assert not res.reject, f"{case.game.observes}: {res.report}"
    run()


def _rejections(strategy, trials, check):
    """Run ``check(case, seed) -> TestResult`` on ``trials`` problems drawn one per
    hypothesis example (so the class's rejection sampling acts per problem)."""
    results = []

    @settings(RANDOM, max_examples=trials)
    @given(case=strategy, seed=seeds)
    def run(case, seed):
        results.append(check(case, seed))

    run()
    assert len(results) == trials
    return results


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_rejected_on_drawn_problems(name):
    row = POWER[name]
    floor, trials = row["floor"], row["trials"]
    assert floor >= 1, f"{name}: the measured power gives no floor; strengthen the check"
    mutant = MUTANTS[name]
    results = _rejections(
        CONVERGENCE_CLASSES[row["class"]], trials,
        lambda c, s: convergence.check(c.problem, c.x, mutant.mutates, mutant.critic, seed=s,
                                       alpha=ALPHA, fn=mutant.fn))
    caught = sum(r.reject for r in results)
    assert caught >= floor, (f"{name} caught on {caught} of {trials} problems (floor "
                             f"{floor}): " + "; ".join(r.report for r in results))


@pytest.mark.parametrize("name", sorted(GAME_MUTANTS))
def test_game_mutant_is_rejected_on_drawn_games(name):
    row = POWER[name]
    floor, trials = row["floor"], row["trials"]
    assert floor >= 1
    results = _rejections(
        CONVERGENCE_CLASSES[row["class"]], trials,
        lambda c, s: convergence.check_game(c.game, c.x, "bc-hg", seed=s, alpha=ALPHA,
                                            fn=GAME_MUTANTS[name]))
    assert sum(r.reject for r in results) >= floor


def test_the_power_table_covers_every_protocol_and_mutant():
    names = {f"{e} ({c})" for e, c in convergence.PROTOCOLS} | set(MUTANTS) | set(GAME_MUTANTS)
    assert names <= set(POWER)
    for name in names:
        row = POWER[name]
        if row["kind"] == "correct":  # realised false alarms at 2e-4: at most 1 in the table
            assert row["rejections"][0] <= 1, (name, row)


def test_consistent_allowance_shrinks_with_the_budget():
    """The O(1/n) allowance: 4x the budget, a quarter of the allowance (same samples)."""
    rng = np.random.default_rng(0)
    X, g = rng.normal(size=(50, 3)), np.array([1.0, 0.0, -2.0])
    small = convergence.PROTOCOLS[("hpgd", "exact")]
    import dataclasses
    large = dataclasses.replace(small, budget=4 * small.budget)
    # sd_1 scales with sqrt(n): give the large-budget samples the matching spread
    a_small = convergence.allowance(X, g, small)
    a_large = convergence.allowance(X / 2, g, large)
    assert a_large == pytest.approx(a_small / 4)
    assert convergence.allowance(X, g, convergence.PROTOCOLS[("bc-hg", "exact")]) == 0.0


def test_a_steady_six_percent_bias_is_caught():
    """The MSE-ratio consistency test passed an estimator with a steady 6% bias (ratio
    3.65); the O(1/n) bias bound rejects it here, where the correct hpgd is accepted
    (fixed problem and seed: deterministic)."""
    import dataclasses

    from exact_bilevel.estimators.registry import ESTIMATORS
    from exact_bilevel.experiments.examples import random_problem

    hpgd = ESTIMATORS["hpgd"].fn

    def biased(know, sampler, budget, critic):
        e = hpgd(know, sampler, budget, critic)
        return dataclasses.replace(e, gradient=1.06 * e.gradient)

    problem, x = random_problem(4, 3, 2, seed=3, gamma=0.7, tau=0.5)
    assert not convergence.check(problem, x, "hpgd", "exact", seed=0, alpha=ALPHA).reject
    assert convergence.check(problem, x, "hpgd", "exact", seed=0, alpha=ALPHA,
                             fn=biased).reject


def test_rare_event_diagnostic_ignores_pairs_no_episode_can_visit():
    """A state unreachable from ``rho`` (no transition into it) is never sampled, so it
    cannot make the estimates rare-event: the rarest pair is the rarest *reachable* one
    (brute force over the occupancy restricted to reachable states), and sampled
    episodes indeed never visit the unreachable states."""
    from exact_bilevel.core.mdp import FiniteMDP
    from exact_bilevel.core.objectives import LeaderReturn
    from exact_bilevel.core.parameterizations import (
        FixedReward,
        FixedTransitions,
        tabular_incentive,
    )
    from exact_bilevel.core.problem import BilevelProblem
    from exact_bilevel.estimators import leader_knowledge
    from exact_bilevel.estimators.sampling import Sampler
    from exact_bilevel.validation.convergence import rare_event_diagnostic, reachable_states

    rng = np.random.default_rng(3)
    S, A = 5, 2
    P = np.zeros((S, A, S))
    P[:3, :, :3] = rng.dirichlet(np.ones(3), size=(3, A))   # 0-2 among themselves
    P[3:, :, 3:] = rng.dirichlet(np.ones(2), size=(2, A))   # 3-4 only among themselves
    rho = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    base = rng.normal(size=(S, A))
    problem = BilevelProblem(tabular_incentive(base, states=[0, 1]), FixedTransitions(P, 2),
                             LeaderReturn(FixedReward(rng.normal(size=(S, A)), 2)),
                             gamma=0.9, tau=0.5, initial=rho)
    know = leader_knowledge(problem, np.zeros(2))
    reach = reachable_states(know.state.mdp, know.pi)
    assert reach.tolist() == [True, True, True, False, False]
    from exact_bilevel.core.evaluation import state_occupancy
    d = state_occupancy(know.state.mdp, know.pi, gamma=know.beta) * (1 - know.beta)
    want = (1e4 * d[:3, None] * know.pi[:3]).min()
    visits, s, _ = rare_event_diagnostic(know, 1e4)
    assert s < 3 and visits == pytest.approx(want, rel=1e-12) and visits > 10
    ep = Sampler(FiniteMDP(P, base, 0.9, rho), np.random.default_rng(0)).episodes(
        know.pi, 2000, know.beta)
    s_t, _, s_next = ep.transitions()
    assert not np.isin([3, 4], np.concatenate([s_t, s_next])).any()
