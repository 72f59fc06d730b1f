"""Command line: ``exact-bilevel demo | solve FILE | hypergradient FILE | estimate FILE``.

Exit codes: 0 success, 1 numerical failure (a solver did not converge),
2 bad input (unreadable or invalid file, bad option) with one line on stderr
naming the field and the rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from .errors import ConvergenceError
from .estimators import ESTIMATORS, replicates
from .examples import demo_problem
from .finite_differences import richardson_gradient
from .hypergradient import hypergradient
from .io import load_problem
from .solve import solve_soft


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


def _cmd_solve(args: argparse.Namespace) -> int:
    problem, x = load_problem(args.file)
    sol = solve_soft(problem.follower_mdp(x), problem.tau, method=args.method)
    out = {"q": sol.q.tolist(), "v": sol.v.tolist(), "policy": sol.policy.tolist(),
           "residual": sol.residual, "iterations": sol.iterations, "method": sol.method}
    print(json.dumps(out))
    return 0


def _cmd_hypergradient(args: argparse.Namespace) -> int:
    problem, x = load_problem(args.file)
    hg = hypergradient(problem, x, mode=args.mode)
    print(json.dumps({"value": float(hg.value), "gradient": hg.gradient.tolist(),
                      "residual": hg.residual}))
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    problem, x = load_problem(args.file)
    X, cost = replicates(problem, x, args.estimator, args.transitions, args.replicates,
                         args.seed, critic=args.critic)
    critic = args.critic or ESTIMATORS[args.estimator].default_critic
    print(json.dumps({"estimator": args.estimator, "critic": critic, "budget": args.transitions,
                      "seed": args.seed, "estimates": X.tolist(),
                      "transitions": [int(c) for c in cost]}))
    return 0


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
    p.add_argument("--estimator", required=True, choices=sorted(ESTIMATORS))
    p.add_argument("--critic", choices=["exact", "monte-carlo", "td"], default=None,
                   help="leader critic (bc-hg, hpgd*, naive) or dQ estimator (sobirl); "
                        "default: the estimator's own")
    p.add_argument("--transitions", type=_positive_int, required=True, metavar="N")
    p.add_argument("--replicates", type=_positive_int, default=1, metavar="R")
    p.add_argument("--seed", type=int, default=0, metavar="K",
                   help="replicate i uses numpy.random.default_rng([K, i])")
    p.set_defaults(func=_cmd_estimate)
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
