"""One progress bar for every loop that can take more than a few seconds."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress_bar(items: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 enabled: bool = True) -> Any:
    """A tqdm bar on stderr, shown only when ``enabled`` and stderr is a terminal; wraps
    ``items`` if given, else is updated by hand (``.update(n)``, ``.close()``)."""
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, leave=False,
                disable=not enabled or not sys.stderr.isatty())
