"""The batched follower solver and the estimators that use it (issue 27).

* :func:`~exact_bilevel.core.batched_solve.solve_soft_batch` on random stacks of MDPs:
  every member's residual is within its tolerance and its values and policy equal
  :func:`~exact_bilevel.core.solve.solve_soft`'s (1e-12 relative for ``V``; for the policy
  the agreement bound below); a member's floats do not depend on the rest of the batch
  (bit for bit, per-member ``P``); a member that cannot converge raises naming its index
  and residual; hostile inputs raise ``ValueError`` naming the field.
* model-based (:func:`~exact_bilevel.core.batched_hypergradient.hypergradients_of_models`)
  and zeroth-order (:func:`~exact_bilevel.estimators.zeroth_order.perturbed_followers`,
  :func:`~exact_bilevel.estimators.zeroth_order.smoothed_gradient`) against the
  one-at-a-time route they replace, on random problems with ``tau`` in 1e-3..1e2,
  ``gamma`` up to 0.99, reward / transition / both parameterisations.

Agreement bound: ``max(1e-12, 64 eps kappa)`` relative, ``kappa = value_scale / tau``.
Two exact routes differ by the rounding of the fixed point ``V`` (``~eps value_scale``),
which the policy ``exp((Q - V) / tau)`` and the hypergradient amplify by ``1 / tau``: at
``tau = 1e-3``, ``gamma = 0.99`` (``kappa ~ 1e5``) the per-replicate path disagrees with
*itself* by the same amount (measured over 300 random empirical problems: ``solve_soft``'s
``"newton"`` against ``"newton-only"`` up to 1.9e-11 relative, batched against
per-replicate up to 1.9e-11; both <= 27 eps kappa; for ``kappa < 1e3`` both < 7e-13).
The bound is 1e-12 for ``kappa <= 70`` and ``64 eps kappa`` beyond (2x the worst seen).
"""

from __future__ import annotations

import numpy as np
import pytest

from exact_bilevel import ConvergenceError, FiniteMDP, NumericalError, solve_soft
from exact_bilevel.core import batched_solve as bs
from exact_bilevel.core.batched_hypergradient import hypergradients_of_models, objective_values
from exact_bilevel.core.parameterizations import AffineReward, CallableReward, FixedReward
from exact_bilevel.core.solve import value_scale
from exact_bilevel.estimators import model_based as mb
from exact_bilevel.estimators import replicates
from exact_bilevel.estimators import zeroth_order as zo
from exact_bilevel.estimators.critics import transition_frequencies
from exact_bilevel.experiments.examples import random_problem

EPS = float(np.finfo(float).eps)
TAUS = (1e-3, 1e-1, 1.0, 1e2)
GAMMAS = (0.5, 0.9, 0.99)


def agreement(kappa: np.ndarray | float) -> np.ndarray:
    """``max(1e-12, 64 eps kappa)`` (module docstring)."""
    return np.maximum(1e-12, 64 * EPS * np.asarray(kappa))


def _stack(seed: int, R: int = 6, S: int = 5, A: int = 3, shared: bool = False):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, 0.5), size=(1 if shared else R, S, A))
    P[:, 0, 0] = np.eye(S)[0]  # a deterministic row (absorbing pair)
    r = rng.normal(size=(R, S, A)) * rng.uniform(0.1, 3.0)
    return P, r


# -- the solver --------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("tau", TAUS)
def test_members_equal_solve_soft(tau, gamma, shared):
    P, r = _stack(int(tau * 1000) + int(gamma * 100), shared=shared)
    sol = bs.solve_soft_batch(P, r, gamma, tau)
    assert np.all(sol.residual <= sol.tolerance)
    for m in range(len(sol)):
        mdp = FiniteMDP(P[0 if shared else m], r[m], gamma)
        ref = solve_soft(mdp, tau)
        assert sol.tolerance[m] == pytest.approx(1e-12 * value_scale(mdp, tau), rel=1e-15)
        assert np.max(np.abs(sol.v[m] - ref.v)) <= 1e-12 * np.max(np.abs(ref.v))
        assert np.max(np.abs(sol.policy[m] - ref.policy)) <= agreement(
            value_scale(mdp, tau) / tau)
        # the member's own fields are consistent: Q from V, pi = softmax(Q / tau)
        q = r[m] + gamma * mdp.expect(sol.v[m])
        assert np.max(np.abs(sol.q[m] - q)) <= 1e-14 * np.max(np.abs(q)) + 1e-300
        lp = sol.log_policy[m]  # exp(log pi) = pi to the rounding of exp at |log pi|
        assert np.all(np.abs(np.exp(lp) - sol.policy[m])
                      <= 8 * EPS * (1 + np.abs(lp)) * sol.policy[m] + 1e-300)
        assert sol.member(m).residual == sol.residual[m]


