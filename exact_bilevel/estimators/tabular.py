r"""Per-state-action estimates of the follower's sensitivities ``dQ[s, a, k]``.

Both estimators use the sampled sensitivity rewards
``g_k = dr(s_k, a_k) + gamma dlogP(s_{k+1}|s_k, a_k) V(s_{k+1})`` (:ref:`docs/math.md, section 3
<math-sensitivities>`:
``dQ`` is the policy evaluation of the vector reward ``g``):

* :func:`dq_monte_carlo` — every-visit average of the forward sums
  ``Z_t = sum_{k>=t} (gamma/beta)^(k-t) g_k`` (each unbiased for ``dQ(s_t, a_t)``);
* :func:`dq_td` — the batch fixed point of expected-SARSA TD(0) on ``g``:
  ``dQ = g_bar + gamma P_hat dV``, ``dV = (I - gamma P_hat_pi)^{-1} sum_a pi g_bar``
  with ``g_bar`` the per-pair mean of ``g_k`` (tabular LSTD).

Both are consistent, not unbiased, and need repeated visits to every pair that
matters; unvisited pairs get ``dQ = dr`` (the immediate term).
"""

from __future__ import annotations

import numpy as np

from ..core._budget import check_allocation
from ._common import LeaderKnowledge, ratio, sensitivity_samples, suffix_sums
from .critics import batch_td, empirical_transitions
from .sampling import Episodes

DQ_METHODS = ("monte-carlo", "td")

#: Largest ``[n, L, d]`` chunk of Monte Carlo ``dQ`` work; about 5 arrays of it are live
#: at once (checked against the memory budget before the first chunk).
DQ_CHUNK_ENTRIES = 4_000_000
DQ_CHUNK_ARRAYS = 5


def _chunks(ep: Episodes, cells: int) -> list[Episodes]:
    """Split ``ep`` into groups of episodes with at most ~``cells`` padded entries each."""
    size = max(1, cells // max(1, ep.actions.shape[1]))
    n = ep.lengths.size
    return [Episodes(ep.states[i:i + size], ep.actions[i:i + size], ep.lengths[i:i + size])
            for i in range(0, n, size)]


def visit_sums(idx: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """``out[j] = sum_{k: idx[k] = j} rows[k]``, shape ``[size, d]`` (``rows[m, d]``),
    each sum taken in the order of ``k`` (unbuffered ``np.add.at``: the order a one-hot
    sparse product would add them in)."""
    out = np.zeros((size, rows.shape[1]))
    np.add.at(out, idx, rows)
    return out


def dq_monte_carlo(know: LeaderKnowledge, ep: Episodes, *, discount: float | None = None,
                   skip_first: bool = False) -> np.ndarray:
    """Every-visit Monte Carlo ``dQ_hat[S, A, d]`` (episodes processed in chunks so that
    the ``[n, L, d]`` forward sums never exceed ~4e6 entries).

    ``discount`` (default: the follower's ``gamma``, the right one) and ``skip_first``
    (drop ``g_t`` from its own forward sum) exist for the deliberately wrong variants
    of :mod:`exact_bilevel.mutants`.
    """
    discount = know.gamma if discount is None else discount
    S, A = know.pi.shape
    d = know.dr.shape[-1]
    sums = np.zeros((S * A, d))
    counts = np.zeros(S * A)
    L = ep.actions.shape[1]
    cells = max(min(DQ_CHUNK_ENTRIES, ep.lengths.size * L * d), L * d)
    check_allocation(f"Monte Carlo dQ: chunks of {cells} entries [n, L, d]",
                     (DQ_CHUNK_ARRAYS, cells))
    for sub in _chunks(ep, DQ_CHUNK_ENTRIES // max(1, d)):
        g = sensitivity_samples(know, sub)
        Z = suffix_sums(g, sub.mask, ratio(discount, know.beta))
        if skip_first:
            Z = Z - np.where(sub.mask[..., None], g, 0.0)
        m = sub.mask
        idx = sub.states[:, :-1][m] * A + sub.actions[m]
        sums += visit_sums(idx, Z[m], S * A)
        counts += np.bincount(idx, minlength=S * A)
    mean = sums / np.maximum(counts, 1.0)[:, None]
    return np.where((counts > 0)[:, None], mean, know.dr.reshape(S * A, d)).reshape(S, A, d)


def mean_sensitivity_reward(know: LeaderKnowledge, P_hat: np.ndarray) -> np.ndarray:
    """Per-pair mean of the samples ``g_k``: ``dr + gamma sum_s' P_hat(s'|s,a)
    dlogP(s'|s,a) V(s')`` (``dr`` where unvisited), shape ``[S, A, d]``."""
    if not know.problem.transitions.depends_on_x:
        return know.dr
    return know.dr + know.gamma * np.einsum("sat,satk,t->sak", P_hat, know.score, know.v)


def dq_td(know: LeaderKnowledge, ep: Episodes) -> np.ndarray:
    """Batch TD(0) fixed point ``dQ_hat[S, A, d]`` (:func:`.critics.batch_td` on ``g_bar``)."""
    S, A = know.pi.shape
    P_hat = empirical_transitions(ep, S, A)
    return batch_td(P_hat, know.pi, know.gamma, mean_sensitivity_reward(know, P_hat))


def estimate_dq(method: str, know: LeaderKnowledge, ep: Episodes) -> np.ndarray:
    if method == "monte-carlo":
        return dq_monte_carlo(know, ep)
    if method == "td":
        return dq_td(know, ep)
    raise ValueError(f"dQ estimator = {method!r}: must be one of {DQ_METHODS}")


def dlogpi_from_dq(pi: np.ndarray, dq: np.ndarray, tau: float) -> np.ndarray:
    """``dlogpi = (dQ - E_pi dQ) / tau``, shape ``[S, A, d]`` (Boltzmann policy)."""
    return (dq - np.einsum("sa,sak->sk", pi, dq)[:, None, :]) / tau
