r"""Two-player Markov games: the leader acts too, the follower soft-best-responds.

Shapes: joint transitions ``P[s, aL, aF, s']``, rewards ``r_F[s, aL, aF]``,
``r_L[s, aL, aF]``, ``rho[s]``. The leader's policy is a softmax of logits,
``piL(aL|s; theta) = softmax(z[s, :])``: tabular by default (``z = theta`` flattened to
``x[s * AL + aL]``, ``d = S * AL``), or ``z = leader.logits(x)`` for a leader
parameterisation (:mod:`.leaders`, e.g. the authors' MLP).
:ref:`docs/math.md, section 7 <math-games>`:

* **follower observes s** (:data:`OBSERVES_STATE`): it faces the induced MDP
  ``P_theta(s'|s, aF) = sum_aL piL(aL|s) P(s'|s, aL, aF)``, ``r_theta`` likewise,
  so ``theta`` enters its reward *and* transitions; the leader's objective is its
  return with the induced leader reward ``sum_aL piL r_L``;
* **follower observes (s, aL)** (:data:`OBSERVES_STATE_AND_LEADER_ACTION`, as in
  Kudo et al. 2026): its state is ``(s, aL)`` (index ``s * AL + aL``), with
  ``P_aug[(s, aL), aF, (s', aL')] = P(s'|s, aL, aF) piL(aL'|s')`` — ``theta``
  enters through the transition into the next ``(s', aL')`` — and initial law
  ``rho(s) piL(aL|s)``, which also depends on ``theta``.

Both become a :class:`~exact_bilevel.core.problem.BilevelProblem` (:func:`follower_problem`)
whose exact hypergradient is the generic one; the second adds the initial-law
term ``sum_{s,aL} rho(s) dpiL(aL|s) V_L(s, aL)`` (:func:`hypergradient`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core import _validate
from ..core.objectives import LeaderReturn
from ..core.parameterizations import CallableReward, CallableTransitions, FixedReward
from ..core.problem import BilevelProblem
from .leaders import LeaderParameterization

OBSERVES_STATE = "state"
OBSERVES_STATE_AND_LEADER_ACTION = "state_and_leader_action"
_OBSERVATIONS = (OBSERVES_STATE, OBSERVES_STATE_AND_LEADER_ACTION)


@dataclass(frozen=True)
class MarkovGame:
    """A two-player Markov game with a softmax leader and a soft follower.

    Parameters
    ----------
    transitions : array, shape (S, AL, AF, S)
    follower_reward, leader_reward : arrays, shape (S, AL, AF)
    initial : array, shape (S,)
    gamma : float
        Follower discount; ``leader_gamma`` defaults to it.
    leader : LeaderParameterization, optional
        ``theta -> logits[s, aL]`` (:mod:`.leaders`); ``None``: tabular, ``z = theta``.
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
    leader: LeaderParameterization | None = None

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
        if self.leader is not None:
            if not isinstance(self.leader, LeaderParameterization):
                raise ValueError("leader: must have n_states, n_actions, n_params, logits and "
                                 f"logits_jacobian, got {type(self.leader).__name__}")
            if (self.leader.n_states, self.leader.n_actions) != (S, AL):
                raise ValueError(f"leader: maps to logits of shape ({self.leader.n_states}, "
                                 f"{self.leader.n_actions}), the game needs (S, AL) = ({S}, {AL})")
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
        if self.leader is not None:
            return self.leader.n_params
        S, AL, _ = self.shape
        return S * AL


def tabular(game: MarkovGame) -> MarkovGame:
    """The same game with the tabular leader (``theta`` = the logits ``z[s, aL]``)."""
    return game if game.leader is None else dataclasses.replace(game, leader=None)


def leader_logits(game: MarkovGame, x: np.ndarray) -> np.ndarray:
    """``z[s, aL]``: ``x.reshape(S, AL)`` (tabular) or ``game.leader.logits(x)``."""
    if game.leader is not None:
        return game.leader.logits(x)
    S, AL, _ = game.shape
    return x.reshape(S, AL)


def leader_policy(game: MarkovGame, x: np.ndarray) -> np.ndarray:
    """``piL[s, aL] = softmax(z[s, :])``, ``z`` = :func:`leader_logits` (real-max shifted)."""
    z = leader_logits(game, x)
    e = np.exp(z - np.max(z.real, axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def leader_policy_jacobian(game: MarkovGame, x: np.ndarray) -> np.ndarray:
    """``dpiL[s, aL, k] = sum_b pi(aL|s) (delta_ab - pi(b|s)) dz[s, b, k]``; tabular:
    ``dz[s, b, k] = 1[k = s * AL + b]``. Shape ``[S, AL, d]``."""
    S, AL, _ = game.shape
    pi = leader_policy(game, x)
    block = pi[:, :, None] * (np.eye(AL)[None] - pi[:, None, :])  # [S, aL, b]
    if game.leader is not None:
        return np.einsum("slb,sbk->slk", block, game.leader.logits_jacobian(x))
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
