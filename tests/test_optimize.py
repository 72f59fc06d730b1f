"""Leader optimisation loop: ascent improves F, projections and clipping hold,
estimator-driven runs record their error against the exact hypergradient."""

import numpy as np
import pytest

from exact_bilevel import BilevelProblem, LeaderReturn, l2_penalty
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.experiments.optimize import estimator_gradient, inverse_sqrt, optimize


def _regularised(seed=2):
    p, _ = random_problem(5, 3, 2, seed=seed, objective="leader_return_x_reward")
    obj = LeaderReturn(p.objective.leader_reward, regularizer=l2_penalty(2.0))
    return BilevelProblem(p.follower_reward, p.transitions, obj, gamma=p.gamma, tau=p.tau,
                          initial=p.initial)


def test_exact_ascent_improves_and_reaches_a_stationary_point():
    p = _regularised()
    res = optimize(p, np.zeros(2), steps=200, step_size=0.1, clip_norm=1.0)
    assert res.value[-1] > res.value[0]
    # small steps: monotone up to rounding over the first iterations
    small = optimize(p, np.zeros(2), steps=20, step_size=0.05)
    assert np.all(np.diff(small.value) >= -1e-12)
    assert res.grad_norm[-1] < 1e-3 * res.grad_norm[0] or res.grad_norm[-1] < 1e-6
    assert res.x.shape == (201, 2) and np.isnan(res.estimate_error[-1])
    assert np.all(res.estimate_error[:-1] == 0) and np.all(res.transitions == 0)


def test_descent_minimises():
    p, x = random_problem(4, 3, 2, seed=5, objective="quadratic")
    res = optimize(p, x, steps=100, step_size=0.3, maximize=False)
    assert res.value[-1] < res.value[0]


def test_bounds_and_clipping():
    p, _ = random_problem(5, 3, 3, seed=2)
    res = optimize(p, np.zeros(3), steps=30, step_size=10.0, bounds=(-0.5, 0.5),
                   clip_norm=0.1)
    assert np.all(np.abs(res.x) <= 0.5)
    steps = np.linalg.norm(np.diff(res.x, axis=0), axis=1)
    assert np.all(steps <= 10.0 * 0.1 + 1e-12)


def test_estimator_runs_record_error_and_cost():
    p, _ = random_problem(5, 3, 2, seed=2)
    res = optimize(p, np.zeros(2), steps=5, step_size=inverse_sqrt(0.2),
                   gradient=estimator_gradient("bc-hg", 2000), seed=3)
    assert np.all(res.transitions[:-1] > 1000) and np.all(res.estimate_error[:-1] > 0)
    again = optimize(p, np.zeros(2), steps=5, step_size=inverse_sqrt(0.2),
                     gradient=estimator_gradient("bc-hg", 2000), seed=3)
    assert np.array_equal(res.x, again.x)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": -1}, "steps = -1"),
    ({"steps": 2, "clip_norm": 0.0}, "clip_norm = 0.0"),
    ({"steps": 2, "bounds": (1.0, -1.0)}, "lower bound exceeds upper bound"),
])
def test_validation(kwargs, match):
    p, _ = random_problem(3, 2, 2, seed=1)
    with pytest.raises(ValueError, match=match):
        optimize(p, np.zeros(2), step_size=0.1, **kwargs)


def test_adam_update_and_argument_rules():
    from exact_bilevel.experiments.optimize import adam

    p = _regularised()
    res = optimize(p, np.zeros(2), steps=150, update=adam(0.05))
    assert res.value[-1] > res.value[0] and res.grad_norm[-1] < 1e-2 * res.grad_norm[0]
    with pytest.raises(ValueError, match="give exactly one"):
        optimize(p, np.zeros(2), steps=1)
    with pytest.raises(ValueError, match="give exactly one"):
        optimize(p, np.zeros(2), steps=1, step_size=0.1, update=adam())
