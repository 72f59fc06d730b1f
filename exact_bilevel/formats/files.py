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
        # features may also be sparse: {"entries": [[s, a, k, value], ...]}
        # or tabular incentives instead of features:
        # {"base": ..., "incentive": {"states": [s_0, ...] | "pairs": [[s, a], ...],
        #                             "scale": c}}
      "leader_reward":   {"base": [S][A], "features": ...},         # as above
      "leader_gamma": 0.9,               # optional, default gamma
      "regularizer": {"kind": "l2", "weight": w, "center": [d]},    # optional
      "objective": {"kind": "leader_return"},   # optional (default), or
                   {"kind": "quadratic"}        # f = 1/2|x|^2 + 1/2|pi|_F^2: no leader_*
      "x": [d]
    }

with ``r_x = base + features @ x`` for both rewards and the objective
``F(x) = sum_s rho(s) V_L(s) + reg(x)``. Unknown fields and unknown format
versions are rejected. Size caps (checked before any dense array is built):
files of at most :data:`MAX_FILE_BYTES`; ``S*A*S`` and ``S*A*S*d`` at most
:data:`MAX_ENTRIES`. The JSON Schema of the format ships as
``exact_bilevel/schema/problem.schema.json`` (:func:`schema`). Only JSON is
read; nothing is unpickled or evaluated. Every error is a ``ValueError`` whose
message names the field (with its index) and the rule.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import numpy as np
import scipy.sparse

from ..core import _validate
from ..core._budget import check_allocation
from ..core._files import atomic_write
from ..core.objectives import L2Penalty, LeaderReturn, Objective, QuadraticObjective, l2_penalty
from ..core.parameterizations import (
    AffineReward,
    FixedReward,
    FixedTransitions,
    RewardModel,
    SoftmaxTransitions,
    TransitionModel,
    tabular_incentive,
)
from ..core.problem import BilevelProblem
from ..games.model import MarkovGame
from ..lqr.files import LQR_FORMAT
from ..lqr.files import problem_from_dict as lqr_from_dict
from ..lqr.files import problem_to_dict as lqr_to_dict
from ..lqr.model import LQRProblem

FORMAT = "exact-bilevel/1"
#: Largest problem file :func:`load_problem` reads.
MAX_FILE_BYTES = 512 * 2**20
#: Largest dense array (``S*A*S`` transitions, ``S*A*S*d`` logit features) a file may imply.
MAX_ENTRIES = 50_000_000
_TOP_REQUIRED = ("format", "gamma", "tau", "transitions", "follower_reward", "x")
_TOP_OPTIONAL = ("initial", "leader_reward", "leader_gamma", "regularizer", "objective")
_SOFTMAX_FIELDS = ("logits", "features")


