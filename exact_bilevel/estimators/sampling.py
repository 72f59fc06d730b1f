r"""Sampling access to a finite MDP, with a transition counter.

A :class:`Sampler` is the only way an estimator touches the environment. It
offers the three kinds of access the literature assumes, and counts what each
costs:

* **on-policy episodes** from the initial distribution ``rho`` — of a fixed
  horizon (:meth:`Sampler.rollouts`) or terminated with probability ``1 - beta``
  after each step (:meth:`Sampler.episodes`);
* **resets** to chosen states (:meth:`Sampler.episodes` with ``start``);
* a **generative model** ``s' ~ P(.|s, a)`` for any ``(s, a)`` (:meth:`Sampler.step`).

Cost accounting: every transition ``(s, a) -> s'`` drawn counts 1 in
``steps``; every episode start (a reset, whether to ``rho`` or a chosen state)
counts 1 in ``resets``; ``transitions = steps + resets`` is the budget an
estimator reports.

Hard budget: inside ``with sampler.capped(budget):`` the sampler never bills more
than ``budget`` further transitions. A batch of discount-terminated episodes whose
drawn lengths would cross the cap is **truncated in episode order**: the first
episode that crosses is cut so that every later episode keeps exactly one step and
the batch ends exactly at the cap (each episode keeps its reset and at least one
step); a draw that cannot fit even that (``2 n`` transitions for ``n`` episodes, or
a generative-model draw or reset beyond the cap) is a ``ValueError`` before anything
is drawn. Truncation changes the episodes' law, so the estimators plan their
batches to make it rare (:func:`exact_bilevel.estimators._common.episodes_for_budget`:
probability at most ``1e-4``); :attr:`Sampler.truncated` counts truncated episodes.

Discount-terminated episodes and unbiasedness
---------------------------------------------
With continuation probability ``beta`` the episode length ``T`` is geometric,
``Pr(T > k) = beta^k``, so step ``k`` is observed with probability ``beta^k``.
Weighting a term at step ``k`` by ``(gamma / beta)^k`` (``beta >= gamma``)
turns any truncated sum into an unbiased estimate of the infinite discounted
sum ``E[sum_k gamma^k c_k]``; the estimators use ``beta = max(gamma, gamma_L)``.

Sampling is vectorised over episodes and reproducible bit for bit for a given
``numpy.random.Generator`` state.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..core import _validate
from ..core._budget import check_allocation
from ..core._transitions import inverse_cdf
from ..core.evaluation import check_policy
from ..core.mdp import FiniteMDP

#: Float64-sized entries per padded episode slot (``n`` episodes padded to ``L + 1``)
#: that one estimate may hold at once: the episode arrays, masks, step weights, prefix
#: and suffix sums, advantages. Measured peaks (tracemalloc, ``tests/test_memory.py``,
#: ``verification`` notes in the README): at most 6.3 for any estimator at 1e5 - 1e6
#: transitions; the ``[n, L, d]`` work of Monte Carlo ``dQ`` is chunked and checked
#: separately (:data:`exact_bilevel.estimators.tabular.DQ_CHUNK_ENTRIES`).
SLOT_ENTRIES = 8
#: Entries per generative-model draw of :meth:`Sampler.sweep` that an estimate may hold
#: (the ``(s, a, s')`` arrays, uniforms, counts; measured at most 12 per draw).
DRAW_ENTRIES = 16
#: Live episodes below which :meth:`Sampler._walk` steps them one by one in Python.
SCALAR_TAIL = 8


@dataclass(frozen=True)
class Episodes:
    """A batch of ``n`` episodes, padded to the longest.

    Attributes
    ----------
    states : ndarray of int, shape (n, L + 1)
        ``states[i, t] = s_t`` for ``t <= lengths[i]`` (``s_T`` is the state the
        last transition led to); padding is 0.
    actions : ndarray of int, shape (n, L)
        ``actions[i, t] = a_t`` for ``t < lengths[i]``; padding is 0.
    lengths : ndarray of int, shape (n,)
        Number of transitions ``T_i >= 1`` in each episode.
    """

    states: np.ndarray
    actions: np.ndarray
    lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """``mask[i, t] = t < lengths[i]``: the step ``(s_t, a_t, s_{t+1})`` was taken."""
        return np.arange(self.actions.shape[1])[None, :] < self.lengths[:, None]

    @property
    def n_steps(self) -> int:
        return int(self.lengths.sum())

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat arrays ``(s, a, s')`` of every taken step, episode by episode."""
        m = self.mask
        return self.states[:, :-1][m], self.actions[m], self.states[:, 1:][m]


