r"""Bilevel problems: a leader's parameters ``x`` shape the follower's soft MDP.

The follower faces the MDP ``(P_x, r_x, gamma, rho)`` and plays its soft-optimal
(Boltzmann) policy ``pi*(x)`` at temperature ``tau``; the leader's objective
``F(x) = f(x, pi*(x))`` is given by an :class:`~exact_bilevel.core.objectives.Objective`.
"""

from __future__ import annotations

import numpy as np

from . import _validate
from .follower import FollowerState
from .linalg import BellmanFactorization, RefinedFactorization, factorize
from .mdp import FiniteMDP
from .objectives import Objective
from .parameterizations import RewardModel, TransitionModel
from .solve import solve_soft


class BilevelProblem:
    """A leader-follower problem with an entropy-regularised follower.

    Parameters
    ----------
    follower_reward : RewardModel
        ``r_x[s, a]`` and ``dr[s, a, k]``.
    transitions : TransitionModel
        ``P_x[s, a, s']`` and ``(dP V)[s, a, k]``.
    objective : Objective
        The leader's ``F(x) = f(x, pi*(x))``.
    gamma : float
        Follower discount, ``0 <= gamma < 1``.
    tau : float
        Follower temperature, ``> 0``.
    initial : array_like, shape (S,), optional
        Initial distribution ``rho[s]`` (default uniform).
    solver_options : dict, optional
        Keyword arguments for :func:`~exact_bilevel.core.solve.solve_soft`.
    """

    def __init__(self, follower_reward: RewardModel, transitions: TransitionModel,
                 objective: Objective, *, gamma: float, tau: float,
                 initial: object | None = None, solver_options: dict | None = None) -> None:
        S, A, d = follower_reward.n_states, follower_reward.n_actions, follower_reward.n_params
        if (transitions.n_states, transitions.n_actions) != (S, A):
            raise ValueError(f"transitions: has (S, A) = ({transitions.n_states}, "
                             f"{transitions.n_actions}) but follower_reward has ({S}, {A})")
        if transitions.n_params != d:
            raise ValueError(f"transitions: has d = {transitions.n_params} parameters but "
                             f"follower_reward has d = {d}")
        self.follower_reward = follower_reward
        self.transitions = transitions
        self.objective = objective
        self.gamma = _validate.discount("gamma", gamma)
        self.tau = _validate.temperature("tau", tau)
        if initial is None:
            self.initial = np.full(S, 1.0 / S)
        else:
            self.initial = _validate.real_array("initial", initial, shape=(S,))
            _validate.stochastic_rows("initial", self.initial)
        self.solver_options = dict(solver_options or {})
        self._fixed_dynamics: FiniteMDP | None = None
        objective.check_compatible(self)

    @property
    def n_states(self) -> int:
        return self.follower_reward.n_states

    @property
    def n_actions(self) -> int:
        return self.follower_reward.n_actions

    @property
    def n_params(self) -> int:
        return self.follower_reward.n_params

    def check_x(self, x: object) -> np.ndarray:
        """Validate ``x[d]`` (finite, real, length d). A complex ``x`` passes unchanged
        if it is a complex-step point (imaginary part infinitesimal:
        :func:`~exact_bilevel.core._validate.complex_step_vector`)."""
        if isinstance(x, np.ndarray) and np.iscomplexobj(x):
            return _validate.complex_step_vector("x", x, self.n_params)
        return _validate.parameter_vector("x", x, self.n_params)

    def follower_mdp(self, x: object) -> FiniteMDP:
        """The follower's MDP ``(P_x, r_x, gamma, rho)``; validated for real ``x``."""
        return self._follower_mdp(self.check_x(x))

    def _follower_mdp(self, x: np.ndarray) -> FiniteMDP:
        r = self.follower_reward.value(x)
        if np.iscomplexobj(x):
            return FiniteMDP._trusted(self.transitions.value(x), r, self.gamma, self.initial)
        try:
            if not self.transitions.depends_on_x:
                # P is validated (and its operator and sampling tables built) once per
                # problem; per x only the reward is new.
                if self._fixed_dynamics is None:
                    self._fixed_dynamics = FiniteMDP(self.transitions.value(x), r, self.gamma,
                                                     self.initial, n_actions=self.n_actions)
                    return self._fixed_dynamics
                return self._fixed_dynamics.with_reward(r)
            return FiniteMDP(self.transitions.value(x), r, self.gamma, self.initial,
                             n_actions=self.n_actions)
        except ValueError as exc:
            raise ValueError(
                f"the parameterisation at this x gives an invalid MDP: {exc}") from None

    def follower_state(self, x: object, **solver_options: object) -> FollowerState:
        """Solve the follower at ``x`` and factorise ``I - gamma P_pi`` once."""
        x = self.check_x(x)
        mdp = self._follower_mdp(x)
        opts = {**self.solver_options, **solver_options}
        sol = solve_soft(mdp, self.tau, **opts)  # type: ignore[arg-type]
        return FollowerState(x=x, mdp=mdp, solution=sol, factorization=_reuse(mdp, sol))

    def value(self, x: object, **solver_options: object) -> float | complex:
        """Leader objective ``F(x) = f(x, pi*(x))``."""
        state = self.follower_state(x, **solver_options)
        return self.objective.value(self, state)

    def __repr__(self) -> str:
        return (f"BilevelProblem(S={self.n_states}, A={self.n_actions}, d={self.n_params}, "
                f"gamma={self.gamma}, tau={self.tau}, objective={self.objective!r})")


#: From this many states on, the solution's factorisation is Newton's last LU refined
#: iteratively (:class:`~exact_bilevel.core.linalg.RefinedFactorization`); below it a fresh
#: LU at the final policy is cheaper than the refinement steps (measured: at S = 100 a dense
#: LU costs ~60 us, three refined solves ~100 us).
REFINE_MIN_STATES = 400


def _reuse(mdp: FiniteMDP, sol: object) -> BellmanFactorization:
    """The factorisation of ``I - gamma P_pi`` at the solution's policy, reusing Newton's
    last LU: as is when it was taken at this very policy; for ``S >=``
    :data:`REFINE_MIN_STATES` with iterative refinement when the chord or polishing steps
    after it moved the policy; fresh otherwise."""
    near = sol.factorization  # type: ignore[attr-defined]
    if near is not None and (sol.factorized_policy is sol.policy  # type: ignore[attr-defined]
                             or np.array_equal(sol.factorized_policy,  # type: ignore[attr-defined]
                                               sol.policy)):
        return near  # P_pi is not even formed: O(S^2 A) saved
    P_pi = mdp.P_pi(sol.policy)  # type: ignore[attr-defined]
    if near is None or mdp.n_states < REFINE_MIN_STATES:
        return factorize(P_pi, mdp.gamma)
    return RefinedFactorization(near, P_pi, mdp.gamma)
