r"""Exact policy evaluation and discounted occupancy measures (linear solves).

For a policy ``pi[s, a]`` in a :class:`~exact_bilevel.core.mdp.FiniteMDP`:

.. math::

    V^\pi = (I - \gamma P_\pi)^{-1} \Big(\sum_a \pi r + \tau H(\pi)\Big), \quad
    Q^\pi = r + \gamma P V^\pi, \quad
    d_\rho = (I - \gamma P_\pi)^{-T} \rho,

with ``H(pi)[s] = -sum_a pi log pi`` (the entropy term is dropped when
``tau = 0``). ``d_rho`` is the *unnormalised* discounted state occupancy:
``sum_s d_rho[s] = 1 / (1 - gamma)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.special

from . import _validate
from .linalg import BellmanFactorization, factorize
from .mdp import FiniteMDP


def check_policy(mdp: FiniteMDP, pi: object, name: str = "policy") -> np.ndarray:
    """Validate ``pi[s, a]``: shape ``(S, A)``, entries >= 0, rows summing to 1."""
    arr = _validate.real_array(name, pi, shape=(mdp.n_states, mdp.n_actions))
    _validate.stochastic_rows(name, arr)
    return arr


def P_pi(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    """``P_pi[s, s'] = sum_a pi[s, a] P[s, a, s']``, shape ``[S, S]``."""
    return mdp.P_pi(pi)


def r_pi(mdp: FiniteMDP, pi: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
    """``r_pi[s] = sum_a pi[s, a] r[s, a]``, shape ``[S]``."""
    r = mdp.reward if reward is None else reward
    return np.sum(pi * r, axis=-1)


def entropy(pi: np.ndarray) -> np.ndarray:
    """``H(pi)[s] = -sum_a pi[s, a] log pi[s, a]``, with ``0 log 0 = 0`` (scipy's ``xlogy``)."""
    return -np.sum(scipy.special.xlogy(pi, pi), axis=-1)


class PolicyValues(NamedTuple):
    v: np.ndarray
    """``V^pi[s]``."""
    q: np.ndarray
    """``Q^pi[s, a] = r[s, a] + gamma sum_s' P[s, a, s'] V^pi[s']`` (no entropy at step 0)."""


def policy_evaluation(mdp: FiniteMDP, pi: object, tau: float = 0.0, *,
                      reward: np.ndarray | None = None, gamma: float | None = None,
                      factorization: BellmanFactorization | None = None,
                      validate: bool = True) -> PolicyValues:
    """Exact ``V^pi`` and ``Q^pi`` by one linear solve.

    Solves ``(I - gamma P_pi) V = r_pi + tau H(pi)`` for ``V[s]``, then
    ``Q[s, a] = r[s, a] + gamma (P V)[s, a]``.

    Parameters
    ----------
    mdp : FiniteMDP
    pi : array_like, shape (S, A)
        Policy; validated (non-negative rows summing to 1) unless ``validate=False``.
    tau : float, default 0
        Entropy weight; 0 gives the ordinary (unregularised) value.
    reward : ndarray (S, A), optional
        Reward to evaluate instead of ``mdp.reward`` (e.g. a leader reward).
    gamma : float, optional
        Discount instead of ``mdp.gamma``.
    factorization : BellmanFactorization, optional
        A factorisation of ``I - gamma P_pi`` to reuse.
    """
    if validate:
        pi = check_policy(mdp, pi)
        if tau != 0.0:
            tau = _validate.temperature("tau", tau)
    pi = np.asarray(pi)
    g = mdp.gamma if gamma is None else gamma
    r = mdp.reward if reward is None else reward
    b = r_pi(mdp, pi, r)
    if tau != 0.0:
        b = b + tau * entropy(pi)
    fac = factorization if factorization is not None else factorize(mdp.P_pi(pi), g)
    v = fac.solve(b)
    return PolicyValues(v=v, q=r + g * mdp.expect(v))


def state_occupancy(mdp: FiniteMDP, pi: object, *, initial: np.ndarray | None = None,
                    gamma: float | None = None,
                    factorization: BellmanFactorization | None = None,
                    validate: bool = True) -> np.ndarray:
    """Unnormalised discounted state occupancy ``d[s] = sum_t gamma^t Pr(s_t = s)``.

    ``d = (I - gamma P_pi)^{-T} rho``, shape ``[S]``; ``sum_s d[s] = 1/(1 - gamma)``.
    """
    if validate:
        pi = check_policy(mdp, pi)
    pi = np.asarray(pi)
    g = mdp.gamma if gamma is None else gamma
    rho = mdp.initial if initial is None else initial
    fac = factorization if factorization is not None else factorize(mdp.P_pi(pi), g)
    return fac.solve_transpose(rho)


def state_action_occupancy(mdp: FiniteMDP, pi: object, *,
                           initial: np.ndarray | None = None, gamma: float | None = None,
                           factorization: BellmanFactorization | None = None,
                           validate: bool = True) -> np.ndarray:
    """``d[s, a] = d[s] pi[s, a]``, shape ``[S, A]``; see :func:`state_occupancy`."""
    if validate:
        pi = check_policy(mdp, pi)
    pi = np.asarray(pi)
    d = state_occupancy(mdp, pi, initial=initial, gamma=gamma,
                        factorization=factorization, validate=False)
    return d[:, None] * pi
