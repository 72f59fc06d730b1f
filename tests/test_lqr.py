"""The soft-LQR exact reference (exact_bilevel.lqr) against independent routes.

Tolerances (relative to max |grad|): complex step 1e-10, Richardson finite
differences 1e-6, mpmath at 50 digits 1e-12, scipy's DARE 1e-10 (on P). Statistical
checks use fixed seeds and alpha = 1e-3 each (the false-alarm rate of every check
taken alone); the mutants must be rejected by the same test at the same alpha.
"""

from __future__ import annotations

import json
import pathlib

import jsonschema
import numpy as np
import pytest

from exact_bilevel import lqr
from exact_bilevel.cli import main
from exact_bilevel.core.errors import ConvergenceError
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.io import load_any, save_lqr, schema
from exact_bilevel.lqr import estimators as est
from exact_bilevel.lqr import highprec, tasks
from exact_bilevel.lqr.objective import closed_loop, marginals
from exact_bilevel.lqr.riccati import _logdet_pd
from exact_bilevel.lqr.sampling import rollout
from exact_bilevel.lqr.sensitivities import follower_sensitivities, policy_score
from exact_bilevel.validation.acceptance import unbiasedness_test

ALPHA = 1e-3


def random_problem(seed: int, *, n: int = 3, m: int = 2, p: int = 1, horizon: int | None = 25,
                   leader_terms: bool = True) -> tuple[lqr.LQRProblem, np.ndarray]:
    """Every follower field depends on x; bump, hinge and parameter cost all on."""
    rng = np.random.default_rng(seed)
    d = 4
    jac = {"A": 0.1 * rng.normal(size=(n, n, d)), "B": 0.1 * rng.normal(size=(n, m, d))}
    if p:
        jac["C"] = 0.1 * rng.normal(size=(n, p, d))
        jac["K_L"] = 0.1 * rng.normal(size=(p, n, d))
    Qj = 0.05 * rng.normal(size=(n, n, d))
    Rj = 0.05 * rng.normal(size=(m, m, d))
    jac["Q"] = Qj + Qj.transpose(1, 0, 2)
    jac["R"] = Rj + Rj.transpose(1, 0, 2)
    extra = {}
    if leader_terms:
        extra = dict(bump_weight=2.0, bump_center=rng.normal(size=n) * 0.3,
                     bump_precision=np.diag(rng.uniform(0.5, 3.0, n)), hinge_weight=1.5,
                     hinge_index=n - 1, cost_weight=rng.uniform(0, 0.3, d))
    prob = lqr.make_problem(
        A=0.5 * rng.normal(size=(n, n)), B=rng.normal(size=(n, m)),
        C=rng.normal(size=(n, p)) if p else None,
        K_L=0.3 * rng.normal(size=(p, n)) if p else None,
        Sigma_L=0.2 * np.eye(p) if p else None, Q=2.0 * np.eye(n), R=np.eye(m),
        W=0.1 * np.eye(n), gamma=0.9, tau=0.5, jac=jac, d=d, link="sigmoid",
        Q_L=np.diag(rng.uniform(0, 1, n)), R_L=0.3 * np.eye(m), gamma_L=0.95, horizon=horizon,
        mu0=rng.normal(size=n), Sigma0=0.2 * np.eye(n), **extra)
    return prob, rng.normal(size=d)


CASES = {
    "random-0": lambda: random_problem(0),
    "random-1-no-leader-action": lambda: random_problem(1, p=0, m=1),
    "random-2-quadratic-leader": lambda: random_problem(2, leader_terms=False, horizon=None),
    "building": lambda: (tasks.building_thermal_control()[0], 0.7 * np.sin(np.arange(8))),
    "game-bump": lambda: (tasks.lqr_game()[0], np.array([-0.4, 0.3])),
    "game-hinge": lambda: (tasks.lqr_game("hinge")[0], np.array([0.5, -0.2])),
}


def _cs(f, x, h=1e-30):
    return np.array([np.imag(f(x + 1j * h * e)) / h for e in np.eye(x.size)])


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))


