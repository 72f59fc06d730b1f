r"""Central finite differences with Richardson extrapolation (an independent route).

For a smooth scalar ``f`` the central difference has an even error expansion,

.. math:: D(h) = \frac{f(x + h e_k) - f(x - h e_k)}{2h} = f'(x) + c_2 h^2 + c_4 h^4 + \dots,

so the Richardson table ``R[j, m] = R[j, m-1] + (R[j, m-1] - R[j-1, m-1]) / (4^m - 1)``
over the steps ``h, h/2, h/4, ...`` cancels one even power per column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class FDGradient(NamedTuple):
    gradient: np.ndarray
    """Extrapolated gradient, shape ``[d]``."""
    error_estimate: np.ndarray
    """``|R[L-1, L-1] - R[L-1, L-2]|`` per coordinate: the last correction made."""


def central_difference(f: Callable[[np.ndarray], float], x: np.ndarray, h: float) -> np.ndarray:
    """``(f(x + h e_k) - f(x - h e_k)) / (2h)`` for every ``k``, shape ``[d]``."""
    x = np.asarray(x, dtype=float)
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        e = np.zeros_like(x)
        e[k] = h
        out[k] = (f(x + e) - f(x - e)) / (2.0 * h)
    return out


def richardson_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, *, h: float = 1e-2,
                        levels: int = 3) -> FDGradient:
    """Gradient of ``f`` at ``x[d]`` by central differences at ``h, h/2, ..., h/2^(levels-1)``
    and Richardson extrapolation (error ``O(h^(2*levels))`` plus rounding ``~eps|f|/h``)."""
    if levels < 2:
        raise ValueError(f"levels = {levels}: must be >= 2")
    table: list[list[np.ndarray]] = []
    for j in range(levels):
        row = [central_difference(f, x, h / 2**j)]
        for m in range(1, j + 1):
            prev = row[m - 1]
            row.append(prev + (prev - table[j - 1][m - 1]) / (4**m - 1))
        table.append(row)
    best = table[-1][-1]
    return FDGradient(gradient=best, error_estimate=np.abs(best - table[-1][-2]))
