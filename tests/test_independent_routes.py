"""Independent routes to the exact hypergradient (issue: complex step, mpmath, sympy, recursions).

Stated tolerances (relative to the largest term summed into the gradient, see
``_util.term_scale``, which equals max|grad| unless the gradient cancels):
complex step vs closed form <= 1e-11; float64 vs mpmath (50 digits) <= 1e-12
on well-conditioned problems (tau >= 0.1, gamma <= 0.95); symbolic (sympy,
50 digits) vs mpmath <= 1e-40; HPGD gradient recursion vs adjoint <= 1e-12.
"""

import numpy as np
import pytest
from _util import term_scale
from hypothesis import given, settings
from mpmath import mp

from exact_bilevel import (
    BilevelProblem,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    gridworld,
    highprec,
    hypergradient,
    symbolic,
    tabular_incentive,
)
from exact_bilevel.crosscheck.complex_step import complex_step_hypergradient
from exact_bilevel.crosscheck.gradient_recursion import gradient_recursion
from exact_bilevel.crosscheck.unrolled import unrolled_hypergradient
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.strategies import bilevel_problems, discounts, temperatures


@given(bilevel_problems(parameterizations=("reward", "transitions", "both")))
def test_complex_step_matches_closed_form(case):
    cs = complex_step_hypergradient(case.problem, case.x)
    exact = hypergradient(case.problem, case.x).gradient
    assert np.max(np.abs(cs - exact)) <= 1e-11 * term_scale(case.problem, case.x)


@settings(max_examples=25)
@given(bilevel_problems(gammas=discounts(0.0, 0.95), taus=temperatures(0.1, 5.0)))
def test_float64_matches_mpmath(case):
    hp = highprec.hypergradient(case.problem, case.x, dps=50)
    ha = hypergradient(case.problem, case.x)
    scale = term_scale(case.problem, case.x)
    assert np.max(np.abs(hp.gradient_float() - ha.gradient)) <= 1e-12 * scale
    assert abs(float(hp.value) - ha.value) <= 1e-12 * max(1.0, abs(ha.value))
    assert hp.residual < mp.mpf(10) ** -40


def test_mpmath_route_is_self_consistent_across_precisions():
    problem, x = random_problem(4, 3, 2, seed=11, parameterize="both",
                                objective="leader_return_own_gamma")
    a = highprec.hypergradient(problem, x, dps=50)
    b = highprec.hypergradient(problem, x, dps=70)
    for ga, gb in zip(a.gradient, b.gradient, strict=True):
        assert abs(ga - gb) <= mp.mpf(10) ** -45 * max(1, abs(gb))


def test_mpmath_rejects_unsupported_models():
    from exact_bilevel import CallableReward
    problem, x = random_problem(2, 2, 1)
    p = BilevelProblem(CallableReward(lambda z: np.zeros((2, 2)), lambda z: np.zeros((2, 2, 1)),
                                      2, 2, 1), problem.transitions, problem.objective,
                       gamma=0.5, tau=1.0)
    with pytest.raises(ValueError, match="CallableReward: no high-precision evaluation"):
        highprec.hypergradient(p, x)


@pytest.fixture(scope="module")
def sym1():
    return symbolic.tiny_example(1)


@pytest.fixture(scope="module")
def sym2():
    return symbolic.tiny_example(2)


