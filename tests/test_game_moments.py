"""Exact moments of one Markov-game estimate (``games/moments.py``).

* **Mean.** ``game_moments(...).mean == hypergradient(...).gradient`` for bc-hg and
  bc-hg-baseline, ``direct + initial_term`` for direct-only, to ``1e-10`` relative, both
  information structures, tabular and MLP leaders.
* **Two routes for a leader parameterisation.** The tabular moments at the logits mapped by
  ``J = dz/dtheta`` (``J^T m``, ``J^T C J``) equal the moments of the follower's problem
  parameterised by ``theta`` directly, to ``1e-10`` relative.
* **Simulation.** ``R = 20,000`` replicates of the public game estimator
  (:func:`exact_bilevel.games.estimate`, one vectorised pass over ``R`` rows of
  ``cell_uniforms``; row ``i`` equals the single estimate from ``block_rng(seed, i, B)``
  bit for bit, as checked) on a random 2 x 2 x 2 game: every mean entry (s.e. from the
  exact covariance) and every covariance entry ``k <= l`` (s.e. from the replicates'
  fourth moments, ``sd((X_k - xbar_k)(X_l - xbar_l)) / sqrt(R)``) within ``z* =
  Phi^{-1}(1 - alpha / (2 m))`` for ``m`` entries, ``alpha = 1e-3`` per case
  (Bonferroni); 7 cases, so a false alarm somewhere with probability ``<= 7e-3`` under
  the normal approximation (fixed seeds: the outcome is deterministic). **Power:** the
  same check rejects the covariance scaled by 1.2 in every case, and (follower observes
  ``(s, aL)``) the covariance without the initial-law part ``Cov_rho Y / n0``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from exact_bilevel import games as mg
from exact_bilevel.core.streams import block_rng, cell_uniforms
from exact_bilevel.estimators._common import leader_knowledge
from exact_bilevel.estimators.sampling import Uniforms, block_size
from exact_bilevel.games.moments import fresh_starts, initial_law_moments

OBS = (mg.OBSERVES_STATE, mg.OBSERVES_STATE_AND_LEADER_ACTION)
R = 20_000
ALPHA = 1e-3  # per case, Bonferroni over its entries
BUDGET = 40  # 4 episodes (and 3 fresh starts) at beta = 0.6; truncation <= 9e-5


def _game(observes: str, seed: int = 0, leader: object = None, S: int = 2, AL: int = 2,
          AF: int = 2) -> tuple[mg.MarkovGame, np.ndarray]:
    rng = np.random.default_rng(seed)
    game = mg.MarkovGame(rng.dirichlet(np.ones(S), size=(S, AL, AF)),
                         rng.normal(size=(S, AL, AF)), rng.normal(size=(S, AL, AF)),
                         rng.dirichlet(np.ones(S)), 0.5, 1.0, observes=observes,
                         leader_gamma=0.6, leader=leader)
    return game, rng.normal(size=game.n_params)


def _mlp_game(observes: str) -> tuple[mg.MarkovGame, np.ndarray]:
    leader = mg.MLPLeader(2, 2, hidden=(3,), activation="tanh")
    game, _ = _game(observes, seed=3, leader=leader)
    return game, np.random.default_rng(4).normal(size=leader.n_params)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _replicates(game: mg.MarkovGame, x: np.ndarray, estimator: str, budget: int, seed: int
                ) -> np.ndarray:
    """``R`` estimates ``[R, d]`` of the public estimator, one vectorised pass; replicate
    ``i`` is the single estimate from ``block_rng(seed, i, B)`` (checked for two rows)."""
    B = block_size(budget, game.n_params)
    X = mg.estimate(game, x, estimator, budget, Uniforms(cell_uniforms(seed, R, B))).gradient
    for i in (0, R - 1):
        one = mg.estimate(game, x, estimator, budget, block_rng(seed, i, B)).gradient
        assert np.array_equal(one, X[i])  # bit for bit (the pull-back too: row by row)
    return X


def _z(X: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z`` of the mean entries and of the covariance entries ``k <= l``."""
    n = X.shape[0]
    xbar = X.mean(axis=0)
    zm = (xbar - mean) / np.sqrt(np.diag(cov) / n)
    D = X - xbar
    Y = D[:, :, None] * D[:, None, :]
    iu = np.triu_indices(X.shape[1])
    zc = (np.cov(X.T, ddof=1) - cov)[iu] / (Y.std(axis=0, ddof=1)[iu] / np.sqrt(n))
    return zm, zc


