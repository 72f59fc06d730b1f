"""Seeded random bilevel problems and the built-in demo problem.

Used by the tests, the hypothesis strategies, the demo and the benchmarks.
Every generator is reproducible bit for bit from its seed.
"""

from __future__ import annotations

import numpy as np

from ..core.generators import four_rooms, random_mdp
from ..core.objectives import LeaderReturn, Objective, quadratic_objective
from ..core.parameterizations import (
    AffineReward,
    FixedReward,
    FixedTransitions,
    RewardModel,
    SoftmaxTransitions,
    TransitionModel,
    tabular_incentive,
)
from ..core.problem import BilevelProblem

#: Which parts of the follower's MDP depend on x.
PARAMETERIZATIONS = ("reward", "transitions", "both")
#: Built-in objective kinds for :func:`random_problem`.
OBJECTIVES = ("leader_return", "leader_return_own_gamma", "leader_return_x_reward", "quadratic",
              "leader_return_far_sighted")


def random_affine_reward(rng: np.random.Generator, n_states: int, n_actions: int,
                         n_params: int, *, scale: float = 1.0) -> AffineReward:
    """``base ~ U(0, 1)``, ``features ~ N(0, scale^2)``."""
    return AffineReward(rng.random((n_states, n_actions)),
                        scale * rng.normal(size=(n_states, n_actions, n_params)))


def random_softmax_transitions(rng: np.random.Generator, n_states: int, n_actions: int,
                               n_params: int, *, scale: float = 0.5,
                               support: int | None = None) -> SoftmaxTransitions:
    """Logits ``N(0, 1)`` (``-inf`` off a random support of ``support`` states per row),
    features ``N(0, scale^2)``."""
    base = rng.normal(size=(n_states, n_actions, n_states))
    if support is not None and support < n_states:
        for s in range(n_states):
            for a in range(n_actions):
                off = rng.choice(n_states, size=n_states - support, replace=False)
                base[s, a, off] = -np.inf
    return SoftmaxTransitions(base, scale * rng.normal(size=(n_states, n_actions, n_states,
                                                              n_params)))


def random_problem(n_states: int, n_actions: int, n_params: int, *, seed: int = 0,
                   gamma: float = 0.9, tau: float = 0.5, parameterize: str = "reward",
                   objective: str = "leader_return") -> tuple[BilevelProblem, np.ndarray]:
    """A random bilevel problem and a random ``x ~ N(0, 1)``.

    Parameters
    ----------
    parameterize : {"reward", "transitions", "both"}
        Which parts of the follower's MDP depend on ``x``.
    objective : str
        ``"leader_return"`` (``r_L`` fixed, ``gamma_L = gamma``),
        ``"leader_return_own_gamma"`` (``gamma_L = gamma / 2 + 0.2``),
        ``"leader_return_x_reward"`` (``r_L`` affine in ``x``),
        ``"leader_return_far_sighted"`` (``gamma_L = (1 + gamma) / 2 > gamma``), or
        ``"quadratic"`` (``1/2|x|^2 + 1/2|pi|^2``).
    """
    if parameterize not in PARAMETERIZATIONS:
        raise ValueError(f"parameterize = {parameterize!r}: must be one of {PARAMETERIZATIONS}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective = {objective!r}: must be one of {OBJECTIVES}")
    rng = np.random.default_rng(seed)
    S, A, d = n_states, n_actions, n_params
    mdp = random_mdp(S, A, gamma=gamma, seed=int(rng.integers(2**31)))
    reward: RewardModel = random_affine_reward(rng, S, A, d)
    if parameterize == "transitions":
        reward = FixedReward(mdp.reward, d)
    transitions: TransitionModel = FixedTransitions(mdp.transitions, d)
    if parameterize != "reward":
        transitions = random_softmax_transitions(rng, S, A, d)
    leader_reward = AffineReward(rng.normal(size=(S, A)), np.zeros((S, A, d)))
    obj: Objective
    if objective == "quadratic":
        obj = quadratic_objective()
    elif objective == "leader_return_own_gamma":
        obj = LeaderReturn(leader_reward, leader_gamma=gamma / 2 + 0.2)
    elif objective == "leader_return_far_sighted":
        obj = LeaderReturn(leader_reward, leader_gamma=(1 + gamma) / 2)
    elif objective == "leader_return_x_reward":
        obj = LeaderReturn(random_affine_reward(rng, S, A, d))
    else:
        obj = LeaderReturn(leader_reward)
    problem = BilevelProblem(reward, transitions, obj, gamma=gamma, tau=tau,
                             initial=rng.dirichlet(np.ones(S)))
    return problem, rng.normal(size=d)


def demo_problem() -> tuple[BilevelProblem, np.ndarray]:
    """The problem ``exact-bilevel demo`` solves: S = 20, A = 4, d = 5, reward and
    transitions depend on ``x``, leader return with its own discount and an
    ``x``-dependent leader reward (gamma = 0.95, tau = 0.3)."""
    rng = np.random.default_rng(2026)
    S, A, d = 20, 4, 5
    reward = random_affine_reward(rng, S, A, d)
    transitions = random_softmax_transitions(rng, S, A, d, support=6)
    objective = LeaderReturn(random_affine_reward(rng, S, A, d, scale=0.3), leader_gamma=0.9)
    problem = BilevelProblem(reward, transitions, objective, gamma=0.95, tau=0.3,
                             initial=rng.dirichlet(np.ones(S)))
    return problem, 0.5 * rng.normal(size=d)


def four_rooms_incentives(tau: float = 0.05, n_incentives: int = 104, *,
                          gamma: float = 0.99, scale: float = -0.2
                          ) -> tuple[BilevelProblem, np.ndarray]:
    """FourRooms incentive design with tabular state incentives.

    The 13x13 FourRooms map (:func:`~exact_bilevel.core.generators.four_rooms`; start
    (4, 1), absorbing goal (1, 9) with reward 1 on reaching it, actions replaced by
    a uniform random one with probability 0.33*4/3). The follower's reward gets
    ``scale * x[k]`` at ``n_incentives`` evenly spread cells (all 104 by default);
    the leader earns 1 per step at the target cell (8, 4). ``x = 1/d`` everywhere.
    (The softmax-logit incentive and goal-charged cost of Kudo et al. are a
    separate benchmark.)
    """
    mdp, grid = four_rooms(gamma=gamma, random_action_prob=0.33 * 4 / 3)
    S = grid.n_states
    states = (list(range(S)) if n_incentives >= S
              else [int(s) for s in np.linspace(0, S - 1, n_incentives).round()])
    follower = tabular_incentive(mdp.reward, states=states, scale=scale)
    d = follower.n_params
    target = np.zeros((S, 4))
    target[grid.state((8, 4))] = 1.0
    problem = BilevelProblem(follower, FixedTransitions(mdp.transitions, d),
                             LeaderReturn(FixedReward(target, d)), gamma=gamma, tau=tau,
                             initial=mdp.initial)
    return problem, np.full(d, 1.0 / d)
