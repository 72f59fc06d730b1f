r"""Leader critics: tables ``Q_L[s, a]``, ``V_L[s]`` for the follower's policy.

* :func:`exact_critic` — the exact ``Q_L``, ``V_L`` (uses the model: an oracle).
* :func:`monte_carlo_critic` — every-visit averages of the sampled returns
  ``G_t = sum_{j >= t} (gamma_L / beta)^(j - t) r_L(s_j, a_j)`` (unbiased per visit
  for ``Q_L(s_t, a_t)`` under discount-terminated episodes), ``V_L = E_pi Q_L``.
* :func:`td_critic` — the fixed point of expected-SARSA TD(0) on the batch,
  ``Q = r_L + gamma_L P_hat (pi Q)`` with ``P_hat`` the empirical transition
  frequencies (what tabular TD converges to on a fixed batch; LSTD).

The sampled critics are consistent, not unbiased: an estimator that multiplies
them with other quantities from the same samples inherits an ``O(1/n)`` bias.
Pairs never visited get ``Q_L(s, a) = r_L(s, a)`` (the immediate reward; no
continuation is known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.linalg import factorize
from ._common import LeaderKnowledge, ratio, suffix_sums
from .sampling import Episodes

CRITICS = ("exact", "monte-carlo", "td")


@dataclass(frozen=True)
class Critic:
    """``q[S, A]`` and ``v[S] = sum_a pi q``; ``advantage = q - v``."""

    q: np.ndarray
    v: np.ndarray

    @property
    def advantage(self) -> np.ndarray:
        return self.q - self.v[:, None]


def _from_q(q: np.ndarray, pi: np.ndarray) -> Critic:
    return Critic(q=q, v=np.sum(pi * q, axis=-1))


def exact_critic(know: LeaderKnowledge) -> Critic:
    """Exact leader values at the follower's policy (oracle access to ``P``)."""
    lv = know.leader_values
    return Critic(q=lv.q, v=lv.v)


def visit_counts(ep: Episodes, n_states: int, n_actions: int) -> np.ndarray:
    """``N[s, a]``: number of steps taken at ``(s, a)``."""
    s, a, _ = ep.transitions()
    return np.bincount(s * n_actions + a, minlength=n_states * n_actions).reshape(
        n_states, n_actions).astype(float)


def tabular_mean(ep: Episodes, values: np.ndarray, n_states: int, n_actions: int,
                 fill: np.ndarray) -> np.ndarray:
    """Every-visit average of the scalars ``values[n, L]`` per ``(s_t, a_t)``, shape
    ``[S, A]``; ``fill[S, A]`` where unvisited."""
    s, a, _ = ep.transitions()
    idx = s * n_actions + a
    size = n_states * n_actions
    sums = np.bincount(idx, weights=values[ep.mask], minlength=size)
    counts = np.bincount(idx, minlength=size)
    mean = (sums / np.maximum(counts, 1)).reshape(n_states, n_actions)
    return np.where(counts.reshape(n_states, n_actions) > 0, mean, fill)


def monte_carlo_critic(know: LeaderKnowledge, ep: Episodes, *,
                       discount: float | None = None) -> Critic:
    """Every-visit Monte Carlo estimate of ``Q_L`` from discount-terminated episodes.

    ``discount`` defaults to ``gamma_L`` (the right one; another value is for the
    wrong variants of :mod:`exact_bilevel.mutants`)."""
    S, A = know.pi.shape
    discount = know.gamma_leader if discount is None else discount
    rewards = know.r_leader[ep.states[:, :-1], ep.actions]
    G = suffix_sums(rewards, ep.mask, ratio(discount, know.beta))
    return _from_q(tabular_mean(ep, G, S, A, know.r_leader), know.pi)


def transition_frequencies(s: np.ndarray, a: np.ndarray, s1: np.ndarray, n_states: int,
                           n_actions: int) -> np.ndarray:
    """``P_hat[s, a, s'] = N(s, a, s') / N(s, a)`` from observed steps; rows of unvisited
    pairs are 0."""
    counts = np.bincount((s * n_actions + a) * n_states + s1,
                         minlength=n_states * n_actions * n_states).astype(float)
    counts = counts.reshape(n_states, n_actions, n_states)
    return counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)


