"""The BC-HG authors' LQR-game metric (the undiscounted 100-step leader return) and the
protocol pieces of ``exact-bilevel reproduce lqr-game`` (random-leader warm-up,
``actor_update_steps_n``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from exact_bilevel import lqr
from exact_bilevel.experiments.reproduce._lqr import leader_ascent
from exact_bilevel.experiments.reproduce.lqr_game import RANDOM_LEADER, warmup_iterations
from exact_bilevel.lqr import tasks
from exact_bilevel.lqr.riccati import solve_soft_lqr
from exact_bilevel.lqr.sampling import leader_reward, rollout

K_BEST = np.array([-9.9615, -10.0])
#: Two-sided false-alarm rate of one |z| > Z_CRIT check (Gaussian z).
Z_CRIT = 4.0


def _propagated_return(problem, x, discount: float = 1.0) -> float:
    """Second route: the closed loop written out from the raw matrices and the follower's
    gain (``a = K s + e_L``, ``u = -G (A s + C a) + e_u``), moments propagated step by step,
    the bump's expectation by 2-D Gauss-Hermite quadrature (not the closed form)."""
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst)
    A, B, C, K, SL = inst.A, inst.B, inst.C, inst.K_L, inst.Sigma_L
    G, Su = sol.G, sol.Sigma_u
    # joint noise (e_L, e_u) enters s' = M s + E [e_L; e_u]
    M = A + C @ K - B @ G @ (A + C @ K)
    E = np.hstack([C - B @ G @ C, B])
    Snoise = np.block([[SL, np.zeros((1, 1))], [np.zeros((1, 1)), Su]])
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)   # probabilists'; 40 nodes: 2e-6 off
    weights = weights / weights.sum()
    X1, X2 = np.meshgrid(nodes, nodes, indexing="ij")
    Wq = np.outer(weights, weights).ravel()
    Z = np.stack([X1.ravel(), X2.ravel()], axis=1)
    lr = problem.leader
    mu, Sig = problem.mu0.copy(), problem.Sigma0.copy()
    total = 0.0
    for t in range(problem.horizon):
        w, V = np.linalg.eigh(0.5 * (Sig + Sig.T))
        root = V * np.sqrt(np.clip(w, 0.0, None))
        pts = mu + Z @ root.T
        d = pts - lr.bump_center
        vals = lr.bump_weight * np.exp(-0.5 * np.einsum("ki,ij,kj->k", d, lr.bump_precision, d))
        total += discount ** t * float(Wq @ vals)
        mu = M @ mu
        Sig = M @ Sig @ M.T + E @ Snoise @ E.T
    return total


def test_undiscounted_return_reproduces_the_authors_values():
    """EXPERIMENTS.md: K = 0: 0.01495 undiscounted vs 0.00942 discounted; K = [-9.9615, -10]:
    18.360 vs 11.309 (tolerance: half a unit of the last quoted digit)."""
    problem, _ = tasks.lqr_game()
    assert abs(lqr.undiscounted_return(problem, np.zeros(2)) - 0.01495) <= 5e-6
    assert abs(lqr.value(problem, np.zeros(2)) - 0.00942) <= 5e-6
    assert abs(lqr.undiscounted_return(problem, K_BEST) - 18.360) <= 5e-4
    assert abs(lqr.value(problem, K_BEST) - 11.309) <= 5e-4


@pytest.mark.parametrize("x", [np.zeros(2), np.array([-0.4, 0.3]), K_BEST])
def test_undiscounted_return_matches_brute_force_propagation_and_quadrature(x):
    problem, _ = tasks.lqr_game()
    J = lqr.undiscounted_return(problem, x)
    assert J == pytest.approx(_propagated_return(problem, x), rel=1e-9, abs=1e-14)
    # the same route with gamma_L reproduces F: the two routes agree on what they sum
    assert lqr.value(problem, x) == pytest.approx(
        _propagated_return(problem, x, problem.gamma_L), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("x", [np.zeros(2), K_BEST])
def test_undiscounted_return_matches_monte_carlo_and_rejects_the_discounted_value(x):
    """z-test of the mean sampled 100-step return at a fixed seed, |z| <= 4 (false alarm
    6e-5); power: the discounted F (EXPERIMENTS.md's confusion) fails the same check."""
    problem, _ = tasks.lqr_game()
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst)
    ro = rollout(problem, inst, sol, problem.z(x), 4000, np.random.default_rng(2603))
    G = ro.r.sum(axis=1)
    se = G.std(ddof=1) / np.sqrt(G.size)
    assert se > 0
    assert abs((G.mean() - lqr.undiscounted_return(problem, x)) / se) <= Z_CRIT
    assert abs((G.mean() - lqr.value(problem, x)) / se) > Z_CRIT