def test_warm_start_from_a_nearby_solution_lands_on_the_same_values():
    P, r = _stack(7)
    cold = bs.solve_soft_batch(P, r, 0.9, 0.3)
    warm = bs.solve_soft_batch(P, r + 0.01, 0.9, 0.3, v0=cold.v, warm_start=0)
    ref = bs.solve_soft_batch(P, r + 0.01, 0.9, 0.3)
    assert np.max(np.abs(warm.v - ref.v)) <= 1e-12 * np.max(np.abs(ref.v))
    assert np.all(warm.iterations <= ref.iterations)


@pytest.mark.parametrize("tau", [1e-3, 1.0])
def test_a_member_alone_gives_the_same_floats(tau):
    """Per-member ``P``: bit for bit, whatever else is in the batch (members finish at
    different iterations and leave the stack)."""
    P, r = _stack(11, R=9)
    r[4] *= 30.0  # a member that needs more steps than the others
    sol = bs.solve_soft_batch(P, r, 0.95, tau)
    for m in (0, 4, 8):
        alone = bs.solve_soft_batch(P[m:m + 1], r[m:m + 1], 0.95, tau)
        for name in ("v", "q", "policy", "log_policy", "residual", "iterations"):
            assert np.array_equal(getattr(alone, name)[0], getattr(sol, name)[m]), name


def test_shared_transitions_equal_a_per_member_stack():
    P, r = _stack(12, R=7, shared=True)
    a = bs.solve_soft_batch(P, r, 0.9, 0.2)
    b = bs.solve_soft_batch(np.repeat(P, 7, axis=0), r, 0.9, 0.2)
    assert np.max(np.abs(a.v - b.v)) <= 1e-12 * np.max(np.abs(b.v))
    assert np.max(np.abs(a.policy - b.policy)) <= 1e-12


def test_boltzmann_batch_on_any_action_axis_gives_boltzmann_floats():
    """The batched Newton's stack-last ``q[S, A, n]`` (``axis=1``) and the member-first
    ``q[R, S, A]`` give each member :func:`~exact_bilevel.core.soft_bellman.boltzmann`'s
    floats, bit for bit (one member a row of ties, one with entries 700 apart)."""
    from exact_bilevel.core.soft_bellman import boltzmann

    rng = np.random.default_rng(4)
    q = rng.normal(size=(7, 5, 3)) * 4.0
    q[2, 1] = 0.3
    q[5, 0] = (0.0, 700.0, -700.0)
    for tau in (1e-3, 0.5, 30.0):
        first = bs.boltzmann_batch(q, tau)
        last = bs.boltzmann_batch(np.ascontiguousarray(q.transpose(1, 2, 0)), tau, axis=1)
        for m in range(len(q)):
            ref = boltzmann(q[m], tau)
            for name in ("v", "policy", "log_policy"):
                assert np.array_equal(getattr(first, name)[m], getattr(ref, name)), name
                assert np.array_equal(np.moveaxis(getattr(last, name), -1, 0)[m],
                                      getattr(ref, name)), name


