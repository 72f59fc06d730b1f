"""Two-player Markov games: exact hypergradient == Richardson finite differences
(1e-7 relative) for both information structures; the BC-HG game estimator passes
the unbiasedness test (alpha = 1e-3) and the direct-only baseline is rejected."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exact_bilevel import games as mg
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
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
