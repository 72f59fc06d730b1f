r"""The leader's objective under the soft-optimal follower, from Gaussian state marginals.

The follower's policy is written by its *policy parameters* (what a fixed policy
holds fixed as a function of what it observes)::

    u = -(L_s s + L_a a) + eps_u,   eps_u ~ N(0, Sigma_u),   L_s = G A,  L_a = G C

so that, with ``a = K_L s + eps_L``, the state stays Gaussian,
``s_t ~ N(mu_t, Sigma_t)``::

    K_bar = L_s + L_a K_L                          (mean input -K_bar s)
    F     = A + C K_L - B K_bar                    (closed-loop mean dynamics)
    N     = E_C Sigma_L E_C' + B Sigma_u B' + W,   E_C = C - B L_a
    mu_{t+1} = F mu_t,   Sigma_{t+1} = F Sigma_t F' + N

and the expected stage reward is closed form::

    l(mu, Sigma) = -[mu'(Q_L + K_bar'R_L K_bar)mu + tr((Q_L + K_bar'R_L K_bar) Sigma)]
                   - tr(R_L Sigma_uu0) + bump(mu, Sigma) + hinge(mu, Sigma) - sum_k w_k z_k^2,
    Sigma_uu0 = L_a Sigma_L L_a' + Sigma_u,
    bump  = w_b det(I + Sigma D)^{-1/2} exp(-1/2 d'(D^{-1} + Sigma)^{-1} d),  d = mu - c,
    hinge = w_h [ m Phi(-m/sigma) - sigma phi(m/sigma) ],  m = mu[i], sigma^2 = Sigma[i, i].

``F(x) = sum_{t < T} gamma_L^t l(mu_t, Sigma_t)``. Everything is complex-analytic.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg
import scipy.special

from ..core._budget import check_allocation
from ..core.errors import require_finite
from .model import LeaderReward, LQRInstance, LQRProblem
from .riccati import SoftLQRSolution, solve_soft_lqr, sym

#: Terms below this fraction of the running sum end an infinite-horizon sum.
_FLOOR = 1e-17
_MAX_STEPS = 1_000_000


@dataclasses.dataclass(frozen=True)
class ClosedLoop:
    """Policy parameters and the closed-loop Gaussian dynamics (module docstring)."""

    L_s: np.ndarray
    L_a: np.ndarray
    Sigma_u: np.ndarray
    K_bar: np.ndarray
    F: np.ndarray
    N: np.ndarray
    E_C: np.ndarray
    Sigma_uu0: np.ndarray


def closed_loop(inst: LQRInstance, L_s: np.ndarray, L_a: np.ndarray,
                Sigma_u: np.ndarray) -> ClosedLoop:
    """The closed loop of the policy ``u = -(L_s s + L_a a) + N(0, Sigma_u)``."""
    K_bar = L_s + L_a @ inst.K_L
    F = inst.A + inst.C @ inst.K_L - inst.B @ K_bar
    E_C = inst.C - inst.B @ L_a
    N = sym(E_C @ inst.Sigma_L @ E_C.T + inst.B @ Sigma_u @ inst.B.T + inst.W)
    Suu0 = sym(L_a @ inst.Sigma_L @ L_a.T + Sigma_u)
    return ClosedLoop(L_s, L_a, Sigma_u, K_bar, F, N, E_C, Suu0)


def follower_closed_loop(inst: LQRInstance, sol: SoftLQRSolution) -> ClosedLoop:
    """:func:`closed_loop` of the soft-optimal policy ``L_s = G A, L_a = G C``."""
    return closed_loop(inst, sol.G @ inst.A, sol.G @ inst.C, sol.Sigma_u)


def bump(lr: LeaderReward, mus: np.ndarray, sigs: np.ndarray):
    """``(E[T], dE/dmu[T, n], dE/dSigma[T, n, n])`` of ``w_b E exp(-1/2 (s-c)'D(s-c))`` for
    ``s ~ N(mu_t, Sigma_t)``, all ``t`` at once (batched solves; ``det`` keeps it analytic)."""
    D = lr.bump_precision
    n = D.shape[0]
    Mm = np.linalg.solve(D, np.eye(n)) + sigs                      # D^{-1} + Sigma_t
    d = mus - lr.bump_center
    Minv = np.linalg.solve(Mm, np.broadcast_to(np.eye(n), Mm.shape))
    Md = np.einsum("tij,tj->ti", Minv, d)
    # det(I + Sigma D) = det(D^{-1} + Sigma) det(D)
    E = lr.bump_weight * np.exp(-0.5 * np.einsum("ti,ti->t", d, Md)) / np.sqrt(
        np.linalg.det(Mm) * np.linalg.det(D))
    gS = 0.5 * E[:, None, None] * (np.einsum("ti,tj->tij", Md, Md) - Minv)
    return E, -E[:, None] * Md, gS


def hinge(lr: LeaderReward, mus: np.ndarray, sigs: np.ndarray):
    """``(E[T], dE/dmu[T, n], dE/dSigma[T, n, n])`` of ``w_h E min(s[i], 0)`` for
    ``s ~ N(mu_t, Sigma_t)``; a deterministic coordinate (``Sigma_ii = 0``) gives
    ``min(m, 0)`` with derivative ``1[m < 0]``."""
    i = lr.hinge_index
    T, n = mus.shape
    m, v = mus[:, i], sigs[:, i, i]
    dtype = np.result_type(mus, sigs)
    gmu = np.zeros((T, n), dtype=dtype)
    gS = np.zeros((T, n, n), dtype=dtype)
    det = np.real(v) <= 0.0
    sig = np.sqrt(np.where(det, 1.0, v))
    u = m / sig
    Phi = scipy.special.ndtr(-u)
    phi = np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)
    neg = np.real(m) < 0.0
    E = lr.hinge_weight * np.where(det, np.where(neg, m, 0.0 * m), m * Phi - sig * phi)
    gmu[:, i] = lr.hinge_weight * np.where(det, neg.astype(float), Phi)
    gS[:, i, i] = np.where(det, 0.0, -lr.hinge_weight * phi / (2.0 * sig))
    return E, gmu, gS


def stage_all(problem: LQRProblem, cl: ClosedLoop, mus: np.ndarray, sigs: np.ndarray,
              z: np.ndarray):
    r"""Expected stage rewards ``l(mu_t, Sigma_t)`` and their partials, all ``t`` at once.

    Returns ``(l[T], dl/dmu[T, n], dl/dSigma[T, n, n], second[T, n, n])`` with
    ``second_t = mu_t mu_t' + Sigma_t`` (so ``dl_t/dK_bar = -2 R_L K_bar second_t``);
    ``dl/dSigma_uu0 = -R_L`` and ``dl/dz = -2 w z`` are constant.
    """
    lr = problem.leader
    QK = lr.Q_L + cl.K_bar.T @ lr.R_L @ cl.K_bar
    second = np.einsum("ti,tj->tij", mus, mus) + sigs
    const = -np.trace(lr.R_L @ cl.Sigma_uu0) - np.sum(lr.cost_weight * z * z)
    val = -np.einsum("ij,tji->t", QK, second) + const
    gmu = -2.0 * mus @ QK.T
    gS = np.broadcast_to(-QK, sigs.shape).copy()
    for term, weight in ((bump, lr.bump_weight), (hinge, lr.hinge_weight)):
        if weight != 0.0:
            e, em, eS = term(lr, mus, sigs)
            val = val + e
            gmu = gmu + em
            gS = gS + eS
    return val, gmu, gS, second


def stage(problem: LQRProblem, cl: ClosedLoop, mu: np.ndarray, Sig: np.ndarray,
          z: np.ndarray):
    """:func:`stage_all` at one ``(mu, Sigma)``: ``(l, dl/dmu, dl/dSigma, dl/dK_bar)``."""
    val, gmu, gS, second = stage_all(problem, cl, mu[None], Sig[None], z)
    return val[0], gmu[0], gS[0], -2.0 * problem.leader.R_L @ cl.K_bar @ second[0]


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Gaussian state marginals ``mu[T, n]``, ``Sigma[T, n, n]`` and stage rewards ``l[T]``."""

    mu: np.ndarray
    Sigma: np.ndarray
    stage: np.ndarray
    value: complex | float


def marginals(problem: LQRProblem, cl: ClosedLoop, z: np.ndarray) -> Trajectory:
    r"""Forward recursion of the state marginals and ``F = sum_t gamma_L^t l_t``.

    With ``horizon=None`` the sum runs until ``gamma_L^t |l_t| / (1 - gamma_L)`` falls
    below ``1e-17`` of the running sum for 20 consecutive steps; it raises
    ``ValueError`` when ``gamma_L rho(F)^2 >= 1`` (the leader's return is infinite).
    """
    T = problem.horizon
    if T is None:
        rho = float(np.max(np.abs(np.linalg.eigvals(np.real(cl.F)))))
        if problem.gamma_L * rho * rho >= 1.0:
            raise ValueError(f"horizon=None: gamma_L rho(F)^2 = {problem.gamma_L * rho * rho:.4g} "
                             ">= 1, the leader's infinite-horizon return diverges; set a horizon")
    dtype = np.result_type(cl.F, cl.N, problem.mu0)
    n = cl.F.shape[0]
    itemsize = 16 if np.iscomplexobj(np.zeros(0, dtype)) else 8
    check_allocation("state marginals Sigma[T, n, n]", (T or 1024, n, n + 2), itemsize)
    mus, sigs = [], []
    mu = problem.mu0.astype(dtype)
    Sig = problem.Sigma0.astype(dtype)
    total = 0.0
    g = 1.0
    quiet = 0
    t = 0
    while True:
        mus.append(mu)
        sigs.append(Sig)
        t += 1
        if T is not None:
            if t >= T:
                break
        else:  # the stopping rule needs the stage value as we go
            val = stage(problem, cl, mu, Sig, z)[0]
            total = total + g * val
            quiet = quiet + 1 if abs(g * val) / (1.0 - problem.gamma_L) <= _FLOOR * max(
                abs(total), 1e-300) else 0
            if t & (t - 1) == 0 and t >= 1024:  # growing: re-check at every doubling
                check_allocation("state marginals Sigma[T, n, n]", (2 * t, n, n + 2), itemsize)
            if quiet >= 20 or t >= _MAX_STEPS:
                break
            g *= problem.gamma_L
        mu = cl.F @ mu
        Sig = sym(cl.F @ Sig @ cl.F.T + cl.N)
    mus_a, sigs_a = np.array(mus), np.array(sigs)
    ls = stage_all(problem, cl, mus_a, sigs_a, z)[0]
    total = np.sum(problem.gamma_L ** np.arange(len(ls)) * ls)
    traj = Trajectory(mus_a, sigs_a, ls, total)
    if not np.iscomplexobj(traj.stage):
        require_finite("leader objective", np.asarray(total), "the moment recursion")
    return traj


def value(problem: LQRProblem, x: object, *, sol: SoftLQRSolution | None = None):
    r"""``F(x) = E sum_{t<T} gamma_L^t r_L(s_t, u_t)`` exactly (complex ``x`` allowed)."""
    x = problem.check_x(x)
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst) if sol is None else sol
    cl = follower_closed_loop(inst, sol)
    return marginals(problem, cl, problem.z(x)).value  # marginals() checks finiteness