def test_solve_dominant_stack_last_equals_solve_dominant_stack():
    """The solver's stack-last entry point gives :func:`~.linalg.solve_dominant_stack`'s
    floats (elimination and LAPACK sides of the switch), solving ``M x = b`` to 1e-12 of
    ``numpy.linalg.solve``."""
    from exact_bilevel.core.linalg import (
        ELIMINATION_STATES,
        solve_dominant_stack,
        solve_dominant_stack_last,
    )

    rng = np.random.default_rng(12)
    for S, k in ((1, 1), (10, 1), (10, 3), (ELIMINATION_STATES + 1, 2)):
        M = np.eye(S) - 0.9 * rng.dirichlet(np.ones(S), size=(30, S))
        b = rng.normal(size=(30, S, k))
        aug = np.concatenate([M, b], axis=2).transpose(1, 2, 0).copy()  # [S, S + k, R]
        x = solve_dominant_stack_last(aug).transpose(2, 0, 1)
        assert np.array_equal(x, solve_dominant_stack(M, b))
        assert np.allclose(x, np.linalg.solve(M, b), rtol=0, atol=1e-12 * np.abs(x).max())


def test_value_scales_leave_the_reward_alone():
    """``value_scales`` is :func:`~exact_bilevel.core.solve.value_scale` per member and
    never writes into its argument (a single member's transpose is a view)."""
    rng = np.random.default_rng(3)
    for R in (1, 5):
        r = rng.normal(size=(R, 4, 3)) - 2.0
        before = r.copy()
        got = bs.value_scales(r, 0.9, 0.5)
        assert np.array_equal(r, before)
        for m in range(R):
            mdp = FiniteMDP(np.full((4, 3, 4), 0.25), r[m], 0.9)
            assert got[m] == value_scale(mdp, 0.5)


def test_a_member_that_cannot_converge_is_named():
    P, r = _stack(3, R=5)
    tol = 1e-12 * bs.value_scales(r, 0.9, 0.5)
    tol[3] = 1e-300  # below the rounding floor: member 3 cannot get there
    with pytest.raises(ConvergenceError, match=r"member 3 of 5") as info:
        bs.solve_soft_batch(P, r, 0.9, 0.5, tol=tol)
    err = info.value
    assert err.member == 3 and err.residual > err.tolerance == 1e-300
    assert "rounding floor" in str(err)


def test_iteration_limit_names_the_worst_member():
    """Every member fails (no Newton step allowed); the one named has the largest
    residual-to-tolerance ratio."""
    P, r = _stack(4, R=5)
    tol = 1e-12 * bs.value_scales(r, 0.9, 0.5)
    tol[2] /= 1e3
    with pytest.raises(ConvergenceError, match=r"member 2 of 5.*iteration limit") as info:
        bs.solve_soft_batch(P, r, 0.9, 0.5, tol=tol, max_iter=0, warm_start=0)
    res = np.abs(bs.boltzmann_batch(r, 0.5).v).max(axis=1)  # ||T(0) - 0||
    assert info.value.member == int(np.argmax(res / tol)) == 2
    assert info.value.residual == pytest.approx(res[2], rel=1e-15)


@pytest.mark.parametrize("change, match", [
    (lambda P, r: (P[:, :, :, :-1], r), r"transitions: shape must be \(4 or 1, 5, 3, 5\)"),
    (lambda P, r: (P[:2], r), r"transitions: shape must be \(4 or 1"),
    (lambda P, r: (P, r[:, :, :2]), r"transitions: shape must be \(4 or 1, 5, 2, 5\)"),
    (lambda P, r: (P, r[0]), r"reward: must have 3 dimensions"),
    (lambda P, r: (P, np.where(np.arange(3) == 1, np.nan, r)), r"reward\[0, 0, 1\] = nan"),
    (lambda P, r: (P + np.where(np.arange(5) == 3, -0.25, 0.0625), r),
     r"transitions\[0, 0, 0, 3\] = -0.25: probabilities must be >= 0"),
    (lambda P, r: (P * 1.01, r), r"transitions\[0, 0, 0, :\]: sums to"),
    (lambda P, r: (np.where(np.arange(5) == 4, np.inf, P), r),
     r"transitions\[0, 0, 0, 4\] = inf: must be finite"),
    (lambda P, r: (P.astype(complex), r), r"transitions: must be real"),
])
def test_hostile_inputs_raise_value_error(change, match):
    P, r = _stack(5, R=4)
    P, r = change(P, r)
    with pytest.raises(ValueError, match=match):
        bs.solve_soft_batch(P, r, 0.9, 0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(gamma=1.0), r"gamma = 1.0: must satisfy"),
    (dict(tau=0.0), r"tau = 0.0: must be > 0"),
    (dict(tol=-1.0), r"tol: must be a finite number > 0"),
    (dict(tol=np.ones(3)), r"tol: must be a finite number > 0 or 4 of them"),
    (dict(max_iter=-1), r"max_iter = -1: must be an integer >= 0"),
    (dict(warm_start=1.5), r"warm_start = 1.5"),
    (dict(v0=np.zeros(4)), r"v0: shape must be \(5,\) or \(4, 5\)"),
    (dict(v0=np.full(5, np.nan)), r"v0\[0\] = nan: must be finite"),
])
def test_hostile_options_raise_value_error(kwargs, match):
    P, r = _stack(6, R=4)
    args = dict(gamma=0.9, tau=0.5) | kwargs
    gamma, tau = args.pop("gamma"), args.pop("tau")
    with pytest.raises(ValueError, match=match):
        bs.solve_soft_batch(P, r, gamma, tau, **args)


