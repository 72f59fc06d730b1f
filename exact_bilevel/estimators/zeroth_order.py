r"""Zeroth-order baseline: two-point Gaussian smoothing with the follower re-solved.

.. math:: \hat\nabla F = \frac{1}{m}\sum_{j=1}^{m}
          \frac{\hat F(x + \mu u_j) - \hat F(x - \mu u_j)}{2\mu}\,u_j,
          \qquad u_j \sim N(0, I_d),

where ``F_hat(x')`` is a Monte Carlo estimate of the leader's return after the
leader deploys ``x'`` and the follower re-optimises (solved exactly here),
sampled from the environment at ``x'``. Unbiased for the gradient of the
Gaussian smoothing ``F_mu``, hence biased for ``grad F`` by ``O(mu^2)``, and its
variance grows with ``d``. Access: deploying perturbed ``x`` and on-policy episodes.
"""

from __future__ import annotations

import numpy as np

from ..core.problem import BilevelProblem
from ._common import (
    Estimate,
    LeaderKnowledge,
    episodes_for_budget,
    ratio,
    require_leader_return,
    step_weights,
)
from .sampling import Sampler


def _return_estimate(know: LeaderKnowledge, x: np.ndarray, sampler: Sampler, n: int,
                     cap: int) -> tuple[float, int, int]:
    problem = know.problem
    obj = problem.objective
    state = problem.follower_state(x)
    env = Sampler(state.mdp, sampler.rng)
    with env.capped(cap):
        ep = env.episodes(state.solution.policy, n, know.beta)
    rL = obj.leader_reward.value(x)[ep.states[:, :-1], ep.actions]
    w = step_weights(ep.actions.shape[1], ratio(know.gamma_leader, know.beta))
    value = float(np.mean(np.where(ep.mask, rL, 0.0) @ w))
    if obj.regularizer is not None:
        value += float(obj.regularizer(x)[0])
    return value, env.steps, env.resets


def zeroth_order(know: LeaderKnowledge, sampler: Sampler, budget: int,
                 critic: str = "exact", *, directions: int = 4,
                 smoothing: float = 0.05) -> Estimate:
    """Two-point smoothing estimate with ``directions`` Gaussian directions, radius
    ``smoothing``; ``n`` episodes for each of the ``2 * directions`` evaluations, planned
    and capped as in :mod:`.bchg`, so the bill never exceeds ``budget`` (at least ``4 *
    directions`` transitions: one reset and one step per evaluation). ``critic`` is
    unused."""
    require_leader_return(know, "zeroth-order")
    x = know.state.x
    # The same number n of episodes for each of the 2 * directions evaluations, planned
    # together (episodes_for_budget with 2 * directions groups), under one cap: each
    # evaluation may use what is left minus one reset and one step per later episode.
    k = 2 * directions
    n = episodes_for_budget(budget, know.beta, groups=k, estimator="zeroth-order")
    grad = np.zeros_like(x)
    steps = resets = 0
    for j in range(directions):
        u = sampler.rng.normal(size=x.size)
        fs = []
        for sign, later in ((1.0, k - 2 * j - 1), (-1.0, k - 2 * j - 2)):
            cap = budget - steps - resets - 2 * n * later
            f, s1, r1 = _return_estimate(know, x + sign * smoothing * u, sampler, n, cap)
            fs.append(f)
            steps, resets = steps + s1, resets + r1
        grad += (fs[0] - fs[1]) / (2 * smoothing) * u
    sampler._charge("zeroth-order's episodes", steps + resets)
    sampler.steps += steps
    sampler.resets += resets
    return Estimate(gradient=grad / directions, transitions=steps + resets, resets=resets,
                    estimator="zeroth-order")


def smoothed_gradient(problem: BilevelProblem, x: object, smoothing: float = 0.05,
                      order: int = 8) -> np.ndarray:
    r"""The zeroth-order estimator's exact target ``grad F_mu(x)``, shape ``[d]``.

    .. math:: \nabla F_\mu(x) = \mathbb{E}_{u \sim N(0, I_d)}
              \Big[\frac{F(x + \mu u) - F(x - \mu u)}{2\mu}\, u\Big]

    by tensor-product Gauss-Hermite quadrature (probabilists' weight, ``order``
    nodes per coordinate, ``order^d`` pairs of exact follower solves), exact for
    polynomial integrands of degree ``< 2 order`` per coordinate and converging
    geometrically for the analytic ``F`` of a soft follower. ``F_mu`` differs from
    ``F`` by ``O(mu^2)``: this is what :func:`zeroth_order` is unbiased for.
    """
    x = problem.check_x(x)
    d = x.size
    if order ** d > 100_000:
        raise ValueError(f"order = {order}: order^d = {order ** d} quadrature points "
                         f"(d = {d}) exceed 1e5")
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    weights = weights / np.sqrt(2 * np.pi)
    grid = np.stack(np.meshgrid(*[nodes] * d, indexing="ij"), axis=-1).reshape(-1, d)
    w = np.prod(np.stack(np.meshgrid(*[weights] * d, indexing="ij"), axis=-1).reshape(-1, d),
                axis=1)
    total = np.zeros(d)
    for u, wu in zip(grid, w, strict=True):
        diff = problem.value(x + smoothing * u) - problem.value(x - smoothing * u)
        total += wu * diff / (2 * smoothing) * u
    return total
