r"""Model-based hypergradient (M-SoBiRL style): estimate ``P``, then the exact formula.

``budget // (S*A)`` generative-model draws per pair give ``P_hat[s, a, s'] =
N(s, a, s') / N(s, a)``. Rewards are deterministic functions of ``(s, a)``
known to the leader's design (``r_hat = r`` once every pair is sampled). The
empirical problem keeps the leader's transition parameterisation around the
estimate: ``P_hat`` fixed when ``P`` does not depend on ``x``; for softmax-logit
transitions the exponential tilt ``P_hat_x' ∝ P_hat exp(Psi (x' - x))``, i.e.
logits ``log P_hat - Psi x`` (``-inf`` where ``N(s, a, s') = 0``). The follower is
re-solved in the empirical MDP and the exact hypergradient of that problem is
returned. Consistent; biased at finite budget (``O(1/n)``).

The ``R`` replicates' empirical problems are solved together
(:func:`~exact_bilevel.core.batched_hypergradient.hypergradients_of_models`: batched soft
Newton, then a few batched solves for the leader values and the adjoint) when the
problem allows it (a leader-return objective, fixed or softmax-logit transitions, no
``solver_options``, MDPs held dense: :func:`~exact_bilevel.core.batched_solve.applies`);
otherwise each replicate's empirical problem is built and solved on its own
(:func:`empirical_model`, :func:`~exact_bilevel.core.hypergradient.hypergradient`; sparse
and large MDPs, general objectives). Both routes give the same gradients to rounding
(``tests/test_batched_solve.py``: 1e-12 relative).
"""

from __future__ import annotations

import numpy as np

from ..core._budget import check_allocation
from ..core.batched_hypergradient import hypergradients_of_models, supports
from ..core.batched_solve import applies
from ..core.hypergradient import hypergradient
from ..core.parameterizations import FixedTransitions, SoftmaxTransitions, TransitionModel
from ..core.problem import BilevelProblem
from ._common import Estimate, LeaderKnowledge, check_budget, finish
from .critics import transition_frequencies
from .sampling import Sampler


def empirical_model(problem: BilevelProblem, x: np.ndarray, P_hat: np.ndarray
                    ) -> BilevelProblem:
    """``problem`` with its transitions replaced by the estimate ``P_hat[S, A, S]``."""
    tr = problem.transitions
    new: TransitionModel
    if not tr.depends_on_x:
        new = FixedTransitions(P_hat, problem.n_params)
    elif isinstance(tr, SoftmaxTransitions):
        with np.errstate(divide="ignore"):
            logp = np.where(P_hat > 0, np.log(np.where(P_hat > 0, P_hat, 1.0)), -np.inf)
        new = SoftmaxTransitions(logp - tr.features @ x, tr.features)
    else:
        raise ValueError(f"transitions: model-based estimation supports fixed and softmax-logit "
                         f"transitions, not {type(tr).__name__}")
    return BilevelProblem(problem.follower_reward, new, problem.objective, gamma=problem.gamma,
                          tau=problem.tau, initial=problem.initial,
                          solver_options=problem.solver_options)


def empirical_hypergradients(problem: BilevelProblem, x: np.ndarray, P_hat: np.ndarray,
                             v0: np.ndarray | None = None) -> np.ndarray:
    """``grad F(x)`` of each empirical problem ``empirical_model(problem, x, P_hat[m])``,
    ``P_hat[R, S, A, S]`` -> ``[R, d]``: batched where the module docstring says (Newton
    from ``v0[S]``, e.g. the follower's values in the true problem, when given), else one
    by one."""
    if supports(problem) and applies(problem.n_states, problem.n_actions):
        return hypergradients_of_models(problem, x, P_hat, v0=v0).gradients
    return each_empirical_hypergradient(problem, x, P_hat)


def each_empirical_hypergradient(problem: BilevelProblem, x: np.ndarray, P_hat: np.ndarray
                                 ) -> np.ndarray:
    """As :func:`empirical_hypergradients`, one empirical problem at a time (any
    objective, transitions storage and solver options)."""
    return np.array([hypergradient(empirical_model(problem, x, P), x).gradient
                     for P in P_hat]).reshape(len(P_hat), problem.n_params)


def model_based(know: LeaderKnowledge, sampler: Sampler, budget: int,
                critic: str = "exact") -> Estimate:
    """Exact hypergradient of the empirical model from ``budget // (S*A)`` draws per pair,
    per replicate (all replicates' follower solves batched where the module docstring
    says). ``critic`` is unused (the model gives every value)."""
    start, resets0 = sampler.transitions, sampler.resets
    S, A = know.pi.shape
    check_budget(budget, S * A, "model-based", "one generative-model draw per pair",
                 f"S*A = {S * A}")
    check_allocation("model-based: the empirical models P_hat [R, S, A, S]",
                     (sampler.n_replicates, S, A, S))
    with sampler.capped(budget):
        s, a, s1 = sampler.sweep(budget // (S * A))
    P_hat = transition_frequencies(s, a, s1.reshape(sampler.n_replicates, -1), S, A)
    gradient = empirical_hypergradients(know.problem, know.state.x, P_hat,
                                        v0=know.state.solution.v)
    return finish(sampler, gradient, start, resets0, "model-based")
