"""Command line: ``exact-bilevel demo | solve | hypergradient | estimate | check | plan |
estimators | sweep | report | reproduce``.

Exit codes (documented in ``--help``):

* 0 — success (``check``: the estimate passed);
* 1 — numerical failure: a solver did not converge, a quantity overflowed or became
  non-finite (the message names it), or ``check`` rejected the estimate;
* 2 — bad input: an unreadable or invalid file, a bad option, or a size over the
  memory budget (one line on stderr naming the field and the rule); also an output
  that cannot be written: an ``--output``/``--out`` path the rule below refuses or a
  failed write to it, and standard output that cannot be written (a full device:
  the line names ``stdout`` and the system's reason);
* 3 — internal error (a bug: please report the one-line message);
* 130 — interrupted (Ctrl-C); 141 — the output pipe was closed (``| head``), quietly.

Every file argument accepts ``-`` for standard input; ``--output FILE`` writes the
JSON result to FILE instead of printing it (``--output -``: standard output). The
output-path rule (:mod:`exact_bilevel.core._files`): a regular file is replaced
atomically (temporary file beside it, fsync, rename); a symlink is written through
(its target is replaced atomically, the link survives; a dangling link creates its
target if the target's directory exists); a character device, FIFO or open
descriptor (``/dev/null``, ``/dev/stdout``) is written directly, never replaced;
refused with exit 2: a directory, a missing parent directory, a path under a
regular file, and a path that is one of the command's inputs (same file after
resolving, or same device and inode; the input is left intact). ``report --out``
and ``reproduce --out`` name a directory (created if missing; an existing
non-directory is refused) whose files follow the same rule. Output JSON is strict
(no NaN or Infinity). Heavy modules are imported only by the command that needs
them, so ``--help`` and ``--version`` start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__

#: Names of the estimators (``exact_bilevel.estimators.ESTIMATORS``) and the Markov-game
#: estimators, stated here so that ``--help`` does not import the numerical stack
#: (``tests/test_io_cli.py`` checks they match the registries).
ESTIMATOR_NAMES = ("bc-hg", "bc-hg-baseline", "hpgd", "hpgd-oracle", "hpgd-td", "model-based",
                   "naive", "sobirl", "sobirl-simplified", "zeroth-order")
GAME_ESTIMATOR_NAMES = ("bc-hg", "bc-hg-baseline", "direct-only")
#: Other names a problem file accepts: ``direct-only`` (the games' name) is ``naive``.
ESTIMATOR_ALIASES = {"direct-only": "naive"}
REPRODUCTIONS = ("fourrooms", "fourrooms-suboptimal", "discrete-toy", "sobirl",
                 "building-thermal", "lqr-game")

EXIT_NUMERICAL, EXIT_INPUT, EXIT_INTERNAL = 1, 2, 3


class _Fail(Exception):
    """A command's verdict that ends in exit code 1 after its output (``check``)."""


#: The attributes of a command's arguments that name files it reads: ``--output`` must
#: not be one of them.
_INPUT_ARGS = ("file", "estimate", "spec", "db")


def _inputs(args: argparse.Namespace) -> list[str]:
    """The input paths of the command ``args`` (standard input ``-`` included)."""
    return [v for v in (getattr(args, a, None) for a in _INPUT_ARGS) if isinstance(v, str)]


def _emit(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    """Print ``payload`` as strict JSON, or write it to ``--output`` under the output-path
    rule (module docstring). A non-finite number is a numerical failure naming the field
    (never ``NaN`` in JSON)."""
    from .core.errors import NumericalError

    try:
        text = json.dumps(payload, allow_nan=False)
    except ValueError:
        bad = next((k for k, v in payload.items() if _has_nonfinite(v)), "output")
        raise NumericalError(f"{bad}: not finite (float64 overflow?); nothing written") \
            from None
    target = getattr(args, "output", None)
    if target is None or target == "-":
        print(text)
    else:
        from .core._files import atomic_write

        atomic_write(target, text + "\n", option="--output", inputs=_inputs(args))


def _has_nonfinite(value: object) -> bool:
    import math

    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(v) for v in value)
    return False


def _progress(total: int, desc: str, quiet: bool) -> Any:
    """A progress bar on a terminal (off with ``--quiet``)."""
    from .core._progress import progress_bar

    return progress_bar(total=total, desc=desc, enabled=not quiet)


# --- commands -------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .core.hypergradient import hypergradient
    from .crosscheck.finite_differences import richardson_gradient
    from .experiments.examples import demo_problem

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


def _load(path: str) -> tuple[Any, Any]:
    from .io import load_any

    return load_any(path)


def _is_game(obj: object) -> bool:
    from .games.model import MarkovGame

    return isinstance(obj, MarkovGame)


def _is_lqr(obj: object) -> bool:
    from .lqr.model import LQRProblem

    return isinstance(obj, LQRProblem)


def _follower(obj: Any, x: Any) -> Any:
    from . import games as mg

    return mg.follower_problem(obj, x) if _is_game(obj) else obj


