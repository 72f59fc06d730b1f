r"""Hyper-policy-gradient estimator (HPGD; Thoma et al. 2024).

HPGD samples the indirect term in the score-function form

.. math:: \frac{1}{\tau}\,\mathbb{E}\Big[\sum_t \gamma_L^t A_L(s_t,a_t)
          \big(dQ(s_t,a_t) - dV(s_t)\big)\Big],

which needs ``dV(s) = E_pi dQ(s, .)`` per state: an estimate of ``dQ`` for every
action at each visited state (repeated visits or resets). Here ``dQ`` comes from
:mod:`.tabular` (every-visit Monte Carlo, ``hpgd``; batch SARSA/TD, ``hpgd-td``),
built from the same on-policy episodes, or, in the oracle variant
``hpgd-oracle``, from those plus as many extra episodes started at uniformly
drawn states with a uniformly drawn first action (resets). The direct term and
``A_L`` are as in :mod:`.bchg`. Consistent, biased at finite budget. The budget is
a hard cap as in :mod:`.bchg` (``hpgd-oracle`` plans its two batches, ``n`` episodes
each, together: at least 4 transitions; the others at least 2).
"""

from __future__ import annotations

import numpy as np

from ._common import (
    Estimate,
    LeaderKnowledge,
    contract,
    episodes_for_budget,
    finish,
    ratio,
    require_leader_return,
    step_weights_at,
)
from .bchg import direct_sum
from .critics import CriticFn, leader_critic
from .sampling import EpisodeBatch, Sampler
from .tabular import weighted_dq


def hpgd_weights(know: LeaderKnowledge, batch: EpisodeBatch, adv: np.ndarray) -> np.ndarray:
    r"""The weights ``W[r, s, a]`` of ``dQ_hat`` in HPGD's indirect term, ``[R, S, A]``
    (``adv[S, A]`` or ``[R, S, A]``): with ``T[r, s, a]`` the sum over replicate ``r``'s
    steps at ``(s, a)`` of ``(gamma_L/beta)^t A_L(s_t, a_t)``, the centring of ``dQ_hat``
    moves onto ``T``,

    .. math:: \sum_{s,a} T_{sa}\big(dQ_{sa} - \textstyle\sum_{a'}\pi_{sa'} dQ_{sa'}\big)
              = \sum_{s,a} \big(T_{sa} - \pi_{sa} \textstyle\sum_{a'} T_{sa'}\big) dQ_{sa},

    and ``W = (T - pi sum_a T) / (tau n)`` (the mean over the ``n`` episodes), so the
    indirect term is ``sum_{s,a} W dQ_hat`` and the ``[R, S, A, d]`` table of ``dQ_hat`` is
    never centred."""
    S, A = know.pi.shape
    w = step_weights_at(batch, ratio(know.gamma_leader, know.beta))
    table = batch.pair_table(A, S * A, batch.per_pair(adv) * w).reshape(-1, S, A)
    visits = table[:, :, 0].copy()  # sum over the short action axis, one slice at a time
    for a in range(1, A):
        visits += table[:, :, a]
    table -= know.pi * visits[:, :, None]
    return table / (know.tau * batch.n_episodes)


def hpgd_indirect_sum(know: LeaderKnowledge, batch: EpisodeBatch, adv: np.ndarray,
                      dq: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over its episodes of ``(1/tau) sum_t (gamma_L/beta)^t A_L
    (dQ_hat - E_pi dQ_hat)(s_t, a_t)`` for a given table ``dq[S, A, d]`` or ``[R, S, A,
    d]``, shape ``[R, d]``: ``sum_{s,a}`` :func:`hpgd_weights` ``dq`` (one product per
    replicate). The estimators contract their ``dQ_hat`` without the table
    (:func:`.tabular.weighted_dq`)."""
    S, A = know.pi.shape
    table = hpgd_weights(know, batch, adv).reshape(-1, S * A)
    flat = dq.reshape(*dq.shape[:-3], S * A, -1)
    return (contract(table, flat) if flat.ndim == 2
            else np.matmul(table[:, None, :], flat)[:, 0, :])


def _hpgd(know: LeaderKnowledge, sampler: Sampler, budget: int, critic: str | CriticFn,
          dq_method: str,
          oracle: bool, name: str) -> Estimate:
    require_leader_return(know, name)
    start, resets0 = sampler.transitions, sampler.resets
    S, A = know.pi.shape
    n = episodes_for_budget(budget, know.beta, groups=2 if oracle else 1, estimator=name)
    with sampler.capped(budget - (2 * n if oracle else 0)):  # keep 2 n for the resets
        ep = sampler.episode_batch(know.pi, n, know.beta)
    extra = ()
    if oracle:
        with sampler.capped(budget - (sampler.transitions - start)):
            s0, a0 = sampler.integers(S, n), sampler.integers(A, n)
            extra = (sampler.episode_batch(know.pi, n, know.beta, start=s0,
                                           first_action=a0),)
    c = leader_critic(critic, know, ep)
    indirect = weighted_dq(dq_method, know, hpgd_weights(know, ep, c.advantage), ep, *extra)
    gradient = direct_sum(know, ep, c) + indirect
    return finish(sampler, gradient, start, resets0, name)


def hpgd(know: LeaderKnowledge, sampler: Sampler, budget: int,
         critic: str | CriticFn = "exact") -> Estimate:
    """HPGD with every-visit Monte Carlo ``dQ`` from on-policy episodes only."""
    return _hpgd(know, sampler, budget, critic, "monte-carlo", False, "hpgd")


def hpgd_td(know: LeaderKnowledge, sampler: Sampler, budget: int,
            critic: str | CriticFn = "exact") -> Estimate:
    """HPGD with a batch SARSA/TD ``dQ`` critic from on-policy episodes only."""
    return _hpgd(know, sampler, budget, critic, "td", False, "hpgd-td")


def hpgd_oracle(know: LeaderKnowledge, sampler: Sampler, budget: int,
                critic: str | CriticFn = "exact") -> Estimate:
    """HPGD whose Monte Carlo ``dQ`` also uses half the budget on episodes reset to
    uniformly drawn ``(s, a)`` (needs resets)."""
    return _hpgd(know, sampler, budget, critic, "monte-carlo", True, "hpgd-oracle")
