"""FiniteMDP validation and the built-in generators."""

import re

import numpy as np
import pytest

from exact_bilevel import FiniteMDP, GridWorld, four_rooms, gridworld, random_mdp
from exact_bilevel.core.generators import FOUR_ROOMS_MAP


def _good():
    P = np.full((3, 2, 3), 1 / 3)
    r = np.zeros((3, 2))
    return P, r


def test_valid_mdp_properties_and_read_only():
    P, r = _good()
    mdp = FiniteMDP(P, r, 0.9)
    assert (mdp.n_states, mdp.n_actions, mdp.gamma) == (3, 2, 0.9)
    np.testing.assert_allclose(mdp.initial, np.full(3, 1 / 3))
    with pytest.raises(ValueError):
        mdp.transitions[0, 0, 0] = 1.0
    P[0, 0, 0] = 5.0  # the MDP copied its input
    assert mdp.transitions[0, 0, 0] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("field", "mutate", "pattern"),
    [
        ("transitions", lambda P, r: (P[:, :, :2], r), r"transitions: shape must be \(S, A, S\)"),
        ("transitions", lambda P, r: (P[0], r), r"transitions: must have 3 dimensions"),
        ("transitions", lambda P, r: (np.where(np.arange(3) == 1, -0.1, P), r),
         r"transitions\[0, 0, 1\] = -0.1: probabilities must be >= 0"),
        ("transitions", lambda P, r: (P + 0.5 * (np.arange(2)[None, :, None] == 1)
                                      * (np.arange(3) == 0) * (np.arange(3) == 0)[:, None, None],
                                      r),
         r"transitions\[0, 1, :\]: sums to 1\.(5|49+8) but must sum to 1 \(tolerance 1e-10\)"),
        ("transitions", lambda P, r: (np.where(np.arange(3) == 2, np.nan, P), r),
         r"transitions\[0, 0, 2\] = nan: must be finite"),
        ("transitions", lambda P, r: (P.astype(str), r), r"transitions: must contain real numbers"),
        ("transitions", lambda P, r: (P.astype(complex), r), r"transitions: must be real"),
        ("transitions", lambda P, r: ([[[1.0]], [[1.0, 0.0]]], r), r"transitions: must be"),
        ("transitions", lambda P, r: (np.zeros((0, 2, 0)), r), r"at least one state"),
        ("reward", lambda P, r: (P, r[:, :1]), r"reward: axis 1 must have length 2"),
        ("reward", lambda P, r: (P, np.where(np.arange(2) == 1, np.inf, r)),
         r"reward\[0, 1\] = inf: must be finite"),
    ],
)
def test_validation_errors_name_field_index_and_rule(field, mutate, pattern):
    P, r = mutate(*_good())
    with pytest.raises(ValueError, match=pattern):
        FiniteMDP(P, r, 0.9)


@pytest.mark.parametrize(("gamma", "pattern"), [
    (1.0, r"gamma = 1.0: must satisfy 0 <= gamma < 1"),
    (-0.1, r"gamma = -0.1: must satisfy"),
    (float("nan"), r"gamma = nan: must be finite"),
    ("0.9", r"gamma: must be a real number, got str"),
    (True, r"gamma: must be a real number, got bool"),
])
def test_gamma_validation(gamma, pattern):
    P, r = _good()
    with pytest.raises(ValueError, match=pattern):
        FiniteMDP(P, r, gamma)


@pytest.mark.parametrize(("initial", "pattern"), [
    ([0.5, 0.5, 0.5], r"initial: sums to 1.5 but must sum to 1"),
    ([1.5, -0.5, 0.0], r"initial\[1\] = -0.5: probabilities must be >= 0"),
    ([1.0, 0.0], r"initial: axis 0 must have length 3"),
])
def test_initial_validation(initial, pattern):
    P, r = _good()
    with pytest.raises(ValueError, match=pattern):
        FiniteMDP(P, r, 0.5, initial)


def test_row_sum_tolerance_is_1e_10():
    P, r = _good()
    P2 = P.copy()
    P2[1, 1, 0] += 5e-11
    FiniteMDP(P2, r, 0.5)  # inside the tolerance
    P2[1, 1, 0] += 1e-10
    with pytest.raises(ValueError, match=re.escape("transitions[1, 1, :]")):
        FiniteMDP(P2, r, 0.5)


def test_random_mdp_is_reproducible_and_sparse():
    a = random_mdp(7, 3, seed=11, support=2)
    b = random_mdp(7, 3, seed=11, support=2)
    np.testing.assert_array_equal(a.transitions, b.transitions)
    np.testing.assert_array_equal(a.reward, b.reward)
    assert np.all((a.transitions > 0).sum(-1) <= 2)
    assert not np.array_equal(random_mdp(7, 3, seed=12).reward, a.reward)
    with pytest.raises(ValueError, match="support = 9"):
        random_mdp(7, 3, support=9)


def test_four_rooms_map():
    mdp, grid = four_rooms(gamma=0.99, random_action_prob=0.44)
    assert len(FOUR_ROOMS_MAP) == 13 and all(len(row) == 13 for row in FOUR_ROOMS_MAP)
    assert grid.n_states == 104 and mdp.n_states == 104 and mdp.n_actions == 4
    start, goal = grid.state((4, 1)), grid.state((1, 9))
    assert mdp.initial[start] == 1.0
    # goal absorbing, zero reward there; reward elsewhere = probability of entering the goal
    np.testing.assert_array_equal(mdp.transitions[goal, :, goal], 1.0)
    assert np.all(mdp.reward[goal] == 0)
    np.testing.assert_allclose(mdp.reward[grid.state((1, 8))],
                               mdp.transitions[grid.state((1, 8)), :, goal])
    # doorways exist: (3, 6), (6, 2), (7, 9), (10, 6)
    for cell in [(3, 6), (6, 2), (7, 9), (10, 6)]:
        grid.state(cell)
    with pytest.raises(ValueError, match=r"cell \(0, 0\): is a wall"):
        grid.state((0, 0))


def test_gridworld_moves_into_walls_stay_put():
    mdp, grid = gridworld(["xxx", "x x", "xxx"], goal=(1, 1))
    assert grid.n_states == 1
    np.testing.assert_array_equal(mdp.transitions, np.ones((1, 4, 1)))
    layout = GridWorld.from_map(["   "])
    P = layout.move_transitions(0.0)
    # right from cell 0 goes to cell 1; left from cell 0 stays
    assert P[0, 1, 1] == 1.0 and P[0, 3, 0] == 1.0
    P = layout.move_transitions(1.0)
    np.testing.assert_allclose(P[0, 0], P[0, 2])  # fully random: action irrelevant
