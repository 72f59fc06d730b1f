"""The one internal interface through which every algorithm touches ``P[s, a, s']``.

Two implementations of the same five methods: :class:`DenseTransitions` (a
``[S, A, S]`` array) and :class:`SparseTransitions` (a scipy CSR ``(S*A, S)``
matrix, row ``s * A + a``). The solver, the evaluation, the hypergradient and
the samplers only call these methods, so either storage serves every
algorithm. The linear maps are analytic (the dense one works unchanged on
complex arrays, which the complex-step checks rely on).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import scipy.sparse

#: Largest dense ``S * A * S`` whose row CDFs :meth:`DenseTransitions.next_state` keeps
#: as Python lists (faster scalar search); larger ones are searched in numpy rows.
LIST_CDF_ENTRIES = 2**16


def inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index ``j`` with ``cdf[j-1] <= u * cdf[-1] < cdf[j]`` for each row of ``cdf[n, m]``.

    Scaling ``u`` by the row total keeps the draw inside the support even when a
    row's sum is ``1 - 1e-16``; an entry with probability 0 is never drawn. Computed as
    the first ``j`` with ``u * total < cdf[j]`` (``argmax`` of a boolean row, faster than
    counting; one exists: ``u <= 1 - 2^-53`` gives ``u * total < total`` in floating point).
    """
    return (u * cdf[:, -1])[:, None].__lt__(cdf).argmax(axis=1)


def row_cumsum(a: np.ndarray) -> np.ndarray:
    """``np.cumsum(a, axis=-1)`` (the same floats: each entry the running sum in column
    order) as ``m - 1`` elementwise additions of whole columns, for short rows (a policy's
    ``A`` actions): numpy's accumulation along a short inner axis costs ~20 ns per row
    (measured ``[80000, 4]``: 1.6 ms against 0.23 ms). A new float64 array of ``a``'s
    shape."""
    a = np.asarray(a, dtype=float)
    out = np.empty(a.shape)
    if a.size == 0:
        return out
    out[..., 0] = a[..., 0]
    for j in range(1, a.shape[-1]):
        np.add(out[..., j - 1], a[..., j], out=out[..., j])
    return out


