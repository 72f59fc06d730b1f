"""The one internal interface through which every algorithm touches ``P[s, a, s']``.

Keeping transition access behind :class:`DenseTransitions` lets a sparse
``(S*A, S)`` matrix replace the dense array later without touching the solver,
the evaluation or the hypergradient code. All methods are linear in their
argument and analytic (they work unchanged on complex arrays, which the
complex-step checks rely on).
"""

from __future__ import annotations

import numpy as np


class DenseTransitions:
    """Dense transition tensor ``P[s, a, s']`` viewed as a ``(S*A, S)`` matrix."""

    def __init__(self, P: np.ndarray) -> None:
        S, A, _ = P.shape
        self.n_states = S
        self.n_actions = A
        self._P = P
        self._P2 = P.reshape(S * A, S)

    def dense(self) -> np.ndarray:
        """Return ``P[s, a, s']``."""
        return self._P

    def expect(self, v: np.ndarray) -> np.ndarray:
        """``(P v)[s, a, ...] = sum_s' P[s, a, s'] v[s', ...]`` for ``v[S, ...]``."""
        S, A = self.n_states, self.n_actions
        rest = v.shape[1:]
        out = self._P2 @ v.reshape(S, -1)
        return out.reshape((S, A, *rest))

    def policy_matrix(self, pi: np.ndarray) -> np.ndarray:
        """``P_pi[s, s'] = sum_a pi[s, a] P[s, a, s']`` for ``pi[S, A]``."""
        return np.matmul(pi[:, None, :], self._P)[:, 0, :]

    def pullback(self, w: np.ndarray) -> np.ndarray:
        """``(P^T w)[s', ...] = sum_{s,a} P[s, a, s'] w[s, a, ...]`` for ``w[S, A, ...]``."""
        S, A = self.n_states, self.n_actions
        rest = w.shape[2:]
        out = self._P2.T @ w.reshape(S * A, -1)
        return out.reshape((S, *rest))
