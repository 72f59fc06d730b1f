r"""One convergence check per estimator: the protocol the property tests, the power
table and other people's estimators all go through.

For an estimator ``e`` at a problem ``(P_x, r_x, F)`` and a point ``x``, draw ``R``
independent estimates at budget ``n`` and compare them with the estimator's exact
target ``g``:

* **unbiased** estimators (BC-HG with the exact critic, the game estimators):
  :func:`~.acceptance.unbiasedness_test` of ``E X = g = grad F(x)``;
* **consistent** estimators (sampled critics, HPGD, SoBiRL, model-based):
  :func:`~.acceptance.bias_bound_test` of ``|E X_k - g_k| <= c_e s / n`` with
  ``s = max(|g|_inf, sd_1)``, ``sd_1`` the largest per-coordinate standard deviation
  of one estimate times ``sqrt(n)`` (the per-transition noise level). This is an
  ``O(1/n)`` allowance: it shrinks with the budget, so a steady bias of any size is
  eventually rejected, while the ``O(1/n)`` bias of a consistent estimator is not.
  The constants ``c_e`` were measured on drawn problems
  (``verification/convergence_power.md``: ``|bias| n / s`` stayed below ~20, within
  the noise of the measurement, for every consistent estimator at n = 2000 and 8000);
* **zeroth-order**: unbiasedness against its own target, the Gaussian-smoothed
  gradient ``grad F_mu(x)`` (:func:`~exact_bilevel.estimators.zeroth_order.smoothed_gradient`).

Replicate ``i`` reads block ``i`` of the uniforms of ``seed``'s plain cell
(:func:`exact_bilevel.estimators.registry.run_replicates`; game estimators: one
``exact_bilevel.core.streams.replicate_rng(seed, i)`` each, drawn together by
:func:`exact_bilevel.games.estimate_replicates`).

**Rare events.** When a state-action pair is so unlikely on-policy that all ``R``
replicates together are expected to visit it only a handful of times (a
near-deterministic follower), the estimates' mean lives in events the sample
almost never contains: the replicates can look perfectly normal and still miss
the exact value by many standard errors. No test on the samples alone can see
this, but the exact occupancy can: :func:`rare_event_diagnostic` computes the
expected number of visits of the least likely pair, and :func:`check` marks the
result (``approximation_ok = False``, an
:class:`~.acceptance.EstimateTailWarning`) when it is below
:data:`MIN_EXPECTED_VISITS`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from ..core.evaluation import state_occupancy
from ..core.hypergradient import hypergradient
from ..core.mdp import FiniteMDP
from ..core.problem import BilevelProblem
from ..core.streams import replicate_rng
from ..estimators._common import Estimate, LeaderKnowledge, is_vectorised, leader_knowledge
from ..estimators.registry import ESTIMATORS, run_replicates
from ..estimators.sampling import Sampler
from ..estimators.zeroth_order import smoothed_gradient
from ..games import estimators as game_estimators
from ..games.exact import hypergradient as game_hypergradient
from ..games.model import MarkovGame
from .acceptance import (
    EstimateTailWarning,
    TestResult,
    bias_bound_test,
    chebyshev_test,
    known_covariance_test,
    unbiasedness_test,
)

#: Fewer expected visits of some state-action pair over all replicates than this
#: marks a check as unreliable (rare-event regime).
MIN_EXPECTED_VISITS = 10.0

EstimatorFn = Callable[[LeaderKnowledge, Sampler, int, str], Estimate]


@dataclass(frozen=True)
class Protocol:
    """How one estimator (with one critic) is checked: its target, test, budget, ``R``."""

    estimator: str
    critic: str
    target: str  # "exact" or "smoothed"
    unbiased: bool
    budget: int
    replicates: int
    bias_constant: float = 0.0


def _p(estimator: str, critic: str, *, unbiased: bool = False, target: str = "exact",
       budget: int = 16000, replicates: int = 200, c: float = 30.0) -> Protocol:
    return Protocol(estimator, critic, target, unbiased, budget, replicates,
                    0.0 if unbiased else c)


#: Every registered estimator with each critic it accepts (``naive`` and
#: ``sobirl-simplified`` are biased by design and have no protocol).
PROTOCOLS: dict[tuple[str, str], Protocol] = {(p.estimator, p.critic): p for p in (
    _p("bc-hg", "exact", unbiased=True, budget=8000),
    _p("bc-hg-baseline", "exact", unbiased=True, budget=8000),
    _p("bc-hg", "monte-carlo"), _p("bc-hg", "td"),
    _p("bc-hg-baseline", "monte-carlo"), _p("bc-hg-baseline", "td"),
    _p("hpgd", "exact"), _p("hpgd-td", "exact"), _p("hpgd-oracle", "exact"),
    _p("sobirl", "monte-carlo"), _p("sobirl", "td"),
    _p("model-based", "exact"),
    _p("zeroth-order", "exact", unbiased=True, target="smoothed", budget=40000,
       replicates=100),
)}


def draw_replicates(fn: EstimatorFn, know: LeaderKnowledge, budget: int, n_replicates: int,
                    seed: int, critic: str) -> np.ndarray:
    """``[R, d]`` estimates of ``fn`` (registry signature), drawn together: replicate ``i``
    reads block ``i`` of ``seed``'s plain cell (:func:`exact_bilevel.estimators.registry.
    run_replicates`, stream rule of :mod:`exact_bilevel.core.streams`)."""
    return run_replicates(fn, know, budget, n_replicates, seed, critic)[0]


def target(problem: BilevelProblem, x: np.ndarray, protocol: Protocol) -> np.ndarray:
    """The exact quantity the estimator converges to: ``grad F(x)`` or ``grad F_mu(x)``."""
    if protocol.target == "smoothed":
        return smoothed_gradient(problem, x)
    return hypergradient(problem, x).gradient


def bias_allowance(samples: np.ndarray, exact: np.ndarray, budget: int,
                   constant: float) -> float:
    """The ``O(1/n)`` allowance ``c max(|g|_inf, sd_1) / n``, ``sd_1`` the largest
    per-coordinate standard deviation of one estimate times ``sqrt(n)``."""
    sd1 = float(np.max(samples.std(axis=0, ddof=1))) * np.sqrt(budget)
    return constant * max(float(np.max(np.abs(exact))), sd1) / budget


def allowance(samples: np.ndarray, exact: np.ndarray, protocol: Protocol) -> float:
    """:func:`bias_allowance` of the protocol (0 for unbiased protocols)."""
    if protocol.unbiased:
        return 0.0
    return bias_allowance(samples, exact, protocol.budget, protocol.bias_constant)


def reachable_states(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    """``reach[s]``: state ``s`` can be visited by on-policy episodes, i.e. is reachable
    from the support of ``rho`` along transitions ``P_pi[s, s'] > 0`` (a breadth-first
    search on the structure of ``P_pi``, exact: no rounding of an occupancy), shape
    ``[S]``, bool."""
    S = mdp.n_states
    P_pi = scipy.sparse.csr_matrix(mdp.P_pi(pi))
    P_pi.eliminate_zeros()
    starts = np.flatnonzero(mdp.initial > 0)
    # one source node S with an edge to every start state
    source = scipy.sparse.csr_matrix((np.ones(starts.size), (np.zeros(starts.size, int),
                                                             starts)), shape=(1, S))
    graph = scipy.sparse.bmat([[P_pi, scipy.sparse.csr_matrix((S, 1))],
                               [source, scipy.sparse.csr_matrix((1, 1))]], format="csr")
    order = scipy.sparse.csgraph.breadth_first_order(graph, S, directed=True,
                                                     return_predecessors=False)
    reach = np.zeros(S + 1, dtype=bool)
    reach[order] = True
    return reach[:S]


def rare_event_diagnostic(know: LeaderKnowledge, transitions: float) -> tuple[float, int, int]:
    """Expected on-policy visits of the least likely pair ``(s, a)`` in ``transitions``
    sampled transitions: ``transitions * d_beta(s) pi(a|s)`` with ``d_beta`` the
    normalised occupancy of discount-terminated episodes (continuation ``beta``), over the
    pairs an episode can visit (:func:`reachable_states` and ``pi(a|s) > 0``: a pair no
    episode can visit never enters an estimate, nor its exact mean). Returns ``(visits,
    s, a)``."""
    mdp, pi, beta = know.state.mdp, know.pi, know.beta
    d = state_occupancy(mdp, pi, gamma=beta, validate=False) * (1.0 - beta)
    visits = transitions * d[:, None] * pi
    possible = reachable_states(mdp, pi)[:, None] & (pi > 0)
    s, a = np.unravel_index(int(np.argmin(np.where(possible, visits, np.inf))), visits.shape)
    return float(visits[s, a]), int(s), int(a)


def known_covariance_verdict(samples: object, exact: object, covariance: object,
                             rarest_visits: float, alpha: float = 0.01) -> TestResult:
    r"""The exact-covariance verdict, by the regime the exact occupancy shows.

    ``samples[R, d]`` independent estimates, ``exact[d]``, ``covariance[d, d]`` the exact
    covariance of one estimate, ``rarest_visits`` the expected visits of the least likely
    on-policy pair in all ``R`` estimates' transitions (:func:`rare_event_diagnostic`).

    Regular regime (``rarest_visits >= MIN_EXPECTED_VISITS``): the chi-square test
    :func:`~.acceptance.known_covariance_test` decides (level ``alpha`` asymptotically;
    measured in ``verification/known_covariance_rates.md``).

    Rare-event regime: one replicate that sees the rare pair can move ``T`` by about
    ``1 / visits``, so the chi-square's *rejections* lose their normal-theory level, while
    its acceptances keep their meaning (the covariance, hence the resolution, is exact).
    So: the chi-square accepts -> its result (a pass); the distribution-free
    :func:`~.acceptance.chebyshev_test` rejects too (``P(T >= r / alpha) <= alpha`` for
    every law of the estimates; docs/math.md, section 10.6) -> its result (a failure at
    a guaranteed level); the chi-square rejects and the Chebyshev test does not -> the
    chi-square's result with ``reject = True`` and ``approximation_ok = False``: the
    rejection rests on the normal approximation alone, a verdict
    :func:`is_unresolved_rejection` reports (``exact-bilevel check`` calls it
    inconclusive). The report names the regime and both p-values.
    """
    visits = float(rarest_visits)
    if not visits >= 0.0:  # also NaN
        raise ValueError(f"rarest_visits = {rarest_visits!r}: must be a number >= 0")
    chi = known_covariance_test(samples, exact, covariance, alpha)
    if visits >= MIN_EXPECTED_VISITS:
        return dataclasses.replace(chi, report=(
            f"{chi.report}; regular regime (rarest pair expected {visits:.3g} >= "
            f"{MIN_EXPECTED_VISITS:g} times): the chi-square decides"))
    cheb = chebyshev_test(samples, exact, covariance, alpha)
    regime = (f"rare-event regime (rarest pair expected {visits:.3g} < "
              f"{MIN_EXPECTED_VISITS:g} times): chi-square p = {chi.p_value:.3g}, "
              f"distribution-free Chebyshev p = {cheb.p_value:.3g}")
    if not chi.reject:
        return dataclasses.replace(chi, report=f"{chi.report}; {regime}: the chi-square "
                                   "accepts")
    if cheb.reject:
        return dataclasses.replace(cheb, report=f"{cheb.report}; {regime}: the "
                                   "distribution-free bound rejects (level <= alpha for "
                                   "any law)")
    return dataclasses.replace(chi, approximation_ok=False, report=(
        f"{chi.report}; {regime}: UNRESOLVED - only the chi-square rejects, and in this "
        "regime its rejections rest on a normal approximation that one replicate seeing "
        "the rare pair can break; more replicates or a larger budget decide"))


def is_unresolved_rejection(result: TestResult) -> bool:
    """Whether a :func:`known_covariance_verdict` result is a rejection that only the
    chi-square makes in the rare-event regime (neither a pass nor a failure at a
    guaranteed level)."""
    return bool(result.reject and not result.approximation_ok
                and result.name == "known-covariance")


def _flag_rare_events(res: TestResult, know: LeaderKnowledge, transitions: float
                      ) -> TestResult:
    visits, s, a = rare_event_diagnostic(know, transitions)
    if visits >= MIN_EXPECTED_VISITS:
        return res
    message = (f"rare-event regime: pair (s={s}, a={a}) has pi = {know.pi[s, a]:.3g} and is "
               f"expected to be visited {visits:.3g} times in all {transitions:.3g} sampled "
               "transitions together; the estimates' mean depends on it, so the verdict is "
               "not reliable (increase the budget or the temperature)")
    warnings.warn(f"{res.name}: {message}", EstimateTailWarning, stacklevel=3)
    return dataclasses.replace(res, approximation_ok=False,
                               report=f"{res.report}. WARNING: {message}")


def check(problem: BilevelProblem, x: object, estimator: str, critic: str | None = None, *,
          seed: int, alpha: float, fn: EstimatorFn | None = None) -> TestResult:
    """Run the protocol of ``(estimator, critic)`` at ``(problem, x)``.

    ``fn`` replaces the estimator by another function with the registry's signature
    (a mutant, or your own implementation), checked exactly as the registered one.
    """
    critic = ESTIMATORS[estimator].default_critic if critic is None else critic
    protocol = PROTOCOLS[(estimator, critic)]
    know = leader_knowledge(problem, x)
    fn = ESTIMATORS[estimator].fn if fn is None else fn
    X = draw_replicates(fn, know, protocol.budget, protocol.replicates, seed, critic)
    g = target(problem, know.state.x, protocol)
    if protocol.unbiased:
        res = unbiasedness_test(X, g, alpha)
    else:
        res = bias_bound_test(X, g, allowance(X, g, protocol), alpha)
    return _flag_rare_events(res, know, protocol.budget * protocol.replicates)


GameEstimatorFn = Callable[..., Estimate]


def check_game(game: MarkovGame, x: object, estimator: str, *, seed: int, alpha: float,
               budget: int = 8000, replicates: int = 200,
               fn: GameEstimatorFn | None = None) -> TestResult:
    """Unbiasedness of a game estimator (``fn(game, x, estimator, budget, rng)``,
    default :func:`exact_bilevel.games.estimate`) against the exact game hypergradient.

    Replicate ``i`` reads ``replicate_rng(seed, i)``; the replicates are drawn together
    (:func:`exact_bilevel.games.estimate_replicates`) when ``fn`` is the default or marked
    :func:`~exact_bilevel.estimators._common.vectorised` (it serves a block of uniforms as
    :func:`exact_bilevel.games.estimate` does), else one call per replicate."""
    if fn is None or is_vectorised(fn):
        X = game_estimators.estimate_replicates(
            game, x, estimator, budget, [replicate_rng(seed, i) for i in range(replicates)],
            fn=fn)[0]
    else:
        X = np.array([fn(game, x, estimator, budget, replicate_rng(seed, i)).gradient
                      for i in range(replicates)])
    return unbiasedness_test(X, game_hypergradient(game, x).gradient, alpha)
