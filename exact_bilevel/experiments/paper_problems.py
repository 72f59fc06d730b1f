r"""Built-in benchmark problems from the papers, reproduced with exact ground truth.

* :func:`four_rooms_design` — FourRooms incentive design (Kudo et al. 2026; Thoma
  et al. 2024): softmax incentives over 104 cells + 1 slack logit.
* :func:`sobirl_synthetic` — the synthetic problem of Yang, Gao & Yuan (2024).
* :func:`exact_bilevel.games.discrete_toy` — the DiscreteToy Markov game.

Each returns a problem and the starting point; :mod:`exact_bilevel.experiments.reproduce`
runs the experiments.
"""

from __future__ import annotations

import numpy as np

from ..core.generators import four_rooms
from ..core.objectives import LeaderReturn, quadratic_objective
from ..core.parameterizations import CallableReward, FixedTransitions
from ..core.problem import BilevelProblem


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z.real))
    return e / e.sum()


def four_rooms_design(tau: float = 0.005, *, gamma: float = 0.99
                      ) -> tuple[BilevelProblem, np.ndarray, object]:
    r"""FourRooms incentive design as specified by Kudo et al. (2026).

    13x13 FourRooms, 104 free cells, actions up/right/down/left replaced by a
    uniformly random one with probability 0.33*4/3, walls stay put, start (4, 1),
    goal (1, 9) absorbing with no reward after it. With ``sigma = softmax(x)``
    over 105 logits (104 cells + 1 slack):

    * follower: ``r(s, a) = P(goal | s, a) + incentive(s)``,
      ``incentive(s) = -0.2 sigma[s]`` on every cell but the (absorbing) goal;
    * leader: ``+1`` per step at the target cell (8, 4), minus
      ``5 |incentive|_1 = 5 * 0.2 * (1 - sigma[104] - sigma[goal])`` charged on the
      step that reaches the goal (expected: times ``P(goal | s, a)``).

    ``gamma_F = gamma_L = gamma``. Returns ``(problem, x0 = 0, grid)``.
    """
    mdp, grid = four_rooms(gamma=gamma, random_action_prob=0.33 * 4 / 3)
    S, A = mdp.n_states, mdp.n_actions
    d = S + 1
    goal = grid.state((1, 9))
    reach = mdp.reward.copy()               # = P(goal | s, a) (goal_reward 1), 0 at the goal
    mask = np.ones(S)
    mask[goal] = 0.0                        # no incentive after the episode ends
    target = np.zeros((S, A))
    target[grid.state((8, 4))] = 1.0

    def dsigma(x: np.ndarray) -> np.ndarray:  # [d, d]: d sigma_i / d x_k
        sig = _softmax(x)
        return np.diag(sig) - np.outer(sig, sig)

    def follower(x: np.ndarray) -> np.ndarray:
        return reach + (-0.2 * _softmax(x)[:S] * mask)[:, None]

    def follower_jac(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to((-0.2 * mask[:, None] * dsigma(x)[:S])[:, None, :], (S, A, d))

    def cost(x: np.ndarray) -> np.ndarray:  # 5 |incentive|_1
        return 5 * 0.2 * (mask @ _softmax(x)[:S])

    def leader(x: np.ndarray) -> np.ndarray:
        return target - cost(x) * reach

    def leader_jac(x: np.ndarray) -> np.ndarray:
        dcost = 5 * 0.2 * (mask @ dsigma(x)[:S])  # [d]
        return -reach[..., None] * dcost[None, None, :]

    problem = BilevelProblem(CallableReward(follower, follower_jac, S, A, d),
                             FixedTransitions(mdp.transitions, d),
                             LeaderReturn(CallableReward(leader, leader_jac, S, A, d)),
                             gamma=gamma, tau=tau, initial=mdp.initial)
    return problem, np.zeros(d), grid


def sobirl_synthetic(seed: int = 0, *, n_states: int = 10, n_actions: int = 5,
                     n_params: int = 100, gamma: float = 0.5, tau: float = 1.0
                     ) -> tuple[BilevelProblem, np.ndarray]:
    r"""The synthetic problem of Yang, Gao & Yuan (2024).

    ``S = 10``, ``A = 5``, ``gamma = 0.5``, ``x`` in R^100; each ``P(.|s, a)`` has a
    random support of 1..S-1 states with random weights; ``r_x(s, a) = c_sa x^T M x``
    with ``c_sa`` a product of two U(0, 1) draws and ``M ~ N(0, 1)^{100x100}``;
    ``f(x, pi) = 1/2 |x|^2 + 1/2 |pi|_F^2`` (minimised); ``tau = 1``. At ``x = 0``
    the follower is uniform and ``f = S / (2A) = 1``, the optimum. ``x0 ~ N(0, I)``.
    """
    rng = np.random.default_rng(seed)
    S, A, d = n_states, n_actions, n_params
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            k = int(rng.integers(1, S))
            support = rng.choice(S, size=k, replace=False)
            P[s, a, support] = rng.random(k)
            P[s, a] /= P[s, a].sum()
    c = rng.random((S, A)) * rng.random((S, A))
    M = rng.normal(size=(d, d))
    reward = CallableReward(lambda x: c * (x @ M @ x),
                            lambda x: c[..., None] * ((M + M.T) @ x)[None, None, :], S, A, d)
    problem = BilevelProblem(reward, FixedTransitions(P, d), quadratic_objective(),
                             gamma=gamma, tau=tau)
    return problem, rng.normal(size=d)
