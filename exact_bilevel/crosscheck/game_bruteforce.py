r"""Brute-force value of a two-player Markov game, sharing no code with :mod:`exact_bilevel.games`.

The follower's soft best response is found by plain soft value iteration on the
game's own tables (no reduction to a bilevel problem, no Newton solver), and the
leader's objective by evaluating the *joint* Markov chain on the original state
space (``s`` only):

* follower observes ``s``: ``Q(s, aF) = sum_aL piL(aL|s) [rF(s, aL, aF) + gamma
  sum_s' P(s'|s, aL, aF) V(s')]``, ``V(s) = tau log sum_aF exp(Q(s, aF) / tau)``;
* follower observes ``(s, aL)``: ``Q(s, aL, aF) = rF + gamma sum_s' P(s'|s, aL, aF)
  sum_aL' piL(aL'|s') V(s', aL')``, ``V(s, aL) = tau log sum_aF exp(Q / tau)``;

then ``P_joint(s'|s) = sum_{aL, aF} piL(aL|s) piF(aF|.) P(s'|s, aL, aF)``,
``r_joint(s) = sum piL piF r_L`` and ``F = rho^T (I - gamma_L P_joint)^{-1} r_joint``.
Finite differences of :func:`game_value` are an independent check of the game
hypergradient, including the leader's own discount ``gamma_L != gamma`` and the
initial-law term.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import ConvergenceError


def _soft_max(q: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """``(tau log sum exp(q / tau), softmax(q / tau))`` over the last axis, max-shifted."""
    m = q.max(axis=-1, keepdims=True)
    e = np.exp((q - m) / tau)
    z = e.sum(axis=-1, keepdims=True)
    return (m + tau * np.log(z))[..., 0], e / z


def follower_response(P: np.ndarray, rF: np.ndarray, piL: np.ndarray, gamma: float,
                      tau: float, observes: str, *, tol: float = 1e-15,
                      max_iter: int = 100_000) -> np.ndarray:
    """The follower's soft-optimal policy: ``piF[s, aF]`` (observes ``"state"``) or
    ``piF[s, aL, aF]`` (observes ``"state_and_leader_action"``), by soft value
    iteration until the sup-norm update is below ``tol * (1 + |V|)``.

    Shapes: ``P[s, aL, aF, s']``, ``rF[s, aL, aF]``, ``piL[s, aL]``.
    """
    S, AL = P.shape[:2]
    v = np.zeros(S) if observes == "state" else np.zeros((S, AL))
    for _ in range(max_iter):
        if observes == "state":
            q = np.einsum("sl,slf->sf", piL, rF + gamma * P @ v)
        else:
            w = np.sum(piL * v, axis=1)  # W(s') = sum_aL' piL V(s', aL')
            q = rF + gamma * P @ w
        v_new, pi = _soft_max(q, tau)
        step = float(np.max(np.abs(v_new - v)))
        v = v_new
        if step <= tol * (1.0 + float(np.max(np.abs(v)))):
            return pi
    raise ConvergenceError("game soft value iteration", step, tol, max_iter,
                           "sweep limit reached")


def game_value(P: np.ndarray, rF: np.ndarray, rL: np.ndarray, rho: np.ndarray,
               piL: np.ndarray, gamma: float, gamma_leader: float, tau: float,
               observes: str) -> float | complex:
    """Leader objective ``F = E_{s0 ~ rho}[sum_t gamma_L^t r_L(s_t, aL_t, aF_t)]`` under the
    leader policy ``piL[s, aL]`` and the follower's soft best response. Analytic in
    ``piL``: a complex ``piL`` (complex step) gives a complex ``F``."""
    piF = follower_response(P, rF, piL, gamma, tau, observes)
    joint = (piL[:, :, None] * piF[:, None, :] if observes == "state"
             else piL[:, :, None] * piF)  # [s, aL, aF]
    P_joint = np.einsum("slf,slft->st", joint, P)
    r_joint = np.sum(joint * rL, axis=(1, 2))
    v = np.linalg.solve(np.eye(P.shape[0]) - gamma_leader * P_joint, r_joint)
    out = rho @ v
    return complex(out) if np.iscomplexobj(out) else float(out)
