r"""Many soft follower MDPs of one shape solved together (batched soft Newton).

The members ``m < R`` of a stack ``P[R, S, A, S]``, ``r[R, S, A]`` (or one shared
``P[1, S, A, S]``) share ``gamma`` and ``tau``; each is solved for its own soft-optimal
``V_m = T_m(V_m)`` (:mod:`.solve`) by Newton's method on ``V - T(V) = 0``, i.e. soft
policy iteration, every member's step in the same numpy call:

.. math:: V_m \leftarrow (I - \gamma P_{m,\pi_m})^{-1} \big(r_{m,\pi_m} + \tau H(\pi_m)\big),
          \qquad \pi_m = \mathrm{softmax}\big((r_m + \gamma P_m V_m) / \tau\big),

with one linear solve per member and step (:func:`~.linalg.solve_dominant_stack_last`:
Gaussian elimination across the stack, never an inverse) and the max-shifted
log-sum-exp of :func:`~.soft_bellman.boltzmann` (:func:`boltzmann_batch`). The stopping
rule is :func:`~.solve.solve_soft`'s (method ``"newton-only"``) applied to each member on
its own: member ``m`` stops at its first iterate with ``||T_m(V) - V||_inf <= tol_m``, the
default ``tol_m = 1e-12 * value_scale_m`` of :func:`~.solve.solve_soft`, after polishing
while each step cuts its residual tenfold, and returns its iterate of smallest
residual. Finished members leave the stack and every product is taken member by member,
so with per-member ``P`` a member's numbers do not depend on the other members (a member
solved alone gives the same floats: tested). A shared ``P[1]`` is applied to all members
in one BLAS matrix product (much faster; its last bit may depend on the batch).

The iteration is worked with the stack axis last (``Q[S, A, n]``, ``V[S, n]`` for the
``n`` members still active): the maxima and sums over actions and states are a few
elementwise operations on contiguous rows of length ``n`` (a numpy reduction over a short
inner axis costs ~70 ns per row), and the matrices ``I - gamma P_pi`` are written
straight into the elimination's layout. Every entry gets the floats of the member-first
formulas (:func:`q_from_v_batch`, :func:`boltzmann_batch`, :func:`policy_matrices`,
:func:`~.linalg.solve_dominant_stack`): the same numbers as before the layout change,
bit for bit at ``S <= 32``.

Newton's steps are not chord steps here (``numpy`` keeps no LU between calls). Measured
(``S = 10, A = 4``, one thread, CPU time, best of 15): the zeroth-order estimator's 8000
perturbed followers from their first-order values in 15-18 ms on a loaded 2-core VM,
1.7-1.8x faster than the member-first layout in the same process (all 8000 members: 3
evaluations of ``T`` and 2 Newton steps; the 14% not yet at the rounding floor then
polish with a third step), against about 150 us for one :func:`~.solve.solve_soft` in
Python. It applies to MDPs held dense (:func:`applies`: ``S*A*S`` at most
:data:`~.mdp.AUTO_SPARSE_ENTRIES` and ``S`` below
:data:`~.linalg.SPARSE_LU_MIN_STATES`); larger or sparse MDPs are solved one by one
with :func:`~.solve.solve_soft` (its sparse LU and chord steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _validate
from ._budget import check_allocation
from .errors import ConvergenceError, NumericalError, require_finite
from .linalg import SPARSE_LU_MIN_STATES, solve_dominant_stack, solve_dominant_stack_last
from .mdp import AUTO_SPARSE_ENTRIES
from .soft_bellman import Boltzmann
from .solve import DEFAULT_RTOL, MAX_VALUE_SCALE, POLISH_RATE, SoftSolution

_EPS = float(np.finfo(np.float64).eps)

#: Newton steps before a member that has not reached its tolerance is an error
#: (:func:`~.solve.solve_soft`'s default for Newton).
DEFAULT_MAX_ITER = 100


@dataclass(frozen=True)
class SoftSolutionBatch:
    """Soft-optimal values and policies of ``R`` MDPs (member ``m`` is row ``m``).

    Attributes
    ----------
    q : ndarray, shape (R, S, A)
        ``Q_m = r_m + gamma P_m V_m``.
    v : ndarray, shape (R, S)
        Each member's returned iterate.
    policy, log_policy : ndarray, shape (R, S, A)
        Boltzmann policies ``pi_m`` and ``log pi_m`` (finite where ``pi`` underflows).
    residual : ndarray, shape (R,)
        ``||T_m(V_m) - V_m||_inf``.
    iterations : ndarray of int, shape (R,)
        Newton steps before each member's returned iterate (warm start excluded).
    tolerance : ndarray, shape (R,)
        The residual asked of each member.
    tau, gamma : float
    """

    q: np.ndarray
    v: np.ndarray
    policy: np.ndarray
    log_policy: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    tolerance: np.ndarray
    tau: float
    gamma: float

    def __len__(self) -> int:
        return self.v.shape[0]

    def member(self, m: int) -> SoftSolution:
        """Member ``m`` as a :class:`~.solve.SoftSolution` (method ``"batched-newton"``; no
        factorisation attached)."""
        return SoftSolution(q=self.q[m], v=self.v[m], policy=self.policy[m],
                            log_policy=self.log_policy[m], residual=float(self.residual[m]),
                            iterations=int(self.iterations[m]), method="batched-newton",
                            tau=self.tau, tolerance=float(self.tolerance[m]))


def applies(n_states: int, n_actions: int) -> bool:
    """Whether MDPs of this size are solved batched: they are held dense (``S*A*S <=``
    :data:`~.mdp.AUTO_SPARSE_ENTRIES`) and factorised by a dense LU (``S <``
    :data:`~.linalg.SPARSE_LU_MIN_STATES`). Otherwise solve them one by one with
    :func:`~.solve.solve_soft`."""
    return n_states * n_actions * n_states <= AUTO_SPARSE_ENTRIES and \
        n_states < SPARSE_LU_MIN_STATES


def value_scales(reward: np.ndarray, gamma: float, tau: float) -> np.ndarray:
    """Per member ``max(1, (max|r_m| + tau log A) / (1 - gamma))`` (:func:`~.solve.value_scale`),
    ``reward[R, S, A]`` -> ``[R]``."""
    R, S, A = reward.shape
    # max |r| over the pairs of each member as elementwise maxima of S A contiguous rows
    # (a reduction over a short inner axis costs ~70 ns per member): the same maxima
    r_pairs = reward.reshape(R, S * A).T.copy()  # a new C-ordered array, overwritten
    rmax = np.abs(r_pairs, out=r_pairs).max(axis=0) if S * A else np.zeros(R)
    return np.maximum(1.0, (rmax + tau * math.log(A)) / (1.0 - gamma))


def q_from_v_batch(P: np.ndarray, reward: np.ndarray, gamma: float,
                   v: np.ndarray) -> np.ndarray:
    """``Q[m, s, a] = r[m, s, a] + gamma sum_s' P[m, s, a, s'] V[m, s']``; ``P[R or 1, S, A,
    S]``, ``reward[R, S, A]``, ``v[R, S]`` -> ``[R, S, A]``. One matrix-vector product per
    member (a member's floats do not depend on the batch); with a shared ``P[1]``, one
    matrix product ``V P^T`` for all members (45x faster at ``R = 8000``; its last bit
    may depend on the batch's BLAS blocking)."""
    R, S, A = reward.shape
    if P.shape[0] == 1:
        Pv = v @ P.reshape(S * A, S).T
    else:
        Pv = np.matmul(P.reshape(R, S * A, S), v[:, :, None])
    return reward + gamma * Pv.reshape(R, S, A)


def boltzmann_batch(q: np.ndarray, tau: float, axis: int = -1) -> Boltzmann:
    """:func:`~.soft_bellman.boltzmann` of ``q`` over its action axis ``axis`` (``q[R, S,
    A]`` by default; the batched Newton solver passes ``q[S, A, R]``, ``axis=1``), with the
    same max-shifted formulas: ``v = m + tau log sum_a exp((q - m) / tau)``, ``m = max_a
    q``; ``v`` has the action axis removed, ``policy`` and ``log_policy`` the shape of
    ``q``. The maximum and the sum over the short action axis are taken as ``A - 1``
    elementwise operations on slices (a numpy reduction over a short inner axis costs
    about 70 ns per row: measured 1.8 ms instead of 3.0 ms at ``R = 1000, S = 10, A =
    4``), added in action order; every entry's floats are those of
    :func:`~.soft_bellman.boltzmann` whatever the layout."""
    ax = axis % q.ndim
    A = q.shape[ax]

    def at(arr: np.ndarray, a: int) -> np.ndarray:
        return arr[(slice(None),) * ax + (a,)]

    m = at(q, 0).copy()
    for a in range(1, A):
        np.maximum(m, at(q, a), out=m)
    z = q - np.expand_dims(m, ax)
    z /= tau
    e = np.exp(z)
    total = at(e, 0).copy()
    for a in range(1, A):
        total += at(e, a)
    log_total = np.log(total)
    e /= np.expand_dims(total, ax)
    z -= np.expand_dims(log_total, ax)
    return Boltzmann(v=m + tau * log_total, policy=e, log_policy=z)


def policy_matrices(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """``P_pi[m, s, s'] = sum_a pi[m, s, a] P[m, s, a, s']``; ``P[R or 1, S, A, S]``,
    ``pi[R, S, A]`` -> ``[R, S, S]``: per member and state (batch-independent floats), or,
    with a shared ``P[1]``, one ``[R, A] x [A, S]`` product per state."""
    if P.shape[0] == 1:
        return np.ascontiguousarray(np.matmul(pi.transpose(1, 0, 2), P[0]).transpose(1, 0, 2))
    return np.matmul(pi[:, :, None, :], P)[:, :, 0, :]


def bellman_matrices(P_pi: np.ndarray, gamma: float) -> np.ndarray:
    """``I - gamma P_pi`` for each member, ``[R, S, S]`` (a new array)."""
    M = P_pi * -gamma
    S = M.shape[-1]
    M.reshape(M.shape[0], S * S)[:, ::S + 1] += 1.0
    return M


def solve_members(M: np.ndarray, b: np.ndarray, transpose: bool = False) -> np.ndarray:
    """``x[m] = M[m]^{-1} b[m]`` (``M[m]^{-T}`` when ``transpose``): ``M[R, S, S]``,
    ``b[R, S]`` -> ``[R, S]``, for the diagonally dominant ``M = I - gamma P_pi``
    (:func:`~.linalg.solve_dominant_stack`: elimination across the stack for small ``S``,
    LAPACK ``gesv`` per member otherwise), no inverse formed."""
    return solve_dominant_stack(M, b, transpose=transpose)


def _check_stack(P: object, reward: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``P[R or 1, S, A, S]`` (finite, ``>= 0``, rows summing to 1) and
    ``reward[R, S, A]`` (finite), naming the member, index and rule. (Whole-array tests
    first; the index-naming checks of :mod:`._validate` run only on a failure.)"""
    r = _validate.real_array("reward", reward, ndim=3)
    R, S, A = r.shape
    if R < 1 or S < 1 or A < 1:
        raise ValueError(f"reward: need at least one member, state and action, got shape "
                         f"{r.shape}")
    Pa = np.asarray(P)
    if Pa.ndim != 4 or Pa.shape[0] not in (1, R) or Pa.shape[1:] != (S, A, S):
        raise ValueError(f"transitions: shape must be ({R} or 1, {S}, {A}, {S}) to match "
                         f"reward {r.shape}, got {Pa.shape}")
    if Pa.dtype != np.float64 or not Pa.flags.c_contiguous:
        Pa = _validate.real_array("transitions", Pa, ndim=4)
    sums = Pa.reshape(-1, S) @ np.ones(S)
    if not (np.isfinite(Pa.max()) and Pa.min() >= 0.0
            and np.abs(sums - 1.0).max() <= _validate.PROBABILITY_SUM_TOL):
        _validate.real_array("transitions", Pa)  # names a non-finite entry
        _validate.stochastic_rows("transitions", Pa)
    return Pa, r


def _warm_start_value(v0: object, R: int, S: int) -> np.ndarray:
    if v0 is None:
        return np.zeros((R, S))
    v = _validate.real_array("v0", v0)
    if v.shape == (S,):
        return np.broadcast_to(v, (R, S)).copy()
    if v.shape != (R, S):
        raise ValueError(f"v0: shape must be ({S},) or ({R}, {S}), got {v.shape}")
    return v


def _fail(reason: str, members: np.ndarray, res: np.ndarray, tol: np.ndarray, it: int,
          R: int) -> ConvergenceError:
    """The error for the failing member with the largest residual-to-tolerance ratio."""
    k = int(np.argmax(res / tol))
    err = ConvergenceError(f"batched newton (member {int(members[k])} of {R})", res[k],
                           tol[k], it, reason)
    err.member = int(members[k])  # type: ignore[attr-defined]
    return err


def solve_soft_batch(P: object, reward: object, gamma: float, tau: float, *,
                     tol: float | np.ndarray | None = None,
                     max_iter: int = DEFAULT_MAX_ITER, v0: object | None = None,
                     warm_start: int = 3) -> SoftSolutionBatch:
    r"""Solve ``V_m = T_m(V_m)`` for every member of a stack of MDPs (module docstring).

    Parameters
    ----------
    P : array_like, shape (R, S, A, S) or (1, S, A, S)
        ``P[m, s, a, s']``; a leading axis of 1 is shared by every member. Rows must be
        probability vectors (``>= 0``, summing to 1 within 1e-10).
    reward : array_like, shape (R, S, A)
        ``r[m, s, a]``, finite.
    gamma : float
        Discount, ``0 <= gamma < 1``.
    tau : float
        Temperature ``> 0``.
    tol : float or ndarray of shape (R,), optional
        Residual to reach; default ``1e-12 * value_scale_m`` per member (as
        :func:`~.solve.solve_soft`).
    max_iter : int
        Newton steps allowed (default 100).
    v0 : array_like, shape (S,) or (R, S), optional
        Initial values (default zeros), e.g. the solution at a nearby leader parameter.
    warm_start : int
        Value-iteration sweeps before Newton (default 3, as :func:`~.solve.solve_soft`;
        0 from a good ``v0``).

    Returns
    -------
    SoftSolutionBatch

    Raises
    ------
    ValueError
        Mismatched or bad shapes, non-finite entries, rows that are not probability
        vectors, bad ``gamma``, ``tau``, ``tol``, ``max_iter`` or ``v0``.
    ConvergenceError
        A member that does not reach its tolerance: the error names the member (the one
        with the largest residual-to-tolerance ratio among those failing at that step,
        also in ``.member``) and its residual.
    NumericalError
        A member's value scale exceeds :data:`~.solve.MAX_VALUE_SCALE`, or a non-finite
        result.
    """
    Pa, r = _check_stack(P, reward)
    R, S, A = r.shape
    gamma = _validate.discount("gamma", gamma)
    tau = _validate.temperature("tau", tau)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) \
            or max_iter < 0:
        raise ValueError(f"max_iter = {max_iter!r}: must be an integer >= 0")
    if isinstance(warm_start, bool) or not isinstance(warm_start, (int, np.integer)) \
            or warm_start < 0:
        raise ValueError(f"warm_start = {warm_start!r}: must be an integer >= 0")
    scale = value_scales(r, gamma, tau)
    if not np.all(scale <= MAX_VALUE_SCALE):
        m = int(np.argmax(scale))
        raise NumericalError(f"member {m}: value scale (max|r| + tau log A) / (1 - gamma) = "
                             f"{scale[m]:.3g} exceeds {MAX_VALUE_SCALE:g}: the soft Bellman "
                             "iteration would overflow float64")
    if tol is None:
        tols = DEFAULT_RTOL * scale
    else:
        tols = np.broadcast_to(np.asarray(tol, dtype=float), (R,)).copy() \
            if np.ndim(tol) in (0, 1) and np.size(tol) in (1, R) else None
        if tols is None or not np.all(np.isfinite(tols) & (tols > 0)):
            raise ValueError(f"tol: must be a finite number > 0 or {R} of them")
    v = _warm_start_value(v0, R, S)
    check_allocation(f"batched solve of {R} MDPs: working copy of P [R, S, A, S]",
                     (Pa.shape[0], S, A, S))
    check_allocation(f"batched solve of {R} MDPs: Newton matrices [R, S, S]", (R, S, S))
    return _newton_batch(Pa, r, gamma, tau, tols, max_iter, v, warm_start)


def _q_stack_last(P: np.ndarray, r_t: np.ndarray, gamma: float, v_t: np.ndarray,
                  shared: bool) -> np.ndarray:
    """``Q`` stack-last, ``[S, A, n]``, from ``r_t[S, A, n]`` and ``v_t[S, n]``: with a shared
    ``P[1]`` one matrix product ``P[S A, S] V`` for all members; otherwise (``P[n]``, and
    ``P[1]`` of a single member) the products of :func:`q_from_v_batch` member by member
    (its floats)."""
    S, A, n = r_t.shape
    if shared:
        q = (P.reshape(S * A, S) @ v_t).reshape(S, A, n)
    else:
        Pv = np.matmul(P.reshape(n, S * A, S), np.ascontiguousarray(v_t.T)[:, :, None])
        q = np.ascontiguousarray(Pv.reshape(n, S, A).transpose(1, 2, 0))
    q *= gamma
    q += r_t
    return q


def _bellman_system(P: np.ndarray, pi_t: np.ndarray, rhs: np.ndarray, gamma: float,
                    shared: bool) -> np.ndarray:
    """``[I - gamma P_pi | rhs]`` stack-last (``aug[s, s', m]``, shape ``(S, S + 1, n)``,
    for :func:`~.linalg.solve_dominant_stack_last`) from ``pi_t[S, A, n]`` and ``rhs[S, n]``:
    ``P_pi`` by one ``[S', A] x [A, n]`` product per state for a shared ``P[1]``, else by
    :func:`policy_matrices` member by member (its floats)."""
    S, n = rhs.shape
    aug = np.empty((S, S + 1, n))
    if shared:
        P_pi = np.matmul(P[0].transpose(0, 2, 1), pi_t)  # [S, S', n]
    else:
        P_pi = policy_matrices(P, np.ascontiguousarray(pi_t.transpose(2, 0, 1))
                               ).transpose(1, 2, 0)
    np.multiply(P_pi, -gamma, out=aug[:, :S])
    for s in range(S):
        aug[s, s] += 1.0
    aug[:, S] = rhs
    return aug


def _newton_batch(P: np.ndarray, r: np.ndarray, gamma: float, tau: float, tols: np.ndarray,
                  max_iter: int, v: np.ndarray, warm_start: int) -> SoftSolutionBatch:
    """The Newton iteration of :func:`solve_soft_batch`, worked stack-last (``q[S, A, n]``,
    ``v[S, n]`` for the ``n`` active members) so that every reduction over states or actions
    is a few elementwise operations on contiguous rows and the linear systems go to
    :func:`~.linalg.solve_dominant_stack_last` without transposes."""
    R, S, A = r.shape
    # one P for all members: matrix products over the stack (a single member, alone,
    # takes the member-by-member products, so that it gets its floats in any stack)
    shared = P.shape[0] == 1 and R > 1
    for _ in range(warm_start):
        v = boltzmann_batch(q_from_v_batch(P, r, gamma, v), tau).v
    out_q, out_pi, out_logpi = (np.empty((R, S, A)) for _ in range(3))
    out_v = np.empty((R, S))
    best = np.full(R, np.inf)
    best_it = np.zeros(R, dtype=int)
    # the active members: their index, data and Newton state, stack axis last
    idx = np.arange(R)
    Pa, r_t, tol = P, np.ascontiguousarray(r.transpose(1, 2, 0)), tols
    v_t = np.ascontiguousarray(v.T)
    polishing = np.zeros(R, dtype=bool)
    prev = np.full(R, np.inf)
    for it in range(max_iter + 1):
        q = _q_stack_last(Pa, r_t, gamma, v_t, shared)
        b = boltzmann_batch(q, tau, axis=1)
        res = np.abs(b.v - v_t).max(axis=0)
        within = res <= tol
        better = within & (res < best[idx])
        n_better = int(np.count_nonzero(better))
        if n_better:
            k = idx[better]
            best[k], best_it[k] = res[better], it
            # the whole stack active and most of it better: one masked copy (its cost is
            # the whole stack's); otherwise the few better members by index
            masked = idx.size == R and 4 * n_better >= R
            for out, a in ((out_q, q), (out_v, v_t), (out_pi, b.policy),
                           (out_logpi, b.log_policy)):
                if masked:
                    np.copyto(out, np.moveaxis(a, -1, 0),
                              where=better.reshape((R,) + (1,) * (out.ndim - 1)))
                else:
                    out[k] = np.moveaxis(a, -1, 0)[better]
        at_floor = res <= 4 * _EPS * np.abs(v_t).max(axis=0)
        stalled = polishing & (res > POLISH_RATE * prev)
        # done: within tolerance and no tenfold gain to expect, or a polishing step that
        # left the tolerance (the best iterate stands)
        done = (within & (at_floor | stalled | (it == max_iter))) | (polishing & ~within)
        failed = ~within & ~polishing & (it == max_iter)
        if failed.any():
            raise _fail("iteration limit reached", idx[failed], res[failed], tol[failed],
                        it, R)
        polishing = polishing | within
        keep = ~done
        pi_t, logpi_t = b.policy, b.log_policy
        if not keep.all():
            idx, tol, polishing, res = idx[keep], tol[keep], polishing[keep], res[keep]
            v_t, r_t = v_t[:, keep], r_t[:, :, keep]
            pi_t, logpi_t = pi_t[:, :, keep], logpi_t[:, :, keep]
            if P.shape[0] != 1:
                Pa = Pa[keep]
            if idx.size == 0:
                break
        prev = res
        # Newton step = exact soft evaluation of the current Boltzmann policies:
        # (I - gamma P_pi) V = sum_a pi (r - tau log pi)
        g = logpi_t * -tau
        g += r_t
        g *= pi_t
        rhs = g[:, 0].copy()
        for a in range(1, A):
            rhs += g[:, a]
        v_new = solve_dominant_stack_last(_bellman_system(Pa, pi_t, rhs, gamma, shared))[:, 0]
        frozen = ~polishing & (np.abs(v_new - v_t).max(axis=0)
                               <= 8 * _EPS * np.maximum(np.abs(v_new).max(axis=0), 1.0))
        if frozen.any():
            raise _fail("iterates stopped moving (rounding floor above the tolerance)",
                        idx[frozen], res[frozen], tol[frozen], it, R)
        v_t = v_new
    for name, arr in (("v", out_v), ("q", out_q), ("policy", out_pi)):
        require_finite(name, arr, "the batched Newton solve")
    return SoftSolutionBatch(q=out_q, v=out_v, policy=out_pi, log_policy=out_logpi,
                             residual=best, iterations=best_it, tolerance=tols, tau=tau,
                             gamma=gamma)
