r"""Exact leader objective and hypergradient of a Markov game.

``F(theta) = E_{s ~ rho}[V_L]`` under the follower's soft best response, and
``grad F = direct + indirect (+ initial)``: the generic bilevel hypergradient of
:func:`~exact_bilevel.games.model.follower_problem` (direct: the leader's own
policy gradient; indirect: the follower's response), plus, when the follower
observes ``(s, aL)``, the initial-law term
``sum_{s, aL} rho(s) dpiL(aL|s) V_L(s, aL)``. For a leader parameterisation
(:mod:`.leaders`, e.g. an MLP) each term is the tabular one at the logits
``z = leader.logits(theta)``, pulled back through ``dz/dtheta`` (the chain rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import _validate
from ..core.hypergradient import hypergradient as _hypergradient
from .leaders import pull_back
from .model import (
    OBSERVES_STATE,
    OBSERVES_STATE_AND_LEADER_ACTION,
    MarkovGame,
    follower_problem,
    leader_logits,
    leader_policy,
    leader_policy_jacobian,
    tabular,
)


def value(game: MarkovGame, x: object) -> float | complex:
    """Leader's objective ``F(theta) = E_rho[V_L]`` under the follower's soft best response."""
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    state = problem.follower_state(x)
    lv = problem.objective.leader_values(problem, state)
    if game.observes == OBSERVES_STATE:
        return problem.initial @ lv.v
    rho = (game.initial[:, None] * leader_policy(game, x)).reshape(-1)
    return rho @ lv.v


@dataclass(frozen=True)
class GameHypergradient:
    """``gradient = direct + indirect (+ initial)``; see :func:`hypergradient`."""

    value: float
    gradient: np.ndarray
    direct: np.ndarray
    indirect: np.ndarray
    initial_term: np.ndarray
    residual: float


def hypergradient(game: MarkovGame, x: object) -> GameHypergradient:
    r"""Exact ``grad_theta F``.

    ``direct`` is the leader's own policy gradient (through the induced leader
    reward and transitions, the follower's policy held fixed); ``indirect`` the
    follower's response (the Boltzmann-covariance term); ``initial_term`` the
    dependence of the initial law on ``theta`` (observes ``(s, aL)`` only):
    ``sum_{s, aL} rho(s) dpiL(aL|s) V_L(s, aL)``.

    With a leader parameterisation ``z = leader.logits(theta)`` (``game.leader``), every
    term is the tabular game's at ``z`` pulled back by the chain rule,
    ``dF/dtheta_k = sum_{s, a} dF/dz[s, a] dz[s, a]/dtheta_k`` (:func:`.leaders.pull_back`);
    shapes ``[d]``, ``d = game.n_params``.
    """
    x = _validate.parameter_vector("x", x, game.n_params)
    if game.leader is None:
        return hypergradient_through_policy(game, x)
    z = leader_logits(game, x)
    hz = hypergradient_through_policy(tabular(game), z.reshape(-1))
    J = game.leader.logits_jacobian(x)
    return GameHypergradient(value=hz.value, gradient=pull_back(J, hz.gradient),
                             direct=pull_back(J, hz.direct), indirect=pull_back(J, hz.indirect),
                             initial_term=pull_back(J, hz.initial_term), residual=hz.residual)


def hypergradient_through_policy(game: MarkovGame, x: object) -> GameHypergradient:
    """:func:`hypergradient` with ``theta`` entering the follower's problem through
    ``dpiL/dtheta`` directly (``[S, AL, d]``, :func:`~.model.leader_policy_jacobian`), with
    no reduction to the logits: the route for the tabular leader, and a second route
    (slower for large ``d``) for any leader parameterisation."""
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    hg = _hypergradient(problem, x)
    init = np.zeros(game.n_params)
    value_ = hg.value
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        lv = problem.objective.leader_values(problem, hg.state)
        S, AL, _ = game.shape
        v = lv.v.reshape(S, AL)
        init = np.einsum("s,slk,sl->k", game.initial, leader_policy_jacobian(game, x), v)
        value_ = float((game.initial[:, None] * leader_policy(game, x) * v).sum())
    return GameHypergradient(value=value_, gradient=hg.direct + hg.indirect + init,
                             direct=hg.direct, indirect=hg.indirect, initial_term=init,
                             residual=hg.residual)


def finite_horizon_return(game: MarkovGame, x: object, horizon: int,
                          discount: float = 1.0) -> float:
    """Expected leader reward over ``horizon`` steps, ``sum_{t < horizon} discount^t
    E r_L``, under the leader's policy and the follower's soft best response (the
    measures Kudo et al. plot: ``discount = 1`` for R = 2, ``gamma`` for R = 1)."""
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    state = problem.follower_state(x)
    pi_f = state.solution.policy
    r_pi = np.sum(pi_f * problem.objective.leader_reward.value(x), axis=1)
    P_pi = state.mdp.P_pi(pi_f)
    dist = problem.initial.copy()
    total = 0.0
    weight = 1.0
    for _ in range(horizon):
        total += weight * (dist @ r_pi)
        dist = dist @ P_pi
        weight *= discount
    return float(total)
