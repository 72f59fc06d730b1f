"""Sample-based estimators against the exact hypergradient.

Statistical tests use fixed seeds (replicate i of a run reads block i of its seed's
uniforms, :mod:`exact_bilevel.core.streams`) and state their false-alarm rate:

* the property-based convergence of every estimator on drawn non-degenerate
  problems lives in ``tests/test_convergence.py``; here, fixed problems:
* consistent estimators: consistency test (MSE drops > 2x from N to 4N; with
  R = 150 replicates per budget each error rate is ~1e-3, see the report);
* power: the same unbiasedness test at alpha = 0.01 must reject every mutant of
  :mod:`exact_bilevel.mutants`, the naive estimator and sobirl-simplified, on
  problems where their bias is not zero (measured detection rates over many
  seeds: ``verification/estimator_rates.md``).
"""

import numpy as np
import pytest
from hypothesis import given

from exact_bilevel import hypergradient
from exact_bilevel.estimators import ESTIMATORS, estimate, leader_knowledge, replicates
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.mutants import MUTANTS, mutant_replicates
from exact_bilevel.strategies import bilevel_problems
from exact_bilevel.testing import (
    assert_consistent,
    unbiasedness_test,
)

LEADER_RETURNS = ("leader_return", "leader_return_own_gamma", "leader_return_x_reward")
BCHG_MUTANTS = [n for n, m in MUTANTS.items() if (m.mutates, m.critic) == ("bc-hg", "exact")]


def test_baseline_cuts_the_variance_on_transition_parameterised_problems():
    """Measured: standard deviation 5.5 -> 0.08 per coordinate (seed 1)."""
    p, x = random_problem(5, 3, 3, seed=1, parameterize="transitions")
    X, _ = replicates(p, x, "bc-hg", 2000, 50, seed=0)
    Y, _ = replicates(p, x, "bc-hg-baseline", 2000, 50, seed=0)
    assert np.all(Y.std(axis=0) < 0.05 * X.std(axis=0))


def _fixed(parameterize="reward", objective="leader_return_own_gamma", seed=3):
    return random_problem(5, 3, 3, seed=seed, parameterize=parameterize, objective=objective)


CONSISTENT = [("bc-hg", "monte-carlo"), ("bc-hg", "td"), ("hpgd", "exact"),
              ("hpgd", "monte-carlo"), ("hpgd-td", "td"), ("hpgd-oracle", "exact"),
              ("sobirl", "monte-carlo"), ("sobirl", "td"), ("model-based", "exact")]


@pytest.mark.parametrize("parameterize", ["reward", "both"])
@pytest.mark.parametrize("name, critic", CONSISTENT)
def test_consistent_estimators_error_shrinks(name, critic, parameterize):
    p, x = _fixed(parameterize)
    exact = hypergradient(p, x).gradient
    small, _ = replicates(p, x, name, 1000, 150, seed=1, critic=critic)
    large, _ = replicates(p, x, name, 4000, 150, seed=2, critic=critic)
    assert_consistent(small, large, exact)


def test_sobirl_handles_a_general_objective():
    p, x = random_problem(4, 3, 2, seed=8, parameterize="both", objective="quadratic")
    exact = hypergradient(p, x).gradient
    small, _ = replicates(p, x, "sobirl", 1000, 150, seed=1, critic="td")
    large, _ = replicates(p, x, "sobirl", 4000, 150, seed=2, critic="td")
    assert_consistent(small, large, exact)


#: BC-HG mutants too close to BC-HG on the transition-parameterised problem to be seen
#: with R = 100 at alpha = 1e-3 (measured on three streams, before the budget became a hard
#: cap: wrong-discount-power
#: p = 0.03-0.11, no-survival-weights p = 1.5e-4-1.5e-3; at R = 400 p ~ 1e-4 and 1e-14,
#: but 40 s). Both are caught on the reward-parameterised problem (p < 1e-12) and their
#: power over 198 problems is in verification/estimator_rates.md.
HIDDEN_ON_BOTH = ("wrong-discount-power", "no-survival-weights")


