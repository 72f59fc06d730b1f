"""Exceptions raised by exact_bilevel.

Bad input always raises the built-in :class:`ValueError` with a message that
names the field, the first offending index and the rule that was broken.
Numerical procedures that fail to reach their tolerance raise
:class:`ConvergenceError`, which carries the residual they did reach.
"""

from __future__ import annotations


class ConvergenceError(RuntimeError):
    """An iterative solver stopped before reaching its tolerance.

    Attributes
    ----------
    residual : float
        Sup-norm residual reached when the solver gave up.
    tolerance : float
        The residual the solver was asked to reach.
    iterations : int
        Iterations performed.
    method : str
        Name of the solver.
    """

    def __init__(self, method: str, residual: float, tolerance: float, iterations: int,
                 reason: str) -> None:
        self.method = method
        self.residual = float(residual)
        self.tolerance = float(tolerance)
        self.iterations = int(iterations)
        super().__init__(
            f"{method} did not converge: residual {self.residual:.3e} > tolerance "
            f"{self.tolerance:.3e} after {self.iterations} iterations ({reason})"
        )


class NumericalError(ArithmeticError):
    """A computed quantity overflowed float64 or became non-finite.

    Raised instead of returning ``inf`` / ``nan``; the message names the quantity and
    the step that produced it (the command line exits with code 1).
    """


def require_finite(name: str, value: object, step: str) -> None:
    """Raise :class:`NumericalError` if ``value`` (scalar or array) has a non-finite entry."""
    import numpy as np

    arr = np.asarray(value)
    # Fast path: a sum is finite only if every entry is (it may also overflow, and then
    # the entries are checked one by one).
    if arr.dtype.kind in "fc" and not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        where = f"[{', '.join(map(str, bad[0]))}]" if arr.ndim else ""
        raise NumericalError(f"{name}{where} is not finite after {step} (float64 overflow?); "
                             "rescale the rewards or the temperature")