# --- the follower -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_riccati_matches_scipy_dare_and_certifies_residual(seed):
    prob, x = random_problem(seed, n=2 + seed % 3, m=1 + seed % 2, p=seed % 2)
    inst = prob.instance(x)
    sol = lqr.solve_soft_lqr(inst)
    assert sol.residual <= 1e-12
    P_ref = lqr.dare_reference(inst)
    assert _rel(sol.P, P_ref) < 1e-10
    # P does not depend on the temperature; Sigma_u scales with it
    inst2 = prob.instance(x).__class__(**{**inst.__dict__, "tau": 7.0 * inst.tau})
    sol2 = lqr.solve_soft_lqr(inst2)
    assert _rel(sol2.P, sol.P) < 1e-12
    assert _rel(sol2.Sigma_u, 7.0 * sol.Sigma_u) < 1e-12


def test_policy_is_the_boltzmann_policy_and_v_solves_the_soft_bellman_equation():
    """log pi(u|s,a) + Q_c(s,a,u)/tau is constant in u; and J(s) = s'Ps + v equals
    E_a[-tau log int exp(-Q_c/tau) du], computed by quadrature (trapezoid in u on a wide
    grid, Gauss-Hermite in a) — no Gaussian algebra shared with the solver."""
    prob, x = random_problem(3, n=2, m=1, p=1)
    inst = prob.instance(x)
    sol = lqr.solve_soft_lqr(inst)
    rng = np.random.default_rng(0)

    def Qc(s, a, u):
        y = inst.A @ s + inst.C @ a
        nx = y + inst.B @ u
        return (s @ inst.Q @ s + u @ inst.R @ u
                + inst.gamma * (nx @ sol.P @ nx + np.trace(sol.P @ inst.W) + sol.v))

    for _ in range(3):
        s, a = rng.normal(size=2), rng.normal(size=1)
        mean = -sol.G @ (inst.A @ s + inst.C @ a)
        Si = np.linalg.solve(sol.Sigma_u, np.eye(1))
        vals = []
        for u in rng.normal(size=(5, 1)) * 2:
            dlt = u - mean
            logpi = -0.5 * dlt @ Si @ dlt - 0.5 * _logdet_pd(2 * np.pi * sol.Sigma_u)
            vals.append(logpi + Qc(s, a, u) / inst.tau)
        assert np.ptp(vals) < 1e-10 * max(1.0, abs(vals[0]))
        # soft Bellman by quadrature
        nodes, weights = np.polynomial.hermite_e.hermegauss(40)
        sdL = np.sqrt(inst.Sigma_L[0, 0])
        J = 0.0
        for an, wa in zip(nodes, weights, strict=True):
            aa = inst.K_L @ s + sdL * an
            grid = np.linspace(-40, 40, 200001)
            q = np.array([Qc(s, aa, np.array([g])) for g in grid[::1000]])
            c0 = grid[::1000][np.argmin(q)]
            ug = c0 + np.linspace(-15, 15, 60001) * np.sqrt(sol.Sigma_u[0, 0])
            y = inst.A @ s + inst.C @ aa
            nx = y[None, :] + ug[:, None] * inst.B[:, 0][None, :]
            qc = (s @ inst.Q @ s + inst.R[0, 0] * ug**2 + inst.gamma * (
                np.einsum("ni,ij,nj->n", nx, sol.P, nx) + np.trace(sol.P @ inst.W) + sol.v))
            qmin = qc.min()
            integral = np.trapezoid(np.exp(-(qc - qmin) / inst.tau), ug)
            J += wa / np.sqrt(2 * np.pi) * (qmin - inst.tau * np.log(integral))
        assert abs(J - (s @ sol.P @ s + sol.v)) < 1e-9 * max(1.0, abs(J))


def test_unstabilisable_pair_is_a_clear_error():
    prob = lqr.make_problem(A=np.diag([2.0, 0.5]), B=[[0.0], [1.0]], Q=np.eye(2), R=[[1.0]],
                            gamma=0.9, tau=0.1)
    with pytest.raises(ValueError, match="not stabilisable"):
        lqr.solve_soft_lqr(prob.instance([]))


def test_undetectable_mode_is_a_clear_error():
    prob = lqr.make_problem(A=np.diag([2.0, 0.5]), B=np.eye(2), Q=np.diag([0.0, 1.0]),
                            R=np.eye(2), gamma=0.9, tau=0.1)
    with pytest.raises(ValueError, match="not detectable"):
        lqr.solve_soft_lqr(prob.instance([]))


