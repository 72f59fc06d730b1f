r"""Exact hypergradient ``grad F(x)`` of a bilevel problem, forward and adjoint modes.

With ``W[s, a] = (df/dpi)[s, a] pi[s, a]`` and its per-state centring
``w = W - pi * sum_a W`` (:ref:`docs/math.md, section 5 <math-adjoint>`):

.. math::

    \nabla F = \text{direct} + \frac{1}{\tau} \sum_{s,a} w(s,a)\, dQ(s,a)
             = \text{direct} + \frac{1}{\tau} \sum_{s,a} G(s,a)\, g(s,a),

    G = w + \pi \odot \lambda, \qquad
    \lambda = (I - \gamma P_\pi)^{-T} (\gamma P^\top w).

*Forward mode* forms ``dQ`` for all ``d`` parameters (``[S, d]`` solve) and
returns the sensitivities too. *Adjoint mode* needs one ``S``-sized transposed
solve with the follower's existing factorisation, whatever ``d`` is, and then
only vector-Jacobian products of the parameterisation.

For the leader-return objective ``w = occ * pi * A_L`` and the indirect term is
``(1/tau) sum_s occ(s) Cov_{a~pi(.|s)}(Q_L(s, .), dQ(s, .))`` (Kudo et al.
2026's Boltzmann-covariance form); :func:`covariance_decomposition` returns it
state by state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import require_finite
from .follower import FollowerState
from .objectives import LeaderReturn, ObjectiveTerms
from .problem import BilevelProblem
from .sensitivities import Sensitivities, follower_sensitivities


@dataclass(frozen=True)
class Hypergradient:
    """``grad F(x) = direct + indirect`` and what it was computed from.

    Attributes
    ----------
    value : float
        ``F(x)``.
    gradient : ndarray, shape (d,)
        ``grad F(x)``.
    direct : ndarray, shape (d,)
        ``partial_x f`` at fixed ``pi``.
    indirect : ndarray, shape (d,)
        ``sum_{s,a} df/dpi * dpi/dx``.
    residual : float
        Bellman residual of the follower solve.
    mode : str
        ``"adjoint"`` or ``"forward"``.
    state : FollowerState
        Follower solution and factorisation at ``x``.
    sensitivities : Sensitivities or None
        ``dQ, dV, dlogpi, dpi`` (forward mode only).
    """

    value: float
    gradient: np.ndarray
    direct: np.ndarray
    indirect: np.ndarray
    residual: float
    mode: str
    state: FollowerState
    sensitivities: Sensitivities | None = None


def centred_policy_weights(df_dpi: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """``w = W - pi * sum_a W`` with ``W = df_dpi * pi``, shape ``[S, A]``.

    ``sum_{s,a} df_dpi * dpi = (1/tau) sum_{s,a} w * dQ`` because
    ``dpi = pi (dQ - E_pi dQ) / tau``.
    """
    W = df_dpi * pi
    w = W - pi * W.sum(axis=-1, keepdims=True)
    # Second pass: the first leaves sum_a w ~ eps |W| by rounding, and that
    # component would be amplified by 1/(1 - gamma) in the adjoint solve.
    return w - pi * w.sum(axis=-1, keepdims=True)


def indirect_adjoint(problem: BilevelProblem, state: FollowerState,
                     df_dpi: np.ndarray) -> np.ndarray:
    """``(1/tau) sum G g`` with one transposed solve (cost independent of d in the solve)."""
    pi, x = state.solution.policy, state.x
    w = centred_policy_weights(df_dpi, pi)
    lam = state.factorization.solve_transpose(problem.gamma * state.mdp.pullback(w))
    G = w + pi * lam[:, None]
    out = problem.follower_reward.vjp(x, G)
    if problem.transitions.depends_on_x:
        out = out + problem.gamma * problem.transitions.vjp(x, G, state.solution.v)
    return out / problem.tau


def _adjoint(problem: BilevelProblem, state: FollowerState,
             terms: ObjectiveTerms) -> tuple[np.ndarray, Sensitivities | None]:
    return indirect_adjoint(problem, state, terms.df_dpi), None


def _forward(problem: BilevelProblem, state: FollowerState,
             terms: ObjectiveTerms) -> tuple[np.ndarray, Sensitivities | None]:
    sens = follower_sensitivities(problem, state)
    d = sens.dQ.shape[-1]
    # sum df_dpi * dpi = (1/tau) sum w * dQ: the centred weights avoid cancellation
    w = centred_policy_weights(terms.df_dpi, state.solution.policy)
    indirect = w.reshape(-1) @ sens.dQ.reshape(-1, d) / problem.tau
    return indirect, sens


_MODES: dict[str, Callable[..., tuple[np.ndarray, Sensitivities | None]]] = {
    "adjoint": _adjoint,
    "forward": _forward,
}


def hypergradient(problem: BilevelProblem, x: object, mode: str = "adjoint", *,
                  state: FollowerState | None = None,
                  **solver_options: object) -> Hypergradient:
    r"""Exact ``grad F(x)`` of ``F(x) = f(x, pi*(x))``.

    Parameters
    ----------
    problem : BilevelProblem
    x : array_like, shape (d,)
        Leader parameters (complex allowed for complex-step checks).
    mode : {"adjoint", "forward"}
        Adjoint: one ``S``-sized transposed solve. Forward: ``[S, d]`` solve,
        also returns :class:`~exact_bilevel.core.sensitivities.Sensitivities`.
    state : FollowerState, optional
        A follower solve at this ``x`` to reuse.
    **solver_options
        Passed to :func:`~exact_bilevel.core.solve.solve_soft`.

    Returns
    -------
    Hypergradient
        ``gradient = direct + indirect``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode = {mode!r}: must be one of {sorted(_MODES)}")
    if state is None:
        state = problem.follower_state(x, **solver_options)
    terms = problem.objective.evaluate(problem, state)
    indirect, sens = _MODES[mode](problem, state, terms)
    require_finite("F(x)", terms.value, "the leader evaluation")
    require_finite("direct term of grad F", terms.direct, "the leader evaluation")
    require_finite("indirect term of grad F", indirect, f"the {mode} sensitivity solve")
    return Hypergradient(value=terms.value, gradient=terms.direct + indirect,
                         direct=terms.direct, indirect=indirect,
                         residual=state.solution.residual, mode=mode, state=state,
                         sensitivities=sens)


