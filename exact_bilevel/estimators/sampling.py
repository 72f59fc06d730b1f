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

Replicates and their uniforms
-----------------------------
A sampler serves ``R`` independent replicates at once (:class:`Uniforms`): every draw is
made for all of them in one vectorised pass, and its results carry a leading replicate
axis (episodes of all replicates in one flat :class:`EpisodeBatch`). Replicate ``r``
reads only its own stream of uniforms, **in this order** (the order is part of the
stream rule ``cell-block/3`` of :mod:`exact_bilevel.core.streams`):

* each call consumes, per replicate, the same number of uniforms except the episode
  walks; a draw of ``k`` values per replicate takes the next ``k`` uniforms of each;
* :meth:`Sampler.episode_batch` of ``n`` episodes: ``n`` uniforms for the lengths
  (``T = 1 + floor(log1p(-u) / log beta)``, so ``Pr(T > k) = beta^k``; none when
  ``beta = 0`` or for :meth:`Sampler.rollouts`), then ``n`` for the start states (inverse
  CDF of ``rho``; none for resets to given states), then the walk: episode by episode,
  and within an episode step by step, one uniform for ``a_t ~ pi(.|s_t)`` (none at
  ``t = 0`` when the first action is given) then one for ``s_{t+1} ~ P(.|s_t, a_t)``;
* generative-model draws: one uniform per draw; integers ``floor(u m)``; standard normals
  ``ndtri((floor(u 2^53) + 1/2) / 2^53)`` (finite: the uniform grid shifted by half a step).

So replicate ``r`` run alone (``R = 1``, its own generator) gives the same numbers, bit for
bit, as row ``r`` of the batch: every reduction an estimator makes is per replicate, in
an order that does not depend on the other replicates (``tests/test_estimators.py``).
Any one replicate uses at most :func:`block_size` uniforms (two per transition billed,
plus the zeroth-order directions): the block each owns in its cell's stream.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

from ..core import _validate
from ..core._budget import check_allocation
from ..core._transitions import (
    DenseTransitions,
    RowCDFs,
    draw_each_row,
    inverse_cdf,
    row_cumsum,
)
from ..core.evaluation import check_policy
from ..core.mdp import FiniteMDP

#: Float64-sized entries per padded episode slot (``n`` episodes padded to ``L + 1``) of
#: the padded :class:`Episodes` of one estimate (:meth:`Sampler.episodes`, the literal
#: per-episode forms and the carried SARSA critic).
SLOT_ENTRIES = 8
#: Float64-sized entries per step or episode of the flat :class:`EpisodeBatch` that one
#: estimate may hold at once: the steps and their time, episode and replicate, the walk's
#: uniforms and their positions, pair keys, step weights, prefix and suffix sums,
#: advantages (measured peak, ``tests/test_memory.py``: at most ~14 per step at 1e5 - 1e6
#: transitions).
STEP_ENTRIES = 16
#: Entries per generative-model draw of :meth:`Sampler.sweep` that an estimate may hold
#: (the ``(s, a, s')`` arrays, uniforms, counts; measured at most 12 per draw).
DRAW_ENTRIES = 16
#: Live episodes at or below which :meth:`Sampler._run` walks them one by one in Python.
SCALAR_TAIL = 24
#: Gaussian directions of the zeroth-order estimator that :func:`block_size` provides for.
BLOCK_DIRECTIONS = 4


def block_size(budget: int, n_params: int) -> int:
    """Uniforms one replicate may consume at budget ``budget``: ``2 budget + 4 d``.

    Every billed transition consumes at most two uniforms (an episode: its length and
    start, one reset, plus an action and a next state per step, one step billed each;
    a reset to a drawn ``(s, a)``: the state, the first action and the length, with no
    action uniform at ``t = 0``; a generative-model draw: one), and the zeroth-order
    estimator adds one normal per coordinate for each of its
    :data:`BLOCK_DIRECTIONS` directions."""
    return 2 * int(budget) + BLOCK_DIRECTIONS * int(n_params)


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


