"""Built-in MDPs: seeded random MDPs, gridworlds from a map, and FourRooms.

Grid conventions: cells are addressed as ``(row, col)`` from the top-left;
free cells are numbered row-major (this numbering is the state index);
actions are ``0 = up, 1 = right, 2 = down, 3 = left``; a move into a wall or
off the map leaves the agent where it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from . import _validate
from .mdp import AUTO_SPARSE_ENTRIES, FiniteMDP

#: The 13x13 FourRooms map of Sutton, Precup & Singh (1999); ``x`` is a wall.
FOUR_ROOMS_MAP: tuple[str, ...] = (
    "xxxxxxxxxxxxx",
    "x     x     x",
    "x     x     x",
    "x           x",
    "x     x     x",
    "x     x     x",
    "xx xxxx     x",
    "x     xxx xxx",
    "x     x     x",
    "x     x     x",
    "x           x",
    "x     x     x",
    "xxxxxxxxxxxxx",
)

#: Action displacements ``(d_row, d_col)``: up, right, down, left.
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
ACTION_NAMES: tuple[str, ...] = ("up", "right", "down", "left")


def random_mdp(n_states: int, n_actions: int, *, gamma: float = 0.9, seed: int = 0,
               support: int | None = None, reward_scale: float = 1.0,
               random_initial: bool = False) -> FiniteMDP:
    """A seeded random MDP.

    Each row ``P[s, a, :]`` is drawn from a flat Dirichlet on ``support``
    distinct next states chosen uniformly (all ``S`` states if ``support`` is
    None); ``r[s, a] ~ U(0, reward_scale)``; ``rho`` is uniform, or flat
    Dirichlet if ``random_initial``. Reproducible bit for bit from ``seed``.
    """
    if n_states < 1 or n_actions < 1:
        raise ValueError(f"n_states = {n_states}, n_actions = {n_actions}: both must be >= 1")
    k = n_states if support is None else int(support)
    if not 1 <= k <= n_states:
        raise ValueError(f"support = {support}: must satisfy 1 <= support <= n_states")
    rng = np.random.default_rng(seed)
    P = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            idx = rng.choice(n_states, size=k, replace=False)
            P[s, a, idx] = rng.dirichlet(np.ones(k))
    r = reward_scale * rng.random((n_states, n_actions))
    rho = rng.dirichlet(np.ones(n_states)) if random_initial else None
    return FiniteMDP(P, r, gamma, rho)


@dataclass(frozen=True)
class GridWorld:
    """A gridworld map with its cell <-> state numbering.

    Attributes
    ----------
    layout : tuple of str
        Map rows; ``x`` marks a wall, anything else is free.
    cells : tuple of (row, col)
        Free cells in row-major order; ``cells[s]`` is the cell of state ``s``.
    """

    layout: tuple[str, ...]
    cells: tuple[tuple[int, int], ...]

    @classmethod
    def from_map(cls, layout: Sequence[str]) -> GridWorld:
        rows = tuple(layout)
        if not rows or any(len(row) != len(rows[0]) for row in rows):
            raise ValueError("layout: rows must be non-empty and of equal length")
        cells = tuple((i, j) for i, row in enumerate(rows) for j, ch in enumerate(row)
                      if ch != "x")
        if not cells:
            raise ValueError("layout: has no free cell")
        return cls(rows, cells)

    @property
    def n_states(self) -> int:
        return len(self.cells)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layout), len(self.layout[0])

    def state(self, cell: tuple[int, int]) -> int:
        """State index of a free ``(row, col)`` cell."""
        try:
            return self.cells.index(tuple(cell))  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"cell {tuple(cell)}: is a wall or off the map") from None

    def to_grid(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Place per-state ``values[s]`` on the map (walls get ``fill``), for plotting."""
        out = np.full(self.shape, fill, dtype=float)
        for s, (i, j) in enumerate(self.cells):
            out[i, j] = values[s]
        return out

    def move_transitions(self, random_action_prob: float = 0.0) -> np.ndarray:
        """``P[s, a, s']`` of the four moves, where with probability
        ``random_action_prob`` the chosen action is replaced by a uniformly random
        one (possibly the same)."""
        S = self.n_states
        return self.move_matrix(random_action_prob).toarray().reshape(S, 4, S)

    def move_matrix(self, random_action_prob: float = 0.0) -> scipy.sparse.csr_matrix:
        """The same transitions as a sparse ``(S*4, S)`` matrix (row ``s * 4 + a``);
        at most 5 non-zeros per row, so large maps fit in memory."""
        p = _validate.real_scalar("random_action_prob", random_action_prob)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random_action_prob = {p}: must be in [0, 1]")
        S = self.n_states
        index = {c: s for s, c in enumerate(self.cells)}
        nxt = np.array([[index.get((i + di, j + dj), s) for di, dj in MOVES]
                        for s, (i, j) in enumerate(self.cells)])  # [S, 4]
        rows = np.arange(S * 4)
        data = [np.full(S * 4, 1.0 - p)]
        cols = [nxt.reshape(-1)]
        ridx = [rows]
        for b in range(4):  # the random replacement: each move b with prob p / 4
            data.append(np.full(S * 4, p / 4))
            cols.append(np.repeat(nxt[:, b], 4))
            ridx.append(rows)
        M = scipy.sparse.coo_matrix((np.concatenate(data), (np.concatenate(ridx),
                                                            np.concatenate(cols))),
                                    shape=(S * 4, S)).tocsr()  # duplicates are summed
        M.eliminate_zeros()
        return M


