"""Exact policy evaluation and occupancy measures."""

import numpy as np
import pytest
from hypothesis import given

from exact_bilevel import policy_evaluation, state_action_occupancy, state_occupancy
from exact_bilevel.core.evaluation import P_pi, entropy
from exact_bilevel.strategies import finite_mdps, seeds


def _policy(mdp, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)


@given(finite_mdps(max_states=7), seeds)
def test_policy_evaluation_solves_the_bellman_equation(mdp, seed):
    pi = _policy(mdp, seed)
    for tau in (0.0, 0.7):
        ev = policy_evaluation(mdp, pi, tau)
        rhs = (pi * mdp.reward).sum(-1) + tau * entropy(pi) + mdp.gamma * P_pi(mdp, pi) @ ev.v
        np.testing.assert_allclose(ev.v, rhs, atol=1e-12 * max(1, np.abs(ev.v).max()))
        np.testing.assert_allclose(ev.q, mdp.reward + mdp.gamma * mdp.transitions @ ev.v,
                                   atol=1e-12 * max(1, np.abs(ev.v).max()))


@given(finite_mdps(max_states=7), seeds)
def test_occupancy_mass_and_duality(mdp, seed):
    pi = _policy(mdp, seed)
    d = state_occupancy(mdp, pi)
    assert d.sum() == pytest.approx(1 / (1 - mdp.gamma), rel=1e-12)
    assert np.all(d >= -1e-15)
    # rho . V^pi == sum_{s,a} d(s, a) r(s, a)
    v = policy_evaluation(mdp, pi).v
    dsa = state_action_occupancy(mdp, pi)
    assert mdp.initial @ v == pytest.approx(np.sum(dsa * mdp.reward), rel=1e-11, abs=1e-12)


@given(finite_mdps(max_states=5))
def test_occupancy_matches_truncated_series(mdp):
    pi = np.full((mdp.n_states, mdp.n_actions), 1 / mdp.n_actions)
    Ppi = P_pi(mdp, pi)
    total, mu = np.zeros(mdp.n_states), mdp.initial.copy()
    for t in range(2000):
        total += mdp.gamma**t * mu
        mu = mu @ Ppi
        if mdp.gamma**t < 1e-17:
            break
    np.testing.assert_allclose(state_occupancy(mdp, pi), total, rtol=1e-10, atol=1e-14)


def test_entropy_handles_zero_probabilities():
    pi = np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(entropy(pi), [0.0, np.log(2)])


def test_policy_validation():
    from exact_bilevel import random_mdp
    mdp = random_mdp(3, 2)
    with pytest.raises(ValueError, match=r"policy\[1, :\]: sums to 0.5"):
        policy_evaluation(mdp, [[1, 0], [0.25, 0.25], [0, 1]])
    with pytest.raises(ValueError, match=r"policy: axis 1 must have length 2"):
        state_occupancy(mdp, np.ones((3, 3)) / 3)
