"""The sweep file: what to run, validated strictly (errors name the field).

.. code-block:: json

  {"format": "exact-bilevel-sweep/1",
   "problems": [{"path": "problem.json"},
                {"random": {"states": 4, "actions": 3, "params": 2, "count": 2,
                            "parameterize": "reward", "objective": "leader_return",
                            "gamma": 0.8, "tau": 0.5, "seed": 0}}],
   "estimators": ["bc-hg", {"name": "hpgd", "critic": "monte-carlo"}, "mutant:sign-flip"],
   "budgets": [1000, 4000], "replicates": 60, "seed": 0}

Paths are relative to the sweep file. ``"mutant:NAME"`` sweeps a deliberately wrong
estimator of :data:`exact_bilevel.mutants.MUTANTS` (its rejection rate is the
tests' power); ``{"name": "mutant:NAME", "baseline": true}`` applies a BC-HG mutant
to ``bc-hg-baseline`` instead of ``bc-hg``. A random generator expands into ``count``
problems ``random-S{S}-A{A}-d{d}-{parameterize}-{objective}-{k}`` made by
:func:`exact_bilevel.experiments.examples.random_problem` with seed ``seed + k``.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

from ..estimators.registry import ESTIMATORS
from ..experiments.examples import OBJECTIVES, PARAMETERIZATIONS
from ..formats.files import read_json
from ..validation.mutants import MUTANTS

FORMAT = "exact-bilevel-sweep/1"
MAX_ROWS = 10_000_000


@dataclass(frozen=True)
class ProblemSpec:
    """A named problem: a file, or random-problem arguments."""

    name: str
    path: str | None = None
    random: tuple[tuple[str, Any], ...] | None = None


@dataclass(frozen=True)
class EstimatorSpec:
    """A registered estimator with a critic (``label`` names it in the results);
    ``baseline`` marks a BC-HG mutant applied to ``bc-hg-baseline``."""

    name: str
    critic: str
    baseline: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}[{self.critic}{',baseline' if self.baseline else ''}]"


@dataclass(frozen=True)
class SweepSpec:
    problems: tuple[ProblemSpec, ...]
    estimators: tuple[EstimatorSpec, ...]
    budgets: tuple[int, ...]
    replicates: int
    seed: int
    canonical: str  # the spec as canonical JSON (stored with the results)

    @property
    def n_rows(self) -> int:
        return (len(self.problems) * len(self.estimators) * len(self.budgets)
                * self.replicates)


def _int(name: str, v: object, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name} = {v!r}: must be an integer in [{lo}, {hi}]")
    return v


def _problems(items: object, base: pathlib.Path) -> list[ProblemSpec]:
    if not isinstance(items, list) or not items:
        raise ValueError("problems: must be a non-empty list")
    out: list[ProblemSpec] = []
    for i, item in enumerate(items):
        where = f"problems[{i}]"
        if not isinstance(item, dict) or len(set(item) & {"path", "random"}) != 1 or \
                set(item) - {"path", "random", "name"}:
            raise ValueError(f"{where}: must be {{'path': ...}} or {{'random': {{...}}}} "
                             "(optionally with 'name')")
        if "name" in item and (not isinstance(item["name"], str) or not item["name"]):
            raise ValueError(f"{where}.name = {item['name']!r}: must be a non-empty string")
        if "path" in item:
            if not isinstance(item["path"], str):
                raise ValueError(f"{where}.path: must be a string")
            path = str((base / item["path"]).resolve())
            out.append(ProblemSpec(str(item.get("name", pathlib.Path(path).stem)), path=path))
            continue
        r = item["random"]
        allowed = {"states", "actions", "params", "count", "parameterize", "objective",
                   "gamma", "tau", "seed"}
        if not isinstance(r, dict):
            raise ValueError(f"{where}.random: must be an object with keys among "
                             f"{sorted(allowed)}")
        if set(r) - allowed:
            raise ValueError(f"{where}.random.{sorted(set(r) - allowed)[0]}: unknown key; "
                             f"allowed: {sorted(allowed)}")
        S = _int(f"{where}.random.states", r.get("states", 4), 1, 1000)
        A = _int(f"{where}.random.actions", r.get("actions", 3), 1, 100)
        d = _int(f"{where}.random.params", r.get("params", 2), 1, 1000)
        count = _int(f"{where}.random.count", r.get("count", 1), 1, 10_000)
        par = r.get("parameterize", "reward")
        obj = r.get("objective", "leader_return")
        if par not in PARAMETERIZATIONS:
            raise ValueError(f"{where}.random.parameterize = {par!r}: one of {PARAMETERIZATIONS}")
        if obj not in OBJECTIVES:
            raise ValueError(f"{where}.random.objective = {obj!r}: one of {OBJECTIVES}")
        for key, ok, rule in (("gamma", lambda v: 0 <= v < 1, "must satisfy 0 <= gamma < 1"),
                              ("tau", lambda v: 0 < v < float("inf"), "must be a finite "
                               "number > 0")):
            v = r.get(key, 0.5)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
                raise ValueError(f"{where}.random.{key} = {v!r}: {rule}")
        seed = _int(f"{where}.random.seed", r.get("seed", 0), 0, 2**31)
        for k in range(count):
            args = dict(n_states=S, n_actions=A, n_params=d, seed=seed + k, parameterize=par,
                        objective=obj, gamma=float(r.get("gamma", 0.9)),
                        tau=float(r.get("tau", 0.5)))
            name = item.get("name", f"random-S{S}-A{A}-d{d}-{par}-{obj}")
            out.append(ProblemSpec(f"{name}-{seed + k}", random=tuple(sorted(args.items()))))
    names = [p.name for p in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"problems: name {dup!r} appears twice (give 'name')")
    return out


def _estimators(items: object) -> list[EstimatorSpec]:
    if not isinstance(items, list) or not items:
        raise ValueError("estimators: must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        spec = {"name": item} if isinstance(item, str) else item
        if not isinstance(spec, dict) or set(spec) - {"name", "critic", "baseline"} \
                or "name" not in spec:
            raise ValueError(f"estimators[{i}]: a name or {{'name': ..., 'critic': ...}} "
                             "(mutants: {'name': 'mutant:NAME', 'baseline': true})")
        baseline = spec.get("baseline", False)
        if not isinstance(baseline, bool):
            raise ValueError(f"estimators[{i}].baseline = {baseline!r}: must be true or false")
        if not isinstance(spec["name"], str):
            raise ValueError(f"estimators[{i}].name = {spec['name']!r}: must be a string")
        if spec["name"].startswith("mutant:"):  # a deliberately wrong estimator
            mutant = MUTANTS.get(spec["name"][len("mutant:"):])
            if mutant is None:
                raise ValueError(f"estimators[{i}].name = {spec['name']!r}: one of "
                                 f"{['mutant:' + m for m in sorted(MUTANTS)]}")
            if "critic" in spec:
                raise ValueError(f"estimators[{i}].critic: a mutant has its own critic "
                                 f"({mutant.critic!r})")
            if baseline and not mutant.accepts_baseline:
                raise ValueError(f"estimators[{i}].baseline: {spec['name']} has no baseline "
                                 "variant (only the BC-HG family mutants with the exact "
                                 "critic do)")
            out.append(EstimatorSpec(spec["name"], mutant.critic, baseline))
            continue
        if "baseline" in spec:
            raise ValueError(f"estimators[{i}].baseline: only for mutants; the registered "
                             "baseline estimator is 'bc-hg-baseline'")
        if spec["name"] not in ESTIMATORS:
            raise ValueError(f"estimators[{i}].name = {spec['name']!r}: one of "
                             f"{sorted(ESTIMATORS)} or 'mutant:NAME'")
        info = ESTIMATORS[spec["name"]]
        critic = spec.get("critic", info.default_critic)
        if critic not in info.critics:
            raise ValueError(f"estimators[{i}].critic = {critic!r}: {spec['name']} accepts "
                             f"{list(info.critics)}")
        out.append(EstimatorSpec(spec["name"], critic))
    return out


def parse_spec(data: object, base: pathlib.Path) -> SweepSpec:
    """Validate a parsed sweep file (paths relative to ``base``)."""
    if not isinstance(data, dict):
        raise ValueError("sweep: must be a JSON object")
    required = {"format", "problems", "estimators", "budgets", "replicates"}
    missing, unknown = required - set(data), set(data) - required - {"seed"}
    if missing or unknown:
        raise ValueError(f"sweep: missing {sorted(missing)}, unknown {sorted(unknown)}"
                         if missing else f"sweep: unknown field(s) {sorted(unknown)}")
    if data["format"] != FORMAT:
        raise ValueError(f"format: {data['format']!r} is not {FORMAT!r}")
    budgets = data["budgets"]
    if not isinstance(budgets, list) or not budgets:
        raise ValueError("budgets: must be a non-empty list")
    budgets = [_int(f"budgets[{i}]", b, 1, 10**9) for i, b in enumerate(budgets)]
    spec = SweepSpec(problems=tuple(_problems(data["problems"], base)),
                     estimators=tuple(_estimators(data["estimators"])),
                     budgets=tuple(budgets),
                     replicates=_int("replicates", data["replicates"], 2, 10**6),
                     seed=_int("seed", data.get("seed", 0), 0, 2**31),
                     canonical=json.dumps(data, sort_keys=True))
    if spec.n_rows > MAX_ROWS:
        raise ValueError(f"sweep: {spec.n_rows} replicates in total, over {MAX_ROWS}")
    return spec


def load_spec(path: str) -> SweepSpec:
    """Read and validate a sweep file."""
    return parse_spec(read_json(path), pathlib.Path(path).resolve().parent)
