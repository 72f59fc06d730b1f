r"""Zeroth-order baseline: two-point Gaussian smoothing with the follower re-solved.

.. math:: \hat\nabla F = \frac{1}{m}\sum_{j=1}^{m}
          \frac{\hat F(x + \mu u_j) - \hat F(x - \mu u_j)}{2\mu}\,u_j,
          \qquad u_j \sim N(0, I_d),

where ``F_hat(x')`` is a Monte Carlo estimate of the leader's return after the
leader deploys ``x'`` and the follower re-optimises (solved exactly here),
sampled from the environment at ``x'``. Unbiased for the gradient of the
Gaussian smoothing ``F_mu``, hence biased for ``grad F`` by ``O(mu^2)``, and its
variance grows with ``d``. Access: deploying perturbed ``x`` and on-policy episodes.

The follower's policies at the ``2 M R`` perturbed points of ``R`` replicates come from
one batched soft Newton solve (:func:`~exact_bilevel.core.batched_solve.solve_soft_batch`,
each point starting from the first-order prediction of its values,
:func:`first_order_values`) where it applies (no
``solver_options``, MDPs held dense: :func:`~exact_bilevel.core.batched_solve.applies`);
otherwise from one :meth:`~exact_bilevel.core.problem.BilevelProblem.follower_state` per
point (sparse and large MDPs). Both give the same policies to rounding
(``tests/test_batched_solve.py``), hence the same sampled episodes.
"""

from __future__ import annotations

import numpy as np

from ..core._budget import check_allocation
from ..core._transitions import inverse_cdf, row_cumsum
from ..core.batched_hypergradient import objective_values
from ..core.batched_solve import applies, solve_soft_batch
from ..core.mdp import FiniteMDP
from ..core.objectives import LeaderReturn
from ..core.problem import BilevelProblem
from ..core.sensitivities import follower_sensitivities
from ._common import (
    Estimate,
    LeaderKnowledge,
    episodes_for_budget,
    finish,
    ratio,
    require_leader_return,
)
from .sampling import Sampler, block_mdp, stacked_mdp


def first_order_values(know: LeaderKnowledge, points: np.ndarray) -> np.ndarray:
    """``V*(x) + dV (x' - x)`` at every row ``x'`` of ``points[M, d]``, ``[M, S]``: the
    first-order prediction of the follower's values (``dV[S, d]`` by
    :func:`~exact_bilevel.core.sensitivities.follower_sensitivities`), a Newton start
    whose error is ``O(|x' - x|^2)`` (measured at ``S = 10``, ``mu = 0.05``: 2 Newton steps
    instead of 3 for most points, the 8000-point solve 54 -> 46 ms at the time)."""
    dV = follower_sensitivities(know.problem, know.state).dV
    delta = points - know.state.x  # [M, d]
    out = np.multiply.outer(delta[:, 0], dV[:, 0])  # summed over k in order, row by row
    for k in range(1, delta.shape[1]):
        out += np.multiply.outer(delta[:, k], dV[:, k])
    out += know.state.solution.v
    return out


def perturbed_followers(problem: BilevelProblem, points: np.ndarray,
                        v0: np.ndarray | None = None) -> tuple[list[FiniteMDP], np.ndarray]:
    """The follower's MDP and soft-optimal policy ``pi[M, S, A]`` at each row of
    ``points[M, d]``: one batched solve (:func:`perturbed_transitions`; Newton from
    ``v0[S]`` or ``v0[M, S]`` when given, e.g. :func:`first_order_values`) where the module
    docstring says, else :func:`each_perturbed_follower`."""
    S, A = problem.n_states, problem.n_actions
    if problem.solver_options or not applies(S, A):
        return each_perturbed_follower(problem, points)
    M = len(points)
    P, pi = perturbed_transitions(problem, points, v0)
    if not problem.transitions.depends_on_x:
        return [problem.follower_mdp(points[0])] * M, pi  # the follower's fixed dynamics
    # one FiniteMDP per point without validating it again (the solver validated the stack)
    r, rho = problem.follower_reward.values(points), problem.initial
    return [FiniteMDP._trusted(P[m], r[m], problem.gamma, rho) for m in range(M)], pi