def _exact(obj: Any, x: Any, mode: str = "adjoint") -> tuple[float, Any, float]:
    """Value, exact gradient and follower residual of a problem, Markov game or soft-LQR
    problem at ``x``."""
    if _is_lqr(obj):
        from .lqr.hypergradient import hypergradient as lqr_hypergradient

        # the O(T n^3) forward and adjoint sweeps show bars on stderr when it is a
        # terminal (long horizons take minutes); never on stdout, never in --json output
        h = lqr_hypergradient(obj, x, progress=True)
        return float(h.value), h.gradient, h.residual
    if _is_game(obj):
        from . import games as mg

        h = mg.hypergradient(obj, x)
        return float(h.value), h.gradient, h.residual
    from .core.hypergradient import hypergradient

    hg = hypergradient(obj, x, mode=mode)
    return float(hg.value), hg.gradient, hg.residual


def _cmd_solve(args: argparse.Namespace) -> int:
    from .core.solve import solve_soft

    obj, x = _load(args.file)
    if _is_lqr(obj):
        from .lqr.riccati import solve_soft_lqr

        sol = solve_soft_lqr(obj.instance(x))
        _emit(args, {"P": sol.P.tolist(), "v": float(sol.v), "gain_K": sol.K.tolist(),
                     "gain_G": sol.G.tolist(), "Sigma_u": sol.Sigma_u.tolist(),
                     "residual": sol.residual, "iterations": sol.iterations,
                     "method": "soft Riccati (value iteration + Newton)"})
        return 0
    problem = _follower(obj, x)
    bar = _progress(0, "solve (iterations)", args.quiet)

    def callback(iteration: int, residual: float) -> None:
        bar.update(1)
        bar.set_postfix(residual=f"{residual:.2e}", refresh=False)

    try:
        sol = solve_soft(problem.follower_mdp(x), problem.tau, method=args.method,
                         callback=callback)
    finally:
        bar.close()
    _emit(args, {"q": sol.q.tolist(), "v": sol.v.tolist(), "policy": sol.policy.tolist(),
                 "residual": sol.residual, "iterations": sol.iterations, "method": sol.method})
    return 0


def _cmd_hypergradient(args: argparse.Namespace) -> int:
    obj, x = _load(args.file)
    value, grad, residual = _exact(obj, x, args.mode)
    _emit(args, {"value": value, "gradient": grad.tolist(), "residual": residual})
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:

    from .core._budget import check_allocation
    from .estimators.registry import (
        ESTIMATORS,
        check_sample_buffers,
        leader_knowledge,
        run_replicates,
    )

    obj, x = _load(args.file)
    check_allocation(f"--replicates {args.replicates}: the estimates [R, d]",
                     (args.replicates, x.size))
    check_sample_buffers(args.transitions)
    if _is_lqr(obj):
        return _estimate_lqr(args, obj, x)
    game = _is_game(obj)
    if game:
        from . import games as mg

        if args.estimator not in GAME_ESTIMATOR_NAMES:
            raise ValueError(f"--estimator {args.estimator}: a Markov-game file takes one of "
                             f"{list(GAME_ESTIMATOR_NAMES)}")
        critic = args.critic or "exact"
    else:
        name = ESTIMATOR_ALIASES.get(args.estimator, args.estimator)
        if name not in ESTIMATORS:
            raise ValueError(f"--estimator {args.estimator}: a problem file takes one of "
                             f"{sorted(ESTIMATORS)} or an alias {ESTIMATOR_ALIASES}")
        info = ESTIMATORS[name]
        critic = args.critic or info.default_critic
        if critic not in info.critics:
            raise ValueError(f"critic = {critic!r}: estimator {name!r} accepts {info.critics}")
        know = leader_knowledge(obj, x)
        check_sample_buffers(args.transitions, know.beta, x.size)
    bar = _progress(args.replicates, f"estimate ({args.estimator})", args.quiet)
    try:
        if game:  # replicate i on its own generator (spawn-key/2), all drawn together
            G, C = mg.replicates(obj, x, args.estimator, args.transitions, args.replicates,
                                 args.seed, critic, progress=bar.update)
        else:  # all replicates together, block i of the seed's cell (cell-block/3)
            G, C = run_replicates(info.fn, know, args.transitions, args.replicates,
                                  args.seed, critic, progress=bar.update)
        X, cost = G.tolist(), [int(c) for c in C]
    finally:
        bar.close()
    payload: dict[str, Any] = {"estimator": args.estimator, "budget": args.transitions,
                               "seed": args.seed, "estimates": X, "transitions": cost}
    if game or len(info.critics) > 1:  # only where there is a critic to choose
        payload["critic"] = critic
    _emit(args, payload)
    return 0


