"""What a sweep's rows were computed from, recorded with them and checked on every write.

A results file is bound to one *provenance* (:func:`provenance`): the content hash of
every problem *as loaded* (:func:`problem_hash`: SHA-256 of the canonical JSON of
:func:`exact_bilevel.io.problem_to_dict` — independent of the file's path, name and
whitespace), the estimator settings (name, critic, baseline), budgets, replicates and
seed, :data:`NUMERICS_VERSION` and :data:`STREAM_RULE`. A sweep that would add rows
computed from anything else, or a report of such a file, is refused
(:func:`compare`: ``ValueError`` naming the problem and both short hashes). The package
``__version__`` of every writer is recorded for information but does not refuse a
resume: :data:`NUMERICS_VERSION` is what says whether the numbers changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from ..core.streams import STREAM_RULE as _STREAMS

#: Bumped whenever the numbers a sweep stores for given inputs change: the sampler, an
#: estimator or critic, the replicate stream rule, the exact solver's output format.
#: Results files recorded under another value are refused (never mixed). History: 3, the
#: batched replicates (stream rule ``cell-block/3``); 4, the same streams and draws with
#: the last bits of hpgd, sobirl, model-based, zeroth-order and the TD critics moved by
#: faster arithmetic (stack elimination, step-by-step contractions, the batched follower
#: solver: at most ~1e-13 relative, ``benchmarks/identity_ab.py``).
NUMERICS_VERSION = 4

#: The replicate stream rule (see :func:`exact_bilevel.sweeps.run.replicate_seed`): the
#: package's rule :data:`exact_bilevel.core.streams.STREAM_RULE` with the cell key
#: ``(crc32(problem), crc32(estimator label), budget)`` (version 3: the replicates of a
#: cell read consecutive blocks of one generator and are drawn together).
STREAM_RULE = f"{_STREAMS} key=(crc32(problem), crc32(label), budget)"

#: The fields of a provenance that must match for rows to be added or reported together.
BINDING = ("numerics_version", "stream_rule", "seed", "budgets", "replicates", "estimators",
           "problems")


def short(h: str) -> str:
    """The first 12 hex digits of a hash (enough to tell two inputs apart in a message)."""
    return h[:12]


def problem_hash(problem: Any, x: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``problem_to_dict(problem, x)``.

    Parameters
    ----------
    problem : BilevelProblem
        The problem as loaded.
    x : array_like
        The leader's parameters.

    Returns
    -------
    str
        64 hex digits; equal for equal arrays and ``x`` whatever file they came from.
    """
    from ..formats.files import problem_to_dict

    data = problem_to_dict(problem, x)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def provenance(spec: Any, hashes: dict[str, str]) -> dict[str, Any]:
    """The provenance of a sweep's rows.

    Parameters
    ----------
    spec : SweepSpec
        The validated sweep.
    hashes : dict
        Problem name -> :func:`problem_hash`.

    Returns
    -------
    dict
        JSON-serialisable: the :data:`BINDING` fields and ``package_version``.
    """
    # the package root is always imported before a submodule; the layout forbids
    # importing it from here, so read the attribute of the loaded module
    __version__ = sys.modules[__name__.split(".")[0]].__version__
    return {"numerics_version": NUMERICS_VERSION, "stream_rule": STREAM_RULE,
            "package_version": __version__, "seed": spec.seed, "budgets": list(spec.budgets),
            "replicates": spec.replicates,
            "estimators": [{"name": e.name, "critic": e.critic, "baseline": e.baseline}
                           for e in spec.estimators],
            "problems": {p.name: hashes[p.name] for p in spec.problems}}


def compare(db: str, stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise ``ValueError`` (naming ``--db`` and what differs) unless the binding fields of
    ``stored`` and ``new`` are equal."""
    where = f"--db {db}"
    sp, np_ = stored.get("problems", {}), new.get("problems", {})
    for name in sorted(set(sp) & set(np_)):
        if sp[name] != np_[name]:
            raise ValueError(f"{where}: problem {name!r} changed: its rows were computed from "
                             f"content {short(sp[name])}, the problem is now "
                             f"{short(np_[name])}; results of different inputs never mix "
                             "(use a new results file)")
    for key in ("numerics_version", "stream_rule"):
        if stored.get(key) != new.get(key):
            raise ValueError(f"{where}: its rows were computed with {key} {stored.get(key)!r}, "
                             f"this code is {new.get(key)!r}; use a new results file")
    for key in BINDING:
        if stored.get(key) != new.get(key):
            a, b = stored.get(key), new.get(key)
            if key == "problems":
                a, b = sorted(a or {}), sorted(b or {})
            raise ValueError(f"{where}: holds the results of another sweep spec ({key}: "
                             f"{json.dumps(a)[:200]} in the file, {json.dumps(b)[:200]} in "
                             "the spec); use a new results file")


def describe(p: dict[str, Any], writers: list[str]) -> list[str]:
    """Markdown lines stating a provenance (for the report)."""
    lines = [f"Provenance: numerics version {p['numerics_version']}, stream rule "
             f"`{p['stream_rule']}`, seed {p['seed']}, written by exact_bilevel "
             f"{', '.join(writers)}.", "",
             "| problem | content hash (SHA-256, first 12 hex) |", "| --- | --- |"]
    lines += [f"| `{name}` | {short(h)} |" for name, h in sorted(p["problems"].items())]
    return lines
