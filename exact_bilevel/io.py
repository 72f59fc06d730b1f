r"""Problem files: a versioned JSON format (``"format": "exact-bilevel/1"``).

A file describes an affine-reward bilevel problem with the leader-return
objective, and the point ``x`` to evaluate it at::

    {
      "format": "exact-bilevel/1",
      "gamma": 0.9,                      # follower discount, 0 <= gamma < 1
      "tau": 0.5,                        # follower temperature, > 0
      "transitions": [S][A][S],          # P[s][a][s'], rows sum to 1 (tol 1e-10)
        # or softmax-logit transitions depending on x:
        # {"logits": [S][A][S] (null = -inf, a structural zero),
        #  "features": [S][A][S][d]}
      "initial": [S],                    # optional, default uniform
      "follower_reward": {"base": [S][A], "features": [S][A][d]},   # features optional
      "leader_reward":   {"base": [S][A], "features": [S][A][d]},   # features optional
      "leader_gamma": 0.9,               # optional, default gamma
      "x": [d]
    }

with ``r_x = base + features @ x`` for both rewards and the objective
``F(x) = sum_s rho(s) V_L(s)``. Unknown fields and unknown format versions
are rejected. Only JSON is read; nothing is unpickled or evaluated. Every
error is a ``ValueError`` whose message names the field (with its index) and
the rule.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from . import _validate
from .objectives import LeaderReturn
from .parameterizations import (
    AffineReward,
    FixedReward,
    FixedTransitions,
    RewardModel,
    SoftmaxTransitions,
    TransitionModel,
)
from .problem import BilevelProblem

FORMAT = "exact-bilevel/1"
_TOP_REQUIRED = ("format", "gamma", "tau", "transitions", "follower_reward", "leader_reward", "x")
_TOP_OPTIONAL = ("initial", "leader_gamma")
_REWARD_FIELDS = ("base", "features")
_SOFTMAX_FIELDS = ("logits", "features")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _nested_numbers(name: str, value: object, depth: int, *, allow_null: bool = False) -> None:
    """Check ``value`` is a list nested ``depth`` deep whose leaves are JSON numbers."""
    stack: list[tuple[object, str, int]] = [(value, name, depth)]
    while stack:
        v, where, k = stack.pop()
        if k == 0:
            if _is_number(v):
                if not math.isfinite(v):  # type: ignore[arg-type]
                    raise ValueError(f"{where} = {v}: must be finite")
                continue
            if v is None and allow_null:
                continue
            raise ValueError(f"{where}: must be a number, got {type(v).__name__} {v!r}"[:200])
        if not isinstance(v, list):
            raise ValueError(f"{where}: must be a list nested {k} more level(s), "
                             f"got {type(v).__name__}"[:200])
        stack.extend((item, f"{where}[{i}]", k - 1) for i, item in reversed(list(enumerate(v))))


def _array(name: str, value: object, shape: tuple[int | None, ...]) -> np.ndarray:
    _nested_numbers(name, value, len(shape))
    return _validate.real_array(name, value, shape=shape)


def _object(name: str, value: object, required: tuple[str, ...],
            optional: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name}: must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; allowed: "
                         f"{sorted(required + optional)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise ValueError(f"{name}: missing required field(s) {missing}")
    return value


def _reward(name: str, value: object, S: int, A: int, d: int) -> RewardModel:
    obj = _object(name, value, ("base",), ("features",))
    base = _array(f"{name}.base", obj["base"], (S, A))
    if "features" not in obj:
        return FixedReward(base, d)
    return AffineReward(base, _array(f"{name}.features", obj["features"], (S, A, d)), name=name)


def _transitions(value: object, d: int) -> TransitionModel:
    if isinstance(value, dict):
        obj = _object("transitions", value, _SOFTMAX_FIELDS, ())
        _nested_numbers("transitions.logits", obj["logits"], 3, allow_null=True)
        logits = np.array([[[-np.inf if z is None else z for z in row] for row in block]
                           for block in obj["logits"]], dtype=object)
        if logits.ndim != 3 or logits.shape[0] != logits.shape[2]:
            raise ValueError(f"transitions.logits: shape must be (S, A, S), got {logits.shape}")
        S, A, _ = logits.shape
        feats = _array("transitions.features", obj["features"], (S, A, S, d))
        return SoftmaxTransitions(logits.astype(float), feats)
    _nested_numbers("transitions", value, 3)
    P = _validate.real_array("transitions", value, ndim=3)
    return FixedTransitions(P, d)


def problem_from_dict(data: object) -> tuple[BilevelProblem, np.ndarray]:
    """Build ``(problem, x)`` from a parsed problem file (see the module docstring)."""
    obj = _object("problem", data, _TOP_REQUIRED, _TOP_OPTIONAL)
    if obj["format"] != FORMAT:
        raise ValueError(f"format: {obj['format']!r} is not a known version; this reader "
                         f"supports {FORMAT!r}")
    x = _array("x", obj["x"], (None,))
    d = x.shape[0]
    transitions = _transitions(obj["transitions"], d)
    S, A = transitions.n_states, transitions.n_actions
    if S < 1 or A < 1:
        raise ValueError(f"transitions: need at least one state and one action, got (S, A) = "
                         f"({S}, {A})")
    follower = _reward("follower_reward", obj["follower_reward"], S, A, d)
    leader = _reward("leader_reward", obj["leader_reward"], S, A, d)
    for key in ("gamma", "tau", "leader_gamma"):
        if key in obj and not _is_number(obj[key]):
            raise ValueError(f"{key}: must be a number, got {type(obj[key]).__name__}")
    initial = _array("initial", obj["initial"], (S,)) if "initial" in obj else None
    objective = LeaderReturn(leader, leader_gamma=obj.get("leader_gamma"))
    problem = BilevelProblem(follower, transitions, objective, gamma=obj["gamma"],
                             tau=obj["tau"], initial=initial)
    return problem, x


#: Format tag of the golden-vector files in ``verification/golden``.
GOLDEN_FORMAT = "exact-bilevel-golden/1"


def load_problem(path: str | os.PathLike[str]) -> tuple[BilevelProblem, np.ndarray]:
    """Read a problem file; returns ``(problem, x)``.

    A golden-vector file (format ``exact-bilevel-golden/1``, see
    ``verification/golden``) is accepted too: its ``problem`` field is read.
    Raises ``ValueError`` for a missing, unreadable or invalid file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{os.fspath(path)}: cannot read file ({exc})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{os.fspath(path)}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("format") == GOLDEN_FORMAT:
        if "problem" not in data:
            raise ValueError("problem: missing in a golden-vector file")
        data = data["problem"]
    return problem_from_dict(data)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; non-finite values are not allowed")


