r"""Boltzmann-covariance hypergradient estimator (BC-HG; Kudo et al. 2026).

Trajectory form of the leader-return hypergradient (MATH.md, "Leader objective"):

.. math::

    \nabla F = \mathbb{E}\Big[\sum_t \gamma_L^t \big(\nabla r_L(s_t,a_t)
      + \gamma_L \nabla\log P(s_{t+1}|s_t,a_t) V_L(s_{t+1})\big)\Big]
      + \frac{1}{\tau}\,\mathbb{E}\Big[\sum_t \gamma_L^t A_L(s_t,a_t)
        \sum_{k \ge t} \gamma^{k-t} g_k\Big],

``g_k = dr(s_k, a_k) + gamma dlogP(s_{k+1}|s_k, a_k) V(s_{k+1})``. Given
``(s_t, a_t)`` the forward sum is an unbiased sample of ``dQ(s_t, a_t)``; the
centring sits on the scalar leader side (``E_pi A_L = 0``), so one visit per
state suffices — no per-state average of ``dQ`` is needed (the Boltzmann
covariance trick).

Sampling: on-policy episodes from ``rho``, terminated with probability
``1 - beta`` per step, ``beta = max(gamma, gamma_L)``, and reweighted by
``(gamma_L/beta)^t`` and ``(gamma/beta)^(k-t)``: unbiased for the infinite
discounted sums, with no truncation.

Access: on-policy episodes only (no resets beyond the episode starts, no
generative model); the follower's policy, and its soft value ``V`` when ``P``
depends on ``x``; a leader critic. Unbiased with the exact critic; with the
Monte Carlo or TD critic learned from the same samples it is consistent with an
``O(1/n)`` bias.
"""

from __future__ import annotations

import numpy as np

from ..sampling import Episodes, Sampler
from ._common import (
    Estimate,
    LeaderKnowledge,
    episodes_for_budget,
    ratio,
    require_leader_return,
    sensitivity_samples,
    step_weights,
    suffix_sums,
)
from .critics import Critic, leader_critic


def direct_samples(know: LeaderKnowledge, ep: Episodes, critic: Critic) -> np.ndarray:
    """Per-episode direct term ``sum_t (gamma_L/beta)^t [dr_L + gamma_L dlogP V_L(s_{t+1})]
    + grad reg``, shape ``[n, d]``."""
    s, a, s1 = ep.states[:, :-1], ep.actions, ep.states[:, 1:]
    terms = know.dr_leader[s, a]
    if know.problem.transitions.depends_on_x:
        terms = terms + know.gamma_leader * know.score[s, a, s1] * critic.v[s1][..., None]
    w = step_weights(ep.actions.shape[1], ratio(know.gamma_leader, know.beta))
    return np.einsum("t,ntk->nk", w, np.where(ep.mask[..., None], terms, 0.0)) + know.reg_grad


def bchg_indirect_samples(know: LeaderKnowledge, ep: Episodes, critic: Critic) -> np.ndarray:
    """Per-episode ``(1/tau) sum_t (gamma_L/beta)^t A_L(s_t, a_t) Z_t`` with
    ``Z_t = sum_{k>=t} (gamma/beta)^(k-t) g_k``, shape ``[n, d]``."""
    Z = suffix_sums(sensitivity_samples(know, ep), ep.mask, ratio(know.gamma, know.beta))
    adv = np.where(ep.mask, critic.advantage[ep.states[:, :-1], ep.actions], 0.0)
    w = step_weights(ep.actions.shape[1], ratio(know.gamma_leader, know.beta))
    return np.einsum("t,nt,ntk->nk", w, adv, Z) / know.tau


def bchg(know: LeaderKnowledge, sampler: Sampler, budget: int,
         critic: str = "exact") -> Estimate:
    """BC-HG estimate of ``grad F`` from about ``budget`` transitions.

    Parameters
    ----------
    know : LeaderKnowledge
        Sample-free information (see :mod:`._common`).
    sampler : Sampler
        Environment access; only :meth:`Sampler.episodes` from ``rho`` is used.
    budget : int
        Expected number of transitions (steps + episode starts).
    critic : {"exact", "monte-carlo", "td"}
        Source of ``A_L`` and ``V_L``.

    Returns
    -------
    Estimate
        ``gradient[d]`` (mean over episodes) and the transitions consumed.
    """
    require_leader_return(know, "bc-hg")
    start = sampler.transitions
    n = episodes_for_budget(budget, know.beta)
    ep = sampler.episodes(know.pi, n, know.beta)
    c = leader_critic(critic, know, ep)
    per_episode = direct_samples(know, ep, c) + bchg_indirect_samples(know, ep, c)
    return Estimate(gradient=per_episode.mean(axis=0), transitions=sampler.transitions - start,
                    resets=n, estimator="bc-hg")


def naive(know: LeaderKnowledge, sampler: Sampler, budget: int,
          critic: str = "exact") -> Estimate:
    """Direct term only (ignores the follower's response): biased by the whole
    indirect term ``(1/tau) sum_s occ Cov_pi(Q_L, dQ)``. Same sampling as :func:`bchg`."""
    require_leader_return(know, "naive")
    start = sampler.transitions
    n = episodes_for_budget(budget, know.beta)
    ep = sampler.episodes(know.pi, n, know.beta)
    c = leader_critic(critic, know, ep)
    return Estimate(gradient=direct_samples(know, ep, c).mean(axis=0),
                    transitions=sampler.transitions - start, resets=n, estimator="naive")
