r"""SoBiRL-style model-free hypergradient for a general ``f(x, pi)`` (Yang, Gao, Yuan 2025).

.. math:: \nabla F = \partial_x f + \sum_{s,a} \frac{\partial f}{\partial \pi(a|s)}\,
          \pi(a|s)\,\frac{dQ(s,a) - \mathbb{E}_{\pi} dQ(s,\cdot)}{\tau}.

``dQ`` is estimated from samples (:mod:`.tabular`: every-visit Monte Carlo or
batch TD on the vector reward ``g``) using episodes reset to uniformly drawn
``(s, a)`` (a uniform first action, then the follower's policy), so that every
pair is covered; ``partial_x f`` and ``partial f / partial pi`` are the
objective's own partials at the observed ``pi`` (the setting of the paper: ``f``
known in closed form; for the leader return they are an exact-critic oracle).
Consistent, biased at finite budget.

``sobirl-simplified`` replaces ``dQ - dV`` by ``g - E_pi g`` (the one-step
sensitivity, ignoring how the change propagates through future values). It is
**biased by design**; its bias is measured in ``verification/`` and never hidden.
With reward-only parameterisations ``g = dr`` needs no samples; otherwise
``E_{s'}[dlogP V]`` is estimated with ``budget // (S*A)`` generative-model draws
per pair (so it never bills more than the budget; at least ``S*A``).

``sobirl`` bills at most its budget too: the episodes are planned and capped as in
:mod:`.bchg` (at least 2 transitions).
"""

from __future__ import annotations

import numpy as np

from ._common import Estimate, LeaderKnowledge, check_budget, episodes_for_budget, finish
from .sampling import Sampler
from .tabular import weighted_dq


def centred_policy_weights(know: LeaderKnowledge) -> np.ndarray:
    r"""``(w - pi sum_a w) / tau`` for ``w = df/dpi pi``, shape ``[S, A]``: the weights
    that carry ``dQ`` into the policy term (:func:`_policy_term`). The centring of
    ``dlogpi = (dQ - E_pi dQ) / tau`` moves onto them,

    .. math:: \sum_{s,a} w_{sa}\big(dQ_{sa} - \textstyle\sum_{a'} \pi_{sa'} dQ_{sa'}\big)
              = \sum_{s,a} \big(w_{sa} - \pi_{sa} \textstyle\sum_{a'} w_{sa'}\big) dQ_{sa},

    so the ``[R, S, A, d]`` table of ``dQ_hat`` is never centred."""
    w = know.objective_terms.df_dpi * know.pi
    return (w - know.pi * w.sum(axis=1, keepdims=True)) / know.tau


def _policy_term(know: LeaderKnowledge, dq: np.ndarray,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """``partial_x f + sum_{s,a} weights[s, a] dq[..., s, a, :]``, shape ``[..., d]``, for
    ``dq[..., S, A, d]``; ``weights`` default to :func:`centred_policy_weights` (so this is
    ``partial_x f + sum (df/dpi pi) dlogpi`` with ``dlogpi = (dQ - E_pi dQ) / tau``)."""
    w = centred_policy_weights(know) if weights is None else weights
    flat = dq.reshape(*dq.shape[:-3], -1, dq.shape[-1])  # [..., S A, d]
    return know.objective_terms.direct + np.matmul(w.reshape(1, -1), flat)[..., 0, :]


def sobirl(know: LeaderKnowledge, sampler: Sampler, budget: int,
           critic: str = "monte-carlo") -> Estimate:
    """SoBiRL estimate with ``critic`` in ``{"monte-carlo", "td"}`` estimating ``dQ``, for
    each of the sampler's replicates."""
    start, resets0 = sampler.transitions, sampler.resets
    S, A = know.pi.shape
    n = episodes_for_budget(budget, know.beta, estimator="sobirl")
    with sampler.capped(budget):
        s0, a0 = sampler.integers(S, n), sampler.integers(A, n)
        ep = sampler.episode_batch(know.pi, n, know.beta, start=s0, first_action=a0)
    terms = know.objective_terms
    gradient = terms.direct + weighted_dq(critic, know, centred_policy_weights(know), ep)
    return finish(sampler, gradient, start, resets0, "sobirl")


def sobirl_simplified(know: LeaderKnowledge, sampler: Sampler, budget: int,
                      critic: str = "monte-carlo") -> Estimate:
    """``dQ - dV`` replaced by ``g - E_pi g`` (biased by design). ``critic`` is unused."""
    start, resets0 = sampler.transitions, sampler.resets
    S, A = know.pi.shape
    R, d = sampler.n_replicates, know.dr.shape[-1]
    g = np.broadcast_to(know.dr, (R, S, A, d))
    if not know.problem.transitions.depends_on_x:
        check_budget(budget, 1, "sobirl-simplified", "it draws nothing here")
    else:
        check_budget(budget, S * A, "sobirl-simplified",
                     "one generative-model draw per pair", f"S*A = {S * A}")
        m = budget // (S * A)
        with sampler.capped(budget):
            s, a, s1 = sampler.sweep(m)
        s1 = s1.reshape(R, -1)
        lr = (know.score[s, a, s1] * know.v[s1][..., None]).reshape(R, S, A, m, d)
        g = g + know.gamma * lr.mean(axis=3)
    return finish(sampler, _policy_term(know, g), start, resets0, "sobirl-simplified")
