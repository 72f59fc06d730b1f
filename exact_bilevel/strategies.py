"""Hypothesis strategies that draw random MDPs and bilevel problems.

Public so that other projects can property-test their own code against ours::

    from hypothesis import given
    from exact_bilevel.strategies import bilevel_problems

    @given(bilevel_problems())
    def test_my_gradient(case):
        assert_close(my_gradient(case.problem, case.x), exact(case.problem, case.x))

Shapes, discounts, temperatures, sparsity and the parameterisation are drawn
by hypothesis (and shrink); the array entries come from a numpy Generator
seeded by a drawn integer, which keeps generation fast.
Requires the ``test`` extra (hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from .core.generators import random_mdp
from .core.mdp import FiniteMDP
from .core.problem import BilevelProblem
from .experiments.examples import OBJECTIVES, PARAMETERIZATIONS, random_problem

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def discounts(min_value: float = 0.0, max_value: float = 0.95) -> st.SearchStrategy[float]:
    """Discount factors in ``[min_value, max_value]``."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False)


def temperatures(min_value: float = 0.05, max_value: float = 5.0) -> st.SearchStrategy[float]:
    """Temperatures, log-uniform in ``[min_value, max_value]``."""
    lo, hi = np.log(min_value), np.log(max_value)
    return st.floats(min_value=lo, max_value=hi).map(lambda z: float(np.exp(z)))


@st.composite
def finite_mdps(draw: st.DrawFn, *, min_states: int = 1, max_states: int = 6,
                min_actions: int = 1, max_actions: int = 4,
                gammas: st.SearchStrategy[float] | None = None) -> FiniteMDP:
    """Random :class:`FiniteMDP`, optionally with sparse rows (random support size)."""
    S = draw(st.integers(min_states, max_states))
    A = draw(st.integers(min_actions, max_actions))
    gamma = draw(gammas if gammas is not None else discounts())
    support = draw(st.one_of(st.none(), st.integers(1, S)))
    return random_mdp(S, A, gamma=gamma, seed=draw(seeds), support=support,
                      random_initial=draw(st.booleans()))


@dataclass(frozen=True)
class ProblemCase:
    """A drawn bilevel problem and a point ``x`` to evaluate it at."""

    problem: BilevelProblem
    x: np.ndarray
    parameterize: str
    objective: str


@st.composite
def bilevel_problems(draw: st.DrawFn, *, max_states: int = 5, max_actions: int = 3,
                     max_params: int = 4, parameterizations: tuple[str, ...] = PARAMETERIZATIONS,
                     objectives: tuple[str, ...] = OBJECTIVES,
                     gammas: st.SearchStrategy[float] | None = None,
                     taus: st.SearchStrategy[float] | None = None) -> ProblemCase:
    """Random bilevel problems (see :func:`exact_bilevel.experiments.examples.random_problem`)."""
    S = draw(st.integers(1, max_states))
    A = draw(st.integers(1, max_actions))
    d = draw(st.integers(1, max_params))
    kind = draw(st.sampled_from(parameterizations))
    obj = draw(st.sampled_from(objectives))
    gamma = draw(gammas if gammas is not None else discounts(0.0, 0.95))
    tau = draw(taus if taus is not None else temperatures())
    problem, x = random_problem(S, A, d, seed=draw(seeds), gamma=gamma, tau=tau,
                                parameterize=kind, objective=obj)
    return ProblemCase(problem=problem, x=x, parameterize=kind, objective=obj)


# --- hostile input for file loaders ------------------------------------------------
#: Keys that the problem formats use, so that random documents reach deep into a loader.
FORMAT_KEYS = ("format", "gamma", "tau", "transitions", "x", "base", "features", "logits",
               "entries", "incentive", "states", "pairs", "scale", "kind", "objective",
               "regularizer", "leader_reward", "follower_reward", "weight", "center",
               "observes", "initial")


def json_values(keys: tuple[str, ...] = FORMAT_KEYS,
                max_leaves: int = 30) -> st.SearchStrategy[object]:
    """Arbitrary JSON-like values (None, bools, ints, floats incl. inf, short strings,
    lists, dicts keyed by ``keys``): malformed documents for fuzzing a loader."""
    leaves = (st.none() | st.booleans() | st.integers(-5, 1 << 40) | st.floats(allow_nan=False)
              | st.text(max_size=8))
    return st.recursive(leaves, lambda c: st.lists(c, max_size=5)
                        | st.dictionaries(st.sampled_from(keys), c, max_size=5),
                        max_leaves=max_leaves)


def json_paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (dict keys / list indices, the first 3 items of each list) into ``doc``."""
    out: list[tuple] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += json_paths(v, (*prefix, i))
    if prefix:
        out.append(prefix)
    return out