@pytest.mark.parametrize("parameterize, seed, R", [("reward", 3, 200), ("both", 4, 100)])
def test_correct_estimator_passes_where_mutants_fail(parameterize, seed, R):
    """Power: at this budget the correct estimator is accepted, every mutant rejected
    (alpha = 1e-3 both ways: the correct estimator's false-alarm rate is 0.1%).

    Transition-parameterised problems need care: the score-function part of g
    has a large variance, and on some problems (seed 3, ``both``) several
    mutants hide at this budget; rates over many problems are measured in
    ``verification/estimator_rates.md``. ``wrong-discount-power`` is not asserted on
    ``both``: its power there at R = 100 is ~25% (p < 0.01 for 5 of 20 seeds, measured
    when the budget became a hard cap and seed 1 stopped catching it; its power on
    drawn problems is asserted in ``tests/test_convergence.py``).
    """
    p, x = _fixed(parameterize, seed=seed)
    exact = hypergradient(p, x).gradient
    know = leader_knowledge(p, x)
    X, _ = replicates(p, x, "bc-hg", 5000, R, seed=1)
    assert not unbiasedness_test(X, exact, 1e-3).reject
    for name in BCHG_MUTANTS:
        if parameterize == "both" and name in HIDDEN_ON_BOTH:
            continue
        M = mutant_replicates(name, know, 5000, R, seed=1)
        res = unbiasedness_test(M, exact, 1e-3)
        assert res.reject, f"{parameterize}: mutant {name} not caught: {res.report}"


def test_biased_baselines_are_rejected():
    p, x = _fixed("both")
    exact = hypergradient(p, x).gradient
    for name in ("naive", "sobirl-simplified"):
        X, _ = replicates(p, x, name, 5000, 100, seed=1)
        assert unbiasedness_test(X, exact, 0.01).reject


def test_budget_is_respected_and_reported():
    p, x = _fixed("both")
    for name, info in ESTIMATORS.items():
        e = estimate(p, x, name, 20000, np.random.default_rng(0))
        if name == "sobirl-simplified" or name == "model-based":
            assert e.transitions == 20000 // 15 * 15
        else:
            assert 0.8 * 20000 <= e.transitions <= 1.2 * 20000, name
        assert e.gradient.shape == (3,) and np.all(np.isfinite(e.gradient))
        assert e.estimator == name and info.fn is not None


def test_replicates_reproducible():
    p, x = _fixed()
    a, ca = replicates(p, x, "hpgd", 500, 3, seed=9)
    b, cb = replicates(p, x, "hpgd", 500, 3, seed=9)
    assert np.array_equal(a, b) and np.array_equal(ca, cb)


def test_reward_only_simplified_needs_no_samples():
    p, x = _fixed("reward")
    e = estimate(p, x, "sobirl-simplified", 100, np.random.default_rng(0))
    assert e.transitions == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(estimator="nope"), "estimator = 'nope': must be one of"),
    (dict(estimator="bc-hg", critic="oracle"), "critic = 'oracle': estimator 'bc-hg' accepts"),
    (dict(estimator="sobirl", critic="exact"), "critic = 'exact': estimator 'sobirl'"),
    (dict(estimator="bc-hg", budget=0), "budget = 0: must be a positive integer"),
    (dict(estimator="model-based", budget=10), "model-based needs at least S.A = 15"),
])
def test_validation(kwargs, match):
    p, x = _fixed()
    args = {"budget": 1000, **kwargs}
    with pytest.raises(ValueError, match=match):
        estimate(p, x, args.pop("estimator"), args.pop("budget"), np.random.default_rng(0),
                 **args)


def test_leader_return_estimators_reject_general_objectives():
    p, x = random_problem(3, 2, 2, seed=1, objective="quadratic")
    with pytest.raises(ValueError, match="is not a LeaderReturn; estimator 'bc-hg'"):
        estimate(p, x, "bc-hg", 1000, np.random.default_rng(0))


@given(bilevel_problems(max_states=4, max_params=3, objectives=LEADER_RETURNS))
def test_dual_order_sums_equal_the_literal_per_episode_form(case):
    """BC-HG's table contraction equals the paper's per-episode double sum (to 1e-12)."""
    from exact_bilevel.estimators.bchg import bchg_indirect_sum, bchg_per_episode, direct_sum
    from exact_bilevel.estimators.critics import td_critic
    from exact_bilevel.estimators.sampling import Sampler, as_batch

    know = leader_knowledge(case.problem, case.x)
    ep = Sampler(know.state.mdp, np.random.default_rng(0)).episodes(know.pi, 40, know.beta)
    batch = as_batch(ep)
    c = td_critic(know, ep)
    for baseline in (False, True):
        literal = bchg_per_episode(know, ep, c, baseline).mean(axis=0)
        fast = (direct_sum(know, batch, c, baseline)
                + bchg_indirect_sum(know, batch, c, baseline))[0]
        assert np.max(np.abs(fast - literal)) <= 1e-12 * max(1.0, np.max(np.abs(literal)))


