"""exact_bilevel: exact ground truth for bilevel reinforcement learning.

The folders are the layers, each importing only the ones before it:

=================== ===========================================================
``core``            the exact answer: model -> soft solve -> sensitivities ->
                    hypergradient
``crosscheck``      independent routes to the same numbers (finite differences,
                    complex step, mpmath, sympy, HPGD recursion, unrolled VI)
``estimators``      the sampler and the sample-based estimators of the literature
``games``           two-player Markov games (exact and sampled)
``validation``      acceptance tests and the wrong estimators they must reject
``experiments``     example and paper problems, leader optimisation, reproductions
=================== ===========================================================

The top-level modules are the public interface and may import any layer; no
layer imports them: :mod:`exact_bilevel.testing` and :mod:`exact_bilevel.mutants`
(for other projects' test suites), :mod:`exact_bilevel.strategies` (hypothesis
strategies), :mod:`exact_bilevel.io` (problem files), :mod:`exact_bilevel.gym_envs`
(Gymnasium conversion), :mod:`exact_bilevel.cli` (the ``exact-bilevel`` command).
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

from .core.errors import ConvergenceError
from .core.evaluation import (
    P_pi,
    policy_evaluation,
    state_action_occupancy,
    state_occupancy,
)
from .core.follower import FollowerState
from .core.generators import GridWorld, four_rooms, gridworld, random_mdp
from .core.hypergradient import Hypergradient, covariance_decomposition, hypergradient
from .core.mdp import FiniteMDP
from .core.objectives import (
    GeneralObjective,
    LeaderReturn,
    Objective,
    l2_penalty,
    quadratic_objective,
)
from .core.parameterizations import (
    AffineReward,
    CallableReward,
    CallableTransitions,
    FixedReward,
    FixedTransitions,
    RewardModel,
    SoftmaxTransitions,
    TransitionModel,
    tabular_incentive,
)
from .core.problem import BilevelProblem
from .core.sensitivities import Sensitivities, follower_sensitivities
from .core.solve import SoftSolution, solve_hard, solve_soft

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


def __getattr__(name: str) -> types.ModuleType:
    """``exact_bilevel.solve`` etc. as attributes, imported on first use."""
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "LeaderReturn",
    "Objective",
    "P_pi",
    "RewardModel",
    "Sensitivities",
    "SoftSolution",
    "SoftmaxTransitions",
    "TransitionModel",
    "__version__",
    "covariance_decomposition",
    "follower_sensitivities",
    "four_rooms",
    "gridworld",
    "hypergradient",
    "l2_penalty",
    "policy_evaluation",
    "quadratic_objective",
    "random_mdp",
    "solve_hard",
    "solve_soft",
    "state_action_occupancy",
    "state_occupancy",
    "tabular_incentive",
]
