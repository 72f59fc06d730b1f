"""Every transition an estimator draws is billed, exactly, and the bill matches the budget.

Independent counters: environment steps are counted where they happen (every call
of ``FiniteMDP.sample_next`` / ``FiniteMDP.next_state``, and every draw of the
generative-model sweep's ``draw_each_row`` on a dense ``P``), episode starts where
episodes are made (every batch returned by ``Sampler._run``, plus direct calls of
``Sampler.reset``), without
reading the sampler's own counters. For every estimator (and the game estimators)
``transitions == steps + starts`` and ``resets == starts`` exactly; the cost
mutants of :data:`exact_bilevel.mutants.SAMPLER_MUTANTS` (chosen resets or
episode starts not billed) are caught by the same comparison. Over R = 200
replicates the mean bill is within 3 standard errors (plus the rounding to whole
episodes, at most one episode's expected cost) of the budget: a fixed-seed check
whose false-alarm rate is ~0.3% per estimator under normality of the mean bill.
"""

import json

import numpy as np
import pytest

from exact_bilevel import games as mg
from exact_bilevel.core.mdp import FiniteMDP
from exact_bilevel.estimators import ESTIMATORS, leader_knowledge, sampling
from exact_bilevel.estimators._common import TRUNCATION_PROBABILITY, episodes_for_budget
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
    next_state = FiniteMDP.next_state
    each_row = sampling.draw_each_row

    def counted_next(self, s, a, u):
        c.steps += int(np.size(s))
        return sample_next(self, s, a, u)

    def counted_one(self, s, a, u):  # the scalar draw of a sampler's last few episodes
        c.steps += 1
        return next_state(self, s, a, u)

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

    def counted_each(cdf, u):  # the sweep's draws on a dense P: m per (s, a) row
        c.steps += int(np.size(u))
        return each_row(cdf, u)

    monkeypatch.setattr(sampling, "draw_each_row", counted_each)
    monkeypatch.setattr(FiniteMDP, "sample_next", counted_next)
    monkeypatch.setattr(FiniteMDP, "next_state", counted_one)
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


def _small_game(game_obs: object) -> tuple[np.random.Generator, mg.MarkovGame]:
    """A random 3-state, 2 x 2-action game and the generator that drew it (its next draws
    give the test's x)."""
    rng = np.random.default_rng(2)
    S, AL, AF = 3, 2, 2
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), 0.7, 0.5, observes=game_obs)
    return rng, game


@pytest.mark.parametrize("game_obs", [mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION])
@pytest.mark.parametrize("name", mg.GAME_ESTIMATORS)
def test_game_estimators_bill_exactly(name, game_obs, counter):
    rng, game = _small_game(game_obs)
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


def _geometric_sum_tail(n, beta, total):
    """``Pr(n + T_1 + ... + T_n > total)``, ``T_i ~ Geometric(1 - beta)`` on {1, 2, ...},
    by convolving the pmf n times (numpy only: independent of scipy's nbinom)."""
    k = np.arange(total + 1)
    pmf = np.where(k >= 1, (1 - beta) * beta ** np.maximum(k - 1, 0), 0.0)
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for _ in range(n):
        dist = np.convolve(dist, pmf)[:total + 1]
    return 1.0 - dist[:max(0, total - n + 1)].sum()  # cost n + sum T <= total