def test_undiscounted_return_rejects_an_infinite_horizon():
    problem, _ = tasks.lqr_game(horizon=None)
    with pytest.raises(ValueError, match="horizon"):
        lqr.undiscounted_return(problem, np.zeros(2))


def test_random_leader_behaviour_draws_state_independent_standard_normal_actions():
    """The warm-up's leader: a ~ N(0, 1) whatever K; the follower still observes a (its
    input follows the soft-optimal policy at K given the random a)."""
    problem, _ = tasks.lqr_game()
    x = np.array([-3.0, 2.0])
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst)
    ro = rollout(problem, inst, sol, problem.z(x), 200, np.random.default_rng(5),
                 leader_behaviour=RANDOM_LEADER)
    a = ro.a.ravel()
    assert abs(a.mean()) * np.sqrt(a.size) <= Z_CRIT                     # mean 0
    assert _variance_one(a)
    s, u = ro.s[:, :-1], ro.u
    resid = u + (s @ inst.A.T + ro.a @ inst.C.T) @ sol.G.T                # follower's noise
    assert abs(resid.mean()) * np.sqrt(resid.size) / np.sqrt(sol.Sigma_u[0, 0]) <= Z_CRIT
    assert np.allclose(ro.r, leader_reward(problem, s, u, problem.z(x)))
    # power: the on-policy leader's actions fail the same variance check
    on = rollout(problem, inst, sol, problem.z(x), 200, np.random.default_rng(5)).a.ravel()
    assert not _variance_one(on)


def _variance_one(a: np.ndarray) -> bool:
    """Two-sided chi-square test of variance 1 at false-alarm rate 2e-4."""
    chi = (a.size - 1) * a.var(ddof=1)
    return bool(min(scipy.special.chdtrc(a.size - 1, chi),
                    scipy.special.chdtr(a.size - 1, chi)) > 1e-4)


def test_bad_leader_behaviour_is_a_value_error_naming_the_field():
    problem, _ = tasks.lqr_game()
    inst = problem.instance(np.zeros(2))
    sol = solve_soft_lqr(inst)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="K_b"):
        rollout(problem, inst, sol, np.zeros(2), 2, rng, leader_behaviour=(np.zeros(2), np.eye(1)))
    with pytest.raises(ValueError, match="Sigma_b"):
        rollout(problem, inst, sol, np.zeros(2), 2, rng,
                leader_behaviour=(np.zeros((1, 2)), -np.eye(1)))
    with pytest.raises(ValueError, match="leader_behaviour"):
        lqr.estimators.estimate(problem, np.zeros(2), "bc-hg", 200, critic="exact",
                                leader_behaviour=RANDOM_LEADER)


def test_warmup_is_the_authors_first_eleven_batches():
    """``explorate_l = not total_env_steps > 4000`` before each 400-transition batch."""
    assert warmup_iterations(400) == 11
    assert [k for k in range(20) if not k * 400 > 4000] == list(range(warmup_iterations(400)))


def test_actor_steps_take_that_many_exact_adam_updates_per_iteration():
    problem, _ = tasks.lqr_game()
    x0 = np.array([0.3, -0.2])
    one = leader_ascent(problem, x0, steps=4, lr=0.1, method="exact", budget=400, seed=0,
                        optimizer="adam", actor_steps=1)
    two = leader_ascent(problem, x0, steps=2, lr=0.1, method="exact", budget=400, seed=0,
                        optimizer="adam", actor_steps=2)
    assert np.allclose(two[2], one[2][::2], rtol=0, atol=1e-13)          # x_2k of one step
    warm = leader_ascent(problem, x0, steps=2, lr=0.1, method="exact", budget=400, seed=0,
                         optimizer="adam", actor_steps=2, warmup=11,
                         warmup_behaviour=RANDOM_LEADER)
    assert np.array_equal(warm[2], two[2])                              # exact: no data
    with pytest.raises(ValueError, match="actor_steps"):
        leader_ascent(problem, x0, steps=1, lr=0.1, method="exact", budget=400, seed=0,
                      actor_steps=0)
