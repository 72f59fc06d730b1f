r"""A certification battery for anyone's Markov-game hypergradient estimator: the
two-player counterpart of :mod:`.battery` (same options, verdicts and result table).

Give a function ``fn(game, x, budget, seed) -> gradient[d]`` — one estimate of the
leader's ``grad F(theta)`` in a :class:`~exact_bilevel.games.MarkovGame` from about
``budget`` transitions, reproducible from ``seed`` — and :func:`check_game_estimator` runs
it on a curated suite of exact games (:func:`game_suite`): the DiscreteToy game of Kudo et
al. (2026) at a non-trivial leader policy, random games whose follower observes the state
or the state and the leader's action, a leader discounting more and less than the
follower, an MLP leader, and a near-deterministic follower (rare-event regime at the
defaults). On each case it draws ``R`` estimates and tests them against the exact game
hypergradient (:func:`exact_bilevel.games.hypergradient`): the unbiasedness test, or with
``unbiased=False`` the ``O(1/n)`` bias bound; :func:`exact_bilevel.testing.
check_game_estimator` returns the per-case table (:class:`~.battery.BatteryResult`).

With pytest, the plugin's ``bilevel_game_case`` fixture offers the suite as parametrised
cases::

    def test_my_game_estimator(bilevel_game_case):
        bilevel_game_case.assert_passes(my_game_bchg)

**Known covariance.** When ``fn`` implements a registered game estimator
(``reference="bc-hg"``, ``"bc-hg-baseline"`` or ``"direct-only"``, exact leader critic),
its exact mean ``m`` and covariance at ``budget``
(:func:`exact_bilevel.games.game_moments`; ``m = grad F`` for bc-hg and bc-hg-baseline,
``direct + initial_term`` for direct-only) drive the exact-covariance verdict
(:func:`~exact_bilevel.validation.convergence.known_covariance_verdict`: chi-square in the
regular regime; in the rare-event regime a rejection must also be the distribution-free
Chebyshev test's), with the sample-covariance test reported beside it, exactly as in
:mod:`.battery`.

**Rare events.** The regime is read off the follower's exact occupancy in its own problem
(:func:`exact_bilevel.games.follower_problem`: the induced or the augmented MDP): the
expected visits of the least likely on-policy pair in all ``budget x replicates``
transitions (:func:`~exact_bilevel.validation.convergence.rare_event_diagnostic`). Below
:data:`~exact_bilevel.validation.convergence.MIN_EXPECTED_VISITS` and without a
``reference``, no test on the samples alone is reliable (their spread misses the events
the mean lives in): the verdict is flagged (``approximation_ok = False``, an
:class:`~exact_bilevel.validation.acceptance.EstimateTailWarning`, the report says so) and
its resolution is unknown (NaN: the table reads ``pass (unresolved)`` and
``require_resolution`` fails it); give ``reference=`` or raise the budget.

Replicates: ``fn`` is called with ``seed_i = replicate_int_seed(seed, i)``
(:mod:`exact_bilevel.core.streams`), one stream per replicate; a registered game estimator
(:func:`registered_game`) draws all replicates together, replicate ``i`` reading
``replicate_rng(seed, i)`` (:func:`exact_bilevel.games.replicates`, rule ``spawn-key/2``).
False alarms: each case is tested at ``alpha`` (default 1e-3), so a correct estimator
fails one of the 7 standard cases with probability at most ``7 alpha`` (in the regular
regime).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import games as mg
from ..estimators import LeaderKnowledge, leader_knowledge
from ..validation.acceptance import EstimateTailWarning, TestResult
from ..validation.convergence import MIN_EXPECTED_VISITS, rare_event_diagnostic
from .battery import (
    BatteryResult,
    CaseOutcome,
    Registered,
    _assert_outcome,
    _case_outcome,
    _check_reference_options,
    _checked_estimates,
    _checked_requirement,
    _KnownMoments,
    _run_cases,
    _user_replicates,
)

UserGameEstimator = Callable[[mg.MarkovGame, np.ndarray, int, int], np.ndarray]
"""``fn(game, x, budget, seed) -> gradient[d]``, ``d = game.n_params``."""


@dataclass(frozen=True)
class RegisteredGame:
    """One of the package's game estimators (:data:`exact_bilevel.games.GAME_ESTIMATORS`)
    as a :data:`UserGameEstimator`: called with an integer seed, one estimate from
    ``numpy.random.default_rng(seed)``; in :meth:`GameCase.run`, all replicates drawn
    together (:meth:`batch`)."""

    estimator: str

    def __post_init__(self) -> None:
        if self.estimator not in mg.GAME_ESTIMATORS:
            raise ValueError(f"estimator = {self.estimator!r}: must be one of "
                             f"{mg.GAME_ESTIMATORS}")

    def __call__(self, game: mg.MarkovGame, x: np.ndarray, budget: int,
                 seed: int) -> np.ndarray:
        return mg.estimate(game, x, self.estimator, budget,
                           np.random.default_rng(seed)).gradient

    def batch(self, game: mg.MarkovGame, x: np.ndarray, budget: int, n_replicates: int,
              seed: int) -> np.ndarray:
        """``[R, d]`` estimates drawn together, replicate ``i`` on its own stream
        ``replicate_rng(seed, i)`` (:func:`exact_bilevel.games.replicates`)."""
        return mg.replicates(game, x, self.estimator, budget, n_replicates, seed)[0]


def registered_game(estimator: str) -> RegisteredGame:
    """The registered game ``estimator`` (``"bc-hg"``, ``"bc-hg-baseline"``,
    ``"direct-only"``; exact leader critic) as a :data:`UserGameEstimator` that the game
    battery runs batched (:class:`RegisteredGame`)."""
    return RegisteredGame(estimator)


@dataclass
class GameCase:
    """One exact Markov game of the battery at the leader parameter ``x[d]``; the exact
    hypergradient and the follower's solution are computed on first use."""

    name: str
    game: mg.MarkovGame
    x: np.ndarray
    _exact: np.ndarray | None = field(default=None, repr=False)
    _know: LeaderKnowledge | None = field(default=None, repr=False)
    #: The ``reference`` of :meth:`assert_passes` when the call gives none (set by the
    #: pytest plugin's ``--bilevel-game-reference``).
    default_reference: str | None = field(default=None, repr=False)
    #: The ``require_resolution`` of :meth:`assert_passes` when the call gives none (set
    #: by the pytest plugin's ``--bilevel-require-resolution``).
    default_require_resolution: float | None = field(default=None, repr=False)

    @property
    def knowledge(self) -> LeaderKnowledge:
        """The follower's solution in its own problem at ``x``
        (:func:`exact_bilevel.games.follower_problem`, then
        :func:`~exact_bilevel.estimators.leader_knowledge`): the occupancy the rare-event
        diagnostic reads."""
        if self._know is None:
            self._know = leader_knowledge(mg.follower_problem(self.game, self.x), self.x)
        return self._know

    @property
    def exact(self) -> np.ndarray:
        """``grad F(x)``, shape ``[d]`` (:func:`exact_bilevel.games.hypergradient`)."""
        if self._exact is None:
            self._exact = mg.hypergradient(self.game, self.x).gradient
        return self._exact

    def rarest_visits(self, transitions: float) -> float:
        """Expected visits of the follower's least likely on-policy pair in
        ``transitions`` sampled transitions (:func:`~exact_bilevel.validation.convergence.
        rare_event_diagnostic`)."""
        return rare_event_diagnostic(self.knowledge, transitions)[0]

    def reference_moments(self, reference: str, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mean[d], covariance[d, d])`` of one estimate of the registered game estimator
        ``reference`` at ``budget`` (:func:`exact_bilevel.games.game_moments`)."""
        if reference not in mg.GAME_ESTIMATORS:
            raise ValueError(f"reference = {reference!r}: must be one of "
                             f"{mg.GAME_ESTIMATORS} (the game estimators with exact moments)")
        m = mg.game_moments(self.game, self.x, reference, budget)
        return m.mean, m.covariance

    def run(self, fn: UserGameEstimator, *, budget: int = 8000, replicates: int = 100,
            seed: int = 0, unbiased: bool = True, alpha: float = 1e-3,
            bias_constant: float = 30.0, reference: str | None = None) -> TestResult:
        """The deciding test of :meth:`evaluate`."""
        return self.evaluate(fn, budget=budget, replicates=replicates, seed=seed,
                             unbiased=unbiased, alpha=alpha, bias_constant=bias_constant,
                             reference=reference).decide

    def evaluate(self, fn: UserGameEstimator, *, budget: int = 8000, replicates: int = 100,
                 seed: int = 0, unbiased: bool = True, alpha: float = 1e-3,
                 bias_constant: float = 30.0, reference: str | None = None) -> CaseOutcome:
        """Draw ``replicates`` estimates ``fn(game, x, budget, seed_i)`` (``seed_i =
        replicate_int_seed(seed, i)``; a :class:`RegisteredGame` draws them together) and
        test them (module docstring): the deciding test, the sample-covariance test beside
        the exact-covariance one (with ``reference``) and the relative bias the replicates
        resolve (NaN in the rare-event regime without ``reference``).

        ``ValueError`` naming the case for estimates of the wrong shape or not finite, a
        ``reference`` without exact moments, or a tabular :class:`~.battery.Registered`.
        """
        if isinstance(fn, Registered):
            raise ValueError(f"fn: registered({fn.estimator!r}) is a single-follower "
                             "estimator; for a Markov game use registered_game(...)")
        _check_reference_options(reference, unbiased)
        visits = self.rarest_visits(budget * replicates)
        known = None
        if reference is not None:
            known = _KnownMoments(reference, *self.reference_moments(reference, budget),
                                  visits)
        d = self.game.n_params
        if isinstance(fn, RegisteredGame):
            X = fn.batch(self.game, self.x.copy(), budget, replicates, seed)
        else:
            X = _user_replicates(lambda s: fn(self.game, self.x.copy(), budget, s),
                                 replicates, seed, d, self.name)
        out = _case_outcome(_checked_estimates(X, replicates, d, self.name), self.exact,
                            budget, unbiased=unbiased, alpha=alpha,
                            bias_constant=bias_constant, known=known)
        if known is None and visits < MIN_EXPECTED_VISITS:
            return _rare_event_flagged(out, self.name, visits, budget * replicates)
        return out

    def assert_passes(self, fn: UserGameEstimator, *,
                      require_resolution: float | None = None, **options: object
                      ) -> TestResult:
        """:meth:`run`, raising ``AssertionError`` with the report if the test rejects;
        ``require_resolution=q`` (or the plugin's ``--bilevel-require-resolution q``) also
        fails a pass whose replicates cannot see a relative bias of ``q`` (as
        :meth:`exact_bilevel.experiments.battery.Case.assert_passes`)."""
        if self.default_reference is not None:
            options.setdefault("reference", self.default_reference)
        if require_resolution is None:
            require_resolution = self.default_require_resolution
        required = _checked_requirement(require_resolution)
        out = self.evaluate(fn, **options)  # type: ignore[arg-type]
        return _assert_outcome(self.name, out, required)


def _rare_event_flagged(out: CaseOutcome, case: str, visits: float,
                        transitions: float) -> CaseOutcome:
    """A sample-based verdict in the rare-event regime: ``approximation_ok = False``, an
    :class:`EstimateTailWarning`, the report says why, and the resolution is unknown
    (NaN): the replicates' spread misses the events the mean lives in."""
    message = (f"rare-event regime: the follower's least likely pair is expected "
               f"{visits:.3g} < {MIN_EXPECTED_VISITS:g} times in all {transitions:.3g} "
               "transitions, so the sample-covariance verdict is not reliable and its "
               "resolution is unknown; give reference= (the exact-covariance verdict) or "
               "raise the budget")
    warnings.warn(f"{case}: {message}", EstimateTailWarning, stacklevel=3)
    decide = dataclasses.replace(out.decide, approximation_ok=False,
                                 report=f"{out.decide.report}. WARNING: {message}")
    return CaseOutcome(decide, out.sample, float("nan"))


def _random_game(seed: int, *, observes: str, gamma: float = 0.8, tau: float = 0.5,
                 leader_gamma: float | None = None, leader: mg.MLPLeader | None = None
                 ) -> tuple[mg.MarkovGame, np.ndarray]:
    """A 3-state game, 2 leader and 2 follower actions, drawn as
    :func:`exact_bilevel.strategies.markov_games` draws them (Dirichlet transitions and
    initial law, ``N(0, 1)`` rewards and tabular logits) from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    game = mg.MarkovGame(rng.dirichlet(np.ones(3), size=(3, 2, 2)), rng.normal(size=(3, 2, 2)),
                         rng.normal(size=(3, 2, 2)), rng.dirichlet(np.ones(3)), gamma, tau,
                         observes=observes, leader_gamma=leader_gamma, leader=leader)
    x = rng.normal(size=game.n_params)
    if leader is not None:
        x = 2.0 * leader.xavier_uniform(np.random.default_rng(seed))
    return game, x


def game_suite(name: str = "standard") -> list[GameCase]:
    """The game battery's cases. ``"standard"``: 7 games; ``"quick"``: the first 3.

    Chosen (seeds fixed) so that every case is non-degenerate: ``max |g| >= 0.1``, the
    follower's response (the indirect term) at least 10% of it, finite exact covariances
    with a positive diagonal, and, at the defaults (8000 x 100), only the last case in the
    rare-event regime (``tests/test_game_battery.py`` checks this). At the defaults the
    exact-covariance test resolves a relative bias of 0.02 to 0.46 of BC-HG (the
    DiscreteToy case is the weakest) and 0.02 to 0.10 of bc-hg-baseline on every case."""
    if name not in ("standard", "quick"):
        raise ValueError(f"suite = {name!r}: must be 'standard' or 'quick'")
    s, sa = mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION
    toy = mg.discrete_toy(1.0, gamma=0.8, tau=0.3)
    cases = [GameCase("DiscreteToy (R = 1, gamma = 0.8, tau = 0.3)", toy,
                      np.array([0.3, -0.3, 1.0, -1.0, 0.2, 0.0]))]
    specs = [
        ("follower observes s", dict(seed=102, observes=s)),
        ("follower observes (s, aL)", dict(seed=133, observes=sa)),
        ("leader discount above the follower's (0.85 vs 0.6)",
         dict(seed=102, observes=s, gamma=0.6, leader_gamma=0.85)),
        ("leader discount below the follower's (0.5 vs 0.85)",
         dict(seed=108, observes=sa, gamma=0.85, leader_gamma=0.5)),
        ("MLP leader (4 tanh units; follower observes (s, aL))",
         dict(seed=104, observes=sa, leader=mg.MLPLeader(3, 2, hidden=(4,),
                                                         activation="tanh"))),
        ("near-deterministic follower (tau = 0.2)", dict(seed=100, observes=s, tau=0.2)),
    ]
    for label, kw in specs:
        cases.append(GameCase(label, *_random_game(**kw)))  # type: ignore[arg-type]
    return cases[:3] if name == "quick" else cases


def check_game_estimator(fn: UserGameEstimator, suite_name: str = "standard", *,
                         unbiased: bool = True, budget: int = 8000, replicates: int = 100,
                         alpha: float = 1e-3, seed: int = 0,
                         reference: str | None = None) -> BatteryResult:
    """Run ``fn(game, x, budget, seed) -> gradient[d]`` through every case of
    :func:`game_suite` (module docstring); the result, its ``passed``, ``unresolved``,
    ``conclusive`` and ``table()`` read as :func:`~.battery.check_estimator`'s.

    ``reference``: the registered game estimator ``fn`` implements (``"bc-hg"``,
    ``"bc-hg-baseline"``, ``"direct-only"``), whose exact mean and covariance at ``budget``
    (:func:`exact_bilevel.games.game_moments`) the exact-covariance verdict uses; the
    sample-covariance test is reported beside it. ``None``: the sample-covariance test
    alone."""
    return _run_cases(game_suite(suite_name), fn, budget=budget, replicates=replicates,
                      seed=seed, unbiased=unbiased, alpha=alpha, reference=reference)