def gridworld(layout: Sequence[str], goal: tuple[int, int], *, gamma: float = 0.99,
              random_action_prob: float = 0.0, goal_reward: float = 1.0,
              start: tuple[int, int] | None = None,
              storage: str = "auto") -> tuple[FiniteMDP, GridWorld]:
    """A goal-reaching gridworld with an absorbing goal.

    ``r[s, a] = goal_reward * P[s, a, goal]`` for ``s != goal`` (reward on
    reaching the goal), and the goal is absorbing with reward 0. Note that in a
    *soft* MDP an absorbing state still yields the entropy bonus
    ``tau log A`` per step. Initial distribution: all mass on ``start``, or
    uniform over free cells if ``start`` is None. ``storage`` as in
    :class:`FiniteMDP` (``"auto"``: sparse above 353 free cells, where ``S * 4 * S``
    exceeds :data:`~exact_bilevel.core.mdp.AUTO_SPARSE_ENTRIES`).
    """
    grid = GridWorld.from_map(layout)
    S = grid.n_states
    M = grid.move_matrix(random_action_prob).tolil()
    g = grid.state(goal)
    for a in range(4):
        M.rows[g * 4 + a] = [g]
        M.data[g * 4 + a] = [1.0]
    M = M.tocsr()
    r = goal_reward * np.asarray(M[:, g].todense()).reshape(S, 4)
    r[g] = 0.0
    rho = None
    if start is not None:
        rho = np.zeros(S)
        rho[grid.state(start)] = 1.0
    if storage == "auto":  # the FiniteMDP rule (a gridworld row has <= 5 successors)
        storage = "sparse" if S * 4 * S > AUTO_SPARSE_ENTRIES else "dense"
    return FiniteMDP(M, r, gamma, rho, storage=storage, n_actions=4), grid


def open_gridworld(n_rows: int, n_cols: int, *, gamma: float = 0.99,
                   random_action_prob: float = 0.1) -> tuple[FiniteMDP, GridWorld]:
    """An ``n_rows x n_cols`` room without inner walls (``S = n_rows * n_cols``), start
    top-left, absorbing goal bottom-right: the scale benchmark of issue 8."""
    layout = [" " * n_cols] * n_rows
    return gridworld(layout, (n_rows - 1, n_cols - 1), gamma=gamma,
                     random_action_prob=random_action_prob, start=(0, 0))


def four_rooms(*, gamma: float = 0.99, random_action_prob: float = 0.0,
               goal: tuple[int, int] = (1, 9), start: tuple[int, int] = (4, 1),
               goal_reward: float = 1.0) -> tuple[FiniteMDP, GridWorld]:
    """The 13x13 FourRooms gridworld (104 free cells) with an absorbing goal.

    See :data:`FOUR_ROOMS_MAP` and :func:`gridworld`.
    """
    return gridworld(FOUR_ROOMS_MAP, goal, gamma=gamma, random_action_prob=random_action_prob,
                     goal_reward=goal_reward, start=start)
