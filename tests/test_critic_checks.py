"""The sampled critics converge to the exact tables, checked without sampling.

Deterministic (no random draws in any verdict, so no false-alarm rate): the checks
of :mod:`exact_bilevel.validation.critic_checks` compute what each critic the
estimators use converges to — the TD fixed point on the exact batch of the true
transitions, the exact mean of the Monte Carlo returns with the sampler's survival
law — and compare it with ``Q_L`` and ``dQ`` computed by an independent route (one
state-action linear solve each, not the state-value LU of ``exact_bilevel.core``),
on fixed problems with ``gamma_L`` above and below ``gamma``. Every wrong-discount
critic of :data:`exact_bilevel.mutants.CRITIC_MUTANTS` must be rejected on each.
"""

import numpy as np
import pytest

from exact_bilevel.estimators import leader_knowledge
from exact_bilevel.estimators.critics import empirical_transitions, exact_critic
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.mutants import CRITIC_MUTANTS
from exact_bilevel.validation import critic_checks as cc

M = 64  # transitions are multiples of 1/64: the exact batch has 64 episodes per pair


def _case(objective, gamma):
    problem, x = random_problem(4, 3, 2, seed=11, gamma=gamma, tau=0.7,
                                parameterize="reward", objective=objective)
    problem = cc.rational_transitions(problem, M)
    return problem, x, leader_knowledge(problem, x)


CASES = {  # gamma_L = (1 + gamma) / 2 > gamma, and gamma / 2 + 0.2 < gamma
    "gL 0.8 > g 0.6": ("leader_return_far_sighted", 0.6),
    "gL 0.65 < g 0.9": ("leader_return_own_gamma", 0.9),
}


def _sa_operator(know):
    """``(P Pi)[(s, a), (s', a')] = P(s'|s, a) pi(a'|s')``, built directly."""
    S, A = know.pi.shape
    P = know.state.mdp.transitions.reshape(S * A, S)
    return np.einsum("it,tb->itb", P, know.pi).reshape(S * A, S * A)


def _exact_tables(know):
    """``Q_L = (I - gL P Pi)^{-1} r_L`` and ``dQ = (I - g P Pi)^{-1} dr`` (reward-
    parameterised: ``g = dr``), state-action form."""
    S, A = know.pi.shape
    PPi, eye = _sa_operator(know), np.eye(S * A)
    q = np.linalg.solve(eye - know.gamma_leader * PPi, know.r_leader.ravel()).reshape(S, A)
    dq = np.linalg.solve(eye - know.gamma * PPi, know.dr.reshape(S * A, -1)).reshape(
        know.dr.shape)
    return q, dq


def _check(target, method, fn, know):
    """The deterministic limit of critic ``fn`` (a ``critic_checks.TableFn``)."""
    if method == "td":
        return cc.td_population(fn, know, M)
    per_step = know.r_leader if target == "leader" else know.dr
    return cc.monte_carlo_population(fn, know, target, per_step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_exact_batch_has_the_true_transitions(case):
    _, _, know = _case(*CASES[case])
    P = know.state.mdp.transitions
    ep = cc.exact_batch(P, M)
    assert ep.lengths.size == M * P.shape[0] * P.shape[1]
    assert np.array_equal(empirical_transitions(ep, *know.pi.shape), P)
    q, _ = _exact_tables(know)
    assert np.allclose(exact_critic(know).q, q, rtol=0, atol=1e-11)  # the two routes agree


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("target, method", sorted(cc.CRITICS))
def test_each_critic_converges_to_the_exact_table(target, method, case):
    _, _, know = _case(*CASES[case])
    assert know.gamma_leader != know.gamma
    q, dq = _exact_tables(know)
    exact = q if target == "leader" else dq
    limit = _check(target, method, cc.CRITICS[target, method], know)
    assert np.allclose(limit, exact, rtol=0, atol=1e-10 * np.abs(exact).max()), \
        np.abs(limit - exact).max()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_monte_carlo_coefficients_are_the_reweighted_discounts(case):
    """What the coefficient reader reads from the code: ``(gamma_L / beta)^k`` for the
    leader's returns and ``(gamma / beta)^k`` for ``dQ`` (``beta = max``)."""
    _, _, know = _case(*CASES[case])
    k = np.arange(30)
    for target, discount in (("leader", know.gamma_leader), ("dq", know.gamma)):
        c = cc.return_coefficients(cc.CRITICS[target, "monte-carlo"], know, target, 30)
        assert np.allclose(c, (discount / know.beta) ** k, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(CRITIC_MUTANTS))
def test_every_wrong_discount_critic_is_rejected(name, case):
    """Same checks, same problems: each mutant's limit is off by more than 1% of the
    table's scale (and the check above accepts at 1e-10)."""
    _, _, know = _case(*CASES[case])
    m = CRITIC_MUTANTS[name]
    target, method = m.replaces
    q, dq = _exact_tables(know)
    exact = q if target == "leader" else dq
    limit = _check(target, method, m.fn, know)
    assert np.abs(limit - exact).max() > 1e-2 * np.abs(exact).max(), (name, m.bug)


def test_bad_inputs_are_value_errors():
    problem, _ = random_problem(3, 2, 1, seed=0, parameterize="transitions")
    with pytest.raises(ValueError, match="transitions must not depend on x"):
        cc.rational_transitions(problem, M)
    with pytest.raises(ValueError, match="multiples of 1/7"):
        cc.exact_batch(np.full((2, 1, 2), 0.5), 7)
