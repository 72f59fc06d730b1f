r"""Derivative of K-step unrolled soft value iteration (what autodiff through a solver loop gives).

Starting from ``V_0`` (independent of ``x``), ``K`` sweeps of soft value
iteration and their forward-mode derivatives:

.. math::

    Q_k = r + \gamma P V_k, \quad V_{k+1} = \tau \log\textstyle\sum_a e^{Q_k/\tau}, \\
    dQ_k = \partial r + \gamma\, \partial P\, V_k + \gamma P\, dV_k, \quad
    dV_{k+1} = \textstyle\sum_a \pi_k\, dQ_k,

then the leader objective at the Boltzmann policy ``pi_K`` of ``Q_K`` with
``d pi_K = pi_K (dQ_K - E_{pi_K} dQ_K) / tau``. Because ``V_k -> V*`` and
``dV_k -> dV*`` at rate ``gamma^k``, the unrolled gradient converges to the
implicit one with error ``O(K gamma^K)``; this module measures that.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.follower import FollowerState
from ..core.hypergradient import centred_policy_weights
from ..core.linalg import factorize
from ..core.problem import BilevelProblem
from ..core.soft_bellman import boltzmann
from ..core.solve import SoftSolution


class UnrolledGradient(NamedTuple):
    value: float
    """``F`` at the unrolled policy ``pi_K``."""
    gradient: np.ndarray
    """``d F(pi_K(x), x) / dx``, shape ``[d]``."""


def unrolled_hypergradient(problem: BilevelProblem, x: object, n_steps: int,
                           v0: np.ndarray | None = None) -> UnrolledGradient:
    """Gradient of the objective after ``n_steps`` soft value-iteration sweeps (forward mode)."""
    if n_steps < 0:
        raise ValueError(f"n_steps = {n_steps}: must be >= 0")
    x = problem.check_x(x)
    mdp = problem.follower_mdp(x)
    S, d, gamma, tau = problem.n_states, problem.n_params, problem.gamma, problem.tau
    dr = problem.follower_reward.jacobian(x)
    v = np.zeros(S) if v0 is None else np.asarray(v0, dtype=float)
    dv = np.zeros((S, d))
    for _ in range(n_steps + 1):
        q = mdp.reward + gamma * mdp.expect(v)
        dq = dr + gamma * mdp.expect(dv)
        if problem.transitions.depends_on_x:
            dq = dq + gamma * problem.transitions.jacobian_dot(x, v)
        b = boltzmann(q, tau)
        v, dv = b.v, np.einsum("sa,sak->sk", b.policy, dq)
    # after the loop: b, dq belong to Q_K (the last sweep's V_{K+1} is not used)
    pi = b.policy
    solution = SoftSolution(q=q, v=v, policy=pi, log_policy=b.log_policy, residual=np.nan,
                            iterations=n_steps, method="unrolled", tau=tau, tolerance=np.nan)
    state = FollowerState(x=x, mdp=mdp, solution=solution,
                          factorization=factorize(mdp.P_pi(pi), gamma))
    terms = problem.objective.evaluate(problem, state)
    w = centred_policy_weights(terms.df_dpi, pi)
    indirect = np.einsum("sa,sak->k", w, dq) / tau
    return UnrolledGradient(value=terms.value, gradient=terms.direct + indirect)