def schema(kind: str = "problem") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of format ``exact-bilevel/1`` (``kind="problem"``),
    ``exact-bilevel-game/1`` (``kind="game"``), ``exact-bilevel-sweep/1``
    (``kind="sweep"``) or ``exact-bilevel-lqr/1`` (``kind="lqr"``)."""
    from importlib.resources import files

    if kind not in ("problem", "game", "sweep", "lqr"):
        raise ValueError(f"kind = {kind!r}: must be 'problem', 'game', 'sweep' or 'lqr'")
    return json.loads(files("exact_bilevel").joinpath(f"schema/{kind}.schema.json").read_text())


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


def _int(name: str, v: object, upper: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < upper:
        raise ValueError(f"{name} = {v!r}: must be an integer in [0, {upper})"[:200])
    return v


def _sparse_features(name: str, value: object, S: int, A: int, d: int) -> scipy.sparse.spmatrix:
    obj = _object(name, value, ("entries",), ())
    entries = obj["entries"]
    if not isinstance(entries, list):
        raise ValueError(f"{name}.entries: must be a list of [s, a, k, value]")
    rows, cols, vals, seen = [], [], [], set()
    for i, e in enumerate(entries):
        where = f"{name}.entries[{i}]"
        if not isinstance(e, list) or len(e) != 4:
            raise ValueError(f"{where}: must be [s, a, k, value]")
        s_, a_, k_ = _int(f"{where}[0]", e[0], S), _int(f"{where}[1]", e[1], A), \
            _int(f"{where}[2]", e[2], d)
        if not _is_number(e[3]) or not math.isfinite(e[3]):
            raise ValueError(f"{where}[3] = {e[3]!r}: must be a finite number"[:200])
        if (s_, a_, k_) in seen:
            raise ValueError(f"{where}: entry ({s_}, {a_}, {k_}) appears twice")
        seen.add((s_, a_, k_))
        rows.append(s_ * A + a_)
        cols.append(k_)
        vals.append(float(e[3]))
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(S * A, d))


def _incentive(name: str, value: object, base: np.ndarray, d: int) -> RewardModel:
    obj = _object(name, value, ("scale",), ("states", "pairs"))
    if ("states" in obj) == ("pairs" in obj):
        raise ValueError(f"{name}: give exactly one of 'states' or 'pairs'")
    if not _is_number(obj["scale"]) or not math.isfinite(obj["scale"]):
        raise ValueError(f"{name}.scale: must be a finite number")
    S, A = base.shape
    key = "states" if "states" in obj else "pairs"
    items = obj[key]
    if not isinstance(items, list) or len(items) != d:
        raise ValueError(f"{name}.{key}: must be a list of d = {d} items")
    if key == "states":
        states = [_int(f"{name}.states[{i}]", s_, S) for i, s_ in enumerate(items)]
        return tabular_incentive(base, states=states, scale=obj["scale"])
    pairs = []
    for i, pr in enumerate(items):
        if not isinstance(pr, list) or len(pr) != 2:
            raise ValueError(f"{name}.pairs[{i}]: must be [s, a]")
        pairs.append((_int(f"{name}.pairs[{i}][0]", pr[0], S),
                      _int(f"{name}.pairs[{i}][1]", pr[1], A)))
    return tabular_incentive(base, pairs=pairs, scale=obj["scale"])


def _reward(name: str, value: object, S: int, A: int, d: int) -> RewardModel:
    obj = _object(name, value, ("base",), ("features", "incentive"))
    base = _array(f"{name}.base", obj["base"], (S, A))
    if "features" in obj and "incentive" in obj:
        raise ValueError(f"{name}: give at most one of 'features' or 'incentive'")
    if "incentive" in obj:
        return _incentive(f"{name}.incentive", obj["incentive"], base, d)
    if "features" not in obj:
        return FixedReward(base, d)
    if isinstance(obj["features"], dict):
        return AffineReward(base, _sparse_features(f"{name}.features", obj["features"], S, A, d),
                            name=name)
    return AffineReward(base, _array(f"{name}.features", obj["features"], (S, A, d)), name=name)


def _check_size(name: str, shape: tuple[int, ...]) -> None:
    if math.prod(shape) > MAX_ENTRIES:
        raise ValueError(f"{name}: shape {shape} has more than MAX_ENTRIES = {MAX_ENTRIES} "
                         "entries")


def _outer_len(value: object, depth: int) -> tuple[int, ...]:
    """Lengths along the first element of each nesting level (for the size cap)."""
    out = []
    for _ in range(depth):
        if not isinstance(value, list) or not value:
            break
        out.append(len(value))
        value = value[0]
    return tuple(out)


def _objective(obj: dict[str, Any], S: int, A: int, d: int) -> Objective:
    spec = obj.get("objective", {"kind": "leader_return"})
    spec = _object("objective", spec, ("kind",), ())
    if spec["kind"] == "quadratic":
        extra = [k for k in ("leader_reward", "leader_gamma", "regularizer") if k in obj]
        if extra:
            raise ValueError(f"objective: kind 'quadratic' takes no {extra}")
        return QuadraticObjective()
    if spec["kind"] != "leader_return":
        raise ValueError(f"objective.kind = {spec['kind']!r}: must be 'leader_return' or "
                         "'quadratic'"[:200])
    if "leader_reward" not in obj:
        raise ValueError("leader_reward: required for the leader_return objective")
    leader = _reward("leader_reward", obj["leader_reward"], S, A, d)
    reg = None
    if "regularizer" in obj:
        r = _object("regularizer", obj["regularizer"], ("kind", "weight"), ("center",))
        if r["kind"] != "l2":
            raise ValueError(f"regularizer.kind = {r['kind']!r}: must be 'l2'"[:200])
        if not _is_number(r["weight"]) or not math.isfinite(r["weight"]):
            raise ValueError("regularizer.weight: must be a finite number")
        center = _array("regularizer.center", r["center"], (d,)) if "center" in r else None
        reg = l2_penalty(r["weight"], center)
    return LeaderReturn(leader, leader_gamma=obj.get("leader_gamma"), regularizer=reg)


def _transitions(value: object, d: int) -> TransitionModel:
    if isinstance(value, dict):
        obj = _object("transitions", value, _SOFTMAX_FIELDS, ())
        _check_size("transitions.logits", _outer_len(obj["logits"], 3))
        _nested_numbers("transitions.logits", obj["logits"], 3, allow_null=True)
        logits = np.array([[[-np.inf if z is None else z for z in row] for row in block]
                           for block in obj["logits"]], dtype=object)
        if logits.ndim != 3 or logits.shape[0] != logits.shape[2]:
            raise ValueError(f"transitions.logits: shape must be (S, A, S), got {logits.shape}")
        S, A, _ = logits.shape
        _check_size("transitions.features", (S, A, S, d))
        feats = _array("transitions.features", obj["features"], (S, A, S, d))
        return SoftmaxTransitions(logits.astype(float), feats)
    _check_size("transitions", _outer_len(value, 3))
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
    if d < 1:
        raise ValueError("x: must have at least one parameter")
    transitions = _transitions(obj["transitions"], d)
    S, A = transitions.n_states, transitions.n_actions
    if S < 1 or A < 1:
        raise ValueError(f"transitions: need at least one state and one action, got (S, A) = "
                         f"({S}, {A})")
    check_allocation("follower reward Jacobian dr[S, A, d] (forward mode, estimators)",
                     (S, A, d))
    follower = _reward("follower_reward", obj["follower_reward"], S, A, d)
    for key in ("gamma", "tau", "leader_gamma"):
        if key in obj and not _is_number(obj[key]):
            raise ValueError(f"{key}: must be a number, got {type(obj[key]).__name__}")
    objective = _objective(obj, S, A, d)
    initial = _array("initial", obj["initial"], (S,)) if "initial" in obj else None
    problem = BilevelProblem(follower, transitions, objective, gamma=obj["gamma"],
                             tau=obj["tau"], initial=initial)
    return problem, x


#: Format tag of the golden-vector files in ``verification/golden``.
GOLDEN_FORMAT = "exact-bilevel-golden/1"


#: Format tag of Markov-game files.
GAME_FORMAT = "exact-bilevel-game/1"
_GAME_REQUIRED = ("format", "gamma", "tau", "transitions", "follower_reward", "leader_reward",
                  "initial", "observes", "x")
_GAME_OPTIONAL = ("leader_gamma",)


def game_from_dict(data: object) -> tuple[MarkovGame, np.ndarray]:
    """Build ``(game, theta)`` from a parsed Markov-game file::

        {"format": "exact-bilevel-game/1", "gamma": g, "tau": t,
         "transitions": [S][AL][AF][S], "follower_reward": [S][AL][AF],
         "leader_reward": [S][AL][AF], "initial": [S],
         "observes": "state" | "state_and_leader_action",
         "leader_gamma": gL (optional), "x": [S * AL]}

    ``x`` holds the leader's softmax logits ``theta[s, aL]`` flattened row-major.
    """
    obj = _object("game", data, _GAME_REQUIRED, _GAME_OPTIONAL)
    if obj["format"] != GAME_FORMAT:
        raise ValueError(f"format: {obj['format']!r} is not a known version; this reader "
                         f"supports {GAME_FORMAT!r}")
    _check_size("transitions", _outer_len(obj["transitions"], 4))
    _nested_numbers("transitions", obj["transitions"], 4)
    P = _validate.real_array("transitions", obj["transitions"], ndim=4)
    S, AL, AF, _ = P.shape
    if obj.get("observes") == "state_and_leader_action":  # the follower's augmented MDP
        check_allocation("augmented transition Jacobian [S*AL, AF, S*AL, S*AL]",
                         (S * AL, AF, S * AL, S * AL))
    rF = _array("follower_reward", obj["follower_reward"], (S, AL, AF))
    rL = _array("leader_reward", obj["leader_reward"], (S, AL, AF))
    rho = _array("initial", obj["initial"], (S,))
    for key in ("gamma", "tau", "leader_gamma"):
        if key in obj and not _is_number(obj[key]):
            raise ValueError(f"{key}: must be a number, got {type(obj[key]).__name__}")
    if not isinstance(obj["observes"], str):
        raise ValueError("observes: must be a string")
    game = MarkovGame(P, rF, rL, rho, obj["gamma"], obj["tau"], observes=obj["observes"],
                      leader_gamma=obj.get("leader_gamma"))
    x = _array("x", obj["x"], (S * AL,))
    return game, x


def game_to_dict(game: MarkovGame, x: object) -> dict[str, Any]:
    """The file form of ``(game, theta)``; inverse of :func:`game_from_dict`. Only the
    tabular leader has a file form (``game.leader is None``)."""
    if game.leader is not None:
        raise ValueError(f"leader: a {type(game.leader).__name__} leader has no file form "
                         "(the game format stores tabular logits x[s * AL + aL])")
    x = _validate.parameter_vector("x", x, game.n_params)
    out: dict[str, Any] = {
        "format": GAME_FORMAT, "gamma": game.gamma, "tau": game.tau,
        "transitions": game.transitions.tolist(),
        "follower_reward": game.follower_reward.tolist(),
        "leader_reward": game.leader_reward.tolist(), "initial": game.initial.tolist(),
        "observes": game.observes, "x": x.tolist()}
    if game.leader_gamma is not None:
        out["leader_gamma"] = game.leader_gamma
    return out


def load_any(path: str | os.PathLike[str]
             ) -> tuple[BilevelProblem | MarkovGame | LQRProblem, np.ndarray]:
    """A problem, golden-vector, Markov-game or soft-LQR file, dispatched on its ``format``."""
    data = _read_json(path)
    if isinstance(data, dict) and data.get("format") == GAME_FORMAT:
        return game_from_dict(data)
    if isinstance(data, dict) and data.get("format") == LQR_FORMAT:
        return lqr_from_dict(data)
    if isinstance(data, dict) and data.get("format") == GOLDEN_FORMAT and isinstance(
            data.get("problem"), dict) and data["problem"].get("format") == LQR_FORMAT:
        return lqr_from_dict(data["problem"])          # a soft-LQR golden vector
    return _problem_from_data(data)


#: Memory the JSON reader needs per number in the file (Python objects while parsing;
#: measured), checked against the budget before parsing.
PARSE_BYTES_PER_NUMBER = 230


def _read_json(path: str | os.PathLike[str]) -> object:
    """Read and parse a file (``"-"``: standard input), reading at most
    :data:`MAX_FILE_BYTES` + 1 bytes whatever the file claims (pipes, devices)."""
    name = os.fspath(path)
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            name = "<stdin>"
        else:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{name}: cannot read file ({exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"{name}: more than MAX_FILE_BYTES = {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 text ({exc})") from None
    numbers = text.count(",") + text.count("[") + 1  # an upper bound on the values
    check_allocation(f"{name}: parsing about {numbers} JSON values", (numbers,),
                     itemsize=PARSE_BYTES_PER_NUMBER)
    return _parse(text, name)


read_json = _read_json
"""Public name of the bounded, duplicate-key-rejecting JSON reader (``"-"``: stdin)."""


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]}: overflows float64 (non-finite numbers are not allowed)")
    return value


def _parse_int(text: str) -> int | float:
    if len(text.lstrip("-")) > 308:
        raise ValueError(f"{text[:20]}...: an integer of {len(text)} digits overflows float64")
    return int(text)


def _parse(text: str, source: str) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys,
                          parse_float=_parse_float, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{source}: JSON nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``object_pairs_hook``: a key given twice is an error, not a silent overwrite."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{key}: duplicate key in a JSON object (each field once)")
        out[key] = value
    return out


def _problem_from_data(data: object) -> tuple[BilevelProblem, np.ndarray]:
    if isinstance(data, dict) and data.get("format") == GOLDEN_FORMAT:
        if "problem" not in data:
            raise ValueError("problem: missing in a golden-vector file")
        data = data["problem"]
    return problem_from_dict(data)


def load_problem(path: str | os.PathLike[str]) -> tuple[BilevelProblem, np.ndarray]:
    """Read a problem file; returns ``(problem, x)``.

    A golden-vector file (format ``exact-bilevel-golden/1``, see
    ``verification/golden``) is accepted too: its ``problem`` field is read.
    Raises ``ValueError`` for a missing, unreadable or invalid file.
    """
    return _problem_from_data(_read_json(path))


def problem_from_json(text: str, source: str = "problem") -> tuple[BilevelProblem, np.ndarray]:
    """Parse a problem (or golden-vector) file's text; see :func:`load_problem`."""
    return _problem_from_data(_parse(text, source))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; non-finite values are not allowed")


