r"""A certification battery for anyone's hypergradient estimator (cf. scikit-learn's
``check_estimator``).

Give a function ``fn(problem, x, budget, seed) -> gradient[d]`` — one estimate of
``grad F(x)`` from about ``budget`` transitions, reproducible from ``seed`` — and
:func:`check_estimator` runs it on a curated suite of exact problems
(:func:`suite`): reward-, transition- and jointly-parameterised, a leader with its
own discount below and above the follower's, a small temperature, a discount near
1, sparse transitions. On each case it draws ``R`` estimates and applies the same
test as ``tests/test_convergence.py``: the unbiasedness test for an estimator
declared unbiased, otherwise the bias bound with the ``O(1/n)`` allowance
``c s / n`` (:mod:`exact_bilevel.validation.convergence`). Public entry point:
:func:`exact_bilevel.testing.check_estimator`. The result is a per-case verdict table.

With pytest, the plugin (``exact_bilevel.pytest_plugin``, registered as a
``pytest11`` entry point) offers the suite as a parametrised fixture, so a test
file is three lines::

    def test_my_estimator(bilevel_case):
        bilevel_case.assert_passes(my_estimator)

False alarms: each case is tested at ``alpha`` (default 1e-3), so a correct
estimator fails one of the 8 standard cases with probability at most ``8 alpha``.

Resolution: a pass is only as strong as the replicates. Each case reports the relative
bias (to ``max |g|``) its deciding test would reject with probability >= 1/2 on the worst
coordinate; ``BatteryResult.unresolved`` lists the cases that cannot see a 100% bias
(their table verdict reads ``pass (unresolved)``; ``exact-bilevel check`` calls such a
verdict inconclusive) and ``BatteryResult.conclusive`` is ``passed`` without them. At
the defaults (8000 x 100) the "discount near 1" case resolves about 120% for BC-HG:
raise ``budget`` or ``replicates`` for a pass that means something there.

**Known covariance.** When ``fn`` implements a registered estimator whose exact
moments are known (``reference="bc-hg"``, ``"bc-hg-baseline"`` or ``"naive"``, exact
critic; :func:`exact_bilevel.estimators.moments`), say so: each case then tests ``H0:
E X = m`` with the reference's exact mean ``m`` (``= g`` for bc-hg and bc-hg-baseline)
by the exact-covariance chi-square test
(:func:`~exact_bilevel.validation.acceptance.known_covariance_test`, the covariance of
one estimate at ``budget``), which decides (in the rare-event regime a rejection must
also be one of the distribution-free Chebyshev test, else it is reported unresolved:
:func:`~exact_bilevel.validation.convergence.known_covariance_verdict`); the
sample-covariance test against the same ``m`` is run beside it and reported
(``BatteryResult.sample_results``, a column of the table). A wrong mean *or* a wrong
variance moves the chi-square statistic, and no sample covariance can hide a rare event.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.generators import gridworld
from ..core.hypergradient import hypergradient
from ..core.objectives import LeaderReturn
from ..core.parameterizations import FixedReward, FixedTransitions, tabular_incentive
from ..core.problem import BilevelProblem
from ..core.streams import replicate_int_seed
from ..estimators import LeaderKnowledge, leader_knowledge
from ..estimators.registry import estimate, replicates
from ..validation.acceptance import (
    TestResult,
    bias_bound_test,
    resolution,
    resolution_known,
    unbiasedness_test,
)
from ..validation.convergence import (
    bias_allowance,
    known_covariance_verdict,
    rare_event_diagnostic,
)
from .examples import random_problem

UserEstimator = Callable[[BilevelProblem, np.ndarray, int, int], np.ndarray]
"""``fn(problem, x, budget, seed) -> gradient[d]``."""


@dataclass(frozen=True)
class Registered:
    """One of the package's estimators as a :data:`UserEstimator`: called with an integer
    seed, one estimate from ``numpy.random.default_rng(seed)``; in :meth:`Case.run`, all
    replicates drawn together (:func:`exact_bilevel.estimators.replicates`, stream rule
    ``cell-block/3`` of the run's seed) instead of one call per seed."""

    estimator: str
    critic: str | None = None

    def __call__(self, problem: BilevelProblem, x: np.ndarray, budget: int,
                 seed: int) -> np.ndarray:
        return estimate(problem, x, self.estimator, budget, np.random.default_rng(seed),
                        self.critic).gradient

    def batch(self, problem: BilevelProblem, x: np.ndarray, budget: int, n_replicates: int,
              seed: int) -> np.ndarray:
        """``[R, d]`` estimates, drawn together."""
        return replicates(problem, x, self.estimator, budget, n_replicates, seed,
                          self.critic)[0]


def registered(estimator: str, critic: str | None = None) -> Registered:
    """The registered ``estimator`` (with ``critic``) as a :data:`UserEstimator` that the
    battery runs batched (:class:`Registered`)."""
    return Registered(estimator, critic)


@dataclass(frozen=True)
class CaseOutcome:
    """One case's verdict: the deciding test, the sample-covariance test beside it (with a
    reference) and ``resolution``, the smallest relative bias (to ``max |g|``) the
    deciding test rejects with probability >= 1/2 on the worst coordinate; a pass with
    ``resolution > 1`` says little (it could not tell the estimator from one off by
    100%)."""

    decide: TestResult
    sample: TestResult | None
    resolution: float


@dataclass
class Case:
    """One exact problem of the battery; ``exact`` is computed on first use."""

    name: str
    problem: BilevelProblem
    x: np.ndarray
    _exact: np.ndarray | None = field(default=None, repr=False)
    _know: LeaderKnowledge | None = field(default=None, repr=False)
    #: The ``reference`` of :meth:`assert_passes` when the call gives none (set by the
    #: pytest plugin's ``--bilevel-reference``).
    default_reference: str | None = field(default=None, repr=False)
    #: The ``require_resolution`` of :meth:`assert_passes` when the call gives none (set
    #: by the pytest plugin's ``--bilevel-require-resolution``).
    default_require_resolution: float | None = field(default=None, repr=False)

    @property
    def knowledge(self) -> LeaderKnowledge:
        """The follower's solution and the leader's quantities at ``x``
        (:func:`~exact_bilevel.estimators.leader_knowledge`), computed on first use."""
        if self._know is None:
            self._know = leader_knowledge(self.problem, self.x)
        return self._know

    @property
    def exact(self) -> np.ndarray:
        if self._exact is None:
            self._exact = hypergradient(self.problem, self.x).gradient
        return self._exact

    def run(self, fn: UserEstimator, *, budget: int = 8000, replicates: int = 100,
            seed: int = 0, unbiased: bool = True, alpha: float = 1e-3,
            bias_constant: float = 30.0, reference: str | None = None) -> TestResult:
        """Draw ``replicates`` estimates ``fn(problem, x, budget, seed_i)`` and test them
        against the exact hypergradient (see the module docstring). ``seed_i =
        replicate_int_seed(seed, i)`` (:mod:`exact_bilevel.core.streams`): 63-bit integers
        from ``SeedSequence(seed, spawn_key=(i,))``, so two runs with different ``seed``
        share no replicate; a :class:`Registered` estimator of the package draws its
        replicates together instead (:meth:`Registered.batch`). ``reference`` names the
        registered estimator ``fn`` implements: the exact-covariance test decides
        (:meth:`run_both`)."""
        return self.run_both(fn, budget=budget, replicates=replicates, seed=seed,
                             unbiased=unbiased, alpha=alpha, bias_constant=bias_constant,
                             reference=reference)[0]

    def run_both(self, fn: UserEstimator, *, budget: int = 8000, replicates: int = 100,
                 seed: int = 0, unbiased: bool = True, alpha: float = 1e-3,
                 bias_constant: float = 30.0, reference: str | None = None
                 ) -> tuple[TestResult, TestResult | None]:
        """``(deciding test, sample-covariance test beside it or None)``: without
        ``reference`` the test of :meth:`run` alone; with it the exact-covariance test of
        ``H0: E X = m`` (the reference's exact mean and covariance at ``budget``) and the
        sample-covariance unbiasedness test against the same ``m``."""
        out = self.evaluate(fn, budget=budget, replicates=replicates, seed=seed,
                            unbiased=unbiased, alpha=alpha, bias_constant=bias_constant,
                            reference=reference)
        return out.decide, out.sample

    def evaluate(self, fn: UserEstimator, *, budget: int = 8000, replicates: int = 100,
                 seed: int = 0, unbiased: bool = True, alpha: float = 1e-3,
                 bias_constant: float = 30.0, reference: str | None = None) -> CaseOutcome:
        """:meth:`run_both` and the resolution of its replicates: the relative bias the
        deciding test can see (:func:`~exact_bilevel.validation.acceptance.resolution`
        from the replicates' spread; with a ``reference``,
        :func:`~exact_bilevel.validation.acceptance.resolution_known` from the exact
        covariance)."""
        _check_reference_options(reference, unbiased)
        known = None
        if reference is not None:
            target, cov = self.reference_moments(reference, budget)
            visits = rare_event_diagnostic(self.knowledge, budget * replicates)[0]
            known = _KnownMoments(reference, target, cov, visits)
        if isinstance(fn, Registered):
            X = fn.batch(self.problem, self.x.copy(), budget, replicates, seed)
        else:
            X = _user_replicates(lambda s: fn(self.problem, self.x.copy(), budget, s),
                                 replicates, seed, self.x.size, self.name)
        return _case_outcome(_checked_estimates(X, replicates, self.x.size, self.name),
                             self.exact, budget, unbiased=unbiased, alpha=alpha,
                             bias_constant=bias_constant, known=known)

    def reference_moments(self, reference: str, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mean[d], covariance[d, d])`` of one estimate of the registered estimator
        ``reference`` at ``budget`` (:func:`exact_bilevel.estimators.moments`, exact
        critic); ``ValueError`` naming ``reference`` for an estimator without them."""
        from ..estimators.moments import SUPPORTED, moments

        if reference not in SUPPORTED:
            try:
                moments(self.problem, self.x, reference)
            except ValueError as exc:  # the reason, under the argument's own name
                raise ValueError("reference" + str(exc)[len("estimator"):]) from None
        m = moments(self.problem, self.x, reference, budget, know=self.knowledge)
        return m.mean, m.covariance

    def assert_passes(self, fn: UserEstimator, *, require_resolution: float | None = None,
                      **options: object) -> TestResult:
        """:meth:`run`, raising ``AssertionError`` with the report if the test rejects
        (``reference="bc-hg"`` etc.: the exact-covariance test decides).

        ``require_resolution=q`` (or the plugin's ``--bilevel-require-resolution q``) also
        fails a pass whose replicates cannot see a relative bias of ``q`` (the case's
        :attr:`CaseOutcome.resolution` above ``q``: e.g. ``1.0``, a pass that could not
        tell the estimator from one off by 100%), naming the resolution reached; raise the
        budget or the replicates. By default such a pass stands (as ``pass (unresolved)``
        in :func:`check_estimator`'s table)."""
        if self.default_reference is not None:
            options.setdefault("reference", self.default_reference)
        if require_resolution is None:
            require_resolution = self.default_require_resolution
        required = _checked_requirement(require_resolution)
        out = self.evaluate(fn, **options)  # type: ignore[arg-type]
        return _assert_outcome(self.name, out, required)


def _sparse_gridworld_case() -> tuple[BilevelProblem, np.ndarray]:
    """A 6x6 open gridworld stored sparse, incentives on 4 cells, leader paid at a cell."""
    mdp, grid = gridworld([" " * 6] * 6, (5, 5), gamma=0.9, random_action_prob=0.2,
                          start=(0, 0), storage="sparse")
    states = [grid.state(c) for c in ((1, 1), (2, 4), (4, 2), (3, 3))]
    follower = tabular_incentive(mdp.reward, states=states, scale=0.5)
    leader = np.zeros((mdp.n_states, mdp.n_actions))
    leader[grid.state((2, 2))] = 1.0
    problem = BilevelProblem(follower, FixedTransitions(mdp.transition_matrix, 4,
                                                        n_actions=mdp.n_actions),
                             LeaderReturn(FixedReward(leader, 4)), gamma=0.9, tau=0.3,
                             initial=mdp.initial)
    return problem, np.array([0.2, -0.1, 0.3, 0.0])


def suite(name: str = "standard") -> list[Case]:
    """The battery's cases. ``"standard"``: 8 problems; ``"quick"``: the first 3."""
    if name not in ("standard", "quick"):
        raise ValueError(f"suite = {name!r}: must be 'standard' or 'quick'")
    specs = [
        ("reward-parameterised", dict(parameterize="reward")),
        ("transition-parameterised", dict(parameterize="transitions")),
        ("jointly parameterised", dict(parameterize="both")),
        ("leader discount below the follower's", dict(objective="leader_return_own_gamma",
                                                      gamma=0.8)),
        ("leader discount above the follower's", dict(objective="leader_return_far_sighted",
                                                      gamma=0.6)),
        # the seed gives a follower whose smallest action probability is 0.013: smaller
        # temperatures on these rewards put the estimates in the rare-event regime
        ("small temperature (tau = 0.2)", dict(tau=0.2, gamma=0.7, seed=115)),
        ("discount near 1 (gamma = 0.97)", dict(gamma=0.97)),
    ]
    cases = []
    for i, (label, kw) in enumerate(specs):
        opts = {"gamma": 0.8, "tau": 0.5, "seed": 100 + i, **kw}
        problem, x = random_problem(4, 3, 2, **opts)  # type: ignore[arg-type]
        cases.append(Case(label, problem, x))
    problem, x = _sparse_gridworld_case()
    cases.append(Case("sparse transitions (6x6 gridworld)", problem, x))
    return cases[:3] if name == "quick" else cases


@dataclass(frozen=True)
class BatteryResult:
    """Per-case verdicts of :func:`check_estimator`; ``passed`` if no case rejected,
    ``conclusive`` if moreover every case resolved a relative bias of 100%
    (``unresolved`` lists the others: a pass there says little).

    ``results``: the deciding test per case; ``sample_results``: the sample-covariance
    test run beside the exact-covariance one (only with a ``reference``; empty
    otherwise); ``resolutions``: per case, the relative bias its replicates resolve."""

    results: list[tuple[str, TestResult]]
    sample_results: list[tuple[str, TestResult]] = field(default_factory=list)
    #: Per case, the relative bias its replicates resolve (:class:`CaseOutcome`).
    resolutions: list[tuple[str, float]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No case rejected (a NaN p-value rejects: ``TestResult.reject``)."""
        return not any(r.reject for _, r in self.results)

    @property
    def unresolved(self) -> list[str]:
        """Cases whose replicates cannot resolve a relative bias of 100% (resolution > 1,
        or not a number): there a pass says little; more replicates or a larger budget
        (``exact-bilevel check`` calls such a verdict inconclusive)."""
        return [name for name, r in self.resolutions if not r <= 1.0]

    @property
    def conclusive(self) -> bool:
        """:attr:`passed`, and every case resolved a 100% bias."""
        return self.passed and not self.unresolved

    def table(self) -> str:
        """A markdown table: case, test, p-value, the relative bias resolved, verdict
        (``pass (unresolved)`` where a pass cannot see a 100% bias), and the
        sample-covariance p-value beside an exact-covariance test."""
        beside = dict(self.sample_results)
        sees = dict(self.resolutions)
        extra = " sample-covariance p |" if beside else ""
        rows = ["| case | test | p-value |" + extra + " resolves | verdict |",
                "| --- | --- | --- |" + (" --- |" if beside else "") + " --- | --- |"]
        for name, r in self.results:
            side = f" {beside[name].p_value:.3g} |" if name in beside else ""
            res = sees.get(name, float("nan"))
            verdict = ("REJECT" if r.reject else
                       "pass" if res <= 1.0 else "pass (unresolved)")
            rows.append(f"| {name} | {r.name} | {r.p_value:.3g} |{side} {res:.3g} | "
                        f"{verdict} |")
        return "\n".join(rows)


def check_estimator(fn: UserEstimator, suite_name: str = "standard", *,
                    unbiased: bool = True, budget: int = 8000, replicates: int = 100,
                    alpha: float = 1e-3, seed: int = 0,
                    reference: str | None = None) -> BatteryResult:
    """Run ``fn`` through every case of :func:`suite` (see the module docstring).

    ``reference``: the registered estimator ``fn`` implements (``"bc-hg"``,
    ``"bc-hg-baseline"``, ``"naive"``; exact critic), whose exact mean and covariance
    at ``budget`` the exact-covariance test uses; it decides, and the sample-covariance
    test is reported beside it. ``None``: the sample-covariance test alone."""
    return _run_cases(suite(suite_name), fn, budget=budget, replicates=replicates,
                      seed=seed, unbiased=unbiased, alpha=alpha, reference=reference)


# --- the pieces the game battery (:mod:`.game_battery`) shares -------------------------
@dataclass(frozen=True)
class _KnownMoments:
    """The exact mean ``[d]`` and covariance ``[d, d]`` of one estimate of the registered
    estimator ``reference`` at the run's budget, and ``visits``: the expected visits of
    the least likely on-policy pair in all the run's transitions
    (:func:`~exact_bilevel.validation.convergence.rare_event_diagnostic`), which picks the
    exact-covariance verdict's regime."""

    reference: str
    mean: np.ndarray
    covariance: np.ndarray
    visits: float


def _check_reference_options(reference: str | None, unbiased: bool) -> None:
    if reference is not None and not unbiased:
        raise ValueError("reference: states the estimator's exact mean and covariance "
                         "(those of the reference); do not combine it with "
                         "unbiased=False")


def _user_replicates(one: Callable[[int], object], replicates: int, seed: int, d: int,
                     case: str) -> np.ndarray:
    """``[R, d]``: ``one(replicate_int_seed(seed, i))`` for ``i < R`` (a user function's
    replicates, each on its own stream: :mod:`exact_bilevel.core.streams`); ``ValueError``
    naming the case and the replicate for an estimate that is not ``d`` numbers."""
    rows = []
    for i in range(replicates):
        value = one(replicate_int_seed(seed, i))
        try:
            row = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            row = None
        if row is None or row.shape != (d,):
            got = (f"shape {row.shape}" if row is not None
                   else f"a {type(value).__name__} that is not an array of numbers")
            raise ValueError(f"fn: returned estimates of {got} for case {case!r} (replicate "
                             f"{i}); expected ({d},)")
        rows.append(row)
    return np.array(rows).reshape(replicates, d)


def _checked_estimates(X: np.ndarray, replicates: int, d: int, case: str) -> np.ndarray:
    """``X[R, d]`` as drawn for ``case``; ``ValueError`` naming the case for a wrong shape
    or (naming the replicate and coordinate) a non-finite estimate."""
    if X.shape != (replicates, d):
        raise ValueError(f"fn: returned estimates of shape {X.shape[1:]} for case "
                         f"{case!r}; expected ({d},)")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, k = (int(v) for v in bad[0])
        raise ValueError(f"fn: returned a non-finite estimate for case {case!r}: "
                         f"samples[{i}, {k}] = {float(X[i, k])!r} (replicate {i}, coordinate "
                         f"{k}); estimates must be finite")
    return X


def _case_outcome(X: np.ndarray, exact: np.ndarray, budget: int, *, unbiased: bool,
                  alpha: float, bias_constant: float, known: _KnownMoments | None
                  ) -> CaseOutcome:
    """The verdict on ``X[R, d]`` (:meth:`Case.evaluate`): with ``known``, the
    exact-covariance verdict of ``H0: E X = known.mean``
    (:func:`~exact_bilevel.validation.convergence.known_covariance_verdict`) with the
    sample-covariance test beside it and the exact resolution; else the unbiasedness test
    against ``exact[d]`` (or, ``unbiased=False``, the ``O(1/n)`` bias bound) with the
    replicates' resolution."""
    if known is not None:
        target, cov = known.mean, known.covariance
        sample = unbiasedness_test(X, target, alpha)
        verdict = known_covariance_verdict(X, target, cov, known.visits, alpha)
        report = (f"{verdict.report} (exact mean and covariance of {known.reference} at "
                  f"budget {budget}); the sample-covariance {sample.name} test beside it: "
                  f"p = {sample.p_value:.3g}")
        return CaseOutcome(dataclasses.replace(verdict, report=report), sample,
                           resolution_known(cov, X.shape[0], target, alpha))
    sees = resolution(X, exact, alpha)
    if unbiased:
        return CaseOutcome(unbiasedness_test(X, exact, alpha), None, sees)
    return CaseOutcome(bias_bound_test(X, exact, bias_allowance(X, exact, budget,
                                                                bias_constant), alpha),
                       None, sees)


def _checked_requirement(require_resolution: object) -> float | None:
    """``require_resolution`` of ``assert_passes``: ``None`` or a finite number > 0, else
    ``ValueError``."""
    if require_resolution is not None and not (
            isinstance(require_resolution, (int, float))
            and not isinstance(require_resolution, bool)
            and math.isfinite(require_resolution) and require_resolution > 0):
        raise ValueError(f"require_resolution = {require_resolution!r}: must be a finite "
                         "number > 0 (a relative bias, e.g. 1.0 for 100%)")
    return None if require_resolution is None else float(require_resolution)


def _assert_outcome(case: str, out: CaseOutcome, required: float | None) -> TestResult:
    """``out.decide``, or ``AssertionError`` with its report if it rejects or (with
    ``required``) if the case resolves only a relative bias above ``required``."""
    res = out.decide
    if res.reject:
        raise AssertionError(f"{case}: {res.report}")
    if required is not None and not out.resolution <= required:
        raise AssertionError(
            f"{case}: passed, but these replicates resolve only a relative bias of "
            f"{out.resolution:.3g} (required: {required:g}); raise the budget "
            f"or the replicates. {res.report}")
    return res


def _run_cases(cases: list, fn: Callable, **options: object) -> BatteryResult:
    """``evaluate(fn, **options)`` on every case, gathered into a :class:`BatteryResult`."""
    results, beside, sees = [], [], []
    for c in cases:
        out = c.evaluate(fn, **options)
        results.append((c.name, out.decide))
        sees.append((c.name, out.resolution))
        if out.sample is not None:
            beside.append((c.name, out.sample))
    return BatteryResult(results, beside, sees)
