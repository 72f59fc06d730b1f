"""One memory budget, checked before any large allocation a file or an option implies.

Every dense array a command will build is sized first and compared with
:func:`max_bytes` — by default 4 GiB, raised or lowered with the environment
variable ``EXACT_BILEVEL_MAX_BYTES`` (a number of bytes). Going over is a
``ValueError`` naming the quantity, its shape and the budget (exit code 2 on the
command line), never a ``MemoryError`` after minutes of work.
"""

from __future__ import annotations

import math
import os

DEFAULT_MAX_BYTES = 4 * 2**30
ENV = "EXACT_BILEVEL_MAX_BYTES"


def max_bytes() -> int:
    """The budget in bytes: ``$EXACT_BILEVEL_MAX_BYTES`` or 4 GiB."""
    text = os.environ.get(ENV)
    if text is None:
        return DEFAULT_MAX_BYTES
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise ValueError(f"{ENV} = {text!r}: must be a number of bytes") from None
    if value < 1:
        raise ValueError(f"{ENV} = {text!r}: must be positive")
    return value


def check_allocation(name: str, shape: tuple[int, ...], itemsize: int = 8) -> None:
    """Raise ``ValueError`` if an array of ``shape`` (``itemsize`` bytes per entry) would
    exceed the budget."""
    need = math.prod(int(n) for n in shape) * itemsize
    limit = max_bytes()
    if need > limit:
        raise ValueError(f"{name}: shape {tuple(int(n) for n in shape)} needs "
                         f"{need / 2**30:.3g} GiB, over the memory budget of "
                         f"{limit / 2**30:.3g} GiB (set {ENV} to change it)")