def _reward_to_dict(model: RewardModel) -> dict[str, Any]:
    if isinstance(model, FixedReward):
        return {"base": model.base.tolist()}
    if isinstance(model, AffineReward):
        if model.is_sparse:
            phi = model.features.reshape(model.n_states, model.n_actions, model.n_params)
            idx = np.argwhere(phi != 0)
            return {"base": model.base.tolist(),
                    "features": {"entries": [[int(s_), int(a_), int(k_), float(phi[s_, a_, k_])]
                                             for s_, a_, k_ in idx]}}
        return {"base": model.base.tolist(), "features": model.features.tolist()}
    raise ValueError(f"{type(model).__name__}: not expressible in format {FORMAT}")


def problem_to_dict(problem: BilevelProblem, x: object) -> dict[str, Any]:
    """The file form of ``(problem, x)``; inverse of :func:`problem_from_dict`.

    Supports fixed, affine (dense or sparse, e.g. tabular incentives) rewards;
    fixed or softmax-logit transitions; the :class:`LeaderReturn` objective with
    an optional :func:`~exact_bilevel.core.objectives.l2_penalty`, and the quadratic
    objective. Anything else raises ``ValueError``.
    """
    obj = problem.objective
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
    }
    if isinstance(obj, QuadraticObjective):
        out["objective"] = {"kind": "quadratic"}
    elif isinstance(obj, LeaderReturn):
        out["leader_reward"] = _reward_to_dict(obj.leader_reward)
        if obj.leader_gamma is not None:
            out["leader_gamma"] = obj.leader_gamma
        if isinstance(obj.regularizer, L2Penalty):
            reg: dict[str, Any] = {"kind": "l2", "weight": obj.regularizer.weight}
            if obj.regularizer.center is not None:
                reg["center"] = obj.regularizer.center.tolist()
            out["regularizer"] = reg
        elif obj.regularizer is not None:
            raise ValueError(f"regularizer {obj.regularizer!r}: only l2_penalty is expressible "
                             f"in format {FORMAT}")
    else:
        raise ValueError(f"objective {obj!r}: not expressible in format {FORMAT}")
    out["x"] = x.tolist()
    return out


def save_problem(path: str | os.PathLike[str], problem: BilevelProblem, x: object) -> None:
    """Write ``(problem, x)`` as a problem file (floats round-trip exactly via ``repr``).

    Validates and serialises first, then writes atomically (a temporary file in the
    same directory, fsync, rename): a failure never leaves a truncated or empty file
    where a good one was.
    """
    text = json.dumps(problem_to_dict(problem, x), allow_nan=False)
    atomic_write(path, text)



def save_lqr(path: str | os.PathLike[str], problem: LQRProblem, x: object) -> None:
    """Write ``(problem, x)`` as an ``exact-bilevel-lqr/1`` file, atomically."""
    atomic_write(path, json.dumps(lqr_to_dict(problem, x), allow_nan=False))
