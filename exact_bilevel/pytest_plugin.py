"""pytest plugin: the certification battery as a parametrised fixture.

Registered through the ``pytest11`` entry point when exact_bilevel is installed,
so any test that asks for ``bilevel_case`` runs once per case of
:func:`exact_bilevel.testing.suite`::

    def test_my_estimator(bilevel_case):
        bilevel_case.assert_passes(my_estimator)        # fn(problem, x, budget, seed)

``--bilevel-suite quick`` runs the first 3 cases instead of the standard 8.
"""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    parser.getgroup("exact_bilevel").addoption(
        "--bilevel-suite", default="standard", choices=("standard", "quick"),
        help="cases offered by the bilevel_case fixture (default: standard)")


def pytest_generate_tests(metafunc: Any) -> None:
    if "bilevel_case" in metafunc.fixturenames:
        from .experiments.battery import suite

        cases = suite(metafunc.config.getoption("--bilevel-suite"))
        metafunc.parametrize("bilevel_case", cases, ids=[c.name for c in cases])