def test_value_scale_overflow_names_the_member():
    P, r = _stack(6, R=4)
    r[2, 0, 0] = 1e300
    with pytest.raises(NumericalError, match="member 2: value scale"):
        bs.solve_soft_batch(P, r, 0.9, 0.5)


def test_memory_is_checked_before_allocating(monkeypatch):
    P, r = _stack(6, R=4)
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", "2000")
    with pytest.raises(ValueError, match=r"working copy of P \[R, S, A, S\]: shape "
                                         r"\(4, 5, 3, 5\).*over the memory budget"):
        bs.solve_soft_batch(P, r, 0.9, 0.5)


def test_applies_to_mdps_held_dense_only():
    assert bs.applies(10, 4) and bs.applies(399, 3)
    assert not bs.applies(400, 2)  # sparse LU territory (linalg.SPARSE_LU_MIN_STATES)
    assert not bs.applies(300, 8)  # held sparse when sparse enough (mdp.AUTO_SPARSE_ENTRIES)


# -- reward models at many points ----------------------------------------------------------

def test_reward_values_at_many_points_equal_value_row_by_row():
    import scipy.sparse

    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 3))
    base, feats = rng.normal(size=(4, 2)), rng.normal(size=(4, 2, 3))
    models = [AffineReward(base, feats),
              AffineReward(base, scipy.sparse.csr_matrix(feats.reshape(8, 3))),
              FixedReward(base, 3),
              CallableReward(lambda x: base * x[0], lambda x: np.zeros((4, 2, 3)), 4, 2, 3)]
    for model in models:
        got = model.values(X)
        want = np.stack([model.value(x) for x in X])
        assert got.shape == (7, 4, 2)
        assert np.max(np.abs(got - want)) <= 1e-15 * np.max(np.abs(want))


def test_affine_reward_values_sum_in_order_row_by_row():
    """``AffineReward.values``: each entry is ``base + (((x_0 phi_0 + x_1 phi_1) + ...)``
    (the sum over ``k`` in order, written out here), bit for bit, and a row alone or at any
    offset of a larger batch (strided input too) gets the same floats."""
    rng = np.random.default_rng(5)
    for S, A, d in ((4, 2, 1), (10, 4, 5), (3, 5, 17)):
        base, feats = rng.normal(size=(S, A)), rng.normal(size=(S, A, d))
        model = AffineReward(base, feats)
        X = rng.normal(size=(40, d)) * 10.0 ** rng.integers(-3, 3, size=(40, 1))
        acc = X[:, 0, None, None] * feats[None, :, :, 0]
        for k in range(1, d):
            acc = acc + X[:, k, None, None] * feats[None, :, :, k]
        got = model.values(X)
        assert np.array_equal(got, base + acc)
        for m in (0, 1, 7, 39):
            assert np.array_equal(model.values(X[m:m + 1])[0], got[m])
        assert np.array_equal(model.values(X[3:30:3]), got[3:30:3])
        Xf = np.asfortranarray(X)
        assert np.array_equal(model.values(Xf), got)


