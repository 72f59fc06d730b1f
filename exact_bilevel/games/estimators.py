r"""Sample-based hypergradient estimators for Markov games (BC-HG benefit x
influence, its baseline variant, and the direct-only baseline).

:func:`estimate` draws one estimate from a generator (or ``R`` from a block of uniforms);
:func:`replicates` and :func:`estimate_replicates` draw ``R`` independent estimates, each
replicate reading its own generator exactly as :func:`estimate` would (stream rule
``spawn-key/2`` for :func:`replicates`: replicate ``i`` reads
:func:`~exact_bilevel.core.streams.replicate_rng` ``(seed, i, key)``), with the episodes of
all replicates sampled and reduced in one vectorised pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ..core import _validate
from ..core._budget import check_allocation
from ..core.streams import replicate_rng
from ..estimators import Estimate, leader_knowledge
from ..estimators._common import LeaderKnowledge, episodes_for_budget
from ..estimators.critics import exact_critic
from ..estimators.registry import CHUNK_UNIFORMS, ESTIMATORS, check_sample_buffers
from ..estimators.sampling import Sampler, Uniforms, block_size
from .leaders import pull_back
from .model import (
    OBSERVES_STATE_AND_LEADER_ACTION,
    MarkovGame,
    follower_problem,
    leader_logits,
    leader_policy,
    leader_policy_jacobian,
    tabular,
)

GAME_ESTIMATORS = ("bc-hg", "bc-hg-baseline", "direct-only")

#: A problem-level estimator with the registry's signature, ``fn(know, sampler, budget,
#: critic) -> Estimate`` (:data:`exact_bilevel.estimators.ESTIMATORS`), run on the
#: follower's problem.
TabularEstimator = Callable[[LeaderKnowledge, Sampler, int, str], Estimate]


def leader_initial_value(know: LeaderKnowledge) -> np.ndarray:
    """``V_L[S AL]``: the leader's value over ``(s, aL)`` (the exact critic of the augmented
    problem's ``know``), the value that weights the leader's score in the initial-law
    term of :func:`estimate`."""
    return exact_critic(know).v


def estimate(game: MarkovGame, x: object, estimator: str, budget: int,
             rng: np.random.Generator, critic: str = "exact", *,
             tabular_estimator: TabularEstimator | None = None,
             initial_value: Callable[[LeaderKnowledge], np.ndarray] = leader_initial_value
             ) -> Estimate:
    r"""Sample-based ``grad_theta F`` for a Markov game.

    ``bc-hg`` (benefit x influence, Kudo et al. 2026): the leader's advantage
    ``A_L`` (benefit) times the forward sum of the follower's sensitivity rewards
    ``g_k = gamma dlog piL(aL_{k+1}|s_{k+1}) V(s_{k+1}, aL_{k+1})`` (influence),
    plus the direct term; ``direct-only`` drops the influence (the follower's
    response). Both add the initial-law term for ``observes = (s, aL)``, sampled as
    ``dlog piL(aL_0|s_0) (V_L(s_0, aL_0) - sum_a piL(a|s_0) V_L(s_0, a))`` from
    fresh starts (costing one reset each). ``bc-hg-baseline`` is ``bc-hg`` with the
    state-value baseline on the score term (:mod:`exact_bilevel.estimators`).

    The bill never exceeds ``budget``: with ``observes = (s, aL)``, ``n`` fresh starts
    are reserved first (``n`` episodes planned with one extra reset each, so at least 3
    transitions) and the episodes are planned and capped within ``budget - n``.

    With a leader parameterisation (``game.leader``, e.g. an MLP) the estimate is the
    tabular game's at the logits ``z = leader.logits(theta)`` pulled back through
    ``dz/dtheta``: each estimator is a sum of scalar weights times sampled scores
    ``dlog piL(aL|s)/dtheta = (dz[s]/dtheta)^T dlog piL(aL|s)/dz[s]`` (the network's score
    function), so this equals the estimator run with the network's scores (same draws
    from ``rng``); ``transitions`` and ``resets`` are unchanged.

    ``rng`` may also be a :class:`~exact_bilevel.estimators.sampling.Uniforms` of ``R``
    replicates (rows of :func:`~exact_bilevel.core.streams.cell_uniforms`, block
    ``block_size(budget, d)``): then ``gradient`` is ``[R, d]`` and the costs ``[R]``, row
    ``i`` the estimate a single-replicate ``Uniforms`` of row ``i`` gives (one vectorised
    pass; the exact-moment tests draw their replicates this way). :func:`replicates`
    gives ``R`` estimates from per-replicate generators, each equal to this function's.

    ``tabular_estimator`` and ``initial_value`` replace the two parts (dependency
    injection, for the deliberately wrong estimators of
    :data:`exact_bilevel.mutants.GAME_MUTANTS`): the problem-level estimator run on the
    follower's problem (default ``None``: the registered one of that name, ``naive`` for
    ``direct-only``) and the value ``V[S AL]`` weighting the leader's score in the
    initial-law term (default :func:`leader_initial_value`, ``V_L``).
    """
    if game.leader is not None:
        if estimator not in GAME_ESTIMATORS:
            raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
        x = _validate.parameter_vector("x", x, game.n_params)
        z = leader_logits(game, x).reshape(-1)
        est = estimate_through_policy(tabular(game), z, estimator, budget, rng, critic,
                                      tabular_estimator=tabular_estimator,
                                      initial_value=initial_value)
        grad = np.asarray(est.gradient)
        J = game.leader.logits_jacobian(x)
        # row by row (a stacked vector-matrix product): each row as pull_back gives it alone
        pulled = (pull_back(J, grad) if grad.ndim == 1
                  else (grad[:, None, :] @ J.reshape(z.size, -1))[:, 0, :])
        return dataclasses.replace(est, gradient=pulled)
    return estimate_through_policy(game, x, estimator, budget, rng, critic,
                                   tabular_estimator=tabular_estimator,
                                   initial_value=initial_value)


def estimate_through_policy(game: MarkovGame, x: object, estimator: str, budget: int,
                            rng: np.random.Generator, critic: str = "exact", *,
                            tabular_estimator: TabularEstimator | None = None,
                            initial_value: Callable[[LeaderKnowledge], np.ndarray]
                            = leader_initial_value) -> Estimate:
    """:func:`estimate` with the scores ``dlog piL/dtheta`` formed from ``dpiL/dtheta``
    (:func:`~.model.leader_policy_jacobian`, ``[S, AL, d]``) directly: the route for the
    tabular leader, and a second route for any leader parameterisation
    (``tabular_estimator``, ``initial_value``: as in :func:`estimate`)."""
    if estimator not in GAME_ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
    if critic != "exact":
        raise ValueError(f"critic = {critic!r}: Markov-game estimates use the exact leader "
                         "critic")
    x = _validate.parameter_vector("x", x, game.n_params)
    problem = follower_problem(game, x)
    know = leader_knowledge(problem, x)
    name = "naive" if estimator == "direct-only" else estimator
    n = 0
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        # as many fresh starts as the episodes would plan with one extra reset each;
        # the episodes get the rest of the budget (at least 2), so the bill <= budget
        n = episodes_for_budget(budget, know.beta, extra=1, estimator=f"game {estimator}")
    fn = ESTIMATORS[name].fn if tabular_estimator is None else tabular_estimator
    check_sample_buffers(budget - n, know.beta, know.dr.shape[-1])
    est = fn(know, Sampler(know.state.mdp, rng), budget - n, critic)
    grad, cost, resets = est.gradient, est.transitions, est.resets
    if game.observes == OBSERVES_STATE_AND_LEADER_ACTION:
        S, AL, _ = game.shape
        starts = Sampler(know.state.mdp, rng).reset(n)  # augmented (s, aL) indices
        s0, a0 = starts // AL, starts % AL
        v = np.asarray(initial_value(know)).reshape(S, AL)
        pi = leader_policy(game, x)
        adv0 = v[s0, a0] - np.sum(pi[s0] * v[s0], axis=-1)
        score = leader_policy_jacobian(game, x)[s0, a0] / pi[s0, a0][..., None]
        grad = grad + (adv0[..., None] * score).mean(axis=-2)
        cost, resets = cost + n, resets + n
    return Estimate(gradient=grad, transitions=cost, resets=resets,
                    estimator=f"game:{estimator}")


def uniforms_per_replicate(game: MarkovGame, budget: int) -> int:
    """Uniforms one game estimate may read: :func:`~exact_bilevel.estimators.sampling.
    block_size` ``(budget, S AL)`` (the tabular game's parameters: a leader
    parameterisation is pulled back after sampling; the fresh starts of ``observes =
    (s, aL)`` come out of the same budget)."""
    S, AL, _ = game.shape
    return block_size(budget, S * AL)


def estimate_replicates(game: MarkovGame, x: object, estimator: str, budget: int,
                        generators: Sequence[np.random.Generator], critic: str = "exact", *,
                        progress: Callable[[int], object] | None = None,
                        fn: Callable[..., Estimate] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Estimates ``[R, d]`` and their costs ``[R]`` (transitions billed), replicate ``i``
    reading ``generators[i]`` exactly as ``estimate(game, x, estimator, budget,
    generators[i], critic)`` does, bit for bit, all replicates in one vectorised pass.

    A single estimate reads its generator only through uniforms, in a fixed order
    (:mod:`exact_bilevel.estimators.sampling`), and never more than
    :func:`uniforms_per_replicate` ``B`` of them; so each replicate's uniforms are drawn
    from its own generator up front (``generators[i].random(B)``: the same numbers in the
    same order) and the ``R`` rows are served by one
    :class:`~exact_bilevel.estimators.sampling.Uniforms` sampler, in chunks of at most
    :data:`~exact_bilevel.estimators.registry.CHUNK_UNIFORMS` uniforms. The generators
    must be distinct (each is advanced by ``B`` draws). ``fn(game, x, estimator, budget,
    rng)`` replaces :func:`estimate` (with ``critic = "exact"``) by a function that serves
    a block of uniforms the same way (e.g. a game mutant); ``progress(k)`` is called after
    each ``k`` replicates done.
    """
    gens = list(generators)
    seen: dict[int, int] = {}
    for i, g in enumerate(gens):
        if not isinstance(g, np.random.Generator):
            raise ValueError(f"generators[{i}]: must be a numpy.random.Generator, got "
                             f"{type(g).__name__}")
        if id(g) in seen:
            raise ValueError(f"generators[{i}]: is generators[{seen[id(g)]}]; independent "
                             "replicates need distinct generators")
        seen[id(g)] = i
    return _chunked(game, x, estimator, budget, len(gens), gens.__getitem__, critic,
                    progress, fn)


