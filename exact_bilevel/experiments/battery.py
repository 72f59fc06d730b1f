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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.generators import gridworld
from ..core.hypergradient import hypergradient
from ..core.objectives import LeaderReturn
from ..core.parameterizations import FixedReward, FixedTransitions, tabular_incentive
from ..core.problem import BilevelProblem
from ..core.streams import replicate_int_seed
from ..estimators.registry import estimate, replicates
from ..validation.acceptance import TestResult, bias_bound_test, unbiasedness_test
from ..validation.convergence import bias_allowance
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


@dataclass
class Case:
    """One exact problem of the battery; ``exact`` is computed on first use."""

    name: str
    problem: BilevelProblem
    x: np.ndarray
    _exact: np.ndarray | None = field(default=None, repr=False)

    @property
    def exact(self) -> np.ndarray:
        if self._exact is None:
            self._exact = hypergradient(self.problem, self.x).gradient
        return self._exact

    def run(self, fn: UserEstimator, *, budget: int = 8000, replicates: int = 100,
            seed: int = 0, unbiased: bool = True, alpha: float = 1e-3,
            bias_constant: float = 30.0) -> TestResult:
        """Draw ``replicates`` estimates ``fn(problem, x, budget, seed_i)`` and test them
        against the exact hypergradient (see the module docstring). ``seed_i =
        replicate_int_seed(seed, i)`` (:mod:`exact_bilevel.core.streams`): 63-bit integers
        from ``SeedSequence(seed, spawn_key=(i,))``, so two runs with different ``seed``
        share no replicate. A :class:`Registered` estimator of the package draws its
        replicates together instead (:meth:`Registered.batch`)."""
        if isinstance(fn, Registered):
            X = fn.batch(self.problem, self.x.copy(), budget, replicates, seed)
        else:
            X = np.array([np.asarray(fn(self.problem, self.x.copy(), budget,
                                        replicate_int_seed(seed, i)),
                                     dtype=float) for i in range(replicates)])
        if X.shape != (replicates, self.x.size):
            raise ValueError(f"fn: returned estimates of shape {X.shape[1:]} for case "
                             f"{self.name!r}; expected ({self.x.size},)")
        if unbiased:
            return unbiasedness_test(X, self.exact, alpha)
        return bias_bound_test(X, self.exact,
                               bias_allowance(X, self.exact, budget, bias_constant), alpha)

    def assert_passes(self, fn: UserEstimator, **options: object) -> TestResult:
        """:meth:`run`, raising ``AssertionError`` with the report if the test rejects."""
        res = self.run(fn, **options)  # type: ignore[arg-type]
        if res.reject:
            raise AssertionError(f"{self.name}: {res.report}")
        return res


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
    """Per-case verdicts of :func:`check_estimator`; ``passed`` if no case rejected."""

    results: list[tuple[str, TestResult]]

    @property
    def passed(self) -> bool:
        return not any(r.reject for _, r in self.results)

    def table(self) -> str:
        """A markdown table: case, test, p-value, verdict."""
        rows = ["| case | test | p-value | verdict |", "| --- | --- | --- | --- |"]
        for name, r in self.results:
            rows.append(f"| {name} | {r.name} | {r.p_value:.3g} | "
                        f"{'REJECT' if r.reject else 'pass'} |")
        return "\n".join(rows)


def check_estimator(fn: UserEstimator, suite_name: str = "standard", *,
                    unbiased: bool = True, budget: int = 8000, replicates: int = 100,
                    alpha: float = 1e-3, seed: int = 0) -> BatteryResult:
    """Run ``fn`` through every case of :func:`suite` (see the module docstring)."""
    return BatteryResult([(c.name, c.run(fn, budget=budget, replicates=replicates,
                                         seed=seed, unbiased=unbiased, alpha=alpha))
                          for c in suite(suite_name)])
