r"""Leader critics: tables ``Q_L[s, a]``, ``V_L[s]`` for the follower's policy.

* :func:`exact_critic` — the exact ``Q_L``, ``V_L`` (uses the model: an oracle).
* :func:`monte_carlo_critic` — every-visit averages of the sampled returns
  ``G_t = sum_{j >= t} (gamma_L / beta)^(j - t) r_L(s_j, a_j)`` (unbiased per visit
  for ``Q_L(s_t, a_t)`` under discount-terminated episodes), ``V_L = E_pi Q_L``.
* :func:`td_critic` — the fixed point of expected-SARSA TD(0) on the batch,
  ``Q = r_L + gamma_L P_hat (pi Q)`` with ``P_hat`` the empirical transition
  frequencies (what tabular TD converges to on a fixed batch; LSTD), held as the steps
  themselves (:class:`EmpiricalSteps`) or as a dense table
  (:class:`EmpiricalTable`), whichever :func:`empirical_form` expects to be cheaper.

The sampled critics are consistent, not unbiased: an estimator that multiplies
them with other quantities from the same samples inherits an ``O(1/n)`` bias.
Pairs never visited get ``Q_L(s, a) = r_L(s, a)`` (the immediate reward; no
continuation is known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core._budget import check_allocation
from ..core.batched_solve import bellman_matrices
from ..core.linalg import solve_dominant_stack
from ._common import LeaderKnowledge, ratio
from .sampling import EpisodeBatch, Episodes, as_batch

CRITICS = ("exact", "monte-carlo", "td")


@dataclass(frozen=True)
class Critic:
    """``q[S, A]`` and ``v[S] = sum_a pi q``; ``advantage = q - v`` (a sampled critic of
    ``R`` replicates: ``q[R, S, A]``, ``v[R, S]``, one table per replicate)."""

    q: np.ndarray
    v: np.ndarray

    @property
    def advantage(self) -> np.ndarray:
        return self.q - self.v[..., None]

    def replicate(self, r: int) -> Critic:
        """Replicate ``r``'s tables (the shared ones unchanged)."""
        return self if self.q.ndim == 2 else Critic(q=self.q[r], v=self.v[r])


def _from_q(q: np.ndarray, pi: np.ndarray) -> Critic:
    return Critic(q=q, v=np.sum(pi * q, axis=-1))


def exact_critic(know: LeaderKnowledge) -> Critic:
    """Exact leader values at the follower's policy (oracle access to ``P``)."""
    lv = know.leader_values
    return Critic(q=lv.q, v=lv.v)


def visit_counts(ep: Episodes | EpisodeBatch, n_states: int, n_actions: int) -> np.ndarray:
    """``N[r, s, a]``: number of steps taken at ``(s, a)`` per replicate (``[S, A]`` for
    padded episodes)."""
    b = as_batch(ep)
    n = b.pair_table(n_actions, n_states * n_actions).astype(float)
    n = n.reshape(-1, n_states, n_actions)
    return n[0] if isinstance(ep, Episodes) else n


def tabular_mean(batch: EpisodeBatch, values: np.ndarray, n_states: int, n_actions: int,
                 fill: np.ndarray) -> np.ndarray:
    """Per replicate, the every-visit average of the per-step scalars ``values[N]`` per
    ``(s_t, a_t)``, shape ``[R, S, A]``; ``fill[S, A]`` where unvisited."""
    size = n_states * n_actions
    sums = batch.pair_table(n_actions, size, values)
    counts = batch.pair_table(n_actions, size)
    mean = (sums / np.maximum(counts, 1)).reshape(-1, n_states, n_actions)
    return np.where(counts.reshape(mean.shape) > 0, mean, fill)


def _squeeze(critic: Critic, ep: Episodes | EpisodeBatch) -> Critic:
    return critic.replicate(0) if isinstance(ep, Episodes) else critic


def monte_carlo_critic(know: LeaderKnowledge, ep: Episodes | EpisodeBatch, *,
                       discount: float | None = None) -> Critic:
    """Every-visit Monte Carlo estimate of ``Q_L`` from discount-terminated episodes, per
    replicate (``q[R, S, A]``; ``[S, A]`` for padded episodes).

    ``discount`` defaults to ``gamma_L`` (the right one; another value is for the
    wrong variants of :mod:`exact_bilevel.mutants`)."""
    S, A = know.pi.shape
    b = as_batch(ep)
    discount = know.gamma_leader if discount is None else discount
    G = b.suffix_sums(b.per_pair(know.r_leader), ratio(discount, know.beta), overwrite=True)
    return _squeeze(_from_q(tabular_mean(b, G, S, A, know.r_leader), know.pi), ep)


