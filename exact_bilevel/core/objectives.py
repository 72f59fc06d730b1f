r"""Leader objectives ``F(x) = f(x, pi*(x))``.

An :class:`Objective` returns, at the follower's soft-optimal policy ``pi``,
its value and the two partial derivatives the chain rule needs
(Yang, Gao & Yuan 2025, :ref:`docs/math.md, section 4 <math-hypergradient>`):

.. math::

    \nabla F(x) = \underbrace{\partial_x f(x, \pi)}_{\text{direct}}
                + \sum_{s,a} \frac{\partial f}{\partial \pi(a|s)}
                  \frac{d \pi(a|s)}{d x}.

Two objectives are built in: the leader's discounted return under the
follower's policy (:class:`LeaderReturn`; Kudo et al. 2026, Thoma et al. 2024)
and a general smooth ``f(x, pi)`` with user-supplied partials
(:class:`GeneralObjective`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _validate
from .follower import FollowerProblem, FollowerState
from .linalg import BellmanFactorization, factorize
from .parameterizations import RewardModel

Regularizer = Callable[[np.ndarray], tuple[float, np.ndarray]]
"""``reg(x) -> (value, gradient[d])``, added to the objective."""


@dataclass(frozen=True)
class ObjectiveTerms:
    """Value and partial derivatives of ``f(x, pi)`` at ``pi = pi*(x)``.

    Attributes
    ----------
    value : float
        ``F(x)``.
    direct : ndarray, shape (d,)
        ``partial_x f`` holding ``pi`` fixed (for the leader return: through
        ``r_L`` and ``P_x``).
    df_dpi : ndarray, shape (S, A)
        ``partial f / partial pi[s, a]`` holding ``x`` fixed. Only its part that
        varies over actions matters: ``sum_a dpi[s, a] = 0``, so adding any
        ``c[s]`` to ``df_dpi[s, :]`` leaves the hypergradient unchanged, and an
        objective should return the representative with the least cancellation
        (the leader return returns ``occ * A_L`` rather than ``occ * Q_L``).
    """

    value: float
    direct: np.ndarray
    df_dpi: np.ndarray


class Objective(ABC):
    """Leader objective ``f(x, pi)`` evaluated at the follower's soft-optimal policy."""

    def check_compatible(self, problem: FollowerProblem) -> None:  # noqa: B027
        """Raise ``ValueError`` if the objective does not fit the problem's sizes."""

    @abstractmethod
    def evaluate(self, problem: FollowerProblem, state: FollowerState) -> ObjectiveTerms:
        """Value, direct gradient and ``df/dpi`` at the follower state."""

    def value(self, problem: FollowerProblem, state: FollowerState) -> float:
        return self.evaluate(problem, state).value


@dataclass(frozen=True)
class L2Penalty:
    """``reg(x) = -weight/2 * |x - center|^2`` and its gradient ``-weight (x - center)``."""

    weight: float
    center: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        dx = x if self.center is None else x - self.center
        return -0.5 * self.weight * np.sum(dx * dx), -self.weight * dx


def l2_penalty(weight: float, center: np.ndarray | None = None) -> L2Penalty:
    """``reg(x) = -weight/2 * |x - center|^2`` (a penalty on a maximised objective)."""
    w = _validate.real_scalar("weight", weight)
    c = None if center is None else _validate.real_array("center", center, ndim=1)
    return L2Penalty(w, c)


@dataclass(frozen=True)
class LeaderValues:
    """The leader's exact evaluation of the follower's policy ``pi``.

    ``v[s] = V_L``, ``q[s, a] = Q_L = r_L + gamma_L P V_L``, and the leader's
    unnormalised discounted occupancy ``occupancy[s] = ((I - gamma_L P_pi)^{-T} rho)[s]``.
    """

    reward: np.ndarray
    v: np.ndarray
    q: np.ndarray
    occupancy: np.ndarray
    gamma: float

    @property
    def advantage(self) -> np.ndarray:
        """``A_L[s, a] = Q_L[s, a] - V_L[s]``."""
        return self.q - self.v[:, None]


