r"""The ``exact-bilevel-lqr/1`` file format: a soft-LQR bilevel problem and a point ``x``.

::

    {
      "format": "exact-bilevel-lqr/1",
      "follower": {"A": [[..]], "B": [[..]], "Q": [[..]], "R": [[..]], "gamma": 0.9, "tau": 0.1,
                   "W": [[..]], "C": [[..]], "K_L": [[..]], "Sigma_L": [[..]]},  # W.. optional
      "parameters": {"d": 8, "link": "sigmoid", "names": [..],
                     "jacobian": {"A": [[[..d..]]], ...}},  # dM[i][j]/dz[k]
      "leader": {"Q_L": [[..]], "R_L": [[..]], "gamma_L": 0.9, "horizon": 100,
                 "bump": {"weight": 1, "center": [..], "precision": [[..]]},
                 "hinge": {"weight": 1, "index": 0}, "cost_weight": [..]},   # all optional
      "initial": {"mean": [..], "cov": [[..]]},                 # optional, default 0
      "x": [..]
    }

``horizon: null`` sums the leader's return to the rounding floor. Unknown fields are
errors naming the field; every value goes through :func:`.model.make_problem`'s
checks. The JSON Schema is ``exact_bilevel.io.schema("lqr")``. Reading from disk
(bounded, budgeted, strict JSON) is :func:`exact_bilevel.io.load_any`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core._validate import real_array
from .model import FIELDS, LQRProblem, make_problem

LQR_FORMAT = "exact-bilevel-lqr/1"
_FOLLOWER = {"A", "B", "Q", "R", "gamma", "tau", "W", "C", "K_L", "Sigma_L"}
_PARAMS = {"d", "link", "names", "jacobian"}
_LEADER = {"Q_L", "R_L", "gamma_L", "horizon", "bump", "hinge", "cost_weight"}
_TOP = {"format", "follower", "parameters", "leader", "initial", "x"}


def _obj(name: str, value: object, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"{name}.{unknown[0]}: unknown field; allowed: {sorted(allowed)}")
    for r in required:
        if r not in value:
            raise ValueError(f"{name}.{r}: required field is missing")
    return value


def problem_from_dict(data: object) -> tuple[LQRProblem, np.ndarray]:
    """Validate a parsed ``exact-bilevel-lqr/1`` object; returns ``(problem, x)``."""
    top = _obj("lqr file", data, _TOP, ("format", "follower", "x"))
    if top["format"] != LQR_FORMAT:
        raise ValueError(f"format: {top['format']!r} is not {LQR_FORMAT!r}")
    f = _obj("follower", top["follower"], _FOLLOWER, ("A", "B", "Q", "R", "gamma", "tau"))
    par = _obj("parameters", top.get("parameters", {}), _PARAMS)
    lead = _obj("leader", top.get("leader", {}), _LEADER)
    init = _obj("initial", top.get("initial", {}), {"mean", "cov"})
    jac = _obj("parameters.jacobian", par.get("jacobian", {}), set(FIELDS))
    d = par.get("d")
    if d is not None and (isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 10**6):
        raise ValueError(f"parameters.d = {d!r}: must be an integer in [0, 1e6]")
    kw: dict[str, Any] = {k: f[k] for k in f}
    bump = _obj("leader.bump", lead.get("bump", {}), {"weight", "center", "precision"},
                ("weight",) if "bump" in lead else ())
    hinge = _obj("leader.hinge", lead.get("hinge", {}), {"weight", "index"},
                 ("weight",) if "hinge" in lead else ())
    x = real_array("x", top["x"], ndim=1)
    names = par.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("parameters.names: must be a list of strings")
    names = tuple(names)
    if names and len(names) != (x.size if d is None else d):
        raise ValueError(f"parameters.names: {len(names)} names, but "
                         + (f"x has {x.size} entries" if d is None else f"parameters.d = {d}")
                         + " (one name per parameter)")
    problem = make_problem(
        **kw, jac={k: v for k, v in jac.items()}, d=x.size if d is None else d,
        link=par.get("link", "identity"), names=names,
        Q_L=lead.get("Q_L"), R_L=lead.get("R_L"), gamma_L=lead.get("gamma_L"),
        horizon=lead.get("horizon", 100), cost_weight=lead.get("cost_weight"),
        bump_weight=bump.get("weight", 0.0), bump_center=bump.get("center"),
        bump_precision=bump.get("precision"), hinge_weight=hinge.get("weight", 0.0),
        hinge_index=hinge.get("index", 0), mu0=init.get("mean"), Sigma0=init.get("cov"))
    return problem, problem.check_x(x)


def problem_to_dict(problem: LQRProblem, x: object) -> dict[str, Any]:
    """The ``exact-bilevel-lqr/1`` object of ``problem`` at ``x`` (round-trips exactly)."""
    b, lr = problem.base, problem.leader
    return {
        "format": LQR_FORMAT,
        "follower": {"A": b["A"].tolist(), "B": b["B"].tolist(), "Q": b["Q"].tolist(),
                     "R": b["R"].tolist(), "gamma": problem.gamma, "tau": problem.tau,
                     "W": problem.W.tolist(),
                     **({"C": b["C"].tolist(), "K_L": b["K_L"].tolist(),
                         "Sigma_L": problem.Sigma_L.tolist()} if problem.p else {})},
        "parameters": {"d": problem.d, "link": problem.link, "names": list(problem.names),
                       "jacobian": {k: v.tolist() for k, v in problem.jac.items()}},
        "leader": {"Q_L": lr.Q_L.tolist(), "R_L": lr.R_L.tolist(), "gamma_L": problem.gamma_L,
                   "horizon": problem.horizon,
                   "bump": {"weight": lr.bump_weight, "center": lr.bump_center.tolist(),
                            "precision": lr.bump_precision.tolist()},
                   "hinge": {"weight": lr.hinge_weight, "index": lr.hinge_index},
                   "cost_weight": lr.cost_weight.tolist()},
        "initial": {"mean": problem.mu0.tolist(), "cov": problem.Sigma0.tolist()},
        "x": np.asarray(x, dtype=float).tolist(),
    }
