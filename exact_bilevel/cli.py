"""Command line: ``exact-bilevel demo | solve | hypergradient | estimate | check | reproduce``.

Exit codes: 0 success, 1 numerical failure (a solver did not converge),
2 bad input (unreadable or invalid file, bad option) with one line on stderr
naming the field and the rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import numpy as np

from . import games as mg
from .core import _validate
from .core.errors import ConvergenceError
from .core.hypergradient import hypergradient
from .core.problem import BilevelProblem
from .core.solve import solve_soft
from .crosscheck.finite_differences import richardson_gradient
from .estimators import ESTIMATORS, replicates
from .experiments.examples import demo_problem
from .io import load_any
from .validation import acceptance


def _cmd_demo(args: argparse.Namespace) -> int:
    problem, x = demo_problem()
    print(f"Demo problem: {problem}")
    print("  follower reward and transitions (softmax logits) depend on x; leader return "
          "with gamma_L = 0.9 and an x-dependent leader reward.")
    hg = hypergradient(problem, x, mode="adjoint")
    fwd = hypergradient(problem, x, mode="forward", state=hg.state)
    fd = richardson_gradient(problem.value, x, h=1e-2, levels=3)
    sol = hg.state.solution
    np.set_printoptions(precision=12, suppress=False, linewidth=100)
    print(f"follower solve: {sol.method}, {sol.iterations} iterations, "
          f"Bellman residual {sol.residual:.2e}")
    print(f"leader value F(x)          = {hg.value:.15g}")
    print(f"exact hypergradient        = {hg.gradient}")
    print(f"  direct part              = {hg.direct}")
    print(f"  indirect part            = {hg.indirect}")
    print(f"finite differences (Rich.) = {fd.gradient}")
    scale = float(np.max(np.abs(hg.gradient)))
    rel_fd = float(np.max(np.abs(hg.gradient - fd.gradient))) / scale
    rel_fw = float(np.max(np.abs(hg.gradient - fwd.gradient))) / scale
    print(f"max relative difference: adjoint vs finite differences {rel_fd:.2e}, "
          f"adjoint vs forward {rel_fw:.2e}")
    ok = rel_fd < 1e-7 and rel_fw < 1e-11
    print("agreement: OK" if ok else "agreement: FAILED")
    return 0 if ok else 1


def _follower(obj: BilevelProblem | mg.MarkovGame, x: np.ndarray) -> BilevelProblem:
    return mg.follower_problem(obj, x) if isinstance(obj, mg.MarkovGame) else obj


def _exact(obj: BilevelProblem | mg.MarkovGame, x: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Value, exact gradient and follower residual of a problem or Markov game at ``x``."""
    if isinstance(obj, mg.MarkovGame):
        h = mg.hypergradient(obj, x)
        return h.value, h.gradient, h.residual
    hg = hypergradient(obj, x)
    return float(hg.value), hg.gradient, hg.residual


def _cmd_solve(args: argparse.Namespace) -> int:
    obj, x = load_any(args.file)
    problem = _follower(obj, x)
    sol = solve_soft(problem.follower_mdp(x), problem.tau, method=args.method)
    out = {"q": sol.q.tolist(), "v": sol.v.tolist(), "policy": sol.policy.tolist(),
           "residual": sol.residual, "iterations": sol.iterations, "method": sol.method}
    print(json.dumps(out))
    return 0


def _cmd_hypergradient(args: argparse.Namespace) -> int:
    obj, x = load_any(args.file)
    if isinstance(obj, mg.MarkovGame):
        value, grad, residual = _exact(obj, x)
    else:
        hg = hypergradient(obj, x, mode=args.mode)
        value, grad, residual = float(hg.value), hg.gradient, hg.residual
    print(json.dumps({"value": float(value), "gradient": grad.tolist(), "residual": residual}))
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    obj, x = load_any(args.file)
    if isinstance(obj, mg.MarkovGame):
        critic = args.critic or "exact"
        runs = [mg.estimate(obj, x, args.estimator, args.transitions,
                            np.random.default_rng([args.seed, i]), critic)
                for i in range(args.replicates)]
        X = np.array([r.gradient for r in runs])
        cost = np.array([r.transitions for r in runs])
    else:
        X, cost = replicates(obj, x, args.estimator, args.transitions, args.replicates,
                             args.seed, critic=args.critic)
        critic = args.critic or ESTIMATORS[args.estimator].default_critic
    print(json.dumps({"estimator": args.estimator, "critic": critic, "budget": args.transitions,
                      "seed": args.seed, "estimates": X.tolist(),
                      "transitions": [int(c) for c in cost]}))
    return 0


