r"""The papers' experiments as their authors ran them, with the exact answer beside every curve.

``exact-bilevel reproduce NAME [--out DIR] [--full] [--steps N] [--seeds K]
[--workers W] [--force]`` runs one experiment of :data:`EXPERIMENTS` and writes
``reproduce_NAME.md`` (tables quoting the paper's numbers and the authors'
settings beside ours, with every deviation stated) and ``reproduce_NAME.png``.
Every curve is scored by the *exact* objective. The default run is CI-sized and
says so in its output; ``--full`` is the paper's protocol (long: use ``--workers``,
the standard library's process pool). Needs the ``plots`` extra (matplotlib).

* :mod:`.fourrooms` — FourRooms incentive design, the official conventions and
  optimiser, 10 methods, multi-seed;
* :mod:`.fourrooms_suboptimal` — the follower runs k soft-VI sweeps per step: the
  bias of every optimal-follower estimator, measured exactly;
* :mod:`.discrete_toy` — the DiscreteToy Markov game, scored as the paper's plots,
  and the authors' follower bug;
* :mod:`.sobirl` — the SoBiRL synthetic problem with the authors' inexact
  M-SoBiRL loop beside exact descent;
* :mod:`.building_thermal` — BuildingThermalControl (bilevel soft LQR): the estimators
  at the authors' budget against the exact gradient, and the leader loop;
* :mod:`.lqr_game` — the LQR Markov game, likewise.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable

from ...core._files import check_output, ensure_directory
from . import building_thermal as _building
from . import discrete_toy as _toy
from . import fourrooms as _fourrooms
from . import fourrooms_suboptimal as _subopt
from . import lqr_game as _lqr_game
from . import sobirl as _sobirl
from ._common import RunSize


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A reproduction: its runner ``run(out, size=..., workers=...)``, output stem and sizes."""

    run: Callable[..., str]
    stem: str
    quick: RunSize
    full: RunSize


EXPERIMENTS: dict[str, Experiment] = {
    "fourrooms": Experiment(_fourrooms.four_rooms, "fourrooms", _fourrooms.QUICK,
                            _fourrooms.FULL),
    "fourrooms-suboptimal": Experiment(_subopt.four_rooms_suboptimal, "fourrooms_suboptimal",
                                       _subopt.QUICK, _subopt.FULL),
    "discrete-toy": Experiment(_toy.discrete_toy, "discrete_toy", _toy.QUICK, _toy.FULL),
    "sobirl": Experiment(_sobirl.sobirl, "sobirl", _sobirl.QUICK, _sobirl.FULL),
    "building-thermal": Experiment(_building.building_thermal, "building_thermal",
                                   _building.QUICK, _building.FULL),
    "lqr-game": Experiment(_lqr_game.lqr_game_reproduction, "lqr_game", _lqr_game.QUICK,
                           _lqr_game.FULL),
}


def outputs(name: str, out: str | pathlib.Path) -> list[pathlib.Path]:
    """The files ``reproduce(name, out)`` writes."""
    stem = EXPERIMENTS[name].stem
    return [pathlib.Path(out) / f"reproduce_{stem}.md", pathlib.Path(out) / f"reproduce_{stem}.png"]


def reproduce(name: str, out: str | pathlib.Path, *, full: bool = False,
              steps: int | None = None, seeds: int | None = None, workers: int = 1,
              force: bool = False) -> str:
    """Run experiment ``name``; write its table and plot into the directory ``out``.

    ``full`` selects the paper's run size (default: the CI-sized one); ``steps`` and
    ``seeds`` override it. Existing output files are only replaced with ``force``.
    ``out`` is created if missing; an existing non-directory, or one that cannot be
    created or written, is an :class:`~exact_bilevel.core._files.OutputPathError`
    naming ``--out``; the files follow the output-path rule of
    :mod:`exact_bilevel.core._files`. Returns the table (markdown).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"name = {name!r}: must be one of {sorted(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    size = exp.full if full else exp.quick
    for field, value in (("steps", steps), ("seeds", seeds), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{field} = {value!r}: must be a positive integer")
    if steps is not None or seeds is not None:
        label = (f"custom ({steps or size.steps} steps, {seeds or size.seeds} seeds, "
                 f"grids of the {'full' if full else 'quick'} run)")
        size = dataclasses.replace(size, steps=steps or size.steps, seeds=seeds or size.seeds,
                                   label=label)
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        ensure_directory(out, option="--out")  # refused: names --out and the rule
    existing = [p for p in outputs(name, path) if os.path.lexists(p)]
    if existing and not force:
        raise FileExistsError(f"--out: {existing[0]} exists; pass force=True (--force) to "
                              "replace it")
    ensure_directory(out, option="--out")
    for target in outputs(name, path):  # refused before the run, not after it
        check_output(target, option="--out")
    return exp.run(path, size=size, workers=workers)


__all__ = ["EXPERIMENTS", "Experiment", "RunSize", "outputs", "reproduce"]