ALONE_PROBLEMS = {"reward": ("reward", "leader_return_own_gamma"),
                  "both": ("both", "leader_return_own_gamma")}


@pytest.mark.parametrize("key", sorted(ALONE_PROBLEMS))
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_replicate_alone_equals_its_row_of_the_batch_bit_for_bit(name, key):
    """One sampling code path: ``estimate(..., block_rng(seed, i, B))`` is replicate ``i``
    of ``replicates(..., seed)`` exactly (every critic; budgets 60 and 700, where
    episodes are truncated at the cap and where they are not)."""
    from exact_bilevel.core.streams import block_rng
    from exact_bilevel.estimators.sampling import block_size

    parameterize, objective = ALONE_PROBLEMS[key]
    p, x = random_problem(5, 3, 3, seed=4, gamma=0.85, parameterize=parameterize,
                          objective=objective)
    for critic in ESTIMATORS[name].critics:
        for budget in (60, 700):
            G, C = replicates(p, x, name, budget, 6, seed=21, critic=critic)
            for i in (0, 2, 5):
                e = estimate(p, x, name, budget, block_rng(21, i, block_size(budget, 3)),
                             critic)
                assert np.array_equal(e.gradient, G[i]), (critic, budget, i)
                assert e.transitions == C[i]


def test_mutants_alone_equal_their_rows_of_the_batch():
    """The same for every mutant of :mod:`exact_bilevel.mutants` (and the baseline ones)."""
    from exact_bilevel.core.streams import block_rng
    from exact_bilevel.estimators.sampling import Sampler, block_size

    p, x = random_problem(4, 3, 2, seed=5, gamma=0.8, parameterize="both",
                          objective="leader_return_own_gamma")
    know = leader_knowledge(p, x)
    for name, m in MUTANTS.items():
        for baseline in ((False, True) if m.accepts_baseline else (False,)):
            X = mutant_replicates(name, know, 300, 3, seed=2, baseline=baseline)
            for i in range(3):
                smp = Sampler(know.state.mdp, block_rng(2, i, block_size(300, 2)))
                e = (m.fn(know, smp, 300, m.critic, True) if baseline
                     else m.fn(know, smp, 300, m.critic))
                assert np.array_equal(e.gradient, X[i]), (name, baseline, i)


def test_solve_dominant_stack_agrees_with_lapack_and_is_row_wise():
    """The batched elimination of the TD critics and the batched follower solver (on ``[M
    | b]``, stack axis last) solves each system and its transpose to 1e-12 of LAPACK
    (``numpy.linalg.solve``, an independent route), with vector or matrix right-hand
    sides, at sizes on both sides of the LAPACK switch, and a system alone gets its row of
    the stack bit for bit."""
    from exact_bilevel.core.linalg import ELIMINATION_STATES, solve_dominant_stack

    rng = np.random.default_rng(9)
    for S, k in ((1, 1), (2, None), (6, 3), (10, 5), (10, None),
                 (ELIMINATION_STATES, 2), (ELIMINATION_STATES + 1, None)):
        P = rng.dirichlet(np.ones(S), size=(40, S)) * rng.uniform(0.5, 1.0, (40, S, 1))
        M = np.eye(S) - 0.95 * P                          # rows of P_pi may sum below 1
        b = rng.normal(size=(40, S) if k is None else (40, S, k))
        for transpose in (False, True):
            x = solve_dominant_stack(M, b, transpose=transpose)
            A = np.swapaxes(M, 1, 2) if transpose else M
            ref = np.linalg.solve(A, b if k else b[:, :, None])
            ref = ref if k else ref[:, :, 0]
            assert x.shape == b.shape
            assert np.allclose(x, ref, rtol=0, atol=1e-12 * np.abs(x).max())
            alone = solve_dominant_stack(M[7:8], b[7:8], transpose=transpose)[0]
            assert np.array_equal(alone, x[7])


