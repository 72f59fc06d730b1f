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
from ..core.streams import replicate_rng
from ._common import Estimate, LeaderKnowledge, episodes_for_budget, leader_knowledge
from .bchg import bchg as _bchg
from .bchg import naive as _naive
from .critics import CRITICS
from .hpgd import hpgd as _hpgd
from .hpgd import hpgd_oracle as _hpgd_oracle
from .hpgd import hpgd_td as _hpgd_td
from .model_based import model_based as _model_based
from .sampling import SLOT_ENTRIES, Sampler
from .sobirl import sobirl as _sobirl
from .sobirl import sobirl_simplified as _sobirl_simplified
from .tabular import DQ_CHUNK_ARRAYS, DQ_CHUNK_ENTRIES, DQ_METHODS
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
    if know is None:
        check_sample_buffers(budget)  # before the follower solve
        know = leader_knowledge(problem, x)
    check_sample_buffers(budget, know.beta, know.dr.shape[-1])
    return info.fn(know, Sampler(know.state.mdp, rng), budget, critic)


#: Continuation probabilities over which :func:`check_sample_buffers` takes the worst
#: case when the problem's ``beta`` is not given.
BETA_GRID = (0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)


def sample_buffer_entries(budget: int, beta: float | None = None, n_params: int = 1) -> int:
    """Predicted float64 entries one estimate holds at its peak: :data:`SLOT_ENTRIES` per
    padded slot of the planned episodes (``n`` from :func:`episodes_for_budget`, padded
    to the expected longest, ``1 + (ln n + 0.5772) / -ln beta``), plus the chunked Monte
    Carlo ``dQ`` work (``[n, L, n_params]`` chunks); the worst case over
    :data:`BETA_GRID` when ``beta`` is ``None``.

    A prediction: the sampler checks the exact size of every batch it draws before
    allocating it (:meth:`Sampler._run`), so a longer longest episode than expected is
    still refused in time. Measured peaks: ``tests/test_memory.py``."""
    slots = 0
    for b in (BETA_GRID if beta is None else (beta,)):
        n = episodes_for_budget(budget, b)
        longest = 1.0 if b == 0 else 1.0 + (math.log(n) + 0.5772) / -math.log(b)
        slots = max(slots, math.ceil(n * (longest + 1.0)))
    return SLOT_ENTRIES * slots + DQ_CHUNK_ARRAYS * min(DQ_CHUNK_ENTRIES, slots * n_params)


def check_sample_buffers(budget: int, beta: float | None = None, n_params: int = 1) -> None:
    """Raise ``ValueError`` before sampling if one estimate's buffers would exceed the
    memory budget (:mod:`exact_bilevel.core._budget`), by the prediction of
    :func:`sample_buffer_entries` (the worst case over ``beta`` when not given)."""
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget > 1:
        check_allocation(f"budget = {budget}: episode buffers of one estimate",
                         (sample_buffer_entries(int(budget), beta, n_params),))


def replicates(problem: BilevelProblem, x: object, estimator: str, budget: int,
               n_replicates: int, seed: int, critic: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n_replicates`` independent estimates (``[R, d]``) and their costs (``[R]``).

    Replicate ``i`` draws from :func:`exact_bilevel.core.streams.replicate_rng`
    ``(seed, i)`` (the ``i``-th child of ``SeedSequence(seed)``), so any one can be
    reproduced alone and no two seeds share a stream.
    """
    check_allocation(f"n_replicates = {n_replicates}: the estimates [R, d]",
                     (n_replicates, problem.n_params))
    check_sample_buffers(budget)
    know = leader_knowledge(problem, x)
    out, cost = [], []
    for i in range(n_replicates):
        e = estimate(problem, x, estimator, budget, replicate_rng(seed, i), critic,
                     know)
        out.append(e.gradient)
        cost.append(e.transitions)
    return np.array(out), np.array(cost)