def replicates(game: MarkovGame, x: object, estimator: str, budget: int, n_replicates: int,
               seed: int, critic: str = "exact", *, key: tuple[int, ...] = (),
               progress: Callable[[int], object] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n_replicates`` independent game estimates ``[R, d]`` and their costs ``[R]``:
    replicate ``i`` reads :func:`~exact_bilevel.core.streams.replicate_rng` ``(seed, i,
    key)`` (rule ``spawn-key/2``), so row ``i`` is ``estimate(game, x, estimator, budget,
    replicate_rng(seed, i, key), critic)``, bit for bit; drawn together as in
    :func:`estimate_replicates` (each chunk's generators created when it is drawn)."""
    if (isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer))
            or n_replicates < 1):
        raise ValueError(f"n_replicates = {n_replicates!r}: must be a positive integer")
    replicate_rng(seed, int(n_replicates) - 1, key)  # seed and key checked before any work
    return _chunked(game, x, estimator, budget, int(n_replicates),
                    lambda i: replicate_rng(seed, i, key), critic, progress, None)


def _chunked(game: MarkovGame, x: object, estimator: str, budget: int, R: int,
             generator: Callable[[int], np.random.Generator], critic: str,
             progress: Callable[[int], object] | None, fn: Callable[..., Estimate] | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Replicates ``0..R-1`` (replicate ``i`` reads ``generator(i)``) in chunks of at most
    :data:`CHUNK_UNIFORMS` uniforms, one vectorised estimate per chunk."""
    if R < 1:
        raise ValueError("generators: give at least one generator")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget = {budget!r}: must be a positive integer")
    if estimator not in GAME_ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {GAME_ESTIMATORS}")
    if fn is not None and critic != "exact":
        raise ValueError(f"critic = {critic!r}: with fn, the exact leader critic only")
    check_allocation("estimates [R, d]", (R, game.n_params))
    B = uniforms_per_replicate(game, budget)
    per = max(1, CHUNK_UNIFORMS // B)
    out, cost = [], []
    for lo in range(0, R, per):
        n = min(per, R - lo)
        check_allocation(f"{n} replicates x {B} uniforms: the uniforms of one chunk", (n, B))
        U = Uniforms(np.stack([generator(i).random(B) for i in range(lo, lo + n)]))
        e = (estimate(game, x, estimator, budget, U, critic) if fn is None
             else fn(game, x, estimator, budget, U))
        out.append(np.asarray(e.gradient, dtype=float).reshape(n, -1))
        cost.append(np.asarray(e.transitions).reshape(n))
        if progress is not None:
            progress(n)
    return np.concatenate(out), np.concatenate(cost)
