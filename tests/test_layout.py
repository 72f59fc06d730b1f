"""The package layout shows its layers: each subpackage imports only the layers its
docstring allows, the import graph has no cycles, and every former module path
still imports (as the same module object as its new home)."""

import ast
import importlib
import pathlib
import re
import subprocess
import sys

import pytest

import exact_bilevel

PKG = pathlib.Path(exact_bilevel.__file__).parent
SUBPACKAGES = sorted(p.parent.name for p in PKG.glob("*/__init__.py"))


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """exact_bilevel modules imported anywhere in the file (type-only imports included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("exact_bilevel")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("exact_bilevel"):
                mod = node.module
            else:
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{a.name}"
                out.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        or (PKG.parent / sub.replace(".", "/") / "__init__.py").exists()
                        else mod)
    return out


GRAPH = {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}


def _layer(module: str) -> str:
    """The subpackage a module belongs to, or "interface" for top-level modules."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "root" if module == "exact_bilevel" else "interface"


def _allowed(sub: str) -> set[str]:
    doc = importlib.import_module(f"exact_bilevel.{sub}").__doc__ or ""
    match = re.search(r"May import:(.*?)(?:\n\n|\Z)", doc, re.S)
    assert match, f"exact_bilevel.{sub}: docstring must state 'May import: ...'"
    text = match.group(1)
    if "every other subpackage" in text:
        return set(SUBPACKAGES)
    return set(re.findall(r"exact_bilevel\.(\w+)", text)) & set(SUBPACKAGES)


def test_few_top_level_modules_and_every_subpackage_states_its_role():
    top = sorted(p.stem for p in PKG.glob("*.py"))
    assert len(top) <= 10, top
    for sub in SUBPACKAGES:
        if sub == "schema":
            continue
        doc = importlib.import_module(f"exact_bilevel.{sub}").__doc__
        assert doc and len(doc) > 200, sub
        _allowed(sub)


@pytest.mark.parametrize("sub", [s for s in SUBPACKAGES if s != "schema"])
def test_imports_point_down_the_layers(sub):
    allowed = _allowed(sub) | {sub}
    for module, deps in GRAPH.items():
        if _layer(module) != sub:
            continue
        for dep in deps:
            layer = _layer(dep)
            assert layer != "interface", f"{module} imports the top-level module {dep}"
            assert layer != "root", f"{module} imports the package root"
            assert layer in allowed, f"{module} imports {dep}: layer {layer!r} not allowed"


def test_import_graph_has_no_cycles():
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in GRAPH.get(node, ()):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, dep]))
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for node in GRAPH:
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("old", sorted(exact_bilevel._MOVED))
def test_former_module_paths_still_import(old):
    module = importlib.import_module(f"exact_bilevel.{old}")
    assert module is importlib.import_module(f"exact_bilevel.{exact_bilevel._MOVED[old]}")
    assert getattr(exact_bilevel, old) is module
    assert callable(exact_bilevel.hypergradient)  # the function is never shadowed


def test_documented_import_paths_in_a_fresh_interpreter():
    code = """
import exact_bilevel as eb
from exact_bilevel import markov_game as mg, highprec
from exact_bilevel.sampling import Sampler
from exact_bilevel.examples import random_problem, four_rooms_incentives
from exact_bilevel.optimize import optimize, estimator_gradient
from exact_bilevel.benchmarks import four_rooms_design, sobirl_synthetic
from exact_bilevel.markov_game import discrete_toy
from exact_bilevel.io import save_problem, load_problem, schema
from exact_bilevel.gym_envs import from_gymnasium
from exact_bilevel.testing import assert_unbiased, assert_consistent
from exact_bilevel.mutants import MUTANTS
from exact_bilevel.estimators import ESTIMATORS, estimate
from exact_bilevel.strategies import bilevel_problems
import exact_bilevel.cli
assert set(eb.__all__) <= set(dir(eb))
assert mg.hypergradient(discrete_toy(), [0.0] * 6).gradient.shape == (6,)
assert callable(eb.hypergradient)
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_subpackages_are_attributes_of_the_package():
    code = ("import exact_bilevel as eb, sys; "
            "assert 'exact_bilevel.lqr' not in sys.modules; "
            "p = eb.lqr.make_problem(A=[[0.5]], B=[[1.0]], Q=[[1.0]], R=[[1.0]], gamma=0.9, "
            "tau=0.1, jac={'A': [[[0.1]]]}, Q_L=[[1.0]], mu0=[1.0]); "
            "print(eb.lqr.hypergradient(p, [0.0]).gradient, eb.games.discrete_toy(1.0).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
