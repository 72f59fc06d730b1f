r"""The soft-optimal LQR follower: discounted Riccati fixed point, Gaussian policy.

With cost-to-go ``J(s) = s' P s + v`` (the reward-convention soft value is
``V = -J``), the follower's soft Q-cost after seeing ``(s, a)`` is::

    Q_c(s, a, u) = s'Qs + u'Ru + gamma [ (y + B u)' P (y + B u) + tr(P W) + v ],  y = A s + C a

and its Boltzmann policy ``pi(u | s, a) ∝ exp(-Q_c / tau)`` is Gaussian::

    u ~ N(-G y, Sigma_u),   S = R + gamma B'PB,   G = gamma S^{-1} B'P,   Sigma_u = tau/2 S^{-1}.

Averaging over ``a ~ N(K_L s, Sigma_L)`` gives the discounted Riccati equation
(``A_bar = A + C K_L``, ``M = gamma (P - P B G)``)::

    P = Phi(P) = Q + A_bar' M A_bar
    (1 - gamma) v = gamma tr(P W) + tr(M C Sigma_L C') + tau/2 log det S - m tau/2 log(pi tau)

``P`` does not depend on ``tau`` (only ``Sigma_u`` and ``v`` do). It is the
stabilising solution of scipy's DARE for ``(sqrt(gamma) A_bar, sqrt(gamma) B, Q, R)``;
we solve it by value iteration ``P <- Phi(P)`` followed by Newton (Hewer) steps
``P = Q + K'RK + gamma F'PF``, ``K = G A_bar``, ``F = A_bar - B K``, to the rounding
floor, and certify ``||Phi(P) - P||_F / max(1, ||P||_F)``.

Every function here is complex-analytic in its inputs (plain transposes, ``solve``),
so the complex-step route of :mod:`exact_bilevel.crosscheck` runs through it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from ..core._budget import check_allocation
from ..core.errors import ConvergenceError, NumericalError
from .model import LQRInstance

#: Largest real state dimension for the Kronecker-product Lyapunov solve (``n^2 x n^2``
#: system, ``O(n^6)``: 0.6 s at ``n = 40``); scipy uses the same rule (``n < 10``). Above it,
#: Bartels-Stewart agrees with the Kronecker solve to ~5e-15 on the benchmark problems.
KRON_MAX_N = 10


def sym(X: np.ndarray) -> np.ndarray:
    """``(X + X') / 2`` (plain transpose: analytic)."""
    return 0.5 * (X + X.T)


def discounted_lyapunov(F: np.ndarray, H: np.ndarray, gamma: float) -> np.ndarray:
    r"""Solve ``X = gamma F X F' + H`` for ``X[n, n]``.

    Requires ``gamma rho(F)^2 < 1``. For ``n <= KRON_MAX_N`` (and always for complex
    input) the ``n^2 x n^2`` system ``(I - gamma F kron F) vec X = vec H`` is solved by
    LU; larger real problems use scipy's Bartels-Stewart solver.
    """
    n = F.shape[0]
    if n <= KRON_MAX_N or np.iscomplexobj(F) or np.iscomplexobj(H):
        check_allocation("Lyapunov system", (n * n, n * n), 16 if np.iscomplexobj(F) else 8)
        M = np.eye(n * n) - gamma * np.kron(F, F)
        return np.linalg.solve(M, H.reshape(-1)).reshape(n, n)
    return scipy.linalg.solve_discrete_lyapunov(np.sqrt(gamma) * F, H)


@dataclasses.dataclass(frozen=True)
class SoftLQRSolution:
    r"""The follower's soft-optimal solution at one ``x``.

    Attributes
    ----------
    P : ndarray, shape (n, n)
        Quadratic part of the cost-to-go ``J(s) = s'Ps + v``.
    v : float
        Constant part of the cost-to-go.
    S : ndarray, shape (m, m)
        ``R + gamma B'PB``.
    G : ndarray, shape (m, n)
        ``gamma S^{-1} B'P``: mean input ``-G (A s + C a)``.
    K : ndarray, shape (m, n)
        ``G A_bar``: mean input ``-K s`` once the leader's action is averaged out.
    Sigma_u : ndarray, shape (m, m)
        Policy covariance ``tau/2 S^{-1}``.
    M : ndarray, shape (n, n)
        ``gamma (P - P B G)``.
    F : ndarray, shape (n, n)
        Closed-loop mean dynamics ``(I - B G) A_bar``.
    residual : float
        ``||Phi(P) - P||_F / max(1, ||P||_F)``.
    iterations : int
        Value-iteration sweeps plus Newton steps.
    """

    P: np.ndarray
    v: complex | float
    S: np.ndarray
    G: np.ndarray
    K: np.ndarray
    Sigma_u: np.ndarray
    M: np.ndarray
    F: np.ndarray
    residual: float
    iterations: int


def _gain(inst: LQRInstance, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    B, gamma = inst.B, inst.gamma
    S = sym(inst.R + gamma * B.T @ P @ B)
    G = gamma * np.linalg.solve(S, B.T @ P)
    M = sym(gamma * (P - P @ B @ G))
    return S, G, M


def riccati_map(inst: LQRInstance, P: np.ndarray) -> np.ndarray:
    """``Phi(P) = Q + A_bar' gamma (P - P B G(P)) A_bar``, shape ``[n, n]``."""
    Ab = inst.A_bar
    return sym(inst.Q + Ab.T @ _gain(inst, P)[2] @ Ab)


def _relres(inst: LQRInstance, P: np.ndarray) -> float:
    R = riccati_map(inst, P) - P
    return float(np.linalg.norm(np.real(R)) + np.linalg.norm(np.imag(R))) / max(
        1.0, float(np.linalg.norm(np.real(P))))


def _pbh_check(inst: LQRInstance) -> None:
    """Raise ``ValueError`` unless ``(sqrt(g) A_bar, sqrt(g) B)`` is stabilisable and
    ``(Q, sqrt(g) A_bar)`` detectable (Popov-Belevitch-Hautus test)."""
    Ab = np.sqrt(inst.gamma) * np.real(inst.A_bar)
    B = np.real(inst.B)
    Qr = np.real(inst.Q)
    n = Ab.shape[0]
    for lam in np.linalg.eigvals(Ab):
        if abs(lam) < 1.0 - 1e-12:
            continue
        ctrl = np.hstack([lam * np.eye(n) - Ab, B.astype(complex)])
        if np.linalg.matrix_rank(ctrl, tol=1e-10 * max(1.0, np.abs(ctrl).max())) < n:
            raise ValueError(
                f"A_bar = A + C K_L has the mode {lam / np.sqrt(inst.gamma):.6g} with "
                f"|sqrt(gamma) lambda| = {abs(lam):.6g} >= 1 that B cannot reach: the pair "
                "(sqrt(gamma) A_bar, sqrt(gamma) B) is not stabilisable, so no stabilising "
                "Riccati solution (finite soft value) exists")
        obs = np.vstack([lam * np.eye(n) - Ab, Qr.astype(complex)])
        if np.linalg.matrix_rank(obs, tol=1e-10 * max(1.0, np.abs(obs).max())) < n:
            raise ValueError(
                f"A_bar has the mode {lam / np.sqrt(inst.gamma):.6g} (|sqrt(gamma) lambda| >= 1) "
                "that the state cost Q does not see: (Q, sqrt(gamma) A_bar) is not detectable, "
                "the Riccati iteration need not converge to the stabilising solution")


def solve_soft_lqr(inst: LQRInstance, *, tol: float = 1e-12, max_iter: int = 100_000,
                   P0: np.ndarray | None = None) -> SoftLQRSolution:
    r"""Solve the discounted soft Riccati equation (module docstring) to the rounding floor.

    Parameters
    ----------
    inst : LQRInstance
        Matrices at one ``x`` (complex allowed for the complex-step route).
    tol : float
        Required relative residual ``||Phi(P) - P||_F / max(1, ||P||_F)``.
    max_iter : int
        Value-iteration sweeps before giving up.
    P0 : ndarray, shape (n, n), optional
        Warm start (default ``Q``).

    Raises
    ------
    ValueError
        No stabilising solution exists (PBH test).
    ConvergenceError
        The residual did not reach ``tol``; carries the residual reached.
    NumericalError
        ``P`` overflowed.
    """
    if not np.iscomplexobj(inst.A_bar) and not np.iscomplexobj(inst.B):
        _pbh_check(inst)
    P = np.array(inst.Q if P0 is None else P0, dtype=np.result_type(inst.A_bar, inst.B, float))
    it = 0
    # Value iteration until the gain settles (monotone, globally convergent from Q >= 0).
    while it < max_iter:
        P_new = riccati_map(inst, P)
        it += 1
        scale = max(1.0, float(np.abs(P_new).max()))
        if not np.all(np.isfinite(P_new)) or scale > 1e150:
            raise NumericalError(f"Riccati iteration: P overflowed after {it} sweeps "
                                 f"(max |P| = {scale:.3e})")
        change = float(np.abs(P_new - P).max()) / scale
        P = P_new
        if change < 1e-6:
            break
    # Newton (Hewer) steps: exact policy evaluation of the current gain.
    res = _relres(inst, P)
    Ab, B = inst.A_bar, inst.B
    for _ in range(8):
        if res <= tol * 1e-2:
            break
        S, G, _ = _gain(inst, P)
        K = G @ Ab
        F = Ab - B @ K
        P_try = sym(discounted_lyapunov(F.T, inst.Q + K.T @ inst.R @ K, inst.gamma))
        it += 1
        res_try = _relres(inst, P_try)
        if not res_try < res:
            break
        P, res = P_try, res_try
    if not res <= tol:
        raise ConvergenceError("soft Riccati iteration", res, tol, it,
                               "the closed loop may be barely stable; raise max_iter")
    S, G, M = _gain(inst, P)
    K = G @ Ab
    F = Ab - B @ K
    Sigma_u = sym(0.5 * inst.tau * np.linalg.solve(S, np.eye(S.shape[0])))
    m = B.shape[1]
    Z = inst.C @ inst.Sigma_L @ inst.C.T
    v = (inst.gamma * np.trace(P @ inst.W) + np.trace(M @ Z) + 0.5 * inst.tau * _logdet_pd(S)
         - 0.5 * m * inst.tau * np.log(np.pi * inst.tau)) / (1.0 - inst.gamma)
    return SoftLQRSolution(P=P, v=v, S=S, G=G, K=K, Sigma_u=Sigma_u, M=M, F=F,
                           residual=res, iterations=it)


def _logdet_pd(S: np.ndarray) -> complex | float:
    """``log det S`` for (complex-perturbed) positive definite ``S`` via LU; analytic."""
    lu, _ = scipy.linalg.lu_factor(S)
    d = np.diag(lu)
    return 0.5 * np.sum(np.log(d * d))


def dare_reference(inst: LQRInstance) -> np.ndarray:
    """``P`` from scipy's DARE on ``(sqrt(gamma) A_bar, sqrt(gamma) B, Q, R)`` (a second method)."""
    g = np.sqrt(inst.gamma)
    return scipy.linalg.solve_discrete_are(g * inst.A_bar, g * inst.B, inst.Q, inst.R)
