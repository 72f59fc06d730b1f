r"""Windows of transitions from parallel environments, as the official FourRooms code samples.

A leader step of the authors' FourRooms runs (akimotolab/BC-HG ``configurable_mdp``)
receives a *window*: ``n`` parallel environments (1, 1, 2, 5 at budgets 100, 200, 400,
1000 transitions) each take ``W = budget / n`` consecutive steps under the follower's
policy. An episode ends with the step taken **at** a terminal state (the goal) or with
its ``cap``-th step (200); the environment then resets (``rho``) and the window goes on,
so a window holds whole episodes and, at its end, a *fragment* of an episode cut by the
window.

:class:`EpisodeStream` supplies windows in two modes:

* ``carry=False`` (what the official code does: it resets every environment at the
  start of each leader step, so the fragment cut at a window's end is discarded);
* ``carry=True`` (episodes carried across leader steps: the next window continues each
  environment where the previous one stopped, with its step count within the episode,
  so an episode may span windows; the fragment at a window's start continues one begun
  before).

Terminal states must be absorbing in the sampled MDP (``P[g, a, g] = 1``): the package
encodes the authors' terminal goal as an absorbing state whose per-step rewards sum to
the once-only payment (:func:`exact_bilevel.experiments.paper_problems.four_rooms_design`),
and the fragment estimators (:mod:`.fragments`) close a terminal step with that sum.

Cost: every step is billed through the :class:`~.sampling.Sampler` (``steps``), every
reset too (``resets``); a window holds exactly ``budget`` steps, and the resets are
billed on top (the package's convention: ``transitions = steps + resets``; the
authors count the steps only).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from ..core._budget import check_allocation
from ..core._transitions import inverse_cdf
from .sampling import Sampler

#: Environments up to which :meth:`EpisodeStream.window` walks them one draw at a time in
#: Python (cheaper than numpy's per-call overhead); more are vectorised (same draws).
SCALAR_ENVS = 8

#: Episode cap of the official FourRooms runs (``max_steps_in_episode``).
FOUR_ROOMS_CAP = 200
#: Parallel environments of the official FourRooms configs, by budget (``num_envs``).
OFFICIAL_ENVS = {100: 1, 200: 1, 400: 2, 1000: 5}


@dataclass(frozen=True)
class Window:
    """The ``n x W`` transitions one leader step receives.

    Attributes (all shape ``(n, W)``)
    ---------------------------------
    states, actions, next_states : int
        ``(s_t, a_t, s_{t+1})`` of environment ``i`` at its ``t``-th step in the window.
    time : int
        Index of the step within its episode (0 = the first step after a reset).
    ends : bool
        The episode ends with this step: ``s_t`` is terminal, or ``time = cap - 1``.
    terminal : bool
        ``s_t`` is a terminal state (the episode ends at its closure).
    """

    states: np.ndarray
    actions: np.ndarray
    next_states: np.ndarray
    time: np.ndarray
    ends: np.ndarray
    terminal: np.ndarray

    @property
    def n_ends(self) -> int:
        """Number of episodes that end inside the window (the authors' normaliser)."""
        return int(np.count_nonzero(self.ends))

    @property
    def n_steps(self) -> int:
        return int(self.states.size)


def _count(name: str, n: object, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} = {n!r}: must be an integer >= {minimum}")
    return int(n)


class EpisodeStream:
    """``n_envs`` environments whose episodes (capped at ``cap`` steps, ended at the
    ``terminal`` states) supply consecutive windows of transitions.

    Parameters
    ----------
    n_envs : int
        Parallel environments ``n``; a window of ``budget`` steps gives each ``budget / n``.
    cap : int
        Most steps per episode (the official 200).
    terminal : array_like of int
        Terminal states (absorbing in the sampled MDP; checked at each window).
    carry : bool
        Continue the environments across windows (``True``) or reset all of them at the
        start of every window (``False``, the official code).
    """

    def __init__(self, n_envs: int, cap: int, terminal: object = (), *,
                 carry: bool = True) -> None:
        self.n_envs = _count("n_envs", n_envs)
        self.cap = _count("cap", cap)
        self.terminal = np.unique(np.asarray(terminal, dtype=np.int64).reshape(-1))
        self.carry = bool(carry)
        self._s: np.ndarray | None = None       # current state of each environment
        self._time = np.zeros(self.n_envs, dtype=np.int64)
        self._pending = np.ones(self.n_envs, dtype=bool)  # needs a reset before stepping

    def _terminal_mask(self, sampler: Sampler) -> np.ndarray:
        S = sampler.mdp.n_states
        if self.terminal.size and (self.terminal.min() < 0 or self.terminal.max() >= S):
            raise ValueError(f"terminal: states must lie in [0, {S}), got "
                             f"{self.terminal.tolist()}")
        mask = np.zeros(S, dtype=bool)
        mask[self.terminal] = True
        for g in self.terminal:
            e = np.zeros(S)
            e[g] = 1.0
            stay = sampler.mdp.expect(e)[g]  # P[g, a, g] for every a
            if not np.allclose(stay, 1.0, rtol=0.0, atol=1e-12):
                a = int(np.argmin(stay))
                raise ValueError(f"terminal[{int(np.flatnonzero(self.terminal == g)[0])}] "
                                 f"= {int(g)}: must be absorbing, but P[{int(g)}, {a}, "
                                 f"{int(g)}] = {stay[a]:.6g}")
        return mask

    def window(self, sampler: Sampler, pi: np.ndarray, budget: int) -> Window:
        """The next ``budget`` steps (``budget / n_envs`` per environment) under ``pi[S, A]``.

        Draws: first ``2 budget`` uniforms from ``sampler.rng`` (per time step and
        environment, in that order: the action by the inverse CDF of ``pi(.|s)``, then the
        next state by :meth:`FiniteMDP.next_state`), then a reset from ``rho``
        (:meth:`Sampler.reset`) whenever an environment starts an episode. Bills
        ``budget`` steps and the resets on ``sampler`` (a cap it carries is respected:
        ``ValueError`` before drawing if the steps do not fit).
        """
        budget = _count("budget", budget)
        if budget % self.n_envs:
            raise ValueError(f"budget = {budget}: must be a multiple of n_envs = "
                             f"{self.n_envs} (each environment takes budget / n_envs steps)")
        n, W = self.n_envs, budget // self.n_envs
        check_allocation(f"a window of {n} x {W} steps (6 arrays)", (6, n, W))
        is_terminal = self._terminal_mask(sampler)
        left = sampler.remaining
        if left is not None and budget > left:
            raise ValueError(f"budget: a window of {budget} steps does not fit the "
                             f"sampler's cap ({left} transitions remain)")
        if not self.carry or self._s is None:
            self._s = np.zeros(n, dtype=np.int64)
            self._pending[:] = True
        u = sampler.rng.random(2 * budget)
        walk = self._walk_scalar if n <= SCALAR_ENVS else self._walk_vector
        out, ends = walk(sampler, np.cumsum(pi, axis=-1), is_terminal, u, W)
        sampler.steps += budget
        return Window(states=out[0], actions=out[1], next_states=out[2], time=out[3],
                      ends=ends, terminal=is_terminal[out[0]])

    def _walk_scalar(self, sampler: Sampler, cdf: np.ndarray, is_terminal: np.ndarray,
                     u: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray]:
        """The walk of :meth:`window` one draw at a time in Python (few environments)."""
        n, cap = self.n_envs, self.cap
        cdf_rows, uu, terminal = cdf.tolist(), u.tolist(), is_terminal.tolist()
        s, time, pending = self._s.tolist(), self._time.tolist(), self._pending.tolist()
        rows = [[[0] * W for _ in range(n)] for _ in range(4)]
        end_rows = [[False] * W for _ in range(n)]
        next_state = sampler.mdp.next_state
        pos = 0
        for t in range(W):
            for i in range(n):
                if pending[i]:
                    s[i], time[i] = int(sampler.reset(1)[0]), 0
            for i in range(n):
                row = cdf_rows[s[i]]
                a = bisect_right(row, uu[pos] * row[-1])
                s1 = next_state(s[i], a, uu[pos + 1])
                pos += 2
                rows[0][i][t], rows[1][i][t], rows[2][i][t], rows[3][i][t] = s[i], a, s1, time[i]
                end_rows[i][t] = pending[i] = terminal[s[i]] or time[i] >= cap - 1
                s[i], time[i] = s1, time[i] + 1
        self._s = np.array(s, dtype=np.int64)
        self._time = np.array(time, dtype=np.int64)
        self._pending = np.array(pending, dtype=bool)
        return np.array(rows, dtype=np.int64), np.array(end_rows, dtype=bool)

    def _walk_vector(self, sampler: Sampler, cdf: np.ndarray, is_terminal: np.ndarray,
                     u: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray]:
        """The walk of :meth:`window` vectorised over the environments (the same draws as
        :meth:`_walk_scalar`: ``inverse_cdf`` and ``sample_next`` per time step)."""
        n = self.n_envs
        s, time, pending = self._s.copy(), self._time.copy(), self._pending.copy()
        out = np.zeros((4, n, W), dtype=np.int64)
        ends = np.zeros((n, W), dtype=bool)
        uv = u.reshape(W, n, 2)
        for t in range(W):
            if pending.any():
                idx = np.flatnonzero(pending)
                s[idx] = sampler.reset(idx.size)
                time[idx] = 0
            a = inverse_cdf(cdf[s], uv[t, :, 0])
            s1 = sampler.mdp.sample_next(s, a, uv[t, :, 1])
            out[0, :, t], out[1, :, t], out[2, :, t], out[3, :, t] = s, a, s1, time
            ends[:, t] = pending = is_terminal[s] | (time >= self.cap - 1)
            s, time = s1, time + 1
        self._s, self._time, self._pending = s, time, pending
        return out, ends