def test_unreachable_tolerance_raises_with_the_residual():
    prob, x = random_problem(0)
    with pytest.raises(ConvergenceError) as info:
        lqr.solve_soft_lqr(prob.instance(x), tol=1e-30)
    assert 0 < info.value.residual < 1e-12


# --- the exact hypergradient against independent routes -----------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_hypergradient_complex_step_and_richardson(case):
    prob, x = CASES[case]()
    hg = lqr.hypergradient(prob, x)
    assert _rel(hg.direct + hg.indirect, hg.gradient) < 1e-15
    cs = _cs(lambda y: lqr.value(prob, y), x)
    assert _rel(hg.gradient, cs) < 1e-10
    fd = richardson_gradient(lambda y: lqr.value(prob, y), x, h=1e-3, levels=4)
    assert _rel(hg.gradient, fd.gradient) < 1e-6
    assert abs(lqr.value(prob, x) - hg.value) <= 1e-13 * max(1.0, abs(hg.value))


@pytest.mark.parametrize("case", ["random-0", "building", "game-bump", "game-hinge"])
def test_hypergradient_matches_mpmath(case):
    prob, x = CASES[case]()
    hg = lqr.hypergradient(prob, x)
    assert abs(float(highprec.value(prob, x)) - hg.value) <= 1e-12 * max(1.0, abs(hg.value))
    assert _rel(hg.gradient, highprec.gradient(prob, x)) < 1e-12


@pytest.mark.parametrize("case", ["random-0", "building", "game-bump"])
def test_direct_term_is_the_gradient_at_frozen_policy(case):
    """direct = d/dx F with (L_s, L_a, Sigma_u) held at their values at x0 (Richardson)."""
    prob, x0 = CASES[case]()
    hg = lqr.hypergradient(prob, x0)
    inst0 = prob.instance(x0)
    sol0 = hg.solution

    def frozen(y):
        inst = prob.instance(y)
        cl = closed_loop(inst, sol0.G @ inst0.A, sol0.G @ inst0.C, sol0.Sigma_u)
        return marginals(prob, cl, prob.z(y)).value

    fd = richardson_gradient(frozen, x0, h=1e-3, levels=4).gradient
    assert _rel(hg.direct, fd) < 1e-6 * max(1.0, np.abs(hg.gradient).max() / np.abs(fd).max())


def test_infinite_horizon_sums_to_the_rounding_floor():
    prob, x = random_problem(2, leader_terms=True, horizon=None)
    long = random_problem(2, leader_terms=True, horizon=3000)[0]
    hg, hl = lqr.hypergradient(prob, x), lqr.hypergradient(long, x)
    assert abs(hg.value - hl.value) <= 1e-13 * abs(hl.value)
    assert _rel(hg.gradient, hl.gradient) < 1e-12
    assert hg.trajectory.mu.shape[0] < 3000


def test_infinite_horizon_with_divergent_leader_return_is_an_error():
    prob = lqr.make_problem(A=[[1.3]], B=[[0.01]], Q=[[1e-6]], R=[[10.0]], gamma=0.5, tau=1.0,
                            Q_L=[[1.0]], gamma_L=0.99, horizon=None, mu0=[1.0])
    with pytest.raises(ValueError, match="diverges"):
        lqr.value(prob, [])


@pytest.mark.parametrize("seed", [2, 3])
def test_infinite_horizon_hinge_series_without_bump(seed):
    """horizon=None with a hinge and no bump: the O(n^2)-a-step series for mu_t[i],
    Sigma_t[i, i] and its adjoint, against a long horizon (full moment recursion) and
    complex step."""
    import dataclasses

    prob, x = random_problem(seed, horizon=None)
    prob = dataclasses.replace(prob, leader=dataclasses.replace(prob.leader, bump_weight=0.0))
    long = dataclasses.replace(prob, horizon=3000)
    hg, hl = lqr.hypergradient(prob, x), lqr.hypergradient(long, x)
    assert hg.trajectory.Sigma is None and 0 < hg.trajectory.mu.shape[0] < 3000
    assert abs(hg.value - hl.value) <= 1e-13 * abs(hl.value)
    assert _rel(hg.gradient, hl.gradient) < 1e-12
    assert _rel(hg.gradient, _cs(lambda y: lqr.value(prob, y), x)) < 1e-10


