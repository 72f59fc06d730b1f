"""False-alarm rate and mutant power of the convergence checks, on drawn problems.

For every protocol of :mod:`exact_bilevel.validation.convergence` (every
registered estimator and critic) and every mutant of :mod:`exact_bilevel.mutants`,
run the *same* check that ``tests/test_convergence.py`` runs on ``--problems``
(default 30) problems drawn by the same hypothesis strategies (derandomised, so
this table is reproducible), and record the rejection rate at the CI's alpha
(2e-4) and at 0.01 / 0.05:

* for a correct estimator the rejection rate is the realised false-alarm rate;
* for a mutant it is the power (detection rate), drawn from the problem class on
  which its bug is visible (stated per row).

Writes ``verification/convergence_power.md`` and ``.json`` (the JSON holds the
counts that the CI's power floors in ``tests/test_convergence.py`` are derived
from). Run: ``python verification/convergence_power.py [--problems 30] [--workers 2]``
(~12 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import time

import numpy as np
import scipy.stats
from hypothesis import HealthCheck, Phase, given, settings
from tqdm import tqdm

from exact_bilevel.core._files import atomic_write
from exact_bilevel.mutants import GAME_MUTANTS, MUTANTS
from exact_bilevel.strategies import CONVERGENCE_CLASSES, MUTANT_CLASSES, convergence_class
from exact_bilevel.validation import convergence

OUT = pathlib.Path(__file__).with_suffix(".md")
ALPHAS = (2e-4, 0.01, 0.05)
CLASSES = CONVERGENCE_CLASSES

#: What runs on which class: (row name, kind, estimator, critic, class, mutant or None).
ROWS: list[tuple[str, str, str, str, str, str | None]] = []
for est, critic in convergence.PROTOCOLS:
    ROWS.append((f"{est} ({critic})", "correct", est, critic, convergence_class(est), None))
for est in ("bc-hg", "bc-hg-baseline"):
    ROWS.append((f"game {est}", "correct", est, "exact", "games", None))
for name, m in MUTANTS.items():
    ROWS.append((name, "mutant", m.mutates, m.critic,
                 MUTANT_CLASSES.get(name, "tau <= 1"), name))
for name in GAME_MUTANTS:
    ROWS.append((name, "mutant", "bc-hg", "exact", MUTANT_CLASSES[name], name))


def collect(strategy, n: int) -> list:
    out: list = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        out.append(case)

    run()
    return out[:n]


CASES: dict[str, list] = {}


def one(job: tuple[int, int]) -> tuple[int, int, list[float], bool]:
    row, j = job
    _, _, est, critic, cls, mutant = ROWS[row]
    case = CASES[cls][j]
    seed = 1000 + j
    if cls.startswith("games"):
        fn = GAME_MUTANTS[mutant] if mutant else None
        res = convergence.check_game(case.game, case.x, est, seed=seed, alpha=ALPHAS[0],
                                     fn=fn)
    else:
        fn = MUTANTS[mutant].fn if mutant else None
        res = convergence.check(case.problem, case.x, est, critic, seed=seed, alpha=ALPHAS[0],
                                fn=fn)
    return row, j, [res.p_value], res.approximation_ok


def init(n: int) -> None:
    for cls, strategy in CLASSES.items():
        CASES[cls] = collect(strategy, n)


TRIALS = (3, 4, 6, 8, 12)


def floor(k_rejected: int, n: int, miss: float = 1e-3) -> tuple[int, int]:
    """``(k, trials)``: the fewest drawn problems ``trials`` in :data:`TRIALS` for which
    some ``k >= 1`` has ``P(Binomial(trials, p_lo) < k) <= miss``, ``p_lo`` the one-sided
    95% lower confidence bound of the measured power, and the largest such ``k``;
    ``(0, 0)`` if none."""
    p_lo = scipy.stats.beta.ppf(0.05, k_rejected, n - k_rejected + 1) if k_rejected else 0.0
    for trials in TRIALS:
        k = 0
        while k < trials and scipy.stats.binom.cdf(k, trials, p_lo) <= miss:
            k += 1
        if k >= 1:
            return k, trials
    return 0, 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=30, help="problems per row (default 30)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--rows", default=None,
                    help="comma-separated row names to re-run; the others are taken from "
                         "the existing JSON (default: run every row)")
    args = ap.parse_args()
    n = args.problems
    t0 = time.time()
    previous = (json.loads(OUT.with_suffix(".json").read_text()) if args.rows else {})
    wanted = set(args.rows.split(",")) if args.rows else {row[0] for row in ROWS}
    unknown = wanted - {row[0] for row in ROWS}
    if unknown:
        raise SystemExit(f"--rows: unknown {sorted(unknown)}")
    jobs = [(r, j) for r in range(len(ROWS)) if ROWS[r][0] in wanted for j in range(n)]
    pvals = np.full((len(ROWS), n), np.nan)
    ok = np.ones((len(ROWS), n), dtype=bool)
    with multiprocessing.Pool(args.workers, initializer=init, initargs=(n,)) as pool:
        for row, j, ps, approx in tqdm(pool.imap_unordered(one, jobs), total=len(jobs)):
            pvals[row, j] = ps[0]
            ok[row, j] = approx
    record = {}
    lines = [
        "# Convergence checks: false alarms and mutant power on drawn problems", "",
        f"Generated by `python verification/convergence_power.py --problems {n}` "
        f"({time.time() - t0:.0f} s, {args.workers} processes"
        + (f"; re-run rows: {', '.join(sorted(wanted))}, the others from the previous "
           "run" if args.rows else "") + "). Each row runs the check of "
        "`exact_bilevel.validation.convergence` (unbiasedness test for unbiased "
        "estimators, bias-bound test with an O(1/n) allowance for consistent ones, "
        "smoothed target for zeroth-order, exact game hypergradient for games) on "
        f"{n} problems drawn (derandomised) from the stated class of "
        "`exact_bilevel.strategies` (non-degenerate: S, A >= 2, gamma in [0.3, 0.8], "
        "tau in [0.3, 3], smallest policy probability >= 0.02).", "",
        "For a correct estimator the rejection rate is the false-alarm rate; for a "
        "mutant it is the power. The p-value of each run is kept, so the rates at "
        "alpha = 0.01 and 0.05 come from the same runs (one test per run, CI alpha "
        "2e-4). 'floor' is the number of rejections out of that many drawn problems "
        "that `tests/test_convergence.py` demands of a mutant in every CI run (missed "
        "with probability <= 1e-3 if the power is at least the one-sided 95% lower "
        "bound of the measured rate). 'warnings' counts runs flagged as unreliable "
        "(Cochran's rule on the samples, or the rare-event diagnostic).", "",
        "| row | kind | class | reject @ 2e-4 | reject @ 0.01 | reject @ 0.05 | floor "
        "| warnings |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r, (name, kind, _, _, cls, _) in enumerate(ROWS):
        if name not in wanted:  # kept from the previous run
            record[name] = previous[name]
            rates, k, trials = record[name]["rejections"], record[name]["floor"], \
                record[name]["trials"]
            lines.append(f"| {name} | {kind} | {record[name]['class']} | "
                         + " | ".join(f"{c}/{n}" for c in rates)
                         + (f" | {k} of {trials}" if kind == "mutant" else " | ")
                         + f" | {record[name]['tail_warnings']} |")
            continue
        rates = [int(np.sum(pvals[r] < a)) for a in ALPHAS]
        k, trials = floor(rates[0], n) if kind == "mutant" else (0, 0)
        record[name] = {"kind": kind, "class": cls, "rejections": rates, "problems": n,
                        "floor": k, "trials": trials, "tail_warnings": int(np.sum(~ok[r]))}
        fl = f"{k} of {trials}" if kind == "mutant" else ""
        lines.append(f"| {name} | {kind} | {cls} | {rates[0]}/{n} | {rates[1]}/{n} | "
                     f"{rates[2]}/{n} | {fl} | {int(np.sum(~ok[r]))} |")
    correct = [row[0] for row in ROWS if row[1] == "correct"]
    totals = [sum(record[c]["rejections"][i] for c in correct) for i in range(3)]
    runs = len(correct) * n
    lines += ["", f"Correct estimators, all rows: {totals[0]} rejections in {runs} runs at "
              f"alpha = 2e-4; at 0.01: {totals[1]}/{runs}; at 0.05: {totals[2]}/{runs}.", ""]
    atomic_write(OUT, "\n".join(lines))
    atomic_write(OUT.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
