"""The sparse (S*A, S) storage gives the same answers as the dense one.

Tolerances: values, policies, occupancies and hypergradients agree to 1e-12
relative (both are exact solvers; only the LU differs); validation errors name
the same field and index; sampling from the sparse storage follows P
(chi-square, false alarm 1e-4).
"""

import numpy as np
import pytest
import scipy.sparse
import scipy.stats
from hypothesis import given

from exact_bilevel import (
    BilevelProblem,
    FiniteMDP,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    hypergradient,
    policy_evaluation,
    solve_soft,
    state_occupancy,
    tabular_incentive,
)
from exact_bilevel.core.generators import gridworld, open_gridworld, random_mdp
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.strategies import seeds


def _pair(seed, S=12, A=3, support=3):
    dense = random_mdp(S, A, gamma=0.95, seed=seed, support=support)
    sparse = FiniteMDP(dense.transitions, dense.reward, dense.gamma, dense.initial,
                       storage="sparse")
    return dense, sparse


@given(seeds)
def test_solver_evaluation_occupancy_agree(seed):
    dense, sparse = _pair(seed)
    assert sparse.is_sparse and not dense.is_sparse
    a, b = solve_soft(dense, 0.3), solve_soft(sparse, 0.3)
    assert np.max(np.abs(a.v - b.v)) <= 1e-12 * np.max(np.abs(a.v))
    assert np.max(np.abs(a.policy - b.policy)) <= 1e-12
    pe_a, pe_b = policy_evaluation(dense, a.policy, 0.3), policy_evaluation(sparse, a.policy, 0.3)
    assert np.max(np.abs(pe_a.q - pe_b.q)) <= 1e-12 * np.max(np.abs(pe_a.q))
    oa, ob = state_occupancy(dense, a.policy), state_occupancy(sparse, a.policy)
    assert np.max(np.abs(oa - ob)) <= 1e-12 * np.max(oa)


@given(seeds)
def test_hypergradient_agrees(seed):
    dense, sparse = _pair(seed)
    S, A = dense.n_states, dense.n_actions
    follower = tabular_incentive(dense.reward, states=[0, 3, 7], scale=0.5)
    leader = LeaderReturn(FixedReward(np.eye(S, A), 3))
    grads = []
    for P in (dense.transitions, sparse.transition_matrix):
        problem = BilevelProblem(follower, FixedTransitions(P, 3, n_actions=A), leader,
                                 gamma=0.95, tau=0.3, initial=dense.initial)
        assert problem.follower_mdp(np.zeros(3)).is_sparse == scipy.sparse.issparse(P)
        for mode in ("adjoint", "forward"):
            grads.append(hypergradient(problem, np.array([0.1, -0.2, 0.3]), mode=mode).gradient)
    for g in grads[1:]:
        assert np.max(np.abs(g - grads[0])) <= 1e-12 * np.max(np.abs(grads[0]))


def test_sparse_sampling_follows_p():
    dense, sparse = _pair(5, support=4)
    smp = Sampler(sparse, np.random.default_rng(0))
    for s, a in [(0, 0), (7, 2)]:
        draws = smp.step(np.full(100_000, s), np.full(100_000, a))
        expected = 100_000 * dense.transitions[s, a]
        support = expected > 0
        counts = np.bincount(draws, minlength=dense.n_states)
        assert np.all(counts[~support] == 0)
        assert scipy.stats.chisquare(counts[support], expected[support]).pvalue > 1e-4


def test_auto_storage_and_gridworlds():
    mdp, _ = open_gridworld(60, 60)
    assert mdp.is_sparse and mdp.n_states == 3600
    small, _ = gridworld(["   ", "   "], goal=(0, 2), random_action_prob=0.2)
    assert not small.is_sparse
    big_dense = FiniteMDP(small.transitions, small.reward, 0.9, storage="sparse")
    np.testing.assert_array_equal(big_dense.transitions, small.transitions)
    # an open gridworld solved sparse and dense gives the same values
    mdp_s, _ = gridworld([" " * 8] * 5, goal=(4, 7), random_action_prob=0.1,
                         storage="sparse")
    mdp_d, _ = gridworld([" " * 8] * 5, goal=(4, 7), random_action_prob=0.1,
                         storage="dense")
    np.testing.assert_allclose(solve_soft(mdp_s, 0.1).v, solve_soft(mdp_d, 0.1).v,
                               rtol=1e-12)


@pytest.mark.parametrize("edit, match", [
    (lambda M: M.multiply(2.0), r"transitions\[0, 0, :\]: sums to 2.0"),
    (lambda M: M[:-1], r"must have shape \(S\*A, S\)"),
    (lambda M: scipy.sparse.csr_matrix(M.toarray() * np.where(
        np.arange(M.shape[1]) == 1, -1.0, 1.0)), r"probabilities must be >= 0"),
])
def test_sparse_validation_names_field(edit, match):
    _, sparse = _pair(1)
    M = sparse.transition_matrix.copy()
    with pytest.raises(ValueError, match=match):
        FiniteMDP(edit(M), sparse.reward, 0.9, n_actions=3)
    with pytest.raises(ValueError, match="n_actions: required"):
        FiniteMDP(M, sparse.reward, 0.9)
