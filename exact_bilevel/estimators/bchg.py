r"""Boltzmann-covariance hypergradient estimator (BC-HG; Kudo et al. 2026).

Trajectory form of the leader-return hypergradient (:ref:`docs/math.md, section 6 <math-sampling>`):

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
discounted sums. The budget is a hard cap (:meth:`Sampler.capped`): episodes are
planned so that a truncation at the cap has probability ``<= 1e-4``, and the
unbiasedness holds up to that event.

Access: on-policy episodes only (no resets beyond the episode starts, no
generative model); the follower's policy, and its soft value ``V`` when ``P``
depends on ``x``; a leader critic. Unbiased with the exact critic; with the
Monte Carlo or TD critic learned from the same samples it is consistent with an
``O(1/n)`` bias.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    Estimate,
    LeaderKnowledge,
    contract_batch,
    episodes_for_budget,
    finish,
    ratio,
    require_leader_return,
    sensitivity_samples,
    step_weights,
    step_weights_at,
    suffix_sums,
)
from .critics import Critic, CriticFn, leader_critic
from .sampling import EpisodeBatch, Episodes, Sampler


def direct_sum(know: LeaderKnowledge, batch: EpisodeBatch, critic: Critic,
               baseline: bool = False) -> np.ndarray:
    """Per replicate, the mean over its episodes of ``sum_t (gamma_L/beta)^t [dr_L(s_t,
    a_t) + gamma_L dlogP(s_{t+1}|s_t, a_t) V_L(s_{t+1})]``, plus ``grad reg``; shape
    ``[R, d]``. ``baseline`` subtracts ``V_L(s_t)`` in the score term (see
    :func:`._common.contract_batch`)."""
    w = step_weights_at(batch, ratio(know.gamma_leader, know.beta))
    total = contract_batch(know, batch, w, know.dr_leader, critic.v, know.gamma_leader,
                           baseline)
    return total / batch.n_episodes + know.reg_grad


def bchg_indirect_sum(know: LeaderKnowledge, batch: EpisodeBatch, critic: Critic,
                      baseline: bool = False) -> np.ndarray:
    """Per replicate, the mean over its episodes of ``(1/tau) sum_t (gamma_L/beta)^t
    A_L(s_t, a_t) Z_t``, ``Z_t = sum_{k>=t} (gamma/beta)^(k-t) g_k``, computed in the dual
    order ``sum_k Y_k g_k`` with the scalar ``Y_k = sum_{t<=k} (gamma/beta)^(k-t)
    (gamma_L/beta)^t A_L(s_t, a_t)`` (:meth:`EpisodeBatch.prefix_sums`); shape ``[R, d]``.
    ``baseline`` uses ``V(s_{k+1}) - V(s_k)`` in the score term of ``g_k``."""
    w = step_weights_at(batch, ratio(know.gamma_leader, know.beta))
    adv = batch.per_pair(critic.advantage) * w
    Y = batch.prefix_sums(adv, ratio(know.gamma, know.beta), overwrite=True)
    total = contract_batch(know, batch, Y, know.dr, know.v, know.gamma, baseline)
    return total / (know.tau * batch.n_episodes)


def bchg_per_episode(know: LeaderKnowledge, ep: Episodes, critic: Critic,
                     baseline: bool = False) -> np.ndarray:
    """The literal per-episode form of the whole estimate, ``[n, d]`` (memory ``O(n L d)``),
    on one replicate's padded episodes (``critic`` without a replicate axis).

    Reference for :func:`direct_sum` + :func:`bchg_indirect_sum` (tests check that
    its mean equals them).
    """
    s, a, s1 = ep.states[:, :-1], ep.actions, ep.states[:, 1:]
    w = step_weights(ep.actions.shape[1], ratio(know.gamma_leader, know.beta))
    direct = know.dr_leader[s, a]
    if know.problem.transitions.depends_on_x:
        level = critic.v[s1] - critic.v[s] if baseline else critic.v[s1]
        direct = direct + know.gamma_leader * know.score[s, a, s1] * level[..., None]
    direct = np.einsum("t,ntk->nk", w, np.where(ep.mask[..., None], direct, 0.0))
    Z = suffix_sums(sensitivity_samples(know, ep, baseline), ep.mask,
                    ratio(know.gamma, know.beta))
    adv = np.where(ep.mask, critic.advantage[s, a], 0.0)
    indirect = np.einsum("t,nt,ntk->nk", w, adv, Z) / know.tau
    return direct + indirect + know.reg_grad


def bchg(know: LeaderKnowledge, sampler: Sampler, budget: int,
         critic: str | CriticFn = "exact", *, baseline: bool = False) -> Estimate:
    """BC-HG estimate of ``grad F`` from at most ``budget`` transitions, for each of the
    sampler's replicates (one vectorised pass).

    Parameters
    ----------
    know : LeaderKnowledge
        Sample-free information (see :mod:`._common`).
    sampler : Sampler
        Environment access; only :meth:`Sampler.episode_batch` from ``rho`` is used.
    budget : int
        Most transitions (steps + episode starts) to bill per replicate: a hard cap. The
        number of episodes is planned so that their total cost crosses it with
        probability ``<= 1e-4`` (:func:`._common.episodes_for_budget`); such a rare
        overflow truncates the batch (:meth:`Sampler.capped`). At least 2 (one reset,
        one step).
    critic : {"exact", "monte-carlo", "td"}
        Source of ``A_L`` and ``V_L``.
    baseline : bool
        Subtract ``V(s_k)`` (``V_L(s_t)`` in the direct term) from the value
        multiplying the transition score. Not in the paper; unbiased, and on
        transition-parameterised problems it cuts the standard deviation by
        orders of magnitude (registered as ``bc-hg-baseline``).

    Returns
    -------
    Estimate
        ``gradient[d]`` (mean over episodes) and the transitions consumed (``[R, d]`` and
        ``[R]`` for a sampler of ``R`` replicates).
    """
    name = "bc-hg-baseline" if baseline else "bc-hg"
    require_leader_return(know, name)
    start, resets0 = sampler.transitions, sampler.resets
    n = episodes_for_budget(budget, know.beta, estimator=name)
    with sampler.capped(budget):
        batch = sampler.episode_batch(know.pi, n, know.beta)
    c = leader_critic(critic, know, batch)
    gradient = direct_sum(know, batch, c, baseline) + bchg_indirect_sum(know, batch, c,
                                                                         baseline)
    return finish(sampler, gradient, start, resets0, name)


def naive(know: LeaderKnowledge, sampler: Sampler, budget: int,
          critic: str | CriticFn = "exact") -> Estimate:
    """Direct term only (ignores the follower's response): biased by the whole
    indirect term ``(1/tau) sum_s occ Cov_pi(Q_L, dQ)``. Same sampling as :func:`bchg`."""
    require_leader_return(know, "naive")
    start, resets0 = sampler.transitions, sampler.resets
    n = episodes_for_budget(budget, know.beta, estimator="naive")
    with sampler.capped(budget):
        batch = sampler.episode_batch(know.pi, n, know.beta)
    c = leader_critic(critic, know, batch)
    return finish(sampler, direct_sum(know, batch, c), start, resets0, "naive")
