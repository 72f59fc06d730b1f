"""exact_bilevel: exact ground truth for bilevel reinforcement learning.

The folders are the layers, each importing only the ones before it:

=================== ===========================================================
``core``            the exact answer: model -> soft solve -> sensitivities ->
                    hypergradient
``crosscheck``      independent routes to the same numbers (finite differences,
                    complex step, mpmath, sympy, HPGD recursion, unrolled VI)
``estimators``      the sampler and the sample-based estimators of the literature
``games``           two-player Markov games (exact and sampled)
``validation``      acceptance tests, the wrong estimators they must reject, the
                    convergence protocols
``formats``         problem, game and golden-vector files
``experiments``     example and paper problems, leader optimisation, reproductions,
                    the certification battery
``sweeps``          resumable validation sweeps (SQLite; local pool or Dask)
=================== ===========================================================

The top-level modules are the public interface and may import any layer; no
layer imports them: :mod:`exact_bilevel.testing` and :mod:`exact_bilevel.mutants`
(for other projects' test suites), :mod:`exact_bilevel.strategies` (hypothesis
strategies), :mod:`exact_bilevel.io` (problem files), :mod:`exact_bilevel.gym_envs`
(Gymnasium conversion), :mod:`exact_bilevel.pytest_plugin` (the ``bilevel_case``
fixture), :mod:`exact_bilevel.cli` (the ``exact-bilevel`` command).
The package namespace below is the everyday API.

Modules that lived at the top level before the layered layout (``exact_bilevel.solve``,
``exact_bilevel.sampling``, ``exact_bilevel.markov_game``, ...) stay importable
under their old names: they are the same module objects as their new homes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

#: The public API: name -> the module that defines it (imported on first use, so
#: that ``import exact_bilevel`` and the command line start fast).
_API: dict[str, str] = {
    "AffineReward": ".core.parameterizations",
    "BilevelProblem": ".core.problem",
    "CallableReward": ".core.parameterizations",
    "CallableTransitions": ".core.parameterizations",
    "ConvergenceError": ".core.errors",
    "NumericalError": ".core.errors",
    "FiniteMDP": ".core.mdp",
    "FixedReward": ".core.parameterizations",
    "FixedTransitions": ".core.parameterizations",
    "FollowerState": ".core.follower",
    "GeneralObjective": ".core.objectives",
    "GridWorld": ".core.generators",
    "Hypergradient": ".core.hypergradient",
    "LeaderReturn": ".core.objectives",
    "Objective": ".core.objectives",
    "P_pi": ".core.evaluation",
    "RewardModel": ".core.parameterizations",
    "Sensitivities": ".core.sensitivities",
    "SoftSolution": ".core.solve",
    "SoftSolutionBatch": ".core.batched_solve",
    "SoftmaxTransitions": ".core.parameterizations",
    "TransitionModel": ".core.parameterizations",
    "covariance_decomposition": ".core.hypergradient",
    "follower_sensitivities": ".core.sensitivities",
    "four_rooms": ".core.generators",
    "gridworld": ".core.generators",
    "hypergradient": ".core.hypergradient",
    "hypergradients": ".core.hypergradient",
    "HypergradientBatch": ".core.hypergradient",
    "l2_penalty": ".core.objectives",
    "plan_sample_size": ".validation.planning",
    "policy_evaluation": ".core.evaluation",
    "quadratic_objective": ".core.objectives",
    "random_mdp": ".core.generators",
    "solve_hard": ".core.solve",
    "solve_soft": ".core.solve",
    "solve_soft_batch": ".core.batched_solve",
    "state_action_occupancy": ".core.evaluation",
    "state_occupancy": ".core.evaluation",
    "tabular_incentive": ".core.parameterizations",
}

__version__ = "0.1.0"

#: Former flat module paths -> their homes in the layered layout. The former
#: ``exact_bilevel.hypergradient`` module is not aliased: that name is the function
#: :func:`hypergradient` (importing a module of the same name would rebind it); its
#: module is :mod:`exact_bilevel.core.hypergradient`.
_MOVED: dict[str, str] = {
    **{m: f"core.{m}" for m in (
        "errors", "mdp", "generators", "linalg", "soft_bellman", "solve", "evaluation",
        "parameterizations", "objectives", "problem", "sensitivities")},
    **{m: f"crosscheck.{m}" for m in (
        "finite_differences", "complex_step", "highprec", "symbolic", "gradient_recursion",
        "unrolled")},
    "sampling": "estimators.sampling",
    "markov_game": "games",
    "optimize": "experiments.optimize",
    "benchmarks": "experiments.paper_problems",
    "reproduce": "experiments.reproduce",
    "examples": "experiments.examples",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve ``exact_bilevel.<old name>`` to the module at its new home (same object)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(f"{__name__}.{_MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module was executed at its new home."""


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())


#: The layers, reachable as attributes too (``eb.lqr.hypergradient``), imported on first use.
_SUBPACKAGES = frozenset({"core", "crosscheck", "estimators", "games", "lqr", "validation",
                          "experiments", "formats", "sweeps"})


def __getattr__(name: str) -> object:
    """The public API and the former module paths, imported on first use (PEP 562)."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value  # cache: the next access is a plain attribute
        return value
    if name in _MOVED or name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API) | set(_MOVED) | _SUBPACKAGES)


__all__ = [
    "AffineReward",
    "BilevelProblem",
    "CallableReward",
    "CallableTransitions",
    "ConvergenceError",
    "FiniteMDP",
    "FixedReward",
    "FixedTransitions",
    "FollowerState",
    "GeneralObjective",
    "GridWorld",
    "Hypergradient",
    "HypergradientBatch",
    "LeaderReturn",
    "NumericalError",
    "Objective",
    "P_pi",
    "RewardModel",
    "Sensitivities",
    "SoftSolution",
    "SoftSolutionBatch",
    "SoftmaxTransitions",
    "TransitionModel",
    "__version__",
    "covariance_decomposition",
    "follower_sensitivities",
    "four_rooms",
    "gridworld",
    "hypergradient",
    "hypergradients",
    "l2_penalty",
    "plan_sample_size",
    "policy_evaluation",
    "quadratic_objective",
    "random_mdp",
    "solve_hard",
    "solve_soft",
    "solve_soft_batch",
    "state_action_occupancy",
    "state_occupancy",
    "tabular_incentive",
]
