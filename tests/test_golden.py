"""Float64 implementation against the committed golden vectors (``verification/golden``).

Each file holds a problem in the ``exact-bilevel/1`` format and the value and
hypergradient to 30 significant digits from the mpmath route (60 and 80 digits
agreeing to 1e-40). Stated tolerance: ``|grad - expected|_inf <= 1e-11 * max|expected|``
and ``|F - expected| <= 1e-11 * max(1, |expected|)``. Measured worst when the
files were made: 1.5e-12 (tau = 1e-3), 2e-13 (gamma = 0.999), <= 2e-14 elsewhere.
"""

import json
import pathlib

import numpy as np
import pytest
from mpmath import mp

from exact_bilevel import hypergradient
from exact_bilevel.crosscheck import highprec
from exact_bilevel.io import problem_from_dict

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "verification" / "golden"
FILES = sorted(GOLDEN.glob("*.json"))
RTOL = 1e-11


def _load(path: pathlib.Path) -> tuple[dict, object, np.ndarray]:
    record = json.loads(path.read_text())
    assert record["format"] == "exact-bilevel-golden/1"
    problem, x = problem_from_dict(record["problem"])
    return record, problem, x


def test_enough_golden_files():
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_float64_matches_golden(path):
    record, problem, x = _load(path)
    expected = record["expected"]
    assert expected["significant_digits"] == 30
    g_exp = np.array([float(s) for s in expected["gradient"]])
    v_exp = float(expected["value"])
    assert g_exp.shape == x.shape
    for mode in ("adjoint", "forward"):
        h = hypergradient(problem, x, mode=mode)
        assert np.max(np.abs(h.gradient - g_exp)) <= RTOL * np.max(np.abs(g_exp))
        assert abs(h.value - v_exp) <= RTOL * max(1.0, abs(v_exp))


@pytest.mark.parametrize("name", ["01_random_reward_S3A2", "08_both_S4A3", "20_single_state"])
def test_golden_regenerates(name):
    """The mpmath route, rerun at 40 digits, reproduces the stored 30 digits."""
    record, problem, x = _load(GOLDEN / f"{name}.json")
    h = highprec.hypergradient(problem, x, dps=40)
    with mp.workdps(40):
        expected = [mp.mpf(s) for s in record["expected"]["gradient"]]
        scale = max(abs(e) for e in expected)
        worst = max(abs(a - e) for a, e in zip(h.gradient, expected, strict=True)) / scale
        assert worst <= mp.mpf(10) ** -28
        assert abs(h.value - mp.mpf(record["expected"]["value"])) <= \
            mp.mpf(10) ** -28 * max(1, abs(h.value))
