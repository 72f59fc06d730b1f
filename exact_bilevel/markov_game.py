r"""Two-player Markov games: the leader acts too, the follower soft-best-responds.

Shapes: joint transitions ``P[s, aL, aF, s']``, rewards ``r_F[s, aL, aF]``,
``r_L[s, aL, aF]``, ``rho[s]``. The leader's policy is a tabular softmax,
``piL(aL|s; theta) = softmax(theta[s, :])`` with ``theta`` flattened to
``x[s * AL + aL]`` (``d = S * AL``). MATH.md ("Two-player Markov game"):

* **follower observes s** (:data:`OBSERVES_STATE`): it faces the induced MDP
  ``P_theta(s'|s, aF) = sum_aL piL(aL|s) P(s'|s, aL, aF)``, ``r_theta`` likewise,
  so ``theta`` enters its reward *and* transitions; the leader's objective is its
  return with the induced leader reward ``sum_aL piL r_L``;
* **follower observes (s, aL)** (:data:`OBSERVES_STATE_AND_LEADER_ACTION`, as in
  Kudo et al. 2026): its state is ``(s, aL)`` (index ``s * AL + aL``), with
  ``P_aug[(s, aL), aF, (s', aL')] = P(s'|s, aL, aF) piL(aL'|s')`` — ``theta``
  enters through the transition into the next ``(s', aL')`` — and initial law
  ``rho(s) piL(aL|s)``, which also depends on ``theta``.

Both become a :class:`~exact_bilevel.problem.BilevelProblem` (:func:`follower_problem`)
whose exact hypergradient is the generic one; the second adds the initial-law
term ``sum_{s,aL} rho(s) dpiL(aL|s) V_L(s, aL)`` (:func:`hypergradient`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate
from .estimators import Estimate, leader_knowledge
from .estimators import estimate as _estimate
from .estimators._common import episodes_for_budget
from .estimators.critics import exact_critic
from .hypergradient import hypergradient as _hypergradient
from .objectives import LeaderReturn
from .parameterizations import (
    CallableReward,
    CallableTransitions,
    FixedReward,
)
from .problem import BilevelProblem
from .sampling import Sampler

OBSERVES_STATE = "state"
OBSERVES_STATE_AND_LEADER_ACTION = "state_and_leader_action"
_OBSERVATIONS = (OBSERVES_STATE, OBSERVES_STATE_AND_LEADER_ACTION)


@dataclass(frozen=True)
class MarkovGame:
    """A two-player Markov game with a tabular-softmax leader and a soft follower.

    Parameters
    ----------
    transitions : array, shape (S, AL, AF, S)
    follower_reward, leader_reward : arrays, shape (S, AL, AF)
    initial : array, shape (S,)
    gamma : float
        Follower discount; ``leader_gamma`` defaults to it.
    tau : float
        Follower temperature.
    observes : {"state", "state_and_leader_action"}
        The follower's information structure.
    """

    transitions: np.ndarray
    follower_reward: np.ndarray
    leader_reward: np.ndarray
    initial: np.ndarray
    gamma: float
    tau: float
    observes: str = OBSERVES_STATE_AND_LEADER_ACTION
    leader_gamma: float | None = None

    def __post_init__(self) -> None:
        P = _validate.real_array("transitions", self.transitions, ndim=4)
        S, AL, AF, S2 = P.shape
        if S2 != S:
            raise ValueError(f"transitions: shape must be (S, AL, AF, S), got {P.shape}")
        _validate.stochastic_rows("transitions", P)
        rF = _validate.real_array("follower_reward", self.follower_reward, shape=(S, AL, AF))
        rL = _validate.real_array("leader_reward", self.leader_reward, shape=(S, AL, AF))
        rho = _validate.real_array("initial", self.initial, shape=(S,))
        _validate.stochastic_rows("initial", rho)
        if self.observes not in _OBSERVATIONS:
            raise ValueError(f"observes = {self.observes!r}: must be one of {_OBSERVATIONS}")
        object.__setattr__(self, "transitions", P)
        object.__setattr__(self, "follower_reward", rF)
        object.__setattr__(self, "leader_reward", rL)
        object.__setattr__(self, "initial", rho)
        object.__setattr__(self, "gamma", _validate.discount("gamma", self.gamma))
        object.__setattr__(self, "tau", _validate.temperature("tau", self.tau))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(S, AL, AF)``."""
        S, AL, AF, _ = self.transitions.shape
        return S, AL, AF

    @property
    def n_params(self) -> int:
        S, AL, _ = self.shape
        return S * AL


