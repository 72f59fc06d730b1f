"""Gymnasium toy-text environments as FiniteMDPs, and incentive problems on them.

Needs the ``gym`` extra, which the ``test`` extra includes.
Tolerances: hypergradient == Richardson finite differences to 1e-7 relative;
Monte Carlo return of 4000 Gymnasium episodes within 5 standard errors of
``rho . V`` (false alarm ~6e-7).
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest

from exact_bilevel import (
    BilevelProblem,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    hypergradient,
    policy_evaluation,
    state_occupancy,
    tabular_incentive,
)
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.gym_envs import from_gymnasium

ENVS = {"FrozenLake-v1": {}, "Taxi-v4": {}, "CliffWalking-v1": {}}


def _make(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(name)


@pytest.mark.parametrize("name", ENVS)
def test_conversion_is_a_valid_mdp(name):
    env = _make(name)
    mdp = from_gymnasium(env, 0.95)
    S = env.unwrapped.observation_space.n
    assert mdp.n_states == S + 1 and mdp.n_actions == env.unwrapped.action_space.n
    assert np.all(mdp.transitions[S, :, S] == 1.0) and np.all(mdp.reward[S] == 0.0)
    assert mdp.initial[S] == 0.0


def test_frozen_lake_return_matches_gymnasium_rollouts():
    """Uniform policy: exact rho . V (gamma = 1 - 1e-9 is not allowed, so gamma = 0.99)
    against discounted returns of episodes played in Gymnasium itself."""
    env = _make("FrozenLake-v1")
    gamma = 0.99
    mdp = from_gymnasium(env, gamma)
    pi = np.full((mdp.n_states, mdp.n_actions), 1 / mdp.n_actions)
    exact = mdp.initial @ policy_evaluation(mdp, pi).v
    rng = np.random.default_rng(0)
    returns = []
    for i in range(4000):
        env.reset(seed=i)
        g, disc, done = 0.0, 1.0, False
        while not done:
            _, rew, term, trunc, _ = env.step(int(rng.integers(4)))
            g += disc * rew
            disc *= gamma
            done = term or trunc
        returns.append(g)
    returns = np.array(returns)
    # Gymnasium truncates FrozenLake at 100 steps: bias <= gamma^100 * max|V| = 0.37 * V.
    # Compare with the same truncation applied to the exact value instead:
    P_pi = mdp.P_pi(pi)
    r_pi = (pi * mdp.reward).sum(axis=1)
    v_trunc, dist = 0.0, mdp.initial.copy()
    for t in range(100):
        v_trunc += gamma ** t * dist @ r_pi
        dist = dist @ P_pi
    se = returns.std(ddof=1) / np.sqrt(returns.size)
    assert abs(returns.mean() - v_trunc) <= 5 * se
    assert v_trunc <= exact + 1e-12


@pytest.mark.parametrize("name", ENVS)
def test_incentive_hypergradient_on_gymnasium_env(name):
    """Incentives on the three most visited states (uniform policy); the leader is paid
    the environment's own reward, so every component of the gradient is non-zero."""
    mdp = from_gymnasium(_make(name), 0.9)
    S, A = mdp.n_states, mdp.n_actions
    occ = state_occupancy(mdp, np.full((S, A), 1 / A))
    states = [int(s) for s in np.argsort(-occ[:-1])[:3]]
    follower = tabular_incentive(mdp.reward, states=states, scale=0.5)
    d = follower.n_params
    leader = LeaderReturn(FixedReward(mdp.reward, d))
    problem = BilevelProblem(follower, FixedTransitions(mdp.transitions, d), leader,
                             gamma=0.9, tau=0.3, initial=mdp.initial)
    x = np.array([0.3, -0.2, 0.1])
    exact = hypergradient(problem, x).gradient
    assert np.all(np.abs(exact) > 1e-6)
    fd = richardson_gradient(problem.value, x, h=1e-2, levels=3).gradient
    assert np.max(np.abs(exact - fd)) <= 1e-7 * np.max(np.abs(exact))


def test_bad_env():
    class NoModel:
        pass
    with pytest.raises(ValueError, match=r"env: has no model dictionary"):
        from_gymnasium(NoModel(), 0.9)
