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
