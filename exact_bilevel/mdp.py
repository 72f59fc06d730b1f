"""Finite discounted MDPs: ``P[s, a, s']``, ``r[s, a]``, ``gamma``, ``rho[s]``."""

from __future__ import annotations

import numpy as np

from . import _validate
from ._transitions import DenseTransitions


class FiniteMDP:
    """A finite discounted Markov decision process, validated on construction.

    Parameters
    ----------
    transitions : array_like, shape (S, A, S)
        ``P[s, a, s']``, the probability of moving to ``s'`` after action ``a``
        in state ``s``. Entries must be ``>= 0`` and every row ``P[s, a, :]``
        must sum to 1 within an absolute tolerance of 1e-10
        (:data:`exact_bilevel._validate.PROBABILITY_SUM_TOL`). Rows are not
        renormalised: a row outside the tolerance is an error.
    reward : array_like, shape (S, A)
        Expected immediate reward ``r[s, a]``; finite.
    gamma : float
        Discount factor, ``0 <= gamma < 1``.
    initial : array_like, shape (S,), optional
        Initial state distribution ``rho[s]`` (non-negative, sums to 1).
        Defaults to uniform.

    Raises
    ------
    ValueError
        Naming the field, the first offending index and the rule.

    Notes
    -----
    The arrays are stored read-only; build a new MDP to change them.
    """

    def __init__(self, transitions: object, reward: object, gamma: float,
                 initial: object | None = None) -> None:
        P = _validate.real_array("transitions", transitions, ndim=3)
        S, A, S2 = P.shape
        if S < 1 or A < 1:
            raise ValueError(f"transitions: need at least one state and one action, "
                             f"got shape {P.shape}")
        if S2 != S:
            raise ValueError(f"transitions: shape must be (S, A, S), got {P.shape} "
                             f"(axis 2 has length {S2}, axis 0 has {S})")
        _validate.stochastic_rows("transitions", P)
        r = _validate.real_array("reward", reward, shape=(S, A))
        g = _validate.discount("gamma", gamma)
        if initial is None:
            rho = np.full(S, 1.0 / S)
        else:
            rho = _validate.real_array("initial", initial, shape=(S,))
            _validate.stochastic_rows("initial", rho)
        self._init_trusted(P, r, g, rho)

    def _init_trusted(self, P: np.ndarray, r: np.ndarray, gamma: float,
                      rho: np.ndarray) -> None:
        for arr in (P, r, rho):
            arr.setflags(write=False)
        self._P = P
        self._r = r
        self._gamma = gamma
        self._rho = rho
        self._op = DenseTransitions(P)

    @classmethod
    def _trusted(cls, P: np.ndarray, r: np.ndarray, gamma: float,
                 rho: np.ndarray) -> FiniteMDP:
        """Build without validation (internal: complex-step and high-precision paths)."""
        mdp = cls.__new__(cls)
        mdp._init_trusted(np.array(P), np.array(r), float(gamma), np.array(rho))
        return mdp

    # --- data -----------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return self._P.shape[0]

    @property
    def n_actions(self) -> int:
        return self._P.shape[1]

    @property
    def transitions(self) -> np.ndarray:
        """``P[s, a, s']`` (read-only)."""
        return self._P

    @property
    def reward(self) -> np.ndarray:
        """``r[s, a]`` (read-only)."""
        return self._r

    @property
    def gamma(self) -> float:
        return self._gamma

    @property
    def initial(self) -> np.ndarray:
        """``rho[s]`` (read-only)."""
        return self._rho

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(self._P, self._r)

    def with_reward(self, reward: object) -> FiniteMDP:
        """The same dynamics with another (validated) reward ``r[s, a]``."""
        return FiniteMDP(self._P, reward, self._gamma, self._rho)

    def __repr__(self) -> str:
        return (f"FiniteMDP(n_states={self.n_states}, n_actions={self.n_actions}, "
                f"gamma={self._gamma})")

    # --- linear maps (all analytic; see _transitions) --------------------------
    def expect(self, v: np.ndarray) -> np.ndarray:
        """``(P v)[s, a, ...] = sum_s' P[s, a, s'] v[s', ...]``."""
        return self._op.expect(v)

    def P_pi(self, pi: np.ndarray) -> np.ndarray:
        """State transition matrix of a policy: ``P_pi[s, s'] = sum_a pi[s, a] P[s, a, s']``."""
        return self._op.policy_matrix(pi)

    def pullback(self, w: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`expect`: ``(P^T w)[s'] = sum_{s,a} P[s, a, s'] w[s, a]``."""
        return self._op.pullback(w)