@pytest.mark.parametrize("budget", [2, 7, 40, 300, 3000])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.85, 0.95])
def test_the_plan_crosses_the_budget_with_probability_at_most_1e_4(budget, beta):
    """The rule of ``episodes_for_budget``, by an independent route: ``n`` episodes cross
    the budget with probability <= 1e-4 and ``n + 1`` would not (or ``n = 1``)."""
    n = episodes_for_budget(budget, beta)
    tail = _geometric_sum_tail(n, beta, budget)
    assert n == 1 or tail <= TRUNCATION_PROBABILITY * (1 + 1e-9)
    if 2 * (n + 1) <= budget:
        assert _geometric_sum_tail(n + 1, beta, budget) > TRUNCATION_PROBABILITY


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_mean_bill_matches_the_plan(name):
    """Never above the budget; on average the planned episodes' expected cost (their
    count, independently read from the resets, times ``1 + 1/(1 - beta)``: truncation
    has probability <= 1e-4), and not wastefully below the budget."""
    problem, x = PROBLEM
    know = leader_knowledge(problem, x)
    info = ESTIMATORS[name]
    budget, R = 3000, 200
    ests = [info.fn(know, Sampler(know.state.mdp, np.random.default_rng([7, i])), budget,
                    info.default_critic) for i in range(R)]
    costs = np.array([e.transitions for e in ests], dtype=float)
    assert costs.max() <= budget
    S, A = problem.n_states, problem.n_actions
    if name in ("model-based", "sobirl-simplified"):  # budget // (S A) draws per pair
        assert np.all(costs == budget // (S * A) * S * A)
        return
    episodes = np.array([e.resets for e in ests], dtype=float)
    planned = episodes * (1.0 + 1.0 / (1.0 - know.beta))  # expected cost of the plan
    se = costs.std(ddof=1) / np.sqrt(R)
    assert abs(costs.mean() - planned.mean()) <= 3 * se, (costs.mean(), planned.mean(), se)
    assert costs.mean() >= 0.8 * budget  # margin for the 1e-4 tail: ~15% at this budget


def _minimum(name, problem):
    """Smallest budget of each estimator, written out independently of the code."""
    S, A = problem.n_states, problem.n_actions
    return {"hpgd-oracle": 4,  # two batches: one on-policy, one reset episode
            "zeroth-order": 16,  # 2 * 4 directions evaluations, one episode each
            "model-based": S * A,  # one generative-model draw per pair
            "sobirl-simplified": S * A if problem.transitions.depends_on_x else 1,
            }.get(name, 2)  # one reset and one step


PROBLEMS = {
    "both, gL > g": PROBLEM,
    "reward, gL < g": random_problem(3, 2, 2, seed=5, gamma=0.9, parameterize="reward",
                                     objective="leader_return_own_gamma"),
    "transitions, beta 0.95": random_problem(5, 2, 1, seed=1, gamma=0.95,
                                             parameterize="transitions"),
}


@pytest.mark.parametrize("case", sorted(PROBLEMS))
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_the_bill_never_exceeds_the_budget(name, case, counter):
    """Budgets {minimum, minimum + 1, 7, 100, 1000}, every critic, 5 seeds each: the
    bill (checked against the independent counters) is <= the budget; below the
    minimum, a ValueError naming it, before anything is drawn."""
    problem, x = PROBLEMS[case]
    know = leader_knowledge(problem, x)
    info = ESTIMATORS[name]
    low = _minimum(name, problem)
    shown = (rf"S\*A = {low}" if name in ("model-based", "sobirl-simplified") and low > 1
             else f"{low}")
    for critic in info.critics:
        for budget in sorted({low, low + 1, 7, 100, 1000}):
            for seed in range(5):
                before = (counter.steps, counter.starts)
                sampler = Sampler(know.state.mdp, np.random.default_rng([seed, budget]))
                if budget < low:
                    with pytest.raises(ValueError,
                                       match=f"{name} needs at least {shown} transitions"):
                        info.fn(know, sampler, budget, critic)
                    assert (counter.steps, counter.starts) == before
                    continue
                est = info.fn(know, sampler, budget, critic)
                bill = counter.steps - before[0] + counter.starts - before[1]
                assert est.transitions == bill <= budget, (critic, budget, seed, bill)
                assert np.all(np.isfinite(est.gradient))
        for budget in {1, low - 1} - {0}:
            if budget < low:
                with pytest.raises(ValueError, match=f"budget = {budget} transitions: {name} "
                                                     f"needs at least {shown} transitions"):
                    info.fn(know, Sampler(know.state.mdp, np.random.default_rng(0)), budget,
                            critic)


def test_the_cap_truncates_in_episode_order():
    """A batch whose drawn lengths cross the cap: episodes before the crossing keep their
    lengths, the crossing one is cut, later ones keep one step, the total is the cap."""
    problem, x = PROBLEM
    know = leader_knowledge(problem, x)
    free = Sampler(know.state.mdp, np.random.default_rng(4)).episodes(know.pi, 30, 0.9)
    budget = int(free.lengths.sum()) // 2 + 30
    capped = Sampler(know.state.mdp, np.random.default_rng(4))
    with capped.capped(budget):
        ep = capped.episodes(know.pi, 30, 0.9)
    assert capped.transitions == budget and capped.truncated >= 1
    k = int(np.flatnonzero(ep.lengths != free.lengths)[0])
    assert np.array_equal(ep.lengths[:k], free.lengths[:k])
    assert 1 <= ep.lengths[k] < free.lengths[k] and np.all(ep.lengths[k + 1:] == 1)
    with capped.capped(5), pytest.raises(ValueError, match="3 episodes need at least 6"):
        capped.episodes(know.pi, 3, 0.9)
    with capped.capped(5), pytest.raises(ValueError, match="6 generative-model draws"):
        capped.step(np.zeros(6, int), np.zeros(6, int))
    assert capped.cap is None


@pytest.mark.parametrize("game_obs", [mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION])
@pytest.mark.parametrize("name", mg.GAME_ESTIMATORS)
def test_game_bills_never_exceed_the_budget(name, game_obs, counter):
    rng, game = _small_game(game_obs)
    x = rng.normal(size=game.n_params)
    low = 3 if game_obs == mg.OBSERVES_STATE_AND_LEADER_ACTION else 2  # + a fresh start
    for budget in sorted({low, low + 1, 7, 100, 1000}):
        for seed in range(5):
            before = counter.steps + counter.starts
            est = mg.estimate(game, x, name, budget, np.random.default_rng([seed, budget]))
            assert est.transitions == counter.steps + counter.starts - before <= budget
    with pytest.raises(ValueError, match=f"needs at least {low} transitions"):
        mg.estimate(game, x, name, low - 1, np.random.default_rng(0))


def test_cli_bills_at_most_the_budget_and_names_the_minimum(tmp_path, capsys):
    from exact_bilevel.cli import main
    from exact_bilevel.io import save_problem

    problem, x = PROBLEM
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    args = ["estimate", str(path), "--estimator", "bc-hg", "--replicates", "20"]
    assert main([*args, "--transitions", "1"]) == 2
    assert "bc-hg needs at least 2 transitions (one reset and one step)" in \
        capsys.readouterr().err
    for budget in (2, 3, 50):
        assert main([*args, "--transitions", str(budget)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert max(out["transitions"]) <= budget
