"""Finite discounted MDPs: ``P[s, a, s']``, ``r[s, a]``, ``gamma``, ``rho[s]``."""

from __future__ import annotations

import numpy as np
import scipy.sparse

from . import _validate
from ._transitions import DenseTransitions, SparseTransitions

#: ``storage="auto"`` keeps dense input dense unless ``S*A*S`` exceeds this and at
#: most :data:`AUTO_SPARSE_DENSITY` of the entries are non-zero. Measured crossover
#: (solve + adjoint hypergradient, 5 successors per row): S = 200, A = 8 (3.2e5 entries)
#: ties; S = 400 (1.3e6 entries) is 1.6x faster sparse; S = 100 is 1.6x faster dense.
AUTO_SPARSE_ENTRIES = 500_000
AUTO_SPARSE_DENSITY = 0.05


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
    storage : {"auto", "dense", "sparse"}
        How ``P`` is held. ``transitions`` may also be a scipy sparse matrix of
        shape ``(S*A, S)`` (row ``s * A + a``; then ``n_actions`` is required).
        ``"auto"``: sparse input stays sparse; dense input becomes sparse when
        ``S*A*S > 5e5`` and at most 5% of its entries are non-zero. Every
        algorithm works with either (see :mod:`exact_bilevel._transitions`).
    n_actions : int, optional
        ``A``, needed only for a sparse ``(S*A, S)`` input.

    Raises
    ------
    ValueError
        Naming the field, the first offending index and the rule.

    Notes
    -----
    The arrays are stored read-only; build a new MDP to change them.
    """

    def __init__(self, transitions: object, reward: object, gamma: float,
                 initial: object | None = None, *, storage: str = "auto",
                 n_actions: int | None = None) -> None:
        if storage not in ("auto", "dense", "sparse"):
            raise ValueError(f"storage = {storage!r}: must be 'auto', 'dense' or 'sparse'")
        if scipy.sparse.issparse(transitions):
            P2 = _validate.sparse_transitions("transitions", transitions, n_actions)
            S, A = P2.shape[1], P2.shape[0] // P2.shape[1]
            op = DenseTransitions(P2.toarray().reshape(S, A, S)) if storage == "dense" \
                else SparseTransitions(P2, A)
        else:
            P = _validate.real_array("transitions", transitions, ndim=3)
            S, A, S2 = P.shape
            if S < 1 or A < 1:
                raise ValueError(f"transitions: need at least one state and one action, "
                                 f"got shape {P.shape}")
            if S2 != S:
                raise ValueError(f"transitions: shape must be (S, A, S), got {P.shape} "
                                 f"(axis 2 has length {S2}, axis 0 has {S})")
            _validate.stochastic_rows("transitions", P)
            sparse = storage == "sparse" or (
                storage == "auto" and P.size > AUTO_SPARSE_ENTRIES
                and np.count_nonzero(P) <= AUTO_SPARSE_DENSITY * P.size)
            if sparse:
                op = SparseTransitions(scipy.sparse.csr_matrix(P.reshape(S * A, S)), A)
            else:
                P.setflags(write=False)
                op = DenseTransitions(P)
        r = _validate.real_array("reward", reward, shape=(S, A))
        g = _validate.discount("gamma", gamma)
        if initial is None:
            rho = np.full(S, 1.0 / S)
        else:
            rho = _validate.real_array("initial", initial, shape=(S,))
            _validate.stochastic_rows("initial", rho)
        self._init_op(op, r, g, rho)

    def _init_op(self, op: DenseTransitions | SparseTransitions, r: np.ndarray, gamma: float,
                 rho: np.ndarray) -> None:
        for arr in (r, rho):
            arr.setflags(write=False)
        self._op = op
        self._r = r
        self._gamma = gamma
        self._rho = rho

    def _init_trusted(self, P: np.ndarray, r: np.ndarray, gamma: float,
                      rho: np.ndarray) -> None:
        P.setflags(write=False)
        self._init_op(DenseTransitions(P), r, gamma, rho)

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
        return self._op.n_states

    @property
    def n_actions(self) -> int:
        return self._op.n_actions

    @property
    def is_sparse(self) -> bool:
        return isinstance(self._op, SparseTransitions)

    @property
    def transitions(self) -> np.ndarray:
        """``P[s, a, s']`` as a dense array (read-only when stored dense; built on
        demand, with ``S^2 A`` memory, when stored sparse)."""
        return self._op.dense()

    @property
    def transition_matrix(self) -> np.ndarray | scipy.sparse.csr_matrix:
        """``P`` as its ``(S*A, S)`` matrix (row ``s * A + a``), sparse or dense as stored."""
        return self._op.matrix()

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
        return np.result_type(self._op.matrix().dtype, self._r)

    def with_reward(self, reward: object) -> FiniteMDP:
        """The same dynamics with another (validated) reward ``r[s, a]``."""
        r = _validate.real_array("reward", reward, shape=(self.n_states, self.n_actions))
        mdp = FiniteMDP.__new__(FiniteMDP)
        mdp._init_op(self._op, r, self._gamma, self._rho)
        return mdp

    def __repr__(self) -> str:
        kind = ", sparse" if self.is_sparse else ""
        return (f"FiniteMDP(n_states={self.n_states}, n_actions={self.n_actions}, "
                f"gamma={self._gamma}{kind})")

    def sample_next(self, s: np.ndarray, a: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``s'[i]`` drawn from ``P(.|s[i], a[i])`` by the uniforms ``u[i]`` (inverse CDF)."""
        return self._op.sample_next(s * self.n_actions + a, u)

    def next_state(self, s: int, a: int, u: float) -> int:
        """One draw of :meth:`sample_next` in scalar Python (the same state for the
        same ``u``; cheaper than numpy for a handful of draws)."""
        return self._op.next_state(s * self.n_actions + a, u)

    # --- linear maps (all analytic; see _transitions) --------------------------
    def expect(self, v: np.ndarray) -> np.ndarray:
        """``(P v)[s, a, ...] = sum_s' P[s, a, s'] v[s', ...]``."""
        return self._op.expect(v)

    def P_pi(self, pi: np.ndarray) -> np.ndarray:
        """State transition matrix of a policy: ``P_pi[s, s'] = sum_a pi[s, a] P[s, a, s']``
        (a scipy sparse matrix when ``P`` is stored sparse)."""
        return self._op.policy_matrix(pi)

    def pullback(self, w: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`expect`: ``(P^T w)[s'] = sum_{s,a} P[s, a, s'] w[s, a]``."""
        return self._op.pullback(w)