def concatenate(*batches: Episodes) -> Episodes:
    """One batch holding every episode of ``batches`` (padded to the longest)."""
    L = max(b.actions.shape[1] for b in batches)
    states = np.concatenate([np.pad(b.states, ((0, 0), (0, L - b.actions.shape[1])))
                             for b in batches])
    actions = np.concatenate([np.pad(b.actions, ((0, 0), (0, L - b.actions.shape[1])))
                              for b in batches])
    return Episodes(states=states, actions=actions,
                    lengths=np.concatenate([b.lengths for b in batches]))


class Sampler:
    """Sampling access to ``mdp`` with a seeded generator and a cost counter.

    Parameters
    ----------
    mdp : FiniteMDP
        ``P[s, a, s']`` and ``rho[s]`` (rewards are not used: estimators evaluate
        known reward functions at the sampled ``(s, a)``).
    rng : numpy.random.Generator
        Source of randomness; all draws come from it, in a fixed order.
    """

    def __init__(self, mdp: FiniteMDP, rng: np.random.Generator) -> None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError("rng: must be a numpy.random.Generator")
        self.mdp = mdp
        self.rng = rng
        self._rho_cdf = np.cumsum(mdp.initial)[None, :]
        self.steps = 0
        self.resets = 0
        self.cap: int | None = None
        self.truncated = 0
        self.slots = 0  # padded episode slots drawn so far (memory check)

    @property
    def transitions(self) -> int:
        """Total cost so far: ``steps + resets``."""
        return self.steps + self.resets

    @property
    def remaining(self) -> int | None:
        """Transitions left under the cap (``None``: no cap)."""
        return None if self.cap is None else self.cap - self.transitions

    @contextmanager
    def capped(self, budget: int) -> Iterator[Sampler]:
        """Within the block, bill at most ``budget`` further transitions (nested caps:
        the tighter one holds); see the module docstring for the truncation rule."""
        budget = _validate_count("budget", budget)
        previous = self.cap
        limit = self.transitions + budget
        self.cap = limit if previous is None else min(previous, limit)
        try:
            yield self
        finally:
            self.cap = previous

    def _charge(self, what: str, n: int) -> None:
        left = self.remaining
        if left is not None and n > left:
            raise ValueError(f"budget: {what} would bill {n} transitions, {left} remain "
                             f"under the cap")

    # -- primitive draws --------------------------------------------------
    def reset(self, n: int) -> np.ndarray:
        """``n`` states drawn from ``rho``; costs ``n`` resets."""
        self._charge(f"{n} resets", n)
        self.resets += n
        return inverse_cdf(np.broadcast_to(self._rho_cdf, (n, self.mdp.n_states)),
                            self.rng.random(n))

    def step(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Generative model: ``s'[i] ~ P(.|s[i], a[i])``; costs ``len(s)`` steps."""
        s, a = np.asarray(s), np.asarray(a)
        self._charge(f"{s.size} generative-model draws", s.size)
        self.steps += s.size
        return self.mdp.sample_next(s, a, self.rng.random(s.size))

    def sweep(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``m`` generative-model draws for every ``(s, a)``, pair-major: arrays
        ``(s, a, s')`` of length ``S * A * m``; costs ``S * A * m`` steps."""
        S, A = self.mdp.n_states, self.mdp.n_actions
        check_allocation(f"{m} generative-model draws per pair: the sample buffers of one "
                         f"estimate ({DRAW_ENTRIES} entries per draw)", (DRAW_ENTRIES, S * A * m))
        s = np.repeat(np.arange(S), A * m)
        a = np.tile(np.repeat(np.arange(A), m), S)
        return s, a, self.step(s, a)

    def act(self, pi: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``a[i] ~ pi(.|s[i])`` (free: the policy is the follower's, not the environment)."""
        return inverse_cdf(np.cumsum(pi[s], axis=-1), self.rng.random(s.size))

    # -- episodes -----------------------------------------------------------
    def rollouts(self, pi: object, n: int, horizon: int,
                 start: np.ndarray | None = None) -> Episodes:
        """``n`` episodes of exactly ``horizon`` steps under ``pi[s, a]``.

        Start states are drawn from ``rho`` (or given by ``start[n]``, a reset
        to chosen states); costs ``n`` resets and ``n * horizon`` steps.
        """
        lengths = np.full(_validate_count("n", n), _validate_count("horizon", horizon))
        return self._run(pi, lengths, start)

    def episodes(self, pi: object, n: int, beta: float,
                 start: np.ndarray | None = None, first_action: np.ndarray | None = None
                 ) -> Episodes:
        """``n`` episodes under ``pi`` that continue after each step with probability
        ``beta`` (so ``T ~ Geometric(1 - beta)``, ``Pr(T > k) = beta^k``, ``E T =
        1/(1 - beta)``).

        ``start[n]`` resets to chosen states instead of drawing from ``rho``;
        ``first_action[n]`` fixes ``a_0`` (to sample ``Q``-type quantities).
        """
        n = _validate_count("n", n)
        beta = _validate.real_scalar("beta", beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta = {beta}: must satisfy 0 <= beta < 1")
        lengths = self.rng.geometric(1.0 - beta, size=n) if beta > 0 else np.ones(n, int)
        return self._run(pi, lengths, start, first_action)

    def _run(self, pi: object, lengths: np.ndarray, start: np.ndarray | None,
             first_action: np.ndarray | None = None) -> Episodes:
        pi = check_policy(self.mdp, pi)
        lengths = self._fit(lengths)
        n, L = lengths.size, int(lengths.max())
        # the batch and everything an estimate derives from it, with the batches this
        # sampler drew before (hpgd-oracle holds two), before anything is allocated
        check_allocation(f"{n} episodes padded to {L} steps: the sample buffers of one "
                         f"estimate ({SLOT_ENTRIES} entries per slot, with "
                         f"{self.slots} slots drawn before)",
                         (SLOT_ENTRIES, self.slots + n * (L + 1)))
        self.slots += n * (L + 1)
        S = self.mdp.n_states
        if start is None:
            s = self.reset(n)
        else:
            s = np.asarray(start)
            if s.shape != (n,) or s.dtype.kind not in "iu" or s.min() < 0 or s.max() >= S:
                raise ValueError(f"start: must be {n} state indices in [0, {S})")
            self.resets += n
        states = np.zeros((n, L + 1), dtype=np.int64)
        actions = np.zeros((n, L), dtype=np.int64)
        states[:, 0] = s
        steps = int(lengths.sum())
        self._charge(f"{steps} steps", steps)
        fixed = None if first_action is None else np.asarray(first_action)
        # one uniform per action drawn and per step, in the order one call per time step
        # and kind would draw them (numpy's float64 stream does not depend on batching)
        u = self.rng.random(2 * steps - (0 if fixed is None else n))
        self._walk(np.cumsum(pi, axis=-1), states, actions, lengths, u, fixed)
        self.steps += steps
        return Episodes(states=states, actions=actions, lengths=lengths.astype(np.int64))

    def _walk(self, pi_cdf: np.ndarray, states: np.ndarray, actions: np.ndarray,
              lengths: np.ndarray, u: np.ndarray, first_action: np.ndarray | None) -> None:
        """Fill ``states[n, L + 1]`` (column 0 given) and ``actions[n, L]`` in place.

        At time ``t`` the live episodes ``i`` (``lengths[i] > t``, ascending) take the next
        ``c_t`` uniforms of ``u`` for ``a_t ~ pi(.|s_t)`` (none at ``t = 0`` when
        ``first_action`` is given), then the next ``c_t`` for ``s_{t+1} ~ P(.|s_t, a_t)``.
        Vectorised over live episodes while more than :data:`SCALAR_TAIL` remain, then
        scalar (:meth:`_walk_tail`): the same draws, without numpy's per-call overhead."""
        alive = np.arange(lengths.size)
        pos = 0
        for t in range(actions.shape[1]):
            alive = alive[lengths[alive] > t]
            c = alive.size
            if c <= SCALAR_TAIL:
                self._walk_tail(pi_cdf, states, actions, lengths, u[pos:], alive, t,
                                first_action)
                return
            st = states[alive, t]
            if t == 0 and first_action is not None:
                a = first_action[alive]
            else:
                a = inverse_cdf(pi_cdf[st], u[pos:pos + c])
                pos += c
            actions[alive, t] = a
            states[alive, t + 1] = self.mdp.sample_next(st, a, u[pos:pos + c])
            pos += c

    def _walk_tail(self, pi_cdf: np.ndarray, states: np.ndarray, actions: np.ndarray,
                   lengths: np.ndarray, u: np.ndarray, alive: np.ndarray, t0: int,
                   first_action: np.ndarray | None) -> None:
        """:meth:`_walk` from time ``t0`` for the few live episodes ``alive``, one draw at a
        time in Python (``bisect`` on the policy's row CDF, :meth:`FiniteMDP.next_state`)."""
        live = alive.tolist()
        ends = lengths.tolist()
        cur = {i: int(states[i, t0]) for i in live}
        uu = u.tolist()
        rows: dict[int, list[float]] = {}
        pos = 0
        for t in range(t0, actions.shape[1]):
            live = [i for i in live if ends[i] > t]
            if t == 0 and first_action is not None:
                acts = [int(first_action[i]) for i in live]
            else:
                acts = []
                for i in live:
                    row = rows.get(cur[i])
                    if row is None:
                        row = rows[cur[i]] = pi_cdf[cur[i]].tolist()
                    acts.append(bisect_right(row, uu[pos] * row[-1]))
                    pos += 1
            for i, a in zip(live, acts, strict=True):
                actions[i, t] = a
                cur[i] = states[i, t + 1] = self.mdp.next_state(cur[i], a, uu[pos])
                pos += 1

    def _fit(self, lengths: np.ndarray) -> np.ndarray:
        """``lengths`` truncated in episode order to fit the cap (module docstring)."""
        left = self.remaining
        if left is None:
            return lengths
        n = lengths.size
        if left < 2 * n:
            raise ValueError(f"budget: {n} episodes need at least {2 * n} transitions (one "
                             f"reset and one step each), {left} remain under the cap")
        steps = left - n
        # cost of episodes 0..i as drawn, plus one step for each later episode
        need = np.cumsum(lengths) + (n - 1 - np.arange(n))
        over = np.flatnonzero(need > steps)
        if over.size == 0:
            return lengths
        k = int(over[0])
        out = lengths.copy()
        before = int(out[:k].sum())
        out[k] = steps - before - (n - 1 - k)
        out[k + 1:] = 1
        self.truncated += int(np.count_nonzero(out != lengths))
        return out


def _validate_count(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} = {n!r}: must be a positive integer")
    return int(n)