def covariance_decomposition(problem: BilevelProblem, x: object,
                             **solver_options: object) -> np.ndarray:
    r"""Per-state Boltzmann-covariance form of the indirect term, shape ``[S, d]``.

    .. math::

        c(s, k) = \frac{1}{\tau}\, occ(s)\, \mathrm{Cov}_{a\sim\pi(\cdot|s)}
                  \big(Q_L(s, a),\, dQ(s, a, k)\big),
        \qquad \sum_s c(s, k) = \text{indirect}_k .

    Only for :class:`~exact_bilevel.core.objectives.LeaderReturn` objectives. This is
    the quantity the Boltzmann-covariance estimator (BC-HG, Kudo et al. 2026)
    samples along on-policy trajectories.
    """
    if not isinstance(problem.objective, LeaderReturn):
        raise ValueError("covariance_decomposition: the problem's objective must be "
                         f"LeaderReturn, got {problem.objective!r}")
    state = problem.follower_state(x, **solver_options)
    lv = problem.objective.leader_values(problem, state)
    dQ = follower_sensitivities(problem, state).dQ
    pi = state.solution.policy
    cov = np.einsum("sa,sak->sk", pi * lv.advantage, dQ)  # Cov(Q_L, dQ) since E_pi A_L = 0
    return lv.occupancy[:, None] * cov / problem.tau


@dataclass(frozen=True)
class HypergradientBatch:
    """``F`` and ``grad F`` at many points of one problem (rows follow the input order).

    Attributes
    ----------
    values : ndarray, shape (n,)
    gradients, direct, indirect : ndarray, shape (n, d)
    residuals : ndarray, shape (n,)
        Bellman residual of each follower solve.
    iterations : ndarray, shape (n,)
        Newton and chord iterations of each follower solve (after the warm start).
    factorizations : ndarray, shape (n,)
        LU factorisations of each follower solve (0 when the previous point's LU served).
    """

    values: np.ndarray
    gradients: np.ndarray
    direct: np.ndarray
    indirect: np.ndarray
    residuals: np.ndarray
    iterations: np.ndarray
    factorizations: np.ndarray


def _nearest_chain(X: np.ndarray) -> list[int]:
    """A greedy nearest-neighbour ordering of the rows of ``X`` (``O(n^2 d)``, n <= 1e4)."""
    n = X.shape[0]
    left = np.ones(n, dtype=bool)
    order = [0]
    left[0] = False
    for _ in range(n - 1):
        dist = np.sum((X - X[order[-1]]) ** 2, axis=1)
        dist[~left] = np.inf
        k = int(np.argmin(dist))
        order.append(k)
        left[k] = False
    return order


def hypergradients(problem: BilevelProblem, X: object, mode: str = "adjoint", *,
                   order: str = "nearest", **solver_options: object) -> HypergradientBatch:
    r"""``F(x_i)`` and ``grad F(x_i)`` for every row ``x_i`` of ``X[n, d]`` (one problem).

    What does not depend on ``x`` is shared: the follower MDP is validated once when the
    transitions do not depend on ``x`` (:meth:`BilevelProblem.follower_mdp`), and each
    follower solve is warm-started from the value of the previous point, visited along a
    greedy nearest-neighbour chain (``order="nearest"``; ``"given"`` keeps the input
    order), and Newton's first step is a chord step with the previous point's LU
    (``warm_lu`` of :func:`~exact_bilevel.core.solve.solve_soft`): when the points are
    close, a point costs no factorisation at all. The results equal independent
    :func:`hypergradient` calls to the solver tolerance (tested).
    """
    from ._validate import real_array

    Xa = real_array("X", X, shape=(None, problem.n_params))
    if order not in ("nearest", "given"):
        raise ValueError(f"order = {order!r}: must be 'nearest' or 'given'")
    n, d = Xa.shape
    seq = _nearest_chain(Xa) if order == "nearest" and n > 2 else list(range(n))
    values = np.empty(n)
    grads, direct, indirect = (np.empty((n, d)) for _ in range(3))
    residuals = np.empty(n)
    iterations = np.empty(n, dtype=int)
    factorizations = np.empty(n, dtype=int)
    prev: FollowerState | None = None
    for i in seq:
        opts = dict(solver_options)
        if prev is not None:
            # the usual value-iteration sweeps, now from the previous point's values
            # (measured: dropping them costs more Newton LUs on scattered points)
            opts.setdefault("v0", prev.solution.v)
            if opts.get("method", "newton") == "newton":
                opts.setdefault("warm_lu", prev.plain_lu)
        state = problem.follower_state(Xa[i], **opts)
        hg = hypergradient(problem, Xa[i], mode, state=state)
        values[i], grads[i], direct[i], indirect[i] = hg.value, hg.gradient, hg.direct, \
            hg.indirect
        residuals[i] = hg.residual
        iterations[i] = state.solution.iterations
        factorizations[i] = state.factorizations
        prev = state
    return HypergradientBatch(values, grads, direct, indirect, residuals, iterations,
                              factorizations)