class LeaderReturn(Objective):
    r"""Leader's discounted return under the follower's policy (unregularised).

    .. math::

        F(x) = \sum_s \rho(s) V_L(s) + \mathrm{reg}(x), \quad
        V_L = (I - \gamma_L P_\pi)^{-1} \sum_a \pi\, r_L, \quad
        Q_L = r_L + \gamma_L P V_L.

    Partials (policy-gradient theorem in the tabular parameterisation):
    ``df/dpi[s, a] = occ(s) Q_L(s, a)``, returned in the equivalent advantage form
    ``occ(s) A_L(s, a)`` (see :class:`ObjectiveTerms`), and
    ``direct[k] = sum_{s,a} occ(s) pi(a|s) [dr_L(s,a,k) + gamma_L (dP V_L)(s,a,k)]``
    with ``occ = (I - gamma_L P_pi)^{-T} rho``.

    Parameters
    ----------
    leader_reward : RewardModel
        ``r_L[s, a]``, possibly depending on ``x``.
    leader_gamma : float, optional
        Leader discount ``gamma_L``; defaults to the follower's ``gamma`` (then
        the follower's factorisation of ``I - gamma P_pi`` is reused).
    regularizer : callable, optional
        ``reg(x) -> (value, grad)`` added to ``F``; see :func:`l2_penalty`.
    """

    def __init__(self, leader_reward: RewardModel, *, leader_gamma: float | None = None,
                 regularizer: Regularizer | None = None) -> None:
        self.leader_reward = leader_reward
        self.leader_gamma = (None if leader_gamma is None
                             else _validate.discount("leader_gamma", leader_gamma))
        self.regularizer = regularizer

    def check_compatible(self, problem: FollowerProblem) -> None:
        lr = self.leader_reward
        if (lr.n_states, lr.n_actions, lr.n_params) != (problem.n_states, problem.n_actions,
                                                         problem.n_params):
            raise ValueError(
                f"leader_reward: has (S, A, d) = ({lr.n_states}, {lr.n_actions}, {lr.n_params}) "
                f"but the follower has ({problem.n_states}, {problem.n_actions}, "
                f"{problem.n_params})")

    def gamma_for(self, problem: FollowerProblem) -> float:
        return problem.gamma if self.leader_gamma is None else self.leader_gamma

    def leader_values(self, problem: FollowerProblem, state: FollowerState) -> LeaderValues:
        """Exact ``V_L``, ``Q_L`` and leader occupancy at the follower's policy."""
        gL = self.gamma_for(problem)
        pi = state.solution.policy
        fac: BellmanFactorization = (state.factorization if gL == problem.gamma
                                     else factorize(state.mdp.P_pi(pi), gL))
        rL = self.leader_reward.value(state.x)
        vL = fac.solve(np.sum(pi * rL, axis=-1))
        qL = rL + gL * state.mdp.expect(vL)
        occ = fac.solve_transpose(problem.initial.astype(vL.dtype))
        return LeaderValues(reward=rL, v=vL, q=qL, occupancy=occ, gamma=gL)

    def evaluate(self, problem: FollowerProblem, state: FollowerState) -> ObjectiveTerms:
        lv = self.leader_values(problem, state)
        x, pi = state.x, state.solution.policy
        weights = lv.occupancy[:, None] * pi
        value = problem.initial @ lv.v
        direct = (self.leader_reward.vjp(x, weights)
                  + lv.gamma * problem.transitions.vjp(x, weights, lv.v))
        if self.regularizer is not None:
            rv, rg = self.regularizer(x)
            value = value + rv
            direct = direct + rg
        # occ * A_L instead of occ * Q_L: the same hypergradient (sum_a dpi = 0), but
        # without the O(1/(1 - gamma_L)) common part of Q_L that would cancel in the centring.
        return ObjectiveTerms(value=value, direct=direct,
                              df_dpi=lv.occupancy[:, None] * lv.advantage)

    def __repr__(self) -> str:
        return f"LeaderReturn(leader_gamma={self.leader_gamma})"


class GeneralObjective(Objective):
    """A smooth ``f(x, pi)`` with supplied partial derivatives.

    Parameters
    ----------
    f : callable
        ``f(x[d], pi[S, A]) -> float``.
    df_dx : callable
        ``partial_x f(x, pi) -> [d]``.
    df_dpi : callable
        ``partial_pi f(x, pi) -> [S, A]``.
    """

    def __init__(self, f: Callable[[np.ndarray, np.ndarray], float],
                 df_dx: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 df_dpi: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 name: str = "general") -> None:
        self.f, self.df_dx, self.df_dpi, self.name = f, df_dx, df_dpi, name

    def evaluate(self, problem: FollowerProblem, state: FollowerState) -> ObjectiveTerms:
        x, pi = state.x, state.solution.policy
        return ObjectiveTerms(value=self.f(x, pi), direct=np.asarray(self.df_dx(x, pi)),
                              df_dpi=np.asarray(self.df_dpi(x, pi)))

    def __repr__(self) -> str:
        return f"GeneralObjective({self.name})"


class QuadraticObjective(GeneralObjective):
    """``f(x, pi) = 1/2 |x|^2 + 1/2 |pi|_F^2`` (the SoBiRL synthetic benchmark)."""

    def __init__(self) -> None:
        super().__init__(f=lambda x, pi: 0.5 * np.sum(x * x) + 0.5 * np.sum(pi * pi),
                         df_dx=lambda x, pi: x, df_dpi=lambda x, pi: pi,
                         name="1/2|x|^2 + 1/2|pi|_F^2")


def quadratic_objective() -> QuadraticObjective:
    """``f(x, pi) = 1/2 |x|^2 + 1/2 |pi|_F^2`` (the SoBiRL synthetic benchmark)."""
    return QuadraticObjective()
