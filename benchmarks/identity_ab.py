"""A/B identity of the estimators' numbers between two checkouts (a speed change must not
change them).

Writes every registered estimator x accepted critic x budget (2, 5, 37, 100, 2000) on
eight problems (reward-, transition- and both-parameterised, leader returns with their
own, a far-sighted and the follower's discount, a quadratic objective, the demo problem,
S = 40 for the LAPACK and step-by-step score paths, FourRooms with ``--fourrooms``):
``replicates(..., seed=11)``, one single ``estimate`` on its block, and every mutant of
:mod:`exact_bilevel.mutants` (with the baseline where it applies); errors are recorded
as their messages. Run it under each checkout, then compare::

    PYTHONPATH=/path/to/main python benchmarks/identity_ab.py main.npz
    PYTHONPATH=. python benchmarks/identity_ab.py branch.npz
    python benchmarks/identity_ab.py --compare main.npz branch.npz

Known: the TD critics on problems with ``S > 32`` states (FourRooms here) solve with
LAPACK, whose results can vary in the last bits with the buffers' alignment, i.e. from
run to run of the *same* checkout (seen once in three runs of main: 9 FourRooms TD
arrays, ~1e-17 relative); run the reference twice to tell them apart.
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from exact_bilevel.core.streams import block_rng  # noqa: E402
from exact_bilevel.estimators import ESTIMATORS, estimate, replicates  # noqa: E402
from exact_bilevel.estimators._common import leader_knowledge  # noqa: E402
from exact_bilevel.estimators.sampling import block_size  # noqa: E402
from exact_bilevel.experiments.examples import (  # noqa: E402
    demo_problem,
    four_rooms_incentives,
    random_problem,
)
from exact_bilevel.mutants import MUTANTS, mutant_replicates  # noqa: E402

SETTINGS = ((2, 5), (5, 6), (37, 9), (100, 20), (2000, 4))
MUTANT_SETTINGS = ((5, 4), (100, 12), (2000, 3))
#: What an unsupported combination raises (e.g. a leader-return mutant on a quadratic
#: objective): recorded, not compared for its type.
FAILURES = (ValueError, AttributeError, TypeError)


def problems(fourrooms: bool) -> dict:
    out = {
        "r10": random_problem(10, 4, 5, seed=0, gamma=0.9),
        "t10": random_problem(10, 4, 5, seed=1, gamma=0.9, parameterize="transitions"),
        "b6": random_problem(6, 3, 3, seed=2, gamma=0.8, parameterize="both",
                             objective="leader_return_own_gamma"),
        "fs5": random_problem(5, 2, 2, seed=3, gamma=0.7, parameterize="both",
                              objective="leader_return_far_sighted"),
        "q5": random_problem(5, 3, 2, seed=4, gamma=0.9, parameterize="transitions",
                             objective="quadratic"),
        "demo": demo_problem(),
        "t40": random_problem(40, 3, 2, seed=5, gamma=0.9, parameterize="transitions"),
    }
    if fourrooms:
        out["fr"] = four_rooms_incentives()
    return out


def record(fourrooms: bool) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for pname, (problem, x) in problems(fourrooms).items():
        know = leader_knowledge(problem, x)
        for name, info in ESTIMATORS.items():
            for critic in info.critics:
                for budget, R in SETTINGS:
                    key = f"{pname}|{name}|{critic}|{budget}"
                    try:
                        g, c = replicates(problem, x, name, budget, R, 11, critic)
                    except FAILURES as e:
                        out[key + "|err"] = np.array(str(e))
                        continue
                    out[key + "|g"], out[key + "|c"] = g, c
                rng = block_rng(11, 3, block_size(100, problem.n_params))
                try:
                    e = estimate(problem, x, name, 100, rng, critic)
                    out[f"{pname}|{name}|{critic}|single"] = np.asarray(e.gradient)
                except FAILURES as e:
                    out[f"{pname}|{name}|{critic}|single|err"] = np.array(str(e))
        for m, mutant in MUTANTS.items():
            for budget, R in MUTANT_SETTINGS:
                for base in ((False, True) if mutant.options is not None else (False,)):
                    key = f"{pname}|mutant:{m}|{base}|{budget}"
                    try:
                        out[key] = mutant_replicates(m, know, budget, R, 5, baseline=base)
                    except FAILURES:
                        out[key + "|fails"] = np.array(True)
    return out


def compare(a_path: str, b_path: str) -> int:
    a, b = np.load(a_path), np.load(b_path)
    common = sorted(set(a.files) & set(b.files))
    only = sorted(set(a.files) ^ set(b.files))
    differ = [k for k in common if not (a[k].shape == b[k].shape and np.array_equal(a[k], b[k]))]
    print(f"{len(common)} arrays compared, {len(differ)} differ, {len(only)} in one file only")
    for k in differ + only:
        print("  ", k)
    return 1 if differ or only else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="write the numbers of this checkout here (.npz)")
    ap.add_argument("--fourrooms", action="store_true", help="add FourRooms (S = 104)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        ap.error("give OUT.npz or --compare A B")
    out = record(args.fourrooms)
    np.savez(args.out, **out)
    print(f"{len(out)} arrays written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
