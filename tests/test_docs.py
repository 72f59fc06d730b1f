"""The documentation site says what the package does.

* Every example file of ``docs/examples/`` (shown on the formats page) loads, and the
  value the formats page quotes for ``problem.json`` is the package's.
* Every ```python block of ``docs/library.md`` (moved there from the README) runs as
  printed, in a fresh namespace.
* The direct-term formulas for Markov games in docs/math.md, section 7 (eq-game-direct-s,
  eq-game-direct-sa) equal ``games.exact.hypergradient``'s ``direct`` and
  ``initial_term`` (an independent formula: the leader's own policy gradient).
* Every math section a docstring or chapter header links to exists in docs/math.md.
"""

import json
import pathlib
import re

import numpy as np
import pytest

import exact_bilevel as eb
from exact_bilevel import io
from exact_bilevel.games.exact import hypergradient as game_hypergradient
from exact_bilevel.games.model import MarkovGame, follower_problem, leader_policy
from exact_bilevel.sweeps.spec import load_spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.mark.parametrize("name", ["problem", "problem_softmax", "game", "lqr"])
def test_example_files_load(name):
    path = DOCS / "examples" / f"{name}.json"
    assert json.loads(path.read_text())["format"].startswith("exact-bilevel")
    io.load_any(path)


def test_example_sweep_spec_loads():
    spec = load_spec(DOCS / "examples" / "sweep.json")
    assert len(spec.problems) == 5 and len(spec.estimators) == 3


def test_formats_page_quotes_the_example_value():
    problem, x = io.load_problem(DOCS / "examples" / "problem.json")
    hg = eb.hypergradient(problem, x)
    text = (DOCS / "formats.md").read_text()
    m = re.search(r'"value": ([\d.]+)\.\.\., "gradient": \[([\d.]+)\.\.\.\]', text)
    assert m
    assert f"{hg.value:.5f}".startswith(m.group(1)[:7])
    assert f"{hg.gradient[0]:.5f}".startswith(m.group(2)[:7])


def test_library_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "library.md").read_text(), re.S)
    assert len(blocks) >= 3
    for code in blocks:
        exec(code, {})


def _random_game(observes: str, leader_gamma: float | None, seed: int) -> MarkovGame:
    rng = np.random.default_rng(seed)
    S, AL, AF = 3, 2, 3
    return MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                      rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                      rng.dirichlet(np.ones(S)), 0.8, 0.7, observes=observes,
                      leader_gamma=leader_gamma)


@pytest.mark.parametrize("leader_gamma", [None, 0.6, 0.9])
def test_game_direct_term_follower_observes_state(leader_gamma):
    game = _random_game("state", leader_gamma, 0)
    x = np.random.default_rng(1).normal(size=game.n_params)
    hg = game_hypergradient(game, x)
    piL = leader_policy(game, x)                                     # [S, AL]
    problem = follower_problem(game, x)
    state = problem.follower_state(x)
    lv = problem.objective.leader_values(problem, state)
    Qt = game.leader_reward + lv.gamma * np.einsum("slfn,n->slf", game.transitions, lv.v)
    Q_lead = np.einsum("sf,slf->sl", state.solution.policy, Qt)    # Q_L^lead(s, aL)
    A_lead = Q_lead - (piL * Q_lead).sum(1, keepdims=True)
    direct = lv.occupancy[:, None] * piL * A_lead                  # eq-game-direct-s
    np.testing.assert_allclose(direct.ravel(), hg.direct, rtol=0, atol=1e-13)
    assert np.max(np.abs(hg.direct)) > 1e-3
    assert np.all(hg.initial_term == 0)


@pytest.mark.parametrize("leader_gamma", [None, 0.6, 0.9])
def test_game_direct_and_initial_terms_follower_observes_leader_action(leader_gamma):
    game = _random_game("state_and_leader_action", leader_gamma, 2)
    S, AL = game.initial.size, game.transitions.shape[1]
    x = np.random.default_rng(3).normal(size=game.n_params)
    hg = game_hypergradient(game, x)
    piL = leader_policy(game, x)
    problem = follower_problem(game, x)
    state = problem.follower_state(x)
    lv = problem.objective.leader_values(problem, state)
    V_L, occ = lv.v.reshape(S, AL), lv.occupancy.reshape(S, AL)
    piF = state.solution.policy.reshape(S, AL, -1)
    nu = lv.gamma * np.einsum("sl,slf,slfn->n", occ, piF, game.transitions)
    A_bar = V_L - (piL * V_L).sum(1, keepdims=True)
    np.testing.assert_allclose((nu[:, None] * piL * A_bar).ravel(), hg.direct,
                               rtol=0, atol=1e-13)                  # eq-game-direct-sa
    np.testing.assert_allclose((game.initial[:, None] * piL * A_bar).ravel(),
                               hg.initial_term, rtol=0, atol=1e-13)
    assert np.max(np.abs(hg.direct)) > 1e-3 and np.max(np.abs(hg.initial_term)) > 1e-3


def test_every_linked_math_section_exists():
    labels = set(re.findall(r"^\(([\w-]+)\)=$", (DOCS / "math.md").read_text(), re.M))
    linked = set()
    for path in [*(ROOT / "exact_bilevel").rglob("*.py"), DOCS / "conf.py"]:
        linked |= set(re.findall(r"<(math-[\w-]+|moments)>`", path.read_text()))
        linked |= set(re.findall(r'"(math-[\w-]+|moments)"', path.read_text()))
    assert linked and linked <= labels, linked - labels
