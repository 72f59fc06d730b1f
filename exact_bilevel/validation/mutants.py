r"""Deliberately wrong variants of BC-HG, for measuring the power of acceptance tests.

Each mutant changes one thing a real implementation could plausibly get wrong
in :func:`exact_bilevel.estimators.bchg.bchg` (exact critic, same sampling):

==================== ==========================================================
name                 the bug
==================== ==========================================================
sign-flip            ``-A_L`` instead of ``A_L``
no-centring          ``Q_L`` instead of ``A_L = Q_L - V_L``
wrong-discount-power ``gamma^k`` (counted from the episode start) instead of ``gamma^(k-t)``
sum-from-t+1         forward sum ``sum_{k>t}`` instead of ``sum_{k>=t}``
tau-not-inverse      multiplies by ``tau`` instead of ``1/tau``
grad-r-for-dQ        ``g_t`` alone instead of the forward sum (``dr`` in place of ``dQ``)
no-survival-weights  drops the ``1/beta^t`` reweighting of discount-terminated episodes
leader-gamma-swap    ``gamma`` in place of ``gamma_L`` in the outer weights (a no-op when
                     ``gamma_L = gamma``: test it where they differ)
==================== ==========================================================

A good acceptance test rejects each of them at the budget where it accepts the
correct estimator; ``tests/test_estimators.py`` asserts that and
``verification/estimator_rates.py`` measures detection rates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..estimators._common import (
    Estimate,
    LeaderKnowledge,
    episodes_for_budget,
    ratio,
    sensitivity_samples,
    step_weights,
    suffix_sums,
)
from ..estimators.bchg import direct_sum
from ..estimators.critics import exact_critic
from ..estimators.sampling import Episodes, Sampler


def _indirect(know: LeaderKnowledge, ep: Episodes, *, adv_table: np.ndarray,
              outer_ratio: float, z: np.ndarray, scale: float) -> np.ndarray:
    adv = np.where(ep.mask, adv_table[ep.states[:, :-1], ep.actions], 0.0)
    w = step_weights(ep.actions.shape[1], outer_ratio)
    return scale * np.einsum("t,nt,ntk->nk", w, adv, z)


def _mutant(name: str, *, adv: str = "A", outer: str = "correct", z: str = "correct",
            scale: str = "1/tau") -> Callable[[LeaderKnowledge, Sampler, int, bool], Estimate]:
    def estimator(know: LeaderKnowledge, sampler: Sampler, budget: int,
                  baseline: bool = False) -> Estimate:
        start = sampler.transitions
        n = episodes_for_budget(budget, know.beta)
        ep = sampler.episodes(know.pi, n, know.beta)
        c = exact_critic(know)
        g = sensitivity_samples(know, ep, baseline)
        inner = ratio(know.gamma, know.beta)
        if z == "correct":
            Z = suffix_sums(g, ep.mask, inner)
        elif z == "from-t+1":
            Z = suffix_sums(g, ep.mask, inner) - np.where(ep.mask[..., None], g, 0.0)
        elif z == "from-start":
            Z = (suffix_sums(g, ep.mask, inner)
                 * step_weights(g.shape[1], know.gamma)[None, :, None])
        elif z == "g-only":
            Z = np.where(ep.mask[..., None], g, 0.0)
        elif z == "no-survival":
            Z = suffix_sums(g, ep.mask, know.gamma)
        table = {"A": c.advantage, "-A": -c.advantage, "Q": c.q}[adv]
        outer_ratio = {"correct": ratio(know.gamma_leader, know.beta),
                       "no-survival": know.gamma_leader,
                       "gamma": ratio(know.gamma, know.beta)}[outer]
        s = {"1/tau": 1.0 / know.tau, "tau": know.tau}[scale]
        indirect = _indirect(know, ep, adv_table=table, outer_ratio=outer_ratio, z=Z, scale=s)
        return Estimate(gradient=direct_sum(know, ep, c, baseline) + indirect.mean(axis=0),
                        transitions=sampler.transitions - start, resets=n, estimator=name)
    estimator.__name__ = name.replace("-", "_").replace("+", "plus")
    return estimator


MUTANTS: dict[str, Callable[[LeaderKnowledge, Sampler, int, bool], Estimate]] = {
    "sign-flip": _mutant("sign-flip", adv="-A"),
    "no-centring": _mutant("no-centring", adv="Q"),
    "wrong-discount-power": _mutant("wrong-discount-power", z="from-start"),
    "sum-from-t+1": _mutant("sum-from-t+1", z="from-t+1"),
    "tau-not-inverse": _mutant("tau-not-inverse", scale="tau"),
    "grad-r-for-dQ": _mutant("grad-r-for-dQ", z="g-only"),
    "no-survival-weights": _mutant("no-survival-weights", outer="no-survival", z="no-survival"),
    "leader-gamma-swap": _mutant("leader-gamma-swap", outer="gamma"),
}


def mutant_replicates(name: str, know: LeaderKnowledge, budget: int, n_replicates: int,
                      seed: int, baseline: bool = False) -> np.ndarray:
    """``n_replicates`` estimates ``[R, d]`` of mutant ``name``, seeded like
    :func:`exact_bilevel.estimators.replicates`; ``baseline`` mutates
    ``bc-hg-baseline`` instead of ``bc-hg``."""
    fn = MUTANTS[name]
    return np.array([fn(know, Sampler(know.state.mdp, np.random.default_rng([seed, i])),
                        budget, baseline).gradient for i in range(n_replicates)])
