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
from hypothesis import assume
from hypothesis import strategies as st

from .core.generators import random_mdp
from .core.mdp import FiniteMDP
from .core.problem import BilevelProblem
from .experiments.examples import OBJECTIVES, PARAMETERIZATIONS, random_problem
from .games.model import OBSERVES_STATE, OBSERVES_STATE_AND_LEADER_ACTION, MarkovGame

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


#: Leader-return objectives (what the sampling estimators need), a share with
#: ``gamma_L != gamma`` on either side of ``gamma``.
LEADER_RETURNS = ("leader_return", "leader_return_own_gamma", "leader_return_x_reward",
                  "leader_return_far_sighted")


@st.composite
def nondegenerate_problems(draw: st.DrawFn, *, max_states: int = 4, max_actions: int = 3,
                           max_params: int = 3,
                           parameterizations: tuple[str, ...] = PARAMETERIZATIONS,
                           objectives: tuple[str, ...] = LEADER_RETURNS,
                           gammas: st.SearchStrategy[float] | None = None,
                           taus: st.SearchStrategy[float] | None = None,
                           min_policy: float = 0.02) -> ProblemCase:
    """Random bilevel problems on which an estimator's indirect term is really tested.

    ``S, A >= 2``, ``gamma`` in ``[0.3, 0.8]`` (default), ``tau`` in ``[0.3, 3]``
    (log-uniform), and the follower's soft-optimal policy has every probability
    ``>= min_policy`` (rejection-sampled), so the indirect term ``(1/tau) Cov_pi(Q_L,
    dQ)`` is not zero by construction and no estimate lives on rare events. The
    default objectives are leader returns with ``gamma_L = gamma``, ``< gamma`` and
    ``> gamma``.
    """
    S = draw(st.integers(2, max(2, max_states)))
    A = draw(st.integers(2, max(2, max_actions)))
    d = draw(st.integers(1, max_params))
    kind = draw(st.sampled_from(parameterizations))
    obj = draw(st.sampled_from(objectives))
    gamma = draw(gammas if gammas is not None else discounts(0.3, 0.8))
    tau = draw(taus if taus is not None else temperatures(0.3, 3.0))
    problem, x = random_problem(S, A, d, seed=draw(seeds), gamma=gamma, tau=tau,
                                parameterize=kind, objective=obj)
    policy = problem.follower_state(x).solution.policy
    assume(float(policy.min()) >= min_policy)
    return ProblemCase(problem=problem, x=x, parameterize=kind, objective=obj)


@dataclass(frozen=True)
class GameCase:
    """A drawn two-player Markov game and a leader parameter ``x`` (logits ``[S * AL]``)."""

    game: MarkovGame
    x: np.ndarray


@st.composite
def markov_games(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 3,
                 observes: tuple[str, ...] = (OBSERVES_STATE, OBSERVES_STATE_AND_LEADER_ACTION),
                 gammas: st.SearchStrategy[float] | None = None,
                 leader_gammas: st.SearchStrategy[float | None] | None = None,
                 taus: st.SearchStrategy[float] | None = None) -> GameCase:
    """Random Markov games: ``S, AL, AF`` in ``[min_size, max_size]``, dense Dirichlet
    transitions, ``N(0, 1)`` rewards that depend on the leader's action (so ``V_L``
    does), the leader's discount sometimes different from the follower's, and
    leader logits ``x ~ N(0, 1)``."""
    rng = np.random.default_rng(draw(seeds))
    S, AL, AF = (draw(st.integers(min_size, max_size)) for _ in range(3))
    game = MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                      rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                      rng.dirichlet(np.ones(S)),
                      draw(gammas if gammas is not None else discounts(0.3, 0.8)),
                      draw(taus if taus is not None else temperatures(0.3, 2.0)),
                      observes=draw(st.sampled_from(observes)),
                      leader_gamma=draw(leader_gammas if leader_gammas is not None
                                        else st.sampled_from([None, 0.5, 0.85])))
    return GameCase(game=game, x=rng.normal(size=game.n_params))


