"""Shared pieces of the reproductions: run sizes, scoring over seeds, parallel runs,
atomic output files, plots and progress bars."""

from __future__ import annotations

import concurrent.futures
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core import _files
from ...core._progress import progress_bar


@dataclass(frozen=True)
class RunSize:
    """How much of an experiment to run: leader ``steps``, ``seeds``, and the grids."""

    steps: int
    seeds: int
    budgets: tuple[int, ...]
    learning_rates: tuple[float, ...]
    label: str


def score(curve: np.ndarray) -> float:
    """The papers' score of one run: the mean of the exact objective over the last 10%
    of its steps (at least one)."""
    k = max(1, round(0.1 * (len(curve) - 1)))
    return float(np.mean(curve[-k:]))


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error over seeds (``None`` for one seed: not estimable)."""
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None
    return float(v.mean()), se


def pm(mean: float, se: float | None, spec: str, se_spec: str | None = None) -> str:
    """``"mean +- se"`` formatted, or ``"mean (one seed, no s.e.)"`` when ``se`` is
    ``None``: a report never prints a standard error of zero it did not measure."""
    if se is None:
        return f"{mean:{spec}} (one seed, no s.e.)"
    return f"{mean:{spec}} +- {se:{se_spec or spec}}"


def run_all(fn: Callable[[Any], Any], jobs: Sequence[Any], *, workers: int,
            desc: str) -> list[Any]:
    """``[fn(job) for job in jobs]``, on ``workers`` processes (the standard library's pool)
    when ``workers > 1``, with a progress bar on a terminal."""
    if workers > 1:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            return list(progress_bar(pool.map(fn, jobs), desc=desc, total=len(jobs)))
    return [fn(job) for job in progress_bar(jobs, desc=desc, total=len(jobs))]


def plt() -> Any:
    """matplotlib's pyplot on the Agg backend (the ``plots`` extra)."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ValueError("reproduce: needs matplotlib (pip install exact_bilevel[plots])") \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def atomic_write(path: pathlib.Path, data: bytes | str) -> None:
    """:func:`exact_bilevel.core._files.atomic_write` of an output file in ``--out``
    (errors name ``--out``)."""
    _files.atomic_write(path, data, option="--out")


def save_figure(fig: Any, path: pathlib.Path) -> None:
    """Render ``fig`` to PNG in memory, then :func:`atomic_write`."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write(path, buf.getvalue())
