"""Estimates pinned to the values of the batched engine (stream rule ``cell-block/3``).

Speed work on the estimators must not change a single estimate: same streams, same
draws, same order of random calls. ``tests/estimator_pins.json`` holds, for every
estimator and critic on two problems (reward parameterisation with ``gamma_L = gamma``;
transitions and reward parameterised with the leader's own ``gamma_L``) at budgets 100
and 2000, two replicates of ``replicates(..., seed=11)`` (gradients and costs), and a
carried SARSA critic over three calls. History: first pinned by the unoptimised code
(commit f8df3bb, stream rule ``spawn-key/2``); regenerated when the replicates were
batched (issue 27: stream rule ``cell-block/3``, ``NUMERICS_VERSION`` 3; the new numbers
are statistically, not bitwise, equal to the old ones, as the streams changed), by the
batched code itself::

    PYTHONPATH=<checkout> python tests/test_estimator_pins.py > tests/estimator_pins.json

Tolerance: ``1e-12`` relative to the largest entry of each pinned gradient (the
vectorised sums may add in a different order; the draws are identical).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from exact_bilevel.estimators import ESTIMATORS, replicates
from exact_bilevel.estimators._common import leader_knowledge
from exact_bilevel.estimators.bchg import bchg
from exact_bilevel.estimators.critics import CarriedSarsaCritic
from exact_bilevel.estimators.hpgd import hpgd
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.experiments.examples import random_problem

PINS = pathlib.Path(__file__).resolve().parent / "estimator_pins.json"
PROBLEMS = {"reward": ("reward", "leader_return"),
            "both-own-gamma": ("both", "leader_return_own_gamma")}
BUDGETS = (100, 2000)
RTOL = 1e-12


def _problem(key: str):
    parameterize, objective = PROBLEMS[key]
    return random_problem(6, 3, 4, seed=3, gamma=0.9, parameterize=parameterize,
                          objective=objective)


def cases() -> list[tuple[str, str, str, int]]:
    return [(p, name, critic, b) for p in PROBLEMS for name, info in ESTIMATORS.items()
            for critic in info.critics for b in BUDGETS]


def compute(case: tuple[str, str, str, int]) -> dict:
    p, name, critic, budget = case
    problem, x = _problem(p)
    g, cost = replicates(problem, x, name, budget, 2, 11, critic)
    return {"gradient": g.tolist(), "cost": cost.tolist()}


def compute_sarsa(p: str, estimator: str) -> dict:
    """A carried SARSA table over three calls (the FourRooms reproduction's critic)."""
    problem, x = _problem(p)
    know = leader_knowledge(problem, x)
    table = CarriedSarsaCritic(problem.n_states, problem.n_actions, 0.5)
    fn = {"bc-hg": bchg, "hpgd": hpgd}[estimator]
    out = [fn(know, Sampler(know.state.mdp, np.random.default_rng(k)), 300, table).gradient
           for k in range(3)]
    return {"gradient": np.array(out).tolist(), "q": table.q.tolist()}


def _key(case) -> str:
    return "/".join(map(str, case))


def _close(got, want) -> None:
    got, want = np.asarray(got, float), np.asarray(want, float)
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) <= RTOL * scale, (got, want)


@pytest.fixture(scope="module")
def pins() -> dict:
    return json.loads(PINS.read_text())


@pytest.mark.parametrize("case", cases(), ids=_key)
def test_estimates_pinned(case, pins):
    want = pins[_key(case)]
    got = compute(case)
    assert got["cost"] == want["cost"]
    _close(got["gradient"], want["gradient"])


@pytest.mark.parametrize("p", sorted(PROBLEMS))
@pytest.mark.parametrize("estimator", ["bc-hg", "hpgd"])
def test_carried_sarsa_pinned(p, estimator, pins):
    want = pins[f"sarsa/{p}/{estimator}"]
    got = compute_sarsa(p, estimator)
    _close(got["gradient"], want["gradient"])
    _close(got["q"], want["q"])


if __name__ == "__main__":
    record = {_key(c): compute(c) for c in cases()}
    for p in PROBLEMS:
        for est in ("bc-hg", "hpgd"):
            record[f"sarsa/{p}/{est}"] = compute_sarsa(p, est)
    print(json.dumps(record, indent=0))
