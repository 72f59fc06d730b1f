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

What is exact and what is summed: with a finite horizon every step is computed (two
``n x n`` matrix products a step, ``O(T n^3)``). With ``horizon=None`` the quadratic part
(everything but the bump and the hinge) is exact in closed form from one Stein equation
for ``sum_t gamma_L^t (mu_t mu_t' + Sigma_t)``; the bump and the hinge are summed step by
step until a proven bound on the rest (:func:`_tail_bound`) is below ``1e-17`` of the
total (a hinge without a bump needs only ``mu_t[i]``, ``Sigma_t[i, i]``: ``O(n^2)`` a step,
:func:`_hinge_series`). Derivation: :ref:`docs/math.md, section 8 <math-lqr>`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg
import scipy.special

from ..core._budget import check_allocation, max_bytes
from ..core._progress import progress_bar
from ..core.errors import require_finite
from .model import LeaderReward, LQRInstance, LQRProblem
from .riccati import SoftLQRSolution, discounted_lyapunov, solve_soft_lqr, sym

#: An infinite-horizon sum of the non-Gaussian terms ends once its tail bound is below
#: this fraction of the total.
_FLOOR = 1e-17
_MAX_STEPS = 1_000_000
#: Steps per chunk (stage terms are evaluated a chunk at a time); one chunk of
#: ``Sigma_t`` takes at most ``_CHUNK_BYTES``.
_CHUNK_STEPS = 64
_CHUNK_BYTES = 64 * 2**20
#: ``Sigma[T, n, n]`` is kept when it takes at most ``1 / _STORE_FRACTION`` of the memory
#: budget; above that, one checkpoint per chunk (the reverse sweep recomputes chunks).
_STORE_FRACTION = 8


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
    E, gmu[:, i], gS[:, i, i] = _hinge_parts(lr, m, v)
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
    r"""The time-stepped Gaussian state marginals and the leader's objective.

    Attributes
    ----------
    mu : ndarray, shape (T, n)
        ``mu_t`` for the time-stepped steps ``t < T``.
    Sigma : ndarray, shape (T, n, n), or None
        ``Sigma_t``; ``None`` when keeping all of them would take more than
        ``1/8`` of the memory budget (the reverse sweep then recomputes them chunk by
        chunk from checkpoints).
    stage : ndarray, shape (T,)
        Expected stage rewards ``l(mu_t, Sigma_t)`` (with ``horizon=None``, a hinge and no
        bump: the hinge terms only, and ``Sigma`` is None).
    value : float
        ``F(x)``, exact: with ``horizon=None`` the quadratic part is summed in closed form
        (a Stein equation) and only the non-Gaussian terms over the ``T`` steps here.
    second_sum : ndarray, shape (n, n)
        ``sum_t gamma_L^t (mu_t mu_t' + Sigma_t)`` over the whole horizon.
    weight_sum : float
        ``sum_t gamma_L^t`` over the whole horizon (``1 / (1 - gamma_L)`` if infinite).
    """

    mu: np.ndarray
    Sigma: np.ndarray | None
    stage: np.ndarray
    value: complex | float
    second_sum: np.ndarray | None = None
    weight_sum: float = 0.0
    chunks: tuple = dataclasses.field(default=(), repr=False)
    checkpoints: tuple = dataclasses.field(default=(), repr=False)
    hinge_series: tuple | None = dataclasses.field(default=None, repr=False)

    def chunk_sigmas(self, cl: ClosedLoop, k: int) -> np.ndarray:
        """``Sigma_t`` for ``t`` in chunk ``k`` (stored, or recomputed from its checkpoint)."""
        t0, t1 = self.chunks[k]
        if self.Sigma is not None:
            return self.Sigma[t0:t1]
        Sig = self.checkpoints[k]
        out = np.empty((t1 - t0, *Sig.shape), dtype=Sig.dtype)
        _fill_sigmas(cl, Sig, out)
        return out


def _fill_sigmas(cl: ClosedLoop, Sig: np.ndarray, out: np.ndarray) -> None:
    """``out[j] = Sigma_{t0 + j}`` from ``Sigma_{t0} = Sig``: ``Sigma' = F Sigma F' + N``
    (two matrix products a step)."""
    Ft = cl.F.T
    for j in range(out.shape[0]):
        if j:
            Sig = sym((cl.F @ Sig) @ Ft + cl.N)
        out[j] = Sig


def quadratic_weight(problem: LQRProblem, cl: ClosedLoop) -> tuple[np.ndarray, object]:
    """``(Q_L + K_bar'R_L K_bar, -tr(R_L Sigma_uu0) - sum_k w_k z_k^2)``: the quadratic stage
    reward is ``-(mu'QK mu + tr(QK Sigma)) + const`` (``const`` without ``z``)."""
    lr = problem.leader
    return lr.Q_L + cl.K_bar.T @ lr.R_L @ cl.K_bar, -np.trace(lr.R_L @ cl.Sigma_uu0)


def _has_extra(lr: LeaderReward) -> bool:
    return lr.bump_weight != 0.0 or lr.hinge_weight != 0.0


def _hinge_parts(lr: LeaderReward, m: np.ndarray, v: np.ndarray):
    """``(E, dE/dm, dE/dv)`` of ``w_h E min(s_i, 0)``, ``s_i ~ N(m, v)``, over a batch."""
    w = lr.hinge_weight
    det = np.real(v) <= 0.0
    sig = np.sqrt(np.where(det, 1.0, v))
    u = m / sig
    Phi = scipy.special.ndtr(-u)
    phi = np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)
    neg = np.real(m) < 0.0
    E = w * np.where(det, np.where(neg, m, 0.0 * m), m * Phi - sig * phi)
    return E, w * np.where(det, neg.astype(float), Phi), np.where(det, 0.0, -w * phi / (2.0 * sig))


