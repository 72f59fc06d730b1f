r"""Exact solution of the entropy-regularised ("soft") follower MDP.

The soft-optimal values are the unique fixed point of the soft Bellman
operator (:func:`~exact_bilevel.core.soft_bellman.soft_bellman_operator`)

.. math:: V = T(V), \qquad T(V)(s) = \tau \log \sum_a \exp\big((r + \gamma P V)(s, a)/\tau\big).

Three methods:

``"newton"`` (default)
    Newton's method on ``V - T(V) = 0``. Its Jacobian is ``I - gamma P_pi``
    with ``pi`` the Boltzmann policy of the current ``Q``, and the Newton step
    reduces to exact evaluation of that policy with the entropy bonus,

    .. math:: V_{n+1} = (I - \gamma P_{\pi_n})^{-1} \big(r_{\pi_n} + \tau H(\pi_n)\big),

    i.e. soft policy iteration. It is warm-started by a few value-iteration
    sweeps and converges quadratically near the solution. After a step that
    cut the residual a hundredfold, the next step is a *chord* step, which reuses
    the last LU: ``V + (I - gamma P_pi_old)^{-1} (T(V) - V)``, two triangular
    solves instead of an ``O(S^3)`` factorisation (Shamanskii's variant of
    Newton's method; it contracts at the rate
    ``||(I - gamma P_pi_old)^{-1} gamma (P_pi - P_pi_old)||``, which is tiny
    near the solution). A chord step that does not cut the residual a hundredfold
    is followed by a Newton step, so the iteration is never slower than Newton's
    by more than one cheap step per factorisation. Once the residual is below
    ``tol`` it keeps polishing while each step cuts the residual tenfold (a chord
    step that does not is followed by one Newton step) and returns the iterate
    with the smallest residual; this lands on the float64 rounding floor.
``"newton-only"``
    The same without chord steps: a fresh LU at every step (textbook Newton, for
    comparison and teaching; same answer to the rounding floor, tested).
``"value_iteration"``
    The textbook iteration ``V <- T(V)``, a ``gamma``-contraction. Stopping
    rule: stop at the first iterate with ``||T(V) - V||_inf <= tol``; then
    ``||V - V*||_inf <= tol / (1 - gamma)``. The default iteration cap is the
    number of sweeps the contraction bound needs, ``log(tol/res_0)/log(gamma)``,
    plus 10.

All report the sup-norm Bellman residual ``||T(V) - V||_inf`` of the iterate
they return and raise :class:`~exact_bilevel.core.errors.ConvergenceError` (carrying
the residual reached) when they cannot reach ``tol``.

The default tolerance is ``1e-12 * value_scale(mdp, tau)`` with
``value_scale = max(1, (max|r| + tau log A) / (1 - gamma))``, a bound on
``|V*|``; float64 rounding in ``T`` is about ``1e-16 * value_scale``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _validate
from .errors import ConvergenceError, NumericalError, require_finite
from .linalg import BellmanFactorization, factorize
from .mdp import FiniteMDP
from .soft_bellman import boltzmann, hard_bellman_operator, q_from_v, soft_max

#: Largest value scale :func:`solve_soft` accepts: beyond it ``Q = r + gamma P V`` and the
#: residual arithmetic leave float64's range (1.8e308) or its useful precision.
MAX_VALUE_SCALE = 1e150

#: Relative tolerance of the default stopping rule (times :func:`value_scale`).
DEFAULT_RTOL = 1e-12


@dataclass(frozen=True)
class SoftSolution:
    """Soft-optimal values and policy of a :class:`FiniteMDP` at temperature ``tau``.

    Attributes
    ----------
    q : ndarray, shape (S, A)
        ``Q[s, a] = r[s, a] + gamma sum_s' P[s, a, s'] V[s']``.
    v : ndarray, shape (S,)
        The returned iterate ``V``; ``||T(V) - V||_inf = residual``.
    policy : ndarray, shape (S, A)
        Boltzmann policy ``pi[s, a] = exp((Q[s, a] - T(V)[s]) / tau)``.
    log_policy : ndarray, shape (S, A)
        ``log pi`` computed stably (finite where ``pi`` underflows).
    residual : float
        Sup-norm Bellman residual ``||T(V) - V||_inf`` reached.
    iterations : int
        Index of the returned iterate: Newton and chord steps, or value-iteration sweeps,
        before it (warm start excluded).
    method : str
        ``"newton"``, ``"newton-only"`` or ``"value_iteration"``.
    tau : float
        Temperature.
    tolerance : float
        The residual that was asked for.
    factorization : BellmanFactorization or None
        Newton's last LU of ``I - gamma P_pi``, at the policy ``factorized_policy`` (the
        returned policy, or that of an iterate a few chord or polishing steps before it);
        ``None`` for value iteration. Reused by
        :meth:`~exact_bilevel.core.problem.BilevelProblem.follower_state`.
    factorizations : int
        LU factorisations performed (Newton steps; chord steps reuse the last LU).
    """

    q: np.ndarray
    v: np.ndarray
    policy: np.ndarray
    log_policy: np.ndarray
    residual: float
    iterations: int
    method: str
    tau: float
    tolerance: float
    factorization: BellmanFactorization | None = field(default=None, repr=False,
                                                       compare=False)
    factorized_policy: np.ndarray | None = field(default=None, repr=False, compare=False)
    factorizations: int = field(default=0, compare=False)


def value_scale(mdp: FiniteMDP, tau: float) -> float:
    """``max(1, (max|r| + tau log A) / (1 - gamma))``, a bound on ``|V*|_inf``."""
    rmax = float(np.max(np.abs(mdp.reward))) if mdp.reward.size else 0.0
    return max(1.0, (rmax + tau * math.log(mdp.n_actions)) / (1.0 - mdp.gamma))


def _residual(tv: np.ndarray, v: np.ndarray) -> float:
    return float(abs(tv - v).max())


_EPS = float(np.finfo(np.float64).eps)


def _solution(mdp: FiniteMDP, v: np.ndarray, tau: float, iterations: int, method: str,
              tol: float) -> SoftSolution:
    q = q_from_v(mdp, v)
    b = boltzmann(q, tau)
    return SoftSolution(q=q, v=v, policy=b.policy, log_policy=b.log_policy,
                        residual=_residual(b.v, v), iterations=iterations, method=method,
                        tau=tau, tolerance=tol)


Callback = Callable[[int, float], None]
"""``callback(iteration, residual)``, called once per iteration (e.g. a progress bar)."""


#: Before the tolerance is reached, a chord step (reusing the last LU) follows a step that
#: cut the residual at least this much; otherwise Newton refactorises at the current policy.
CHORD_RATE = 0.01
#: Once the tolerance is reached, polishing goes on while each step cuts the residual at
#: least this much (a chord step whenever an LU exists).
POLISH_RATE = 0.1


def _newton(mdp: FiniteMDP, tau: float, tol: float, max_iter: int, v: np.ndarray,
            warm_start: int, callback: Callback | None,
            warm_lu: tuple[BellmanFactorization, np.ndarray] | None,
            chord_rate: float = CHORD_RATE, polish_rate: float = POLISH_RATE) -> SoftSolution:
    for _ in range(warm_start):
        v = soft_max(q_from_v(mdp, v), tau)
    best: tuple | None = None  # (res, it, q, v, Boltzmann): the best iterate within tol
    fac: BellmanFactorization | None = None
    fac_policy: np.ndarray | None = None
    n_fac = 0
    prev_res = np.inf
    if warm_lu is not None:  # the first step is a chord step with the caller's LU
        fac, fac_policy = warm_lu
    polishing = chord = False
    for it in range(max_iter + 1):
        q = q_from_v(mdp, v)
        b = boltzmann(q, tau)
        res = _residual(b.v, v)
        if callback is not None:
            callback(it, res)
        if res <= tol:
            # Polishing: keep stepping while each step cuts the residual tenfold (chord
            # steps, nearly free); this usually lands on the rounding floor. The iterate
            # with the smallest residual is returned.
            if best is None or res < best[0]:
                best = (res, it, q, v, b)
            at_floor = res <= 4 * _EPS * float(abs(v).max())  # cannot fall tenfold
            stalled = polishing and res > polish_rate * prev_res
            if at_floor or it == max_iter or (stalled and not chord):
                break  # (a stalled chord step is followed by one Newton step)
            polishing = True
        elif polishing or it == max_iter:  # a polishing step made it worse: the best
            break
        chord = fac is not None and res <= (polish_rate if polishing else chord_rate) * prev_res
        prev_res = res
        if chord:
            # Chord step: Newton's step with the Jacobian I - gamma P_pi of an earlier
            # policy, ``V + (I - gamma P_pi_old)^{-1} (T(V) - V)``: two triangular solves
            # instead of an O(S^3) LU. It converges linearly at the rate
            # ||(I - gamma P_pi_old)^{-1} gamma (P_pi - P_pi_old)||, tiny near the solution;
            # a step that does not cut the residual by CHORD_RATE is followed by Newton.
            v_new = v + fac.solve(b.v - v)  # type: ignore[union-attr]
        else:
            # Newton step = exact soft evaluation of the current Boltzmann policy. In
            # exact arithmetic V increases monotonically (soft policy improvement), but
            # the residual need not decrease at every step far from the solution.
            rhs = np.sum(b.policy * (mdp.reward - tau * b.log_policy), axis=-1)
            fac, fac_policy = factorize(mdp.P_pi(b.policy), mdp.gamma), b.policy
            n_fac += 1
            v_new = fac.solve(rhs)
        if not polishing and float(abs(v_new - v).max()) <= 8 * _EPS * max(
                float(abs(v_new).max()), 1.0):
            if chord:  # let Newton itself decide
                prev_res = 0.0
                continue
            # V no longer moves but the residual is above tol: the rounding floor.
            raise ConvergenceError("newton", res, tol, it, "iterates stopped moving (rounding "
                                   "floor above the tolerance)")
        v = v_new
    if best is None:
        raise ConvergenceError("newton", res, tol, max_iter, "iteration limit reached")
    res, it, q, v, b = best
    return SoftSolution(q=q, v=v, policy=b.policy, log_policy=b.log_policy, residual=res,
                        iterations=it, method="newton", tau=tau, tolerance=tol,
                        factorization=fac, factorized_policy=fac_policy, factorizations=n_fac)


def _newton_only(mdp: FiniteMDP, tau: float, tol: float, max_iter: int, v: np.ndarray,
                 warm_start: int, callback: Callback | None,
                 warm_lu: tuple[BellmanFactorization, np.ndarray] | None) -> SoftSolution:
    """Textbook Newton: a fresh LU at every step, no chord steps (method ``"newton-only"``)."""
    sol = _newton(mdp, tau, tol, max_iter, v, warm_start, callback, None, 0.0, 0.0)
    return dataclasses.replace(sol, method="newton-only")


def _value_iteration(mdp: FiniteMDP, tau: float, tol: float, max_iter: int | None,
                     v: np.ndarray, warm_start: int, callback: Callback | None,
                     warm_lu: tuple[BellmanFactorization, np.ndarray] | None) -> SoftSolution:
    del warm_start, warm_lu  # value iteration is its own warm start and needs no LU
    tv = boltzmann(q_from_v(mdp, v), tau).v
    res = _residual(tv, v)
    if max_iter is None:
        if res <= tol or mdp.gamma == 0.0:
            max_iter = 10
        else:
            max_iter = math.ceil(math.log(tol / res) / math.log(mdp.gamma)) + 10
    for it in range(max_iter + 1):
        if callback is not None:
            callback(it, res)
        if res <= tol:
            return _solution(mdp, v, tau, it, "value_iteration", tol)
        if it == max_iter:
            break
        v = tv
        tv = boltzmann(q_from_v(mdp, v), tau).v
        res = _residual(tv, v)
    raise ConvergenceError("value_iteration", res, tol, max_iter, "iteration limit reached")


_METHODS: dict[str, Callable[..., SoftSolution]] = {
    "newton": _newton,
    "newton-only": _newton_only,
    "value_iteration": _value_iteration,
}
_DEFAULT_MAX_ITER = {"newton": 100, "newton-only": 100, "value_iteration": None}


def solve_soft(mdp: FiniteMDP, tau: float, method: str = "newton", *, tol: float | None = None,
               max_iter: int | None = None, v0: np.ndarray | None = None,
               warm_start: int = 3, callback: Callback | None = None,
               warm_lu: tuple[BellmanFactorization, np.ndarray] | None = None) -> SoftSolution:
    r"""Solve the soft Bellman equation ``V = T(V)`` of ``mdp`` at temperature ``tau``.

    Parameters
    ----------
    mdp : FiniteMDP
        ``P[s, a, s']``, ``r[s, a]``, ``gamma``.
    tau : float
        Temperature ``> 0``. Stable from 1e-6 to 1e3 (max-shifted log-sum-exp).
    method : {"newton", "newton-only", "value_iteration"}
        See the module docstring.
    tol : float, optional
        Sup-norm Bellman residual to reach; default ``1e-12 * value_scale(mdp, tau)``.
    max_iter : int, optional
        Newton: 100. Value iteration: the contraction bound plus 10.
    v0 : ndarray, shape (S,), optional
        Initial guess (warm start), default zeros.
    warm_start : int
        Value-iteration sweeps before Newton (ignored by value iteration).
    callback : callable, optional
        ``callback(iteration, residual)`` once per iteration (progress reporting).
    warm_lu : (BellmanFactorization, ndarray of shape (S, A)), optional
        An LU of ``I - gamma P_pi0`` and its policy ``pi0`` — e.g. ``(sol.factorization,
        sol.factorized_policy)`` of a solve at a nearby leader parameter. Newton's first
        step is then a chord step with it (no factorisation when it contracts; a
        Newton step follows otherwise). Ignored by value iteration.

    Returns
    -------
    SoftSolution
        ``q[s, a]``, ``v[s]``, ``policy[s, a]``, residual, iterations, method.

    Raises
    ------
    ConvergenceError
        If the residual ``tol`` is not reached; ``.residual`` is what was reached.
    NumericalError
        If the value scale ``(max|r| + tau log A) / (1 - gamma)`` exceeds
        :data:`MAX_VALUE_SCALE` (float64 arithmetic on such values overflows) or a
        solution entry is not finite.
    ValueError
        For a bad ``tau``, ``method``, ``tol``, or ``v0``.
    """
    if method not in _METHODS:
        raise ValueError(f"method = {method!r}: must be one of {sorted(_METHODS)}")
    tau = _validate.temperature("tau", tau)
    scale = value_scale(mdp, tau)
    if not scale <= MAX_VALUE_SCALE:
        raise NumericalError(f"value scale (max|r| + tau log A) / (1 - gamma) = {scale:.3g} "
                             f"exceeds {MAX_VALUE_SCALE:g}: the soft Bellman iteration would "
                             "overflow float64; rescale the rewards or the temperature")
    if tol is None:
        tol = DEFAULT_RTOL * scale
    elif not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol = {tol!r}: must be a finite number > 0")
    if max_iter is None:
        max_iter = _DEFAULT_MAX_ITER[method]
    elif max_iter < 0:
        raise ValueError(f"max_iter = {max_iter}: must be >= 0")
    if v0 is None:
        v = np.zeros(mdp.n_states, dtype=mdp.dtype)
    elif np.iscomplexobj(v0):
        v = np.array(v0)
    else:
        v = _validate.real_array("v0", v0, shape=(mdp.n_states,))
    if warm_lu is not None:
        if not (isinstance(warm_lu, tuple) and len(warm_lu) == 2
                and hasattr(warm_lu[0], "solve")):
            raise ValueError("warm_lu: must be a pair (factorization, policy), e.g. "
                             "(sol.factorization, sol.factorized_policy)")
        n_lu = getattr(warm_lu[0], "n_states", mdp.n_states)
        if n_lu != mdp.n_states:
            raise ValueError(f"warm_lu[0] (the factorization): is of a {n_lu}-state matrix, "
                             f"the MDP has {mdp.n_states} states")
        pi0 = np.asarray(warm_lu[1])
        if pi0.shape != (mdp.n_states, mdp.n_actions):
            raise ValueError(f"warm_lu[1] (the policy): must have shape ({mdp.n_states}, "
                             f"{mdp.n_actions}), got {pi0.shape}")
        warm_lu = (warm_lu[0], pi0)
    sol = _METHODS[method](mdp, tau, float(tol), max_iter, v, warm_start, callback, warm_lu)
    for name in ("v", "q", "policy"):
        require_finite(name, getattr(sol, name), f"the {sol.method} solve")
    return sol


@dataclass(frozen=True)
class HardSolution:
    """Optimal values of the unregularised MDP (the ``tau -> 0`` limit)."""

    q: np.ndarray
    v: np.ndarray
    greedy_policy: np.ndarray
    residual: float
    iterations: int


def solve_hard(mdp: FiniteMDP, *, max_iter: int = 1000) -> HardSolution:
    """Optimal ``V*[s] = max_a Q*(s, a)`` of the unregularised MDP by policy iteration.

    Policy iteration terminates in finitely many steps with the exact optimum
    (up to the linear-solve rounding); ties are broken towards the lowest
    action index. ``residual = ||T_0(V) - V||_inf`` for the hard operator ``T_0``.
    """
    S, A = mdp.n_states, mdp.n_actions
    actions = np.zeros(S, dtype=int)
    for it in range(1, max_iter + 1):
        pi = np.zeros((S, A))
        pi[np.arange(S), actions] = 1.0
        rhs = np.sum(pi * mdp.reward, axis=-1)
        v = factorize(mdp.P_pi(pi), mdp.gamma).solve(rhs)
        q = q_from_v(mdp, v)
        best = q.max(axis=-1)
        # switch only on strict improvement beyond rounding, so the loop cannot cycle
        improve = best > q[np.arange(S), actions] + 1e-12 * max(1.0, float(np.abs(v).max()))
        if not improve.any():
            res = _residual(hard_bellman_operator(mdp, v), v)
            return HardSolution(q=q, v=v, greedy_policy=pi, residual=res, iterations=it)
        actions = np.where(improve, np.argmax(q, axis=-1), actions)
    raise ConvergenceError("policy_iteration", math.nan, 0.0, max_iter, "policy kept changing")