def transition_frequencies(s: np.ndarray, a: np.ndarray, s1: np.ndarray, n_states: int,
                           n_actions: int) -> np.ndarray:
    """``P_hat[..., s, a, s'] = N(s, a, s') / N(s, a)`` from observed steps ``s1[..., m]``
    (a leading axis: one estimate per row, ``s`` and ``a`` shared or of the same shape);
    rows of unvisited pairs are 0."""
    s1 = np.asarray(s1)
    lead = s1.shape[:-1]
    size = n_states * n_actions * n_states
    idx = np.broadcast_to((s * n_actions + a) * n_states, s1.shape) + s1
    rows = int(np.prod(lead))
    idx = idx.reshape(rows, -1) + size * np.arange(rows)[:, None]
    counts = np.bincount(idx.ravel(), minlength=rows * size).astype(float)
    counts = counts.reshape((*lead, n_states, n_actions, n_states))
    return counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)


def empirical_transitions(ep: Episodes | EpisodeBatch, n_states: int,
                          n_actions: int) -> np.ndarray:
    """Per replicate, :func:`transition_frequencies` of every step taken,
    ``[R, S, A, S]`` (``[S, A, S]`` for padded episodes); see also
    :func:`empirical_form`."""
    b = as_batch(ep)
    check_allocation("per-replicate empirical transitions [R, S, A, S]",
                     (b.n_replicates, n_states * n_actions * n_states))
    SA, R = n_states * n_actions, b.n_replicates
    counts = np.bincount(b.triple_keys(n_states, n_actions),
                         minlength=R * SA * n_states).astype(float)  # N(s, a, s')
    visits = b.pair_table(n_actions, SA).astype(float)  # N(s, a)
    P = counts.reshape(R, SA, n_states)
    np.divide(P, np.maximum(visits, 1.0)[:, :, None], out=P)
    P = P.reshape(R, n_states, n_actions, n_states)
    return P[0] if isinstance(ep, Episodes) else P


