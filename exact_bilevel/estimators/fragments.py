r"""Hypergradient estimates from windows of episode fragments, formed as the official code does.

The authors' FourRooms code (akimotolab/BC-HG ``configurable_mdp``,
``train_four_rooms_bchg.py`` / ``train_four_rooms_hpgd_oracle.py``) estimates ``grad F``
from one :class:`~.carried.Window` per leader step. Facts of its construction, which
this module follows:

**How a fragment's sums are formed.** In each environment's row of the window, the
discounted sum of any per-step quantity ``c_t`` (a reward, or a reward's gradient) is
a backward scan that restarts at each episode end,

.. math:: G_t = c_t + \gamma\, G_{t+1}\, (1 - \mathrm{end}_t), \qquad G_{W-1} = c_{W-1},

so ``G_t`` sums from ``t`` to the end of the episode or of the window, whichever comes
first: a fragment cut by the window's end is summed as if the episode stopped there
(no bootstrap, no correction). A fragment at a window's *start* that continues an
episode begun before (``carry=True`` only) is summed from its first step in the window.
An episode ending at a terminal state adds, at its terminal step, the once-only
payment; the package encodes it as the exact value of the absorbing state, so the
terminal step's ``c_t`` is closed as ``c(g, a_t) + gamma/(1 - gamma) sum_a pi(a|g) c(g, a)``
(the sum the absorbing encoding pays from there on). Episodes ended by the ``cap`` stop
with no bootstrap.

**Tables.** Every-visit averages over the window: ``dQ_hat[s, a] = mean of the follower
sums G(dr) at visits of (s, a)``, ``dV_hat[s]`` likewise per state (zero where unvisited,
as the code's ``sum / max(count, 1)``).

**BC-HG** (:func:`window_bchg`)

.. math:: \hat g = \sum_s \rho(s)\, \hat V_{dL}[s] + \nabla \mathrm{reg}
    + \frac{1}{\tau\, \max(1, N_{end})} \sum_{i, t} \gamma_L^{\mathrm{time}_{it}}
      A_L(s_{it}, a_{it})\, \widehat{dQ}[s_{it}, a_{it}],

``\hat V_{dL}`` the every-visit state average of the leader-gradient sums ``G(dr_L)``
(the code averages it over the episodes' first steps, all at the one start state of
FourRooms: equal to ``rho @ V_dL`` for a point-mass ``rho``), ``time`` the step's index
within its episode, ``N_end`` the number of episodes that end in the window (terminal or
cap; the cut fragment is summed but not counted), ``A_L = Q_L - sum_a pi Q_L`` from the
leader critic (the official: a SARSA table carried across leader steps,
:class:`SarsaTable`).

**HPGD-oracle** (:func:`window_hpgd_oracle`): the same sum with ``A_L`` and ``dA =
dQ_hat - dV_hat`` all taken from an *oracle* window (episodes reset to uniformly drawn
states; the code draws 10,000 such transitions per leader step), the time weights,
visited pairs and ``N_end`` from the on-policy window, the direct term as BC-HG's.

Both are biased at a finite window (the cut fragments, the ratio to ``N_end``, the
table averages); the bias against the exact gradient is measured in
``verification/reproduce_fourrooms.md``. Problems whose ``P`` depends on ``x`` are
refused (the official estimators have no score term).
"""

from __future__ import annotations

import numpy as np

from ._common import Estimate, LeaderKnowledge, require_leader_return
from .carried import EpisodeStream, Window
from .critics import Critic
from .sampling import Sampler

#: The official grid of SARSA step sizes (``sarsa_alpha``).
SARSA_STEP_SIZES = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def closed_steps(values: np.ndarray, win: Window, pi: np.ndarray, gamma: float) -> np.ndarray:
    """Per-step ``c_t = values[s_t, a_t]``, a terminal step closed with ``gamma/(1 - gamma)
    sum_a pi(a|s_t) values[s_t, a]``; ``values[S, A, ...]`` -> ``[n, W, ...]``."""
    c = values[win.states, win.actions]
    if win.terminal.any():
        later = gamma / (1.0 - gamma) * np.einsum("sa,sa...->s...", pi, values)
        term = win.terminal.reshape(win.terminal.shape + (1,) * (c.ndim - 2))
        c = c + np.where(term, later[win.states], 0.0)
    return c


