r"""The soft-LQR bilevel objective in mpmath at 50+ digits: an independent route.

Shares no arithmetic with the float64 path: the Riccati equation is solved by Newton
(Hewer) steps in mpmath started from scipy's DARE solution and iterated until the
residual is below ``10^-(dps - 5)``; the state marginals, the closed-form leader
terms (Gaussian bump by ``det`` and a solve, hinge by ``mpmath.ncdf``) and the sum
are all mpmath; the gradient is a central difference with step ``10^-(dps/3)``,
whose truncation error ``O(h^2)`` is far below float64 rounding.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

from .model import LQRProblem
from .riccati import dare_reference


def _mat(a) -> mp.matrix:
    a = np.atleast_2d(np.asarray(a, dtype=object))
    return mp.matrix([[mp.mpf(v) for v in row] for row in a]) if a.size else mp.matrix(
        a.shape[0], a.shape[1])


def _T(M: mp.matrix) -> mp.matrix:
    return M.T


def _zero(r: int, c: int) -> mp.matrix:
    return mp.matrix(r, c)


def _solve(A: mp.matrix, B: mp.matrix) -> mp.matrix:
    cols = [mp.lu_solve(A, B.column(j)) for j in range(B.cols)]
    out = mp.matrix(A.rows, B.cols)
    for j, c in enumerate(cols):
        for i in range(A.rows):
            out[i, j] = c[i]
    return out


def _trace(M: mp.matrix):
    return mp.fsum(M[i, i] for i in range(M.rows))


def _sym(M: mp.matrix) -> mp.matrix:
    return (M + M.T) / 2


def _lyap(F: mp.matrix, H: mp.matrix, gamma) -> mp.matrix:
    """``X = gamma F' X F + H`` by the Kronecker system (row-major vec)."""
    n = F.rows
    Ft = F.T
    K = mp.matrix(n * n, n * n)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for m in range(n):
                    K[i * n + j, k * n + m] = (1 if (i == k and j == m) else 0) \
                        - gamma * Ft[i, k] * Ft[j, m]
    h = mp.matrix([H[i, j] for i in range(n) for j in range(n)])
    x = mp.lu_solve(K, h)
    X = mp.matrix(n, n)
    for i in range(n):
        for j in range(n):
            X[i, j] = x[i * n + j]
    return X


def value(problem: LQRProblem, x: object, *, dps: int = 50):
    """``F(x)`` as an ``mpf`` at ``dps`` digits."""
    with mp.workdps(dps):
        return _value(problem, np.asarray(x, dtype=float), dps)


def _value(problem: LQRProblem, x: np.ndarray, dps: int, shift=None):
    xs = [mp.mpf(v) for v in x]
    if shift is not None:
        k, h = shift
        xs[k] += h
    z = [xi if problem.link == "identity" else 1 / (1 + mp.exp(-xi)) for xi in xs]
    mats = {}
    for name, M in problem.base.items():
        Mm = _mat(M)
        if name in problem.jac:
            J = problem.jac[name]
            for i in range(M.shape[0]):
                for j in range(M.shape[1]):
                    Mm[i, j] += mp.fsum(mp.mpf(J[i, j, k]) * z[k] for k in range(len(z)))
        mats[name] = Mm
    A, B, C, KL, Q, R = (mats[k] for k in ("A", "B", "C", "K_L", "Q", "R"))
    SL, W = _mat(problem.Sigma_L), _mat(problem.W)
    gamma = mp.mpf(problem.gamma)
    tau = mp.mpf(problem.tau)
    Ab = A + C * KL if C.cols else A
    n, m = A.rows, B.cols
    inst = problem.instance(np.asarray(x, dtype=float))
    P = _mat(dare_reference(inst))

    def gain(P):
        S = _sym(R + gamma * B.T * P * B)
        G = gamma * _solve(S, B.T * P)
        return S, G

    tol = mp.mpf(10) ** (-(dps - 5))
    for _ in range(60):
        S, G = gain(P)
        M = _sym(gamma * (P - P * B * G))
        res = mp.mnorm(Q + Ab.T * M * Ab - P, 1)
        if res < tol * max(1, mp.mnorm(P, 1)):
            break
        K = G * Ab
        F = Ab - B * K
        P = _sym(_lyap(F, Q + K.T * R * K, gamma))
    else:
        raise RuntimeError(f"mpmath Newton did not converge (residual {mp.nstr(res, 5)})")
    S, G = gain(P)
    Su = _sym(tau / 2 * _solve(S, mp.eye(m)))
    Ls = G * A
    La = G * C if C.cols else _zero(m, 0)
    Kbar = Ls + La * KL if C.cols else Ls
    F = (A + C * KL if C.cols else A) - B * Kbar
    EC = C - B * La if C.cols else _zero(n, 0)
    N = B * Su * B.T + W
    Suu0 = Su
    if C.cols:
        N = N + EC * SL * EC.T
        Suu0 = Suu0 + La * SL * La.T
    lr = problem.leader
    QL, RL = _mat(lr.Q_L), _mat(lr.R_L)
    QK = QL + Kbar.T * RL * Kbar
    D = _mat(lr.bump_precision)
    Dinv = _solve(D, mp.eye(n))
    c = _mat(lr.bump_center.reshape(-1, 1))
    pcost = mp.fsum(mp.mpf(w) * zi * zi for w, zi in zip(lr.cost_weight, z, strict=True))
    mu = _mat(problem.mu0.reshape(-1, 1))
    Sig = _mat(problem.Sigma0)
    gL = mp.mpf(problem.gamma_L)
    T = problem.horizon
    if T is None:
        raise ValueError("highprec.value: needs a finite horizon")
    total = mp.mpf(0)
    disc = mp.mpf(1)
    for _t in range(T):
        l = -((mu.T * QK * mu)[0, 0] + _trace(QK * Sig)) - _trace(RL * Suu0) - pcost
        if lr.bump_weight != 0.0:
            Mm = Dinv + Sig
            dl = mu - c
            l += mp.mpf(lr.bump_weight) * mp.exp(
                -(_solve(Mm, dl).T * dl)[0, 0] / 2) / mp.sqrt(mp.det(Mm) * mp.det(D))
        if lr.hinge_weight != 0.0:
            i = lr.hinge_index
            mi, v = mu[i, 0], Sig[i, i]
            if v <= 0:
                l += mp.mpf(lr.hinge_weight) * min(mi, 0)
            else:
                sg = mp.sqrt(v)
                l += mp.mpf(lr.hinge_weight) * (mi * mp.ncdf(-mi / sg) - sg * mp.npdf(mi / sg))
        total += disc * l
        disc *= gL
        mu = F * mu
        Sig = _sym(F * Sig * F.T + N)
    return total


def gradient(problem: LQRProblem, x: object, *, dps: int = 50) -> np.ndarray:
    """``grad F(x)`` by mpmath central differences (step ``10^-(dps//3)``), as float64."""
    x = np.asarray(x, dtype=float)
    out = np.empty(x.shape[0])
    with mp.workdps(dps):
        h = mp.mpf(10) ** (-(dps // 3))
        for k in range(x.shape[0]):
            out[k] = float((_value(problem, x, dps, (k, h)) - _value(problem, x, dps, (k, -h)))
                           / (2 * h))
    return out
