r"""Rollouts of the linear-Gaussian closed loop (the unclipped model the exact values use).

``N`` episodes of ``T`` steps in parallel::

    s_0 ~ N(mu0, Sigma0),  a_t ~ N(K_L s_t, Sigma_L),  u_t ~ N(-G (A s_t + C a_t), Sigma_u),
    s_{t+1} = A s_t + B u_t + C a_t + xi_t,  xi_t ~ N(0, W)

Shapes: ``s[N, T + 1, n]``, ``a[N, T, p]``, ``u[N, T, m]``, ``r[N, T]`` (the leader's
realised stage rewards ``r_L(s_t, u_t)``, :mod:`exact_bilevel.lqr.model`). Gaussian draws use the
symmetric square root of each covariance (eigendecomposition, negative rounding
eigenvalues set to zero), so PSD-singular covariances (``W = 0``) are exact.

**The standard normals a rollout reads, in order** (:func:`rollout_normals` of them):
``N n`` for the initial states (episode-major), then for each step ``t`` ``N p`` for the
leader's actions, ``N m`` for the follower's and ``N n`` for the state noise. :func:`rollout`
draws them from its generator in this order; :func:`rollouts` walks ``R`` replicates'
episodes together, time-major, from a matrix ``noise[R, K]`` whose row ``r`` is replicate
``r``'s normals: every product is a stacked matrix product (one BLAS call per replicate
and step, with the operands of :func:`rollout`), so row ``r`` equals :func:`rollout` on a
generator that yields row ``r``, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..core._budget import check_allocation
from ..core._validate import real_array
from .model import LQRInstance, LQRProblem
from .riccati import SoftLQRSolution


@dataclasses.dataclass(frozen=True)
class Rollouts:
    """Sampled episodes (module docstring for shapes)."""

    s: np.ndarray
    a: np.ndarray
    u: np.ndarray
    r: np.ndarray


def psd_sqrt(S: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (``S = R R'``)."""
    if S.size == 0:
        return S.copy()
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def leader_reward(problem: LQRProblem, s: np.ndarray, u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Realised ``r_L(s, u)`` for ``s[..., n]``, ``u[..., m]``; shape ``s.shape[:-1]``."""
    lr = problem.leader
    r = -(np.einsum("...i,ij,...j->...", s, lr.Q_L, s)
          + np.einsum("...i,ij,...j->...", u, lr.R_L, u)) - np.sum(lr.cost_weight * z * z)
    if lr.bump_weight != 0.0:
        dlt = s - lr.bump_center
        r = r + lr.bump_weight * np.exp(-0.5 * np.einsum("...i,ij,...j->...", dlt,
                                                          lr.bump_precision, dlt))
    if lr.hinge_weight != 0.0:
        r = r + lr.hinge_weight * np.minimum(s[..., lr.hinge_index], 0.0)
    return r


def _behaviour(pair: tuple[np.ndarray, np.ndarray], p: int, n: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(K_b[p, n], Sigma_b[p, p])`` (``Sigma_b`` symmetric PSD)."""
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise ValueError("leader_behaviour: must be a pair (K_b[p, n], Sigma_b[p, p])")
    K_b = real_array("leader_behaviour[0] (K_b)", pair[0], shape=(p, n))
    S_b = real_array("leader_behaviour[1] (Sigma_b)", pair[1], shape=(p, p))
    if S_b.size and (np.abs(S_b - S_b.T).max() > 1e-12 * max(1.0, np.abs(S_b).max())
                     or np.linalg.eigvalsh(S_b).min() < -1e-12 * max(1.0, np.abs(S_b).max())):
        raise ValueError("leader_behaviour[1] (Sigma_b): must be symmetric positive semidefinite")
    return K_b, S_b


def rollout_normals(problem: LQRProblem, n_episodes: int, horizon: int | None = None) -> int:
    """Standard normals one rollout of ``n_episodes`` episodes reads:
    ``K = N n + T N (p + m + n)`` (module docstring for their order)."""
    T = problem.horizon if horizon is None else horizon
    if T is None:
        raise ValueError("horizon: sampling needs a finite horizon (the problem has none; "
                         "pass horizon=)")
    N, n, m, p = int(n_episodes), problem.n, problem.m, problem.p
    return N * n + T * N * (p + m + n)


def rollout(problem: LQRProblem, inst: LQRInstance, sol: SoftLQRSolution, z: np.ndarray,
            n_episodes: int, rng: np.random.Generator, *, horizon: int | None = None,
            leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None) -> Rollouts:
    """Sample ``n_episodes`` episodes of ``horizon`` (default ``problem.horizon``) steps.

    ``leader_behaviour = (K_b[p, n], Sigma_b[p, p])`` replaces the leader's actions by
    ``a_t ~ N(K_b s_t, Sigma_b)`` (an exploring leader, e.g. the BC-HG authors' random
    warm-up ``K_b = 0, Sigma_b = I``); the follower still plays its soft-optimal policy
    for ``inst`` and observes ``a_t``. Reads :func:`rollout_normals` standard normals from
    ``rng`` (module docstring); :func:`rollouts` with that row gives the same episodes.
    """
    T = problem.horizon if horizon is None else horizon
    K = rollout_normals(problem, n_episodes, T)
    N, n, m, p = int(n_episodes), problem.n, problem.m, problem.p
    check_allocation("rollout states", (N, T + 1, n + m + p + 1))
    noise = rng.standard_normal((1, K))
    ro = rollouts(problem, [inst], [sol], [z], N, noise, horizon=T,
                  leader_behaviour=leader_behaviour)
    return Rollouts(ro.s[0], ro.a[0], ro.u[0], ro.r[0])


def _rows(mats: Sequence[np.ndarray], R: int) -> np.ndarray:
    """``mats[r]`` stacked ``[R, a, b]`` (``mats`` of length ``R``), or the one matrix
    ``mats[0]`` itself (length 1: shared; matmul broadcasts it)."""
    if len(mats) == 1:
        return mats[0]
    if len(mats) != R:
        raise ValueError(f"rollouts: {len(mats)} matrices for {R} replicates (give 1 or {R})")
    return np.stack(mats)


def _t(M: np.ndarray) -> np.ndarray:
    """The transpose of the last two axes (a view: the operand layout of ``M.T``)."""
    return np.swapaxes(M, -1, -2)


def rollouts(problem: LQRProblem, instances: Sequence[LQRInstance],
             solutions: Sequence[SoftLQRSolution], z: Sequence[np.ndarray], n_episodes: int,
             noise: np.ndarray, *, horizon: int | None = None,
             leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None) -> Rollouts:
    """``R`` replicates' rollouts of ``n_episodes`` episodes each, walked together.

    Row ``r`` of ``noise[R, K]`` (``K`` = :func:`rollout_normals`) is replicate ``r``'s
    standard normals in the order of the module docstring; ``instances``, ``solutions``
    and ``z`` hold one entry per replicate, or one shared by all (the zeroth-order
    estimator deploys a different ``x`` per replicate). Shapes with a leading replicate
    axis: ``s[R, N, T + 1, n]``, ``a[R, N, T, p]``, ``u[R, N, T, m]``, ``r[R, N, T]``;
    replicate ``r`` equals :func:`rollout` reading row ``r``, bit for bit.
    """
    T = problem.horizon if horizon is None else horizon
    K = rollout_normals(problem, n_episodes, T)
    noise = np.asarray(noise)
    if noise.ndim != 2 or noise.shape[1] != K or noise.dtype != np.float64 \
            or noise.shape[0] < 1:
        raise ValueError(f"noise: must be a float64 matrix [R, {K}] (R >= 1), got "
                         f"{noise.dtype} {noise.shape}")
    R, N, n, m, p = noise.shape[0], int(n_episodes), problem.n, problem.m, problem.p
    check_allocation("rollout states [R, N, T + 1, n + m + p + 1]",
                     (R, N, T + 1, n + m + p + 1))
    if len(z) not in (1, R):
        raise ValueError(f"z: {len(z)} entries for {R} replicates (give 1 or {R})")
    s = np.empty((R, N, T + 1, n))
    a = np.empty((R, N, T, p))
    u = np.empty((R, N, T, m))
    if leader_behaviour is None:
        K_b = _rows([i.K_L for i in instances], R)
        RL = _rows([psd_sqrt(i.Sigma_L) for i in instances], R)
    else:
        K_b, S_b = _behaviour(leader_behaviour, p, n)
        RL = psd_sqrt(S_b)
    A, B, C = (_rows([getattr(i, f) for i in instances], R) for f in ("A", "B", "C"))
    RW = _rows([psd_sqrt(i.W) for i in instances], R)
    G = _rows([q.G for q in solutions], R)
    RU = _rows([psd_sqrt(q.Sigma_u) for q in solutions], R)
    s[:, :, 0] = problem.mu0 + noise[:, :N * n].reshape(R, N, n) @ psd_sqrt(problem.Sigma0)
    steps = noise[:, N * n:].reshape(R, T, N * (p + m + n))
    ia, iu = N * p, N * (p + m)
    for t in range(T):
        e = steps[:, t]
        st = s[:, :, t]
        at = st @ _t(K_b) + e[:, :ia].reshape(R, N, p) @ RL
        y = st @ _t(A) + at @ _t(C)
        ut = -y @ _t(G) + e[:, ia:iu].reshape(R, N, m) @ RU
        s[:, :, t + 1] = y + ut @ _t(B) + e[:, iu:].reshape(R, N, n) @ RW
        a[:, :, t] = at
        u[:, :, t] = ut
    r = np.stack([leader_reward(problem, s[i, :, :T], u[i], z[i if len(z) > 1 else 0])
                  for i in range(R)])
    return Rollouts(s, a, u, r)
