"""The two forms of the empirical transitions behind the TD critics
(``critics.EmpiricalSteps``: the steps; ``critics.EmpiricalTable``: the table) against
a brute-force route (Python loops over the steps, one ``numpy.linalg.solve`` per
replicate), and the rule that picks one (it depends on nothing sampled)."""

from __future__ import annotations

import numpy as np
import pytest

from exact_bilevel.core.mdp import FiniteMDP
from exact_bilevel.estimators.critics import (
    STEPS_WORK_PER_ENTRY,
    EmpiricalSteps,
    EmpiricalTable,
    batch_td,
    empirical_form,
)
from exact_bilevel.estimators.sampling import Sampler, Uniforms, as_batch

FORMS = (EmpiricalSteps, EmpiricalTable)
#: (S, A, replicates, episodes per replicate, beta, seed)
BATCHES = [(3, 2, 5, 1, 0.6, 0), (4, 3, 7, 3, 0.8, 1), (6, 2, 4, 12, 0.9, 2),
           (2, 2, 3, 40, 0.7, 3)]


def _batch(S, A, R, n, beta, seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, 0.3), size=(S, A))
    mdp = FiniteMDP(P, np.zeros((S, A)), 0.9, rng.dirichlet(np.ones(S)))
    pi = rng.dirichlet(np.ones(A), size=S)
    U = np.random.default_rng(seed + 100).random((R, 4000))
    b = Sampler(mdp, Uniforms(U)).episode_batch(pi, n, beta)
    return b, pi, rng


def _brute_P(b, S, A):
    """``P_hat[r, s, a, s']`` by counting the steps one by one."""
    counts = np.zeros((b.n_replicates, S, A, S))
    for r, s, a, s1 in zip(b.replicate, b.s, b.a, b.s1, strict=True):
        counts[r, s, a, s1] += 1
    visits = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, visits, out=np.zeros_like(counts), where=visits > 0)


def _close(x, y, tol=1e-13):
    scale = max(1.0, np.abs(y).max())
    assert x.shape == y.shape
    assert np.abs(x - y).max() <= tol * scale, np.abs(x - y).max() / scale


@pytest.mark.parametrize("case", BATCHES)
@pytest.mark.parametrize("form", FORMS)
def test_each_form_gives_the_products_of_the_counted_transitions(form, case):
    S, A = case[:2]
    b, pi, rng = _batch(*case)
    P = _brute_P(b, S, A)
    model = form.of(b, S, A)
    assert model.n_replicates == b.n_replicates
    _close(model.policy_matrix(pi), np.einsum("sa,rsat->rst", pi, P))
    v = rng.normal(size=(b.n_replicates, S, 3))
    _close(model.successor_mean(v), np.einsum("rsat,rtk->rsak", P, v))
    w = rng.normal(size=(S, A, S, 2))
    _close(model.triple_mean(w), np.einsum("rsat,satk->rsak", P, w))


@pytest.mark.parametrize("case", BATCHES)
@pytest.mark.parametrize("form", FORMS)
def test_batch_td_solves_each_replicates_fixed_point(form, case):
    """``V = (I - g P_pi)^{-1} pi r``, ``Q = r + g P V`` per replicate by LAPACK on the
    counted ``P_hat``; a shared reward (stride 0) and one per replicate."""
    S, A = case[:2]
    b, pi, rng = _batch(*case)
    P, R, g = _brute_P(b, S, A), b.n_replicates, 0.85
    model = form.of(b, S, A)
    for reward in (np.broadcast_to(rng.normal(size=(S, A, 2)), (R, S, A, 2)),
                   rng.normal(size=(R, S, A)), rng.normal(size=(R, S, A, 3))):
        q = batch_td(model, pi, g, reward)
        flat = reward.reshape(R, S, A, -1)
        for r in range(R):
            P_pi = np.einsum("sa,sat->st", pi, P[r])
            v = np.linalg.solve(np.eye(S) - g * P_pi, np.einsum("sa,sak->sk", pi, flat[r]))
            expect = flat[r] + g * np.einsum("sat,tk->sak", P[r], v)
            _close(q[r].reshape(S, A, -1), expect, 1e-12)


def test_unvisited_pairs_keep_the_immediate_reward():
    b, pi, rng = _batch(6, 2, 3, 1, 0.6, 4)
    reward = rng.normal(size=(3, 6, 2))
    visited = np.zeros((3, 6, 2), dtype=bool)
    visited[b.replicate, b.s, b.a] = True
    assert not visited.all()
    for form in FORMS:
        q = batch_td(form.of(b, 6, 2), pi, 0.9, reward)
        assert np.array_equal(q[~visited], reward[~visited])


def test_padded_episodes_are_one_replicate():
    b, pi, _ = _batch(4, 3, 1, 5, 0.8, 5)
    ep = b.episodes(0)
    for form in FORMS:
        a, c = form.of(ep, 4, 3), form.of(as_batch(ep), 4, 3)
        assert a.n_replicates == 1
        assert np.array_equal(a.policy_matrix(pi), c.policy_matrix(pi))


