r"""The follower's side of a bilevel problem: its data and its solved state.

A leader objective (:mod:`.objectives`) reads the follower's data — reward and
transition models, ``gamma``, ``tau``, the initial law — and its soft-optimal
solution at one ``x``; it never needs the objective-carrying
:class:`~exact_bilevel.core.problem.BilevelProblem` itself. This module states
exactly that interface, so that objectives sit *below* problems in the import
graph:

    follower (this module) -> objectives -> problem -> sensitivities -> hypergradient
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .linalg import BellmanFactorization, RefinedFactorization
from .mdp import FiniteMDP
from .parameterizations import RewardModel, TransitionModel
from .solve import SoftSolution


class FollowerProblem(Protocol):
    """What a leader objective may read of a bilevel problem: the follower's data.

    ``follower_reward`` gives ``r_x[s, a]`` and ``dr[s, a, k]``; ``transitions``
    gives ``P_x[s, a, s']`` and ``(dP V)[s, a, k]``; ``initial`` is ``rho[s]``.
    :class:`~exact_bilevel.core.problem.BilevelProblem` satisfies it.
    """

    follower_reward: RewardModel
    transitions: TransitionModel
    gamma: float
    tau: float
    initial: np.ndarray

    @property
    def n_states(self) -> int: ...

    @property
    def n_actions(self) -> int: ...

    @property
    def n_params(self) -> int: ...


@dataclass(frozen=True)
class FollowerState:
    """Everything the hypergradient needs about the follower at one ``x``.

    ``mdp`` is the follower's MDP ``(P_x, r_x, gamma, rho)``, ``solution`` its
    soft-optimal ``q[s, a]``, ``v[s]``, ``policy[s, a]``, and ``factorization``
    factors ``I - gamma P_pi`` at ``solution.policy``; it is reused by every solve
    downstream (sensitivities, adjoint, leader values when ``gamma_L = gamma``).
    """

    x: np.ndarray
    mdp: FiniteMDP
    solution: SoftSolution
    factorization: BellmanFactorization

    @property
    def factorizations(self) -> int:
        """LU factorisations made for this state so far: the solve's, plus one when
        :attr:`factorization` is a fresh LU at the final policy (not Newton's last LU
        itself), or a refinement that has fallen back to one."""
        fac = self.factorization
        if isinstance(fac, RefinedFactorization):
            extra = fac.refactorized
        else:
            extra = fac is not self.solution.factorization
        return self.solution.factorizations + int(extra)

    @property
    def plain_lu(self) -> tuple[BellmanFactorization, np.ndarray]:
        """An LU of ``I - gamma P_pi0`` and its policy ``pi0`` (a ``warm_lu`` for
        :func:`~exact_bilevel.core.solve.solve_soft`): :attr:`factorization` itself, taken
        at the solution's policy, unless it is a refinement, whose underlying LU is
        Newton's last one."""
        if isinstance(self.factorization, RefinedFactorization):
            sol = self.solution
            return sol.factorization, sol.factorized_policy  # type: ignore[return-value]
        return self.factorization, self.solution.policy
