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
def test_reproduce_runs(name, tmp_path, monkeypatch):
    import exact_bilevel.experiments.reproduce as rep

    fn = EXPERIMENTS[name]
    monkeypatch.setitem(EXPERIMENTS, name, lambda out: fn(out, steps=3))
    assert main(["reproduce", name, "--out", str(tmp_path)]) == 0
    stem = {"fourrooms": "fourrooms", "sobirl": "sobirl", "discrete-toy": "discrete_toy"}[name]
    assert (tmp_path / f"reproduce_{stem}.md").read_text().startswith("# ")
    assert (tmp_path / f"reproduce_{stem}.png").stat().st_size > 1000
    assert rep.EXPERIMENTS[name] is not fn