def test_the_form_follows_the_expected_work_not_the_draws():
    """Steps while ``n / (1 - beta) columns < STEPS_WORK_PER_ENTRY S A S``; the same
    form for any number of replicates and any draws."""
    S, A, beta = 4, 3, 0.75  # 4 steps per episode on average; threshold 24 per replicate
    limit = STEPS_WORK_PER_ENTRY * S * A * S
    for n, columns in ((1, 1), (1, 5), (5, 1), (2, 3), (6, 1), (7, 1)):
        sampled = n / (1 - beta) * columns < limit
        for R, seed in ((1, 0), (6, 1)):
            b, _, _ = _batch(S, A, R, n, beta, seed)
            model = empirical_form(b, S, A, beta=beta, columns=columns)
            assert isinstance(model, EmpiricalSteps if sampled else EmpiricalTable)


def test_the_budget_100_benchmark_uses_the_steps_and_a_replicate_alone_is_its_row(
        monkeypatch):
    """At budget 100 on the S = 10 benchmark problem the TD critics keep the steps, and
    replicate ``i`` alone equals row ``i`` of the batch bit for bit (budget 2000: the
    table, covered by tests/test_estimators.py's check on its problem)."""
    from exact_bilevel.core.streams import block_rng
    from exact_bilevel.estimators import estimate, replicates
    from exact_bilevel.estimators.sampling import block_size
    from exact_bilevel.experiments.examples import random_problem

    built = []
    of = EmpiricalTable.of.__func__
    monkeypatch.setattr(EmpiricalTable, "of",
                        classmethod(lambda cls, *a: built.append(cls) or of(cls, *a)))
    for parameterize in ("reward", "transitions"):
        p, x = random_problem(10, 4, 5, seed=0, gamma=0.9, parameterize=parameterize)
        for name, critic in (("hpgd-td", "exact"), ("bc-hg", "td"), ("hpgd-td", "td")):
            G, C = replicates(p, x, name, 100, 7, seed=3, critic=critic)
            for i in (0, 4):
                e = estimate(p, x, name, 100, block_rng(3, i, block_size(100, 5)), critic)
                assert np.array_equal(e.gradient, G[i]), (parameterize, name, critic, i)
                assert e.transitions == C[i]
    assert not built  # the dense table was never formed


@pytest.mark.parametrize("parameterize", ["reward", "transitions", "both"])
def test_the_td_critics_agree_in_either_form(parameterize, monkeypatch):
    """``td_critic`` and ``dq_td`` (with the mean sensitivity rewards of a
    transition-parameterised problem) with the form forced each way agree to 1e-12."""
    from exact_bilevel.estimators import critics
    from exact_bilevel.estimators._common import leader_knowledge
    from exact_bilevel.estimators.tabular import dq_td
    from exact_bilevel.experiments.examples import random_problem

    p, x = random_problem(5, 3, 2, seed=7, gamma=0.8, parameterize=parameterize,
                          objective="leader_return_own_gamma")
    know = leader_knowledge(p, x)
    U = np.random.default_rng(8).random((6, 3000))
    b = Sampler(know.state.mdp, Uniforms(U)).episode_batch(know.pi, 4, know.beta)
    out = {}
    for limit, form in ((np.inf, EmpiricalSteps), (0.0, EmpiricalTable)):
        monkeypatch.setattr(critics, "STEPS_WORK_PER_ENTRY", limit)
        assert isinstance(empirical_form(b, 5, 3, beta=know.beta, columns=2), form)
        out[form] = (critics.td_critic(know, b).q, dq_td(know, b))
    for a, c in zip(out[EmpiricalSteps], out[EmpiricalTable], strict=True):
        _close(a, c, 1e-12)


@pytest.mark.parametrize("case", BATCHES)
@pytest.mark.parametrize("form", FORMS)
def test_adjoint_system_is_the_transposed_bellman_matrix_and_pullback(form, case):
    """``adjoint_system`` (stack axis last, the TD adjoint's linear system) holds
    ``(I - gamma P_hat_pi)^T`` and ``P_hat^T w`` of the counted transitions (brute force),
    and for the steps form exactly the floats of ``policy_matrix`` and ``pullback``."""
    S, A = case[:2]
    b, pi, rng = _batch(*case)
    P = _brute_P(b, S, A)
    w = rng.normal(size=(b.n_replicates, S, A))
    model = form.of(b, S, A)
    aug = model.adjoint_system(pi, 0.9, w)
    assert aug.shape == (S, S + 1, b.n_replicates)
    M = np.eye(S) - 0.9 * np.einsum("sa,rsat->rst", pi, P)
    _close(aug[:, :S].transpose(2, 1, 0), M)
    _close(aug[:, S].T, np.einsum("rsa,rsat->rt", w, P))
    if form is EmpiricalSteps:
        Mp = model.policy_matrix(pi) * -0.9
        Mp[:, np.arange(S), np.arange(S)] += 1.0
        assert np.array_equal(aug[:, :S].transpose(2, 1, 0), Mp)
        assert np.array_equal(aug[:, S].T, model.pullback(w))
