r"""Linear solves with ``M = I - gamma P_pi``: factor once, solve many times.

Every exact quantity in the package reduces to solves with ``M`` or ``M^T``
(values, occupancies, sensitivities, adjoints). A :class:`BellmanFactorization`
is computed once per policy and reused; it is the swappable linear solver of
the package (dense LU here, sparse LU / Krylov can implement the same two
methods). No explicit inverse is ever formed.

``M`` is always invertible for ``gamma < 1``:
``||M^{-1}||_inf <= 1 / (1 - gamma)`` because ``P_pi`` is row-stochastic.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg


class BellmanFactorization(Protocol):
    """Solves with ``M = I - gamma P_pi`` and its transpose."""

    gamma: float

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``x`` with ``M x = b``; ``b`` of shape ``[S]`` or ``[S, k]``."""
        ...

    def solve_transpose(self, b: np.ndarray) -> np.ndarray:
        """``x`` with ``M^T x = b`` (plain transpose, not conjugate)."""
        ...


class DenseLU:
    """LU factorisation (LAPACK ``getrf``) of ``M = I - gamma P_pi``."""

    def __init__(self, P_pi: np.ndarray, gamma: float) -> None:
        S = P_pi.shape[0]
        self.gamma = gamma
        M = np.eye(S, dtype=P_pi.dtype) - gamma * P_pi
        self._lu = scipy.linalg.lu_factor(M, check_finite=False)

    def solve(self, b: np.ndarray) -> np.ndarray:
        return scipy.linalg.lu_solve(self._lu, b, trans=0, check_finite=False)

    def solve_transpose(self, b: np.ndarray) -> np.ndarray:
        return scipy.linalg.lu_solve(self._lu, b, trans=1, check_finite=False)


class SparseLU:
    """Sparse LU (SuperLU, ``scipy.sparse.linalg.splu``) of ``M = I - gamma P_pi``."""

    def __init__(self, P_pi: scipy.sparse.spmatrix, gamma: float) -> None:
        S = P_pi.shape[0]
        self.gamma = gamma
        M = (scipy.sparse.identity(S, dtype=P_pi.dtype, format="csc")
             - gamma * scipy.sparse.csc_matrix(P_pi))
        self._lu = scipy.sparse.linalg.splu(M.tocsc())

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self._lu.solve(np.asarray(b))

    def solve_transpose(self, b: np.ndarray) -> np.ndarray:
        return self._lu.solve(np.asarray(b), trans="T")


def factorize(P_pi: np.ndarray | scipy.sparse.spmatrix,
              gamma: float) -> BellmanFactorization:
    """Factorise ``I - gamma P_pi`` for repeated solves (``P_pi[s, s']``): dense LU for
    an array, sparse LU for a scipy sparse matrix."""
    if scipy.sparse.issparse(P_pi):
        return SparseLU(P_pi, gamma)
    return DenseLU(P_pi, gamma)
