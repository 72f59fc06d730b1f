r"""Exact ``grad F(x)`` of a soft-LQR bilevel problem, adjoint mode.

Two reverse sweeps and one Lyapunov solve, whatever the number of parameters; the first
sweep is ``n x n`` matrix products, ``O(T n^3)`` for a horizon ``T`` (with ``horizon=None``
its quadratic part is one more Stein solve, :func:`_reverse_moments`):

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
dz/dx``. Derivation: :ref:`docs/math.md, section 8, "Soft LQR" <math-lqr>`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core._progress import progress_bar
from ..core.errors import require_finite
from .model import LQRProblem
from .objective import (
    ClosedLoop,
    Trajectory,
    _has_extra,
    _hinge_parts,
    extra_terms,
    follower_closed_loop,
    marginals,
    quadratic_weight,
)
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


def _reverse_moments(problem: LQRProblem, cl: ClosedLoop, traj: Trajectory, z: np.ndarray,
                     progress: bool = False):
    r"""Sweep 1: ``(g_F, g_N, g_Kbar, g_Suu0)``, matrix products only.

    Finite horizon: the reverse recursion of ``(a_t, Y_t)`` chunk by chunk, three
    ``n x n`` products a step (``U = F'Y_{t+1}``, ``Y_t = U F + E_t``, and
    ``sum_t Y_{t+1} F Sigma_t = sum_t U' Sigma_t``); ``sum_t a_{t+1} mu_t'`` is one product
    per chunk. ``horizon=None``: the quadratic stage reward has ``Y_t = gamma^t Ybar``,
    ``a_t = 2 gamma^t Ybar mu_t`` with ``Ybar = gamma F'Ybar F - QK`` (one Stein solve),
    hence ``dF/dF = 2 gamma Ybar F S`` and ``dF/dN = gamma / (1 - gamma) Ybar`` with
    ``S = sum_t gamma^t (mu_t mu_t' + Sigma_t)``; the reverse recursion runs only over the
    steps where the non-Gaussian terms were summed.
    """
    lr, g = problem.leader, problem.gamma_L
    n = cl.F.shape[0]
    finite = problem.horizon is not None
    QK, _ = quadratic_weight(problem, cl)
    dtype = np.result_type(cl.F, cl.N, traj.mu)
    gF = np.zeros((n, n), dtype=dtype)
    gN = np.zeros((n, n), dtype=dtype)
    if not finite:
        Ybar = sym(discounted_lyapunov(cl.F.T, -QK, g))
        gF = gF + 2.0 * g * (Ybar @ cl.F) @ traj.second_sum
        gN = gN + g / (1.0 - g) * Ybar
    extra = _has_extra(lr)
    Z = np.zeros((n, n), dtype=dtype)              # sum_t Y_{t+1} F Sigma_t
    a = np.zeros(n, dtype=dtype)
    Y = np.zeros((n, n), dtype=dtype)
    F, Ft = cl.F, cl.F.T
    zero = True                                    # Y == 0 (skip the products)
    i = lr.hinge_index
    bar = progress_bar(total=traj.mu.shape[0], desc="LQR adjoint sweep", enabled=progress)
    try:
        for k in range(len(traj.chunks) - 1, -1, -1):
            t0, t1 = traj.chunks[k]
            mus = traj.mu[t0:t1]
            sigs = traj.chunk_sigmas(cl, k)
            w = g ** np.arange(t0, t1)
            lm = -2.0 * (mus @ QK.T) if finite else np.zeros_like(mus)
            gS = gii = None
            if extra:
                _, em, gS, gii = extra_terms(lr, mus, sigs, grad=True)
                lm = lm + em
            lm = w[:, None] * lm
            # E_t = gamma^t dl_t/dSigma for the chunk
            E = (-w[:, None, None] * QK if finite
                 else np.zeros((t1 - t0, n, n), dtype=dtype))
            if gS is not None:
                E = E + w[:, None, None] * gS
            if gii is not None:
                E[:, i, i] += w * gii
            A_next = np.empty_like(mus)                # a_{t+1}
            for j in range(t1 - t0 - 1, -1, -1):
                A_next[j] = a
                if zero:
                    Y = E[j]
                    zero = False
                else:
                    U = Ft @ Y
                    Z += U.T @ sigs[j]
                    gN += Y
                    Y = U @ F + E[j]
                Y = 0.5 * (Y + Y.T)                    # sym
                a = lm[j] + Ft @ a
            gF += A_next.T @ mus
            bar.update(t1 - t0)
    finally:
        bar.close()
    gF = gF + 2.0 * Z
    if traj.hinge_series is not None:
        dF, dN = _reverse_hinge_series(problem, cl, traj)
        gF = gF + dF
        gN = gN + dN
    gK = -2.0 * lr.R_L @ cl.K_bar @ traj.second_sum
    gSuu0 = -traj.weight_sum * lr.R_L
    return gF, gN, gK, gSuu0


def _reverse_hinge_series(problem: LQRProblem, cl: ClosedLoop, traj: Trajectory):
    r"""Adjoint of :func:`.objective._hinge_series`: ``(dF/dF, dF/dN)`` of
    ``sum_t gamma^t h(m_t, v_t)``, ``O(T n^2)``.

    With ``hm_t, hv_t`` the weighted partials and ``c_j = sum_{t>j} hv_t``:
    ``dF/dN = sum_j c_j r_j r_j'``; the adjoint of ``r_j`` is
    ``rho_j = hm_j mu_0 + 2 hv_j Sigma_0 r_j + 2 c_j N r_j + F rho_{j+1}`` and
    ``dF/dF = sum_j r_j rho_{j+1}'``.
    """
    lr, g = problem.leader, problem.gamma_L
    R, m, v = traj.hinge_series
    T = R.shape[0]
    w = g ** np.arange(T)
    _, dm, dv = _hinge_parts(lr, m, v)
    hm, hv = w * dm, w * dv
    c = np.concatenate([np.cumsum(hv[::-1])[::-1][1:], [0.0 * hv[:1].sum()]]) if T else hv
    mu0 = problem.mu0
    G = (hm[:, None] * mu0[None, :] + 2.0 * hv[:, None] * (R @ problem.Sigma0.T)
         + 2.0 * c[:, None] * (R @ cl.N.T))
    gN = (R.T * c) @ R
    rho = np.zeros(cl.F.shape[0], dtype=np.result_type(G, cl.F))
    Rho = np.empty_like(G)
    for j in range(T - 1, -1, -1):
        rho = G[j] + cl.F @ rho
        Rho[j] = rho
    gF = R[:-1].T @ Rho[1:]
    return gF, gN


def hypergradient(problem: LQRProblem, x: object, *, tol: float = 1e-12,
                  progress: bool = False) -> LQRHypergradient:
    r"""``F(x)`` and ``grad F(x)`` by the adjoint method (module docstring).

    Parameters
    ----------
    problem : LQRProblem
    x : array_like, shape (d,)
    tol : float
        Riccati residual required of the follower solve.
    progress : bool
        Show progress bars (on a terminal) over the forward and the reverse sweep.
    """
    if np.iscomplexobj(np.asarray(x)):
        raise ValueError("x: must be real (the adjoint hypergradient is not a complex-step "
                         "route; complex steps go through exact_bilevel.lqr.objective.value)")
    x = problem.check_x(x)
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst, tol=tol)
    z = problem.z(x)
    cl = follower_closed_loop(inst, sol)
    traj = marginals(problem, cl, z, progress=progress)
    gF, gN, gKbar, gSuu0 = _reverse_moments(problem, cl, traj, z, progress)
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
            d_dir = d_dir + np.tensordot(direct[name], J, axes=2)
        d_ind = d_ind + np.tensordot(ind[name], J, axes=2)
    Gamma = traj.weight_sum
    d_dir = d_dir - 2.0 * Gamma * problem.leader.cost_weight * z
    d_dir = d_dir * dzdx
    d_ind = d_ind * dzdx
    grad = d_dir + d_ind
    if not np.iscomplexobj(grad):
        require_finite("hypergradient", grad, "the adjoint sweeps")
    return LQRHypergradient(value=traj.value, gradient=grad, direct=d_dir, indirect=d_ind,
                            solution=sol, trajectory=traj, residual=sol.residual)
