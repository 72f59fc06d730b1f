r"""Built-in benchmark problems from the papers, reproduced with exact ground truth.

* :func:`four_rooms_design` — FourRooms incentive design (Kudo et al. 2026; Thoma
  et al. 2024): softmax incentives over 104 cells + 1 slack logit.
* :func:`sobirl_synthetic` — the synthetic problem of Yang, Gao & Yuan (2025).
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


#: Variants of :func:`four_rooms_design`.
FOUR_ROOMS_VARIANTS = ("official", "absorbing-goal")
#: Transition kernels of the official code: the matrix every official solve and score
#: uses (random replacement with probability 16 f / 9: intended move 0.56, others
#: 0.1467) and the simulator that generates its episodes (4 f / 3: 0.667 / 0.111).
FOUR_ROOMS_KERNELS = {"matrix": 16 / 9, "simulator": 4 / 3}


def four_rooms_design(tau: float = 0.005, *, gamma: float = 0.99, incentive_cost: float = 5.0,
                      kernel: str = "matrix", variant: str = "official",
                      fail_prob: float = 0.33) -> tuple[BilevelProblem, np.ndarray, object]:
    r"""FourRooms incentive design (Kudo et al. 2026; Thoma et al. 2024), as the authors ran it.

    13x13 FourRooms, 104 free cells, actions up/right/down/left, walls stay put,
    start (4, 1), goal (1, 9), target (8, 4). The leader's 105 logits ``x`` (104
    cells + 1 slack) give ``sigma = softmax(x)`` and the incentive ``-0.2 sigma[s]``
    on every action of each non-goal cell. ``gamma_F = gamma_L = gamma``, ``F`` is
    the infinite-horizon discounted return.

    ``variant="official"`` (default) follows the authors' code
    (the authors' public code (akimotolab/BC-HG); checked: ``F(0) = -0.740644`` at ``tau = 0.001``
    and ``-0.667413`` at ``0.005``):

    * **kernel** ``"matrix"``: with probability ``16 f / 9`` the action is replaced by
      a uniformly random one (intended move 0.56, each other 0.1467 at ``f = 0.33``):
      the matrix every official solve and score uses. ``"simulator"`` (``4 f / 3``:
      0.667 / 0.111) is the kernel the official simulator samples episodes from;
    * **terminal goal**: reaching the goal ends the episode; at the goal the follower
      collects reward 1 and the entropy ``tau log A`` once, the leader pays
      ``incentive_cost * |incentive|_1 = c 0.2 (1 - sigma_slack)`` (the goal cell's own
      share counts), nothing after. Encoded exactly as an absorbing goal whose
      per-step rewards give those values: follower ``(1 - gamma)(1 + tau log A) -
      tau log A``, so that ``V(goal) = 1 + tau log A``; leader ``(1 - gamma)`` times
      the cost. (Samplers therefore keep stepping in the goal, at no bias.)
    * leader: ``+1`` per step at the target.

    ``variant="absorbing-goal"`` is exact_bilevel's earlier reading of the paper
    (kept for comparison): kernel 0.667 / 0.111, reward 1 on the step that reaches
    the goal, an absorbing goal that keeps paying the entropy bonus ``tau log A``
    forever, and a cost ``c 0.2 (1 - sigma_slack - sigma_goal)`` charged on arrival.

    Returns ``(problem, x0 = 0, grid)``.
    """
    if variant not in FOUR_ROOMS_VARIANTS:
        raise ValueError(f"variant = {variant!r}: must be one of {FOUR_ROOMS_VARIANTS}")
    if kernel not in FOUR_ROOMS_KERNELS:
        raise ValueError(f"kernel = {kernel!r}: must be one of {tuple(FOUR_ROOMS_KERNELS)}")
    if variant == "absorbing-goal":
        return _four_rooms_absorbing(tau, gamma=gamma, incentive_cost=incentive_cost,
                                     fail_prob=fail_prob)
    mdp, grid = four_rooms(gamma=gamma, random_action_prob=FOUR_ROOMS_KERNELS[kernel] * fail_prob)
    S, A = mdp.n_states, mdp.n_actions
    d = S + 1
    goal, target = grid.state((1, 9)), grid.state((8, 4))
    entropy = tau * np.log(A)
    base = np.zeros((S, A))
    base[goal] = (1 - gamma) * (1.0 + entropy) - entropy  # V(goal) = 1 + tau log A
    mask = np.ones(S)
    mask[goal] = 0.0                                      # no incentive at the goal
    at_goal = np.zeros((S, A))
    at_goal[goal] = 1 - gamma                             # a once-only leader payment
    reward_L = np.zeros((S, A))
    reward_L[target] = 1.0

    def leader(x: np.ndarray) -> np.ndarray:
        return reward_L - incentive_cost * 0.2 * (1 - _softmax(x)[S]) * at_goal

    def leader_jac(x: np.ndarray) -> np.ndarray:
        dcost = -incentive_cost * 0.2 * _dsoftmax(x)[S]   # d/dx of c 0.2 (1 - sigma_slack)
        return -at_goal[..., None] * dcost[None, None, :]

    problem = BilevelProblem(_incentive_reward(base, mask), FixedTransitions(mdp.transitions, d),
                             LeaderReturn(CallableReward(leader, leader_jac, S, A, d)),
                             gamma=gamma, tau=tau, initial=mdp.initial)
    return problem, np.zeros(d), grid


def _incentive_reward(base: np.ndarray, mask: np.ndarray) -> CallableReward:
    """Follower reward ``base[s, a] - 0.2 softmax(x)[s] mask[s]`` of the 105 logits ``x``
    (104 cells + slack) and its Jacobian ``[S, A, S + 1]``."""
    S, A = base.shape
    d = S + 1

    def follower(x: np.ndarray) -> np.ndarray:
        return base + (-0.2 * _softmax(x)[:S] * mask)[:, None]

    def follower_jac(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to((-0.2 * mask[:, None] * _dsoftmax(x)[:S])[:, None, :],
                               (S, A, d))

    return CallableReward(follower, follower_jac, S, A, d)


def _dsoftmax(x: np.ndarray) -> np.ndarray:
    """``[d, d]``: ``d sigma_i / d x_k = sigma_i (delta_ik - sigma_k)``."""
    sig = _softmax(x)
    return np.diag(sig) - np.outer(sig, sig)


def _four_rooms_absorbing(tau: float, *, gamma: float, incentive_cost: float,
                          fail_prob: float) -> tuple[BilevelProblem, np.ndarray, object]:
    """The ``"absorbing-goal"`` variant of :func:`four_rooms_design`."""
    mdp, grid = four_rooms(gamma=gamma, random_action_prob=fail_prob * 4 / 3)
    S, A = mdp.n_states, mdp.n_actions
    d = S + 1
    goal = grid.state((1, 9))
    reach = mdp.reward.copy()               # = P(goal | s, a) (goal_reward 1), 0 at the goal
    mask = np.ones(S)
    mask[goal] = 0.0                        # no incentive after the episode ends
    target = np.zeros((S, A))
    target[grid.state((8, 4))] = 1.0

    def cost(x: np.ndarray) -> np.ndarray:  # c |incentive|_1 without the goal's share
        return incentive_cost * 0.2 * (mask @ _softmax(x)[:S])

    def leader(x: np.ndarray) -> np.ndarray:
        return target - cost(x) * reach

    def leader_jac(x: np.ndarray) -> np.ndarray:
        dcost = incentive_cost * 0.2 * (mask @ _dsoftmax(x)[:S])  # [d]
        return -reach[..., None] * dcost[None, None, :]

    problem = BilevelProblem(_incentive_reward(reach, mask), FixedTransitions(mdp.transitions, d),
                             LeaderReturn(CallableReward(leader, leader_jac, S, A, d)),
                             gamma=gamma, tau=tau, initial=mdp.initial)
    return problem, np.zeros(d), grid


def sobirl_synthetic(seed: int = 0, *, n_states: int = 10, n_actions: int = 5,
                     n_params: int = 100, gamma: float = 0.5, tau: float = 1.0
                     ) -> tuple[BilevelProblem, np.ndarray]:
    r"""The synthetic problem of Yang, Gao & Yuan (2025).

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
