"""False-alarm rate of the unbiasedness test and detection rate of each mutant, as a sweep.

The calibration is an ordinary validation sweep (``exact-bilevel sweep``): this script
only writes its spec, runs the two commands, and summarises the results file.

* Problems: ``--problems`` (default 198) random problems, 22 for each of the 3 x 3
  (parameterisation, objective) pairs; each draws S in 3..6, A in 2..4, d in 1..4,
  gamma ~ U(0.5, 0.95) and tau log-uniform in [0.1, 2] from a fixed seed.
* Estimators: ``bc-hg`` and ``bc-hg-baseline`` (exact critic), and the eight BC-HG
  mutants applied to each (``"mutant:NAME"`` and ``{"name": "mutant:NAME",
  "baseline": true}``): 18 variants, R = 100 replicates of N = 2000 transitions.
* The unbiasedness test (Hotelling / Bonferroni-t, alpha = 0.01) per (problem,
  variant): the rejection fraction is the realised false-alarm rate of a correct
  estimator and the detection rate (power) of a mutant; 95% Clopper-Pearson intervals.

Writes ``verification/sweeps/estimator_rates.json`` (the spec),
``verification/sweeps/estimator_rates/`` (``exact-bilevel report``) and
``verification/estimator_rates.md`` (the summary below). The results file goes to
``--db`` (default ``/tmp/exact_bilevel_estimator_rates.sqlite``: ~40 MB, not committed;
rerunning resumes it). Run: ``python verification/estimator_rates.py [--workers 2]``
(~10 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sqlite3
import subprocess
import sys
import warnings
from collections import defaultdict

import numpy as np
import scipy.stats

from exact_bilevel.core._files import atomic_write
from exact_bilevel.validation.acceptance import unbiasedness_test
from exact_bilevel.validation.convergence import MIN_EXPECTED_VISITS

HERE = pathlib.Path(__file__).parent
SPEC = HERE / "sweeps" / "estimator_rates.json"
MUTANTS = ("sign-flip", "no-centring", "wrong-discount-power", "sum-from-t+1",
           "tau-not-inverse", "grad-r-for-dQ", "no-survival-weights", "leader-gamma-swap")
PARAMS = ("reward", "transitions", "both")
OBJECTIVES = ("leader_return", "leader_return_own_gamma", "leader_return_x_reward")
ALPHA = 0.01


def spec(n_problems: int) -> dict:
    rng = np.random.default_rng(2024)
    problems = []
    per = max(1, n_problems // 9)
    for par in PARAMS:
        for obj in OBJECTIVES:
            for k in range(per):
                problems.append({"name": f"{par}-{obj}-{k}", "random": {
                    "states": int(rng.integers(3, 7)), "actions": int(rng.integers(2, 5)),
                    "params": int(rng.integers(1, 5)), "count": 1, "parameterize": par,
                    "objective": obj, "gamma": round(float(rng.uniform(0.5, 0.95)), 4),
                    "tau": round(float(np.exp(rng.uniform(np.log(0.1), np.log(2.0)))), 4),
                    "seed": int(rng.integers(0, 2**31))}})
    estimators: list = ["bc-hg", "bc-hg-baseline"]
    estimators += [f"mutant:{m}" for m in MUTANTS]
    estimators += [{"name": f"mutant:{m}", "baseline": True} for m in MUTANTS]
    return {"format": "exact-bilevel-sweep/1", "problems": problems, "estimators": estimators,
            "budgets": [2000], "replicates": 100, "seed": 2026}


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "exact_bilevel.cli", *args], check=True)


def read_results(db: str) -> tuple[set[str], dict, dict[tuple[str, str], list], int]:
    """From a calibration results file (read-only): the problems in the rare-event regime
    (the sweep's stored diagnostic: expected visits of the rarest on-policy pair in all
    replicates together), the exact gradients, the replicates per (problem, estimator)
    and the number of failed replicates."""
    con = sqlite3.connect(f"file:{pathlib.Path(db).resolve()}?mode=ro", uri=True)
    try:
        rare = {p for p, v in con.execute("SELECT problem, rarest_visits FROM diagnostics")
                if v < MIN_EXPECTED_VISITS}
        exact = {p: np.array(json.loads(g)) for p, g in
                 con.execute("SELECT problem, exact FROM problems")}
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for p, e, g in con.execute("SELECT problem, estimator, gradient FROM estimates "
                                   "ORDER BY problem, estimator, replicate"):
            groups[p, e].append(json.loads(g))
        n_failed = con.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    finally:
        con.close()
    return rare, exact, groups, n_failed


def summarise(db: str) -> str:
    rare, exact, groups, n_failed = read_results(db)
    rejected: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    regular: dict[str, list[bool]] = defaultdict(list)
    for (p, e), rows in groups.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = unbiasedness_test(np.array(rows), exact[p], ALPHA).reject
        rejected[e][p.split("-")[0]].append(r)
        if p not in rare:
            regular[e].append(r)
    n_prob = len(exact)
    lines = ["# Acceptance-test calibration: false alarms and mutant detection", "",
             f"Generated by `verification/estimator_rates.py` through `exact-bilevel sweep` "
             f"(spec `verification/sweeps/estimator_rates.json`; the full per-problem report "
             f"is `verification/sweeps/estimator_rates/sweep_report.md`): {n_prob} random "
             "problems, R = 100 replicates of N = 2000 transitions each, unbiasedness test at "
             f"alpha = {ALPHA}; 95% Clopper-Pearson intervals; {n_failed} failed replicates. "
             "The `correct` rows are the realised false-alarm rates (should be <= alpha up to "
             "sampling error); the others are detection rates (power) of each mutant at this "
             "budget. 'reward / transitions / both' split the rate by how x enters the "
             f"follower; the last column leaves out the {len(rare)} problems in the rare-event "
             "regime (the least likely on-policy pair expected < 10 times in all 2e5 sampled "
             "transitions: the estimator is unbiased, but the mean of 100 replicates cannot see "
             "that pair, so the test's verdict there is not about the estimator).", "",
             "| base estimator | variant | rejected | rate | 95% CI | reward | transitions | "
             "both | rate, not rare-event [95% CI] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def row(base: str, variant: str, label: str) -> str:
        by = rejected[label]
        allr = [v for vs in by.values() for v in vs]
        k, n = int(sum(allr)), len(allr)
        ci = scipy.stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        cols = " | ".join(f"{np.mean(by[p]):.2f}" if by[p] else "-" for p in PARAMS)
        kr, nr = int(sum(regular[label])), len(regular[label])
        cir = scipy.stats.binomtest(kr, nr).proportion_ci(0.95, method="exact")
        return (f"| {base} | {variant} | {k}/{n} | {k / n:.3f} | [{ci.low:.3f}, {ci.high:.3f}] "
                f"| {cols} | {kr}/{nr} = {kr / nr:.3f} [{cir.low:.3f}, {cir.high:.3f}] |")

    for base, suffix in (("bc-hg", ""), ("bc-hg-baseline", ",baseline")):
        lines.append(row(base, "correct", f"{base}[exact]"))
        for m in MUTANTS:
            lines.append(row(base, m, f"mutant:{m}[exact{suffix}]"))
    lines += ["", "Notes. `leader-gamma-swap` is a no-op when gamma_L = gamma (two of the three "
              "objectives), so its overall rate is bounded by about 1/3. Mutants are weakest on "
              "transition-parameterised problems: the score-function part of g_k, gamma "
              "dlogP(s'|s,a) V(s'), has no baseline in plain bc-hg and a variance of order "
              "(max V)^2, which hides small biases at this budget; the baseline V(s_k) removes "
              "the common level of V and restores the power.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=198)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", default="/tmp/exact_bilevel_estimator_rates.sqlite")
    args = ap.parse_args()
    atomic_write(SPEC, json.dumps(spec(args.problems), indent=1) + "\n")
    _cli("sweep", str(SPEC), "--db", args.db, "--workers", str(args.workers))
    _cli("report", "--db", args.db, "--out", str(HERE / "sweeps" / "estimator_rates"),
         "--force")
    text = summarise(args.db)
    atomic_write(HERE / "estimator_rates.md", text)
    print(text)


if __name__ == "__main__":
    main()