@pytest.mark.parametrize("horizon, budget", [(25, "8000"), (None, "40000")])
def test_checkpointed_reverse_sweep_equals_the_stored_one(monkeypatch, horizon, budget):
    """Past 1/8 of the memory budget the Sigma_t are not kept (with horizon=None the
    forward pass switches mid-way): the reverse sweep recomputes each chunk from its
    checkpoint and gives the same numbers."""
    from exact_bilevel.lqr import objective

    prob, x = random_problem(2, horizon=horizon)
    ref = lqr.hypergradient(prob, x)
    monkeypatch.setattr(objective, "_CHUNK_STEPS", 4)
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", budget)
    hg = lqr.hypergradient(prob, x, progress=True)
    assert hg.trajectory.Sigma is None and len(hg.trajectory.checkpoints) > 5
    assert abs(hg.value - ref.value) <= 1e-14 * abs(ref.value)
    assert _rel(hg.gradient, ref.gradient) < 1e-13


def test_long_horizon_is_refused_before_allocating(monkeypatch):
    prob, x = random_problem(0, horizon=10**6)
    monkeypatch.setenv("EXACT_BILEVEL_MAX_BYTES", str(10**6))
    with pytest.raises(ValueError, match="memory budget"):
        lqr.hypergradient(prob, x)


# --- sensitivities and the Gaussian policy score -------------------------------------------

def test_forward_sensitivities_and_policy_score_by_complex_step():
    prob, x = random_problem(0)
    inst = prob.instance(x)
    sol = lqr.solve_soft_lqr(inst)
    sens = follower_sensitivities(prob, x, inst, sol)
    dP = _cs(lambda y: lqr.solve_soft_lqr(prob.instance(y)).P, x)
    dv = _cs(lambda y: lqr.solve_soft_lqr(prob.instance(y)).v, x)
    assert _rel(np.moveaxis(sens.dP, -1, 0), dP) < 1e-10
    assert _rel(sens.dv, dv) < 1e-10
    rng = np.random.default_rng(1)
    s, a, u = rng.normal(size=(6, 3)), rng.normal(size=(6, 1)), rng.normal(size=(6, 2))

    def logpi(y):
        ii = prob.instance(y)
        so = lqr.solve_soft_lqr(ii)
        dlt = u + (s @ ii.A.T + a @ ii.C.T) @ so.G.T
        Si = np.linalg.solve(so.Sigma_u, np.eye(2))
        return -0.5 * np.einsum("ni,ij,nj->n", dlt, Si, dlt) - 0.5 * _logdet_pd(so.Sigma_u)

    assert _rel(policy_score(inst, sol, sens, s, a, u), _cs(logpi, x).T) < 1e-10


# --- Monte Carlo: the linear-Gaussian system agrees with the closed form -------------------

@pytest.mark.parametrize("case,episodes", [("building", 3000), ("game-bump", 2000),
                                           ("random-0", 3000)])
def test_monte_carlo_returns_agree_with_exact_value(case, episodes):
    prob, x = CASES[case]()
    inst = prob.instance(x)
    sol = lqr.solve_soft_lqr(inst)
    ro = rollout(prob, inst, sol, prob.z(x), episodes, np.random.default_rng(7))
    returns = ro.r @ (prob.gamma_L ** np.arange(prob.horizon))
    res = unbiasedness_test(returns[:, None], np.array([lqr.value(prob, x)]), ALPHA)
    assert not res.reject, res


# --- estimators: calibrated, and the mutants are caught ------------------------------------

@pytest.mark.parametrize("name", est.ESTIMATORS[:2])
@pytest.mark.parametrize("case", ["random-0", "building"])
def test_bchg_estimators_are_unbiased(name, case):
    prob, x = CASES[case]()
    X = est.estimate_many(prob, x, name, 10 * prob.horizon, 150, seed=11)
    res = unbiasedness_test(X, lqr.hypergradient(prob, x).gradient, ALPHA)
    assert not res.reject, res