class Uniforms:
    """The uniforms of ``R`` replicates, each read in order from its own stream.

    Either one generator (``R = 1``: a single estimate, ``numpy.random.Generator`` drawn
    on demand) or a matrix ``U[R, B]`` whose row ``r`` is replicate ``r``'s block
    (:func:`exact_bilevel.core.streams.cell_uniforms`); a replicate reading past its block
    is a ``ValueError``.
    """

    def __init__(self, source: np.random.Generator | np.ndarray) -> None:
        if isinstance(source, np.random.Generator):
            self.rng: np.random.Generator | None = source
            self.matrix = None
            self.n_replicates = 1
        else:
            U = np.asarray(source)
            if U.ndim != 2 or U.dtype != np.float64 or U.shape[0] < 1:
                raise ValueError("uniforms: must be a float64 matrix U[R, B], R >= 1")
            self.rng = None
            self.matrix = np.ascontiguousarray(U)
            self.n_replicates = U.shape[0]
        self.cursor = np.zeros(self.n_replicates, dtype=np.int64)

    def fixed(self, k: int) -> np.ndarray:
        """The next ``k`` uniforms of every replicate, ``[R, k]``."""
        if self.rng is not None:
            self.cursor += k
            return self.rng.random((1, k))
        B = self.matrix.shape[1]
        c0 = int(self.cursor[0])
        if np.all(self.cursor == c0) and c0 + k <= B:
            self.cursor += k
            return self.matrix[:, c0:c0 + k]
        flat, offsets = self.ragged(np.full(self.n_replicates, k, dtype=np.int64))
        return flat[offsets[:, None] + np.arange(k)]

    def ragged(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reserve the next ``counts[r]`` uniforms of each replicate: returns a flat array
        and ``offsets[R]`` such that replicate ``r``'s are ``flat[offsets[r] + j]``,
        ``j < counts[r]``."""
        counts = np.asarray(counts, dtype=np.int64)
        if self.rng is not None:
            self.cursor += counts
            return self.rng.random(int(counts[0])), np.zeros(1, dtype=np.int64)
        B = self.matrix.shape[1]
        if np.any(self.cursor + counts > B):
            r = int(np.argmax(self.cursor + counts > B))
            raise ValueError(f"uniforms: replicate {r} needs {int(self.cursor[r] + counts[r])} "
                             f"uniforms, its block has {B} (block_size)")
        offsets = np.arange(self.n_replicates, dtype=np.int64) * B + self.cursor
        self.cursor = self.cursor + counts
        return self.matrix.reshape(-1), offsets


@dataclass(frozen=True)
class EpisodeBatch:
    """The episodes of ``R`` replicates, ``n`` each, flat and time-major.

    Episode ``e = r n + j`` is replicate ``r``'s ``j``-th. Its steps are stored by time:
    ``chains[k]`` is the ``k``-th longest episode (ties in episode order), so the
    episodes alive at step ``t`` are the first ``live[t]`` chains and step ``t`` of chain
    ``k`` sits at ``offsets[t] + k`` of the step arrays.

    Attributes
    ----------
    n_replicates, n_episodes : int
        ``R`` and ``n`` (episodes per replicate).
    lengths : ndarray of int, shape (R n,)
        ``T_e >= 1`` transitions of each episode.
    chains : ndarray of int, shape (R n,)
        Episodes by decreasing length (stable).
    live : ndarray of int, shape (L,)
        Episodes with ``T_e > t``, ``L = max T_e``.
    offsets : ndarray of int, shape (L + 1,)
        ``offsets[t] = sum_{t' < t} live[t']``.
    s, a, s1 : ndarray of int, shape (N,)
        The ``N = sum T_e`` steps ``(s_t, a_t, s_{t+1})``.
    time, episode, replicate : ndarray of int, shape (N,)
        ``t``, the episode ``e`` and the replicate ``e // n`` of every step (derived from
        ``chains`` and ``live`` when first used, then kept).
    """

    n_replicates: int
    n_episodes: int
    lengths: np.ndarray
    chains: np.ndarray
    live: np.ndarray
    offsets: np.ndarray
    s: np.ndarray
    a: np.ndarray
    s1: np.ndarray
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _kept(self, key: object, make: Callable[[], np.ndarray]) -> np.ndarray:
        """``make()``, computed once per batch under ``key``."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    @property
    def n_steps(self) -> int:
        return int(self.s.size)

    @property
    def time(self) -> np.ndarray:
        return self._kept("time", lambda: per_time(np.arange(self.live.size), self.live))

    @property
    def episode(self) -> np.ndarray:
        return self._kept("episode", lambda: time_major(self.chains, self.live))

    @property
    def replicate(self) -> np.ndarray:
        return self._kept("replicate", lambda: time_major(self.chains // self.n_episodes,
                                                          self.live))

    def pairs(self, n_actions: int) -> np.ndarray:
        """``s * A + a`` of every step (the flat index into an ``[S, A]`` table)."""
        return self._kept(("pair", n_actions), lambda: self.s * n_actions + self.a)

    def pair_keys(self, n_actions: int, size: int) -> np.ndarray:
        """``replicate * size + s * A + a`` of every step (the bins of per-replicate
        ``[S, A]`` tables, ``size = S A``; the flat index into a table ``[R, S, A]``)."""
        def make() -> np.ndarray:
            first = time_major(self.chains // self.n_episodes * size, self.live)
            first += self.pairs(n_actions)
            return first
        return self._kept(("pairs", n_actions, size), make)

    def triple_keys(self, n_states: int, n_actions: int) -> np.ndarray:
        """``replicate * S A S + (s * A + a) * S + s'`` of every step (the bins of
        per-replicate ``[S, A, S]`` tables; the flat index into a table ``[R, S, A, S]``)."""
        def make() -> np.ndarray:
            size = n_states * n_actions * n_states
            keys = time_major(self.chains // self.n_episodes * size, self.live)
            keys += self.pairs(n_actions) * n_states + self.s1
            return keys
        return self._kept(("triples", n_states, n_actions), make)

    def per_pair(self, table: np.ndarray) -> np.ndarray:
        """``table[s_t, a_t]`` at every step for a shared ``table[S, A]``, or
        ``table[r, s_t, a_t]`` (``r`` the step's replicate) for one per replicate
        ``[R, S, A]``; shape ``[N]``."""
        S, A = table.shape[-2:]
        keys = self.pairs(A) if table.ndim == 2 else self.pair_keys(A, S * A)
        return table.reshape(-1).take(keys)

    def step_weights(self, ratio: float) -> np.ndarray:
        """``ratio^t`` at every step (``0^0 = 1``), shape ``[N]``; computed once per ratio."""
        return self._kept(("weights", ratio), lambda: per_time(
            ratio ** np.arange(self.live.size, dtype=float), self.live))

    def pair_table(self, n_actions: int, size: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
        """:meth:`replicate_table` over the pairs ``s * A + a`` (``size = S A``)."""
        R = self.n_replicates
        flat = np.bincount(self.pair_keys(n_actions, size), weights=weights,
                           minlength=R * size)
        return flat.reshape(R, size)

    def pair_columns_table(self, n_actions: int, size: int,
                           columns: np.ndarray) -> np.ndarray:
        """Per replicate and pair, the sums of the step-aligned ``columns[N, k]``:
        ``out[r, s A + a, j] = sum of columns[:, j]`` over replicate ``r``'s steps at
        ``(s, a)``, shape ``[R, size, k]`` (``size = S A``; :func:`columns_bincount`: as
        :meth:`pair_table` column by column, bit for bit)."""
        k = columns.shape[1]
        return columns_bincount(self.pair_keys(n_actions, size), columns,
                                self.n_replicates * size).reshape(self.n_replicates, size, k)

    def replicate_sums(self, columns: np.ndarray) -> np.ndarray:
        """``out[r, j] = sum of columns[:, j]`` over replicate ``r``'s steps, shape ``[R,
        k]`` for step-aligned ``columns[N, k]`` (:func:`columns_bincount`)."""
        return columns_bincount(self.replicate, columns, self.n_replicates)

    def prefix_sums(self, values: np.ndarray, ratio: float, *,
                    overwrite: bool = False) -> np.ndarray:
        """``Y_k = sum_{t <= k} ratio^(k - t) values_t`` along each episode (``values[N,
        ...]`` step-aligned): ``Y_t = values_t + ratio Y_{t-1}``, per step. ``overwrite``
        computes in place in ``values`` (a float array the caller owns)."""
        y = values if overwrite else np.array(values, dtype=float, copy=True)
        off, live = self.offsets.tolist(), self.live.tolist()
        for t in range(1, len(live)):
            c = live[t]
            y[off[t]:off[t] + c] += ratio * y[off[t - 1]:off[t - 1] + c]
        return y

    def suffix_sums(self, values: np.ndarray, ratio: float, *,
                    overwrite: bool = False) -> np.ndarray:
        """``Z_t = sum_{k >= t} ratio^(k - t) values_k`` along each episode, per step
        (backward recursion ``Z_t = values_t + ratio Z_{t+1}``); ``overwrite`` as in
        :meth:`prefix_sums`."""
        z = values if overwrite else np.array(values, dtype=float, copy=True)
        off, live = self.offsets.tolist(), self.live.tolist()
        for t in range(len(live) - 2, -1, -1):
            c = live[t + 1]
            z[off[t]:off[t] + c] += ratio * z[off[t + 1]:off[t + 1] + c]
        return z

    def replicate_table(self, index: np.ndarray, size: int,
                        weights: np.ndarray | None = None) -> np.ndarray:
        """``out[r, j] = sum of weights over replicate r's steps with index == j``, shape
        ``[R, size]`` (``bincount``: each sum in step order, so a replicate's row does not
        depend on the others)."""
        R = self.n_replicates
        flat = np.bincount(self.replicate * size + index, weights=weights, minlength=R * size)
        return flat.reshape(R, size)

    def episodes(self, replicate: int = 0) -> Episodes:
        """Replicate ``replicate``'s episodes padded (:class:`Episodes`, memory ``n L``)."""
        n = self.n_episodes
        lo = replicate * n
        lengths = self.lengths[lo:lo + n]
        L = int(lengths.max())
        states = np.zeros((n, L + 1), dtype=np.int64)
        actions = np.zeros((n, L), dtype=np.int64)
        sel = self.replicate == replicate
        e, t = self.episode[sel] - lo, self.time[sel]
        states[e, t] = self.s[sel]
        actions[e, t] = self.a[sel]
        states[e, t + 1] = self.s1[sel]
        return Episodes(states=states, actions=actions, lengths=lengths.astype(np.int64))


def columns_bincount(keys: np.ndarray, columns: np.ndarray, bins: int) -> np.ndarray:
    """``out[b, j] = sum of columns[i, j]`` over the steps ``i`` with ``keys[i] == b``,
    shape ``[bins, k]`` for ``keys[N]`` and ``columns[N, k]``: one ``bincount`` over the
    keys ``keys * k + j``, each sum in step order (the order of one ``bincount`` per
    column, bit for bit), so a replicate's sums do not depend on the other replicates'
    steps."""
    k = columns.shape[1]
    flat = np.bincount((keys[None, :] * k + np.arange(k)[:, None]).reshape(-1),
                       weights=columns.T.reshape(-1), minlength=bins * k)
    return flat.reshape(bins, k)


def batch_of(ep: Episodes) -> EpisodeBatch:
    """A padded :class:`Episodes` as a one-replicate :class:`EpisodeBatch`."""
    lengths = np.asarray(ep.lengths, dtype=np.int64)
    chains, live, offsets = _layout(lengths)
    t, e = per_time(np.arange(live.size), live), time_major(chains, live)
    return EpisodeBatch(1, lengths.size, lengths, chains, live, offsets,
                        ep.states[e, t], ep.actions[e, t], ep.states[e, t + 1])


def _layout(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-major layout of episodes of ``lengths[E]``: ``chains`` (by decreasing length,
    stable), ``live[L]`` and ``offsets[L + 1]``."""
    L = int(lengths.max())
    key = (L - lengths).astype(np.int16 if L < 2**15 else np.int64)
    chains = np.argsort(key, kind="stable")  # radix sort for small integers
    live = lengths.size - np.cumsum(np.bincount(lengths, minlength=L + 1))[:L]
    offsets = np.zeros(L + 1, dtype=np.int64)
    np.cumsum(live, out=offsets[1:])
    return chains, live, offsets


def time_major(per_chain: np.ndarray, live: np.ndarray) -> np.ndarray:
    """``per_chain[k]`` at every step ``(t, k)``, ``k < live[t]``, in time-major order."""
    return np.concatenate([per_chain[:c] for c in live.tolist()])


def per_time(per_t: np.ndarray, live: np.ndarray) -> np.ndarray:
    """``per_t[t]`` at every step ``(t, k)``, ``k < live[t]``, in time-major order."""
    return np.repeat(per_t, live)


def as_batch(ep: Episodes | EpisodeBatch) -> EpisodeBatch:
    """``ep`` as an :class:`EpisodeBatch` (padded episodes: one replicate)."""
    return ep if isinstance(ep, EpisodeBatch) else batch_of(ep)


def normals(u: np.ndarray) -> np.ndarray:
    """Standard normals from uniforms ``u`` in ``[0, 1)`` on numpy's ``2^-53`` grid:
    ``ndtri((floor(u 2^53) + 1/2) 2^-53)`` (finite for every ``u``)."""
    return ndtri((np.floor(u * 2.0**53) + 0.5) * 2.0**-53)


class Sampler:
    """Sampling access to ``mdp`` for ``R`` replicates, with per-replicate cost counters.

    Parameters
    ----------
    mdp : FiniteMDP
        ``P[s, a, s']`` and ``rho[s]`` (rewards are not used: estimators evaluate
        known reward functions at the sampled ``(s, a)``).
    rng : numpy.random.Generator or Uniforms
        A generator: one replicate (a single estimate; results without the replicate
        axis where documented). :class:`Uniforms`: ``R`` replicates.
    single : bool, optional
        With one-row :class:`Uniforms`: serve it as a single estimate.

    Counters ``steps``, ``resets``, ``transitions``, ``truncated`` are int arrays
    ``[R]``.
    """

    def __init__(self, mdp: FiniteMDP, rng: np.random.Generator | Uniforms, *,
                 single: bool | None = None) -> None:
        if isinstance(rng, np.random.Generator):
            uniforms, self.single = Uniforms(rng), True
        elif isinstance(rng, Uniforms):
            uniforms, self.single = rng, bool(single)
            if self.single and rng.n_replicates != 1:
                raise ValueError("single: a single-estimate sampler reads one replicate")
        else:
            raise ValueError("rng: must be a numpy.random.Generator")
        self.mdp = mdp
        self.uniforms = uniforms
        self.n_replicates = uniforms.n_replicates
        self._rho_cdf = np.cumsum(mdp.initial)
        R = self.n_replicates
        self.steps = np.zeros(R, dtype=np.int64)
        self.resets = np.zeros(R, dtype=np.int64)
        self.cap: np.ndarray | None = None
        self.truncated = np.zeros(R, dtype=np.int64)
        self.slots = 0  # step and episode entries drawn so far (memory check)

    @property
    def rng(self) -> np.random.Generator:
        """The generator of a sampler built from one ``numpy.random.Generator`` (for
        samplers that draw their own way, e.g. the authors' FourRooms windows of
        :mod:`exact_bilevel.estimators.carried`); ``ValueError`` for a block of uniforms."""
        if self.uniforms.rng is None:
            raise ValueError("sampler: built from a block of uniforms, it has no generator")
        return self.uniforms.rng

    @property
    def transitions(self) -> np.ndarray:
        """Total cost so far per replicate: ``steps + resets``, ``[R]``."""
        return self.steps + self.resets

    @property
    def remaining(self) -> np.ndarray | None:
        """Transitions left under the cap per replicate (``None``: no cap)."""
        return None if self.cap is None else self.cap - self.transitions

    @contextmanager
    def capped(self, budget: int | np.ndarray) -> Iterator[Sampler]:
        """Within the block, bill at most ``budget`` (an int, or one per replicate)
        further transitions (nested caps: the tighter one holds); see the module
        docstring for the truncation rule."""
        if np.ndim(budget) == 0:
            budget = _validate_count("budget", budget)
        else:
            budget = np.asarray(budget)
            if budget.shape != (self.n_replicates,) or budget.dtype.kind not in "iu" \
                    or budget.min() < 1:
                raise ValueError(f"budget: must be a positive integer or "
                                 f"{self.n_replicates} of them")
        previous = self.cap
        limit = self.transitions + budget
        self.cap = limit if previous is None else np.minimum(previous, limit)
        try:
            yield self
        finally:
            self.cap = previous

    def _charge(self, what: str, n: int | np.ndarray) -> None:
        left = self.remaining
        if left is not None and np.any(n > left):
            r = int(np.argmax(n > left))
            need = int(np.broadcast_to(n, left.shape)[r])
            raise ValueError(f"budget: {what} would bill {need} transitions, {int(left[r])} "
                             f"remain under the cap")

    def _shape(self, x: np.ndarray) -> np.ndarray:
        """Drop the replicate axis of a single-estimate sampler's result."""
        return x[0] if self.single else x

    # -- primitive draws --------------------------------------------------
    def uniform(self, k: int) -> np.ndarray:
        """``k`` uniforms per replicate, ``[R, k]`` (free: the estimator's own randomness)."""
        return self.uniforms.fixed(k)

    def integers(self, high: int, k: int) -> np.ndarray:
        """``k`` integers uniform on ``{0, ..., high - 1}`` per replicate, ``[R, k]``:
        ``floor(u high)``."""
        return np.minimum((self.uniforms.fixed(k) * high).astype(np.int64), high - 1)

    def normal(self, k: int) -> np.ndarray:
        """``k`` standard normals per replicate, ``[R, k]`` (:func:`normals`)."""
        return normals(self.uniforms.fixed(k))

    def reset(self, n: int) -> np.ndarray:
        """``n`` states drawn from ``rho`` per replicate (``[R, n]``; ``[n]`` for a single
        estimate); costs ``n`` resets each."""
        self._charge(f"{n} resets", n)
        self.resets = self.resets + n
        u = self.uniforms.fixed(n)
        c = self._rho_cdf
        return self._shape(np.searchsorted(c, u * c[-1], side="right"))

    def step(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Generative model: ``s'[r, i] ~ P(.|s[r, i], a[r, i])``, shape ``[R, m]`` (``[m]``
        for a single estimate; ``s`` and ``a`` of shape ``[R, m]``, or ``[m]`` shared by all
        replicates); costs ``m`` steps per replicate."""
        s, a = np.asarray(s), np.asarray(a)
        m = s.shape[-1]
        self._charge(f"{m} generative-model draws", m)
        self.steps = self.steps + m
        u = self.uniforms.fixed(m)
        s, a = np.broadcast_to(s, u.shape), np.broadcast_to(a, u.shape)
        return self._shape(self.mdp.sample_next(s.ravel(), a.ravel(), u.ravel()
                                                ).reshape(u.shape))

    def sweep(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``m`` generative-model draws for every ``(s, a)``, pair-major: arrays
        ``(s, a, s')``, ``s`` and ``a`` of length ``S * A * m`` and ``s'`` of shape
        ``[R, S * A * m]`` (``[S * A * m]`` for a single estimate); costs ``S * A * m``
        steps per replicate. The draws of :meth:`step` on these pairs, bit for bit
        (dense ``P``: grouped by pair, :func:`~exact_bilevel.core._transitions.draw_each_row`,
        no gather)."""
        S, A = self.mdp.n_states, self.mdp.n_actions
        check_allocation(f"{m} generative-model draws per pair: the sample buffers of one "
                         f"estimate ({DRAW_ENTRIES} entries per draw)",
                         (DRAW_ENTRIES, self.n_replicates * S * A * m))
        s = np.repeat(np.arange(S), A * m)
        a = np.tile(np.repeat(np.arange(A), m), S)
        op = self.mdp._op
        if not isinstance(op, DenseTransitions):
            return s, a, self.step(s, a)
        # the draws of step(s, a), grouped by pair: no rows to gather
        self._charge(f"{S * A * m} generative-model draws", S * A * m)
        self.steps = self.steps + S * A * m
        u = self.uniforms.fixed(S * A * m)
        s1 = draw_each_row(op.row_cdfs(), u.reshape(-1, S * A, m))
        return s, a, self._shape(s1.reshape(u.shape))

    def act(self, pi: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``a[r, i] ~ pi(.|s[r, i])`` for ``s[R, m]`` (or ``[m]`` shared), shape ``[R, m]``
        (``[m]`` for a single estimate; free: the policy is the follower's, not the
        environment)."""
        s = np.asarray(s)
        u = self.uniforms.fixed(s.shape[-1])
        s = np.broadcast_to(s, u.shape)
        return self._shape(inverse_cdf(np.cumsum(pi, axis=-1)[s.ravel()], u.ravel()
                                       ).reshape(u.shape))

    # -- episodes -----------------------------------------------------------
    def rollouts(self, pi: object, n: int, horizon: int,
                 start: np.ndarray | None = None) -> Episodes:
        """``n`` episodes of exactly ``horizon`` steps under ``pi[s, a]`` (a single
        estimate's padded :class:`Episodes`).

        Start states are drawn from ``rho`` (or given by ``start[n]``, a reset
        to chosen states); costs ``n`` resets and ``n * horizon`` steps.
        """
        n = _validate_count("n", n)
        lengths = np.full((self.n_replicates, n), _validate_count("horizon", horizon))
        return self._padded(self._run(pi, lengths, self._starts(start, n)))

    def episodes(self, pi: object, n: int, beta: float,
                 start: np.ndarray | None = None, first_action: np.ndarray | None = None
                 ) -> Episodes:
        """:meth:`episode_batch` of a single estimate, padded (:class:`Episodes`)."""
        return self._padded(self.episode_batch(pi, n, beta, start, first_action))

    def _padded(self, batch: EpisodeBatch) -> Episodes:
        if self.n_replicates != 1:
            raise ValueError("episodes: padded episodes are for one replicate; use "
                             "episode_batch")
        n, L = batch.n_episodes, int(batch.live.size)
        check_allocation(f"{n} episodes padded to {L} steps: the sample buffers of one "
                         f"estimate ({SLOT_ENTRIES} entries per slot)",
                         (SLOT_ENTRIES, n * (L + 1)))
        return batch.episodes(0)

    def _starts(self, start: np.ndarray | None, n: int) -> np.ndarray | None:
        if start is None:
            return None
        s = np.asarray(start)
        S = self.mdp.n_states
        if s.ndim == 1 and self.single:
            s = s[None, :]
        if (s.shape != (self.n_replicates, n) or s.dtype.kind not in "iu" or s.min() < 0
                or s.max() >= S):
            raise ValueError(f"start: must be {n} state indices in [0, {S})"
                             + ("" if self.single else " per replicate"))
        return s

    def episode_batch(self, pi: object, n: int, beta: float,
                      start: np.ndarray | None = None,
                      first_action: np.ndarray | None = None) -> EpisodeBatch:
        """``n`` episodes per replicate under ``pi`` that continue after each step with
        probability ``beta`` (so ``T ~ Geometric(1 - beta)``, ``Pr(T > k) = beta^k``,
        ``E T = 1/(1 - beta)``).

        ``start[R, n]`` resets to chosen states instead of drawing from ``rho``;
        ``first_action[R, n]`` fixes ``a_0`` (to sample ``Q``-type quantities); a single
        estimate's may be ``[n]``.
        """
        n = _validate_count("n", n)
        beta = _validate.real_scalar("beta", beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta = {beta}: must satisfy 0 <= beta < 1")
        start = self._starts(start, n)
        self._check_fits(n)
        if beta > 0:
            u = self.uniforms.fixed(n)
            lengths = 1 + np.floor(np.log1p(-u) / np.log(beta)).astype(np.int64)
        else:
            lengths = np.ones((self.n_replicates, n), dtype=np.int64)
        if first_action is not None:
            first_action = np.asarray(first_action).reshape(self.n_replicates, n)
        return self._run(pi, lengths, start, first_action)

    def _check_fits(self, n: int) -> None:
        left = self.remaining
        if left is not None and np.any(left < 2 * n):
            r = int(np.argmax(left < 2 * n))
            raise ValueError(f"budget: {n} episodes need at least {2 * n} transitions (one "
                             f"reset and one step each), {int(left[r])} remain under the "
                             f"cap")

    def _run(self, pi: object, lengths: np.ndarray, start: np.ndarray | None,
             first_action: np.ndarray | None = None) -> EpisodeBatch:
        """Walk the episodes of lengths ``lengths[R, n]`` (fitted to the cap here)."""
        pi = check_policy(self.mdp, pi)
        self._check_fits(lengths.shape[1])
        lengths = self._fit(lengths)
        R, n = lengths.shape
        L = int(lengths.max())
        steps = lengths.sum(axis=1)
        N = int(steps.sum())
        # the flat batch and what an estimate derives from it, with the batches this
        # sampler drew before (hpgd-oracle holds two), before anything is allocated
        check_allocation(f"{R * n} episodes padded to {L} steps ({N} steps): the sample "
                         f"buffers of one estimate ({STEP_ENTRIES} entries per step or "
                         f"episode, with {self.slots} drawn before)",
                         (STEP_ENTRIES, self.slots + N + R * n))
        self.slots += N + R * n
        if start is None:
            s0 = np.reshape(self.reset(n), (R, n))
        else:
            s0 = start
            self.resets = self.resets + n
        self._charge(f"{int(steps.max())} steps", steps)
        flat_len = lengths.reshape(-1)
        chains, live, offsets = _layout(flat_len)
        u, first = self._walk_uniforms(lengths, chains, first_action is not None)
        if first_action is not None:
            first_action = np.asarray(first_action).reshape(-1)[chains]
        s, a, s1 = self._walk(pi, s0.reshape(-1)[chains], live, offsets, u, first,
                              first_action)
        self.steps = self.steps + steps
        return EpisodeBatch(R, n, flat_len, chains, live, offsets, s, a, s1)

    def _walk_uniforms(self, lengths: np.ndarray, chains: np.ndarray,
                       fixed: bool) -> tuple[np.ndarray, np.ndarray]:
        """Reserve the walk's uniforms (module docstring: per replicate 2 per step, one
        fewer per episode when ``a_0`` is given, episode by episode): a flat array ``u``
        and, per chain ``k``, the position ``first[k]`` such that step ``t`` of chain ``k``
        draws its action with ``u[first[k] + 2 t]`` and its next state with
        ``u[first[k] + 2 t + 1]``."""
        n = lengths.shape[1]
        steps = lengths.sum(axis=1)
        u, base_r = self.uniforms.ragged(2 * steps - (n if fixed else 0))
        cum = np.cumsum(lengths, axis=1) - lengths  # steps of earlier episodes of the rep
        base = base_r[:, None] + 2 * cum
        if fixed:  # no action uniform at t = 0: episode j of a replicate starts j earlier
            base -= np.arange(n)[None, :] + 1
        return u, base.reshape(-1)[chains]

    def _walk(self, pi: np.ndarray, cur: np.ndarray, live: np.ndarray, offsets: np.ndarray,
              u: np.ndarray, first: np.ndarray, first_action: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The steps ``(s, a, s')`` (time-major, ``[N]`` each) of the chains starting in
        ``cur[E]`` (by chain), their uniforms ``u`` at ``first`` (:meth:`_walk_uniforms`), the
        first actions ``first_action[E]`` (by chain) given or drawn. One vectorised pass
        per time step (:class:`~exact_bilevel.core._transitions.RowCDFs` draws) until at
        most :data:`SCALAR_TAIL` chains are alive, then :meth:`_walk_tail`."""
        N = int(offsets[-1])
        s = np.empty(N, dtype=np.int64)
        a = np.empty(N, dtype=np.int64)
        s1 = np.empty(N, dtype=np.int64)
        pi_cdf = row_cumsum(pi)
        policy = RowCDFs(pi_cdf)
        live_l, off_l = live.tolist(), offsets.tolist()
        for t, c in enumerate(live_l):
            lo, hi = off_l[t], off_l[t] + c
            given = t == 0 and first_action is not None
            if c <= SCALAR_TAIL and not given:
                self._walk_tail(pi_cdf, cur[:c], t, live_l, off_l, u, first, s, a, s1)
                break
            cur = cur[:c]
            at = first[:c] + 2 * t
            s[lo:hi] = cur
            act = first_action if given else policy.draw(cur, u.take(at))
            a[lo:hi] = act
            cur = self.mdp.sample_next(cur, act, u.take(at + 1))
            s1[lo:hi] = cur
        return s, a, s1

    def _walk_tail(self, pi_cdf: np.ndarray, cur: np.ndarray, t0: int, live: list[int],
                   offsets: list[int], u: np.ndarray, first: np.ndarray, s: np.ndarray,
                   a: np.ndarray, s1: np.ndarray) -> None:
        """The walk from time ``t0`` for its few live chains ``k < len(cur)``, one draw at a
        time in Python: the same draws as the vectorised loop (``bisect`` on the policy's
        row CDF is :func:`inverse_cdf`; :meth:`FiniteMDP.next_state` is ``sample_next``),
        without numpy's per-call overhead."""
        rows: dict[int, list[float]] = {}
        idx, prev, acts, nxt = [], [], [], []
        ends = len(live)
        for k, state in enumerate(cur.tolist()):
            t = t0
            p = int(first[k])
            while t < ends and live[t] > k:
                row = rows.get(state)
                if row is None:
                    row = rows[state] = pi_cdf[state].tolist()
                act = bisect_right(row, float(u[p + 2 * t]) * row[-1])
                idx.append(offsets[t] + k)
                prev.append(state)
                acts.append(act)
                state = self.mdp.next_state(state, act, float(u[p + 2 * t + 1]))
                nxt.append(state)
                t += 1
        s[idx] = prev
        a[idx] = acts
        s1[idx] = nxt

    def _fit(self, lengths: np.ndarray) -> np.ndarray:
        """``lengths[R, n]`` truncated in episode order to fit each replicate's cap
        (module docstring)."""
        left = self.remaining
        if left is None:
            return lengths
        n = lengths.shape[1]
        steps = (left - n)[:, None]
        # cost of episodes 0..i as drawn, plus one step for each later episode
        need = np.cumsum(lengths, axis=1) + (n - 1 - np.arange(n))[None, :]
        over = need > steps
        rows = np.flatnonzero(over.any(axis=1))
        if rows.size == 0:
            return lengths
        # per crossing replicate: its first crossing episode k is cut to the steps left
        # after episodes 0..k-1 as drawn and one step for each later one, which keep 1
        drawn = lengths[rows]
        k = np.argmax(over[rows], axis=1)
        at = np.arange(rows.size)
        before = np.cumsum(drawn, axis=1)[at, k] - drawn[at, k]
        cut = np.where(np.arange(n)[None, :] > k[:, None], 1, drawn)
        cut[at, k] = steps[rows, 0] - before - (n - 1 - k)
        out = lengths.copy()
        out[rows] = cut
        self.truncated[rows] += np.count_nonzero(cut != drawn, axis=1)
        return out


class _BlockTransitions:
    """Sampling access to ``M`` MDPs side by side (state ``m S + s`` of block ``m``): the
    ``sample_next`` / ``next_state`` of :mod:`exact_bilevel.core._transitions` on the row
    CDFs ``cdf[M S A, S]`` of the blocks stacked, or ``cdf[S A, S]`` shared by every block
    (the same dynamics, e.g. only the policies differ); each draw the inverse CDF of its
    own block's row (so a block's draws do not depend on the others). Sampling only."""

    def __init__(self, cdf: np.ndarray, n_states: int, n_actions: int,
                 n_blocks: int) -> None:
        self._cdf = cdf
        self._rows = RowCDFs(cdf)
        self._S = n_states
        self._shared = cdf.shape[0] != n_blocks * n_states * n_actions
        if self._shared and cdf.shape[0] != n_states * n_actions:
            raise ValueError(f"cdf: {cdf.shape[0]} rows, must be S A = {n_states * n_actions}"
                             f" or M S A = {n_blocks * n_states * n_actions}")
        self.n_actions = n_actions
        self.n_states = n_blocks * n_states
        self._lists: dict[int, list[float]] = {}  # row CDFs drawn by next_state

    def sample_next(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if self._shared:  # block and row within it in one pass
            block, local_rows = np.divmod(rows, self._S * self.n_actions)
            local = self._rows.draw(local_rows, np.asarray(u))
        else:
            block = rows // (self._S * self.n_actions)
            local = self._rows.draw(rows, np.asarray(u))
        local += block * self._S
        return local

    def next_state(self, row: int, u: float) -> int:
        block, local = divmod(row, self._S * self.n_actions)
        key = local if self._shared else row
        cdf = self._lists.get(key)
        if cdf is None:
            cdf = self._lists[key] = self._cdf[key].tolist()
        return block * self._S + bisect_right(cdf, u * cdf[-1])


def block_mdp(cdf: np.ndarray, n_actions: int, n_blocks: int, gamma: float,
              initial: np.ndarray) -> FiniteMDP:
    """``n_blocks = M`` MDPs side by side, for sampling only, from their next-state row
    CDFs ``cdf[M S A, S]`` (row ``(m S + s) A + a`` is block ``m``'s ``cumsum(P[s, a])``)
    or ``cdf[S A, S]`` shared by every block (one table, no copy per block): state ``m S +
    s`` is state ``s`` of block ``m`` and never leaves its block; ``initial[M S]`` (start
    episodes in a block with ``start=``)."""
    S = cdf.shape[1]
    mdp = FiniteMDP.__new__(FiniteMDP)
    op = _BlockTransitions(cdf, S, n_actions, n_blocks)
    mdp._init_op(op, np.zeros((n_blocks * S, n_actions)), gamma, initial)
    return mdp


def stacked_mdp(mdps: list[FiniteMDP]) -> FiniteMDP:
    """The MDPs ``mdps`` (same ``S``, ``A``) side by side, for sampling only
    (:func:`block_mdp`; one shared row-CDF table when every entry is the same MDP):
    state ``m S + s`` is state ``s`` of ``mdps[m]`` and never leaves its block;
    ``initial`` is the average of the blocks' (start episodes in a block with
    ``start=``)."""
    S, A, M = mdps[0].n_states, mdps[0].n_actions, len(mdps)
    rho = np.concatenate([m.initial for m in mdps]) / M
    if all(m is mdps[0] for m in mdps):
        cdf = np.cumsum(np.asarray(mdps[0].transitions, dtype=float).reshape(S * A, S), axis=-1)
        return block_mdp(cdf, A, M, mdps[0].gamma, rho)
    check_allocation(f"{M} stacked MDPs: row CDFs [M S A, S]", (M * S * A, S))
    P = np.stack([np.asarray(m.transitions, dtype=float).reshape(S * A, S) for m in mdps])
    return block_mdp(np.cumsum(P, axis=-1).reshape(-1, S), A, M, mdps[0].gamma, rho)


def _validate_count(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} = {n!r}: must be a positive integer")
    return int(n)
