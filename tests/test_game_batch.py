"""Batched replicates of the Markov-game estimators (``games.replicates``,
``games.estimate_replicates``) against the per-replicate path, bit for bit.

Replicate ``i`` reads its own generator (``replicate_rng(seed, i)``, rule
``spawn-key/2``) exactly as one call of ``games.estimate`` does: the batch must equal
``[estimate(..., replicate_rng(seed, i)) for i]`` with ``np.array_equal`` (gradients and
costs) for every estimator x information structure, for the tabular and the MLP leader,
across chunks, for the CLI's ``estimate`` on a game file and for the game mutant that
``validation.convergence.check_game`` batches. The uniforms are drawn only after the
memory checks (a refused call leaves the generators untouched), and bad input is a
``ValueError`` naming the field.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from exact_bilevel import games as mg
from exact_bilevel.cli import main
from exact_bilevel.core.streams import replicate_rng
from exact_bilevel.games import estimators as game_estimators
from exact_bilevel.io import game_to_dict
from exact_bilevel.mutants import GAME_MUTANTS
from exact_bilevel.validation import convergence

OBS = (mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION)


def _game(observes: str, mlp: bool) -> tuple[mg.MarkovGame, np.ndarray]:
    rng = np.random.default_rng(5)
    S, AL, AF = 3, 2, 2
    leader = mg.MLPLeader(S, AL, hidden=(4, 3), activation="tanh") if mlp else None
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), 0.8, 0.7, observes=observes,
                         leader_gamma=0.85, leader=leader)
    return game, rng.normal(size=game.n_params)


def _one_by_one(game, x, estimator, budget, R, seed, fn=mg.estimate):
    est = [fn(game, x, estimator, budget, replicate_rng(seed, i)) for i in range(R)]
    return (np.array([e.gradient for e in est]), np.array([e.transitions for e in est]))


@pytest.mark.parametrize("mlp", [False, True])
@pytest.mark.parametrize("observes", OBS)
@pytest.mark.parametrize("estimator", mg.GAME_ESTIMATORS)
def test_batch_equals_the_per_replicate_path_bit_for_bit(estimator, observes, mlp):
    game, x = _game(observes, mlp)
    for budget in (37, 300):
        X, C = mg.replicates(game, x, estimator, budget, 4, 9)
        Y, D = _one_by_one(game, x, estimator, budget, 4, 9)
        assert X.shape == (4, game.n_params) and X.dtype == np.float64
        assert np.array_equal(X, Y) and np.array_equal(C, D), (estimator, budget)
        assert np.all(C <= budget)


def test_chunks_and_own_generators_give_the_same_numbers(monkeypatch):
    """Chunks of one replicate each (tiny CHUNK_UNIFORMS) and a caller's own generators
    (the notebook's ``default_rng([7, i])``) read exactly what single calls read."""
    game, x = _game(mg.OBSERVES_STATE_AND_LEADER_ACTION, False)
    whole = mg.replicates(game, x, "bc-hg-baseline", 120, 5, 3)
    monkeypatch.setattr(game_estimators, "CHUNK_UNIFORMS", 1)
    steps = []
    parts = mg.replicates(game, x, "bc-hg-baseline", 120, 5, 3, progress=steps.append)
    assert steps == [1] * 5
    assert all(np.array_equal(a, b) for a, b in zip(whole, parts, strict=True))
    X, _ = mg.estimate_replicates(game, x, "bc-hg", 120,
                                  [np.random.default_rng([7, i]) for i in range(3)])
    Y = [mg.estimate(game, x, "bc-hg", 120, np.random.default_rng([7, i])).gradient
         for i in range(3)]
    assert np.array_equal(X, np.array(Y))


def test_discrete_toy_mlp_leader_bit_for_bit():
    """The authors' game and leader, as the reproduction runs them (budget 450)."""
    toy = mg.discrete_toy(2.0)
    S, AL, _ = toy.shape
    game = mg.MarkovGame(toy.transitions, toy.follower_reward, toy.leader_reward, toy.initial,
                         toy.gamma, toy.tau, toy.observes, toy.leader_gamma,
                         mg.MLPLeader(S, AL, hidden=(8, 8)))
    x = game.leader.xavier_uniform(np.random.default_rng(1))
    for e in ("bc-hg-baseline", "direct-only"):
        X, C = mg.replicates(game, x, e, 450, 3, 2)
        Y, D = _one_by_one(game, x, e, 450, 3, 2)
        assert np.array_equal(X, Y) and np.array_equal(C, D)


@pytest.mark.parametrize("observes", OBS)
def test_game_mutant_batched_by_check_game_equals_single_calls(observes):
    game, x = _game(observes, False)
    fn = GAME_MUTANTS["game-no-initial-term"]
    X, C = mg.estimate_replicates(game, x, "bc-hg", 200,
                                  [replicate_rng(4, i) for i in range(3)], fn=fn)
    Y, D = _one_by_one(game, x, "bc-hg", 200, 3, 4, fn=fn)
    assert np.array_equal(X, Y) and np.array_equal(C, D)
    # check_game batches it (vectorised) and agrees with the loop it replaced
    res = convergence.check_game(game, x, "bc-hg", seed=4, alpha=0.01, budget=200,
                                 replicates=30, fn=fn)
    loop = convergence.check_game(game, x, "bc-hg", seed=4, alpha=0.01, budget=200,
                                  replicates=30, fn=lambda *a: fn(*a))  # not marked
    assert res.statistic == loop.statistic and res.p_value == loop.p_value


@pytest.mark.parametrize("observes", OBS)
@pytest.mark.parametrize("name", sorted(GAME_MUTANTS))
def test_every_game_mutant_serves_a_block_of_uniforms(name, observes):
    """Each game mutant (tabular and MLP leaders, bc-hg and its baseline) gives, batched,
    the numbers of its single calls, bit for bit, within the budget."""
    fn = GAME_MUTANTS[name]
    for mlp in (False, True):
        game, x = _game(observes, mlp)
        for estimator in ("bc-hg", "bc-hg-baseline"):
            X, C = mg.estimate_replicates(game, x, estimator, 150,
                                          [replicate_rng(6, i) for i in range(3)], fn=fn)
            Y, D = _one_by_one(game, x, estimator, 150, 3, 6, fn=fn)
            assert np.array_equal(X, Y) and np.array_equal(C, D), (mlp, estimator)
            assert X.shape == (3, game.n_params) and np.all(C <= 150)
            label = fn(game, x, estimator, 150, replicate_rng(6, 0)).estimator
            # game-no-initial-term is the correct estimate (and says so) when there is no
            # initial-law term
            assert label == (f"game:{estimator}" if name == "game-no-initial-term"
                             and observes == mg.OBSERVES_STATE else name)
    with pytest.raises(ValueError, match="estimator = 'direct-only'"):
        fn(game, x, "direct-only", 150, replicate_rng(6, 0))


def test_cli_estimate_on_a_game_file_equals_single_calls(tmp_path):
    game, x = _game(mg.OBSERVES_STATE_AND_LEADER_ACTION, False)
    path, out = tmp_path / "g.json", tmp_path / "e.json"
    path.write_text(json.dumps(game_to_dict(game, x)))
    assert main(["estimate", str(path), "--estimator", "bc-hg", "--transitions", "150",
                 "--replicates", "4", "--seed", "12", "--quiet", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    Y, D = _one_by_one(game, x, "bc-hg", 150, 4, 12)
    assert np.array_equal(np.array(data["estimates"]), Y) and data["transitions"] == D.tolist()


def test_memory_is_checked_before_any_uniform_is_drawn(monkeypatch):
    game, x = _game(mg.OBSERVES_STATE, False)
    gens = [replicate_rng(0, i) for i in range(3)]
    before = [g.bit_generator.state for g in gens]
    B = mg.uniforms_per_replicate(game, 10_000)
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", str(8 * 3 * B - 1))
    with pytest.raises(ValueError, match=r"3 replicates x \d+ uniforms.*memory budget"):
        mg.estimate_replicates(game, x, "bc-hg", 10_000, gens)
    assert [g.bit_generator.state for g in gens] == before
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", "100")
    with pytest.raises(ValueError, match=r"estimates \[R, d\].*memory budget"):
        mg.replicates(game, x, "bc-hg", 100, 10**6, 0)


@pytest.mark.parametrize("call,match", [
    (lambda g, x: mg.replicates(g, x, "bc-hg", 100, 0, 0), "n_replicates = 0"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", 100, True, 0), "n_replicates = True"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", 100, 2.0, 0), "n_replicates = 2.0"),
    (lambda g, x: mg.replicates(g, x, "hpgd", 100, 2, 0), "estimator = 'hpgd'"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", 0, 2, 0), "budget = 0"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", -5, 2, 0), "budget = -5"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", True, 2, 0), "budget = True"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", 100, 2, -1), "seed = -1"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", 100, 2, 0, key=(2**32,)), r"key\[0\]"),
    (lambda g, x: mg.replicates(g, x, "bc-hg", 100, 2, 0, "td"), "critic = 'td'"),
    (lambda g, x: mg.replicates(g, x[:-1], "bc-hg", 100, 2, 0), "x"),
    (lambda g, x: mg.replicates(g, np.full_like(x, np.nan), "bc-hg", 100, 2, 0), "x"),
    (lambda g, x: mg.estimate_replicates(g, x, "bc-hg", 100, []), "at least one"),
    (lambda g, x: mg.estimate_replicates(g, x, "bc-hg", 100, [0, 1]),
     r"generators\[0\]: must be a numpy.random.Generator"),
    (lambda g, x: mg.estimate_replicates(g, x, "bc-hg", 100, [replicate_rng(0, 0)] * 2),
     r"generators\[1\]: is generators\[0\]"),
    (lambda g, x: mg.estimate_replicates(g, x, "bc-hg", 100, [replicate_rng(0, 0)], "td",
                                         fn=GAME_MUTANTS["game-no-initial-term"]),
     "critic = 'td'"),
])
def test_hostile_inputs_name_the_field(call, match):
    game, x = _game(mg.OBSERVES_STATE_AND_LEADER_ACTION, False)
    with pytest.raises(ValueError, match=match):
        call(game, x)
