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
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

from exact_bilevel.experiments.reproduce import EXPERIMENTS, outputs
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
    ap.add_argument("names", nargs="*", default=list(SIZES), help="experiments (default all)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = ap.parse_args()
    for name in args.names:
        size = SIZES[name]
        if size is EXPERIMENTS[name].full:
            size = dataclasses.replace(size, label=size.label + "; `python verification/"
                                       "run_reproductions.py`")
        print(f"== {name}: {size.label}", flush=True)
        EXPERIMENTS[name].run(OUT, size=size, workers=args.workers)
        print("   wrote", ", ".join(p.name for p in outputs(name, OUT)), flush=True)


if __name__ == "__main__":
    main()
