r"""What the leader knows without sampling, the estimate record, and shared sums.

Access model (stated per estimator in its docstring). The leader knows its own
design: the follower's reward Jacobian ``dr[s, a, k]``, the score of its
transition parameterisation ``dlogP[s, a, s', k]`` (zero when ``P`` does not
depend on ``x``), its own reward ``r_L[s, a]`` with ``dr_L[s, a, k]`` and the
regulariser. It observes the follower's optimisation outcome: the policy
``pi[s, a]`` and, where an estimator says so, the follower's soft value
``V[s]``. Everything about ``P`` (and hence every value, occupancy and
sensitivity) has to come from samples through a :class:`~exact_bilevel.estimators.sampling.Sampler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from scipy.signal import lfilter
from scipy.special import betainc

from ..core._budget import check_allocation
from ..core.follower import FollowerState
from ..core.objectives import LeaderReturn
from ..core.problem import BilevelProblem
from .sampling import EpisodeBatch, Episodes, Sampler


@dataclass(frozen=True)
class Estimate:
    """One hypergradient estimate and what it cost, or ``R`` of them.

    ``transitions`` counts environment steps plus resets (see
    :mod:`exact_bilevel.estimators.sampling`); ``resets`` is the part spent on resets.
    From a single-estimate sampler: ``gradient[d]`` and ints; from a sampler of ``R``
    replicates: ``gradient[R, d]``, ``transitions[R]``, ``resets[R]``.
    """

    gradient: np.ndarray
    transitions: int
    resets: int
    estimator: str


@dataclass(frozen=True)
class LeaderKnowledge:
    """The sample-free information of the access model above, at one ``x``.

    Shapes: ``pi[S, A]``, ``v[S]`` (follower soft value), ``dr[S, A, d]``,
    ``score[S, A, S, d]`` (``None`` when ``P`` does not depend on ``x``),
    ``r_leader[S, A]``, ``dr_leader[S, A, d]``, ``reg_grad[d]``.
    """

    problem: BilevelProblem
    state: FollowerState
    pi: np.ndarray
    v: np.ndarray
    dr: np.ndarray
    score: np.ndarray | None
    r_leader: np.ndarray | None
    dr_leader: np.ndarray | None
    reg_grad: np.ndarray | None
    gamma: float
    gamma_leader: float
    tau: float

    @cached_property
    def leader_values(self) -> object:
        """``problem.objective.leader_values`` at the follower's solution (the exact
        critic's oracle), computed once per ``x`` and shared by every replicate."""
        return self.problem.objective.leader_values(self.problem, self.state)

    @cached_property
    def objective_terms(self) -> object:
        """``problem.objective.evaluate`` at the follower's solution (``f``'s own partials,
        which SoBiRL takes as known), computed once per ``x``."""
        return self.problem.objective.evaluate(self.problem, self.state)

    @property
    def beta(self) -> float:
        """Episode continuation probability ``max(gamma, gamma_L)``."""
        return max(self.gamma, self.gamma_leader)


def leader_knowledge(problem: BilevelProblem, x: object,
                     state: FollowerState | None = None) -> LeaderKnowledge:
    """Solve the follower at ``x`` (its outcome, which the leader observes) and
    collect the leader's own derivatives.

    For an objective other than :class:`LeaderReturn` the leader-reward fields are
    ``None`` and ``gamma_leader = gamma``; estimators that sample the leader's
    return reject such problems (:func:`require_leader_return`). ``state`` reuses a
    follower solve at ``x``.
    """
    obj = problem.objective
    if state is None:
        state = problem.follower_state(x)
    x = state.x
    common = dict(problem=problem, state=state, pi=state.solution.policy, v=state.solution.v,
                  dr=problem.follower_reward.jacobian(x),
                  score=(problem.transitions.score(x) if problem.transitions.depends_on_x
                         else None),
                  gamma=problem.gamma, tau=problem.tau)
    if not isinstance(obj, LeaderReturn):
        return LeaderKnowledge(**common, r_leader=None, dr_leader=None, reg_grad=None,
                               gamma_leader=problem.gamma)
    reg = (np.zeros(problem.n_params) if obj.regularizer is None
           else np.asarray(obj.regularizer(x)[1], dtype=float))
    return LeaderKnowledge(**common, r_leader=obj.leader_reward.value(x),
                           dr_leader=obj.leader_reward.jacobian(x), reg_grad=reg,
                           gamma_leader=obj.gamma_for(problem))


def require_leader_return(know: LeaderKnowledge, estimator: str) -> None:
    """Raise ``ValueError`` unless the objective is a :class:`LeaderReturn`."""
    if know.r_leader is None:
        raise ValueError(f"objective: {know.problem.objective!r} is not a LeaderReturn; "
                         f"estimator {estimator!r} samples the leader's return")