def empirical_transitions(ep: Episodes, n_states: int, n_actions: int) -> np.ndarray:
    """:func:`transition_frequencies` of every step taken in ``ep``."""
    return transition_frequencies(*ep.transitions(), n_states, n_actions)


def batch_td(P_hat: np.ndarray, pi: np.ndarray, gamma: float,
             reward: np.ndarray) -> np.ndarray:
    """Fixed point of expected-SARSA TD(0) on a batch: ``Q = reward + gamma P_hat (pi Q)``,
    i.e. ``V = (I - gamma P_hat_pi)^{-1} sum_a pi reward``, ``Q = reward + gamma P_hat V``;
    ``reward[S, A, ...]`` (scalar or vector rewards), one LU of ``I - gamma P_hat_pi``
    (its rows may sum to less than 1: unvisited pairs continue to nothing)."""
    v = factorize(np.einsum("sa,sat->st", pi, P_hat), gamma).solve(
        np.einsum("sa,sa...->s...", pi, reward))
    return reward + gamma * np.tensordot(P_hat, v, axes=(2, 0))


def td_critic(know: LeaderKnowledge, ep: Episodes, *,
              discount: float | None = None) -> Critic:
    """Batch fixed point of expected-SARSA TD(0) (tabular LSTD) for ``Q_L``; ``discount``
    defaults to ``gamma_L`` (another value is for :mod:`exact_bilevel.mutants`)."""
    S, A = know.pi.shape
    discount = know.gamma_leader if discount is None else discount
    return _from_q(batch_td(empirical_transitions(ep, S, A), know.pi, discount,
                            know.r_leader), know.pi)


CriticFn = Callable[[LeaderKnowledge, Episodes], Critic]
"""``(know, episodes) -> Critic``: a critic built from the estimator's own episodes."""


class CarriedSarsaCritic:
    r"""Expected-SARSA TD(0) table for ``Q_L``, carried across calls (leader steps).

    The leader critic of the official FourRooms code (Kudo et al. 2026; HPGD-SARSA):
    a table that every leader step updates online on its newly sampled transitions,
    in the order they were drawn,

    .. math:: Q(s_t, a_t) \leftarrow Q(s_t, a_t) + lpha ig(r_L(s_t, a_t)
              + \gamma_L 	extstyle\sum_{a'} \pi(a'|s_{t+1}) Q(s_{t+1}, a') - Q(s_t, a_t)ig),

    and keeps for the next step (starting from zeros), with ``pi`` the follower's
    current policy. Call it as a ``critic`` of :func:`leader_critic`. Biased (its
    table lags the moving follower); here to reproduce the authors' runs.
    """

    def __init__(self, n_states: int, n_actions: int, step_size: float = 0.5) -> None:
        if not 0.0 < step_size <= 1.0:
            raise ValueError(f"step_size = {step_size}: must be in (0, 1]")
        self.q = np.zeros((n_states, n_actions))
        self.step_size = step_size

    def __call__(self, know: LeaderKnowledge, ep: Episodes) -> Critic:
        q, pi, r, gL, alpha = self.q, know.pi, know.r_leader, know.gamma_leader, self.step_size
        for i in range(ep.lengths.size):
            states, actions = ep.states[i], ep.actions[i]
            for t in range(int(ep.lengths[i])):
                s, a, s1 = states[t], actions[t], states[t + 1]
                q[s, a] += alpha * (r[s, a] + gL * pi[s1] @ q[s1] - q[s, a])
        return _from_q(q.copy(), pi)


def leader_critic(name: str | CriticFn, know: LeaderKnowledge, ep: Episodes) -> Critic:
    """Dispatch on ``name`` in :data:`CRITICS`, or call a :data:`CriticFn` (e.g. a
    :class:`CarriedSarsaCritic`) on the episodes."""
    if callable(name):
        return name(know, ep)
    if name == "exact":
        return exact_critic(know)
    if name == "monte-carlo":
        return monte_carlo_critic(know, ep)
    if name == "td":
        return td_critic(know, ep)
    raise ValueError(f"critic = {name!r}: must be one of {CRITICS}")
