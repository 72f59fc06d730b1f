"""Two-player Markov games: exact hypergradient == Richardson finite differences
(1e-7 relative) for both information structures; the BC-HG game estimator passes
the unbiasedness test (alpha = 1e-3) and the direct-only baseline is rejected."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exact_bilevel import games as mg
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.strategies import markov_games
from exact_bilevel.testing import assert_unbiased, unbiasedness_test


@st.composite
def games(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    S, AL, AF = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    obs = draw(st.sampled_from([mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION]))
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), draw(st.floats(0.0, 0.9)),
                         draw(st.floats(0.2, 2.0)), observes=obs,
                         leader_gamma=draw(st.sampled_from([None, 0.7])))
    return game, rng.normal(size=game.n_params)


@settings(max_examples=25)
@given(games())
def test_game_hypergradient_matches_finite_differences(case):
    game, x = case
    h = mg.hypergradient(game, x)
    assert h.value == pytest.approx(mg.value(game, x), rel=1e-12, abs=1e-12)
    fd = richardson_gradient(lambda z: mg.value(game, z), x).gradient
    scale = max(np.max(np.abs(fd)), np.max(np.abs(h.direct)), np.max(np.abs(h.indirect)), 1e-8)
    assert np.max(np.abs(h.gradient - fd)) <= 1e-7 * scale


def test_discrete_toy_structure():
    toy = mg.discrete_toy(R=2.0)
    assert toy.shape == (3, 2, 3) and toy.observes == mg.OBSERVES_STATE_AND_LEADER_ACTION
    problem = mg.follower_problem(toy, np.zeros(6))
    assert problem.n_states == 6 and problem.n_actions == 3
    fd = richardson_gradient(lambda z: mg.value(toy, z), np.full(6, 0.1)).gradient
    np.testing.assert_allclose(mg.hypergradient(toy, np.full(6, 0.1)).gradient, fd,
                               rtol=1e-7, atol=1e-9)
    # 150-step undiscounted leader return is at most 75 (the leader is paid every other step)
    assert 0 <= mg.finite_horizon_return(toy, np.zeros(6), 150) <= 75


@pytest.mark.parametrize("name", ["bc-hg", "bc-hg-baseline"])
def test_game_estimator_is_unbiased(name):
    toy = mg.discrete_toy()
    x = np.array([0.3, -0.2, 0.5, 0.1, -0.4, 0.2])
    exact = mg.hypergradient(toy, x).gradient
    X = np.array([mg.estimate(toy, x, name, 3000, np.random.default_rng([1, i])).gradient
                  for i in range(100)])
    assert_unbiased(X, exact, alpha=1e-3)


def test_direct_only_is_rejected():
    toy = mg.discrete_toy()
    x = np.array([0.3, -0.2, 0.5, 0.1, -0.4, 0.2])
    exact = mg.hypergradient(toy, x).gradient
    X = np.array([mg.estimate(toy, x, "direct-only", 3000, np.random.default_rng([1, i]))
                  .gradient for i in range(100)])
    assert unbiasedness_test(X, exact, 0.01).reject


@pytest.mark.parametrize("kwargs, match", [
    ({"observes": "telepathy"}, "observes = 'telepathy'"),
    ({"gamma": 1.0}, "gamma"),
])
def test_validation(kwargs, match):
    rng = np.random.default_rng(0)
    args = dict(transitions=rng.dirichlet(np.ones(2), size=(2, 2, 2)),
                follower_reward=np.zeros((2, 2, 2)), leader_reward=np.zeros((2, 2, 2)),
                initial=[0.5, 0.5], gamma=0.9, tau=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mg.MarkovGame(**args)


@settings(max_examples=20)
@given(markov_games(min_size=2, leader_gammas=st.sampled_from([0.5, 0.85])))
def test_game_hypergradient_matches_a_brute_force_joint_evaluation(case):
    """Independent of ``follower_problem``: soft VI on the game's own tables, the joint
    chain evaluated with the leader's own discount (here always != gamma), finite
    differences of that; checks the direct, indirect and initial-law terms together."""
    from exact_bilevel.crosscheck.game_bruteforce import game_value

    game, x = case.game, case.x

    def brute(z):
        return game_value(game.transitions, game.follower_reward, game.leader_reward,
                          game.initial, mg.leader_policy(game, z), game.gamma,
                          game.leader_gamma, game.tau, game.observes)

    h = mg.hypergradient(game, x)
    assert h.value == pytest.approx(brute(x), rel=1e-10, abs=1e-12)
    fd = richardson_gradient(brute, x).gradient
    scale = max(np.max(np.abs(fd)), 1e-8)
    assert np.max(np.abs(h.gradient - fd)) <= 1e-7 * scale


def test_brute_force_catches_an_ignored_leader_discount():
    """Power of the check above: the game's objective with the follower's discount in
    place of the leader's differs from the brute-force value at the leader's."""
    import dataclasses

    from exact_bilevel.crosscheck.game_bruteforce import game_value

    rng = np.random.default_rng(3)
    S, AL, AF = 3, 2, 2
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), 0.8, 0.5, leader_gamma=0.4)
    x = rng.normal(size=game.n_params)
    truth = game_value(game.transitions, game.follower_reward, game.leader_reward,
                       game.initial, mg.leader_policy(game, x), 0.8, 0.4, 0.5, game.observes)
    wrong = mg.value(dataclasses.replace(game, leader_gamma=None), x)
    assert mg.value(game, x) == pytest.approx(truth, rel=1e-10)
    assert abs(wrong - truth) > 1e-3


@pytest.mark.parametrize("R", [1, 2])
def test_authors_toy_follower_is_rejected(R, tmp_path):
    """The released DiscreteToy follower (log-sum-exp of the leader-averaged Q) is a
    wrong follower: its policy is not the soft best response, the objective it implies
    is off (R = 1: 0.363 vs 0.617 at the uniform leader), and `exact-bilevel check`
    rejects the gradient it implies (R = 2: opposite sign)."""
    import json

    from exact_bilevel.cli import main
    from exact_bilevel.crosscheck.game_bruteforce import follower_response
    from exact_bilevel.io import game_to_dict
    from exact_bilevel.mutants import FOLLOWER_MUTANTS

    policy_fn, value_fn = FOLLOWER_MUTANTS["authors-toy-follower"]
    game = mg.discrete_toy(R)
    x = np.zeros(game.n_params)
    right = follower_response(game.transitions, game.follower_reward,
                              mg.leader_policy(game, x), game.gamma, game.tau, game.observes)
    assert np.max(np.abs(policy_fn(game, x) - right)) > 1e-3
    assert abs(value_fn(game, x) - mg.value(game, x)) > 0.1
    wrong = richardson_gradient(lambda z: value_fn(game, z), x).gradient
    exact = mg.hypergradient(game, x).gradient
    assert np.max(np.abs(wrong - exact)) > 0.3 * np.max(np.abs(exact))
    (tmp_path / "game.json").write_text(json.dumps(game_to_dict(game, x)))
    (tmp_path / "est.json").write_text(json.dumps({"gradient": wrong.tolist()}))
    assert main(["check", str(tmp_path / "game.json"), "--estimate",
                 str(tmp_path / "est.json")]) == 1
    (tmp_path / "ok.json").write_text(json.dumps({"gradient": exact.tolist()}))
    assert main(["check", str(tmp_path / "game.json"), "--estimate",
                 str(tmp_path / "ok.json")]) == 0