#: Planned probability that a batch of discount-terminated episodes crosses its budget
#: (and is truncated by :meth:`Sampler.capped`).
TRUNCATION_PROBABILITY = 1e-4


def check_budget(budget: object, minimum: int, estimator: str, why: str,
                 shown: str | None = None) -> int:
    """``budget`` as an int, or ``ValueError`` naming the minimum ``estimator`` needs
    (written as ``shown``, e.g. ``"S*A = 12"``, if given)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget = {budget!r}: must be a positive integer (transitions)")
    if budget < minimum:
        raise ValueError(f"budget = {budget} transitions: {estimator} needs at least "
                         f"{shown or minimum} transitions ({why}) on this problem")
    return int(budget)


def episodes_for_budget(budget: int, beta: float, share: float = 1.0, *,
                        estimator: str = "the estimator", groups: int = 1,
                        extra: int = 0) -> int:
    """Number ``n`` of discount-terminated episodes per group (``groups`` batches of
    ``n`` episodes each, ``extra`` further resets billed per episode) to draw from
    ``share * budget`` transitions.

    The rule: the largest ``n >= 1`` such that the total cost ``C = groups n (1 +
    extra) + sum_i T_i`` (``T_i ~ Geometric(1 - beta)`` on ``{1, 2, ...}``, so ``sum_i
    T_i - groups n`` is negative binomial) exceeds ``share * budget`` with probability
    at most :data:`TRUNCATION_PROBABILITY` (exact negative-binomial tail). Within a
    :meth:`Sampler.capped` block such a rare overflow truncates the batch, so the bill
    never exceeds the budget and the estimators keep their bias properties up to an
    event of probability ``<= 1e-4``; when even ``n = 1`` is more likely to cross
    (budgets of a few episodes) one episode per group is drawn and is truncated with
    probability ``Pr(T > share * budget - 1 - extra)``. A budget below ``groups (2 +
    extra)`` (one reset, one step, and the extra resets, per episode) is a
    ``ValueError`` naming that minimum.
    """
    minimum = groups * (2 + extra)
    why = ("one reset and one step" if groups == 1 and extra == 0 else
           f"{groups} episode(s) of one reset and one step"
           + (f", plus {extra} reset(s) each" if extra else ""))
    budget = check_budget(budget, minimum, estimator, why)
    total = int(share * budget)
    if total < minimum:
        raise ValueError(f"budget = {budget} transitions: {estimator} needs at least "
                         f"{int(np.ceil(minimum / share))} transitions ({why}, with "
                         f"{share:g} of the budget) on this problem")
    return _largest_safe_n(total, float(beta), int(groups), int(extra))


@lru_cache(maxsize=4096)
def _largest_safe_n(total: int, beta: float, groups: int, extra: int) -> int:
    """The search of :func:`episodes_for_budget` (a pure function of its arguments,
    cached: every replicate of a run plans the same batch)."""
    per = groups * (2 + extra)  # fixed cost of one episode per group, one step each

    def crosses(n: int) -> bool:
        fixed = n * groups * (1 + extra)
        if beta == 0.0:
            return fixed + n * groups > total
        # C > total  <=>  NB(groups n, 1 - beta) > k := total - fixed - groups n, and
        # Pr(NB(r, p) > k) = I_{1-p}(k + 1, r) (regularised incomplete beta), k >= 0
        k = total - fixed - n * groups
        return k < 0 or bool(betainc(k + 1, n * groups, beta) > TRUNCATION_PROBABILITY)

    lo, hi = 1, max(1, total // per)
    if crosses(lo):
        return 1
    while lo < hi:  # largest n that does not cross; crosses() is monotone in n
        mid = (lo + hi + 1) // 2
        if crosses(mid):
            hi = mid - 1
        else:
            lo = mid
    return lo


def step_weights(length: int, ratio: float) -> np.ndarray:
    """``ratio^t`` for ``t < length`` (``0^0 = 1``)."""
    return ratio ** np.arange(length, dtype=float)


def discounted_filter(values: np.ndarray, ratio: float) -> np.ndarray:
    """``Y[:, k] = values[:, k] + ratio Y[:, k - 1]`` along axis 1 (``Y[:, -1] = 0``), any
    trailing shape: the linear recursion ``acc = ratio acc + v`` run by
    ``scipy.signal.lfilter`` in C, the same floating-point operations in the same order
    (``1 * v + ratio * acc``) as the Python loop over ``k``."""
    return lfilter([1.0], [1.0, -ratio], values, axis=1)


def suffix_sums(values: np.ndarray, mask: np.ndarray, ratio: float) -> np.ndarray:
    """``Z[i, t] = sum_{k >= t, k < T_i} ratio^(k - t) values[i, k]`` by a backward
    recursion (no overflow for long episodes); ``values[n, L, ...]``, ``mask[n, L]``."""
    vals = np.where(mask.reshape(mask.shape + (1,) * (values.ndim - 2)), values, 0.0)
    return discounted_filter(vals[:, ::-1], ratio)[:, ::-1]


def prefix_sums(values: np.ndarray, mask: np.ndarray, ratio: float) -> np.ndarray:
    """``Y[i, k] = sum_{t <= k} ratio^(k - t) values[i, t]`` (forward recursion), shape ``[n, L]``.

    The dual of :func:`suffix_sums`: ``sum_t a_t sum_{k>=t} r^(k-t) g_k =
    sum_k g_k sum_{t<=k} r^(k-t) a_t``, which lets a scalar weight per step
    replace a ``d``-vector per step.
    """
    return np.where(mask, discounted_filter(np.where(mask, values, 0.0), ratio), 0.0)


def contract_steps(know: LeaderKnowledge, ep: Episodes, weights: np.ndarray,
                   dr: np.ndarray, v_next: np.ndarray, gamma_next: float,
                   baseline: bool = False) -> np.ndarray:
    """``sum_{i, t < T_i} weights[i, t] (dr[s_t, a_t] + gamma_next dlogP(s_{t+1}|s_t, a_t)
    (v_next[s_{t+1}] - b_t))``, shape ``[d]``, with ``b_t = v_next[s_t]`` if
    ``baseline`` else 0.

    Any ``b_t`` fixed given ``(s_t, a_t)`` leaves the expectation unchanged
    (``E_{s'} dlogP(s'|s, a) = 0``); ``v_next[s_t]`` removes the common level of
    ``V``, which otherwise dominates the variance of the score-function term.
    Accumulates the scalar weights into ``[S, A]`` and ``[S, A, S]`` tables first,
    so memory is ``O(n L + S^2 A d)`` rather than ``O(n L d)``.
    """
    S, A = know.pi.shape
    s, a, s1 = ep.transitions()
    w = weights[ep.mask]
    out = np.bincount(s * A + a, weights=w, minlength=S * A) @ dr.reshape(S * A, -1)
    if know.problem.transitions.depends_on_x:
        level = v_next[s1] - v_next[s] if baseline else v_next[s1]
        w3 = np.bincount((s * A + a) * S + s1, weights=w * level, minlength=S * A * S)
        out = out + gamma_next * (w3 @ know.score.reshape(S * A * S, -1))
    return out


def sensitivity_samples(know: LeaderKnowledge, ep: Episodes,
                        baseline: bool = False) -> np.ndarray:
    """``g_k = dr(s_k, a_k) + gamma dlogP(s_{k+1}|s_k, a_k) (V(s_{k+1}) - b_k)``, shape
    ``[n, L, d]``, with ``b_k = V(s_k)`` if ``baseline`` else 0.

    Given ``(s_k, a_k)`` its expectation is ``g(s_k, a_k)`` of docs/math.md (section 3) either way.
    Uses the follower's value ``V``.
    """
    s, a, s1 = ep.states[:, :-1], ep.actions, ep.states[:, 1:]
    g = know.dr[s, a]
    if know.problem.transitions.depends_on_x:
        level = know.v[s1] - know.v[s] if baseline else know.v[s1]
        g = g + know.gamma * know.score[s, a, s1] * level[..., None]
    return g


def ratio(num: float, beta: float) -> float:
    """``num / beta`` with ``0 / 0 = 0`` (``beta = 0``: one-step episodes)."""
    return num / beta if beta > 0 else 0.0


# --- batched sums over the flat episodes of R replicates ----------------------------
def vectorised(fn: object) -> object:
    """Mark ``fn`` (registry signature) as serving a sampler of ``R`` replicates in one call
    (returning ``[R, d]``); unmarked functions (yours) get one replicate at a time."""
    fn.vectorised = True  # type: ignore[attr-defined]
    return fn


def is_vectorised(fn: object) -> bool:
    """Whether :func:`vectorised` marked ``fn``."""
    return bool(getattr(fn, "vectorised", False))


def finish(sampler: Sampler, gradient: np.ndarray, start: np.ndarray, resets0: np.ndarray,
           name: str) -> Estimate:
    """The :class:`Estimate` of ``gradient[R, d]`` with the bill since ``start`` (the
    sampler's ``transitions`` then) and ``resets0``; without the replicate axis for a
    single-estimate sampler."""
    cost = sampler.transitions - start
    resets = sampler.resets - resets0
    if sampler.single:
        return Estimate(gradient=gradient[0], transitions=int(cost[0]),
                        resets=int(resets[0]), estimator=name)
    return Estimate(gradient=gradient, transitions=cost, resets=resets, estimator=name)


def contract(table: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """``out[r, k] = sum_m table[r, m] mat[m, k]``, ``[R, M] x [M, d] -> [R, d]``.

    One ``[1, M] x [M, d]`` product per row (a stacked ``matmul``): each row is computed
    by the same call whatever ``R``, so a replicate's estimate alone equals its row of a
    batch bit for bit (a single ``[R, M]`` product is blocked differently for different
    ``R``)."""
    return np.matmul(table[:, None, :], mat)[:, 0, :]


def per_step(table: np.ndarray, batch: EpisodeBatch, *index: np.ndarray) -> np.ndarray:
    """``table[index]`` at every step, for a shared table (``ndim == len(index)``) or one
    per replicate (a leading ``[R]`` axis)."""
    if table.ndim == len(index) == 1:
        return table.take(index[0])
    if table.ndim == len(index):
        return table[index]
    return table[(batch.replicate, *index)]


def step_weights_at(batch: EpisodeBatch, ratio: float) -> np.ndarray:
    """``ratio^t`` at every step (``0^0 = 1``), shape ``[N]``."""
    return batch.step_weights(ratio)


#: Largest ``S * A * S`` for which :func:`contract_batch` accumulates the score weights
#: in a per-replicate ``[R, S A S]`` table; larger models contract step by step.
SCORE_TABLE_ENTRIES = 4096


def contract_batch(know: LeaderKnowledge, batch: EpisodeBatch, weights: np.ndarray,
                   dr: np.ndarray, v_next: np.ndarray, gamma_next: float,
                   baseline: bool = False) -> np.ndarray:
    """Per replicate ``r``: ``sum_{steps of r} weights (dr[s_t, a_t] + gamma_next
    dlogP(s_{t+1}|s_t, a_t) (v_next[s_{t+1}] - b_t))``, shape ``[R, d]``, with ``b_t =
    v_next[s_t]`` if ``baseline`` else 0 (``weights[N]`` per step; ``v_next[S]`` or per
    replicate ``[R, S]``).

    Any ``b_t`` fixed given ``(s_t, a_t)`` leaves the expectation unchanged
    (``E_{s'} dlogP(s'|s, a) = 0``); ``v_next[s_t]`` removes the common level of
    ``V``, which otherwise dominates the variance of the score-function term.
    Accumulates the scalar weights into per-replicate ``[S, A]`` and ``[S, A, S]`` tables
    (segment sums, :meth:`EpisodeBatch.replicate_table`), then contracts them with
    ``dr`` and the score (:func:`contract`)."""
    S, A = know.pi.shape
    out = contract(batch.pair_table(A, S * A, weights), dr.reshape(S * A, -1))
    if know.problem.transitions.depends_on_x:
        vn = per_step(v_next, batch, batch.s1)
        level = vn - per_step(v_next, batch, batch.s) if baseline else vn
        w = weights * level
        if S * A * S <= SCORE_TABLE_ENTRIES:
            R = batch.n_replicates
            check_allocation("per-replicate score tables [R, S A S]", (R, S * A * S))
            score = know.score.reshape(S * A * S, -1)
            table = np.bincount(batch.triple_keys(S, A), weights=w, minlength=R * S * A * S)
            out = out + gamma_next * contract(table.reshape(R, S * A * S), score)
        else:
            rows = know.score[batch.s, batch.a, batch.s1] * w[:, None]
            out = out + gamma_next * batch.replicate_sums(rows)
    return out


def sensitivity_steps(know: LeaderKnowledge, batch: EpisodeBatch,
                      cols: slice = slice(None), baseline: bool = False) -> np.ndarray:
    """``g_t = dr(s_t, a_t) + gamma dlogP(s_{t+1}|s_t, a_t) (V(s_{t+1}) - b_t)`` at every
    step, ``[N, k]`` for the parameter columns ``cols`` (all by default); ``b_t = V(s_t)``
    if ``baseline``. Stored column by column (the transpose of a C-ordered ``[k, N]``),
    so that each column is contiguous."""
    S, A, d = know.dr.shape
    pairs = batch.pairs(A)
    g = know.dr.reshape(S * A, d)[:, cols].T.take(pairs, axis=1)
    if know.problem.transitions.depends_on_x:
        level = know.v[batch.s1] - know.v[batch.s] if baseline else know.v[batch.s1]
        score = know.score.reshape(S * A * S, d)[:, cols].T.take(pairs * S + batch.s1, axis=1)
        g = g + know.gamma * score * level[None, :]
    return g.T
