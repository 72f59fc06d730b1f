"""Every transition an estimator draws is billed, exactly, and the bill matches the budget.

Independent counters: environment steps are counted where they happen (every call
of ``FiniteMDP.sample_next``), episode starts where episodes are made (every batch
returned by ``Sampler._run``, plus direct calls of ``Sampler.reset``), without
reading the sampler's own counters. For every estimator (and the game estimators)
``transitions == steps + starts`` and ``resets == starts`` exactly; the cost
mutants of :data:`exact_bilevel.mutants.SAMPLER_MUTANTS` (chosen resets or
episode starts not billed) are caught by the same comparison. Over R = 200
replicates the mean bill is within 3 standard errors (plus the rounding to whole
episodes, at most one episode's expected cost) of the budget: a fixed-seed check
whose false-alarm rate is ~0.3% per estimator under normality of the mean bill.
"""

import numpy as np
import pytest

from exact_bilevel import games as mg
from exact_bilevel.core.mdp import FiniteMDP
from exact_bilevel.estimators import ESTIMATORS, leader_knowledge
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.mutants import SAMPLER_MUTANTS


class Counter:
    def __init__(self):
        self.steps = self.starts = self.depth = 0


@pytest.fixture
def counter(monkeypatch):
    c = Counter()
    sample_next, run, reset = FiniteMDP.sample_next, Sampler._run, Sampler.reset

    def counted_next(self, s, a, u):
        c.steps += int(np.size(s))
        return sample_next(self, s, a, u)

    def counted_run(self, *args, **kwargs):
        c.depth += 1
        try:
            ep = run(self, *args, **kwargs)
        finally:
            c.depth -= 1
        c.starts += int(ep.lengths.size)
        return ep

    def counted_reset(self, n):
        if c.depth == 0:
            c.starts += int(n)
        return reset(self, n)

    monkeypatch.setattr(FiniteMDP, "sample_next", counted_next)
    monkeypatch.setattr(Sampler, "_run", counted_run)
    monkeypatch.setattr(Sampler, "reset", counted_reset)
    return c


PROBLEM = random_problem(4, 3, 2, seed=3, gamma=0.7, parameterize="both",
                         objective="leader_return_far_sighted")


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_draw_is_billed_exactly(name, counter):
    problem, x = PROBLEM
    know = leader_knowledge(problem, x)
    info = ESTIMATORS[name]
    for critic in info.critics:
        before = (counter.steps, counter.starts)
        sampler = Sampler(know.state.mdp, np.random.default_rng(1))
        est = info.fn(know, sampler, 3000, critic)
        steps, starts = counter.steps - before[0], counter.starts - before[1]
        assert est.transitions == steps + starts, (name, critic)
        assert est.resets == starts, (name, critic)


@pytest.mark.parametrize("game_obs", [mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION])
@pytest.mark.parametrize("name", mg.GAME_ESTIMATORS)
def test_game_estimators_bill_exactly(name, game_obs, counter):
    rng = np.random.default_rng(2)
    S, AL, AF = 3, 2, 2
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), 0.7, 0.5, observes=game_obs)
    est = mg.estimate(game, rng.normal(size=game.n_params), name, 2000,
                      np.random.default_rng(0))
    assert est.transitions == counter.steps + counter.starts
    assert est.resets == counter.starts


@pytest.mark.parametrize("mutant", sorted(SAMPLER_MUTANTS))
def test_cost_mutants_are_caught(mutant, counter):
    """The same comparison rejects samplers that forget part of the bill (each mutant
    on an estimator that exercises its bug: resets to chosen states, episode starts)."""
    problem, x = PROBLEM
    know = leader_knowledge(problem, x)
    name = "sobirl" if mutant == "chosen-resets-uncounted" else "bc-hg"
    sampler = SAMPLER_MUTANTS[mutant](know.state.mdp, np.random.default_rng(1))
    est = ESTIMATORS[name].fn(know, sampler, 3000, ESTIMATORS[name].default_critic)
    assert sampler.transitions != counter.steps + counter.starts
    assert est.transitions != counter.steps + counter.starts


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_mean_bill_matches_the_budget(name):
    problem, x = PROBLEM
    know = leader_knowledge(problem, x)
    info = ESTIMATORS[name]
    budget, R = 3000, 200
    costs = np.array([info.fn(know, Sampler(know.state.mdp, np.random.default_rng([7, i])),
                              budget, info.default_critic).transitions for i in range(R)],
                     dtype=float)
    S, A = problem.n_states, problem.n_actions
    if name in ("model-based", "sobirl-simplified"):  # budget // (S A) draws per pair
        assert np.all(costs == budget // (S * A) * S * A)
        return
    episode = 1.0 + 1.0 / (1.0 - know.beta)  # expected cost of one episode
    rounding = episode * (2 if name == "hpgd-oracle" else 1)
    se = costs.std(ddof=1) / np.sqrt(R)
    assert abs(costs.mean() - budget) <= 3 * se + rounding, (costs.mean(), se)