_EST_FIELDS = ("gradient", "estimates", "estimator", "critic", "budget", "seed", "transitions")


def _read_estimate(path: str, d: int) -> tuple[str, np.ndarray]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh, parse_constant=lambda c: float("nan"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: cannot read a JSON estimate file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a JSON object with 'gradient' or 'estimates'")
    unknown = sorted(set(data) - set(_EST_FIELDS))
    if unknown:
        raise ValueError(f"estimate: unknown field(s) {unknown}; allowed: {list(_EST_FIELDS)}")
    if ("gradient" in data) == ("estimates" in data):
        raise ValueError("estimate: give exactly one of 'gradient' (one deterministic value) "
                         "or 'estimates' (independent replicates)")
    if "gradient" in data:
        return "gradient", _validate.real_array("estimate.gradient", data["gradient"],
                                                shape=(d,))
    return "estimates", _validate.real_array("estimate.estimates", data["estimates"],
                                             shape=(None, d))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments.reproduce import reproduce

    try:
        print(reproduce(args.name, args.out, full=args.full, steps=args.steps,
                        seeds=args.seeds, workers=args.workers, force=args.force))
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    return 0


def _finite_json(obj: object) -> object:
    """Non-finite floats as the strings "inf", "-inf", "nan" (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_json(v) for v in obj]
    return obj


def _cmd_check(args: argparse.Namespace) -> int:
    obj, x = load_any(args.file)
    exact = _exact(obj, x)[1]
    kind, est = _read_estimate(args.estimate, exact.size)
    norm = float(np.linalg.norm(exact))
    if kind == "gradient":
        mean, z = est, None
        err = np.abs(est - exact)
        tol = args.rtol * float(np.max(np.abs(exact))) + args.atol
        passed = bool(np.max(err) <= tol)
        verdict = {"mode": "deterministic", "tolerance": tol, "rtol": args.rtol,
                   "atol": args.atol, "max_error": float(np.max(err))}
    else:
        res = acceptance.unbiasedness_test(est, exact, args.alpha)
        mean, z = est.mean(axis=0), res.z
        passed = not res.reject
        verdict = {"mode": "statistical", "test": res.name, "statistic": res.statistic,
                   "p_value": res.p_value, "alpha": args.alpha, "replicates": est.shape[0]}
    diff = mean - exact
    cos = float(mean @ exact / (np.linalg.norm(mean) * norm)) if norm and np.any(mean) else 0.0
    out = {"pass": passed, **verdict,
           "relative_error": float(np.linalg.norm(diff) / norm) if norm else float("inf"),
           "cosine": cos,
           "coordinates": [{"k": k, "exact": float(exact[k]), "estimate": float(mean[k]),
                            "error": float(diff[k]),
                            **({} if z is None else {"z": float(z[k])})}
                           for k in range(exact.size)]}
    if args.json:
        print(json.dumps(_finite_json(out), allow_nan=False))
    else:
        print(f"exact-bilevel check: {args.estimate} against {args.file} "
              f"({verdict['mode']} check)")
        if kind == "gradient":
            print(f"  |error|_inf = {verdict['max_error']:.3e}, tolerance {tol:.3e} "
                  f"(rtol {args.rtol:g} * max|exact| + atol {args.atol:g})")
        else:
            print(f"  {verdict['test']} test of mean == exact: R = {est.shape[0]}, p = "
                  f"{verdict['p_value']:.3g}, alpha = {args.alpha:g} (false-alarm rate)")
        print(f"  relative error {out['relative_error']:.3e}, cosine {cos:.6f}")
        head = f"  {'k':>4} {'exact':>14} {'estimate':>14} {'error':>11}"
        print(head + ("" if z is None else f" {'z':>8}"))
        for c in out["coordinates"]:
            line = f"  {c['k']:>4} {c['exact']:>14.6g} {c['estimate']:>14.6g} {c['error']:>11.3e}"
            print(line + ("" if z is None else f" {c['z']:>8.2f}"))
        print("PASS" if passed else "FAIL")
    return 0 if passed else 1


def _number(check: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: a float satisfying ``check``, else an error stating ``rule``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not check(v):
            raise argparse.ArgumentTypeError(f"{v} {rule}")
        return v
    return parse


_unit_interval = _number(lambda v: 0.0 < v < 1.0, "must lie in (0, 1)")
_nonnegative = _number(lambda v: 0.0 <= v < float("inf"), "must be a finite number >= 0")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be >= 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exact-bilevel",
        description="Exact soft-MDP solutions and hypergradients for bilevel RL.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="solve a built-in problem and check the hypergradient "
                                    "against finite differences")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("solve", help="solve the follower of a problem file; print q, v, policy")
    p.add_argument("file")
    p.add_argument("--method", choices=["newton", "value_iteration"], default="newton")
    p.set_defaults(func=_cmd_solve)
    p = sub.add_parser("hypergradient", help="print value, exact gradient and residual as JSON")
    p.add_argument("file")
    p.add_argument("--mode", choices=["adjoint", "forward"], default="adjoint")
    p.set_defaults(func=_cmd_hypergradient)
    p = sub.add_parser("estimate", help="R independent sample-based estimates, each from a "
                                        "budget of N transitions, as JSON")
    p.add_argument("file")
    p.add_argument("--estimator", required=True,
                   choices=sorted(set(ESTIMATORS) | set(mg.GAME_ESTIMATORS)),
                   help="for a Markov-game file: " + ", ".join(mg.GAME_ESTIMATORS))
    p.add_argument("--critic", choices=["exact", "monte-carlo", "td"], default=None,
                   help="leader critic (bc-hg, hpgd*, naive) or dQ estimator (sobirl); "
                        "default: the estimator's own")
    p.add_argument("--transitions", type=_positive_int, required=True, metavar="N")
    p.add_argument("--replicates", type=_positive_int, default=1, metavar="R")
    p.add_argument("--seed", type=int, default=0, metavar="K",
                   help="replicate i uses numpy.random.default_rng([K, i])")
    p.set_defaults(func=_cmd_estimate)
    p = sub.add_parser("check", help="check an estimate file against the exact hypergradient "
                                     "(exit 0 pass, 1 fail, 2 bad input)")
    p.add_argument("file", help="problem file (or golden-vector file)")
    p.add_argument("--estimate", required=True, metavar="EST.json",
                   help='{"gradient": [...]} or {"estimates": [[...], ...]} (the output of '
                        "`exact-bilevel estimate` works as is)")
    p.add_argument("--alpha", type=_unit_interval, default=0.01,
                   help="false-alarm rate of the statistical test (default 0.01)")
    p.add_argument("--rtol", type=_nonnegative, default=1e-8,
                   help="relative tolerance of a deterministic gradient (default 1e-8)")
    p.add_argument("--atol", type=_nonnegative, default=0.0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("reproduce", help="run a paper's experiment with exact ground truth; "
                                         "write reproduce_NAME.md and .png into --out")
    p.add_argument("name", choices=["fourrooms", "fourrooms-suboptimal", "discrete-toy",
                                    "sobirl"])
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (required; the committed results live in "
                        "verification/)")
    p.add_argument("--full", action="store_true",
                   help="the paper's run size (default: a CI-sized run that says so)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="leader steps (default: from the run size)")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="seeds (default: from the run size)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes for the runs (default 1)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"exact-bilevel: error: {exc}", file=sys.stderr)
        return 2
    except ConvergenceError as exc:
        print(f"exact-bilevel: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