def test_transition_values_at_many_points_equal_value_row_by_row():
    from exact_bilevel.core.parameterizations import CallableTransitions, FixedTransitions

    problem, x = random_problem(4, 2, 3, seed=1, parameterize="transitions")
    X = x + np.random.default_rng(0).normal(size=(6, 3))
    P0 = problem.transitions.value(x)
    models = [problem.transitions, FixedTransitions(P0, 3),
              CallableTransitions(lambda x: P0, lambda x: np.zeros((4, 2, 4, 3)), 4, 2, 3)]
    for model in models:
        got = model.values(X)
        want = np.stack([model.value(p) for p in X])
        assert got.shape == (6, 4, 2, 4)
        assert np.max(np.abs(got - want)) <= 1e-15


# -- model-based -------------------------------------------------------------------------

def _empirical(problem, x, seed, R=3, draws=2):
    """``R`` empirical models from ``draws`` generative draws per pair."""
    rng = np.random.default_rng(seed)
    mdp = problem.follower_mdp(x)
    S, A = problem.n_states, problem.n_actions
    s = np.tile(np.repeat(np.arange(S), A * draws), R)
    a = np.tile(np.repeat(np.arange(A), draws), S * R)
    s1 = mdp.sample_next(s, a, rng.random(s.size)).reshape(R, -1)
    return transition_frequencies(s[:S * A * draws], a[:S * A * draws], s1, S, A)


SETTINGS = (("leader_return", 1e-3, 0.99), ("leader_return_own_gamma", 0.1, 0.9),
            ("leader_return_x_reward", 1.0, 0.99), ("leader_return", 1e2, 0.5),
            ("leader_return_own_gamma", 1e-3, 0.5), ("leader_return_x_reward", 1e-2, 0.99))
CASES = [(param, *setting) for param in ("reward", "transitions", "both")
         for setting in SETTINGS]


@pytest.mark.parametrize("param, obj, tau, gamma", CASES)
def test_model_based_batched_equals_one_at_a_time(param, obj, tau, gamma):
    problem, x = random_problem(5, 3, 3, seed=17, gamma=gamma, tau=tau, parameterize=param,
                                objective=obj)
    P_hat = _empirical(problem, x, seed=3)
    v0 = problem.follower_state(x).solution.v
    got = mb.empirical_hypergradients(problem, x, P_hat, v0=v0)
    want = mb.each_empirical_hypergradient(problem, x, P_hat)
    for m in range(len(P_hat)):
        kappa = value_scale(mb.empirical_model(problem, x, P_hat[m]).follower_mdp(x), tau) / tau
        err = np.max(np.abs(got[m] - want[m]))
        assert err <= agreement(kappa) * np.max(np.abs(want[m])), (m, err, kappa)


def test_model_based_values_and_terms_equal_hypergradient():
    from exact_bilevel import hypergradient

    problem, x = random_problem(4, 3, 2, seed=5, gamma=0.8, parameterize="both",
                                objective="leader_return_x_reward")
    P_hat = _empirical(problem, x, seed=1, draws=3)
    stack = hypergradients_of_models(problem, x, P_hat)
    for m in range(len(P_hat)):
        ref = hypergradient(mb.empirical_model(problem, x, P_hat[m]), x)
        assert stack.values[m] == pytest.approx(ref.value, rel=1e-12)
        for name in ("direct", "indirect", "gradient"):
            got = getattr(stack, name if name != "gradient" else "gradients")[m]
            assert np.allclose(got, getattr(ref, name), rtol=1e-12, atol=1e-12 * np.max(
                np.abs(ref.gradient))), name


def test_model_based_estimator_batched_equals_one_at_a_time(monkeypatch):
    """The estimator's output through both routes (the per-replicate one forced)."""
    problem, x = random_problem(5, 3, 3, seed=2, gamma=0.9, parameterize="both",
                                objective="leader_return_own_gamma")
    G, C = replicates(problem, x, "model-based", 300, 8, seed=4)
    monkeypatch.setattr(mb, "applies", lambda S, A: False)
    H, D = replicates(problem, x, "model-based", 300, 8, seed=4)
    assert np.array_equal(C, D)
    assert np.max(np.abs(G - H)) <= 1e-12 * np.max(np.abs(H))


