r"""Soft (entropy-regularised) Bellman primitives.

Equations (:ref:`docs/math.md, section 2 <math-follower>`):

.. math::

    Q(s,a) = r(s,a) + \gamma \sum_{s'} P(s'|s,a) V(s'), \qquad
    V(s) = \tau \log \sum_a \exp(Q(s,a)/\tau), \qquad
    \pi(a|s) = \exp((Q(s,a) - V(s))/\tau).

The log-sum-exp is shifted by the row maximum of ``Re Q`` so that it is exact
in float64 for ``tau`` from 1e-6 to 1e3; the shift is a constant, so every
function here stays analytic in ``Q`` and works on complex input (used by the
complex-step checks).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .mdp import FiniteMDP


class Boltzmann(NamedTuple):
    """Soft maximum of ``q[s, a]`` and the matching Boltzmann policy."""

    v: np.ndarray
    """``v[s] = tau * log sum_a exp(q[s, a] / tau)``."""
    policy: np.ndarray
    """``pi[s, a] = exp((q[s, a] - v[s]) / tau)``."""
    log_policy: np.ndarray
    """``log pi[s, a] = (q[s, a] - v[s]) / tau``, computed without ``log(pi)``."""


def boltzmann(q: np.ndarray, tau: float) -> Boltzmann:
    """Max-shifted soft maximum and Boltzmann policy of ``q[s, a]`` at temperature ``tau``.

    ``v = m + tau * log sum_a exp((q - m) / tau)`` with ``m[s] = max_a Re q[s, a]``;
    every exponent is ``<= 0`` (real part), so nothing overflows, and
    ``log_policy = (q - m)/tau - log sum_a exp((q - m)/tau)`` is finite even
    where ``policy`` underflows to 0.
    """
    m = np.max(q.real, axis=-1, keepdims=True)
    z = (q - m) / tau
    e = np.exp(z)
    total = e.sum(axis=-1, keepdims=True)
    log_total = np.log(total)
    v = (m + tau * log_total)[..., 0]
    return Boltzmann(v=v, policy=e / total, log_policy=z - log_total)


def soft_max(q: np.ndarray, tau: float) -> np.ndarray:
    """``V[s] = tau * log sum_a exp(Q[s, a] / tau)`` (max-shifted), shape ``[S]``; as
    :func:`boltzmann` without forming the policy."""
    m = np.max(q.real, axis=-1, keepdims=True)
    return (m + tau * np.log(np.exp((q - m) / tau).sum(axis=-1, keepdims=True)))[..., 0]


def q_from_v(mdp: FiniteMDP, v: np.ndarray, reward: np.ndarray | None = None,
             gamma: float | None = None) -> np.ndarray:
    """``Q[s, a] = r[s, a] + gamma * sum_s' P[s, a, s'] V[s']``, shape ``[S, A]``."""
    r = mdp.reward if reward is None else reward
    g = mdp.gamma if gamma is None else gamma
    return r + g * mdp.expect(v)


def soft_bellman_operator(mdp: FiniteMDP, v: np.ndarray, tau: float) -> np.ndarray:
    """Soft Bellman optimality operator ``T(V)[s] = tau log sum_a exp(Q_V(s, a) / tau)``.

    A ``gamma``-contraction in the sup norm and monotone (``U <= V`` implies
    ``T U <= T V``).
    """
    return soft_max(q_from_v(mdp, v), tau)


def hard_bellman_operator(mdp: FiniteMDP, v: np.ndarray) -> np.ndarray:
    """Hard Bellman optimality operator ``T_0(V)[s] = max_a Q_V(s, a)`` (the ``tau -> 0`` limit)."""
    return np.max(q_from_v(mdp, v), axis=-1)
