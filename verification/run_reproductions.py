"""Regenerate the committed reproductions in ``verification/`` (reproduce_*.md / .png).

The committed sizes are between the CI-sized default and the papers' full protocol
(which takes many CPU hours: ``exact-bilevel reproduce NAME --full --workers W``):

* discrete-toy: the full protocol (500 iterations x 450 transitions, 10 seeds), for the
  tabular leader and the authors' (64, 64) MLP leader (Adam 1e-4, 10 / 1 actor steps);
* sobirl: the full protocol (800 steps, 5 instances);
* fourrooms: 300 leader steps, 3 seeds, budgets 100 and 1000, learning rates {0.5, 0.1};
* fourrooms-suboptimal: 100 leader steps, 1 seed;
* lqr-game: 500 iterations x 400 transitions with the random-leader warm-up, the
  ``actor_update_steps_n`` sweep {1, 2, 5, 10}, 3 seeds (the paper: 20 seeds; ``--full``
  runs them, about 60 CPU min); alone it took 13.8 min wall, 9.2 CPU min with
  ``--workers 2`` (2026-12-03, beside other work);
* building-thermal: 300 leader steps, 5 seeds, learning rates {0.1, 0.01} (the paper:
  2000 steps, 10 seeds, three rates — about 5 CPU hours).

Run: ``python verification/run_reproductions.py [--workers 2] [NAME ...]`` (all six: 17
min with ``--workers 2`` on 2 cores, measured 2026-12-03 beside other work; discrete-toy
alone, with its MLP-leader rows: 3 min 41 s to 5 min 28 s wall, 2.5-3.0 CPU-min, with
``nice -n 10``, measured 2026-12-03 beside other work).

``fourrooms-paper`` (never in the default list): the paper's protocol for FourRooms
(:mod:`exact_bilevel.experiments.reproduce.fourrooms_paper`: bc-hg with the carried SARSA
table, hpgd-oracle, exact SGD, the exact optimum; budgets 100 and 1000; tau 0.001 and
0.005; 10 seeds x 10,000 steps; lr by a 1,000-step pilot) and the fragment-bias table.
It resumes from the per-run checkpoints in ``verification/fourrooms_paper/`` and rewrites
only its marked section of ``reproduce_fourrooms.md`` and ``reproduce_fourrooms_paper.png``
(with every checkpoint present it only renders: seconds). From scratch, measured
2026-12-03 with ``--workers 2`` on 2 cores shared with other work: pilots and finals of
exact SGD, the optimum and bc-hg 21 min; hpgd-oracle about 30 s per 1,000 steps alone
(10,000 oracle transitions per step), i.e. 40 final runs ~3.5 CPU hours.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

from exact_bilevel.experiments.reproduce import EXPERIMENTS, fourrooms_paper, outputs
from exact_bilevel.experiments.reproduce._common import RunSize

OUT = pathlib.Path(__file__).resolve().parent
SIZES: dict[str, RunSize] = {
    "discrete-toy": EXPERIMENTS["discrete-toy"].full,
    "sobirl": EXPERIMENTS["sobirl"].full,
    "fourrooms": RunSize(steps=300, seeds=3, budgets=(100, 1000), learning_rates=(0.5, 0.1),
                         label="committed (300 steps, 3 seeds, budgets 100 / 1000, "
                               "lr in {0.5, 0.1}; `python verification/run_reproductions.py`)"),
    "fourrooms-suboptimal": dataclasses.replace(
        EXPERIMENTS["fourrooms-suboptimal"].quick, steps=100,
        label="committed (100 steps, 1 seed; `python verification/run_reproductions.py`)"),
    "lqr-game": RunSize(
        steps=500, seeds=3, budgets=(400,), learning_rates=(0.1,),
        label="committed (500 iterations x 400 transitions, random-leader warm-up, "
              "actor_update_steps_n in {1, 2, 5, 10}, 3 seeds (the paper: 20), 60 replicates "
              "per estimator; `python verification/run_reproductions.py`)"),
    "building-thermal": RunSize(
        steps=300, seeds=5, budgets=(10_000,), learning_rates=(0.1, 0.01),
        label="committed (300 steps x 10,000 transitions, 5 seeds, lr in {0.1, 0.01}, 50 "
              "replicates per estimator; `python verification/run_reproductions.py`)"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(SIZES),
                    help="experiments (default: the six above); fourrooms-paper: the FourRooms "
                         "paper protocol (hours from scratch; resumes from checkpoints)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = ap.parse_args()
    for name in args.names:
        if name == "fourrooms-paper":
            print("== fourrooms-paper: the paper's protocol (resuming from "
                  "verification/fourrooms_paper/)", flush=True)
            fourrooms_paper.paper_protocol(OUT, workers=args.workers,
                                           log_path=OUT / "fourrooms_paper" / "run.log")
            print("   wrote reproduce_fourrooms.md (paper-protocol section), "
                  "reproduce_fourrooms_paper.png", flush=True)
            continue
        size = SIZES[name]
        if size is EXPERIMENTS[name].full:
            size = dataclasses.replace(size, label=size.label + "; `python verification/"
                                       "run_reproductions.py`")
        print(f"== {name}: {size.label}", flush=True)
        EXPERIMENTS[name].run(OUT, size=size, workers=args.workers)
        print("   wrote", ", ".join(p.name for p in outputs(name, OUT)), flush=True)


if __name__ == "__main__":
    main()
