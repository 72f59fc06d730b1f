r"""The leader-gradient recursion of the HPGD code (Thoma et al. 2024): a second exact route.

For the leader-return objective, differentiate ``Q_L`` and ``V_L`` along the
follower's policy ``pi*(x)`` directly:

.. math::

    \tilde Q(s,a) &= \partial r_L(s,a) + \gamma_L\, (\partial P\, V_L)(s,a)
                    + \gamma_L \textstyle\sum_{s'} P(s'|s,a)\, \tilde V(s'), \\
    \tilde V(s)   &= \textstyle\sum_a \pi(a|s)\,\big[\tilde Q(s,a)
                    + A_L(s,a)\, (dQ(s,a) - dV(s)) / \tau\big],

(``dV_L = sum_a (d pi Q_L + pi dQ_L)`` with ``d pi = pi (dQ - dV)/tau`` and
``sum_a pi (dQ - dV) = 0``), iterated as a ``gamma_L``-contraction to its fixed
point; then ``grad F = rho^T tilde V``. No linear solve is used for the leader
side, so this checks the occupancy/adjoint algebra of
:mod:`exact_bilevel.core.hypergradient` by a different computation.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import ConvergenceError
from ..core.objectives import LeaderReturn
from ..core.problem import BilevelProblem
from ..core.sensitivities import follower_sensitivities


def gradient_recursion(problem: BilevelProblem, x: object, *, tol: float = 1e-14,
                       max_iter: int | None = None) -> np.ndarray:
    """``grad F(x)`` by iterating the leader-gradient recursion (LeaderReturn only).

    Stops when the sup-norm change of ``tilde V`` is ``<= tol * max(1, |tilde V|)``;
    raises :class:`ConvergenceError` otherwise. Shape ``[d]``.
    """
    obj = problem.objective
    if not isinstance(obj, LeaderReturn):
        raise ValueError(f"gradient_recursion: needs a LeaderReturn objective, got {obj!r}")
    state = problem.follower_state(x)
    xs, pi, mdp = state.x, state.solution.policy, state.mdp
    lv = obj.leader_values(problem, state)
    sens = follower_sensitivities(problem, state)
    gL = lv.gamma
    base = obj.leader_reward.jacobian(xs)
    if problem.transitions.depends_on_x:
        base = base + gL * problem.transitions.jacobian_dot(xs, lv.v)
    influence = np.einsum("sa,sak->sk", pi * lv.advantage, sens.dlogpi)
    if max_iter is None:
        max_iter = 10 if gL == 0 else math.ceil(math.log(1e-17) / math.log(gL)) + 50
    vt = np.zeros((problem.n_states, problem.n_params))
    change = math.inf
    for _ in range(max_iter):
        qt = base + gL * mdp.expect(vt)
        new = np.einsum("sa,sak->sk", pi, qt) + influence
        change = float(np.max(np.abs(new - vt)))
        vt = new
        if change <= tol * max(1.0, float(np.max(np.abs(vt)))):
            grad = problem.initial @ vt
            if obj.regularizer is not None:
                grad = grad + obj.regularizer(xs)[1]
            return grad
    raise ConvergenceError("gradient_recursion", change, tol, max_iter, "iteration limit")
