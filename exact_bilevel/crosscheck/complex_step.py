r"""Complex-step differentiation: an independent route with no step-size trade-off.

For ``F`` analytic near real ``x``,

.. math:: \partial_k F(x) = \operatorname{Im} F(x + i h e_k) / h + O(h^2),

with no subtractive cancellation, so ``h = 1e-30`` gives every partial to
machine precision. The whole pipeline (parameterisations, max-shifted
log-sum-exp, Newton solve, LU, leader evaluation) is analytic in ``x``: shifts
use ``max Re(.)`` (a constant), and ``abs`` is used only in stopping tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.problem import BilevelProblem


def complex_step_gradient(f: Callable[[np.ndarray], complex], x: object, *,
                          h: float = 1e-30) -> np.ndarray:
    """``grad f(x)[k] = Im f(x + i h e_k) / h`` for an analytic ``f``; shape ``[d]``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        z = x.astype(np.complex128)
        z[k] += 1j * h
        out[k] = np.imag(f(z)) / h
    return out


def complex_step_hypergradient(problem: BilevelProblem, x: object, *, h: float = 1e-30,
                               **solver_options: object) -> np.ndarray:
    """Hypergradient of ``problem`` by complex step (``d`` complex follower solves)."""
    xr = problem.check_x(x)
    return complex_step_gradient(lambda z: problem.value(z, **solver_options), xr, h=h)