def _estimate_lqr(args: argparse.Namespace, obj: Any, x: Any) -> int:
    from .lqr import estimators as lqr_est

    if args.estimator not in lqr_est.ESTIMATORS:
        raise ValueError(f"--estimator {args.estimator}: a soft-LQR file takes one of "
                         f"{list(lqr_est.ESTIMATORS)}")
    critic = args.critic or "monte-carlo"
    if critic not in lqr_est.CRITICS:
        raise ValueError(f"--critic {critic}: a soft-LQR file takes one of "
                         f"{list(lqr_est.CRITICS)} (the leader's critic; the follower's "
                         "soft-Q gradient is always exact)")
    bar = _progress(args.replicates, f"estimate ({args.estimator})", args.quiet)
    try:  # replicate i on SeedSequence(seed, spawn_key=(i,)), all walked together
        X = lqr_est.replicates(obj, x, args.estimator, args.transitions, args.replicates,
                               args.seed, critic=critic, progress=bar.update).tolist()
    finally:
        bar.close()
    T = obj.horizon
    payload: dict[str, Any] = {"estimator": args.estimator, "budget": args.transitions,
                               "seed": args.seed, "estimates": X,
                               "transitions": [args.transitions // T * T] * len(X)}
    if args.estimator != "zeroth-order":
        payload["critic"] = critic
    _emit(args, payload)
    return 0


_EST_FIELDS = ("gradient", "estimates", "estimator", "critic", "budget", "seed", "transitions")


def _read_estimate(path: str, d: int) -> tuple[str, Any, dict[str, Any]]:
    from .core import _validate
    from .io import read_json

    data = read_json(path)
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
                                                shape=(d,)), data
    return "estimates", _validate.real_array("estimate.estimates", data["estimates"],
                                             shape=(None, d)), data


def _exact_covariance(obj: Any, x: Any, data: dict[str, Any]) -> tuple[Any, str] | None:
    """The exact covariance of one estimate named by an estimate file (``estimator``,
    ``budget``, ``critic``), where :func:`exact_bilevel.estimators.moments` covers it
    (bc-hg, bc-hg-baseline, naive / direct-only with the exact critic on a problem
    file) or :func:`exact_bilevel.games.game_moments` does (bc-hg, bc-hg-baseline,
    direct-only on a Markov-game file); else ``None``. Returns ``(covariance[d, d],
    estimator)``."""
    from .estimators.moments import SUPPORTED as MOMENT_ESTIMATORS

    budget = data.get("budget")
    if (_is_lqr(obj) or data.get("critic", "exact") != "exact" or isinstance(budget, bool)
            or not isinstance(budget, int) or budget < 1):
        return None
    if _is_game(obj):
        name = data.get("estimator")
        if name not in GAME_ESTIMATOR_NAMES:
            return None
        from .games import game_moments

        return game_moments(obj, x, name, budget).covariance, f"game {name}"
    name = ESTIMATOR_ALIASES.get(str(data.get("estimator")), data.get("estimator"))
    if name not in MOMENT_ESTIMATORS:
        return None
    from .estimators.moments import moments

    return moments(obj, x, name, budget).covariance, str(name)


def _side(res: Any) -> dict[str, Any]:
    """A test shown beside the deciding one: name, statistic, p-value."""
    return {"test": res.name, "statistic": _finite_or_none(float(res.statistic)),
            "p_value": _finite_or_none(float(res.p_value)),
            "approximation_ok": res.approximation_ok}


def _known_covariance_check(obj: Any, x: Any, est: Any, exact: Any, cov: Any, sample: Any,
                            budget: int, alpha: float) -> tuple[Any, float, dict[str, Any]]:
    """The exact-covariance verdict of ``check``: the regime from the exact occupancy (the
    rarest on-policy pair's expected visits in all ``R x budget`` transitions, of the
    follower's problem for a Markov game), then
    :func:`~exact_bilevel.validation.convergence.known_covariance_verdict` (chi-square in
    the regular regime; in the rare-event regime a chi-square rejection counts only when
    the distribution-free Chebyshev test rejects too, otherwise it is inconclusive).
    Returns the deciding result, its resolution, and the JSON fields shown beside it (the
    regime, the other exact-covariance test, the sample-covariance test)."""
    from .estimators import leader_knowledge
    from .validation import acceptance
    from .validation.convergence import (
        MIN_EXPECTED_VISITS,
        is_unresolved_rejection,
        known_covariance_verdict,
        rare_event_diagnostic,
    )

    R = est.shape[0]
    visits, s, a = rare_event_diagnostic(leader_knowledge(_follower(obj, x), x), budget * R)
    rare = visits < MIN_EXPECTED_VISITS
    res = known_covariance_verdict(est, exact, cov, visits, alpha)
    unresolved = is_unresolved_rejection(res)
    if res.name == "chebyshev":
        other = acceptance.known_covariance_test(est, exact, cov, alpha)
        decides = "chebyshev (distribution-free): both reject"
    else:
        other = acceptance.chebyshev_test(est, exact, cov, alpha)
        decides = ("none: only the chi-square rejects (inconclusive)" if unresolved
                   else "chi-square")
    resolves = acceptance.resolution_known(cov, R, exact, alpha)
    beside = {"regime": {"rare_event": bool(rare), "rarest_visits": _finite_or_none(visits),
                         "rarest_pair": [s, a], "threshold": MIN_EXPECTED_VISITS,
                         "transitions": budget * R, "decides": decides},
              "other_known_covariance_test": _side(other),
              "sample_covariance_test": _side(sample)}
    return res, resolves, beside


def _cmd_check(args: argparse.Namespace) -> int:
    """The verdict of an estimate file: ``pass``, ``fail`` or (statistical mode)
    ``inconclusive`` when the replicates cannot resolve a relative bias of 100%
    (:func:`exact_bilevel.validation.acceptance.resolution` > 1) or, in the rare-event
    regime, only the chi-square rejects
    (:func:`~exact_bilevel.validation.convergence.is_unresolved_rejection`). A check passes only
    if its test accepts, the replicates resolve the answer, *and* every statistic it
    reports is finite; text and JSON give the same verdict and exit code (0 pass,
    1 fail or inconclusive)."""
    import math

    import numpy as np

    from .validation import acceptance
    from .validation.convergence import is_unresolved_rejection

    if args.file == "-" and args.estimate == "-":
        raise ValueError("file, --estimate: at most one of them can be '-' (standard input)")
    obj, x = _load(args.file)
    exact = _exact(obj, x)[1]
    kind, est, meta = _read_estimate(args.estimate, exact.size)
    mean, rel, cos = acceptance.summary(est, exact)
    if kind == "gradient":
        z = None
        with np.errstate(over="ignore"):
            err = np.abs(est - exact)
        tol = args.rtol * float(np.max(np.abs(exact))) + args.atol
        passed = bool(np.max(err) <= tol)
        verdict: dict[str, Any] = {"mode": "deterministic", "tolerance": tol,
                                   "rtol": args.rtol, "atol": args.atol,
                                   "max_error": float(np.max(err))}
        stats = {"max_error": verdict["max_error"]}
    else:
        res = acceptance.unbiasedness_test(est, exact, args.alpha)
        resolves = acceptance.resolution(est, exact, args.alpha)
        known = _exact_covariance(obj, x, meta)
        beside: dict[str, Any] = {}
        if known is not None:  # the exact covariance decides; the other tests are shown
            cov, name = known
            res, resolves, beside = _known_covariance_check(obj, x, est, exact, cov, res,
                                                            meta["budget"], args.alpha)
            beside["covariance"] = f"exact (moments of {name} at budget {meta['budget']})"
        z = res.z
        passed = not res.reject and resolves <= 1.0
        verdict = {"mode": "statistical", "test": res.name, "statistic": res.statistic,
                   "p_value": res.p_value, "alpha": args.alpha, "replicates": est.shape[0],
                   "approximation_ok": res.approximation_ok, "resolution": resolves,
                   **beside}
        # T^2 = inf is a computed value (a deterministic coordinate exactly off: reject)
        stats = {"p_value": res.p_value,
                 "statistic": 0.0 if math.isinf(res.statistic) else res.statistic}
    with np.errstate(over="ignore"):
        diff = mean - exact
    undefined_cos = not np.any(mean) or not np.any(exact)
    stats.update({"relative_error": 0.0 if not np.any(exact) else rel,
                  "cosine": 0.0 if undefined_cos else cos,
                  "estimate": float(np.max(np.abs(mean))),
                  "error": float(np.max(np.abs(diff)))})
    nonfinite = sorted(k for k, v in stats.items() if not math.isfinite(v))
    passed = passed and not nonfinite
    unresolved = kind == "estimates" and is_unresolved_rejection(res)
    inconclusive = (kind == "estimates" and not nonfinite
                    and (unresolved or (not res.reject and not verdict["resolution"] <= 1.0)))
    outcome = "pass" if passed else ("inconclusive" if inconclusive else "fail")
    out: dict[str, Any] = {
        "pass": passed, "verdict": outcome, **{k: _finite_or_none(v) if isinstance(v, float) else v
                           for k, v in verdict.items()},
        "relative_error": None if not np.any(exact) else _finite_or_none(rel),
        "cosine": None if undefined_cos else _finite_or_none(cos),
        "nonfinite": nonfinite,
        "coordinates": [{"k": k, "exact": float(exact[k]), "estimate": float(mean[k]),
                         "error": _finite_or_none(float(diff[k])),
                         **({} if z is None else {"z": _finite_or_none(float(z[k]))})}
                        for k in range(exact.size)]}
    if args.json:
        _emit(args, out)
        return 0 if passed else 1

    def num(v: float | None, spec: str) -> str:
        return "undefined" if v is None else ("not finite" if not math.isfinite(v)
                                              else format(v, spec))

    print(f"exact-bilevel check: {args.estimate} against {args.file} "
          f"({verdict['mode']} check)")
    if kind == "gradient":
        print(f"  |error|_inf = {num(verdict['max_error'], '.3e')}, tolerance {tol:.3e} "
              f"(rtol {args.rtol:g} * max|exact| + atol {args.atol:g})")
    else:
        print(f"  {verdict['test']} test of mean == exact: R = {est.shape[0]}, p = "
              f"{num(verdict['p_value'], '.3g')}, alpha = {args.alpha:g} (false-alarm rate)")
        if "covariance" in verdict:
            side, other, regime = (verdict["sample_covariance_test"],
                                   verdict["other_known_covariance_test"], verdict["regime"])
            print(f"  covariance: {verdict['covariance']}; the sample-covariance "
                  f"{side['test']} test beside it: p = {num(side['p_value'], '.3g')}")
            pair = tuple(regime["rarest_pair"])
            print(f"  regime: the rarest on-policy pair (s, a) = {pair} is expected "
                  f"{num(regime['rarest_visits'], '.3g')} times in all "
                  f"{regime['transitions']} transitions ("
                  + ("rare-event regime" if regime["rare_event"] else "regular regime")
                  + f", threshold {regime['threshold']:g}): {regime['decides']} decides; "
                  f"the {other['test']} test beside it: p = {num(other['p_value'], '.3g')}")
        print(f"  resolution: relative biases above {num(verdict['resolution'], '.3g')} "
              "(of max|exact|) would be detected with probability >= 1/2")
        if not verdict["approximation_ok"]:
            print("  WARNING: the estimates are too skewed for the test's normal "
                  "approximation (see the warning above); the verdict is not reliable")
    print(f"  relative error {num(out['relative_error'], '.3e')}, "
          f"cosine {num(out['cosine'], '.6f')}")
    head = f"  {'k':>4} {'exact':>14} {'estimate':>14} {'error':>11}"
    print(head + ("" if z is None else f" {'z':>8}"))
    for c, d in zip(out["coordinates"], diff, strict=True):
        line = (f"  {c['k']:>4} {c['exact']:>14.6g} {c['estimate']:>14.6g} "
                f"{num(float(d), '11.3e'):>11}")
        print(line + ("" if z is None else f" {num(float(z[c['k']]), '8.2f'):>8}"))
    if nonfinite:
        print(f"  not finite: {', '.join(nonfinite)} (float64 overflow): no verdict can "
              "pass on a statistic that is not a number")
    if inconclusive and unresolved:
        print("  rare-event regime: only the chi-square rejects, the distribution-free "
              "bound does not; more replicates or a larger budget per estimate decide")
    elif inconclusive:
        print("  the replicates cannot tell this estimator from one that is off by 100%: "
              "more replicates or a larger budget per estimate")
    print(outcome.upper())
    return 0 if passed else 1


def _cmd_plan(args: argparse.Namespace) -> int:
    """Transitions x replicates to detect a relative bias (``validation.planning``)."""
    from .validation.convergence import MIN_EXPECTED_VISITS
    from .validation.planning import plan_sample_size

    obj, x = _load(args.file)
    if _is_game(obj) or _is_lqr(obj):
        raise ValueError(f"{args.file}: plan needs a bilevel problem file (the exact "
                         "covariance of Markov-game and soft-LQR estimators is not available)")
    name = ESTIMATOR_ALIASES.get(args.estimator, args.estimator)
    try:
        plan = plan_sample_size(obj, x, name, args.bias, power=args.power, alpha=args.alpha,
                                budgets=args.budget, direction=args.direction,
                                alternative=args.alternative)
    except ValueError as exc:  # name the option, not the function's argument
        text = str(exc)
        if text.startswith("bias: required"):
            text = "--bias: required unless --alternative names a mutant (its exact bias)"
        for field, option in (("estimator = ", "--estimator "), ("budget = ", "--budget "),
                              ("budgets", "--budget"), ("power = ", "--power "),
                              ("bias = ", "--bias "),
                              ("direction = ", "--direction "),
                              ("alternative = ", "--alternative ")):
            if text.startswith(field):
                text = option + text[len(field):]
                break
        raise ValueError(text) from None
    if args.json:
        _emit(args, plan.to_dict())
        return 0
    best, best_s = plan.cheapest, plan.cheapest_sample
    where = {"worst": "the least detectable direction (top eigenvector of the exact "
                      "covariance)",
             "gradient": "the direction of the exact gradient g",
             "alternative mean": f"the exact mean of {plan.alternative}"}[plan.direction]
    print(f"exact-bilevel plan: {name} on {args.file}, d = {plan.dimension}: detect a bias "
          f"of relative size {plan.bias:g} (|E X - g| = {plan.bias:g} |g|, |g| = "
          f"{plan.gradient_norm:.4g}) along {where}")
    cheb = f"{plan.rank / plan.alpha:.4g}" if plan.rank else "inf"
    print(f"  with power {plan.power:g} at alpha = {plan.alpha:g} for a FAIL verdict of the "
          "exact-covariance rule (as `check` decides): the chi-square test (rank "
          f"{plan.rank}) in the regular regime; in the rare-event regime (rarest on-policy "
          f"pair expected < {MIN_EXPECTED_VISITS:g} times in all R x N transitions) a FAIL "
          f"needs the distribution-free Chebyshev test too (T >= r / alpha = {cheb})")
    print("  R (no pass): the chi-square alone rejects with that power (the verdict is then "
          "not a pass: FAIL, or INCONCLUSIVE in the rare-event regime); the sample-covariance "
          "column is Hotelling's T^2 for Gaussian estimates (its best case)")
    if plan.alternative == "shift":
        print("  alternative: pure shift (the biased estimator has the reference's covariance; "
              "--alternative MUTANT uses a mutant's exact mean and covariance)")
    else:
        print(f"  alternative: {plan.alternative} (its exact mean and covariance; power of "
              "the test that assumes the reference's covariance, Imhof)")
    print(plan.table())
    if best is None:
        print("  exact-covariance verdict: not reachable within the replicate limit")
    else:
        rests = ("the chi-square test" if best.regime == "regular" else
                 "the Chebyshev test (rare-event regime: the rarest pair is expected "
                 f"{best.rarest_visits:.3g} times)")
        print(f"  cheapest (exact covariance): {best.replicates} replicates x {best.budget} "
              f"transitions = {best.total} transitions (FAIL power {best.power:.3f}; "
              f"rests on {rests})")
    if best_s is not None:
        print(f"  cheapest (sample covariance): {best_s.sample_replicates} replicates x "
              f"{best_s.budget} transitions = {best_s.sample_total} transitions")
    from .estimators.registry import ESTIMATORS

    if not ESTIMATORS[name].unbiased:
        print(f"  note: {name} itself is off by {plan.estimator_bias:.3g} |g| (exact)")
    return 0


def _finite_or_none(v: float) -> float | None:
    import math

    return float(v) if math.isfinite(v) else None


def _cmd_estimators(args: argparse.Namespace) -> int:
    from .estimators.registry import ESTIMATORS

    rows = [{"name": name, "access": info.access, "bias": ("unbiased" if info.unbiased else
                                                           _bias(name)),
             "critics": list(info.critics), "default_critic": info.default_critic,
             "reference": info.reference} for name, info in sorted(ESTIMATORS.items())]
    for alias, target in ESTIMATOR_ALIASES.items():  # listed where they sort, marked
        row = next(r for r in rows if r["name"] == target)
        rows.append({**row, "name": alias, "alias_of": target})
    rows.sort(key=lambda r: r["name"])
    if args.json:
        _emit(args, {"estimators": rows})
        return 0
    print(f"{'name':<18} {'bias':<28} {'critics (default first)':<30} access")
    for r in rows:
        critics = [r["default_critic"]] + [c for c in r["critics"] if c != r["default_critic"]]
        access = f"= {r['alias_of']}" if "alias_of" in r else r["access"]
        print(f"{r['name']:<18} {r['bias']:<28} {', '.join(critics):<30} {access}")
    print("\nUnbiased means with the exact critic; 'consistent' estimators have an O(1/n) "
          "bias. Markov-game files take: " + ", ".join(GAME_ESTIMATOR_NAMES) + ".")
    return 0


def _bias(name: str) -> str:
    return {"naive": "biased (no indirect term)",
            "sobirl-simplified": "biased by design",
            "zeroth-order": "biased O(mu^2) (smoothing)"}.get(name, "consistent (O(1/n) bias)")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments.reproduce import reproduce

    try:
        print(reproduce(args.name, args.out, full=args.full, steps=args.steps,
                        seeds=args.seeds, workers=args.workers, force=args.force))
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import os

    from .sweeps.run import run_sweep
    from .sweeps.spec import load_spec

    if (args.spec != "-" and os.path.exists(args.db) and os.path.exists(args.spec)
            and os.path.samefile(args.db, args.spec)):
        raise ValueError(f"--db {args.db}: is the sweep spec itself; give a results file")
    spec = load_spec(args.spec)
    added = run_sweep(spec, args.db, workers=args.workers, progress=not args.quiet,
                      executor=args.executor, scheduler=args.scheduler,
                      no_worker_timeout=args.no_worker_timeout,
                      connect_timeout=args.connect_timeout)
    print(json.dumps({"db": args.db, "replicates_added": added, "replicates": spec.n_rows}))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .sweeps.report import report

    print(report(args.db, args.out, alpha=args.alpha, force=args.force))
    return 0


# --- options --------------------------------------------------------------------------
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
_positive_float = _number(lambda v: 0.0 < v < float("inf"), "must be a finite number > 0")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be >= 1")
    return n


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"{n} must be in [0, 2^63)")
    return n