@pytest.mark.parametrize("name", ("direct-only", *est.MUTANTS))
def test_wrong_estimators_are_rejected(name):
    prob, x = CASES["random-0"]()
    X = est.estimate_many(prob, x, name, 100 * prob.horizon, 150, seed=11)
    res = unbiasedness_test(X, lqr.hypergradient(prob, x).gradient, ALPHA)
    assert res.reject, res


def test_estimator_input_errors():
    prob, x = CASES["random-0"]()
    with pytest.raises(ValueError, match="budget"):
        est.estimate(prob, x, "bc-hg", budget=prob.horizon - 1)
    with pytest.raises(ValueError, match="estimator"):
        est.estimate(prob, x, "bc-hgg")
    singular = lqr.make_problem(A=[[0.5]], B=[[1.0]], Q=[[1.0]], R=[[1.0]], gamma=0.9, tau=0.1,
                                jac={"A": [[[1.0]]]}, Q_L=[[1.0]], horizon=5, mu0=[1.0])
    with pytest.raises(ValueError, match="W: must be positive definite"):
        est.estimate(singular, [0.1], "bc-hg", budget=50)


# --- validation of the model and the file format -------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"Q": [[1.0, 0.5], [0.0, 1.0]]}, r"Q\[0, 1\] = 0.5 but Q\[1, 0\] = 0.0: must be symmetric"),
    ({"R": [[0.0]]}, "R: smallest eigenvalue"),
    ({"W": -np.eye(2)}, "W: smallest eigenvalue"),
    ({"gamma": 1.0}, "gamma"),
    ({"tau": 0.0}, "tau"),
    ({"jac": {"D": np.zeros((2, 2, 1))}}, "unknown field"),
    ({"jac": {"A": np.zeros((2, 2, 3))}, "d": 2}, r"jac\['A'\]: axis 2"),
    ({"hinge_index": 5}, "hinge_index"),
    ({"horizon": 0}, "horizon"),
    ({"A": [[np.nan, 0.0], [0.0, 1.0]]}, r"A\[0, 0\] = nan: must be finite"),
])
def test_bad_model_input_names_the_field(kwargs, match):
    base = dict(A=np.eye(2) * 0.5, B=[[1.0], [0.0]], Q=np.eye(2), R=[[1.0]], gamma=0.9, tau=0.1)
    with pytest.raises(ValueError, match=match):
        lqr.make_problem(**{**base, **kwargs})


@pytest.mark.parametrize("case", ["building", "game-bump", "random-1-no-leader-action"])
def test_file_round_trip_and_schema(tmp_path, case):
    prob, x = CASES[case]()
    path = tmp_path / "p.json"
    save_lqr(path, prob, x)
    data = json.loads(path.read_text())
    jsonschema.Draft202012Validator(schema("lqr")).validate(data)
    q, y = load_any(path)
    assert np.array_equal(lqr.hypergradient(q, y).gradient, lqr.hypergradient(prob, x).gradient)


def test_file_errors_name_the_field(tmp_path):
    prob, x = CASES["game-bump"]()
    path = tmp_path / "p.json"
    save_lqr(path, prob, x)
    data = json.loads(path.read_text())
    data["follower"]["Rr"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"follower\.Rr: unknown field"):
        load_any(path)
    del data["follower"]["Rr"]
    data["leader"]["bump"]["precision"] = [[1.0, 0.0], [0.0, -1.0]]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="bump_precision: smallest eigenvalue"):
        load_any(path)


def test_parameter_names_of_the_wrong_count_name_the_fields(tmp_path):
    """Was 'names: 2 names for d = 3' (neither field path)."""
    prob, x = CASES["game-bump"]()
    path = tmp_path / "p.json"
    save_lqr(path, prob, x)
    data = json.loads(path.read_text())
    data["parameters"]["d"] = x.size + 1
    data["parameters"]["names"] = [f"n{k}" for k in range(x.size)]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"parameters\.names: {x.size} names, but "
                                         rf"parameters\.d = {x.size + 1}"):
        load_any(path)
    data["parameters"]["names"] = "abc"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"parameters\.names: must be a list of strings"):
        load_any(path)