def _reward_to_dict(model: RewardModel) -> dict[str, Any]:
    if isinstance(model, FixedReward):
        return {"base": model.base.tolist()}
    if isinstance(model, AffineReward):
        return {"base": model.base.tolist(), "features": model.features.tolist()}
    raise ValueError(f"{type(model).__name__}: not expressible in format {FORMAT}")


def problem_to_dict(problem: BilevelProblem, x: object) -> dict[str, Any]:
    """The file form of ``(problem, x)``; inverse of :func:`problem_from_dict`.

    Supports affine/fixed rewards, fixed or softmax-logit transitions and the
    unregularised :class:`~exact_bilevel.objectives.LeaderReturn` objective.
    """
    obj = problem.objective
    if not isinstance(obj, LeaderReturn) or obj.regularizer is not None:
        raise ValueError(f"objective {obj!r}: only an unregularised LeaderReturn is "
                         f"expressible in format {FORMAT}")
    x = problem.check_x(x)
    tr = problem.transitions
    zero = np.zeros(problem.n_params)
    trans: Any
    if isinstance(tr, FixedTransitions):
        trans = tr.value(zero).tolist()
    elif isinstance(tr, SoftmaxTransitions):
        base = tr.logits(zero)
        trans = {"logits": np.where(np.isfinite(base), base, None).tolist(),
                 "features": tr.features.tolist()}
    else:
        raise ValueError(f"{type(tr).__name__}: not expressible in format {FORMAT}")
    out: dict[str, Any] = {
        "format": FORMAT, "gamma": problem.gamma, "tau": problem.tau,
        "transitions": trans, "initial": problem.initial.tolist(),
        "follower_reward": _reward_to_dict(problem.follower_reward),
        "leader_reward": _reward_to_dict(obj.leader_reward),
        "x": x.tolist(),
    }
    if obj.leader_gamma is not None:
        out["leader_gamma"] = obj.leader_gamma
    return out


def save_problem(path: str | os.PathLike[str], problem: BilevelProblem, x: object) -> None:
    """Write ``(problem, x)`` as a problem file (floats round-trip exactly via ``repr``)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(problem_to_dict(problem, x), fh)