@pytest.mark.parametrize("gamma_L", [None, 0.6])
def test_symbolic_single_state_closed_form(sym1, gamma_L):
    x = np.array([0.3, -0.7])
    F, grad = symbolic.single_state_closed_form(sym1)
    subs = {sym1.gamma: 0.8, sym1.tau: 0.5, sym1.gamma_L: 0.8 if gamma_L is None else gamma_L,
            sym1.x[0]: x[0], sym1.x[1]: x[1]}
    closed = np.array([float(g.subs(subs)) for g in grad])
    implicit = symbolic.evaluate(sym1, x, gamma=0.8, tau=0.5, gamma_L=gamma_L)
    numeric = hypergradient(symbolic.to_problem(sym1, gamma=0.8, tau=0.5, gamma_L=gamma_L), x)
    np.testing.assert_allclose(implicit.gradient_float(), closed, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(numeric.gradient, closed, rtol=1e-13, atol=1e-15)
    assert float(F.subs(subs)) == pytest.approx(numeric.value, rel=1e-14)


@pytest.mark.parametrize(("gamma", "tau", "gamma_L"), [(0.8, 0.5, None), (0.6, 2.0, 0.9)])
def test_symbolic_two_states_matches_numeric_and_mpmath(sym2, gamma, tau, gamma_L):
    x = np.array([0.4, -0.2])
    sym = symbolic.evaluate(sym2, x, gamma=gamma, tau=tau, gamma_L=gamma_L, dps=50)
    problem = symbolic.to_problem(sym2, gamma=gamma, tau=tau, gamma_L=gamma_L)
    numeric = hypergradient(problem, x)
    np.testing.assert_allclose(sym.gradient_float(), numeric.gradient, rtol=1e-12, atol=1e-15)
    hp = highprec.hypergradient(problem, x, dps=50)
    with mp.workdps(50):
        for gs, gh in zip(sym.gradient, hp.gradient, strict=True):
            assert abs(gs - gh) <= mp.mpf(10) ** -40
        assert abs(sym.value - hp.value) <= mp.mpf(10) ** -40


def test_symbolic_derivation_latex_and_limits(sym2):
    tex = symbolic.latex_derivation(sym2)
    assert r"\frac{dV}{dx}" in tex and "\\gamma P_\\pi" in tex
    # dT/dV is gamma * P_pi, derived symbolically
    with pytest.raises(ValueError, match="S <= 2, A <= 2"):
        symbolic.build(P=[[[1, 0, 0]]] * 3, r=[[0]] * 3, r_L=[[0]] * 3, rho=[1, 0, 0], x=())


@given(bilevel_problems(objectives=("leader_return", "leader_return_own_gamma",
                                    "leader_return_x_reward")))
def test_hpgd_gradient_recursion_matches_adjoint(case):
    rec = gradient_recursion(case.problem, case.x)
    exact = hypergradient(case.problem, case.x).gradient
    assert np.max(np.abs(rec - exact)) <= 1e-12 * term_scale(case.problem, case.x)


def _two_terminal_problem(gamma):
    """State 0 chooses between two absorbing states with rewards 1 and 0: the policy
    error of K-step value iteration is exactly proportional to gamma^K."""
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    P[1, :, 1] = P[2, :, 2] = 1.0
    r = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    reward = tabular_incentive(r, pairs=[(0, 0)])
    leader = LeaderReturn(FixedReward(np.array([[0.0, 1.0], [0, 0], [0, 0]]), 1))
    return BilevelProblem(reward, FixedTransitions(P, 1), leader, gamma=gamma, tau=0.5,
                          initial=[1.0, 0.0, 0.0])


def test_unrolled_value_iteration_gradient_converges_at_rate_gamma():
    gamma = 0.9
    problem = _two_terminal_problem(gamma)
    x = np.array([0.1])
    exact = hypergradient(problem, x).gradient
    ks = np.arange(20, 200, 20)
    errors = np.array([abs(unrolled_hypergradient(problem, x, int(k)).gradient[0] - exact[0])
                       for k in ks])
    rate = np.exp(np.polyfit(ks, np.log(errors), 1)[0])
    assert rate == pytest.approx(gamma, rel=0.01)
    # on other MDPs the error is O(gamma^K) (usually faster: mixing contracts the span)
    mdp, _ = gridworld(["     ", "     ", "     "], goal=(0, 4), gamma=gamma,
                       random_action_prob=0.2, start=(2, 0))
    p = BilevelProblem(tabular_incentive(mdp.reward, states=[3, 7, 11]),
                       FixedTransitions(mdp.transitions, 3),
                       LeaderReturn(FixedReward(np.eye(15, 4), 3)), gamma=gamma, tau=0.3,
                       initial=mdp.initial)
    x3 = np.array([0.05, -0.1, 0.02])
    g = hypergradient(p, x3).gradient
    errs = [np.max(np.abs(unrolled_hypergradient(p, x3, k).gradient - g)) for k in (0, 50, 100)]
    assert errs[0] > errs[1] > errs[2]
    assert all(e <= 10 * (k + 1) * gamma**k * errs[0] for e, k in zip(errs, (0, 50, 100),
                                                                       strict=True))
    with pytest.raises(ValueError, match="n_steps = -1"):
        unrolled_hypergradient(p, x3, -1)