def _threshold(d: int) -> float:
    return float(norm.isf(ALPHA / (2 * (d + d * (d + 1) // 2))))


@pytest.mark.parametrize("observes", OBS)
@pytest.mark.parametrize("mlp", [False, True])
def test_mean_is_the_hypergradient(observes, mlp):
    game, x = _mlp_game(observes) if mlp else _game(observes)
    h = mg.hypergradient(game, x)
    for e in mg.GAME_ESTIMATORS:
        exact = h.direct + h.initial_term if e == "direct-only" else h.gradient
        for budget in (None, BUDGET):
            assert _rel(mg.game_moments(game, x, e, budget).mean, exact) <= 1e-10, (e, budget)


@pytest.mark.parametrize("observes", OBS)
def test_pull_back_equals_the_route_through_the_policy(observes):
    game, x = _mlp_game(observes)
    for e in mg.GAME_ESTIMATORS:
        a = mg.game_moments(game, x, e, BUDGET)
        b = mg.game_moments_through_policy(game, x, e, BUDGET)
        assert a.covariance.shape == (game.n_params,) * 2
        assert _rel(a.mean, b.mean) <= 1e-10 and _rel(a.covariance, b.covariance) <= 1e-10
        assert a.episodes == b.episodes and a.expected_transitions == b.expected_transitions


def m_episodes(game: mg.MarkovGame, x: np.ndarray) -> int:
    return mg.game_moments(game, x, "bc-hg", BUDGET).episodes


def test_budget_composition():
    """At a budget: the problem-level moments at ``budget - n0`` plus ``Cov_rho Y / n0``;
    ``budget=None``: one episode and one fresh start."""
    game, x = _game(mg.OBSERVES_STATE_AND_LEADER_ACTION)
    problem = mg.follower_problem(game, x)
    know = leader_knowledge(problem, x)
    n0 = fresh_starts(game, know.beta, BUDGET, "bc-hg")
    assert n0 == 3 and m_episodes(game, x) == 4
    mean0, cov0 = initial_law_moments(game, x, know)
    np.testing.assert_allclose(mean0, mg.hypergradient(game, x).initial_term, rtol=1e-12,
                               atol=1e-14)
    from exact_bilevel.estimators import moments

    inner = moments(problem, x, "bc-hg", BUDGET - n0)
    m = mg.game_moments(game, x, "bc-hg", BUDGET)
    np.testing.assert_allclose(m.covariance, inner.covariance + cov0 / n0, rtol=1e-14)
    assert m.expected_transitions == inner.expected_transitions + n0
    one = mg.game_moments(game, x, "bc-hg")
    np.testing.assert_allclose(one.covariance, moments(problem, x, "bc-hg").covariance + cov0,
                               rtol=1e-14)
    assert one.per_episode and not m.per_episode


CASES = {f"{o}-{e}": (o, e, False) for o in OBS for e in mg.GAME_ESTIMATORS}
CASES["mlp"] = (mg.OBSERVES_STATE_AND_LEADER_ACTION, "bc-hg", True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_moments_match_replicates_and_reject_wrong_covariances(case):
    observes, e, mlp = CASES[case]
    game, x = _mlp_game(observes) if mlp else _game(observes)
    m = mg.game_moments(game, x, e, BUDGET)
    X = _replicates(game, x, e, BUDGET, seed=7 + sorted(CASES).index(case))
    zstar = _threshold(game.n_params)
    zm, zc = _z(X, m.mean, m.covariance)
    assert np.max(np.abs(zm)) < zstar and np.max(np.abs(zc)) < zstar, (zm, zc, zstar)
    assert np.max(np.abs(_z(X, m.mean, 1.2 * m.covariance)[1])) > zstar
    if observes == mg.OBSERVES_STATE_AND_LEADER_ACTION:
        problem = mg.follower_problem(game, x)
        know = leader_knowledge(problem, x)
        n0 = fresh_starts(game, know.beta, BUDGET, e)
        if mlp:  # the mutant in theta: J^T (C - Cov_rho Y / n0) J
            z = mg.leader_logits(game, x).reshape(-1)
            tab = mg.tabular(game)
            know = leader_knowledge(mg.follower_problem(tab, z), z)
            J = game.leader.logits_jacobian(x).reshape(z.size, -1)
            cov0 = J.T @ initial_law_moments(tab, z, know)[1] @ J
        else:
            cov0 = initial_law_moments(game, x, know)[1]
        assert np.max(np.abs(_z(X, m.mean, m.covariance - cov0 / n0)[1])) > zstar


def test_refusals():
    game, x = _game(mg.OBSERVES_STATE)
    with pytest.raises(ValueError, match="estimator"):
        mg.game_moments(game, x, "hpgd", BUDGET)
    with pytest.raises(ValueError, match="budget"):
        mg.game_moments(game, x, "bc-hg", 1)
    with pytest.raises(ValueError, match="x"):
        mg.game_moments(game, np.zeros(3), "bc-hg", BUDGET)


def test_check_uses_the_exact_covariance_for_game_files(tmp_path, capsys):
    """``exact-bilevel check`` on a Markov-game file: the exact covariance decides (the
    sample-covariance test is shown beside it), a correct estimator passes and the biased
    direct-only fails."""
    import json

    from exact_bilevel.cli import main
    from exact_bilevel.io import game_to_dict

    game, x = _game(mg.OBSERVES_STATE_AND_LEADER_ACTION)
    path, out = tmp_path / "g.json", tmp_path / "est.json"
    path.write_text(json.dumps(game_to_dict(game, x)))
    assert main(["estimate", str(path), "--estimator", "bc-hg", "--transitions", "400",
                 "--replicates", "300", "--quiet", "--output", str(out)]) == 0
    assert main(["check", str(path), "--estimate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test"] == "known-covariance" and "sample_covariance_test" in report
    assert report["covariance"] == "exact (moments of game bc-hg at budget 400)"
    # power: direct-only (biased by the indirect term, ~3% here) fails the same check
    assert main(["estimate", str(path), "--estimator", "direct-only", "--transitions", "400",
                 "--replicates", "300", "--quiet", "--output", str(out)]) == 0
    assert main(["check", str(path), "--estimate", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["test"] == "known-covariance" and report["p_value"] < 1e-6
    # a field the moments do not cover (an unknown estimator name): the sample test decides
    data = json.loads(out.read_text())
    out.write_text(json.dumps({**data, "estimator": "unknown"}))
    main(["check", str(path), "--estimate", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["test"] in ("hotelling", "bonferroni-t") and "covariance" not in report
