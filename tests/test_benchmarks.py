"""Built-in paper benchmarks: their exact hypergradients agree with Richardson finite
differences (1e-7 relative), the documented optimum holds, and each reproduction
runs end to end (few steps, into a temporary directory)."""

import numpy as np
import pytest

from exact_bilevel import hypergradient
from exact_bilevel.cli import main
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.experiments.paper_problems import four_rooms_design, sobirl_synthetic
from exact_bilevel.experiments.reproduce import EXPERIMENTS


def test_four_rooms_design_gradient():
    problem, x0, grid = four_rooms_design(0.005)
    assert np.all(x0 == 0)
    assert problem.n_states == 104 and problem.n_params == 105 and grid.n_states == 104
    x = 0.5 * np.random.default_rng(0).normal(size=105)
    g = hypergradient(problem, x).gradient
    fd = richardson_gradient(problem.value, x, h=1e-2).gradient
    assert np.max(np.abs(g - fd)) <= 1e-7 * np.max(np.abs(g))


def test_sobirl_synthetic_gradient_and_optimum():
    problem, x0 = sobirl_synthetic(0)
    assert problem.value(np.zeros(100)) == pytest.approx(1.0, abs=1e-14)  # S / (2A)
    g = hypergradient(problem, x0).gradient
    fd = richardson_gradient(problem.value, x0, h=1e-3).gradient
    assert np.max(np.abs(g - fd)) <= 1e-7 * np.max(np.abs(g))
    assert np.allclose(hypergradient(problem, np.zeros(100)).gradient, 0.0, atol=1e-14)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_reproduce_runs(name, tmp_path):
    """Every reproduction runs end to end at a tiny size, writes its table and plot,
    and refuses to overwrite them without --force."""
    args = ["reproduce", name, "--out", str(tmp_path), "--steps", "3", "--seeds", "2"]
    assert main(args) == 0
    stem = EXPERIMENTS[name].stem
    assert (tmp_path / f"reproduce_{stem}.md").read_text().startswith("# ")
    assert (tmp_path / f"reproduce_{stem}.png").stat().st_size > 1000
    assert main(args) == 2                      # exists: refused
    assert main([*args, "--force"]) == 0


def test_four_rooms_official_conventions():
    """The authors' F(0) (EXPERIMENTS.md): -0.740644 at tau = 0.001, -0.667413 at 0.005;
    the earlier reading stays available and differs."""
    for tau, f0 in ((0.001, -0.740644), (0.005, -0.667413)):
        problem, x0, _ = four_rooms_design(tau)
        assert problem.value(x0) == pytest.approx(f0, abs=5e-7)
    old, x0, _ = four_rooms_design(0.005, variant="absorbing-goal")
    assert abs(old.value(x0) - (-0.667413)) > 1e-3
    sim, x0, _ = four_rooms_design(0.005, kernel="simulator")
    P_sim = np.asarray(sim.follower_mdp(x0).transitions)
    P_mat = np.asarray(four_rooms_design(0.005)[0].follower_mdp(x0).transitions)
    assert np.any(np.isclose(P_sim, 1 - 0.44 + 0.11)) and np.any(np.isclose(P_sim, 0.11))
    assert np.any(np.isclose(P_mat, 0.56)) and np.any(np.isclose(P_mat, 0.44 / 3, atol=1e-3))
    with pytest.raises(ValueError, match="variant = 'x'"):
        four_rooms_design(0.005, variant="x")


def test_authors_msobirl_loop_at_the_exact_follower_is_the_exact_hypergradient():
    """The authors' M-SoBiRL estimate with the exact follower and the exact adjoint w
    equals the exact hypergradient (so its early transient is the inexact inner loop)."""
    problem, x0 = sobirl_synthetic(1)
    state = problem.follower_state(x0)
    pi = state.solution.policy
    P = problem.transitions.value(x0)
    fpi = pi  # df/dpi of 1/2|pi|^2
    S = problem.n_states
    A_T = np.eye(S) - problem.gamma * np.einsum("sa,sat->st", pi, P)
    b = (pi * fpi).sum(1) - problem.gamma * np.einsum("sat,sa->t", P, pi * fpi)
    w = np.linalg.solve(A_T.T, b)
    dr = problem.follower_reward.jacobian(x0)
    g = x0 + np.einsum("sa,sak->k", pi * (fpi - w[:, None]), dr) / problem.tau
    exact = hypergradient(problem, x0).gradient
    assert np.max(np.abs(g - exact)) <= 1e-10 * np.max(np.abs(exact))
