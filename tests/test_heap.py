"""Heap retention (:mod:`exact_bilevel.core.heap`): set once per process, opt-out by
environment, and it does what it is for (repeated large temporaries stop faulting)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from exact_bilevel.core.heap import retain_heap

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    retained = retain_heap()
    assert retain_heap() is retained          # once per process
    x = np.arange(300_000, dtype=float)       # 2.4 MB: above glibc's default threshold
    for _ in range(3):                        # warm up
        y = x + 1.0; z = y * 2.0; w = z + y; del y, z, w
    f0 = faults()
    for _ in range(20):
        y = x + 1.0; z = y * 2.0; w = z + y; del y, z, w
    print(int(retained), (faults() - f0) / 20)
""")


def _run(env_value: str) -> tuple[bool, float]:
    import os

    env = {**os.environ, "EXACT_BILEVEL_RETAIN_HEAP": env_value,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return bool(int(out[0])), float(out[1])


def test_retained_heap_stops_the_faults_and_can_be_turned_off():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    retained, faults = _run("1")
    if not retained:
        pytest.skip("not glibc")
    assert faults < 5                          # ~1,600 per round with glibc's defaults
    off, faults_off = _run("0")
    assert not off and faults_off > 100
