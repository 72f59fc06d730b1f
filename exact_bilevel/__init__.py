"""exact_bilevel: exact ground truth for bilevel reinforcement learning.

Layout follows the math: model (:mod:`.mdp`, :mod:`.generators`) -> soft solve
(:mod:`.soft_bellman`, :mod:`.solve`, :mod:`.evaluation`) -> sensitivities
(:mod:`.parameterizations`, :mod:`.sensitivities`) -> hypergradient
(:mod:`.objectives`, :mod:`.problem`, :mod:`.hypergradient`) -> estimators
(:mod:`.sampling`, :mod:`.estimators`) -> verification (:mod:`.testing`,
:mod:`.mutants`, and the independent routes :mod:`.complex_step`,
:mod:`.highprec`, :mod:`.symbolic`).
"""

from .errors import ConvergenceError
from .evaluation import (
    P_pi,
    policy_evaluation,
    state_action_occupancy,
    state_occupancy,
)
from .generators import GridWorld, four_rooms, gridworld, random_mdp
from .hypergradient import Hypergradient, covariance_decomposition, hypergradient
from .mdp import FiniteMDP
from .objectives import (
    GeneralObjective,
    LeaderReturn,
    Objective,
    l2_penalty,
    quadratic_objective,
)
from .parameterizations import (
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
from .problem import BilevelProblem, FollowerState
from .sensitivities import Sensitivities, follower_sensitivities
from .solve import SoftSolution, solve_hard, solve_soft

__version__ = "0.1.0"

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
