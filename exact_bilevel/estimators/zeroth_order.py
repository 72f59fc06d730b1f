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

from ._common import (
    Estimate,
    LeaderKnowledge,
    episodes_for_budget,
    ratio,
    require_leader_return,
    step_weights,
)
from .sampling import Sampler


def _return_estimate(know: LeaderKnowledge, x: np.ndarray, sampler: Sampler, n: int
                     ) -> tuple[float, int, int]:
    problem = know.problem
    obj = problem.objective
    state = problem.follower_state(x)
    env = Sampler(state.mdp, sampler.rng)
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
    ``smoothing``; the budget is split evenly over the ``2 * directions`` evaluations.
    ``critic`` is unused."""
    require_leader_return(know, "zeroth-order")
    x = know.state.x
    n = max(1, episodes_for_budget(budget, know.beta) // (2 * directions))
    grad = np.zeros_like(x)
    steps = resets = 0
    for _ in range(directions):
        u = sampler.rng.normal(size=x.size)
        fp, s1, r1 = _return_estimate(know, x + smoothing * u, sampler, n)
        fm, s2, r2 = _return_estimate(know, x - smoothing * u, sampler, n)
        grad += (fp - fm) / (2 * smoothing) * u
        steps, resets = steps + s1 + s2, resets + r1 + r2
    sampler.steps += steps
    sampler.resets += resets
    return Estimate(gradient=grad / directions, transitions=steps + resets, resets=resets,
                    estimator="zeroth-order")
