r"""Exact hypergradients of many transition models of one problem at one ``x`` (batched).

Member ``m`` is the problem with its transitions at ``x`` replaced by ``P[m, s, a, s']``,
keeping the problem's follower reward ``r_x``, objective, ``gamma``, ``tau`` and ``rho``,
and the problem's own transition family for the derivative in ``x``: none when the
problem's transitions do not depend on ``x``; for softmax-logit transitions the
exponential tilt through ``P[m]`` with the problem's features,
``P_{x'} ∝ P[m] exp(Psi (x' - x))``, whose derivative is
``(dP V)[s, a, k] = sum_s' P[m, s, a, s'] (V(s') - (P V)(s, a)) Psi[s, a, s', k]``.
This is the empirical model of :mod:`exact_bilevel.estimators.model_based`.

For the leader-return objective (:class:`~.objectives.LeaderReturn`) every member's
``F`` and adjoint-mode ``grad F`` (:mod:`exact_bilevel.core.hypergradient`) come out of
a few batched solves (:func:`~.batched_solve.solve_members`, one LU per member each):

.. math::

    V_L &= (I - \gamma_L P_\pi)^{-1} \textstyle\sum_a \pi r_L, \quad
    Q_L = r_L + \gamma_L P V_L, \quad occ = (I - \gamma_L P_\pi)^{-T} \rho, \\
    w &= \text{centred}(occ \cdot A_L, \pi), \quad
    \lambda = (I - \gamma P_\pi)^{-T} (\gamma P^\top w), \quad G = w + \pi \lambda, \\
    \nabla F &= \underbrace{\textstyle\sum occ\, \pi\, (dr_L + \gamma_L dP V_L)
               + \nabla \mathrm{reg}}_{\text{direct}}
             + \tfrac{1}{\tau} \textstyle\sum G\, (dr + \gamma\, dP V).

Every member's numbers are computed by itself (stacked numpy calls; no sum across
members), so a member gives the same floats whatever else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate
from ._budget import check_allocation
from .batched_solve import (
    SoftSolutionBatch,
    bellman_matrices,
    policy_matrices,
    q_from_v_batch,
    solve_members,
    solve_soft_batch,
)
from .errors import require_finite
from .hypergradient import centred_policy_weights
from .objectives import LeaderReturn
from .parameterizations import SoftmaxTransitions
from .problem import BilevelProblem


@dataclass(frozen=True)
class HypergradientStack:
    """``F`` and ``grad F`` of ``R`` members (row ``m`` is member ``m``).

    Attributes
    ----------
    values : ndarray, shape (R,)
    gradients, direct, indirect : ndarray, shape (R, d)
    solution : SoftSolutionBatch
        The members' follower solutions.
    """

    values: np.ndarray
    gradients: np.ndarray
    direct: np.ndarray
    indirect: np.ndarray
    solution: SoftSolutionBatch


def supports(problem: BilevelProblem) -> bool:
    """Whether :func:`hypergradients_of_models` applies: a
    :class:`~.objectives.LeaderReturn` objective, transitions that are fixed or
    softmax-logit, and no problem-specific solver options (those are honoured by the
    one-member-at-a-time route,
    :func:`~exact_bilevel.core.hypergradient.hypergradient`)."""
    tr = problem.transitions
    return (isinstance(problem.objective, LeaderReturn) and not problem.solver_options
            and (not tr.depends_on_x or isinstance(tr, SoftmaxTransitions)))


def _contract(weights: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """``sum_{s,a} weights[m, s, a] jac[s, a, k]``, ``[R, d]``: one product per member
    (a member's floats do not depend on the batch)."""
    R = weights.shape[0]
    jac = np.asarray(jac, dtype=float)
    return np.matmul(weights.reshape(R, 1, -1), jac.reshape(-1, jac.shape[-1]))[:, 0, :]


def _transition_vjp(problem: BilevelProblem, P: np.ndarray, weights: np.ndarray,
                    v: np.ndarray) -> np.ndarray:
    """``sum_{s,a,s'} weights[m, s, a] dP[m, s, a, s', k] V[m, s']``, ``[R, d]``, in the
    problem's transition family through ``P[m]`` (module docstring)."""
    R, S, A = weights.shape
    if not problem.transitions.depends_on_x:
        return np.zeros((R, problem.n_params))
    pv = np.matmul(P.reshape(R, S * A, S), v[:, :, None]).reshape(R, S, A)  # (P V)[m, s, a]
    c = P * (v[:, None, None, :] - pv[..., None]) * weights[..., None]
    return _contract(c, problem.transitions.features)  # type: ignore[attr-defined]


def hypergradients_of_models(problem: BilevelProblem, x: np.ndarray, P: np.ndarray, *,
                             v0: np.ndarray | None = None,
                             solution: SoftSolutionBatch | None = None) -> HypergradientStack:
    r"""``F`` and ``grad F(x)`` of every member (module docstring), adjoint mode.

    Parameters
    ----------
    problem : BilevelProblem
        Supplies ``r_x``, the objective (:class:`~.objectives.LeaderReturn`),
        ``gamma``, ``tau``, ``rho`` and the transition family (:func:`supports`).
    x : ndarray, shape (d,)
        Leader parameters (real).
    P : ndarray, shape (R, S, A, S)
        The members' transitions at ``x``.
    v0 : ndarray, shape (S,) or (R, S), optional
        Where every member's Newton iteration starts, without value-iteration sweeps
        (e.g. the follower's values in the problem itself, ``P`` being estimates of its
        transitions); default zeros and three sweeps (:func:`~.solve.solve_soft`'s).
    solution : SoftSolutionBatch, optional
        The members' follower solutions, if already solved
        (:func:`~.batched_solve.solve_soft_batch` of ``P`` and ``r_x``).

    Returns
    -------
    HypergradientStack
        ``values[R]``, ``gradients[R, d] = direct + indirect``.

    Raises
    ------
    ValueError
        A problem :func:`supports` rejects, or bad shapes (as
        :func:`~.batched_solve.solve_soft_batch`).
    """
    if not supports(problem):
        raise ValueError(f"problem: batched hypergradients need a LeaderReturn objective, "
                         f"fixed or softmax-logit transitions and no solver_options; got "
                         f"{problem!r} with {type(problem.transitions).__name__} and "
                         f"solver_options {problem.solver_options}")
    x = problem.check_x(x)
    obj: LeaderReturn = problem.objective  # type: ignore[assignment]
    S, A = problem.n_states, problem.n_actions
    P = np.asarray(P, dtype=float)
    if P.ndim != 4 or P.shape[1:] != (S, A, S) or P.shape[0] < 1:
        raise ValueError(f"P: shape must be (R, {S}, {A}, {S}) for this problem, got "
                         f"{P.shape}")
    R = P.shape[0]
    if solution is not None and solution.v.shape != (R, S):
        raise ValueError(f"solution: is of {solution.v.shape[0]} members with "
                         f"{solution.v.shape[1]} states, P of {R} with {S}")
    check_allocation(f"batched hypergradient of {R} models: [R, S, A, S] products",
                     (R, S, A, S))
    r = problem.follower_reward.value(x)
    if solution is None:
        solution = solve_soft_batch(P, np.broadcast_to(r, (R, S, A)), problem.gamma,
                                    problem.tau, v0=v0, warm_start=3 if v0 is None else 0)
    gamma, gL, tau = problem.gamma, obj.gamma_for(problem), problem.tau
    pi, v = solution.policy, solution.v
    P_pi = policy_matrices(P, pi)
    M = bellman_matrices(P_pi, gamma)
    ML = M if gL == gamma else bellman_matrices(P_pi, gL)
    # leader values (LeaderReturn.leader_values, per member)
    rL = obj.leader_reward.value(x)
    vL = solve_members(ML, np.sum(pi * rL, axis=-1))
    qL = q_from_v_batch(P, np.broadcast_to(rL, (R, S, A)), gL, vL)
    rho = problem.initial
    occ = solve_members(ML, np.broadcast_to(rho, (R, S)), transpose=True)
    values = np.sum(vL * rho, axis=1)
    weights = occ[:, :, None] * pi
    direct = (_contract(weights, obj.leader_reward.jacobian(x))
              + gL * _transition_vjp(problem, P, weights, vL))
    if obj.regularizer is not None:
        rv, rg = obj.regularizer(x)
        values = values + rv
        direct = direct + rg
    # indirect term, adjoint mode (hypergradient.indirect_adjoint, per member)
    w = centred_policy_weights(occ[:, :, None] * (qL - vL[:, :, None]), pi)
    pull = np.matmul(w.reshape(R, 1, S * A), P.reshape(R, S * A, S))[:, 0, :]
    lam = solve_members(M, gamma * pull, transpose=True)
    G = w + pi * lam[:, :, None]
    indirect = (_contract(G, problem.follower_reward.jacobian(x))
                + gamma * _transition_vjp(problem, P, G, v)) / tau
    require_finite("F(x)", values, "the batched leader evaluation")
    require_finite("direct term of grad F", direct, "the batched leader evaluation")
    require_finite("indirect term of grad F", indirect, "the batched adjoint solve")
    return HypergradientStack(values=values, gradients=direct + indirect, direct=direct,
                              indirect=indirect, solution=solution)


#: Points per batched solve in :func:`objective_values` (``CHUNK * S * A * S`` floats of
#: transitions when they depend on ``x``).
CHUNK = 4096


def objective_values(problem: BilevelProblem, X: np.ndarray,
                     v0: np.ndarray | None = None) -> np.ndarray:
    r"""``F(x_m) = rho^T V_L(x_m) + reg(x_m)`` at every row of ``X[M, d]``, shape ``[M]``
    (:class:`~.objectives.LeaderReturn`; any transition model, no ``solver_options``).

    The follower is solved at :data:`CHUNK` points at a time
    (:func:`~.batched_solve.solve_soft_batch`, Newton from ``v0[S]`` without sweeps when
    given, e.g. the follower's values at a nearby ``x``), then
    ``V_L = (I - gamma_L P_pi)^{-1} sum_a pi r_L`` by one batched solve. Equal to
    :meth:`~.problem.BilevelProblem.value` point by point to rounding (tested).
    """
    obj = problem.objective
    if not isinstance(obj, LeaderReturn) or problem.solver_options:
        raise ValueError(f"problem: batched objective values need a LeaderReturn objective "
                         f"and no solver_options; got {problem!r} with solver_options "
                         f"{problem.solver_options}")
    from ._progress import progress_bar

    X = _validate.real_array("X", X, shape=(None, problem.n_params))
    S, A = problem.n_states, problem.n_actions
    gL, rho = obj.gamma_for(problem), problem.initial
    out = np.empty(len(X))
    chunks = range(0, len(X), CHUNK)
    for lo in progress_bar(chunks, desc="objective values", enabled=len(chunks) > 4):
        Xc = X[lo:lo + CHUNK]
        m = len(Xc)
        if problem.transitions.depends_on_x:
            check_allocation(f"{m} follower MDPs P [M, S, A, S]", (m, S, A, S))
            P = problem.transitions.values(Xc)
        else:
            P = np.asarray(problem.follower_mdp(Xc[0]).transitions, dtype=float)[None]
        sol = solve_soft_batch(P, problem.follower_reward.values(Xc), problem.gamma,
                               problem.tau, v0=v0, warm_start=3 if v0 is None else 0)
        pi = sol.policy
        ML = bellman_matrices(policy_matrices(P, pi), gL)
        vL = solve_members(ML, np.sum(pi * obj.leader_reward.values(Xc), axis=-1))
        F = np.sum(vL * rho, axis=1)
        if obj.regularizer is not None:
            F = F + np.array([obj.regularizer(x)[0] for x in Xc])
        out[lo:lo + m] = F
    require_finite("F(x)", out, "the batched leader evaluation")
    return out
