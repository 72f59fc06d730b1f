r"""Exact reference for continuous tasks: entropy-regularised (soft) LQR bilevel problems.

The follower of a linear-Gaussian system with quadratic costs and entropy
regularisation has a closed form — a Gaussian policy with linear mean and fixed
covariance from a discounted Riccati equation — so ``F(x)`` and ``grad F(x)`` are
exact here too. The layers follow the tabular core:

* :mod:`.model` — :class:`LQRProblem` (dynamics, costs, leader reward, the affine
  parameterisation; shapes ``A[n, n]``, ``B[n, m]``, ``C[n, p]``, parameter axis last);
* :mod:`.riccati` — the soft Riccati fixed point, certified (value iteration + Newton),
  and scipy's DARE as a second method;
* :mod:`.objective` — Gaussian state marginals and the leader's objective in closed form;
* :mod:`.hypergradient` — ``grad F`` by the implicit function theorem, adjoint mode;
* :mod:`.sensitivities` — forward-mode ``dP``, ``dv`` and the follower's soft-Q gradient;
* :mod:`.highprec` — the whole computation in mpmath (an independent route);
* :mod:`.sampling` and :mod:`.estimators` — rollouts of the linear-Gaussian system and
  the BC-HG family for Gaussian policies;
* :mod:`.tasks` — the BC-HG paper's BuildingThermalControl and LQR game;
* :mod:`.files` — the ``exact-bilevel-lqr/1`` file format.

May import: :mod:`exact_bilevel.core`.
"""

from .hypergradient import LQRHypergradient, hypergradient
from .model import LeaderReward, LQRInstance, LQRProblem, make_problem
from .objective import undiscounted_return, value
from .riccati import SoftLQRSolution, dare_reference, solve_soft_lqr

__all__ = [
    "LQRHypergradient",
    "LQRInstance",
    "LQRProblem",
    "LeaderReward",
    "SoftLQRSolution",
    "dare_reference",
    "hypergradient",
    "make_problem",
    "solve_soft_lqr",
    "undiscounted_return",
    "value",
]