@dataclass(frozen=True)
class EmpiricalSteps:
    r"""Each replicate's empirical transitions ``P_hat_r(s'|s, a) = N_r(s, a, s') / N_r(s,
    a)`` kept as the steps that define them: step ``t`` of replicate ``r`` carries the
    weight ``share[t] = 1 / N_r(s_t, a_t)`` in ``P_hat_r(. | s_t, a_t)``, so every product
    with ``P_hat`` is a per-replicate sum over steps (``bincount`` in step order: a
    replicate's numbers do not depend on the others), ``O(N)`` work and memory with no
    ``[R, S, A, S]`` table. Unvisited pairs have ``P_hat = 0`` rows. The same operations
    as :class:`EmpiricalTable` (:func:`empirical_form` picks one).

    Attributes
    ----------
    batch : EpisodeBatch
        The ``N`` steps ``(s_t, a_t, s_{t+1})`` of ``R`` replicates.
    n_states, n_actions : int
        ``S`` and ``A``.
    share : ndarray, shape (N,)
        ``1 / N_r(s_t, a_t)``.
    """

    batch: EpisodeBatch
    n_states: int
    n_actions: int
    share: np.ndarray

    @classmethod
    def of(cls, ep: Episodes | EpisodeBatch, n_states: int,
           n_actions: int) -> EmpiricalSteps:
        """The steps of ``ep`` (padded episodes: one replicate)."""
        b = as_batch(ep)
        size = n_states * n_actions
        visits = b.pair_table(n_actions, size).reshape(-1)  # N_r(s, a)
        share = 1.0 / visits.take(b.pair_keys(n_actions, size)).astype(float)
        return cls(b, n_states, n_actions, share)

    @property
    def n_replicates(self) -> int:
        return self.batch.n_replicates

    def _mean(self, values: np.ndarray) -> np.ndarray:
        """``sum_t share_t values[t, j]`` per replicate and pair, ``[R, S, A, k]`` for
        step values ``values[N, k]`` (a C-ordered array, overwritten): one ``bincount``
        over the bins ``(r, s, a, j)``."""
        b, S, A = self.batch, self.n_states, self.n_actions
        k = values.shape[1]
        check_allocation(f"TD products over the steps: {b.n_steps} steps x {k} columns",
                         (2, b.n_steps * k))  # the bins and the weighted values
        keys = b.pair_keys(A, S * A)[:, None] * k + np.arange(k)
        np.multiply(values, self.share[:, None], out=values)
        sums = np.bincount(keys.ravel(), weights=values.ravel(),
                           minlength=b.n_replicates * S * A * k)
        return sums.reshape(-1, S, A, k)

    def policy_matrix(self, pi: np.ndarray) -> np.ndarray:
        """``P_hat_pi[r, s, s'] = sum_a pi(a|s) P_hat_r(s'|s, a)``, shape ``[R, S, S]``:
        sums of ``pi(a_t|s_t) / N_r(s_t, a_t)`` over replicate ``r``'s steps ``s -> s'``."""
        b, S, A = self.batch, self.n_states, self.n_actions
        keys = (b.replicate * S + b.s) * S + b.s1
        weights = pi.reshape(-1).take(b.pairs(A)) * self.share
        return np.bincount(keys, weights=weights,
                           minlength=b.n_replicates * S * S).reshape(-1, S, S)

    def successor_mean(self, v: np.ndarray) -> np.ndarray:
        """``(P_hat V)[r, s, a, k] = sum_s' P_hat_r(s'|s, a) v[r, s', k]`` for one table
        per replicate ``v[R, S, k]``, shape ``[R, S, A, k]``."""
        b, S = self.batch, self.n_states
        return self._mean(v.reshape(b.n_replicates * S, -1).take(b.replicate * S + b.s1,
                                                                 axis=0))

    def triple_mean(self, w: np.ndarray) -> np.ndarray:
        """``sum_s' P_hat_r(s'|s, a) w[s, a, s', k]`` for a shared ``w[S, A, S, k]``,
        shape ``[R, S, A, k]``."""
        b, S, A = self.batch, self.n_states, self.n_actions
        return self._mean(w.reshape(S * A * S, -1).take(b.pairs(A) * S + b.s1, axis=0))

    def pullback(self, w: np.ndarray) -> np.ndarray:
        """``(P_hat^T w)[r, s'] = sum_{s,a} w[r, s, a] P_hat_r(s'|s, a)`` for per-replicate
        weights ``w[R, S, A]``, shape ``[R, S]``: sums of ``w[r, s_t, a_t] / N_r(s_t,
        a_t)`` over replicate ``r``'s steps into ``s'``."""
        b, S, A = self.batch, self.n_states, self.n_actions
        weights = w.reshape(-1).take(b.pair_keys(A, S * A)) * self.share
        return np.bincount(b.replicate * S + b.s1, weights=weights,
                           minlength=b.n_replicates * S).reshape(-1, S)

    def adjoint_system(self, pi: np.ndarray, gamma: float, w: np.ndarray) -> np.ndarray:
        """``[(I - gamma P_hat_pi)^T | P_hat^T w]`` of every replicate with the stack axis
        last, ``aug[i, j, r]``, shape ``[S, S + 1, R]`` (the layout of
        :func:`~exact_bilevel.core.linalg.solve_dominant_stack_last`), for weights ``w[R,
        S, A]``: the sums of :meth:`policy_matrix` and :meth:`pullback` (the same steps in
        the same order, so the same floats) by one ``bincount`` straight into that
        layout, no transposed copy."""
        b, S, A = self.batch, self.n_states, self.n_actions
        R, width = b.n_replicates, S + 1
        keys = np.concatenate([(b.s1 * width + b.s) * R + b.replicate,   # P_hat_pi^T
                               (b.s1 * width + S) * R + b.replicate])    # P_hat^T w
        weights = np.concatenate([pi.reshape(-1).take(b.pairs(A)) * self.share,
                                  w.reshape(-1).take(b.pair_keys(A, S * A)) * self.share])
        aug = np.bincount(keys, weights=weights, minlength=S * width * R).reshape(S, width, R)
        aug[:, :S] *= -gamma
        diagonal = np.arange(S)
        aug[diagonal, diagonal] += 1.0
        return aug


