"""Keep freed heap memory in the process, so that repeated large temporaries do not fault.

numpy takes every array buffer from ``malloc``. glibc serves a block larger than its
*mmap threshold* (128 KiB at start, raised adaptively to the largest block freed so far,
at most 32 MiB) by a fresh ``mmap`` and unmaps it on ``free``, and gives the top of the
heap back to the kernel once more than twice that threshold is free there. An estimate
over ``N`` steps builds arrays of ``8 N`` bytes one after another, so most of them land
on pages the process has just returned: every first touch of a 4 KiB page is a page
fault. On a virtual machine a fault costs a few microseconds (measured on the
development VM: ~4.7 us, against ~0.3 us to add two pages of float64), so a
``replicates()`` call at budget 2000 spent about half of its time in ~6,000 faults, and
how many depended on what the process had allocated before (a source of large
run-to-run differences in ``benchmarks/bench_estimators.py``).

:func:`retain_heap` sets glibc's thresholds once per process (``mallopt``): blocks up to
:data:`MMAP_THRESHOLD` come from the heap, and up to :data:`TRIM_THRESHOLD` of freed heap
is kept for reuse instead of being returned. The process's resident size then stays at
its peak (plus at most ``TRIM_THRESHOLD``) after a large estimate. It is a no-op where
the C library is not glibc, and when the environment variable :data:`ENV` is ``0``.

Who calls it: the ``exact-bilevel`` command line (its own process) and the benchmarks.
The library never changes the allocator of a process it is imported into; call
:func:`retain_heap` yourself before many large ``replicates()`` calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: Blocks up to this size come from the heap (glibc's largest allowed value, 32 MiB).
MMAP_THRESHOLD = 32 * 2**20
#: Freed heap kept for reuse before the top of the heap is given back to the kernel.
TRIM_THRESHOLD = 256 * 2**20
#: ``EXACT_BILEVEL_RETAIN_HEAP=0`` leaves glibc's defaults alone.
ENV = "EXACT_BILEVEL_RETAIN_HEAP"
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_state: dict[str, bool] = {}


def retain_heap() -> bool:
    """Ask glibc's ``malloc`` (once per process) to serve blocks up to
    :data:`MMAP_THRESHOLD` from the heap and to keep up to :data:`TRIM_THRESHOLD` of freed
    heap (module docstring). Returns whether the thresholds are set (``False`` without
    glibc, or with ``EXACT_BILEVEL_RETAIN_HEAP=0``)."""
    if "done" not in _state:
        _state["done"] = _set_thresholds()
    return _state["done"]


def _set_thresholds() -> bool:
    if os.environ.get(ENV, "1").strip() == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has both  # noqa: B018
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