def test_model_based_general_objective_and_solver_options_go_one_at_a_time():
    """Where the batched route does not apply (a general objective; problem-specific
    solver options) the per-replicate route runs, with the same answer."""
    problem, x = random_problem(4, 2, 2, seed=9, parameterize="both", objective="quadratic")
    P_hat = _empirical(problem, x, seed=2)
    assert np.array_equal(mb.empirical_hypergradients(problem, x, P_hat),
                          mb.each_empirical_hypergradient(problem, x, P_hat))
    problem2, _ = random_problem(4, 2, 2, seed=9, parameterize="both")
    problem2.solver_options = {"method": "newton-only"}
    assert np.array_equal(mb.empirical_hypergradients(problem2, x, P_hat),
                          mb.each_empirical_hypergradient(problem2, x, P_hat))


def test_batched_hypergradient_rejects_what_it_does_not_support():
    problem, x = random_problem(4, 2, 2, seed=9, objective="quadratic")
    P_hat = _empirical(problem, x, seed=2)
    with pytest.raises(ValueError, match="need a LeaderReturn objective"):
        hypergradients_of_models(problem, x, P_hat)
    problem, x = random_problem(4, 2, 2, seed=9)
    with pytest.raises(ValueError, match=r"P: shape must be \(R, 4, 2, 4\)"):
        hypergradients_of_models(problem, x, P_hat[:, :3])


# -- zeroth-order --------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["reward", "transitions", "both"])
@pytest.mark.parametrize("tau, gamma", [(1e-3, 0.99), (0.5, 0.9), (1e2, 0.5)])
def test_perturbed_followers_equal_follower_state(param, tau, gamma):
    problem, x = random_problem(5, 3, 3, seed=8, gamma=gamma, tau=tau, parameterize=param)
    rng = np.random.default_rng(1)
    points = x + 0.05 * rng.normal(size=(6, 3))
    v0 = problem.follower_state(x).solution.v
    mdps, pi = zo.perturbed_followers(problem, points, v0)
    ref_mdps, ref_pi = zo.each_perturbed_follower(problem, points)
    for m in range(len(points)):
        assert np.max(np.abs(mdps[m].transitions - ref_mdps[m].transitions)) <= 1e-15
        assert np.array_equal(mdps[m].initial, ref_mdps[m].initial)
        kappa = value_scale(ref_mdps[m], tau) / tau
        assert np.max(np.abs(pi[m] - ref_pi[m])) <= agreement(kappa)


@pytest.mark.parametrize("param", ["reward", "both"])
def test_zeroth_order_estimator_batched_equals_one_at_a_time(monkeypatch, param):
    """The sampled episodes read the policies only through inverse-CDF comparisons, so the
    two routes give the same estimates (measured bit for bit, for tau 1e-3..1e2 and every
    parameterisation; asserted to 1e-12: the leader rewards are summed in another order)."""
    problem, x = random_problem(5, 3, 3, seed=6, gamma=0.9, parameterize=param,
                                objective="leader_return_x_reward")
    G, C = replicates(problem, x, "zeroth-order", 400, 6, seed=2)
    monkeypatch.setattr(zo, "applies", lambda S, A: False)
    H, D = replicates(problem, x, "zeroth-order", 400, 6, seed=2)
    assert np.array_equal(C, D)
    assert np.max(np.abs(G - H)) <= 1e-12 * np.max(np.abs(H))


@pytest.mark.parametrize("param, objective", [("reward", "leader_return"),
                                              ("transitions", "leader_return_own_gamma"),
                                              ("both", "leader_return_x_reward"),
                                              ("both", "quadratic")])
def test_smoothed_gradient_batched_equals_point_by_point(monkeypatch, param, objective):
    problem, x = random_problem(4, 3, 2, seed=3, gamma=0.9, parameterize=param,
                                objective=objective)
    got = zo.smoothed_gradient(problem, x, order=5)
    monkeypatch.setattr(zo, "applies", lambda S, A: False)
    want = zo.smoothed_gradient(problem, x, order=5)
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_objective_values_equal_problem_value():
    problem, x = random_problem(4, 3, 2, seed=4, gamma=0.95, parameterize="both",
                                objective="leader_return_own_gamma")
    X = x + np.random.default_rng(0).normal(size=(5, 2))
    want = np.array([problem.value(p) for p in X])
    assert np.allclose(objective_values(problem, X), want, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"X: axis 1 must have length 2"):
        objective_values(problem, X[:, :1])
