r"""Forward-mode sensitivities of the soft LQR follower and its soft-Q gradient.

For each parameter ``k`` (``dM = dM/dx_k``, ``A_bar = A + C K_L``):

* Riccati tangent (implicit function theorem; ``F = A_bar - B K`` the closed loop)::

      dP = gamma F' dP F + H,
      H  = dQ + dA_bar' M A_bar + A_bar' M dA_bar + K' dR K - gamma (K' dB' P F + F' P dB K)

* value constant: ``(1 - gamma) dv = gamma tr(dP W) + tr(dM Z + M dZ) + tau/2 tr(S^{-1} dS)``
  with ``Z = C Sigma_L C'``;
* the follower's soft Q (reward convention ``Q_F = -Q_c``, :mod:`.riccati`)::

      -dQ_F(s, a, u) = s'dQ s + u'dR u + gamma [ 2 (y + Bu)' P (dy + dB u)
                       + (y + Bu)' dP (y + Bu) + tr(dP W) + dv ],   y = A s + C a

  and its policy average in closed form, so that the Boltzmann identity gives the
  exact policy score ``d log pi(u | s, a) = (dQ_F - E_pi dQ_F) / tau`` — the
  quantity BC-HG estimates (Kudo et al. 2026, the Boltzmann covariance).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .model import FIELDS, LQRInstance, LQRProblem
from .riccati import SoftLQRSolution, discounted_lyapunov, sym


@dataclasses.dataclass(frozen=True)
class LQRSensitivities:
    """Tangents at ``x``; parameter axis last.

    Attributes
    ----------
    dfields : dict of ndarray
        ``dM/dx[..., k]`` for every follower matrix ``M`` in ``FIELDS``.
    dP : ndarray, shape (n, n, d)
    dv : ndarray, shape (d,)
    dS : ndarray, shape (m, m, d)
    """

    dfields: dict
    dP: np.ndarray
    dv: np.ndarray
    dS: np.ndarray


def field_tangents(problem: LQRProblem, x: np.ndarray) -> dict:
    """``dM/dx[..., k] = jac[M][..., k] * dz_k/dx_k`` for every field (zeros if constant)."""
    dzdx = problem.dz_dx(x)
    out = {}
    for name in FIELDS:
        shape = problem.base[name].shape
        J = problem.jac.get(name)
        out[name] = np.zeros((*shape, problem.d)) if J is None else J * dzdx
    return out


def follower_sensitivities(problem: LQRProblem, x: np.ndarray, inst: LQRInstance,
                           sol: SoftLQRSolution) -> LQRSensitivities:
    """``dP``, ``dv``, ``dS`` for every parameter (module docstring)."""
    df = field_tangents(problem, x)
    P, M, K, F, S = sol.P, sol.M, sol.K, sol.F, sol.S
    Ab, B, gamma = inst.A_bar, inst.B, inst.gamma
    Z = inst.C @ inst.Sigma_L @ inst.C.T
    d = problem.d
    n, m = P.shape[0], B.shape[1]
    dP = np.zeros((n, n, d), dtype=np.result_type(P, x))
    dv = np.zeros(d, dtype=dP.dtype)
    dS = np.zeros((m, m, d), dtype=dP.dtype)
    G = sol.G
    for k in range(d):
        dA, dB, dC = df["A"][..., k], df["B"][..., k], df["C"][..., k]
        dKL, dQ, dR = df["K_L"][..., k], df["Q"][..., k], df["R"][..., k]
        dAb = dA + dC @ inst.K_L + inst.C @ dKL
        H = dQ + dAb.T @ M @ Ab + Ab.T @ M @ dAb + K.T @ dR @ K \
            - gamma * (K.T @ dB.T @ P @ F + F.T @ P @ dB @ K)
        dPk = sym(discounted_lyapunov(F.T, sym(H), gamma))
        dSk = sym(dR + gamma * (dB.T @ P @ B + B.T @ dPk @ B + B.T @ P @ dB))
        dM = gamma * dPk - gamma * (dPk @ B @ G + P @ dB @ G + G.T @ dB.T @ P
                                    + G.T @ B.T @ dPk) + G.T @ dSk @ G
        dZ = dC @ inst.Sigma_L @ inst.C.T + inst.C @ inst.Sigma_L @ dC.T
        dv[k] = (gamma * np.trace(dPk @ inst.W) + np.trace(dM @ Z + M @ dZ)
                 + 0.5 * inst.tau * np.trace(np.linalg.solve(S, dSk))) / (1.0 - gamma)
        dP[..., k] = dPk
        dS[..., k] = dSk
    return LQRSensitivities(dfields=df, dP=dP, dv=dv, dS=dS)


def soft_q_gradient(inst: LQRInstance, sol: SoftLQRSolution, sens: LQRSensitivities,
                    s: np.ndarray, a: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(dQ_F(s, a, u), E_{u~pi} dQ_F(s, a, u))`` for a batch, each shape ``[N, d]``.

    ``s[N, n]``, ``a[N, p]``, ``u[N, m]``; reward convention (module docstring).
    """
    df = sens.dfields
    P, B, gamma = sol.P, inst.B, inst.gamma
    y = s @ inst.A.T + a @ inst.C.T                      # [N, n]
    ubar = -y @ sol.G.T                                   # [N, m]
    nxt = y + u @ B.T                                     # y + B u
    nxt_bar = y + ubar @ B.T
    dy = np.einsum("ijk,Nj->Nik", df["A"], s) + np.einsum("ijk,Nj->Nik", df["C"], a)  # [N, n, d]
    dBu = np.einsum("ijk,Nj->Nik", df["B"], u)
    dBub = np.einsum("ijk,Nj->Nik", df["B"], ubar)
    const = gamma * (np.einsum("ijk,ji->k", sens.dP, inst.W) + sens.dv)    # [d]
    sQs = np.einsum("Ni,ijk,Nj->Nk", s, df["Q"], s)

    def cost_grad(uu: np.ndarray, nx: np.ndarray, dbu: np.ndarray) -> np.ndarray:
        return (sQs + np.einsum("Ni,ijk,Nj->Nk", uu, df["R"], uu)
                + gamma * (2.0 * np.einsum("Ni,ij,Njk->Nk", nx, P, dy + dbu)
                           + np.einsum("Ni,ijk,Nj->Nk", nx, sens.dP, nx)) + const)

    dQc = cost_grad(u, nxt, dBu)
    Su = sol.Sigma_u
    dQc_bar = (cost_grad(ubar, nxt_bar, dBub)
               + np.einsum("ijk,ji->k", df["R"], Su)
               + gamma * (2.0 * np.einsum("ij,jlk,lm,mi->k", P, df["B"], Su, B.T)
                          + np.einsum("ij,jlk,lm,mi->k", B.T, sens.dP, B, Su)))
    return -dQc, -dQc_bar


def policy_score(inst: LQRInstance, sol: SoftLQRSolution, sens: LQRSensitivities,
                 s: np.ndarray, a: np.ndarray, u: np.ndarray) -> np.ndarray:
    r"""``d log pi(u | s, a) / dx = (dQ_F - E_pi dQ_F) / tau``, shape ``[N, d]``."""
    dq, dq_bar = soft_q_gradient(inst, sol, sens, s, a, u)
    return (dq - dq_bar) / inst.tau
