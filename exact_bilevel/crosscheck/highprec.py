r"""High-precision (mpmath) route: soft solve, policy evaluation and hypergradient.

The same mathematics as the float64 code, evaluated in ``mpmath`` arithmetic at
``dps`` decimal digits (default 50) on numpy *object* arrays of ``mpf``:
Newton / soft policy iteration for the follower (warm-started from the float64
solution, then quadratic convergence to ``10^(8-dps)`` relative residual), LU
solves with ``I - gamma P_pi`` (mpmath ``LU_decomp``), and the *forward-mode*
hypergradient (so it is also independent of the float64 adjoint).

Cost grows like ``S^3`` mpmath operations per solve; intended for small problems
(``S*A`` up to ~50 in the tests; FourRooms' 104 states take a few seconds).

Supported parameterisations: :class:`~exact_bilevel.core.parameterizations.FixedReward`,
:class:`~exact_bilevel.core.parameterizations.AffineReward`,
:class:`~exact_bilevel.core.parameterizations.FixedTransitions`,
:class:`~exact_bilevel.core.parameterizations.SoftmaxTransitions`; objectives:
unregularised :class:`~exact_bilevel.core.objectives.LeaderReturn` and
:class:`~exact_bilevel.core.objectives.GeneralObjective` whose callables use only
numpy arithmetic (they then work on object arrays).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from mpmath import mp

from ..core.errors import ConvergenceError
from ..core.objectives import GeneralObjective, LeaderReturn
from ..core.parameterizations import (
    AffineReward,
    FixedReward,
    FixedTransitions,
    SoftmaxTransitions,
)
from ..core.problem import BilevelProblem

_exp = np.frompyfunc(mp.exp, 1, 1)
_log = np.frompyfunc(mp.log, 1, 1)
_mpf = np.frompyfunc(mp.mpf, 1, 1)


def to_mp(a: object) -> np.ndarray:
    """float64 (or nested list) -> object array of ``mpf`` (exact binary conversion)."""
    arr = np.asarray(a)
    if arr.dtype == object:
        return _mpf(arr)
    return _mpf(arr.astype(np.float64)).astype(object)


def to_float(a: np.ndarray) -> np.ndarray:
    """Object array of ``mpf`` -> float64 (rounded)."""
    return np.asarray(a, dtype=object).astype(np.float64)


class MPFactor:
    """LU factorisations of ``M = I - gamma P_pi`` and of ``M^T`` in mpmath."""

    def __init__(self, P_pi: np.ndarray, gamma: object) -> None:
        S = P_pi.shape[0]
        self.gamma, self.n_states = gamma, S
        self._M = np.eye(S, dtype=object) * mp.mpf(1) - gamma * P_pi
        self._lu = mp.LU_decomp(mp.matrix(self._M.tolist()))
        self._luT: tuple | None = None  # factorised on first use

    @staticmethod
    def _solve(lu: tuple, b: np.ndarray) -> np.ndarray:
        A, p = lu
        cols = b.reshape(b.shape[0], -1)
        out = np.empty(cols.shape, dtype=object)
        for j in range(cols.shape[1]):
            y = mp.L_solve(A, mp.matrix(list(cols[:, j])), p)
            xj = mp.U_solve(A, y)
            out[:, j] = [xj[i] for i in range(cols.shape[0])]
        return out.reshape(b.shape)

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self._solve(self._lu, b)

    def solve_transpose(self, b: np.ndarray) -> np.ndarray:
        if self._luT is None:
            self._luT = mp.LU_decomp(mp.matrix(self._M.T.tolist()))
        return self._solve(self._luT, b)


def boltzmann(q: np.ndarray, tau: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max-shifted soft maximum ``v[s]``, policy ``pi[s, a]`` and ``log pi`` in mpmath."""
    m = np.array([max(row) for row in q], dtype=object)[:, None]
    z = (q - m) / tau
    e = _exp(z)
    total = e.sum(axis=-1, keepdims=True)
    log_total = _log(total)
    return (m + tau * log_total)[:, 0], e / total, z - log_total


@dataclass(frozen=True)
class MPSoftSolution:
    q: np.ndarray
    v: np.ndarray
    policy: np.ndarray
    residual: object
    iterations: int


def soft_solve(P: np.ndarray, r: np.ndarray, gamma: object, tau: object, *,
               v0: np.ndarray | None = None, max_iter: int = 60) -> MPSoftSolution:
    """Soft policy iteration in the current mpmath precision.

    ``P[s, a, s']``, ``r[s, a]`` object arrays; stops at
    ``||T(V) - V||_inf <= 10^(8 - dps) * max(1, |V|_inf)``.
    """
    S, A, _ = P.shape
    P2 = P.reshape(S * A, S)
    v = np.array([mp.mpf(0)] * S, dtype=object) if v0 is None else v0
    tol = mp.mpf(10) ** (8 - mp.dps)
    res = mp.inf
    for it in range(max_iter + 1):
        q = r + gamma * (P2 @ v).reshape(S, A)
        tv, pi, logpi = boltzmann(q, tau)
        res = max(abs(t - u) for t, u in zip(tv, v, strict=True))
        if res <= tol * max(1, max(abs(u) for u in v)):
            return MPSoftSolution(q=q, v=v, policy=pi, residual=res, iterations=it)
        rhs = (pi * (r - tau * logpi)).sum(axis=-1)
        P_pi = np.einsum("sa,sat->st", pi, P)
        v = MPFactor(P_pi, gamma).solve(rhs)
    raise ConvergenceError("mp newton", float(res), float(tol), max_iter, "iteration limit")


