r"""The estimator registry: name -> function, access, critics, bias.

:data:`ESTIMATORS` records, for each estimator of the literature, the access to
the environment it needs, the critics it accepts and whether it is unbiased;
:func:`estimate` runs one by name, :func:`replicates` runs independent copies
in one vectorised pass (:func:`run_replicates` for a cell of a sweep).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core._budget import check_allocation
from ..core.problem import BilevelProblem
from ..core.streams import cell_uniforms
from ._common import (
    Estimate,
    LeaderKnowledge,
    is_vectorised,
    leader_knowledge,
    vectorised,
)
from .bchg import bchg as _bchg
from .bchg import naive as _naive
from .critics import CRITICS
from .hpgd import hpgd as _hpgd
from .hpgd import hpgd_oracle as _hpgd_oracle
from .hpgd import hpgd_td as _hpgd_td
from .model_based import model_based as _model_based
from .sampling import STEP_ENTRIES, Sampler, Uniforms, block_size
from .sobirl import sobirl as _sobirl
from .sobirl import sobirl_simplified as _sobirl_simplified
from .tabular import DQ_CHUNK_ARRAYS, DQ_METHODS
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
                            "monte-carlo", False, "Yang, Gao, Yuan 2025"),
    "sobirl-simplified": EstimatorInfo(_sobirl_simplified, "generative model",
                                       ("monte-carlo",), "monte-carlo", False,
                                       "Yang, Gao, Yuan 2025 (simplified)"),
    "model-based": EstimatorInfo(_model_based, "generative model", ("exact",), "exact", False,
                                 "Yang, Gao, Yuan 2025 (M-SoBiRL)"),
    "naive": EstimatorInfo(_naive, "on-policy episodes", CRITICS, "exact", False,
                           "direct term only"),
    "zeroth-order": EstimatorInfo(_zeroth_order, "deploy perturbed x; on-policy episodes",
                                  ("exact",), "exact", False, "Gaussian smoothing"),
}
for _info in ESTIMATORS.values():  # every registered estimator serves R replicates at once
    vectorised(_info.fn)


def _resolve(estimator: str, critic: str | None) -> tuple[EstimatorInfo, str]:
    """The registry entry of ``estimator`` and its critic (``None``: the default);
    ``ValueError`` naming the field for an unknown estimator or a critic it does not take."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator = {estimator!r}: must be one of {sorted(ESTIMATORS)}")
    info = ESTIMATORS[estimator]
    critic = info.default_critic if critic is None else critic
    if critic not in info.critics:
        raise ValueError(f"critic = {critic!r}: estimator {estimator!r} accepts {info.critics}")
    return info, critic


def estimate(problem: BilevelProblem, x: object, estimator: str, budget: int,
             rng: np.random.Generator, critic: str | None = None,
             know: LeaderKnowledge | None = None) -> Estimate:
    """One estimate of ``grad F(x)`` by ``estimator`` from at most ``budget`` transitions
    (``ValueError`` naming the estimator's minimum below it).

    ``critic`` defaults to the estimator's :attr:`EstimatorInfo.default_critic`;
    ``know`` may be passed to reuse the follower solve across replicates.
    """
    info, critic = _resolve(estimator, critic)
    if know is None:
        check_sample_buffers(budget)  # before the follower solve
        know = leader_knowledge(problem, x)
    check_sample_buffers(budget, know.beta, know.dr.shape[-1])
    return info.fn(know, Sampler(know.state.mdp, rng), budget, critic)


def sample_buffer_entries(budget: int, beta: float | None = None, n_params: int = 1) -> int:
    """Predicted float64 entries one estimate holds at its peak: :data:`STEP_ENTRIES` per
    step or episode of its flat batch (at most ``budget`` of them: each episode bills its
    reset), the ``2 budget`` uniforms of a single estimate's block, and the Monte Carlo
    ``dQ`` work (``DQ_CHUNK_ARRAYS`` arrays of at most ``budget`` steps). ``beta`` and
    ``n_params`` are accepted for the callers' sake; the flat layout does not depend on
    them (``dQ`` works one parameter column at a time).

    A prediction: the sampler checks the exact size of every batch it draws before
    allocating it (:meth:`Sampler._run`). Measured peaks: ``tests/test_memory.py``."""
    del beta, n_params
    return (STEP_ENTRIES + 2 + DQ_CHUNK_ARRAYS) * int(budget)


