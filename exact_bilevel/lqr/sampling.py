r"""Rollouts of the linear-Gaussian closed loop (the unclipped model the exact values use).

``N`` episodes of ``T`` steps in parallel::

    s_0 ~ N(mu0, Sigma0),  a_t ~ N(K_L s_t, Sigma_L),  u_t ~ N(-G (A s_t + C a_t), Sigma_u),
    s_{t+1} = A s_t + B u_t + C a_t + xi_t,  xi_t ~ N(0, W)

Shapes: ``s[N, T + 1, n]``, ``a[N, T, p]``, ``u[N, T, m]``, ``r[N, T]`` (the leader's
realised stage rewards ``r_L(s_t, u_t)``, :mod:`exact_bilevel.lqr.model`). Gaussian draws use the
symmetric square root of each covariance (eigendecomposition, negative rounding
eigenvalues set to zero), so PSD-singular covariances (``W = 0``) are exact.
"""

from __future__ import annotations

import dataclasses

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


def rollout(problem: LQRProblem, inst: LQRInstance, sol: SoftLQRSolution, z: np.ndarray,
            n_episodes: int, rng: np.random.Generator, *, horizon: int | None = None,
            leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None) -> Rollouts:
    """Sample ``n_episodes`` episodes of ``horizon`` (default ``problem.horizon``) steps.

    ``leader_behaviour = (K_b[p, n], Sigma_b[p, p])`` replaces the leader's actions by
    ``a_t ~ N(K_b s_t, Sigma_b)`` (an exploring leader, e.g. the BC-HG authors' random
    warm-up ``K_b = 0, Sigma_b = I``); the follower still plays its soft-optimal policy
    for ``inst`` and observes ``a_t``.
    """
    T = problem.horizon if horizon is None else horizon
    if T is None:
        raise ValueError("horizon: sampling needs a finite horizon (the problem has none; "
                         "pass horizon=)")
    N, n, m, p = int(n_episodes), problem.n, problem.m, problem.p
    check_allocation("rollout states", (N, T + 1, n + m + p + 1))
    s = np.empty((N, T + 1, n))
    a = np.empty((N, T, p))
    u = np.empty((N, T, m))
    s[:, 0] = problem.mu0 + rng.standard_normal((N, n)) @ psd_sqrt(problem.Sigma0)
    K_b, S_b = (inst.K_L, inst.Sigma_L) if leader_behaviour is None else _behaviour(
        leader_behaviour, p, n)
    RL, RU, RW = psd_sqrt(S_b), psd_sqrt(sol.Sigma_u), psd_sqrt(inst.W)
    for t in range(T):
        st = s[:, t]
        at = st @ K_b.T + rng.standard_normal((N, p)) @ RL
        y = st @ inst.A.T + at @ inst.C.T
        ut = -y @ sol.G.T + rng.standard_normal((N, m)) @ RU
        s[:, t + 1] = y + ut @ inst.B.T + rng.standard_normal((N, n)) @ RW
        a[:, t] = at
        u[:, t] = ut
    r = leader_reward(problem, s[:, :T], u, z)
    return Rollouts(s, a, u, r)
