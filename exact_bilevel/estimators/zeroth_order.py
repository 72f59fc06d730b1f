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
    finish,
    ratio,
    require_leader_return,
    step_weights_at,
)
from .sampling import Sampler, Uniforms


def _return_estimate(know: LeaderKnowledge, x: np.ndarray, uniforms: Uniforms, n: int,
                     cap: int) -> tuple[float, int, int]:
    problem = know.problem
    obj = problem.objective
    state = problem.follower_state(x)
    env = Sampler(state.mdp, uniforms)
    with env.capped(cap):
        batch = env.episode_batch(state.solution.policy, n, know.beta)
    rL = obj.leader_reward.value(x)[batch.s, batch.a]
    w = step_weights_at(batch, ratio(know.gamma_leader, know.beta))
    value = float(np.mean(np.bincount(batch.episode, weights=rL * w, minlength=n)))
    if obj.regularizer is not None:
        value += float(obj.regularizer(x)[0])
    return value, int(env.steps[0]), int(env.resets[0])


def _one(know: LeaderKnowledge, uniforms: Uniforms, budget: int, n: int, directions: int,
         smoothing: float) -> tuple[np.ndarray, int, int]:
    """One replicate's estimate and its steps and resets (``uniforms``: its stream)."""
    x = know.state.x
    k = 2 * directions
    grad = np.zeros_like(x)
    steps = resets = 0
    for j in range(directions):
        u = Sampler(know.state.mdp, uniforms).normal(x.size)[0]
        fs = []
        for sign, later in ((1.0, k - 2 * j - 1), (-1.0, k - 2 * j - 2)):
            cap = budget - steps - resets - 2 * n * later
            f, s1, r1 = _return_estimate(know, x + sign * smoothing * u, uniforms, n, cap)
            fs.append(f)
            steps, resets = steps + s1, resets + r1
        grad += (fs[0] - fs[1]) / (2 * smoothing) * u
    return grad / directions, steps, resets


def zeroth_order(know: LeaderKnowledge, sampler: Sampler, budget: int,
                 critic: str = "exact", *, directions: int = 4,
                 smoothing: float = 0.05) -> Estimate:
    """Two-point smoothing estimate with ``directions`` Gaussian directions, radius
    ``smoothing``; ``n`` episodes for each of the ``2 * directions`` evaluations, planned
    and capped as in :mod:`.bchg`, so the bill never exceeds ``budget`` (at least ``4 *
    directions`` transitions: one reset and one step per evaluation). ``critic`` is
    unused. Each replicate deploys its own perturbed ``x`` (a follower solve each), so the
    replicates run one after another, each on its own stream (:meth:`Uniforms.row`)."""
    require_leader_return(know, "zeroth-order")
    start, resets0 = sampler.transitions, sampler.resets
    # The same number n of episodes for each of the 2 * directions evaluations, planned
    # together (episodes_for_budget with 2 * directions groups), under one cap: each
    # evaluation may use what is left minus one reset and one step per later episode.
    n = episodes_for_budget(budget, know.beta, groups=2 * directions,
                            estimator="zeroth-order")
    R = sampler.n_replicates
    grad = np.empty((R, know.state.x.size))
    steps = np.empty(R, dtype=np.int64)
    resets = np.empty(R, dtype=np.int64)
    for r in range(R):
        row = sampler.uniforms.row(r)
        grad[r], steps[r], resets[r] = _one(know, row, budget, n, directions, smoothing)
        row.sync()
    sampler._charge("zeroth-order's episodes", steps + resets)
    sampler.steps = sampler.steps + steps
    sampler.resets = sampler.resets + resets
    return finish(sampler, grad, start, resets0, "zeroth-order")


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