#: The problem classes of the convergence checks (``tests/test_convergence.py`` and
#: ``verification/convergence_power.py``): each estimator is checked on the widest
#: class it applies to, each mutant on the class where its bug is visible.
CONVERGENCE_CLASSES: dict[str, st.SearchStrategy] = {
    "leader-returns": nondegenerate_problems(),
    "gamma_L != gamma": nondegenerate_problems(
        objectives=("leader_return_own_gamma", "leader_return_far_sighted")),
    "gamma_L - gamma >= 0.2": nondegenerate_problems(
        objectives=("leader_return_far_sighted",), gammas=discounts(0.3, 0.6)),
    "general f (+ returns)": nondegenerate_problems(objectives=(*LEADER_RETURNS, "quadratic")),
    "quadratic f": nondegenerate_problems(objectives=("quadratic",)),
    "d <= 2": nondegenerate_problems(max_params=2),
    "tau <= 1": nondegenerate_problems(taus=temperatures(0.3, 1.0)),
    "tau <= 0.6": nondegenerate_problems(taus=temperatures(0.3, 0.6)),
    "gamma_L - gamma >= 0.2, tau <= 1": nondegenerate_problems(
        objectives=("leader_return_far_sighted",), gammas=discounts(0.3, 0.6),
        taus=temperatures(0.3, 1.0)),
    "d = 1, tau <= 1": nondegenerate_problems(max_params=1, taus=temperatures(0.3, 1.0)),
    "reward-parameterised, d = 1, tau <= 0.5": nondegenerate_problems(
        max_params=1, parameterizations=("reward",), taus=temperatures(0.3, 0.5)),
    "gamma >= 0.6, tau <= 1": nondegenerate_problems(gammas=discounts(0.6, 0.8),
                                                     taus=temperatures(0.3, 1.0)),
    "reward-parameterised, gamma_L - gamma >= 0.3, tau <= 1": nondegenerate_problems(
        parameterizations=("reward",), objectives=("leader_return_far_sighted",),
        gammas=discounts(0.3, 0.4), taus=temperatures(0.3, 1.0)),
    "games": markov_games(min_size=2),
    "games, follower sees (s, aL)": markov_games(
        min_size=2, observes=(OBSERVES_STATE_AND_LEADER_ACTION,)),
    "games, gamma_L != gamma": markov_games(min_size=2,
                                           leader_gammas=st.sampled_from([0.5, 0.85])),
    "games, tau <= 0.6": markov_games(min_size=2, taus=temperatures(0.3, 0.6)),
}


def convergence_class(estimator: str) -> str:
    """The class of :data:`CONVERGENCE_CLASSES` a correct estimator is checked on."""
    if estimator == "zeroth-order":
        return "d <= 2"
    return "general f (+ returns)" if estimator.startswith("sobirl") else "leader-returns"


#: The class on which each mutant's bug is visible (default: "tau <= 1", a follower
#: responsive enough that the indirect term, which the bugs corrupt, is not lost in
#: the noise; ``tau-not-inverse`` is invisible at tau = 1 by construction).
MUTANT_CLASSES: dict[str, str] = {
    "tau-not-inverse": "tau <= 0.6",
    "grad-r-for-dQ": "gamma >= 0.6, tau <= 1",
    "leader-gamma-swap": "gamma_L != gamma",
    "mc-critic-follower-gamma": "reward-parameterised, gamma_L - gamma >= 0.3, tau <= 1",
    "td-critic-follower-gamma": "reward-parameterised, gamma_L - gamma >= 0.3, tau <= 1",
    "mc-dq-leader-gamma": "reward-parameterised, gamma_L - gamma >= 0.3, tau <= 1",
    "sobirl-no-centring": "quadratic f",
    "zeroth-order-no-factor-2": "reward-parameterised, d = 1, tau <= 0.5",
    "game-no-initial-term": "games, follower sees (s, aL)",
    "game-sign-flip": "games",
    "game-tau-not-inverse": "games, tau <= 0.6",
    "game-leader-gamma-swap": "games, gamma_L != gamma",
    "game-wrong-discount-power": "games",
    "game-initial-follower-value": "games, follower sees (s, aL)",
}


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
