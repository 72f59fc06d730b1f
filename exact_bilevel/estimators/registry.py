r"""The estimator registry: name -> function, access, critics, bias.

:data:`ESTIMATORS` records, for each estimator of the literature, the access to
the environment it needs, the critics it accepts and whether it is unbiased;
:func:`estimate` runs one by name, :func:`replicates` runs independent copies
with per-replicate seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core._budget import check_allocation
from ..core.problem import BilevelProblem
from ._common import Estimate, LeaderKnowledge, leader_knowledge
from .bchg import bchg as _bchg
from .bchg import naive as _naive
from .critics import CRITICS
from .hpgd import hpgd as _hpgd
from .hpgd import hpgd_oracle as _hpgd_oracle
from .hpgd import hpgd_td as _hpgd_td
from .model_based import model_based as _model_based
from .sampling import Sampler
from .sobirl import sobirl as _sobirl
from .sobirl import sobirl_simplified as _sobirl_simplified
from .tabular import DQ_METHODS
from .zeroth_order import zeroth_order as _zeroth_order


def _bchg_baseline(know: LeaderKnowledge, sampler: Sampler, budget: int,
                   critic: str = "exact") -> Estimate:
    return _bchg(know, sampler, budget, critic, baseline=True)

EstimatorFn = Callable[[LeaderKnowledge, Sampler, int, str], Estimate]


@dataclass(frozen=True)
class EstimatorInfo:
    """An estimator, the access it needs, its critics and whether it is unbiased."""

    fn: EstimatorFn
    access: str
    critics: tuple[str, ...]
    default_critic: str
    unbiased: bool
    reference: str


ESTIMATORS: dict[str, EstimatorInfo] = {
    "bc-hg": EstimatorInfo(_bchg, "on-policy episodes; follower policy and value", CRITICS,
                           "exact", True, "Kudo et al. 2026"),
    "bc-hg-baseline": EstimatorInfo(_bchg_baseline, "as bc-hg", CRITICS, "exact", True,
                                    "Kudo et al. 2026 + state-value baseline on the score"),
    "hpgd": EstimatorInfo(_hpgd, "on-policy episodes (repeated visits)", CRITICS, "exact",
                          False, "Thoma et al. 2024"),
    "hpgd-td": EstimatorInfo(_hpgd_td, "on-policy episodes (repeated visits)", CRITICS,
                             "exact", False, "Thoma et al. 2024"),
    "hpgd-oracle": EstimatorInfo(_hpgd_oracle, "on-policy episodes and resets", CRITICS,
                                 "exact", False, "Thoma et al. 2024"),
    "sobirl": EstimatorInfo(_sobirl, "resets to (s, a); exact partials of f", DQ_METHODS,
                            "monte-carlo", False, "Yang, Gao, Yuan 2024"),
    "sobirl-simplified": EstimatorInfo(_sobirl_simplified, "generative model",
                                       ("monte-carlo",), "monte-carlo", False,
                                       "Yang, Gao, Yuan 2024 (simplified)"),
    "model-based": EstimatorInfo(_model_based, "generative model", ("exact",), "exact", False,
                                 "Yang, Gao, Yuan 2024 (M-SoBiRL)"),
    "naive": EstimatorInfo(_naive, "on-policy episodes", CRITICS, "exact", False,
                           "direct term only"),
    "zeroth-order": EstimatorInfo(_zeroth_order, "deploy perturbed x; on-policy episodes",
                                  ("exact",), "exact", False, "Gaussian smoothing"),
}


def estimate(problem: BilevelProblem, x: object, estimator: str, budget: int,
             rng: np.random.Generator, critic: str | None = None,
             know: LeaderKnowledge | None = None) -> Estimate:
    """One estimate of ``grad F(x)`` by ``estimator`` from at most ``budget`` transitions
    (``ValueError`` naming the estimator's minimum below it).

    ``critic`` defaults to the estimator's :attr:`EstimatorInfo.default_critic`;
    ``know`` may be passed to reuse the follower solve across replicates.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {sorted(ESTIMATORS)}")
    info = ESTIMATORS[estimator]
    critic = info.default_critic if critic is None else critic
    if critic not in info.critics:
        raise ValueError(f"critic = {critic!r}: estimator {estimator!r} accepts {info.critics}")
    check_sample_buffers(budget)
    if know is None:
        know = leader_knowledge(problem, x)
    return info.fn(know, Sampler(know.state.mdp, rng), budget, critic)


def check_sample_buffers(budget: int) -> None:
    """Raise ``ValueError`` before sampling if one estimate's buffers would exceed the
    memory budget (:mod:`exact_bilevel.core._budget`): episodes are padded to the
    longest, so states, actions and weights take about ``3 budget log(budget)`` entries."""
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget > 1:
        check_allocation(f"budget = {budget}: episode buffers of one estimate",
                         (budget, 3 * math.ceil(math.log(budget))))


def replicates(problem: BilevelProblem, x: object, estimator: str, budget: int,
               n_replicates: int, seed: int, critic: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n_replicates`` independent estimates (``[R, d]``) and their costs (``[R]``).

    Replicate ``i`` uses ``numpy.random.default_rng([seed, i])``, so any one can be
    reproduced alone.
    """
    check_allocation(f"n_replicates = {n_replicates}: the estimates [R, d]",
                     (n_replicates, problem.n_params))
    check_sample_buffers(budget)
    know = leader_knowledge(problem, x)
    out, cost = [], []
    for i in range(n_replicates):
        e = estimate(problem, x, estimator, budget, np.random.default_rng([seed, i]), critic,
                     know)
        out.append(e.gradient)
        cost.append(e.transitions)
    return np.array(out), np.array(cost)

