"""Exact hypergradient: adjoint == forward, both == Richardson finite differences.

Tolerances: adjoint vs forward <= 1e-12 relative to max|grad|, closed form vs
central differences with Richardson extrapolation (h = 1e-2, 3 levels) <= 1e-7
relative to max|grad| (the issue's requirement; measured agreement is ~1e-11).
"""

import numpy as np
import pytest
from _util import term_scale
from hypothesis import given, settings

from exact_bilevel import (
    AffineReward,
    BilevelProblem,
    CallableReward,
    CallableTransitions,
    FixedReward,
    FixedTransitions,
    GeneralObjective,
    LeaderReturn,
    covariance_decomposition,
    follower_sensitivities,
    hypergradient,
    l2_penalty,
    random_mdp,
    tabular_incentive,
)
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.experiments.examples import OBJECTIVES, PARAMETERIZATIONS, random_problem
from exact_bilevel.strategies import bilevel_problems


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@given(bilevel_problems())
def test_adjoint_equals_forward(case):
    ha = hypergradient(case.problem, case.x, mode="adjoint")
    hf = hypergradient(case.problem, case.x, mode="forward")
    assert np.max(np.abs(ha.gradient - hf.gradient)) <= 1e-12 * term_scale(case.problem, case.x)
    assert ha.value == hf.value


