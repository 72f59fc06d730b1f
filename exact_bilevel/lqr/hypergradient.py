r"""Exact ``grad F(x)`` of a soft-LQR bilevel problem, adjoint mode.

Two reverse sweeps and one Lyapunov solve, whatever the number of parameters:

1. Through the moment recursion of :mod:`.objective` (adjoints ``a_t`` of ``mu_t``
   and ``Y_t`` of ``Sigma_t``)::

       a_t = gamma_L^t dl_t/dmu + F' a_{t+1},   Y_t = gamma_L^t dl_t/dSigma + F' Y_{t+1} F
       dF/dF += a_{t+1} mu_t' + 2 Y_{t+1} F Sigma_t,   dF/dN += Y_{t+1}

   giving the partials with respect to the environment ``(A, B, C, K_L)`` at fixed
   policy — the *direct* term — and with respect to the policy parameters
   ``(L_s, L_a, Sigma_u)``.
2. Through the policy ``L_s = G A``, ``L_a = G C``, ``G = gamma S^{-1} B'P``,
   ``Sigma_u = tau/2 S^{-1}``, ``S = R + gamma B'PB`` down to ``g_P = dF/dP`` at fixed
   Riccati inputs, then the implicit function theorem on ``P = Phi(P; theta)``: by
   the envelope theorem ``dPhi/dP [dP] = gamma F' dP F`` (``F`` the closed loop),
   so with the adjoint ``Y_P = gamma F Y_P F' + g_P`` (the Lyapunov solve that plays
   the role of ``(I - gamma P_pi)^{-T}``)::

       dF/dQ += Y_P,   dF/dA_bar += 2 M A_bar Y_P,   dF/dR += K Y_P K',
       dF/dB += -2 gamma P F Y_P K'

   — the *indirect* term.

Finally ``dF/dz_k = <dF/dM, dM/dz_k>`` summed over the fields and ``dF/dx = dF/dz
dz/dx``. Derivation: ``docs/math.md``, section "Soft LQR".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.errors import require_finite
from .model import LQRProblem
from .objective import ClosedLoop, Trajectory, follower_closed_loop, marginals, stage_all
from .riccati import SoftLQRSolution, discounted_lyapunov, solve_soft_lqr, sym


@dataclasses.dataclass(frozen=True)
class LQRHypergradient:
    """``grad F(x) = direct + indirect`` for a soft-LQR problem.

    Attributes
    ----------
    value : float
        ``F(x)``.
    gradient : ndarray, shape (d,)
    direct : ndarray, shape (d,)
        Through the dynamics at fixed policy ``(L_s, L_a, Sigma_u)`` (and the parameter cost).
    indirect : ndarray, shape (d,)
        Through the follower's policy.
    solution : SoftLQRSolution
    trajectory : Trajectory
        The Gaussian state marginals.
    residual : float
        Riccati residual of the follower solve.
    """

    value: float
    gradient: np.ndarray
    direct: np.ndarray
    indirect: np.ndarray
    solution: SoftLQRSolution
    trajectory: Trajectory
    residual: float


def _reverse_moments(problem: LQRProblem, cl: ClosedLoop, traj: Trajectory, z: np.ndarray):
    """Sweep 1: ``(g_F, g_N, g_Kbar, g_Suu0)``."""
    n = cl.F.shape[0]
    T = traj.mu.shape[0]
    w = problem.gamma_L ** np.arange(T)
    _, lm, lS, second = stage_all(problem, cl, traj.mu, traj.Sigma, z)
    gK = -2.0 * problem.leader.R_L @ cl.K_bar @ np.einsum("t,tij->ij", w, second)
    dtype = np.result_type(cl.F, traj.mu)
    A_adj = np.zeros((T, n), dtype=dtype)          # a_t, the adjoint of mu_t
    Y_adj = np.zeros((T, n, n), dtype=dtype)       # Y_t, the adjoint of Sigma_t
    a = np.zeros(n, dtype=dtype)
    Y = np.zeros((n, n), dtype=dtype)
    Ft = cl.F.T
    for t in range(T - 1, -1, -1):
        A_adj[t] = a                               # (a, Y) = adjoints of (mu_{t+1}, Sigma_{t+1})
        Y_adj[t] = Y
        a = w[t] * lm[t] + Ft @ a
        Y = sym(w[t] * lS[t] + Ft @ Y @ cl.F)
    # dF/dF = sum_t a_{t+1} mu_t' + 2 Y_{t+1} F Sigma_t,  dF/dN = sum_t Y_{t+1}
    gF = np.einsum("ti,tj->ij", A_adj, traj.mu) + 2.0 * np.einsum(
        "tij,jk,tkl->il", Y_adj, cl.F, traj.Sigma)
    gN = Y_adj.sum(axis=0)
    gSuu0 = -w.sum() * problem.leader.R_L
    return gF, gN, gK, gSuu0


def hypergradient(problem: LQRProblem, x: object, *, tol: float = 1e-12) -> LQRHypergradient:
    r"""``F(x)`` and ``grad F(x)`` by the adjoint method (module docstring).

    Parameters
    ----------
    problem : LQRProblem
    x : array_like, shape (d,)
    tol : float
        Riccati residual required of the follower solve.
    """
    x = problem.check_x(x)
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst, tol=tol)
    z = problem.z(x)
    cl = follower_closed_loop(inst, sol)
    traj = marginals(problem, cl, z)
    gF, gN, gKbar, gSuu0 = _reverse_moments(problem, cl, traj, z)
    A, B, C, K_L, SL = inst.A, inst.B, inst.C, inst.K_L, inst.Sigma_L

    direct = {f: np.zeros_like(getattr(inst, f)) for f in ("A", "B", "C", "K_L")}
    # F = A + C K_L - B K_bar
    direct["A"] += gF
    direct["C"] += gF @ K_L.T
    direct["K_L"] += C.T @ gF
    direct["B"] -= gF @ cl.K_bar.T
    gKbar = gKbar - B.T @ gF
    # K_bar = L_s + L_a K_L
    gLs = gKbar
    gLa = gKbar @ K_L.T
    direct["K_L"] += cl.L_a.T @ gKbar
    # N = E_C Sigma_L E_C' + B Sigma_u B' + W,  E_C = C - B L_a
    gEC = 2.0 * gN @ cl.E_C @ SL
    direct["B"] += 2.0 * gN @ B @ cl.Sigma_u
    gSu = B.T @ gN @ B
    direct["C"] += gEC
    direct["B"] -= gEC @ cl.L_a.T
    gLa = gLa - B.T @ gEC
    # Sigma_uu0 = L_a Sigma_L L_a' + Sigma_u
    gLa = gLa + 2.0 * gSuu0 @ cl.L_a @ SL
    gSu = gSu + gSuu0

    # Sweep 2: the policy L_s = G A, L_a = G C, Sigma_u = tau/2 S^{-1}.
    ind = {f: np.zeros_like(getattr(inst, f)) for f in ("A", "B", "C", "K_L", "Q", "R")}
    gG = gLs @ A.T + gLa @ C.T
    ind["A"] += sol.G.T @ gLs
    ind["C"] += sol.G.T @ gLa
    S, G, P = sol.S, sol.G, sol.P
    Sinv_gG = np.linalg.solve(S, gG)
    Sinv_gSu = np.linalg.solve(S, gSu)
    gS = sym(-Sinv_gG @ G.T - 0.5 * inst.tau * np.linalg.solve(S, Sinv_gSu.T).T)
    ind["B"] += inst.gamma * P @ Sinv_gG.T
    gP = inst.gamma * B @ Sinv_gG
    ind["R"] += gS
    ind["B"] += 2.0 * inst.gamma * P @ B @ gS
    gP = sym(gP + inst.gamma * B @ gS @ B.T)
    # Implicit function theorem on the Riccati fixed point.
    Ab = inst.A_bar
    YP = sym(discounted_lyapunov(sol.F, gP, inst.gamma))
    ind["Q"] += YP
    gAb = 2.0 * sol.M @ Ab @ YP
    ind["R"] += sol.K @ YP @ sol.K.T
    ind["B"] -= 2.0 * inst.gamma * P @ sol.F @ YP @ sol.K.T
    ind["A"] += gAb
    ind["C"] += gAb @ K_L.T
    ind["K_L"] += C.T @ gAb

    dzdx = problem.dz_dx(x)
    d_dir = np.zeros(problem.d, dtype=np.result_type(gF, x))
    d_ind = np.zeros_like(d_dir)
    for name, J in problem.jac.items():
        if name in direct:
            d_dir = d_dir + np.einsum("ij,ijk->k", direct[name], J)
        d_ind = d_ind + np.einsum("ij,ijk->k", ind[name], J)
    Gamma = float(np.sum(problem.gamma_L ** np.arange(traj.mu.shape[0])))
    d_dir = d_dir - 2.0 * Gamma * problem.leader.cost_weight * z
    d_dir = d_dir * dzdx
    d_ind = d_ind * dzdx
    grad = d_dir + d_ind
    if not np.iscomplexobj(grad):
        require_finite("hypergradient", grad, "the adjoint sweeps")
    return LQRHypergradient(value=traj.value, gradient=grad, direct=d_dir, indirect=d_ind,
                            solution=sol, trajectory=traj, residual=sol.residual)
