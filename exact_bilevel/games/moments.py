r"""Exact mean and covariance of one Markov-game estimate (:ref:`docs/math.md, section
10.4 <moments>`).

The game estimators (:func:`~exact_bilevel.games.estimators.estimate`, exact leader critic) are the
problem-level ``bc-hg``, ``bc-hg-baseline`` and ``naive`` (``direct-only``) on the
follower's problem (:func:`.model.follower_problem`: the induced MDP when the follower
observes ``s``, the augmented MDP over ``(s, aL)`` when it observes ``(s, aL)``) at
``budget - n0`` transitions, plus, for ``observes = (s, aL)``, the mean of ``n0 =
episodes_for_budget(budget, beta, extra=1)`` i.i.d. initial-law terms from fresh starts
(``n0 = 0`` when the follower observes ``s``)

.. math::

    Y = \frac{\partial_\theta \pi_L(a_L \mid s)}{\pi_L(a_L \mid s)}
        \Big(V_L(s, a_L) - \sum_a \pi_L(a \mid s)\, V_L(s, a)\Big),
    \qquad (s, a_L) \sim \rho(s)\, \pi_L(a_L \mid s),

drawn after (and independently of) the episodes. Hence, with ``X_P`` the problem-level
estimate (:func:`exact_bilevel.estimators.moments` at ``budget - n0``),

.. math::

    \mathbb{E} X = \mathbb{E} X_P + \mathbb{E}_\rho Y, \qquad
    \operatorname{Cov} X = \operatorname{Cov} X_P + \operatorname{Cov}_\rho Y / n_0,

    \mathbb{E}_\rho Y = \sum_{s, a} \rho(s)\, \partial\pi_L(a \mid s)\, V_L(s, a), \qquad
    \operatorname{Cov}_\rho Y = \sum_{s, a} \rho(s) \pi_L(a \mid s)\, A_0(s, a)^2\,
        \ell(s, a) \ell(s, a)^\top - \mathbb{E}_\rho Y\, \mathbb{E}_\rho Y^\top,

``A_0 = V_L(s, a) - sum_a' pi_L V_L(s, a')``, ``l = dpi_L / pi_L`` (``sum_a dpi_L = 0``
turns the mean into the initial-law term of :func:`.exact.hypergradient`). So ``E X``
is the game's hypergradient for ``bc-hg`` and ``bc-hg-baseline`` and ``direct +
initial_term`` for ``direct-only``.

With a leader parameterisation ``z = leader.logits(theta)`` (:mod:`.leaders`) the
estimate is the tabular game's at ``z`` times ``J = dz/dtheta`` (``[S AL, d]``, a
constant at this ``theta``), so ``mean = J^T m_z`` and ``covariance = J^T C_z J``;
:func:`game_moments_through_policy` is the second route (the follower's problem
parameterised by ``theta`` directly).

``budget=None``: one episode and (observes ``(s, aL)``) one fresh start. Cost: that of
:func:`~exact_bilevel.estimators.moments` on the follower's problem (``S AL`` states when
the follower observes ``(s, aL)``) plus ``O(S AL d^2)``. The moments are of the
untruncated estimate (the fresh starts are never truncated; the episodes' cap as in
:func:`~exact_bilevel.estimators.moments`, whose ``truncation_probability`` and
``truncation_bias_bound`` are carried over, the bound pulled back as ``|J|^T b``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core import _validate
from ..estimators._common import LeaderKnowledge, episodes_for_budget, leader_knowledge
from ..estimators.critics import exact_critic
from ..estimators.moments import EstimatorMoments, moments
from .estimators import GAME_ESTIMATORS
from .model import (
    OBSERVES_STATE_AND_LEADER_ACTION,
    MarkovGame,
    follower_problem,
    leader_logits,
    leader_policy,
    leader_policy_jacobian,
    tabular,
)


def game_moments(game: MarkovGame, x: object, estimator: str, budget: int | None = None
                 ) -> EstimatorMoments:
    r"""Exact mean ``[d]`` and covariance ``[d, d]`` of one estimate of the Markov-game
    ``estimator`` (:func:`~exact_bilevel.games.estimators.estimate`, exact critic) at ``x``.

    Parameters
    ----------
    game : MarkovGame
    x : array_like, shape (d,)
        ``d = game.n_params``.
    estimator : {"bc-hg", "bc-hg-baseline", "direct-only"}
    budget : int, optional
        The estimate at this budget; ``None``: one episode and (observes ``(s, aL)``) one
        fresh start.

    Returns
    -------
    EstimatorMoments
        ``mean = E X_P + E_rho Y`` and ``covariance = Cov X_P + Cov_rho Y / n0`` (module
        docstring); ``episodes`` are the problem-level episodes; ``expected_transitions``
        includes the ``n0`` fresh starts. With a leader parameterisation: ``J^T mean``,
        ``J^T covariance J``, ``J = dz/dtheta``.
    """
    x = _validate.parameter_vector("x", x, game.n_params)
    if game.leader is None:
        return game_moments_through_policy(game, x, estimator, budget)
    z = leader_logits(game, x).reshape(-1)
    m = game_moments_through_policy(tabular(game), z, estimator, budget)
    J = game.leader.logits_jacobian(x).reshape(z.size, -1)
    cov = J.T @ m.covariance @ J
    bound = m.truncation_bias_bound
    return dataclasses.replace(
        m, mean=J.T @ m.mean, covariance=0.5 * (cov + cov.T),
        truncation_bias_bound=None if bound is None else np.abs(J).T @ bound)


def game_moments_through_policy(game: MarkovGame, x: object, estimator: str,
                                budget: int | None = None) -> EstimatorMoments:
    """:func:`game_moments` with ``theta`` entering the follower's problem through
    ``dpiL/dtheta`` (``[S, AL, d]``) directly, no reduction to the logits: the route for the
    tabular leader, and a second route for any leader parameterisation (mirrors
    :func:`~exact_bilevel.games.estimators.estimate_through_policy`)."""
    if estimator not in GAME_ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    know = leader_knowledge(problem, x)
    name = "naive" if estimator == "direct-only" else estimator
    n0 = fresh_starts(game, know.beta, budget, estimator)
    inner = moments(problem, x, name, None if budget is None else budget - n0, know=know)
    out = dataclasses.replace(inner, estimator=f"game:{estimator}")
    if n0 == 0:
        return out
    mean0, cov0 = initial_law_moments(game, x, know)
    cov = inner.covariance + cov0 / n0
    return dataclasses.replace(out, mean=inner.mean + mean0, covariance=0.5 * (cov + cov.T),
                               expected_transitions=inner.expected_transitions + n0)


def fresh_starts(game: MarkovGame, beta: float, budget: int | None, estimator: str) -> int:
    """``n0``: the initial-law draws of one estimate: ``episodes_for_budget(budget, beta,
    extra=1)`` when the follower observes ``(s, aL)`` (1 when ``budget`` is None), else 0
    (the rule of :func:`~exact_bilevel.games.estimators.estimate_through_policy`)."""
    if game.observes != OBSERVES_STATE_AND_LEADER_ACTION:
        return 0
    if budget is None:
        return 1
    return episodes_for_budget(budget, beta, extra=1, estimator=f"game {estimator}")


def initial_law_moments(game: MarkovGame, x: np.ndarray, know: LeaderKnowledge
                        ) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean ``[d]`` and covariance ``[d, d]`` of one initial-law term ``Y = l(s, a)
    A_0(s, a)``, ``(s, a) ~ rho(s) pi_L(a|s)``, ``l = dpi_L/pi_L`` (module docstring):

    .. math:: \mathbb{E} Y = \sum_{s,a} \rho \pi_L A_0\, \ell, \qquad
              \operatorname{Cov} Y = \sum_{s,a} \rho \pi_L A_0^2\, \ell \ell^\top
              - \mathbb{E} Y\, \mathbb{E} Y^\top .

    ``know``: the augmented problem's (its ``V_L`` over ``(s, aL)``, ``[S AL]``)."""
    S, AL, _ = game.shape
    pi = leader_policy(game, x)
    v = exact_critic(know).v.reshape(S, AL)
    adv = v - np.sum(pi * v, axis=1, keepdims=True)
    score = leader_policy_jacobian(game, x) / pi[:, :, None]  # [S, AL, d]
    w = game.initial[:, None] * pi
    mean = np.einsum("sa,sa,sak->k", w, adv, score)
    second = np.einsum("sa,sak,sal->kl", w * adv * adv, score, score)
    cov = second - np.outer(mean, mean)
    return mean, 0.5 * (cov + cov.T)