# --- parameterisations in high precision -----------------------------------------------


@functools.singledispatch
def _reward(model: object, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(r[S, A], dr[S, A, d])`` in mpmath."""
    raise ValueError(f"{type(model).__name__}: no high-precision evaluation; supported: "
                     "FixedReward, AffineReward")


@_reward.register
def _(model: FixedReward, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = to_mp(model.base)
    return base, to_mp(np.zeros((*base.shape, model.n_params)))


@_reward.register
def _(model: AffineReward, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    phi = to_mp(model.features)
    return to_mp(model.base) + phi @ x, phi


@functools.singledispatch
def _transitions(model: object, x: np.ndarray) -> np.ndarray:
    """``P[S, A, S]`` in mpmath."""
    raise ValueError(f"{type(model).__name__}: no high-precision evaluation; supported: "
                     "FixedTransitions, SoftmaxTransitions")


@_transitions.register
def _(model: FixedTransitions, x: np.ndarray) -> np.ndarray:
    return to_mp(model.value(np.zeros(model.n_params)))


@_transitions.register
def _(model: SoftmaxTransitions, x: np.ndarray) -> np.ndarray:
    logits = to_mp(model.logits(np.zeros(model.n_params))) + to_mp(model.features) @ x
    m = np.max(np.where(logits == -mp.inf, mp.mpf(-1e300), logits), axis=-1, keepdims=True)
    e = _exp(logits - m)
    return e / e.sum(axis=-1, keepdims=True)


def _dP_dot(model: object, P: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(dP V)[s, a, k]`` in mpmath."""
    d = model.n_params  # type: ignore[attr-defined]
    S, A, _ = P.shape
    if isinstance(model, FixedTransitions):
        return to_mp(np.zeros((S, A, d)))
    if isinstance(model, SoftmaxTransitions):
        pv = (P.reshape(S * A, S) @ v).reshape(S, A)
        c = P * (v[None, None, :] - pv[..., None])
        return np.einsum("ijk,ijkd->ijd", c, to_mp(model.features))
    raise ValueError(f"{type(model).__name__}: no high-precision evaluation")


@dataclass(frozen=True)
class MPHypergradient:
    """High-precision value and hypergradient (``mpf`` entries)."""

    value: object
    gradient: list
    indirect: list
    residual: object
    dps: int
    solution: MPSoftSolution

    def gradient_float(self) -> np.ndarray:
        return np.array([float(g) for g in self.gradient])


def hypergradient(problem: BilevelProblem, x: object, *, dps: int = 50) -> MPHypergradient:
    r"""``F(x)`` and ``grad F(x)`` at ``dps`` decimal digits (forward mode, see module doc).

    Parameters
    ----------
    problem : BilevelProblem
        With supported parameterisations and objective (module docstring).
    x : array_like, shape (d,)
        Real parameters (converted exactly from float64).
    dps : int
        Working precision in decimal digits.
    """
    x64 = problem.check_x(x)
    start = problem.follower_state(x64).solution.v  # float64 warm start
    with mp.workdps(dps):
        xm = to_mp(x64)
        gamma, tau = mp.mpf(problem.gamma), mp.mpf(problem.tau)
        r, dr = _reward(problem.follower_reward, xm)
        P = _transitions(problem.transitions, xm)
        sol = soft_solve(P, r, gamma, tau, v0=to_mp(start))
        pi = sol.policy
        S, A, _ = P.shape
        fac = MPFactor(np.einsum("sa,sat->st", pi, P), gamma)
        g = dr + gamma * _dP_dot(problem.transitions, P, sol.v)
        dV = fac.solve(np.einsum("sa,sak->sk", pi, g))
        dQ = g + gamma * np.einsum("sat,tk->sak", P, dV)
        dpi = pi[..., None] * (dQ - dV[:, None, :]) / tau
        obj = problem.objective
        if isinstance(obj, LeaderReturn):
            if obj.regularizer is not None:
                raise ValueError("LeaderReturn with a regularizer: no high-precision evaluation")
            gL = gamma if obj.leader_gamma is None else mp.mpf(obj.leader_gamma)
            facL = fac if obj.leader_gamma in (None, problem.gamma) else MPFactor(
                np.einsum("sa,sat->st", pi, P), gL)
            rL, drL = _reward(obj.leader_reward, xm)
            vL = facL.solve((pi * rL).sum(axis=-1))
            qL = rL + gL * (P.reshape(S * A, S) @ vL).reshape(S, A)
            occ = facL.solve_transpose(to_mp(problem.initial))
            w = occ[:, None] * pi
            value = (to_mp(problem.initial) * vL).sum()
            direct = np.einsum("sa,sak->k", w, drL + gL * _dP_dot(problem.transitions, P, vL))
            df_dpi = occ[:, None] * qL
        elif isinstance(obj, GeneralObjective):
            value = obj.f(xm, pi)
            direct = np.asarray(obj.df_dx(xm, pi), dtype=object)
            df_dpi = np.asarray(obj.df_dpi(xm, pi), dtype=object)
        else:
            raise ValueError(f"{obj!r}: no high-precision evaluation")
        indirect = np.einsum("sa,sak->k", df_dpi, dpi)
        grad = direct + indirect
        return MPHypergradient(value=+value, gradient=[+gk for gk in grad],
                               indirect=[+gk for gk in indirect], residual=sol.residual,
                               dps=dps, solution=sol)