def check_sample_buffers(budget: int, beta: float | None = None, n_params: int = 1) -> None:
    """Raise ``ValueError`` before sampling if one estimate's buffers would exceed the
    memory budget (:mod:`exact_bilevel.core._budget`), by the prediction of
    :func:`sample_buffer_entries`."""
    if isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget > 1:
        check_allocation(f"budget = {budget}: episode buffers of one estimate",
                         (sample_buffer_entries(int(budget), beta, n_params),))


#: Most uniforms (``R x block``) drawn at once by :func:`run_replicates`; more
#: replicates are run in consecutive chunks (same numbers: each owns its block).
CHUNK_UNIFORMS = 4_000_000


def run_replicates(fn: EstimatorFn, know: LeaderKnowledge, budget: int, n_replicates: int,
                   seed: int, critic: str, key: tuple[int, ...] = (), first: int = 0, *,
                   uniforms: np.ndarray | None = None,
                   progress: Callable[[int], object] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Replicates ``first, ..., first + R - 1`` of the cell ``key`` of a run seeded
    ``seed``: estimates ``[R, d]`` of ``fn`` (registry signature) and their costs
    ``[R]``, replicate ``i`` reading block ``i`` of the cell's uniforms
    (:func:`exact_bilevel.core.streams.cell_uniforms`, block
    :func:`.sampling.block_size` ``(budget, d)``; or the rows of ``uniforms[R, B]`` when
    given), in chunks of at most :data:`CHUNK_UNIFORMS` uniforms, each chunk one
    vectorised call of ``fn`` (:func:`._common.vectorised`). A function not marked
    vectorised (yours) is called once per replicate with a single-estimate sampler on
    the same block: the numbers of a vectorised function are the same either way.
    ``progress(k)`` is called after each ``k`` replicates done. Large calls run faster
    where freed heap memory is kept for reuse (:func:`exact_bilevel.core.heap.retain_heap`:
    the command line does it; a library call leaves your process's allocator alone)."""
    B = block_size(budget, know.dr.shape[-1]) if uniforms is None else uniforms.shape[1]
    per = max(1, CHUNK_UNIFORMS // B)
    out, cost = [], []
    for lo in range(0, n_replicates, per):
        R = min(per, n_replicates - lo)
        if uniforms is None:
            check_allocation(f"{R} replicates x {B} uniforms: the uniforms of one chunk",
                             (R, B))
            U = cell_uniforms(seed, R, B, key, first + lo)
        else:
            U = uniforms[lo:lo + R]
        if is_vectorised(fn):
            e = fn(know, Sampler(know.state.mdp, Uniforms(U)), budget, critic)
            out.append(np.asarray(e.gradient, dtype=float).reshape(R, -1))
            cost.append(np.asarray(e.transitions).reshape(R))
            if progress is not None:
                progress(R)
            continue
        for i in range(R):
            e = fn(know, Sampler(know.state.mdp, Uniforms(U[i:i + 1]), single=True), budget,
                   critic)
            out.append(np.asarray(e.gradient, dtype=float).reshape(1, -1))
            cost.append(np.asarray(e.transitions).reshape(1))
            if progress is not None:
                progress(1)
    return np.concatenate(out), np.concatenate(cost)


def replicates(problem: BilevelProblem, x: object, estimator: str, budget: int,
               n_replicates: int, seed: int, critic: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n_replicates`` independent estimates (``[R, d]``) and their costs (``[R]``),
    drawn together (:func:`run_replicates`).

    Replicate ``i`` reads block ``i`` of the uniforms of ``seed``'s plain cell (stream rule
    ``cell-block/3``, :mod:`exact_bilevel.core.streams`): ``estimate(problem, x,
    estimator, budget, block_rng(seed, i, block_size(budget, d)))`` gives the same
    estimate alone, bit for bit, and no two replicates share a uniform.
    """
    info, critic = _resolve(estimator, critic)
    n_replicates = int(n_replicates)
    check_allocation(f"n_replicates = {n_replicates}: the estimates [R, d]",
                     (n_replicates, problem.n_params))
    check_sample_buffers(budget)
    know = leader_knowledge(problem, x)
    check_sample_buffers(budget, know.beta, know.dr.shape[-1])
    return run_replicates(info.fn, know, budget, n_replicates, seed, critic)