@pytest.mark.parametrize("parameterize", ["reward", "transitions", "both"])
def test_weighted_monte_carlo_dq_equals_the_contracted_table(parameterize):
    """The step-by-step contraction ``sum_sa W dQ_hat`` that hpgd and sobirl use
    (``weighted_dq_monte_carlo``: the mean's weight at every visit, ``dr`` where
    unvisited) equals the contraction of ``dq_monte_carlo``'s table (a second formula) to
    1e-12, with shared ``[S, A]`` and per-replicate ``[R, S, A]`` weights, with a second
    batch (hpgd-oracle's resets), for padded single-estimate episodes, and at budgets
    where pairs go unvisited; and the hpgd / sobirl weights give their table forms."""
    from exact_bilevel.core.streams import cell_uniforms
    from exact_bilevel.estimators.hpgd import hpgd_indirect_sum, hpgd_weights
    from exact_bilevel.estimators.sampling import Sampler, Uniforms
    from exact_bilevel.estimators.tabular import (
        dlogpi_from_dq,
        dq_monte_carlo,
        weighted_dq,
        weighted_dq_monte_carlo,
    )

    p, x = random_problem(5, 3, 3, seed=2, gamma=0.85, parameterize=parameterize)
    know = leader_knowledge(p, x)
    S, A = know.pi.shape
    rng = np.random.default_rng(3)
    for n, R in ((1, 40), (6, 25)):
        smp = Sampler(know.state.mdp, Uniforms(cell_uniforms(0, R, 4000, (n,), 0)))
        ep = smp.episode_batch(know.pi, n, know.beta)
        extra = smp.episode_batch(know.pi, n, know.beta, start=smp.integers(S, n),
                                  first_action=smp.integers(A, n))
        for W in (rng.normal(size=(S, A)), rng.normal(size=(R, S, A))):
            for more in ((), (extra,)):
                dq = dq_monte_carlo(know, ep, *more)
                want = np.einsum("rsa,rsak->rk", np.broadcast_to(W, (R, S, A)), dq)
                got = weighted_dq_monte_carlo(know, W, ep, *more)
                assert np.allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
        adv = rng.normal(size=(S, A))
        got = weighted_dq("monte-carlo", know, hpgd_weights(know, ep, adv), ep)
        want = hpgd_indirect_sum(know, ep, adv, dq_monte_carlo(know, ep))
        assert np.allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
        wpi = know.objective_terms.df_dpi * know.pi
        literal = np.einsum("sa,rsak->rk", wpi,
                            dlogpi_from_dq(know.pi, dq_monte_carlo(know, ep), know.tau))
        from exact_bilevel.estimators.sobirl import centred_policy_weights
        got = weighted_dq("monte-carlo", know, centred_policy_weights(know), ep)
        assert np.allclose(got, literal, rtol=0, atol=1e-12 * np.abs(literal).max())
    single = Sampler(know.state.mdp, np.random.default_rng(5))
    ep1 = single.episodes(know.pi, 3, know.beta)
    W = rng.normal(size=(S, A))
    want = np.einsum("sa,sak->k", W, dq_monte_carlo(know, ep1))
    got = weighted_dq_monte_carlo(know, W, ep1)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("parameterize", ["reward", "transitions", "both"])
def test_weighted_td_dq_equals_the_contracted_table(parameterize):
    """hpgd-td's and sobirl's TD contraction by the adjoint (``weighted_dq_td``: one
    transposed solve per replicate, ``sum W g_bar + gamma z^T sum_a pi g_bar``, ``M^T z =
    P_hat^T W``) equals the contraction of ``dq_td``'s table (a second formula) to 1e-12,
    with shared and per-replicate weights, for both forms of ``P_hat`` (the steps at one
    episode per replicate, the table at many) and for padded episodes."""
    from exact_bilevel.core.streams import cell_uniforms
    from exact_bilevel.estimators.sampling import Sampler, Uniforms
    from exact_bilevel.estimators.tabular import dq_td, weighted_dq_td

    p, x = random_problem(5, 3, 3, seed=2, gamma=0.85, parameterize=parameterize)
    know = leader_knowledge(p, x)
    S, A = know.pi.shape
    rng = np.random.default_rng(4)
    for n, R in ((1, 40), (30, 10)):
        smp = Sampler(know.state.mdp, Uniforms(cell_uniforms(0, R, 20000, (n,), 0)))
        ep = smp.episode_batch(know.pi, n, know.beta)
        for W in (rng.normal(size=(S, A)), rng.normal(size=(R, S, A))):
            want = np.einsum("rsa,rsak->rk", np.broadcast_to(W, (R, S, A)), dq_td(know, ep))
            got = weighted_dq_td(know, W, ep)
            assert np.allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    ep1 = Sampler(know.state.mdp, np.random.default_rng(5)).episodes(know.pi, 3, know.beta)
    W = rng.normal(size=(S, A))
    want = np.einsum("sa,sak->k", W, dq_td(know, ep1))
    got = weighted_dq_td(know, W, ep1)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
