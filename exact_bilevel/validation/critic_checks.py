r"""Deterministic checks that the sampled critics target the exact values.

A sampled critic is a function ``(know, episodes) -> table`` (``[S, A]`` for the
leader's ``Q_L``, ``[S, A, d]`` for the follower's ``dQ``), run here through the
same code the estimators run (:func:`~exact_bilevel.estimators.critics.leader_critic`,
:func:`~exact_bilevel.estimators.tabular.estimate_dq`). Each check computes, with no
randomness, the value the critic converges to, which must equal the exact table for
any pair of discounts ``gamma_L != gamma``:

* **TD critics** (batch expected-SARSA TD(0), the fixed point tabular TD converges
  to on its batch): fed the *exact batch* (:func:`exact_batch`: for every pair
  ``(s, a)``, ``M`` one-step episodes, ``M P(s'|s, a)`` of which land in ``s'``;
  transitions with entries in ``(1/M) Z``, :func:`rational_transitions`), their
  empirical transitions are ``P`` itself, so what they return *is* the fixed point of
  the expected TD update on the true model (:func:`td_population`).
* **Monte Carlo critics** (every-visit averages of the reweighted returns
  ``G_t = sum_k c_k r(s_{t+k}, a_{t+k})`` over discount-terminated episodes): the
  code's return coefficients ``c_k`` are read off by feeding it impulse episodes
  (:func:`return_coefficients`), and, with the sampler's survival
  ``Pr(T > t + k | T > t) = beta^k``, the mean return of a visit to ``(s, a)`` is
  ``E[G_t | s_t = s, a_t = a] = sum_k c_k beta^k ((P Pi)^k r)(s, a)`` — a series on the
  finite chain summed to machine precision (:func:`monte_carlo_population`). The
  every-visit average converges to the ratio of expected visit sums and visit
  counts, which is this conditional mean.

Neither check samples: a critic that discounts with the wrong ``gamma`` is rejected on
every run (:data:`exact_bilevel.mutants.CRITIC_MUTANTS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..core.parameterizations import FixedTransitions
from ..core.problem import BilevelProblem
from ..estimators._common import LeaderKnowledge
from ..estimators.critics import leader_critic
from ..estimators.sampling import Episodes
from ..estimators.tabular import estimate_dq

TableFn = Callable[[LeaderKnowledge, Episodes], np.ndarray]
"""``(know, episodes) -> table``: ``Q_L[S, A]`` or ``dQ[S, A, d]`` from the episodes."""

#: The critics the estimators use, as :data:`TableFn`, by (target, method).
CRITICS: dict[tuple[str, str], TableFn] = {
    ("leader", "td"): lambda know, ep: leader_critic("td", know, ep).q,
    ("leader", "monte-carlo"): lambda know, ep: leader_critic("monte-carlo", know, ep).q,
    ("dq", "td"): lambda know, ep: estimate_dq("td", know, ep),
    ("dq", "monte-carlo"): lambda know, ep: estimate_dq("monte-carlo", know, ep),
}


def rational_transitions(problem: BilevelProblem, multiplicity: int) -> BilevelProblem:
    """``problem`` with fixed transitions ``round(M P) / M`` at its own ``P`` (largest
    remainders, so rows sum to ``M``; ``P`` must not depend on ``x``)."""
    if problem.transitions.depends_on_x:
        raise ValueError("problem: transitions must not depend on x (the exact batch needs "
                         "P fixed)")
    M = int(multiplicity)
    if M < 1:
        raise ValueError(f"multiplicity = {multiplicity!r}: must be a positive integer")
    P = problem.transitions.value(np.zeros(problem.n_params))
    P = np.asarray(P.toarray() if hasattr(P, "toarray") else P, dtype=float)
    scaled = P * M
    counts = np.floor(scaled)
    short = (M - counts.sum(axis=-1)).astype(int)
    order = np.argsort(-(scaled - counts), axis=-1, kind="stable")
    for idx in np.ndindex(short.shape):
        counts[idx][order[idx][:short[idx]]] += 1
    return BilevelProblem(problem.follower_reward, FixedTransitions(counts / M, problem.n_params),
                          problem.objective, gamma=problem.gamma, tau=problem.tau,
                          initial=problem.initial, solver_options=problem.solver_options)


def exact_batch(P: np.ndarray, multiplicity: int) -> Episodes:
    """One-step episodes whose empirical transitions are exactly ``P[S, A, S]``: for each
    ``(s, a)``, ``M P[s, a, s']`` episodes ``s -a-> s'`` (``M P`` must be integral)."""
    P = np.asarray(P, dtype=float)
    counts = np.rint(P * multiplicity)
    if np.max(np.abs(counts - P * multiplicity)) > 1e-9 * multiplicity:
        raise ValueError(f"P: entries must be multiples of 1/{multiplicity} "
                         "(use rational_transitions)")
    s, a, s1 = np.nonzero(counts)
    reps = counts[s, a, s1].astype(np.int64)
    s, a, s1 = np.repeat(s, reps), np.repeat(a, reps), np.repeat(s1, reps)
    return Episodes(states=np.stack([s, s1], axis=1), actions=a[:, None],
                    lengths=np.ones(s.size, dtype=np.int64))


def td_population(fn: TableFn, know: LeaderKnowledge, multiplicity: int) -> np.ndarray:
    """What the TD critic ``fn`` returns on the exact batch of ``know``'s transitions:
    the fixed point of its expected update on the true model."""
    P = know.state.mdp.transitions
    P = P.toarray() if hasattr(P, "toarray") else np.asarray(P)
    return fn(know, exact_batch(P.reshape((*know.pi.shape, -1)), multiplicity))


def _impulse_know(know: LeaderKnowledge, target: str) -> LeaderKnowledge:
    """``know`` whose per-step reward (``r_L``, or ``g`` for ``dQ``) is 1 at ``(1, 0)`` and 0
    elsewhere (``d = 1`` and no transition score for ``dQ``)."""
    S, A = know.pi.shape
    impulse = np.zeros((S, A))
    impulse[1, 0] = 1.0
    if target == "leader":
        return dataclasses.replace(know, r_leader=impulse)
    return dataclasses.replace(know, dr=impulse[..., None],
                               score=None if know.score is None
                               else np.zeros((*know.score.shape[:3], 1)))


def return_coefficients(fn: TableFn, know: LeaderKnowledge, target: str,
                        horizon: int) -> np.ndarray:
    """The coefficients ``c[k]``, ``k < horizon``, with which the Monte Carlo critic ``fn``
    weights the reward ``k`` steps after a visit, read off the code itself: one step at
    ``(1, 0)`` (reward 1) gives ``c_0``; one step at ``(0, 0)`` (reward 0) followed by
    ``k`` steps at ``(1, 0)`` gives ``c_1 + ... + c_k`` at ``(0, 0)``."""
    if know.pi.shape[0] < 2:
        raise ValueError("know: the impulse episodes need at least 2 states")
    imp = _impulse_know(know, target)

    def run(states: list[int]) -> np.ndarray:
        L = len(states)
        ep = Episodes(states=np.array([[*states, 1]]), actions=np.zeros((1, L), np.int64),
                      lengths=np.array([L]))
        return np.asarray(fn(imp, ep), dtype=float)

    c = np.empty(horizon)
    c[0] = run([1])[1, 0].ravel()[0]
    cumulative = 0.0
    for k in range(1, horizon):
        total = float(run([0] + [1] * k)[0, 0].ravel()[0])
        c[k], cumulative = total - cumulative, total
    return c


def monte_carlo_population(fn: TableFn, know: LeaderKnowledge, target: str,
                           per_step: np.ndarray) -> np.ndarray:
    """``E[G_t | s_t = s, a_t = a] = sum_k c_k beta^k ((P Pi)^k per_step)(s, a)`` for the
    Monte Carlo critic ``fn`` (coefficients from :func:`return_coefficients`), where
    ``per_step[S, A, ...]`` is the expected per-step reward given ``(s, a)``; the series
    is summed until ``beta^k`` falls below ``1e-17``."""
    S, A = know.pi.shape
    beta = know.beta
    horizon = 1 if beta == 0 else int(np.ceil(np.log(1e-17) / np.log(beta))) + 1
    c = return_coefficients(fn, know, target, horizon)
    P = know.state.mdp.transitions
    P = (P.toarray() if hasattr(P, "toarray") else np.asarray(P)).reshape(S * A, S)
    step = per_step.reshape(S * A, -1).astype(float)
    total = np.zeros_like(step)
    for k in range(horizon):
        total += c[k] * beta ** k * step
        step = P @ np.einsum("sa,sak->sk", know.pi, step.reshape(S, A, -1)).reshape(S, -1)
    return total.reshape(per_step.shape)