@pytest.mark.parametrize("parameterize", PARAMETERIZATIONS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_matches_richardson_finite_differences(parameterize, objective):
    problem, x = random_problem(5, 3, 4, seed=7, gamma=0.9, tau=0.4,
                                parameterize=parameterize, objective=objective)
    exact = hypergradient(problem, x).gradient
    fd = richardson_gradient(problem.value, x, h=1e-2, levels=3)
    assert _rel(exact, fd.gradient) <= 1e-7


@settings(max_examples=15)
@given(bilevel_problems(max_states=4, max_actions=3, max_params=3))
def test_matches_finite_differences_on_drawn_problems(case):
    exact = hypergradient(case.problem, case.x).gradient
    fd = richardson_gradient(case.problem.value, case.x, h=1e-2, levels=3)
    assert np.max(np.abs(exact - fd.gradient)) <= 1e-7 * max(1.0, np.max(np.abs(exact)))


@given(bilevel_problems())
def test_sensitivity_identities(case):
    p = case.problem
    state = p.follower_state(case.x)
    sens = follower_sensitivities(p, state)
    pi = state.solution.policy
    scale = max(1.0, float(np.max(np.abs(sens.dQ))))
    # Boltzmann covariance identity: dV(s) = E_{a~pi} dQ(s, a)
    np.testing.assert_allclose(np.einsum("sa,sak->sk", pi, sens.dQ), sens.dV,
                               atol=1e-12 * scale)
    # dQ is the policy evaluation of the vector reward g, here by an independent
    # state-action-sized dense solve: dQ = (I - gamma P Pi)^{-1} g,
    # (P Pi)[(s, a), (s', a')] = P[s, a, s'] pi[s', a']
    S, A = pi.shape
    P = np.asarray(state.mdp.transitions)
    PPi = np.einsum("sat,tb->satb", P, pi).reshape(S * A, S * A)
    dQ = np.linalg.solve(np.eye(S * A) - p.gamma * PPi, sens.g.reshape(S * A, -1))
    np.testing.assert_allclose(sens.dQ.reshape(S * A, -1), dQ, atol=1e-11 * scale)
    np.testing.assert_allclose(sens.dpi.sum(axis=1), 0.0, atol=1e-12 * scale / p.tau)


def test_sensitivities_match_finite_differences_of_the_solution():
    problem, x = random_problem(4, 3, 2, seed=3, parameterize="both")
    sens = follower_sensitivities(problem, problem.follower_state(x))
    for name, get in [("v", lambda s: s.v), ("q", lambda s: s.q), ("policy", lambda s: s.policy)]:
        ref = sens.dV if name == "v" else (sens.dQ if name == "q" else sens.dpi)
        for k in range(2):
            for idx in np.ndindex(ref.shape[:-1]):
                f = lambda t, idx=idx, k=k, get=get: get(  # noqa: E731
                    problem.follower_state(x + t[0] * np.eye(2)[k]).solution)[idx]
                fd = richardson_gradient(f, np.zeros(1)).gradient[0]
                assert fd == pytest.approx(ref[(*idx, k)], abs=1e-8)


@given(bilevel_problems(objectives=("leader_return", "leader_return_own_gamma",
                                    "leader_return_x_reward")))
def test_covariance_decomposition_sums_to_indirect_term(case):
    c = covariance_decomposition(case.problem, case.x)
    hf = hypergradient(case.problem, case.x, mode="forward")
    assert c.shape == (case.problem.n_states, case.problem.n_params)
    np.testing.assert_allclose(c.sum(axis=0), hf.indirect,
                               rtol=0, atol=1e-12 * term_scale(case.problem, case.x))


def test_covariance_decomposition_requires_leader_return():
    problem, x = random_problem(3, 2, 2, objective="quadratic")
    with pytest.raises(ValueError, match="objective must be LeaderReturn"):
        covariance_decomposition(problem, x)


def test_single_state_single_action():
    # A = 1: the follower has no choice, so the indirect term vanishes.
    problem, x = random_problem(3, 1, 2, seed=1, parameterize="both")
    hg = hypergradient(problem, x, mode="forward")
    np.testing.assert_allclose(hg.indirect, 0.0, atol=1e-13 * term_scale(problem, x))
    # S = 1: closed form V = tau log sum_a exp(r_a / tau) / (1 - gamma)
    problem, x = random_problem(1, 3, 2, seed=2, parameterize="reward")
    for mode in ("adjoint", "forward"):
        hg = hypergradient(problem, x, mode=mode)
        fd = richardson_gradient(problem.value, x)
        assert _rel(hg.gradient, fd.gradient) <= 1e-9


def test_tabular_incentive_matches_dense_affine_reward():
    mdp = random_mdp(5, 3, gamma=0.8, seed=4)
    inc = tabular_incentive(mdp.reward, states=[0, 3])
    pairs = tabular_incentive(mdp.reward, pairs=[(1, 2), (4, 0), (2, 1)])
    phi = np.zeros((5, 3, 2))
    phi[0, :, 0] = 1
    phi[3, :, 1] = 1
    dense = AffineReward(mdp.reward, phi)
    np.testing.assert_array_equal(inc.features, dense.features)
    assert pairs.features[4, 0, 1] == 1 and pairs.features.sum() == 3
    leader = LeaderReturn(FixedReward(np.eye(5, 3), 2))
    x = np.array([0.3, -0.2])
    g = [hypergradient(BilevelProblem(m, FixedTransitions(mdp.transitions, 2), leader,
                                      gamma=0.8, tau=0.2), x).gradient for m in (inc, dense)]
    np.testing.assert_allclose(g[0], g[1], rtol=1e-13)
    # another scale: x[k] enters as scale * x[k], against a hand-built dense model
    scaled = tabular_incentive(mdp.reward, pairs=[(1, 2), (4, 0)], scale=-0.2)
    phi2 = np.zeros((5, 3, 2))
    phi2[1, 2, 0] = phi2[4, 0, 1] = -0.2
    np.testing.assert_allclose(scaled.value(x), mdp.reward + phi2 @ x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(scaled.jacobian(x)), phi2, rtol=0, atol=0)
    g2 = [hypergradient(BilevelProblem(m, FixedTransitions(mdp.transitions, 2), leader,
                                       gamma=0.8, tau=0.2), x).gradient
          for m in (scaled, AffineReward(mdp.reward, phi2))]
    np.testing.assert_allclose(g2[0], g2[1], rtol=1e-13)
    with pytest.raises(ValueError, match=r"states\[1\] = 7: must be a state index"):
        tabular_incentive(mdp.reward, states=[0, 7])
    with pytest.raises(ValueError, match=r"pairs\[1\] = \(1, 2\): appears twice"):
        tabular_incentive(mdp.reward, pairs=[(1, 2), (1, 2)])


def test_callable_models_match_builtin_ones():
    problem, x = random_problem(4, 2, 3, seed=5, parameterize="both",
                                objective="leader_return_x_reward")
    fr, tr = problem.follower_reward, problem.transitions
    S, A, d = 4, 2, 3

    def dP(z):
        P = tr.value(z)
        psi = tr.features
        mean = np.einsum("sat,satk->sak", P, psi)
        return P[..., None] * (psi - mean[:, :, None, :])

    callable_problem = BilevelProblem(
        CallableReward(fr.value, fr.jacobian, S, A, d),
        CallableTransitions(tr.value, dP, S, A, d),
        problem.objective, gamma=problem.gamma, tau=problem.tau, initial=problem.initial)
    for mode in ("adjoint", "forward"):
        np.testing.assert_allclose(hypergradient(callable_problem, x, mode=mode).gradient,
                                   hypergradient(problem, x).gradient, rtol=1e-12, atol=1e-14)


def test_regularizer_and_general_objective():
    problem, x = random_problem(4, 3, 3, seed=6, objective="leader_return")
    reg = LeaderReturn(problem.objective.leader_reward, regularizer=l2_penalty(0.7))
    p2 = BilevelProblem(problem.follower_reward, problem.transitions, reg, gamma=problem.gamma,
                        tau=problem.tau, initial=problem.initial)
    g1, g2 = hypergradient(problem, x), hypergradient(p2, x)
    np.testing.assert_allclose(g2.gradient, g1.gradient - 0.7 * x, rtol=1e-13)
    assert g2.value == pytest.approx(g1.value - 0.35 * x @ x)
    # a general f(x, pi) depending on pi only through one entry
    unit = np.zeros((4, 3))
    unit[0, 1] = 1.0
    obj = GeneralObjective(lambda z, pi: pi[0, 1], lambda z, pi: np.zeros(3),
                           lambda z, pi: unit)
    p3 = BilevelProblem(problem.follower_reward, problem.transitions, obj,
                        gamma=problem.gamma, tau=problem.tau)
    hg = hypergradient(p3, x, mode="forward")
    np.testing.assert_allclose(hg.gradient, hg.sensitivities.dpi[0, 1], rtol=1e-13)


def test_bad_inputs():
    problem, x = random_problem(3, 2, 2)
    with pytest.raises(ValueError, match=r"x: must have length 2"):
        hypergradient(problem, [1.0])
    with pytest.raises(ValueError, match=r"x\[1\] = nan: must be finite"):
        hypergradient(problem, [1.0, np.nan])
    with pytest.raises(ValueError, match=r"mode = 'reverse': must be one of"):
        hypergradient(problem, x, mode="reverse")
    other = random_mdp(4, 2)
    with pytest.raises(ValueError, match=r"transitions: has \(S, A\) = \(4, 2\)"):
        BilevelProblem(problem.follower_reward, FixedTransitions(other.transitions, 2),
                       problem.objective, gamma=0.9, tau=1.0)
    with pytest.raises(ValueError, match=r"leader_reward: has \(S, A, d\) = \(3, 2, 5\)"):
        BilevelProblem(problem.follower_reward, problem.transitions,
                       LeaderReturn(FixedReward(np.zeros((3, 2)), 5)), gamma=0.9, tau=1.0)
    with pytest.raises(ValueError, match=r"tau = 0.0: must be > 0"):
        BilevelProblem(problem.follower_reward, problem.transitions, problem.objective,
                       gamma=0.9, tau=0.0)
    bad = CallableTransitions(lambda z: np.full((3, 2, 3), 0.5), lambda z: None, 3, 2, 2)
    p = BilevelProblem(problem.follower_reward, bad, problem.objective, gamma=0.9, tau=1.0)
    with pytest.raises(ValueError, match=r"invalid MDP: transitions\[0, 0, :\]: sums to 1.5"):
        hypergradient(p, x)


def test_batched_hypergradients_equal_independent_calls():
    """hypergradients() over many x (warm-started along a nearest-neighbour chain) returns
    the rows in input order and equals independent calls to the solver tolerance."""
    from exact_bilevel import hypergradients
    from exact_bilevel.experiments.examples import random_problem

    problem, x0 = random_problem(30, 3, 4, seed=5, parameterize="both")
    X = x0 + 0.3 * np.random.default_rng(0).normal(size=(12, 4))
    batch = hypergradients(problem, X)
    given = hypergradients(problem, X, order="given", mode="forward")
    for i, x in enumerate(X):
        hg = hypergradient(problem, x)
        scale = np.max(np.abs(hg.gradient))
        assert np.max(np.abs(batch.gradients[i] - hg.gradient)) <= 1e-11 * scale
        assert np.max(np.abs(given.gradients[i] - hg.gradient)) <= 1e-11 * scale
        assert abs(batch.values[i] - hg.value) <= 1e-12 * max(1.0, abs(hg.value))
        assert np.allclose(batch.direct[i] + batch.indirect[i], batch.gradients[i], atol=0)
    assert batch.residuals.max() < 1e-9
    with pytest.raises(ValueError, match="X: axis 1 must have length 4"):
        hypergradients(problem, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="order"):
        hypergradients(problem, X, order="random")


def test_batched_hypergradients_reuse_the_previous_lu_along_a_path():
    """Along a path of nearby points (steps of 1e-3) the batch starts each solve with a
    chord step through the previous point's LU: from S = 400 on (where solves refine
    through a nearby LU instead of refactorising) most points need no factorisation at
    all, and every gradient still equals an independent call (1e-11)."""
    from exact_bilevel import hypergradients
    from exact_bilevel.core.problem import REFINE_MIN_STATES
    from exact_bilevel.experiments.examples import random_problem

    problem, x0 = random_problem(REFINE_MIN_STATES, 3, 4, seed=7, gamma=0.95)
    X = x0 + 1e-3 * np.cumsum(np.random.default_rng(1).normal(size=(10, 4)), axis=0)
    batch = hypergradients(problem, X, order="given")
    independent = [problem.follower_state(x).solution.factorizations for x in X]
    assert batch.factorizations[1:].sum() <= 2 and min(independent) >= 1
    for i, x in enumerate(X):
        hg = hypergradient(problem, x)
        assert np.max(np.abs(batch.gradients[i] - hg.gradient)) <= 1e-11 * np.max(
            np.abs(hg.gradient))