def test_cli_hypergradient_estimate_check(tmp_path, capsys):
    prob, x = CASES["random-0"]()
    path = str(tmp_path / "p.json")
    save_lqr(path, prob, x)
    out = tmp_path / "hg.json"
    assert main(["hypergradient", path, "--output", str(out)]) == 0
    g = np.array(json.loads(out.read_text())["gradient"])
    assert _rel(g, lqr.hypergradient(prob, x).gradient) == 0.0
    e = tmp_path / "e.json"
    assert main(["estimate", path, "--estimator", "bc-hg", "--transitions", "500",
                 "--replicates", "40", "--quiet", "--output", str(e)]) == 0
    assert main(["check", path, "--estimate", str(e)]) == 0
    assert main(["solve", path, "--output", str(tmp_path / "s.json")]) == 0
    assert main(["estimate", path, "--estimator", "hpgd", "--transitions", "500"]) == 2
    assert main(["estimate", path, "--estimator", "bc-hg", "--transitions", "500",
                 "--critic", "td"]) == 2
    assert "--critic td: a soft-LQR file takes one of" in capsys.readouterr().err


def _two_parameter_problem():
    prob, _ = random_problem(4, n=2, m=1, p=0, horizon=20)
    small = lqr.make_problem(
        A=prob.base["A"], B=prob.base["B"], Q=prob.base["Q"], R=prob.base["R"], W=prob.W,
        gamma=0.9, tau=0.5, jac={"A": prob.jac["A"][..., :2], "B": prob.jac["B"][..., :2]},
        d=2, link="sigmoid", Q_L=prob.leader.Q_L, R_L=prob.leader.R_L, gamma_L=0.95,
        horizon=20, mu0=prob.mu0, Sigma0=prob.Sigma0, bump_weight=1.0, bump_center=[0.2, 0.1])
    return small, np.array([0.3, -0.4])


def test_zeroth_order_targets_the_smoothed_gradient():
    """zeroth-order (common random numbers) is unbiased for grad F_mu, computed by
    Gauss-Hermite quadrature (orders 10 and 14 agree to 1e-7); without its factor 2 it is
    rejected by the same test."""
    prob, x = _two_parameter_problem()
    mu = 0.5
    target = est.smoothed_gradient(prob, x, mu, order=10)
    assert _rel(est.smoothed_gradient(prob, x, mu, order=14), target) < 1e-7  # << its SE
    assert _rel(target, lqr.hypergradient(prob, x).gradient) > 1e-3   # F_mu is not F
    X = est.estimate_many(prob, x, "zeroth-order", 40 * prob.horizon, 300, seed=3,
                          smoothing=mu)
    assert not unbiasedness_test(X, target, ALPHA).reject
    assert unbiasedness_test(2.0 * X, target, ALPHA).reject            # (F+ - F-) / mu
    with pytest.raises(ValueError, match="smoothing"):
        est.estimate_many(prob, x, "zeroth-order", 200, 2, smoothing=0.0)


GOLDEN = sorted((pathlib.Path(__file__).resolve().parent.parent / "verification"
                 / "golden_lqr").glob("*.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_vectors(path, tmp_path):
    """float64 against the stored 30-digit mpmath answers; `check` accepts the stored
    gradient through the golden file itself."""
    expected = json.loads(path.read_text())["expected"]
    prob, x = load_any(path)
    hg = lqr.hypergradient(prob, x)
    value = float(expected["value"])
    grad = np.array([float(g) for g in expected["gradient"]])
    assert abs(hg.value - value) <= 1e-12 * max(1.0, abs(value))
    assert _rel(hg.gradient, grad) < 1e-11
    est = tmp_path / "est.json"
    est.write_text(json.dumps({"gradient": grad.tolist()}))
    assert main(["check", str(path), "--estimate", str(est), "--json"]) == 0


def test_golden_digits_are_reproduced_by_mpmath_at_40_digits():
    import mpmath as mp

    path = next(p for p in GOLDEN if "lqr_game_bump" in p.stem)
    expected = json.loads(path.read_text())["expected"]
    prob, x = load_any(path)
    with mp.workdps(40):
        v = highprec.value(prob, x, dps=40)
        assert abs(v - mp.mpf(expected["value"])) <= mp.mpf(10) ** -28 * max(1, abs(v))
