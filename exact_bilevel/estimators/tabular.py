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
from ..core.linalg import solve_dominant_stack_last
from ._common import LeaderKnowledge, contract, ratio, sensitivity_steps
from .critics import EmpiricalTransitions, batch_td, empirical_form
from .sampling import EpisodeBatch, Episodes, as_batch

DQ_METHODS = ("monte-carlo", "td")

#: Largest ``[N, k]`` block of Monte Carlo ``dQ`` work (``k`` parameter columns at once,
#: at least one); about :data:`DQ_CHUNK_ARRAYS` such arrays are live at once (checked
#: against the memory budget before the first block).
DQ_CHUNK_ENTRIES = 4_000_000
DQ_CHUNK_ARRAYS = 5


def _squeeze(table: np.ndarray, ep: Episodes | EpisodeBatch) -> np.ndarray:
    return table[0] if isinstance(ep, Episodes) else table


def dq_monte_carlo(know: LeaderKnowledge, ep: Episodes | EpisodeBatch,
                   *more: EpisodeBatch, discount: float | None = None,
                   skip_first: bool = False) -> np.ndarray:
    """Every-visit Monte Carlo ``dQ_hat[R, S, A, d]`` per replicate (``[S, A, d]`` for
    padded episodes), in blocks of parameter columns (at most :data:`DQ_CHUNK_ENTRIES`
    entries ``[N, k]``, at least one column): the forward sums ``Z_t`` of ``g``
    (:meth:`EpisodeBatch.suffix_sums`) summed per replicate and pair (segment sums),
    divided by the visit counts; ``dr`` where
    unvisited. Further batches ``more`` (same replicates) add their sums and counts.

    ``discount`` (default: the follower's ``gamma``, the right one) and ``skip_first``
    (drop ``g_t`` from its own forward sum) exist for the deliberately wrong variants
    of :mod:`exact_bilevel.mutants`.
    """
    discount = know.gamma if discount is None else discount
    S, A = know.pi.shape
    d = know.dr.shape[-1]
    sums = counts = None
    for b in (as_batch(ep), *more):
        width = max(1, min(d, DQ_CHUNK_ENTRIES // max(1, b.n_steps)))  # columns at once
        check_allocation(f"Monte Carlo dQ: {DQ_CHUNK_ARRAYS} arrays of {b.n_steps} steps "
                         f"x {width} columns", (DQ_CHUNK_ARRAYS, b.n_steps * width))
        part = np.empty((b.n_replicates, S * A, d))
        for k0 in range(0, d, width):
            g = sensitivity_steps(know, b, slice(k0, k0 + width))
            Z = b.suffix_sums(g, ratio(discount, know.beta), overwrite=not skip_first)
            if skip_first:
                Z = Z - g
            part[:, :, k0:k0 + Z.shape[1]] = b.pair_columns_table(A, S * A, Z)
        # bincount sums are never -0.0, so the first batch's sums stand for ``0.0 + part``
        visits = b.pair_table(A, S * A).astype(float)
        sums = part if sums is None else sums + part
        counts = visits if counts is None else counts + visits
    np.divide(sums, np.maximum(counts, 1.0)[..., None], out=sums)  # the mean, in place
    unvisited = np.repeat(counts == 0, d, axis=1)  # [R, S A d]: a contiguous mask
    np.copyto(sums.reshape(len(sums), -1), know.dr.reshape(-1), where=unvisited)
    return _squeeze(sums.reshape(-1, S, A, d), ep)


def weighted_dq_monte_carlo(know: LeaderKnowledge, weights: np.ndarray,
                            ep: Episodes | EpisodeBatch, *more: EpisodeBatch) -> np.ndarray:
    r"""``sum_{s,a} weights[r, s, a] dQ_hat[r, s, a, :]`` for the every-visit Monte Carlo
    ``dQ_hat`` of :func:`dq_monte_carlo` (same batches), shape ``[R, d]`` (``[d]`` for
    padded episodes); ``weights[S, A]`` shared or ``[R, S, A]``.

    Computed step by step, never forming the ``[R, S, A, d]`` table: with ``N_r(s, a)``
    the visits and ``Z_t`` the forward sums,

    .. math:: \sum_{s,a} w_{sa}\, dQ_{sa} = \sum_t \frac{w_{s_t a_t}}{N(s_t, a_t)} Z_t
              + \sum_{(s,a):\,N(s,a) = 0} w_{sa}\, dr_{sa}

    (the mean's weight at every visit; ``dr`` where unvisited), the step sums per
    replicate in step order (:meth:`EpisodeBatch.replicate_sums`)."""
    S, A = know.pi.shape
    d = know.dr.shape[-1]
    batches = (as_batch(ep), *more)
    R = batches[0].n_replicates
    counts = batches[0].pair_table(A, S * A).astype(float)
    for b in more:
        counts += b.pair_table(A, S * A)
    w = np.broadcast_to(weights.reshape(-1, S * A), (R, S * A))
    per_visit = (w / np.maximum(counts, 1.0)).reshape(-1)
    total = contract(np.where(counts == 0, w, 0.0), know.dr.reshape(S * A, d))
    for b in batches:
        width = max(1, min(d, DQ_CHUNK_ENTRIES // max(1, b.n_steps)))  # columns at once
        check_allocation(f"Monte Carlo dQ: {DQ_CHUNK_ARRAYS} arrays of {b.n_steps} steps "
                         f"x {width} columns", (DQ_CHUNK_ARRAYS, b.n_steps * width))
        c = per_visit.take(b.pair_keys(A, S * A))[:, None]  # [N, 1]
        for k0 in range(0, d, width):
            Z = b.suffix_sums(sensitivity_steps(know, b, slice(k0, k0 + width)),
                              ratio(know.gamma, know.beta), overwrite=True)
            total[:, k0:k0 + Z.shape[1]] += b.replicate_sums(np.multiply(Z, c, out=Z))
    return total[0] if isinstance(ep, Episodes) else total


def weighted_dq_td(know: LeaderKnowledge, weights: np.ndarray,
                   ep: Episodes | EpisodeBatch) -> np.ndarray:
    r"""``sum_{s,a} weights[r, s, a] dQ_hat[r, s, a, :]`` for the batch TD fixed point
    ``dQ_hat`` of :func:`dq_td`, shape ``[R, d]`` (``[d]`` for padded episodes);
    ``weights[S, A]`` shared or ``[R, S, A]``.

    By the adjoint, never forming ``dQ_hat``: with ``dQ = g_bar + gamma P_hat dV``, ``M dV =
    sum_a pi g_bar``, ``M = I - gamma P_hat_pi``,

    .. math:: \sum_{s,a} w_{sa}\, dQ_{sa} = \sum_{s,a} w_{sa}\, \bar g_{sa}
              + \gamma\, z^\top \textstyle\sum_a \pi \bar g, \qquad
              M^\top z = \hat P^\top w,

    one transposed solve with one right-hand side per replicate instead of ``d``."""
    S, A = know.pi.shape
    d = know.dr.shape[-1]
    model = empirical_form(ep, S, A, beta=know.beta, columns=1)
    R = model.n_replicates
    w = np.broadcast_to(weights.reshape(-1, S, A), (R, S, A))
    aug = model.adjoint_system(know.pi, know.gamma, w)  # [M^T | P_hat^T w], stack last
    z = np.ascontiguousarray(solve_dominant_stack_last(aug)[:, 0, :].T)  # [R, S]
    g_bar = mean_sensitivity_reward(know, model)  # [R, S, A, d]
    if g_bar.strides[0] == 0:  # dr, shared: its products once
        rhs = np.matmul(know.pi[:, None, :], know.dr)[:, 0, :]  # [S, d]
        total = contract(w.reshape(R, S * A), know.dr.reshape(S * A, d))
        total += know.gamma * contract(z, rhs)
    else:
        rhs = np.matmul(know.pi[None, :, None, :], g_bar)[:, :, 0, :]  # [R, S, d]
        total = np.matmul(w.reshape(R, 1, S * A), g_bar.reshape(R, S * A, d))[:, 0, :]
        total += know.gamma * np.matmul(z[:, None, :], rhs)[:, 0, :]
    return total[0] if isinstance(ep, Episodes) else total


def weighted_dq(method: str, know: LeaderKnowledge, weights: np.ndarray,
                ep: Episodes | EpisodeBatch, *more: EpisodeBatch) -> np.ndarray:
    """``sum_{s,a} weights[r, s, a] dQ_hat[r, s, a, :]`` for ``dQ_hat`` by ``method`` in
    :data:`DQ_METHODS` (:func:`estimate_dq`), shape ``[R, d]`` (``[d]`` for padded
    episodes); ``weights[S, A]`` or ``[R, S, A]``: Monte Carlo step by step
    (:func:`weighted_dq_monte_carlo`), TD by the adjoint (:func:`weighted_dq_td`)."""
    if method == "monte-carlo":
        return weighted_dq_monte_carlo(know, weights, ep, *more)
    if more:
        raise ValueError(f"dQ estimator = {method!r}: one batch of episodes")
    if method == "td":
        return weighted_dq_td(know, weights, ep)
    raise ValueError(f"dQ estimator = {method!r}: must be one of {DQ_METHODS}")


def mean_sensitivity_reward(know: LeaderKnowledge, model: EmpiricalTransitions) -> np.ndarray:
    """Per-pair mean of the samples ``g_k``: ``dr + gamma sum_s' P_hat(s'|s,a)
    dlogP(s'|s,a) V(s')`` (``dr`` where unvisited), shape ``[R, S, A, d]`` for the
    replicates of ``model`` (:func:`.critics.empirical_form`)."""
    if not know.problem.transitions.depends_on_x:
        return np.broadcast_to(know.dr, (model.n_replicates, *know.dr.shape))
    W = know.score * know.v[None, None, :, None]  # [S, A, S, d]
    return know.dr + know.gamma * model.triple_mean(W)


def dq_td(know: LeaderKnowledge, ep: Episodes | EpisodeBatch) -> np.ndarray:
    """Batch TD(0) fixed point ``dQ_hat[R, S, A, d]`` per replicate (:func:`.critics.
    batch_td` on ``g_bar``; ``[S, A, d]`` for padded episodes)."""
    S, A = know.pi.shape
    model = empirical_form(ep, S, A, beta=know.beta, columns=know.dr.shape[-1])
    dq = batch_td(model, know.pi, know.gamma, mean_sensitivity_reward(know, model))
    return _squeeze(dq, ep)


def estimate_dq(method: str, know: LeaderKnowledge, ep: Episodes | EpisodeBatch,
                *more: EpisodeBatch) -> np.ndarray:
    """``dQ_hat`` by ``method`` in :data:`DQ_METHODS` (``[R, S, A, d]``; ``[S, A, d]`` for
    padded episodes) from ``ep`` (Monte Carlo: and the batches ``more``)."""
    if method == "monte-carlo":
        return dq_monte_carlo(know, ep, *more)
    if more:
        raise ValueError(f"dQ estimator = {method!r}: one batch of episodes")
    if method == "td":
        return dq_td(know, ep)
    raise ValueError(f"dQ estimator = {method!r}: must be one of {DQ_METHODS}")


def centre_actions(pi: np.ndarray, dq: np.ndarray, *, overwrite: bool = False
                   ) -> np.ndarray:
    """``dQ - E_pi dQ(s, .)``, shape ``[..., S, A, d]`` for ``dq[..., S, A, d]`` and
    ``pi[S, A]``; ``overwrite`` computes in place in ``dq`` (an array the caller owns)."""
    mean = np.matmul(pi[:, None, :], dq)  # E_pi dQ(s, .): [..., S, 1, d]
    # repeated over the actions first: a contiguous subtraction, faster than broadcasting
    mean = np.repeat(mean, pi.shape[1], axis=-2)
    return np.subtract(dq, mean, out=dq if overwrite else None)


def dlogpi_from_dq(pi: np.ndarray, dq: np.ndarray, tau: float, *,
                   overwrite: bool = False) -> np.ndarray:
    """``dlogpi = (dQ - E_pi dQ) / tau``, shape ``[..., S, A, d]`` (Boltzmann policy);
    ``overwrite`` as in :func:`centre_actions`."""
    centred = centre_actions(pi, dq, overwrite=overwrite)
    return np.divide(centred, tau, out=centred)