@dataclass(frozen=True)
class EmpiricalTable:
    """Each replicate's empirical transitions as the table ``P_hat[R, S, A, S]``
    (:func:`empirical_transitions`); products by stacked ``matmul``, one per replicate.
    The same operations as :class:`EmpiricalSteps`."""

    P: np.ndarray

    @classmethod
    def of(cls, ep: Episodes | EpisodeBatch, n_states: int,
           n_actions: int) -> EmpiricalTable:
        """The table of the steps of ``ep`` (padded episodes: one replicate)."""
        return cls(empirical_transitions(as_batch(ep), n_states, n_actions))

    @property
    def n_replicates(self) -> int:
        return self.P.shape[0]

    def policy_matrix(self, pi: np.ndarray) -> np.ndarray:
        """``P_hat_pi[R, S, S]`` (one ``[1, A] x [A, S]`` product per replicate and state)."""
        return np.matmul(pi[None, :, None, :], self.P)[:, :, 0, :]

    def successor_mean(self, v: np.ndarray) -> np.ndarray:
        """``P_hat V``: ``[R, S, A, k]`` for ``v[R, S, k]``."""
        R, S, A = self.P.shape[:3]
        return np.matmul(self.P.reshape(R, S * A, S), v).reshape(R, S, A, -1)

    def triple_mean(self, w: np.ndarray) -> np.ndarray:
        """``sum_s' P_hat w``: ``[R, S, A, k]`` for ``w[S, A, S, k]``."""
        return np.matmul(self.P[..., None, :], w)[..., 0, :]

    def pullback(self, w: np.ndarray) -> np.ndarray:
        """``P_hat^T w``: ``[R, S]`` for ``w[R, S, A]`` (one product per replicate)."""
        R, S, A = self.P.shape[:3]
        return np.matmul(w.reshape(R, 1, S * A), self.P.reshape(R, S * A, S))[:, 0, :]

    def adjoint_system(self, pi: np.ndarray, gamma: float, w: np.ndarray) -> np.ndarray:
        """``[(I - gamma P_hat_pi)^T | P_hat^T w]``, stack axis last, ``[S, S + 1, R]``
        (as :meth:`EmpiricalSteps.adjoint_system`)."""
        R, S = self.P.shape[:2]
        aug = np.empty((S, S + 1, R))
        aug[:, :S] = self.policy_matrix(pi).transpose(2, 1, 0)
        aug[:, :S] *= -gamma
        diagonal = np.arange(S)
        aug[diagonal, diagonal] += 1.0
        aug[:, S] = self.pullback(w).T
        return aug


EmpiricalTransitions = EmpiricalSteps | EmpiricalTable

#: :func:`empirical_form` keeps the steps (:class:`EmpiricalSteps`) while the
#: expected steps per replicate times the value columns per product are fewer than this
#: fraction of the ``S A S`` entries of a replicate's dense table, the table
#: (:class:`EmpiricalTable`) beyond. Measured by ``benchmarks/bench_td.py`` (one thread,
#: S = 10, A = 4, d = 5, hpgd-td's batches at budgets 100-5000): the steps are faster at
#: 0.025-0.15 (1.5-2.8x), the two about even at 0.45 (one column), the table faster at
#: 0.75 (five columns, 1.1-1.2x) and 3-14x at budget 2000 and beyond; at budget 100
#: (R = 1000) ``dQ`` has 0.125 and ``Q_L`` 0.025, at budget 2000 (R = 200) 17.5 and 3.5.
STEPS_WORK_PER_ENTRY = 0.4


def empirical_form(ep: Episodes | EpisodeBatch, n_states: int, n_actions: int, *,
                   beta: float, columns: int = 1) -> EmpiricalTransitions:
    """The empirical transitions ``P_hat`` of each replicate of ``ep`` (episodes that
    continue with probability ``beta``: ``1 / (1 - beta)`` steps each on average), in the
    form that is cheaper for products with ``columns`` value columns: the steps
    (:class:`EmpiricalSteps`) while ``n / (1 - beta) columns <``
    :data:`STEPS_WORK_PER_ENTRY` ``S A S`` (``n`` episodes per replicate), else the
    dense table (:class:`EmpiricalTable`). Both give the same numbers up to rounding;
    the choice depends on nothing sampled, so a replicate alone takes the same form as in
    any batch (its numbers bit for bit)."""
    b = as_batch(ep)
    work = b.n_episodes / (1.0 - beta) * columns
    sampled = work < STEPS_WORK_PER_ENTRY * n_states * n_actions * n_states
    return (EmpiricalSteps if sampled else EmpiricalTable).of(b, n_states, n_actions)


