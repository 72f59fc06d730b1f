r"""Follower sensitivities by the implicit function theorem on the soft-Bellman fixed point.

Differentiating ``V = T_x(V)`` at the fixed point (:ref:`docs/math.md, section 3, "Follower
sensitivities" <math-sensitivities>`; Yang, Gao & Yuan 2025, Sec. 3):

.. math::

    g(s,a,k)   &= \partial_k r(s,a) + \gamma \sum_{s'} \partial_k P(s'|s,a) V(s')
                 \qquad [S, A, d] \\
    dV         &= (I - \gamma P_\pi)^{-1} \sum_a \pi(a|s) g(s,a)
                 \qquad [S, d] \\
    dQ         &= g + \gamma P\, dV \qquad [S, A, d] \\
    d\log\pi   &= (dQ - dV) / \tau = (dQ - \mathbb{E}_{a'\sim\pi} dQ(s,a')) / \tau \\
    d\pi       &= \pi \odot d\log\pi .

``dQ`` is the policy evaluation of the vector reward ``g``. The one matrix
solve reuses the follower's factorisation of ``I - gamma P_pi``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .follower import FollowerState
from .problem import BilevelProblem


@dataclass(frozen=True)
class Sensitivities:
    """Derivatives of the follower's soft-optimal quantities w.r.t. ``x`` (parameter axis last)."""

    g: np.ndarray
    """``g[s, a, k] = dr + gamma dP V``, the vector reward whose value is ``dQ``."""
    dV: np.ndarray
    """``dV[s, k]``."""
    dQ: np.ndarray
    """``dQ[s, a, k]``."""
    dlogpi: np.ndarray
    """``dlogpi[s, a, k]``."""
    dpi: np.ndarray
    """``dpi[s, a, k]``."""


def sensitivity_reward(problem: BilevelProblem, state: FollowerState) -> np.ndarray:
    """``g[s, a, k] = dr[s, a, k] + gamma sum_s' dP[s, a, s', k] V[s']``, shape ``[S, A, d]``."""
    x, v = state.x, state.solution.v
    g = problem.follower_reward.jacobian(x)
    if problem.transitions.depends_on_x:
        g = g + problem.gamma * problem.transitions.jacobian_dot(x, v)
    return g


def follower_sensitivities(problem: BilevelProblem, state: FollowerState) -> Sensitivities:
    """Forward-mode sensitivities of ``V``, ``Q``, ``log pi`` and ``pi`` (all ``d`` columns).

    Cost: one ``[S, S] x [S, d]`` triangular solve pair with the existing factorisation,
    plus forming ``g`` (``S*A*d``).
    """
    pi = state.solution.policy
    g = sensitivity_reward(problem, state)
    dV = state.factorization.solve(np.einsum("sa,sak->sk", pi, g))
    dQ = g + problem.gamma * state.mdp.expect(dV)
    dlogpi = (dQ - dV[:, None, :]) / problem.tau
    return Sensitivities(g=g, dV=dV, dQ=dQ, dlogpi=dlogpi, dpi=pi[..., None] * dlogpi)