def fragment_sums(c: np.ndarray, ends: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = c_t + gamma G_{t+1} (1 - ends_t)``, ``G_{W-1} = c_{W-1}``, along axis 1 of
    ``c[n, W, ...]`` (``ends[n, W]``): each fragment's discounted sums (module docstring)."""
    G = np.array(c, dtype=float, copy=True)
    keep = gamma * (~ends).reshape(ends.shape + (1,) * (c.ndim - 2))
    for t in range(c.shape[1] - 2, -1, -1):
        G[:, t] += keep[:, t] * G[:, t + 1]
    return G


def visit_means(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Every-visit average of ``values[N, ...]`` per ``index[N]`` in ``[0, size)``; zero
    where unvisited (the official ``sum / max(count, 1)``); shape ``[size, ...]``."""
    flat = values.reshape(index.size, -1)
    sums = np.zeros((size, flat.shape[1]))
    if flat.shape[1] == 1:
        sums[:, 0] = np.bincount(index, weights=flat[:, 0], minlength=size)
    else:
        _bincount_rows(sums, index, flat)
    counts = np.bincount(index, minlength=size)
    return (sums / np.maximum(counts, 1)[:, None]).reshape((size, *values.shape[1:]))


def _bincount_rows(sums: np.ndarray, index: np.ndarray, flat: np.ndarray) -> None:
    """``sums[index[j]] += flat[j]`` by sorting (faster than ``np.add.at`` for wide rows)."""
    order = np.argsort(index, kind="stable")
    idx, rows = index[order], flat[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    sums[idx[starts]] += np.add.reduceat(rows, starts, axis=0)


def _check(know: LeaderKnowledge, name: str) -> None:
    require_leader_return(know, name)
    if know.score is not None:
        raise ValueError(f"problem: {name} (the official fragment estimator) has no "
                         "transition-score term; P must not depend on x")


def fragment_prefix(u: np.ndarray, ends: np.ndarray, gamma: float) -> np.ndarray:
    """``Y_k = u_k + gamma Y_{k-1} (1 - ends_{k-1})``, ``Y_0 = u_0``, along axis 1 of
    ``u[n, W]``: the dual of :func:`fragment_sums`, ``sum_t u_t G_t = sum_k Y_k c_k``."""
    Y = np.array(u, dtype=float, copy=True)
    keep = gamma * ~ends
    for k in range(1, u.shape[1]):
        Y[:, k] += keep[:, k - 1] * Y[:, k - 1]
    return Y


def contract(Y: np.ndarray, win: Window, values: np.ndarray, pi: np.ndarray,
             gamma: float) -> np.ndarray:
    """``sum_{i, k} Y[i, k] c_k`` with ``c`` the closed steps of ``values[S, A, ...]``
    (:func:`closed_steps`), accumulated as ``[S, A]`` and ``[S]`` tables of scalars;
    shape ``values.shape[2:]``."""
    S, A = pi.shape
    flat = values.reshape(S * A, -1)
    y = Y.reshape(-1)
    out = np.bincount((win.states * A + win.actions).reshape(-1), weights=y,
                      minlength=S * A) @ flat
    if win.terminal.any():
        yt = np.bincount(win.states.reshape(-1), weights=y * win.terminal.reshape(-1),
                         minlength=S)
        later = gamma / (1.0 - gamma) * np.einsum("sa,sak->sk", pi, flat.reshape(S, A, -1))
        out = out + yt @ later
    return out.reshape(values.shape[2:])


def _per_visit(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index] / count(index)`` per visit (each visit's share of its cell's mean)."""
    counts = np.bincount(index.reshape(-1), minlength=table.size)
    return (table / np.maximum(counts, 1))[index]


def window_direct(know: LeaderKnowledge, win: Window) -> np.ndarray:
    """``sum_s rho(s) V_dL_hat[s] + grad reg``, ``V_dL_hat`` the every-visit state average
    of the leader-gradient sums ``G(dr_L)``; shape ``[d]``."""
    u = _per_visit(know.problem.initial, win.states)
    Y = fragment_prefix(u, win.ends, know.gamma_leader)
    return contract(Y, win, know.dr_leader, know.pi, know.gamma_leader) + know.reg_grad


def visit_weights(know: LeaderKnowledge, win: Window, adv: np.ndarray) -> np.ndarray:
    """``w[s, a] = sum_{visits of (s, a) in win} gamma_L^time A[s, a] / (tau max(1, N_end))``,
    the weight each table cell gets in the indirect term; shape ``[S, A]``."""
    S, A = know.pi.shape
    w = know.gamma_leader ** win.time * adv[win.states, win.actions]
    return (np.bincount((win.states * A + win.actions).reshape(-1), weights=w.reshape(-1),
                        minlength=S * A).reshape(S, A) / (know.tau * max(1, win.n_ends)))


def window_bchg(know: LeaderKnowledge, win: Window, critic: Critic) -> np.ndarray:
    """The official BC-HG estimate from one window (module docstring); shape ``[d]``:
    ``sum_{s,a} w[s, a] dQ_hat[s, a]`` computed in the dual order (:func:`fragment_prefix`),
    never forming the ``[n, W, d]`` sums."""
    _check(know, "window bc-hg")
    A = know.pi.shape[1]
    w = visit_weights(know, win, critic.advantage)
    u = _per_visit(w.reshape(-1), win.states * A + win.actions)
    Y = fragment_prefix(u, win.ends, know.gamma)
    return window_direct(know, win) + contract(Y, win, know.dr, know.pi, know.gamma)


def oracle_advantage(know: LeaderKnowledge, oracle: Window) -> np.ndarray:
    """``A_L_hat[S, A] = Q_hat - V_hat``: every-visit Monte Carlo means of the leader's
    fragment sums in the oracle window (``V_hat`` the state-visit mean, as the official)."""
    S, A = know.pi.shape
    G = fragment_sums(closed_steps(know.r_leader, oracle, know.pi, know.gamma_leader),
                      oracle.ends, know.gamma_leader).reshape(-1)
    q = visit_means((oracle.states * A + oracle.actions).reshape(-1), G, S * A)
    return q.reshape(S, A) - visit_means(oracle.states.reshape(-1), G, S)[:, None]


def window_hpgd_oracle(know: LeaderKnowledge, win: Window, oracle: Window) -> np.ndarray:
    """The official HPGD-oracle estimate, ``sum_{s,a} w[s, a] (dQ_hat[s, a] - dV_hat[s])``
    with ``w`` from the on-policy ``win`` and :func:`oracle_advantage`, the tables from
    ``oracle`` (dual order); shape ``[d]``."""
    _check(know, "window hpgd-oracle")
    A = know.pi.shape[1]
    w = visit_weights(know, win, oracle_advantage(know, oracle))
    u = (_per_visit(w.reshape(-1), oracle.states * A + oracle.actions)
         - _per_visit(w.sum(axis=1), oracle.states))
    Y = fragment_prefix(u, oracle.ends, know.gamma)
    return window_direct(know, win) + contract(Y, oracle, know.dr, know.pi, know.gamma)


class SarsaTable:
    r"""The official leader critic: a SARSA table ``Q_L[s, a]`` carried across leader steps.

    Each leader step updates it on its window's transitions, visited in a uniformly random
    order (the code shuffles them), with the sampled next pair of the same environment,

    .. math:: Q(s_t, a_t) \mathrel{+}= \alpha\,\big(r_L(s_t, a_t) + \gamma_L\, Q(s_{t+1},
              a_{t+1})\, [\text{not end}_t,\ t + 1 < W] - Q(s_t, a_t)\big)

    (no bootstrap at an episode's end nor at the window's last step; a terminal step's
    reward closed as in :func:`closed_steps`), then gives ``V_L = sum_a pi Q``,
    ``A_L = Q - V_L``. Initial table ``N(0, 1)`` (the official, from ``init_rng``) or
    zeros (``init_rng=None``).

    Parameters
    ----------
    n_states, n_actions : int
    step_size : float
        ``alpha`` in ``(0, 1]``; the official grid is :data:`SARSA_STEP_SIZES`.
    init_rng : numpy.random.Generator or None
        Draws the ``N(0, 1)`` initial table (use its own stream); ``None``: zeros.
    """

    def __init__(self, n_states: int, n_actions: int, step_size: float,
                 init_rng: np.random.Generator | None = None) -> None:
        if isinstance(step_size, bool) or not 0.0 < float(step_size) <= 1.0:
            raise ValueError(f"step_size = {step_size!r}: must be in (0, 1]")
        self.step_size = float(step_size)
        self.q = (np.zeros((n_states, n_actions)) if init_rng is None
                  else init_rng.normal(0.0, 1.0, size=(n_states, n_actions)))

    def update(self, know: LeaderKnowledge, win: Window, rng: np.random.Generator) -> Critic:
        """Update on ``win`` in the order ``rng.permutation(n W)``; return the critic."""
        n, W = win.states.shape
        r = closed_steps(know.r_leader, win, know.pi, know.gamma_leader).reshape(-1).tolist()
        s, a = win.states.reshape(-1).tolist(), win.actions.reshape(-1).tolist()
        boot = (~win.ends).copy()
        boot[:, -1] = False
        boot = boot.reshape(-1).tolist()
        q = self.q.tolist()
        alpha, gL = self.step_size, know.gamma_leader
        for j in rng.permutation(n * W).tolist():
            target = r[j] + (gL * q[s[j + 1]][a[j + 1]] if boot[j] else 0.0)
            row = q[s[j]]
            row[a[j]] += alpha * (target - row[a[j]])
        self.q = np.array(q)
        return Critic(q=self.q.copy(), v=np.sum(know.pi * self.q, axis=-1))


def sample_window(stream: EpisodeStream, sampler: Sampler, know: LeaderKnowledge,
                  budget: int) -> tuple[Window, int, int]:
    """``stream.window(sampler, pi, budget)`` and what it billed: ``(window, transitions,
    resets)``."""
    t0, r0 = sampler.transitions, sampler.resets
    win = stream.window(sampler, know.pi, budget)
    # one environment stream: a single-estimate sampler's counters are [1]-arrays
    return win, int((sampler.transitions - t0).sum()), int((sampler.resets - r0).sum())


def windowed_bchg(know: LeaderKnowledge, sampler: Sampler, stream: EpisodeStream,
                  budget: int, critic: SarsaTable | str = "exact",
                  rng: np.random.Generator | None = None) -> Estimate:
    """One leader step of the official BC-HG: a window of ``budget`` steps from ``stream``,
    the critic (a :class:`SarsaTable` updated on it with ``rng``, or ``"exact"``), and
    :func:`window_bchg`."""
    win, cost, resets = sample_window(stream, sampler, know, budget)
    if isinstance(critic, SarsaTable):
        c = critic.update(know, win, rng if rng is not None else sampler.rng)
    elif critic == "exact":
        lv = know.leader_values
        c = Critic(q=lv.q, v=lv.v)
    else:
        raise ValueError(f"critic = {critic!r}: must be a SarsaTable or 'exact'")
    return Estimate(gradient=window_bchg(know, win, c), transitions=cost, resets=resets,
                    estimator="bc-hg (official windows)")


def windowed_hpgd_oracle(know: LeaderKnowledge, sampler: Sampler, stream: EpisodeStream,
                         budget: int, oracle_sampler: Sampler, oracle_stream: EpisodeStream,
                         oracle_budget: int) -> Estimate:
    """One leader step of the official HPGD-oracle: an on-policy window of ``budget`` steps
    and an oracle window of ``oracle_budget`` steps (``oracle_sampler``'s ``rho`` is the
    reset distribution, uniform in the official code); :func:`window_hpgd_oracle`. The
    oracle's transitions are billed on ``oracle_sampler`` and added to the cost."""
    win, cost, resets = sample_window(stream, sampler, know, budget)
    oracle, ocost, oresets = sample_window(oracle_stream, oracle_sampler, know, oracle_budget)
    return Estimate(gradient=window_hpgd_oracle(know, win, oracle), transitions=cost + ocost,
                    resets=resets + oresets, estimator="hpgd-oracle (official windows)")