def searchsorted_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``inverse_cdf(cdf[rows], u)`` without materialising ``cdf[rows]``: for each draw,
    the number of entries of its (nondecreasing) row ``<= u * row total``
    (:class:`RowCDFs` of ``cdf``, built on each call: keep one to draw repeatedly)."""
    return RowCDFs(cdf).draw(np.asarray(rows), np.asarray(u))


#: Largest ``draws x (m - 1)`` block that :meth:`RowCDFs.draw` compares at once
#: (8 MiB of float64); larger batches are searched by bisection.
COMPARE_ENTRIES = 2**20


class RowCDFs:
    """The rows of ``cdf[n, m]`` (nondecreasing, positive totals ``cdf[:, -1]``) laid out
    for batched inverse-CDF draws: ``draw(rows, u)[i]`` is ``inverse_cdf(cdf[rows],
    u)[i]``, the number of entries of row ``rows[i]`` that are ``<= u[i] * total``.

    The last column is never counted (``u < 1`` gives ``u * total < total`` in floating
    point), so the other ``m - 1`` columns are stored transposed, ``inner[m - 1, n]``: a
    batch gathers them as ``[m - 1, k]`` and counts along the first axis, contiguous in
    the draws (2-4x faster than ``argmax`` over gathered rows for ``k >= 10^3``).
    """

    def __init__(self, cdf: np.ndarray) -> None:
        self.n_rows, self.width = cdf.shape
        self.total = np.ascontiguousarray(cdf[:, -1])
        self.inner = np.ascontiguousarray(cdf[:, :-1].T)
        self._cdf = cdf
        # the count fits uint8 when a row has at most 256 entries (summed without casts)
        self._count = np.uint8 if self.width <= 256 else np.int64

    def draw(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``j[i] = #{k : cdf[rows[i], k] <= u[i] cdf[rows[i], -1]}`` (int64, the shape of
        ``rows``), for ``rows`` and ``u`` in ``[0, 1)`` of the same shape."""
        target = u * self.total.take(rows)
        if rows.size * self.width > COMPARE_ENTRIES:
            return self._bisect(rows, target)
        below = self.inner.take(rows.ravel(), axis=1) <= target.ravel()
        count = np.add.reduce(below, axis=0, dtype=self._count)
        return count.astype(np.int64).reshape(rows.shape)

    def _bisect(self, rows: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The count of :meth:`draw` by a vectorised binary search (``O(k)`` memory)."""
        cdf = self._cdf
        lo = np.zeros(rows.shape, dtype=np.int64)
        hi = np.full(rows.shape, cdf.shape[1], dtype=np.int64)
        while True:
            active = lo < hi
            if not np.any(active):
                return lo
            mid = (lo + hi) // 2
            below = np.zeros(rows.shape, dtype=bool)
            below[active] = cdf[rows[active], mid[active]] <= target[active]
            lo = np.where(active & below, mid + 1, lo)
            hi = np.where(active & ~below, mid, hi)


#: Widest row that :func:`draw_each_row` counts column by column (one pass over the
#: draws per column); wider rows are searched row by row (``searchsorted``).
COUNT_COLUMNS = 64


def draw_each_row(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``m`` draws from every row of ``cdf[n, w]`` at once: ``j[..., i, k] = #{c :
    cdf[i, c] <= u[..., i, k] cdf[i, -1]}`` for ``u[..., n, m]`` in ``[0, 1)`` (int64, the
    shape of ``u``), the number :meth:`RowCDFs.draw` gives for ``rows = i``.

    Draws grouped by row (a generative-model sweep) need no gather: for ``w <=``
    :data:`COUNT_COLUMNS` each of the first ``w - 1`` columns is compared with all the
    draws, broadcast along ``m`` (the last column is never counted, as in
    :class:`RowCDFs`); wider rows by one ``searchsorted`` per row."""
    n, w = cdf.shape
    if u.ndim < 2 or u.shape[-2] != n:
        raise ValueError(f"u: shape {u.shape} must end in ({n}, m), one row of draws per "
                         f"CDF row")
    target = u * cdf[:, -1:]
    if w <= COUNT_COLUMNS:
        count = np.zeros(u.shape, dtype=np.uint8)
        for c in range(w - 1):
            count += cdf[:, c:c + 1] <= target
        return count.astype(np.int64)
    by_row = np.moveaxis(target, -2, 0).reshape(n, -1)
    out = np.empty(by_row.shape, dtype=np.int64)
    for i in range(n):
        out[i] = np.searchsorted(cdf[i], by_row[i], side="right")
    return np.moveaxis(out.reshape((n, *u.shape[:-2], u.shape[-1])), 0, -2)


class DenseTransitions:
    """Dense transition tensor ``P[s, a, s']`` viewed as a ``(S*A, S)`` matrix."""

    def __init__(self, P: np.ndarray) -> None:
        S, A, _ = P.shape
        self.n_states = S
        self.n_actions = A
        self._P = P
        self._P2 = P.reshape(S * A, S)
        self._cdf: np.ndarray | None = None  # row CDFs, built on the first draw
        self._rows: RowCDFs | None = None  # the same, laid out for batched draws
        self._cdf_lists: list | np.ndarray | None = None  # the same, for scalar draws

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

    def matrix(self) -> np.ndarray:
        """The ``(S*A, S)`` matrix view."""
        return self._P2

    def sample_next(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``s'`` for rows ``s * A + a`` and uniforms ``u`` in [0, 1): the draws of
        :func:`inverse_cdf` on the rows' cumulative sums (:class:`RowCDFs`: blocks of at
        most :data:`COMPARE_ENTRIES` compared at once, a vectorised binary search beyond)."""
        if self._rows is None:
            self._rows = RowCDFs(self.row_cdfs())
        return self._rows.draw(np.asarray(rows), np.asarray(u))

    def row_cdfs(self) -> np.ndarray:
        """``cdf[s * A + a, s'] = sum_{j <= s'} P[s, a, j]``, shape ``[S A, S]`` (built once)."""
        if self._cdf is None:
            self._cdf = np.cumsum(self._P2, axis=1)
        return self._cdf

    def next_state(self, row: int, u: float) -> int:
        """One draw of :meth:`sample_next` (``rows = [row]``, ``u = [u]``) in scalar
        Python, the same number: the count of the row's CDF entries ``<= u * total``."""
        if self._cdf_lists is None:
            cdf = self.row_cdfs()
            self._cdf_lists = cdf.tolist() if cdf.size <= LIST_CDF_ENTRIES else cdf
        cdf = self._cdf_lists[row]
        return bisect_right(cdf, u * cdf[-1])


class SparseTransitions:
    """Sparse transitions: CSR matrix ``P2[(s * A + a), s']`` of shape ``(S*A, S)``."""

    def __init__(self, P2: scipy.sparse.csr_matrix, n_actions: int) -> None:
        self._P2 = scipy.sparse.csr_matrix(P2)
        self._P2.eliminate_zeros()
        self._P2.sort_indices()
        self.n_states = self._P2.shape[1]
        self.n_actions = n_actions
        # per-row cumulative sums of the stored probabilities, for sampling
        cum = np.cumsum(self._P2.data)
        starts = self._P2.indptr[:-1]
        offset = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
        self._cum = cum
        self._row_offset = offset
        self._row_total = np.asarray(self._P2.sum(axis=1)).ravel()

    def dense(self) -> np.ndarray:
        """``P[s, a, s']`` as a dense array (``S^2 A`` memory)."""
        return self._P2.toarray().reshape(self.n_states, self.n_actions, self.n_states)

    def matrix(self) -> scipy.sparse.csr_matrix:
        return self._P2

    def expect(self, v: np.ndarray) -> np.ndarray:
        S, A = self.n_states, self.n_actions
        rest = v.shape[1:]
        out = self._P2 @ v.reshape(S, -1)
        return np.asarray(out).reshape((S, A, *rest))

    def policy_matrix(self, pi: np.ndarray) -> scipy.sparse.csr_matrix:
        """Sparse ``P_pi = Pi P2`` with ``Pi[s, s * A + a] = pi[s, a]``."""
        S, A = self.n_states, self.n_actions
        Pi = scipy.sparse.csr_matrix((pi.ravel(), np.arange(S * A), np.arange(0, S * A + 1, A)),
                                     shape=(S, S * A))
        return (Pi @ self._P2).tocsr()

    def pullback(self, w: np.ndarray) -> np.ndarray:
        S, A = self.n_states, self.n_actions
        rest = w.shape[2:]
        out = self._P2.T @ w.reshape(S * A, -1)
        return np.asarray(out).reshape((S, *rest))

    def sample_next(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """As :meth:`DenseTransitions.sample_next`, by a search in the stored entries."""
        target = self._row_offset[rows] + u * self._row_total[rows]
        k = np.searchsorted(self._cum, target, side="right")
        last = self._P2.indptr[rows + 1] - 1
        return self._P2.indices[np.minimum(k, last)]

    def next_state(self, row: int, u: float) -> int:
        """One draw of :meth:`sample_next` in scalar Python (the same number)."""
        target = self._row_offset[row] + u * self._row_total[row]
        k = int(np.searchsorted(self._cum, target, side="right"))
        return int(self._P2.indices[min(k, self._P2.indptr[row + 1] - 1)])