def batch_td(model: EmpiricalTransitions, pi: np.ndarray, gamma: float,
             reward: np.ndarray) -> np.ndarray:
    """Fixed point of expected-SARSA TD(0) on a batch: ``Q = reward + gamma P_hat (pi Q)``,
    i.e. ``V = (I - gamma P_hat_pi)^{-1} sum_a pi reward``, ``Q = reward + gamma P_hat V``,
    per replicate of ``model`` (:func:`empirical_form`).

    ``reward[R, S, A, ...]`` (scalar or vector rewards; a shared reward broadcast with
    stride 0 along ``R`` has its ``pi`` product formed once); result of the same shape.
    One solve of ``I - gamma P_hat_pi`` per replicate
    (:func:`~exact_bilevel.core.linalg.solve_dominant_stack`: a replicate's row does not
    depend on the others); its rows may sum to less than 1 (unvisited pairs continue to
    nothing)."""
    R, S, A = reward.shape[:3]
    flat = reward.reshape(R, S, A, -1)
    M = bellman_matrices(model.policy_matrix(pi), gamma)  # I - gamma P_hat_pi
    if flat.strides[0] == 0:  # one reward shared by every replicate: its product once
        rhs = np.broadcast_to(np.matmul(pi[:, None, :], flat[0])[:, 0, :],
                              (R, S, flat.shape[-1]))
    else:
        rhs = np.matmul(pi[None, :, None, :], flat)[:, :, 0, :]
    v = solve_dominant_stack(M, rhs)  # [R, S, k]
    q = flat + gamma * model.successor_mean(v)
    return q.reshape(reward.shape)


def td_critic(know: LeaderKnowledge, ep: Episodes | EpisodeBatch, *,
              discount: float | None = None) -> Critic:
    """Batch fixed point of expected-SARSA TD(0) (tabular LSTD) for ``Q_L``, per replicate;
    ``discount`` defaults to ``gamma_L`` (another value is for :mod:`exact_bilevel.mutants`)."""
    S, A = know.pi.shape
    discount = know.gamma_leader if discount is None else discount
    model = empirical_form(ep, S, A, beta=know.beta)
    reward = np.broadcast_to(know.r_leader, (model.n_replicates, S, A))
    return _squeeze(_from_q(batch_td(model, know.pi, discount, reward), know.pi), ep)


CriticFn = Callable[[LeaderKnowledge, EpisodeBatch], Critic]
"""``(know, episodes) -> Critic``: a critic built from the estimator's own episodes."""


class CarriedSarsaCritic:
    r"""Expected-SARSA TD(0) table for ``Q_L``, carried across calls (leader steps).

    The leader critic of the official FourRooms code (Kudo et al. 2026; HPGD-SARSA):
    a table that every leader step updates online on its newly sampled transitions,
    in the order they were drawn,

    .. math:: Q(s_t, a_t) \leftarrow Q(s_t, a_t) + lpha ig(r_L(s_t, a_t)
              + \gamma_L 	extstyle\sum_{a'} \pi(a'|s_{t+1}) Q(s_{t+1}, a') - Q(s_t, a_t)ig),

    and keeps for the next step (starting from zeros), with ``pi`` the follower's
    current policy. Call it as a ``critic`` of :func:`leader_critic`. Biased (its
    table lags the moving follower); here to reproduce the authors' runs.
    """

    def __init__(self, n_states: int, n_actions: int, step_size: float = 0.5) -> None:
        if not 0.0 < step_size <= 1.0:
            raise ValueError(f"step_size = {step_size}: must be in (0, 1]")
        self.q = np.zeros((n_states, n_actions))
        self.step_size = step_size

    def __call__(self, know: LeaderKnowledge, ep: Episodes | EpisodeBatch) -> Critic:
        if isinstance(ep, EpisodeBatch):
            if ep.n_replicates != 1:
                raise ValueError("critic: a carried SARSA table serves one replicate at a "
                                 f"time, not {ep.n_replicates}")
            ep = ep.episodes(0)
        q, pi, r, gL, alpha = self.q, know.pi, know.r_leader, know.gamma_leader, self.step_size
        for i in range(ep.lengths.size):
            states, actions = ep.states[i], ep.actions[i]
            for t in range(int(ep.lengths[i])):
                s, a, s1 = states[t], actions[t], states[t + 1]
                q[s, a] += alpha * (r[s, a] + gL * pi[s1] @ q[s1] - q[s, a])
        return _from_q(q.copy(), pi)


def leader_critic(name: str | CriticFn, know: LeaderKnowledge,
                  ep: Episodes | EpisodeBatch) -> Critic:
    """Dispatch on ``name`` in :data:`CRITICS`, or call a :data:`CriticFn` (e.g. a
    :class:`CarriedSarsaCritic`) on the episodes."""
    if callable(name):
        return name(know, ep)
    if name == "exact":
        return exact_critic(know)
    if name == "monte-carlo":
        return monte_carlo_critic(know, ep)
    if name == "td":
        return td_critic(know, ep)
    raise ValueError(f"critic = {name!r}: must be one of {CRITICS}")