def perturbed_transitions(problem: BilevelProblem, points: np.ndarray,
                          v0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The follower's dynamics and soft-optimal policies at the rows of ``points[M, d]``
    by one batched solve (:func:`~exact_bilevel.core.batched_solve.solve_soft_batch`,
    where :func:`~exact_bilevel.core.batched_solve.applies`; Newton from ``v0[S]`` or
    ``v0[M, S]`` when given): ``P[M, S, A, S]`` (``P_x`` at every point, validated as a
    stack by the solver, which names the point of a bad row) or ``P[1, S, A, S]`` (fixed
    dynamics, shared by every point), and ``pi[M, S, A]``."""
    S, A = problem.n_states, problem.n_actions
    M = len(points)
    r = problem.follower_reward.values(points)
    if problem.transitions.depends_on_x:
        check_allocation(f"{M} perturbed follower MDPs P [M, S, A, S]", (M, S, A, S))
        P = problem.transitions.values(points)
    else:
        P = np.asarray(problem.follower_mdp(points[0]).transitions, dtype=float)[None]
    sol = solve_soft_batch(P, r, problem.gamma, problem.tau, v0=v0,
                           warm_start=3 if v0 is None else 0)
    return P, sol.policy


def perturbed_environment(problem: BilevelProblem, points: np.ndarray,
                          v0: np.ndarray | None = None
                          ) -> tuple[FiniteMDP, np.ndarray, np.ndarray]:
    """The follower's environments at the rows of ``points[M, d]`` side by side, for
    sampling (:func:`.sampling.block_mdp`: state ``m S + s`` is state ``s`` at point
    ``m``), its policies ``pi[M S, A]`` and the start distributions ``rho[S]`` (shared) or
    ``rho[M, S]``: from :func:`perturbed_transitions` where the
    module docstring says (the row CDFs of ``P`` computed once on the stack, or once for
    fixed dynamics, no per-point copies), else :func:`each_perturbed_follower` and
    :func:`.sampling.stacked_mdp`. Both give the same draws (the same CDF rows)."""
    S, A, M = problem.n_states, problem.n_actions, len(points)
    if problem.solver_options or not applies(S, A):
        mdps, pi = each_perturbed_follower(problem, points)
        return (stacked_mdp(mdps), pi.reshape(M * S, A),
                np.stack([m.initial for m in mdps]))
    P, pi = perturbed_transitions(problem, points, v0)
    if problem.transitions.depends_on_x:
        check_allocation(f"{M} perturbed follower MDPs: row CDFs [M S A, S]", (M * S * A, S))
        rho = problem.initial
    else:
        rho = problem.follower_mdp(points[0]).initial
    cdf = row_cumsum(P.reshape(-1, S))
    return (block_mdp(cdf, A, M, problem.gamma, np.tile(rho / M, M)), pi.reshape(M * S, A),
            rho)


def start_states(rho: np.ndarray, block: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``s0[i] ~ rho[block[i]]`` (``rho[M, S]``; or ``rho[S]`` shared by every block) by
    the inverse CDF of the uniforms ``u`` (the shape of ``block``): the count of CDF
    entries ``<= u * total``, as :func:`~exact_bilevel.core._transitions.inverse_cdf`."""
    if rho.ndim == 1:
        c = np.cumsum(rho)
        return np.searchsorted(c, u * c[-1], side="right")
    return inverse_cdf(np.cumsum(rho, axis=1)[block.ravel()], u.ravel()).reshape(block.shape)


def each_perturbed_follower(problem: BilevelProblem, points: np.ndarray
                            ) -> tuple[list[FiniteMDP], np.ndarray]:
    """As :func:`perturbed_followers`, one
    :meth:`~exact_bilevel.core.problem.BilevelProblem.follower_state` per point (any
    storage and solver options)."""
    states = [problem.follower_state(p) for p in points]
    S, A = problem.n_states, problem.n_actions
    return [st.mdp for st in states], np.stack([st.solution.policy for st in states]
                                                ).reshape(len(points), S, A)


def zeroth_order(know: LeaderKnowledge, sampler: Sampler, budget: int,
                 critic: str = "exact", *, directions: int = 4,
                 smoothing: float = 0.05) -> Estimate:
    """Two-point smoothing estimate with ``directions`` Gaussian directions, radius
    ``smoothing``; ``n`` episodes for each of the ``2 * directions`` evaluations, planned
    and capped as in :mod:`.bchg`, so the bill never exceeds ``budget`` (at least ``4 *
    directions`` transitions: one reset and one step per evaluation). ``critic`` is
    unused.

    All evaluations of all replicates in one vectorised pass: each replicate draws its
    ``directions x d`` normals, the follower is solved at each of the ``M = 2 R
    directions`` perturbed points (one exact solve each, batched: module docstring), and
    the ``2 directions n`` episodes of every replicate are walked together in the ``M``
    MDPs side by side (:func:`perturbed_environment`: one shared next-state CDF table when
    ``P`` does not depend on ``x``), under one cap ``budget`` per replicate: the
    truncation in episode order then leaves each later evaluation its resets and one step
    per episode, as separate caps would. A replicate's uniforms, in order: the normals,
    the ``2 directions n`` start states (inverse CDF of ``rho``), then the episodes
    (:meth:`Sampler.episode_batch`); evaluation ``(j, +)`` of direction ``j`` comes before
    ``(j, -)``."""
    require_leader_return(know, "zeroth-order")
    start, resets0 = sampler.transitions, sampler.resets
    # The same number n of episodes for each of the 2 * directions evaluations, planned
    # together (episodes_for_budget with 2 * directions groups), under one cap.
    k = 2 * directions
    n = episodes_for_budget(budget, know.beta, groups=k, estimator="zeroth-order")
    problem, x = know.problem, know.state.x
    obj = problem.objective
    R, d = sampler.n_replicates, x.size
    u = sampler.normal(directions * d).reshape(R, directions, 1, d)
    points = (x + np.array([1.0, -1.0])[None, None, :, None] * smoothing * u).reshape(-1, d)
    # block m = (r k + 2 j + sign)
    mdp, pi, rho = perturbed_environment(problem, points, first_order_values(know, points))
    S, A = know.pi.shape
    rL = obj.leader_reward.values(points).reshape(-1)  # [M S A]: block m's r_L[s, a]
    block = np.arange(R)[:, None] * k + np.arange(k * n)[None, :] // n  # [R, k n]
    s0 = start_states(rho, block, sampler.uniform(k * n))
    env = Sampler(mdp, sampler.uniforms, single=False)
    with env.capped(budget):
        batch = env.episode_batch(pi, k * n, know.beta,
                                  start=block * S + s0)
    w = batch.step_weights(ratio(know.gamma_leader, know.beta))
    per_episode = np.bincount(batch.episode, weights=rL.take(batch.s * A + batch.a) * w,
                              minlength=R * k * n)
    F = per_episode.reshape(R, k, n).mean(axis=2)
    if obj.regularizer is not None:
        F = F + np.array([float(obj.regularizer(p)[0]) for p in points]).reshape(R, k)
    F = F.reshape(R, directions, 2)
    grad = np.zeros((R, d))
    for j in range(directions):
        grad += ((F[:, j, 0] - F[:, j, 1]) / (2 * smoothing))[:, None] * u[:, j, 0, :]
    sampler._charge("zeroth-order's episodes", env.transitions)
    sampler.steps = sampler.steps + env.steps
    sampler.resets = sampler.resets + env.resets
    return finish(sampler, grad / directions, start, resets0, "zeroth-order")


def smoothed_gradient(problem: BilevelProblem, x: object, smoothing: float = 0.05,
                      order: int = 8) -> np.ndarray:
    r"""The zeroth-order estimator's exact target ``grad F_mu(x)``, shape ``[d]``.

    .. math:: \nabla F_\mu(x) = \mathbb{E}_{u \sim N(0, I_d)}
              \Big[\frac{F(x + \mu u) - F(x - \mu u)}{2\mu}\, u\Big]

    by tensor-product Gauss-Hermite quadrature (probabilists' weight, ``order``
    nodes per coordinate, ``order^d`` pairs of exact follower solves), exact for
    polynomial integrands of degree ``< 2 order`` per coordinate and converging
    geometrically for the analytic ``F`` of a soft follower. ``F_mu`` differs from
    ``F`` by ``O(mu^2)``: this is what :func:`zeroth_order` is unbiased for. The ``2
    order^d`` values come from :func:`leader_objective_values` (batched solves).
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
    values = leader_objective_values(problem, np.concatenate([x + smoothing * grid,
                                                              x - smoothing * grid]), x)
    diff = values[:len(grid)] - values[len(grid):]
    return (w * diff / (2 * smoothing)) @ grid


def leader_objective_values(problem: BilevelProblem, X: np.ndarray, x: np.ndarray
                            ) -> np.ndarray:
    """``F`` at every row of ``X[M, d]`` (points near ``x``), ``[M]``: batched
    (:func:`~exact_bilevel.core.batched_hypergradient.objective_values`, Newton from the
    follower's values at ``x``) for a leader-return objective without ``solver_options`` on
    MDPs held dense, else :meth:`~exact_bilevel.core.problem.BilevelProblem.value` point
    by point."""
    if (isinstance(problem.objective, LeaderReturn) and not problem.solver_options
            and applies(problem.n_states, problem.n_actions)):
        return objective_values(problem, X, v0=problem.follower_state(x).solution.v)
    return np.array([float(problem.value(p)) for p in X])