def extra_terms(lr: LeaderReward, mus: np.ndarray, sigs: np.ndarray, *, grad: bool = False):
    """The non-Gaussian stage terms (bump + hinge) over a batch of steps.

    Returns ``E[c]``, or with ``grad`` ``(E[c], dE/dmu[c, n], dE/dSigma[c, n, n] or None,
    dE/dSigma_ii[c])`` (``i`` the hinge index; the bump's full ``dE/dSigma`` is ``None``
    without a bump).
    """
    c, n = mus.shape
    dtype = np.result_type(mus, sigs)
    E = np.zeros(c, dtype=dtype)
    gmu = np.zeros((c, n), dtype=dtype) if grad else None
    gS = gii = None
    if lr.bump_weight != 0.0:
        e, em, eS = bump(lr, mus, sigs)
        E = E + e
        if grad:
            gmu += em
            gS = eS
    if lr.hinge_weight != 0.0:
        i = lr.hinge_index
        e, dm, gii = _hinge_parts(lr, mus[:, i], sigs[:, i, i])
        E = E + e
        if grad:
            gmu[:, i] += dm
    return (E, gmu, gS, gii) if grad else E


def _chunk_length(n: int, itemsize: int) -> int:
    return int(max(1, min(_CHUNK_STEPS, _CHUNK_BYTES // max(1, n * n * itemsize))))


def _tail_bound(problem: LQRProblem, cl: ClosedLoop):
    r"""``b(t, tr second_t)``: a bound on ``sum_{s >= t} gamma_L^s |bump_s + hinge_s|``.

    ``|bump| <= |w_b|`` (``det(I + Sigma D) >= 1``, the exponent is ``<= 0``). For the hinge,
    ``|E min(s_i, 0)| <= sqrt(E s_i^2)``; Cauchy-Schwarz with weights ``gamma^s`` and
    ``sum_{s >= t} gamma^s second_s = gamma^t Z``, ``Z = gamma F Z F' + H``,
    ``H = second_t + gamma N / (1 - gamma) <= tr(H) I``, so ``Z_ii <= tr(H) Zi_ii`` with
    ``Zi = gamma F Zi F' + I``: the tail is at most
    ``|w_h| gamma^t sqrt(tr(H) Zi_ii / (1 - gamma))``.
    """
    lr, g = problem.leader, problem.gamma_L
    Fr = np.real(cl.F)
    zi = 0.0
    if lr.hinge_weight != 0.0:
        i = lr.hinge_index
        zi = float(np.real(discounted_lyapunov(Fr, np.eye(Fr.shape[0]), g)[i, i]))
    trN = float(np.trace(np.real(cl.N)))

    def bound(gt: float, tr_second: float) -> float:
        b = abs(lr.bump_weight) * gt / (1.0 - g)
        if lr.hinge_weight != 0.0:
            H = max(tr_second, 0.0) + g * trN / (1.0 - g)
            b += abs(lr.hinge_weight) * gt * np.sqrt(max(zi, 0.0) * H / (1.0 - g))
        return b

    return bound


def marginals(problem: LQRProblem, cl: ClosedLoop, z: np.ndarray, *,
              progress: bool = False) -> Trajectory:
    r"""The state marginals and ``F = sum_t gamma_L^t l_t`` (module docstring).

    Finite horizon ``T``: the moment recursion, two ``n x n`` matrix products a step
    (``O(T n^3)``), stage rewards evaluated in batches of steps. ``Sigma[T, n, n]`` is
    kept when it takes at most ``1/8`` of the memory budget, else only one checkpoint per
    chunk of steps (the reverse sweep recomputes the chunk).

    ``horizon=None``: ``sum_t gamma^t (mu_t mu_t' + Sigma_t) = S`` solves the Stein
    equation ``S = gamma F S F' + mu_0 mu_0' + Sigma_0 + gamma N / (1 - gamma)``, so the
    quadratic part of ``F`` is exact after one solve. The Gaussian bump and the hinge
    have no closed-form sum: they are summed step by step until the tail bound of
    :func:`_tail_bound` falls below ``1e-17`` of the total. Raises ``ValueError`` when
    ``gamma_L rho(F)^2 >= 1`` (the leader's return is infinite).

    ``progress`` shows a bar (on a terminal) over the steps.
    """
    T = problem.horizon
    lr, g = problem.leader, problem.gamma_L
    if T is None:
        rho = float(np.max(np.abs(np.linalg.eigvals(np.real(cl.F)))))
        if g * rho * rho >= 1.0:
            raise ValueError(f"horizon=None: gamma_L rho(F)^2 = {g * rho * rho:.4g} "
                             ">= 1, the leader's infinite-horizon return diverges; set a horizon")
    dtype = np.result_type(cl.F, cl.N, problem.mu0)
    n = cl.F.shape[0]
    itemsize = np.dtype(dtype).itemsize
    QK, const = quadratic_weight(problem, cl)
    const = const - np.sum(lr.cost_weight * z * z)
    qk_flat = np.ascontiguousarray(QK.T).reshape(-1)
    mu0 = problem.mu0.astype(dtype)
    Sig0 = problem.Sigma0.astype(dtype)
    extra = _has_extra(lr)

    if T is None:
        S2 = discounted_lyapunov(cl.F, np.outer(mu0, mu0) + Sig0 + g / (1.0 - g) * cl.N, g)
        S2 = sym(S2)
        quad_total = -np.sum(QK.T * S2) + const / (1.0 - g)
        if not extra:
            traj = Trajectory(np.zeros((0, n), dtype), np.zeros((0, n, n), dtype),
                              np.zeros(0, dtype), quad_total, S2, 1.0 / (1.0 - g))
            _check_value(traj)
            return traj
        if lr.bump_weight == 0.0:
            return _hinge_series(problem, cl, mu0, Sig0, quad_total, S2, progress)
        bound = _tail_bound(problem, cl)
        cap = _MAX_STEPS
    else:
        cap = T

    c = _chunk_length(n, itemsize)
    store_limit = max_bytes() // _STORE_FRACTION
    store = (cap if T is not None else c) * n * n * itemsize <= store_limit
    check_allocation("state means mu[T, n]", (T or c, n), itemsize)
    if T is not None:
        if store:
            check_allocation("state marginals Sigma[T, n, n]", (T, n, n), itemsize)
        else:
            check_allocation("checkpoints of Sigma[T, n, n]", (-(-T // c) + c, n, n), itemsize)
    cap0 = T if T is not None else 4 * c
    mus = np.empty((cap0, n), dtype=dtype)
    sigs = np.empty((cap0, n, n), dtype=dtype) if store else None
    buf = np.empty((c, n, n), dtype=dtype)
    stage_vals, chunks, ckpts = [], [], []
    S2w = np.zeros((n, n), dtype=dtype)
    total = 0.0
    mu, Sig = mu0, Sig0
    t = 0
    bar = progress_bar(total=T, desc="LQR marginals", enabled=progress)
    try:
        while t < cap:
            k = min(c, cap - t)
            if t + k > mus.shape[0]:                 # infinite horizon: grow by doubling
                new = 2 * mus.shape[0]
                check_allocation("state means mu[T, n]", (new, n), itemsize)
                mus = np.concatenate([mus, np.empty_like(mus)])
                if store and new * n * n * itemsize > store_limit:
                    ckpts = [sigs[t0].copy() for t0, _ in chunks]
                    store, sigs = False, None
                if store:
                    check_allocation("state marginals Sigma[T, n, n]", (new, n, n), itemsize)
                    sigs = np.concatenate([sigs, np.empty_like(sigs)])
                else:
                    check_allocation("checkpoints of Sigma[T, n, n]", (len(ckpts) + 1 + c, n, n),
                                     itemsize)
            block = sigs[t:t + k] if store else buf[:k]
            if not store:
                ckpts.append(Sig)
            F, Ft, N = cl.F, cl.F.T, cl.N
            for j in range(k):
                if j:
                    mu = F @ mu
                    Sig = (F @ Sig) @ Ft + N
                    Sig = 0.5 * (Sig + Sig.T)              # sym
                mus[t + j] = mu
                block[j] = Sig
            m_blk = mus[t:t + k]
            w = g ** np.arange(t, t + k)
            quad = -(np.sum((m_blk @ QK.T) * m_blk, axis=1)
                     + block.reshape(k, -1) @ qk_flat)
            S2w = S2w + (m_blk.T * w) @ m_blk + np.tensordot(w, block, axes=1)
            vals = quad + const
            if extra:
                e = extra_terms(lr, m_blk, block)
                vals = vals + e
            if T is None:
                # stop at the first step whose tail bound is below the floor of the total
                run = quad_total + total + np.concatenate([[0.0], np.cumsum(w * e)[:-1]])
                tr2 = np.real(np.sum(m_blk * m_blk, axis=1) + np.einsum("tii->t", block))
                stop = next((j for j in range(k) if bound(g ** (t + j), float(tr2[j]))
                             <= _FLOOR * max(abs(run[j]), 1e-300)), None)
                if stop is not None:
                    k = stop
                    vals, w = vals[:k], w[:k]
                    if k == 0 and not store:
                        ckpts.pop()
                    if k:
                        chunks.append((t, t + k))
                        stage_vals.append(vals)
                        total = total + np.sum(w * e[:k])
                    t += k
                    break
                total = total + np.sum(w * e)
            else:
                total = total + np.sum(w * vals)
            chunks.append((t, t + k))
            stage_vals.append(vals)
            t += k
            bar.update(k)
            if t < cap:
                mu = cl.F @ mu
                Sig = sym((cl.F @ Sig) @ cl.F.T + cl.N)
    finally:
        bar.close()
    stage_arr = np.concatenate(stage_vals) if stage_vals else np.zeros(0, dtype)
    if T is None:
        value_, S2_, wsum = quad_total + total, S2, 1.0 / (1.0 - g)
    else:
        value_, S2_, wsum = total, sym(S2w), float(np.sum(g ** np.arange(T)))
    traj = Trajectory(mus[:t], sigs[:t] if store else None, stage_arr, value_, S2_, wsum,
                      tuple(chunks), tuple(ckpts))
    _check_value(traj)
    return traj


def _hinge_series(problem: LQRProblem, cl: ClosedLoop, mu0: np.ndarray, Sig0: np.ndarray,
                  quad_total, S2: np.ndarray, progress: bool) -> Trajectory:
    r"""``horizon=None`` with the hinge but no bump: ``O(n^2)`` a step.

    The hinge needs only ``m_t = mu_t[i] = r_t'mu_0`` and
    ``v_t = Sigma_t[i, i] = r_t'Sigma_0 r_t + sum_{j<t} r_j'N r_j`` with ``r_0 = e_i``,
    ``r_{t+1} = F'r_t``. The rest from ``t`` is at most
    ``|w_h| gamma^t sqrt((C_t / (1 - gamma) + c r_t'Z r_t) / (1 - gamma))`` with
    ``C_t = sum_{j<t} r_j'N r_j``, ``c = |mu_0|^2 + ||Sigma_0|| + gamma ||N|| / (1 - gamma)``,
    ``Z = gamma F Z F' + I`` (:ref:`docs/math.md, section 8 <math-lqr>`); the sum stops when that is
    below ``1e-17`` of the total. ``stage`` then holds the hinge terms only, ``Sigma`` is None.
    """
    lr, g = problem.leader, problem.gamma_L
    F, N = cl.F, cl.N
    n = F.shape[0]
    i = lr.hinge_index
    Fr, Nr = np.real(F), np.real(N)
    Z = np.real(discounted_lyapunov(Fr, np.eye(n), g))
    coef = (float(np.sum(np.real(mu0) ** 2)) + float(np.linalg.norm(np.real(Sig0), 2))
            + g * float(np.linalg.norm(Nr, 2)) / (1.0 - g))
    dtype = np.result_type(F, N, mu0)
    rows, ms, vs, es = [], [], [], []
    r = np.zeros(n, dtype=dtype)
    r[i] = 1.0
    C = 0.0 * r[0]
    total = quad_total
    Ft = F.T
    t = 0
    bar = progress_bar(total=None, desc="LQR hinge series", enabled=progress)
    try:
        while t < _MAX_STEPS:                        # blocks of steps, the stop found after
            k = min(_CHUNK_STEPS, _MAX_STEPS - t)
            Rb = np.empty((k, n), dtype=dtype)
            Cb = np.empty(k, dtype=dtype)
            for j in range(k):
                Rb[j] = r
                Cb[j] = C
                C = C + r @ (N @ r)
                r = Ft @ r
            mb = Rb @ mu0
            vb = np.sum((Rb @ Sig0) * Rb, axis=1) + Cb
            eb = _hinge_parts(lr, mb, vb)[0]
            gt = g ** np.arange(t, t + k)
            Rr = np.real(Rb)
            bnd = abs(lr.hinge_weight) * gt * np.sqrt(np.maximum(
                np.real(Cb) / (1.0 - g) + coef * np.sum((Rr @ Z) * Rr, axis=1), 0.0) / (1.0 - g))
            run = total + np.concatenate([[0.0], np.cumsum(gt * eb)[:-1]])
            hit = np.nonzero(bnd <= _FLOOR * np.maximum(np.abs(run), 1e-300))[0]
            if hit.size:
                k = int(hit[0])
            rows.append(Rb[:k])
            ms.append(mb[:k])
            vs.append(vb[:k])
            es.append(eb[:k])
            total = total + np.sum(gt[:k] * eb[:k])
            t += k
            bar.update(k)
            if hit.size:
                break
    finally:
        bar.close()
    T = t
    check_allocation("hinge series r[T, n]", (T, n), np.dtype(dtype).itemsize)
    R = np.concatenate(rows) if rows else np.zeros((0, n), dtype)
    mus = np.empty((T, n), dtype=dtype)
    mu = mu0
    for t in range(T):
        mus[t] = mu
        mu = F @ mu
    traj = Trajectory(mus, None, np.concatenate(es), total, S2, 1.0 / (1.0 - g),
                      hinge_series=(R, np.concatenate(ms), np.concatenate(vs)))
    _check_value(traj)
    return traj


def _check_value(traj: Trajectory) -> None:
    if not np.iscomplexobj(traj.value):
        require_finite("leader objective", np.asarray(traj.value), "the moment recursion")


def value(problem: LQRProblem, x: object, *, sol: SoftLQRSolution | None = None,
          progress: bool = False):
    r"""``F(x) = E sum_{t<T} gamma_L^t r_L(s_t, u_t)`` exactly (complex ``x`` allowed)."""
    x = problem.check_x(x)
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst) if sol is None else sol
    cl = follower_closed_loop(inst, sol)
    return marginals(problem, cl, problem.z(x), progress=progress).value


def undiscounted_return(problem: LQRProblem, x: object, *, sol: SoftLQRSolution | None = None
                        ) -> float:
    r"""The leader's *undiscounted* finite-horizon return, exactly.

    .. math::

        J(x) = E \sum_{t < T} r_L(s_t, u_t) = \sum_{t < T} l(\mu_t, \Sigma_t),

    the stage terms ``l`` of :func:`marginals` (the module docstring) summed without
    ``gamma_L``, over the Gaussian state marginals ``s_t ~ N(mu_t[n], Sigma_t[n, n])`` of
    the closed loop of the soft-optimal follower at ``x[d]``. This is the BC-HG authors'
    plotted metric ``Evaluation/AverageTargetReturn`` of the LQR game (the sum of the
    leader's reward over one ``T``-step episode), whereas :func:`value` is
    ``F(x) = sum_t gamma_L^t l_t``. Raises ``ValueError`` for ``horizon=None`` (the
    undiscounted sum of an infinite horizon is not defined here).
    """
    if problem.horizon is None:
        raise ValueError("horizon: the undiscounted return needs a finite horizon "
                         "(the problem has horizon=None)")
    x = problem.check_x(x)
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst) if sol is None else sol
    traj = marginals(problem, follower_closed_loop(inst, sol), problem.z(x))
    total = np.sum(traj.stage)
    if not np.iscomplexobj(total):
        require_finite("undiscounted leader return", np.asarray(total), "the moment recursion")
        return float(total)
    return total
