r"""Sample-based hypergradient estimators for Markov games (BC-HG benefit x
influence, its baseline variant, and the direct-only baseline)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core import _validate
from ..estimators import Estimate, leader_knowledge
from ..estimators import estimate as _estimate
from ..estimators._common import episodes_for_budget
from ..estimators.critics import exact_critic
from ..estimators.sampling import Sampler
from .leaders import pull_back
from .model import (
    OBSERVES_STATE_AND_LEADER_ACTION,
    MarkovGame,
    follower_problem,
    leader_logits,
    leader_policy,
    leader_policy_jacobian,
    tabular,
)

GAME_ESTIMATORS = ("bc-hg", "bc-hg-baseline", "direct-only")


def estimate(game: MarkovGame, x: object, estimator: str, budget: int,
             rng: np.random.Generator, critic: str = "exact") -> Estimate:
    r"""Sample-based ``grad_theta F`` for a Markov game.

    ``bc-hg`` (benefit x influence, Kudo et al. 2026): the leader's advantage
    ``A_L`` (benefit) times the forward sum of the follower's sensitivity rewards
    ``g_k = gamma dlog piL(aL_{k+1}|s_{k+1}) V(s_{k+1}, aL_{k+1})`` (influence),
    plus the direct term; ``direct-only`` drops the influence (the follower's
    response). Both add the initial-law term for ``observes = (s, aL)``, sampled as
    ``dlog piL(aL_0|s_0) (V_L(s_0, aL_0) - sum_a piL(a|s_0) V_L(s_0, a))`` from
    fresh starts (costing one reset each). ``bc-hg-baseline`` is ``bc-hg`` with the
    state-value baseline on the score term (:mod:`exact_bilevel.estimators`).

    The bill never exceeds ``budget``: with ``observes = (s, aL)``, ``n`` fresh starts
    are reserved first (``n`` episodes planned with one extra reset each, so at least 3
    transitions) and the episodes are planned and capped within ``budget - n``.

    With a leader parameterisation (``game.leader``, e.g. an MLP) the estimate is the
    tabular game's at the logits ``z = leader.logits(theta)`` pulled back through
    ``dz/dtheta``: each estimator is a sum of scalar weights times sampled scores
    ``dlog piL(aL|s)/dtheta = (dz[s]/dtheta)^T dlog piL(aL|s)/dz[s]`` (the network's score
    function), so this equals the estimator run with the network's scores (same draws
    from ``rng``); ``transitions`` and ``resets`` are unchanged.

    ``rng`` may also be a :class:`~exact_bilevel.estimators.sampling.Uniforms` of ``R``
    replicates (rows of :func:`~exact_bilevel.core.streams.cell_uniforms`, block
    ``block_size(budget, d)``): then ``gradient`` is ``[R, d]`` and the costs ``[R]``, row
    ``i`` the estimate a single-replicate ``Uniforms`` of row ``i`` gives (one vectorised
    pass; the exact-moment tests draw their replicates this way).
    """
    if game.leader is not None:
        if estimator not in GAME_ESTIMATORS:
            raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
        x = _validate.parameter_vector("x", x, game.n_params)
        z = leader_logits(game, x).reshape(-1)
        est = estimate_through_policy(tabular(game), z, estimator, budget, rng, critic)
        grad = np.asarray(est.gradient)
        J = game.leader.logits_jacobian(x)
        pulled = (pull_back(J, grad) if grad.ndim == 1
                  else grad @ J.reshape(z.size, -1))  # [R, S AL] @ [S AL, d]
        return dataclasses.replace(est, gradient=pulled)
    return estimate_through_policy(game, x, estimator, budget, rng, critic)


def estimate_through_policy(game: MarkovGame, x: object, estimator: str, budget: int,
                            rng: np.random.Generator, critic: str = "exact") -> Estimate:
    """:func:`estimate` with the scores ``dlog piL/dtheta`` formed from ``dpiL/dtheta``
    (:func:`~.model.leader_policy_jacobian`, ``[S, AL, d]``) directly: the route for the
    tabular leader, and a second route for any leader parameterisation."""
    if estimator not in GAME_ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
    if critic != "exact":
        raise ValueError(f"critic = {critic!r}: Markov-game estimates use the exact leader "
                         "critic")
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    know = leader_knowledge(problem, x)
    name = "naive" if estimator == "direct-only" else estimator
    n = 0
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        # as many fresh starts as the episodes would plan with one extra reset each;
        # the episodes get the rest of the budget (at least 2), so the bill <= budget
        n = episodes_for_budget(budget, know.beta, extra=1, estimator=f"game {estimator}")
    est = _estimate(problem, x, name, budget - n, rng, critic, know)
    grad, cost, resets = est.gradient, est.transitions, est.resets
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        S, AL, _ = game.shape
        starts = Sampler(know.state.mdp, rng).reset(n)  # augmented (s, aL) indices
        s0, a0 = starts // AL, starts % AL
        v = exact_critic(know).v.reshape(S, AL)
        pi = leader_policy(game, x)
        adv0 = v[s0, a0] - np.sum(pi[s0] * v[s0], axis=-1)
        score = leader_policy_jacobian(game, x)[s0, a0] / pi[s0, a0][..., None]
        grad = grad + (adv0[..., None] * score).mean(axis=-2)
        cost, resets = cost + n, resets + n
    return Estimate(gradient=grad, transitions=cost, resets=resets,
                    estimator=f"game:{estimator}")
