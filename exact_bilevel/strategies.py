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

from .examples import OBJECTIVES, PARAMETERIZATIONS, random_problem
from .generators import random_mdp
from .mdp import FiniteMDP
from .problem import BilevelProblem

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
    """Random bilevel problems (see :func:`exact_bilevel.examples.random_problem`)."""
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
