"""Leader parameterisations of a Markov game (the authors' MLP leader).

Checked, on small networks (ReLU, as the authors, and tanh):
* the MLP's logits Jacobian == complex step (1e-13 relative) and Richardson (1e-8);
* the exact hypergradient (the tabular one at the logits, pulled back through the
  network) == Richardson finite differences of F (1e-7 relative), == complex step of
  the brute-force game value through the network (1e-9 relative; independent of
  ``games``), == the route through ``dpiL/dtheta`` (1e-10);
* every game estimator's pulled-back estimate == the same estimator with the
  network's own scores on the same draws (1e-10);
* power: pulling back with a wrong Jacobian (tanh's derivative for a ReLU net) is
  rejected by the same finite-difference tolerance.
"""

import dataclasses

import numpy as np
import pytest

from exact_bilevel import games as mg
from exact_bilevel.crosscheck.complex_step import complex_step_gradient
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.crosscheck.game_bruteforce import game_value


def _softmax(z):
    e = np.exp(z - np.max(z.real, axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _net(activation, seed=0, S=3, AL=2, hidden=(4, 3)):
    """A small MLP leader and a point away from ReLU's kinks (|pre-activation| > 1e-2)."""
    leader = mg.MLPLeader(S, AL, hidden=hidden, activation=activation)
    x = np.random.default_rng(seed).normal(size=leader.n_params)
    pre = leader._forward(x)[1][:-1]
    assert min(np.min(np.abs(u)) for u in pre) > 1e-2
    return leader, x


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_logits_jacobian_by_complex_step_and_richardson(activation):
    leader, x = _net(activation)
    J = leader.logits_jacobian(x)
    assert J.shape == (3, 2, leader.n_params) == (3, 2, 39)
    for s in range(3):
        for a in range(2):
            cs = complex_step_gradient(lambda z, s=s, a=a: leader.logits(z)[s, a], x)
            fd = richardson_gradient(lambda z, s=s, a=a: leader.logits(z)[s, a], x).gradient
            assert _rel(J[s, a], cs) <= 1e-13
            assert _rel(J[s, a], fd) <= 1e-8


@pytest.mark.parametrize("activation, R", [("relu", 1.0), ("tanh", 2.0)])
def test_mlp_hypergradient_on_discrete_toy(activation, R):
    leader, x = _net(activation, seed=1)
    toy = mg.discrete_toy(R)
    game = dataclasses.replace(toy, leader=leader)
    h = mg.hypergradient(game, x)
    assert h.gradient.shape == (leader.n_params,)
    assert h.value == pytest.approx(mg.value(game, x), rel=1e-12)
    fd = richardson_gradient(lambda z: mg.value(game, z), x).gradient
    assert _rel(h.gradient, fd) <= 1e-7

    def brute(z):  # shares no code with games: soft VI on the tables, joint chain
        return game_value(toy.transitions, toy.follower_reward, toy.leader_reward,
                          toy.initial, _softmax(leader.logits(z)), toy.gamma, toy.gamma,
                          toy.tau, toy.observes)

    assert brute(x) == pytest.approx(h.value, rel=1e-10)
    assert _rel(h.gradient, complex_step_gradient(brute, x)) <= 1e-9
    through = mg.hypergradient_through_policy(game, x)
    scale = np.max(np.abs(h.gradient))  # relative to |grad F| (the initial term is ~0 here)
    for term in ("gradient", "direct", "indirect", "initial_term"):
        assert np.max(np.abs(getattr(h, term) - getattr(through, term))) <= 1e-10 * scale


def test_mlp_hypergradient_on_random_games():
    """Both information structures and a leader discount != gamma: chain rule ==
    Richardson finite differences == the route through dpiL/dtheta."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        S, AL, AF = 3, 3, 2
        observes = (mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION)[seed % 2]
        leader = mg.MLPLeader(S, AL, hidden=(3,), activation="tanh",
                              features=rng.normal(size=(S, 2)))
        game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                             rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                             rng.dirichlet(np.ones(S)), 0.8, 0.5, observes=observes,
                             leader_gamma=0.6, leader=leader)
        x = rng.normal(size=game.n_params)
        h = mg.hypergradient(game, x)
        fd = richardson_gradient(lambda z, game=game: mg.value(game, z), x).gradient
        assert _rel(h.gradient, fd) <= 1e-7
        assert _rel(h.gradient, mg.hypergradient_through_policy(game, x).gradient) <= 1e-10


def test_a_wrong_network_jacobian_is_rejected():
    """Power: tanh's derivative pulled back through a ReLU net's logits gradient is off
    by far more than the 1e-7 the checks above allow."""
    leader, x = _net("relu", seed=1)
    game = dataclasses.replace(mg.discrete_toy(1.0), leader=leader)
    hz = mg.hypergradient(mg.tabular(game), mg.leader_logits(game, x).reshape(-1))
    wrong = mg.pull_back(dataclasses.replace(leader, activation="tanh").logits_jacobian(x),
                         hz.gradient)
    fd = richardson_gradient(lambda z: mg.value(game, z), x).gradient
    assert _rel(wrong, fd) > 1e-2
    assert _rel(mg.pull_back(leader.logits_jacobian(x), hz.gradient), fd) <= 1e-7


@pytest.mark.parametrize("estimator", mg.GAME_ESTIMATORS)
def test_mlp_estimates_use_the_network_score_function(estimator):
    leader, x = _net("relu", seed=2)
    game = dataclasses.replace(mg.discrete_toy(1.0), leader=leader)
    for i in range(3):
        a = mg.estimate(game, x, estimator, 450, np.random.default_rng([7, i]))
        b = mg.estimate_through_policy(game, x, estimator, 450, np.random.default_rng([7, i]))
        assert (a.transitions, a.resets) == (b.transitions, b.resets) and a.transitions <= 450
        assert a.gradient.shape == (leader.n_params,)
        assert _rel(a.gradient, b.gradient) <= 1e-10


def test_xavier_uniform_initialisation():
    leader = mg.MLPLeader(3, 2)  # the authors' (64, 64) ReLU net on the one-hot state
    assert leader.n_params == 3 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    x = leader.xavier_uniform(np.random.default_rng(0))
    for (W, b), (i, o) in zip(leader.layers(x), [(3, 64), (64, 64), (64, 2)], strict=True):
        assert W.shape == (i, o) and np.all(b == 0)
        assert np.max(np.abs(W)) <= np.sqrt(6 / (i + o))
    pi = mg.leader_policy(dataclasses.replace(mg.discrete_toy(), leader=leader), x)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("make, match", [
    (lambda: mg.MLPLeader(3, 2, hidden=(4, 0)), r"hidden\[1\]: must be a positive integer"),
    (lambda: mg.MLPLeader(3, 2, activation="gelu"), "activation = 'gelu'"),
    (lambda: mg.MLPLeader(3, 2, features=np.ones((2, 2))), r"features: must have shape"),
    (lambda: dataclasses.replace(mg.discrete_toy(), leader=mg.MLPLeader(3, 3)),
     r"leader: maps to logits of shape \(3, 3\), the game needs \(S, AL\) = \(3, 2\)"),
    (lambda: dataclasses.replace(mg.discrete_toy(), leader="mlp"), "leader: must have"),
])
def test_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mlp_game_has_no_file_form():
    from exact_bilevel.io import game_to_dict

    leader = mg.MLPLeader(3, 2, hidden=(2,))
    game = dataclasses.replace(mg.discrete_toy(), leader=leader)
    with pytest.raises(ValueError, match="leader: a MLPLeader leader has no file form"):
        game_to_dict(game, np.zeros(leader.n_params))