EPILOG = ("exit codes: 0 success; 1 numerical failure (no convergence, overflow) or a "
          "rejected check; 2 bad input or size over the memory budget "
          "(EXACT_BILEVEL_MAX_BYTES, default 4 GiB), or an output that cannot be written "
          "(--output/--out refused or failing, stdout full: the line names it); 3 internal "
          "error; 130 interrupted; 141 output pipe closed. FILE may be '-' (standard input). "
          "--output: a file is replaced atomically, a symlink is written through to its "
          "target, a character device, FIFO or '-' (stdout) is written directly; a "
          "directory, a missing directory or one of the command's inputs is refused.")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """States an option's default once: not when the help text already says it, and not
    for flags (default off) or options without a default (``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v
                                    for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action) or text


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="exact-bilevel", epilog=EPILOG,
        description="Exact soft-MDP solutions and hypergradients for bilevel RL.")
    parser.add_argument("--version", action="version", version=f"exact-bilevel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=EPILOG,
                              formatter_class=fmt)

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("--output", metavar="FILE", default=None,
                       help="write the JSON result to FILE instead of stdout: atomically, "
                            "through a symlink, directly into a device or FIFO; '-' is "
                            "stdout; refused: a directory or one of the inputs")

    p = command("demo", "solve a built-in problem and check the hypergradient against "
                        "finite differences")
    p.set_defaults(func=_cmd_demo)
    p = command("solve", "solve the follower of a problem file; print q, v, policy as JSON")
    p.add_argument("file", help="problem, golden-vector, Markov-game or soft-LQR file ('-': stdin)")
    p.add_argument("--method", choices=["newton", "newton-only", "value_iteration"],
                   default="newton", help="solver: Newton with chord steps (default), "
                   "Newton with a fresh LU every step, or value iteration")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    output(p)
    p.set_defaults(func=_cmd_solve)
    p = command("hypergradient", "print value, exact gradient and residual as JSON")
    p.add_argument("file", help="problem, golden-vector, Markov-game or soft-LQR file ('-': stdin)")
    p.add_argument("--mode", choices=["adjoint", "forward"], default="adjoint",
                   help="adjoint (one S-sized solve) or forward (all sensitivities)")
    output(p)
    p.set_defaults(func=_cmd_hypergradient)
    p = command("estimate", "R independent sample-based estimates, each from a budget of N "
                            "transitions, as JSON")
    p.add_argument("file", help="problem, golden-vector, Markov-game or soft-LQR file ('-': stdin)")
    p.add_argument("--estimator", required=True,
                   choices=sorted(set(ESTIMATOR_NAMES) | set(GAME_ESTIMATOR_NAMES)),
                   help="see `exact-bilevel estimators`; Markov-game files take "
                        + ", ".join(GAME_ESTIMATOR_NAMES))
    p.add_argument("--critic", choices=["exact", "monte-carlo", "td"], default=None,
                   help="leader critic (bc-hg, hpgd*, naive) or dQ estimator (sobirl); "
                        "default: the estimator's own")
    p.add_argument("--transitions", type=_positive_int, required=True, metavar="N",
                   help="budget of transitions (steps + resets) per estimate")
    p.add_argument("--replicates", type=_positive_int, default=1, metavar="R",
                   help="independent estimates")
    p.add_argument("--seed", type=_seed, default=0, metavar="K",
                   help="replicate i draws from SeedSequence(K, spawn_key=(i,)) (the "
                        "i-th child of SeedSequence(K); exact_bilevel.core.streams)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    output(p)
    p.set_defaults(func=_cmd_estimate)
    p = command("check", "check an estimate file against the exact hypergradient "
                         "(exit 0 pass, 1 fail, 2 bad input)")
    p.add_argument("file", help="problem, golden-vector, Markov-game or soft-LQR file ('-': stdin)")
    p.add_argument("--estimate", required=True, metavar="EST.json",
                   help="{'gradient': [...]} or {'estimates': [[...], ...]} (as written by "
                        "`exact-bilevel estimate`; '-': stdin)")
    p.add_argument("--alpha", type=_unit_interval, default=0.01,
                   help="false-alarm rate of the statistical test")
    p.add_argument("--rtol", type=_nonnegative, default=1e-8,
                   help="relative tolerance of a deterministic gradient")
    p.add_argument("--atol", type=_nonnegative, default=0.0,
                   help="absolute tolerance of a deterministic gradient")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    output(p)
    p.set_defaults(func=_cmd_check)
    p = command("plan", "transitions per replicate x replicates that the exact-covariance "
                        "verdict needs to FAIL a bias of relative size B")
    p.description = (
        "Plan a test: for each budget N (transitions per estimate) the fewest replicates R "
        "with which the exact-covariance verdict (as `check` decides it) FAILs a bias of "
        "relative size B with the given power at level alpha, and the cheapest total R x N: "
        "the chi-square test where R x N puts the problem in the regular regime, the "
        "distribution-free Chebyshev test (T >= r / alpha) where the rarest on-policy pair is "
        "expected fewer than 10 times in all R x N transitions (the regime column); beside "
        "it, the replicates with which the chi-square alone rejects. Relative bias "
        "B: the estimator's mean is g + b with |b| = B |g| (Euclidean, g the exact "
        "hypergradient); by default b points along the least detectable direction (the top "
        "eigenvector of the exact covariance), so the power holds for every bias of that "
        "size. Power from the noncentral chi-square with the exact covariance (estimators "
        "bc-hg, bc-hg-baseline, naive with the exact critic); beside it, what Hotelling's "
        "sample-covariance test would need for Gaussian estimates (noncentral F). This "
        "assumes the biased estimator has the reference's covariance (a pure shift); "
        "--alternative MUTANT plans instead against a shipped mutant's exact mean and "
        "covariance (Imhof's formula for the test's power).")
    p.add_argument("file", help="problem or golden-vector file ('-': stdin)")
    p.add_argument("--estimator", required=True,
                   choices=sorted(set(ESTIMATOR_NAMES) | set(ESTIMATOR_ALIASES)),
                   help="the estimator whose exact covariance is used (bc-hg, "
                        "bc-hg-baseline, naive; the others have none and are refused "
                        "with the reason)")
    p.add_argument("--bias", type=_positive_float, default=None, metavar="B",
                   help="relative size of the bias to detect: |E X - g| = B |g| (e.g. 0.05); "
                        "required unless --alternative names a mutant (its exact bias)")
    p.add_argument("--power", type=_unit_interval, default=0.9,
                   help="probability of detecting the bias")
    p.add_argument("--alpha", type=_unit_interval, default=0.01,
                   help="false-alarm rate of the test")
    p.add_argument("--budget", type=_positive_int, nargs="+", default=None, metavar="N",
                   help="budgets (transitions per estimate) to tabulate (default: 1000 "
                        "4000 16000 64000 256000, those that fit one episode)")
    p.add_argument("--direction", choices=["worst", "gradient"], default=None,
                   help="direction of the bias: least detectable (a guarantee; the "
                        "default) or along g (a scale error, E X = (1 + B) g)")
    p.add_argument("--alternative", default=None, metavar="MUTANT",
                   help="plan against a shipped mutant of the estimator (a BC-HG family "
                        "mutant of bc-hg or bc-hg-baseline, e.g. sign-flip or "
                        "tau-not-inverse; other names are refused with the list): its exact "
                        "mean and covariance instead of the pure shift (a bias with the "
                        "estimator's own covariance); replaces --bias and --direction")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    output(p)
    p.set_defaults(func=_cmd_plan)
    p = command("estimators", "list the estimators: name, bias, critics, access")
    p.add_argument("--json", action="store_true", help="as JSON")
    output(p)
    p.set_defaults(func=_cmd_estimators)
    p = command("sweep", "run a validation sweep (problems x estimators x budgets x "
                         "replicates) into an SQLite file; resumable")
    p.add_argument("spec", help="sweep file (format exact-bilevel-sweep/1)")
    p.add_argument("--db", required=True, metavar="RESULTS.sqlite",
                   help="results file: created if the path does not exist, or completed if "
                        "it holds rows of the same problems (content hashes) and settings; "
                        "concurrent sweeps into one file split the work")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes (local pool, or a Dask LocalCluster)")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="the standard library's process pool, or Dask distributed "
                        "(the dask extra)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler (default: a LocalCluster)")
    p.add_argument("--no-worker-timeout", type=_positive_float, default=60.0,
                   metavar="SECONDS",
                   help="Dask: stop (exit 2, rows kept) after this long with no worker")
    p.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="Dask: seconds to reach --scheduler (exit 2 if it does not answer)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)
    p = command("report", "write sweep_report.md and .png from a sweep's results file")
    p.add_argument("--db", required=True, metavar="RESULTS.sqlite",
                   help="results file (opened read-only)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--alpha", type=_unit_interval, default=0.01,
                   help="false-alarm rate of the unbiasedness verdicts")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_report)
    p = command("reproduce", "run a paper's experiment with exact ground truth; write "
                             "reproduce_NAME.md and .png into --out")
    p.add_argument("name", choices=REPRODUCTIONS, help="the experiment")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (the committed results live in verification/)")
    p.add_argument("--full", action="store_true",
                   help="the paper's run size (default: a CI-sized run that says so)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="leader steps (default: from the run size)")
    p.add_argument("--seeds", type=_positive_int, default=None,
                   help="seeds (default: from the run size)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes for the runs")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_reproduce)
    return parser


class _GuardedStdout:
    """``sys.stdout`` during a command: an ``OSError`` writing it (a full device, an I/O
    error) becomes an :class:`~exact_bilevel.core._files.OutputPathError` naming stdout
    (exit 2); a closed pipe stays a ``BrokenPipeError`` (exit 141)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _stdout_error(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _stdout_error(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stdout_error(exc: OSError) -> Exception:
    from .core._files import OutputPathError

    return OutputPathError("stdout", "(standard output)",
                           f"cannot write: {exc.strerror or exc}", exc.errno)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .core.heap import retain_heap

    retain_heap()  # our own process: keep freed heap for reuse (core.heap)
    from .core._files import OutputPathError, check_output
    from .core.errors import ConvergenceError, NumericalError

    stdout, sys.stdout = sys.stdout, _GuardedStdout(sys.stdout)
    try:
        if getattr(args, "output", None) not in (None, "-"):  # refused before the work
            check_output(args.output, option="--output", inputs=_inputs(args))
        with warnings.catch_warnings():
            # numpy's overflow / invalid-value RuntimeWarnings are not the message: every
            # quantity a command reports is checked finite and a non-finite one is a
            # NumericalError naming it (exit 1), so the warnings would only be noise
            warnings.simplefilter("ignore", RuntimeWarning)
            code = int(args.func(args))
        sys.stdout.flush()  # a full stdout fails here, not silently at exit
        return code
    except OutputPathError as exc:  # --output, --out, stdout: exit 2, one line
        print(f"exact-bilevel: error: {exc}", file=sys.stderr)
        if exc.option == "stdout":
            _silence_stdout()
        return EXIT_INPUT
    except (ValueError, OverflowError, RecursionError) as exc:
        print(f"exact-bilevel: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (ConvergenceError, NumericalError, FloatingPointError) as exc:
        print(f"exact-bilevel: {exc}", file=sys.stderr)
        return EXIT_NUMERICAL
    except MemoryError:
        print("exact-bilevel: error: out of memory (lower the sizes, or the memory budget "
              "EXACT_BILEVEL_MAX_BYTES so that it is checked before allocating)",
              file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        print("exact-bilevel: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, exit code 3
        print(f"exact-bilevel: internal error: {type(exc).__name__}: {exc} (please report)",
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush
    does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