def leader_policy(game: MarkovGame, x: np.ndarray) -> np.ndarray:
    """``piL[s, aL] = softmax(theta[s, :])``, ``theta = x.reshape(S, AL)`` (real-max shifted)."""
    S, AL, _ = game.shape
    z = x.reshape(S, AL)
    e = np.exp(z - np.max(z.real, axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def leader_policy_jacobian(game: MarkovGame, x: np.ndarray) -> np.ndarray:
    """``dpiL[s, aL, k]`` with ``k = s' * AL + b``: ``pi(aL|s) (delta_ab - pi(b|s))`` if
    ``s' = s``, else 0; shape ``[S, AL, S*AL]``."""
    S, AL, _ = game.shape
    pi = leader_policy(game, x)
    block = pi[:, :, None] * (np.eye(AL)[None] - pi[:, None, :])  # [S, aL, b]
    out = np.zeros((S, AL, S, AL), dtype=block.dtype)
    out[np.arange(S), :, np.arange(S), :] = block
    return out.reshape(S, AL, S * AL)


def _induced(game: MarkovGame) -> tuple[CallableReward, CallableTransitions, CallableReward]:
    S, _, AF = game.shape
    d = game.n_params
    P, rF, rL = game.transitions, game.follower_reward, game.leader_reward

    def reward(table: np.ndarray) -> CallableReward:
        return CallableReward(lambda x: np.einsum("sl,slf->sf", leader_policy(game, x), table),
                              lambda x: np.einsum("slk,slf->sfk",
                                                  leader_policy_jacobian(game, x), table),
                              S, AF, d)

    trans = CallableTransitions(
        lambda x: np.einsum("sl,slft->sft", leader_policy(game, x), P),
        lambda x: np.einsum("slk,slft->sftk", leader_policy_jacobian(game, x), P), S, AF, d)
    return reward(rF), trans, reward(rL)


def _augmented(game: MarkovGame) -> tuple[FixedReward, CallableTransitions, FixedReward]:
    S, AL, AF = game.shape
    d = game.n_params
    P = game.transitions  # [s, aL, aF, s']

    def fn(x: np.ndarray) -> np.ndarray:
        pi = leader_policy(game, x)  # [s', aL']
        return np.einsum("slft,tm->slftm", P, pi).reshape(S * AL, AF, S * AL)

    def jac(x: np.ndarray) -> np.ndarray:
        dpi = leader_policy_jacobian(game, x)  # [s', aL', k]
        return np.einsum("slft,tmk->slftmk", P, dpi).reshape(S * AL, AF, S * AL, d)

    def flat(r: np.ndarray) -> FixedReward:
        return FixedReward(r.reshape(S * AL, AF), d)

    return flat(game.follower_reward), CallableTransitions(fn, jac, S * AL, AF, d), \
        flat(game.leader_reward)


def follower_problem(game: MarkovGame, x: object) -> BilevelProblem:
    """The follower's bilevel problem in ``theta = x``.

    For ``observes = "state_and_leader_action"`` the initial law ``rho(s) piL(aL|s)``
    is evaluated at this ``x`` (the problem is valid at this ``x`` only; use
    :func:`value` and :func:`hypergradient` for the game's ``F``).
    """
    x = _validate.parameter_vector("x", x, game.n_params)
    if game.observes == OBSERVES_STATE:
        rF, trans, rL = _induced(game)
        initial = game.initial
    else:
        rF, trans, rL = _augmented(game)
        initial = (game.initial[:, None] * leader_policy(game, x)).reshape(-1)
    obj = LeaderReturn(rL, leader_gamma=game.leader_gamma)
    return BilevelProblem(rF, trans, obj, gamma=game.gamma, tau=game.tau,
                          initial=initial)


def value(game: MarkovGame, x: object) -> float | complex:
    """Leader's objective ``F(theta) = E_rho[V_L]`` under the follower's soft best response."""
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    state = problem.follower_state(x)
    lv = problem.objective.leader_values(problem, state)
    if game.observes == OBSERVES_STATE:
        return problem.initial @ lv.v
    rho = (game.initial[:, None] * leader_policy(game, x)).reshape(-1)
    return rho @ lv.v


@dataclass(frozen=True)
class GameHypergradient:
    """``gradient = direct + indirect (+ initial)``; see :func:`hypergradient`."""

    value: float
    gradient: np.ndarray
    direct: np.ndarray
    indirect: np.ndarray
    initial_term: np.ndarray
    residual: float


def hypergradient(game: MarkovGame, x: object) -> GameHypergradient:
    r"""Exact ``grad_theta F``.

    ``direct`` is the leader's own policy gradient (through the induced leader
    reward and transitions, the follower's policy held fixed); ``indirect`` the
    follower's response (the Boltzmann-covariance term); ``initial_term`` the
    dependence of the initial law on ``theta`` (observes ``(s, aL)`` only):
    ``sum_{s, aL} rho(s) dpiL(aL|s) V_L(s, aL)``.
    """
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    hg = _hypergradient(problem, x)
    init = np.zeros(game.n_params)
    value_ = hg.value
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        lv = problem.objective.leader_values(problem, hg.state)
        S, AL, _ = game.shape
        v = lv.v.reshape(S, AL)
        init = np.einsum("s,slk,sl->k", game.initial, leader_policy_jacobian(game, x), v)
        value_ = float((game.initial[:, None] * leader_policy(game, x) * v).sum())
    return GameHypergradient(value=value_, gradient=hg.direct + hg.indirect + init,
                             direct=hg.direct, indirect=hg.indirect, initial_term=init,
                             residual=hg.residual)


def discrete_toy(R: float = 1.0, *, gamma: float = 0.99, tau: float = 0.05) -> MarkovGame:
    """The DiscreteToy game of Kudo et al. (2026).

    States S, A, B (0, 1, 2); leader actions {0, 1}; follower actions s, a, b
    (0, 1, 2). The state is unchanged unless listed: from S, follower a -> A,
    b -> B; from A, leader 0 with follower s -> S, leader 0 with b -> B, leader
    1 -> S; from B, follower s -> S. Follower reward: +1 at S for a or b; -1 at A
    whenever the leader plays 1; ``R`` at A for leader 0 with follower b. Leader
    reward: +1 at S when the follower plays a. Start at S. The follower observes
    ``(s, aL)``.
    """
    S_, A_, B_ = 0, 1, 2
    P = np.zeros((3, 2, 3, 3))
    for s in range(3):
        for aL in range(2):
            for aF in range(3):
                nxt = s
                if s == S_ and aF == 1:
                    nxt = A_
                elif s == S_ and aF == 2:
                    nxt = B_
                elif s == A_ and aL == 1:
                    nxt = S_
                elif s == A_ and aL == 0 and aF == 0:
                    nxt = S_
                elif s == A_ and aL == 0 and aF == 2:
                    nxt = B_
                elif s == B_ and aF == 0:
                    nxt = S_
                P[s, aL, aF, nxt] = 1.0
    rF = np.zeros((3, 2, 3))
    rF[S_, :, 1] = rF[S_, :, 2] = 1.0
    rF[A_, 1, :] = -1.0
    rF[A_, 0, 2] = R
    rL = np.zeros((3, 2, 3))
    rL[S_, :, 1] = 1.0
    return MarkovGame(P, rF, rL, np.array([1.0, 0.0, 0.0]), gamma, tau,
                      observes=OBSERVES_STATE_AND_LEADER_ACTION)


def finite_horizon_return(game: MarkovGame, x: object, horizon: int) -> float:
    """Expected *undiscounted* leader reward over ``horizon`` steps under the leader's
    policy and the follower's soft best response (the measure Kudo et al. plot)."""
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    state = problem.follower_state(x)
    pi_f = state.solution.policy
    r_pi = np.sum(pi_f * problem.objective.leader_reward.value(x), axis=1)
    P_pi = state.mdp.P_pi(pi_f)
    dist = problem.initial.copy()
    total = 0.0
    for _ in range(horizon):
        total += dist @ r_pi
        dist = dist @ P_pi
    return float(total)


GAME_ESTIMATORS = ("bc-hg", "bc-hg-baseline", "direct-only")


def estimate(game: MarkovGame, x: object, estimator: str, budget: int,
             rng: np.random.Generator, critic: str = "exact") -> Estimate:
    r"""Sample-based ``grad_theta F`` for a Markov game.

    ``bc-hg`` (benefit x influence, Kudo et al. 2026): the leader's advantage
    ``A_L`` (benefit) times the forward sum of the follower's sensitivity rewards
    ``g_k = gamma dlog piL(aL_{k+1}|s_{k+1}) V(s_{k+1}, aL_{k+1})`` (influence),
    plus the direct term; ``direct-only`` drops the influence (the follower's
    response). Both add the initial-law term for ``observes = (s, aL)``, sampled as
    ``dlog piL(aL_0|s_0) (V_L(s_0, aL_0) - sum_a piL(a|s_0) V_L(s_0, a))`` from
    fresh starts (costing one reset each). ``bc-hg-baseline`` is ``bc-hg`` with the
    state-value baseline on the score term (:mod:`exact_bilevel.estimators`).
    """
    if estimator not in GAME_ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
    if critic != "exact":
        raise ValueError(f"critic = {critic!r}: Markov-game estimates use the exact leader "
                         "critic")
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    know = leader_knowledge(problem, x)
    name = "naive" if estimator == "direct-only" else estimator
    est = _estimate(problem, x, name, budget, rng, critic, know)
    grad, cost, resets = est.gradient, est.transitions, est.resets
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        S, AL, _ = game.shape
        n = episodes_for_budget(budget, know.beta)
        starts = Sampler(know.state.mdp, rng).reset(n)  # augmented (s, aL) indices
        s0, a0 = starts // AL, starts % AL
        v = exact_critic(know).v.reshape(S, AL)
        pi = leader_policy(game, x)
        adv0 = v[s0, a0] - np.sum(pi[s0] * v[s0], axis=1)
        score = leader_policy_jacobian(game, x)[s0, a0] / pi[s0, a0][:, None]
        grad = grad + (adv0[:, None] * score).mean(axis=0)
        cost, resets = cost + n, resets + n
    return Estimate(gradient=grad, transitions=cost, resets=resets,
                    estimator=f"game:{estimator}")
