"""Samplers: reproducibility, cost accounting, and the sampled laws (chi-square checks).

Statistical checks use fixed seeds; each states its false-alarm rate under a
correct sampler (chi-square / z tests at alpha = 1e-4).
"""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given

from exact_bilevel import solve_soft
from exact_bilevel.core.generators import random_mdp
from exact_bilevel.estimators.sampling import Sampler, concatenate
from exact_bilevel.strategies import finite_mdps


def _mdp():
    return random_mdp(5, 3, gamma=0.9, seed=4)


def test_reproducible_bit_for_bit():
    mdp = _mdp()
    pi = solve_soft(mdp, 0.5).policy
    a = Sampler(mdp, np.random.default_rng(7)).episodes(pi, 50, 0.9)
    b = Sampler(mdp, np.random.default_rng(7)).episodes(pi, 50, 0.9)
    assert np.array_equal(a.states, b.states) and np.array_equal(a.actions, b.actions)
    assert np.array_equal(a.lengths, b.lengths)


def test_cost_accounting():
    mdp = _mdp()
    pi = solve_soft(mdp, 0.5).policy
    smp = Sampler(mdp, np.random.default_rng(0))
    ep = smp.episodes(pi, 30, 0.8)
    assert smp.steps == ep.n_steps == ep.mask.sum()
    assert smp.resets == 30 and smp.transitions == ep.n_steps + 30
    ro = smp.rollouts(pi, 4, 7)
    assert ro.states.shape == (4, 8) and ro.lengths.tolist() == [7] * 4
    assert smp.resets == 34 and smp.steps == ep.n_steps + 28
    smp.step(np.array([0, 1]), np.array([2, 0]))
    assert smp.steps == ep.n_steps + 30


def test_generative_model_law():
    """Chi-square goodness of fit of 2e5 draws of s' ~ P(.|s, a) (false alarm 1e-4)."""
    mdp = _mdp()
    smp = Sampler(mdp, np.random.default_rng(1))
    for s, a in [(0, 0), (3, 2)]:
        draws = smp.step(np.full(200_000, s), np.full(200_000, a))
        counts = np.bincount(draws, minlength=5)
        p = scipy.stats.chisquare(counts, 200_000 * mdp.transitions[s, a]).pvalue
        assert p > 1e-4


def test_initial_and_policy_laws():
    mdp = _mdp()
    pi = solve_soft(mdp, 0.3).policy
    smp = Sampler(mdp, np.random.default_rng(2))
    ro = smp.rollouts(pi, 100_000, 1)
    assert scipy.stats.chisquare(np.bincount(ro.states[:, 0], minlength=5),
                                 100_000 * mdp.initial).pvalue > 1e-4
    s0 = ro.states[:, 0] == 2
    counts = np.bincount(ro.actions[s0, 0], minlength=3)
    assert scipy.stats.chisquare(counts, counts.sum() * pi[2]).pvalue > 1e-4


def test_episode_lengths_are_geometric():
    """Mean length 1/(1 - beta) within 4.5 standard errors (false alarm ~7e-6)."""
    mdp = _mdp()
    pi = np.full((5, 3), 1 / 3)
    for beta in (0.0, 0.5, 0.95):
        ep = Sampler(mdp, np.random.default_rng(3)).episodes(pi, 20_000, beta)
        assert ep.lengths.min() >= 1
        mean, sd = 1 / (1 - beta), np.sqrt(beta) / (1 - beta)
        assert abs(ep.lengths.mean() - mean) <= 4.5 * sd / np.sqrt(20_000) + 1e-12


@given(finite_mdps(min_states=2))
def test_zero_probability_never_drawn(mdp):
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    ep = Sampler(mdp, np.random.default_rng(0)).episodes(pi, 200, 0.9)
    s, a, s1 = ep.transitions()
    assert np.all(mdp.transitions[s, a, s1] > 0)


def test_resets_and_first_action():
    mdp = _mdp()
    pi = np.full((5, 3), 1 / 3)
    smp = Sampler(mdp, np.random.default_rng(0))
    ep = smp.episodes(pi, 3, 0.5, start=np.array([4, 4, 1]), first_action=np.array([2, 0, 1]))
    assert ep.states[:, 0].tolist() == [4, 4, 1] and ep.actions[:, 0].tolist() == [2, 0, 1]
    both = concatenate(ep, smp.rollouts(pi, 2, 9))
    assert both.states.shape[0] == 5 and both.n_steps == ep.n_steps + 18


@pytest.mark.parametrize("call, match", [
    (lambda s, pi: s.episodes(pi, 0, 0.5), "n = 0: must be a positive integer"),
    (lambda s, pi: s.episodes(pi, 3, 1.0), "beta = 1.0: must satisfy 0 <= beta < 1"),
    (lambda s, pi: s.rollouts(pi, 2, 2.5), "horizon = 2.5"),
    (lambda s, pi: s.episodes(pi, 2, 0.5, start=np.array([0, 5])), "start: must be 2 state"),
    (lambda s, pi: s.episodes(pi * 2, 2, 0.5), "policy"),
])
def test_validation(call, match):
    mdp = _mdp()
    with pytest.raises(ValueError, match=match):
        call(Sampler(mdp, np.random.default_rng(0)), np.full((5, 3), 1 / 3))


def test_rng_must_be_a_generator():
    with pytest.raises(ValueError, match=r"rng: must be a numpy\.random\.Generator"):
        Sampler(_mdp(), 0)


def test_dense_draws_are_identical_to_the_gathered_inverse_cdf():
    """The O(n)-memory binary search gives bit for bit the draws of the [n, S] gather."""
    from exact_bilevel.core._transitions import inverse_cdf, searchsorted_rows

    rng = np.random.default_rng(3)
    for S in (2, 17, 64, 300):  # 20000 x 300 > 2^20: the search path
        P = rng.dirichlet(np.full(S, 0.3), size=5 * S)
        P[:, : S // 3] = 0.0                       # structural zeros are never drawn
        P /= P.sum(axis=1, keepdims=True)
        cdf = np.cumsum(P, axis=1)
        rows, u = rng.integers(5 * S, size=20_000), rng.random(20_000)
        u[:10] = 0.0
        got = searchsorted_rows(cdf, rows, u)
        assert np.array_equal(got, inverse_cdf(cdf[rows], u))
        assert np.all(P[rows, got] > 0)


def test_row_cdf_draws_match_the_gathered_inverse_cdf_on_every_path():
    """``RowCDFs.draw`` (counts over transposed columns: uint8 below 257 columns, int64
    above; bisection beyond ``COMPARE_ENTRIES``) is ``inverse_cdf(cdf[rows], u)`` bit for
    bit, with repeated CDF values (zero-probability entries) and ``u = 0``."""
    from exact_bilevel.core._transitions import COMPARE_ENTRIES, RowCDFs, inverse_cdf

    rng = np.random.default_rng(8)
    for width, draws in ((1, 50), (4, 3000), (300, 2000), (300, COMPARE_ENTRIES // 300 + 1)):
        P = rng.dirichlet(np.full(width, 0.3), size=7)
        P[:, 1::3] = 0.0
        P /= P.sum(axis=1, keepdims=True)
        cdf = np.cumsum(P, axis=1)
        rows, u = rng.integers(7, size=draws), rng.random(draws)
        u[:5] = 0.0
        got = RowCDFs(cdf).draw(rows, u)
        assert got.dtype == np.int64 and got.shape == rows.shape
        assert np.array_equal(got, inverse_cdf(cdf[rows], u)), (width, draws)
        assert np.all(P[rows, got] > 0)


def test_episode_batch_keys_and_sums():
    """The derived per-step arrays of an ``EpisodeBatch`` equal their definitions, and the
    in-place prefix and suffix sums equal the copying ones."""
    from exact_bilevel.estimators.sampling import Uniforms

    mdp = _mdp()
    pi = solve_soft(mdp, 0.5).policy
    R, n = 3, 4
    b = Sampler(mdp, Uniforms(np.random.default_rng(5).random((R, 400)))).episode_batch(
        pi, n, 0.8)
    t = np.concatenate([np.full(c, k) for k, c in enumerate(b.live)])
    e = np.concatenate([b.chains[:c] for c in b.live])
    assert np.array_equal(b.time, t) and np.array_equal(b.episode, e)
    assert np.array_equal(b.replicate, e // n)
    assert np.array_equal(b.pair_keys(3, 15), b.replicate * 15 + b.s * 3 + b.a)
    assert np.array_equal(b.triple_keys(5, 3), b.replicate * 75 + (b.s * 3 + b.a) * 5 + b.s1)
    assert np.array_equal(b.step_weights(0.7), 0.7 ** t.astype(float))
    table = np.random.default_rng(6).normal(size=(R, 5, 3))
    assert np.array_equal(b.per_pair(table), table[b.replicate, b.s, b.a])
    assert np.array_equal(b.per_pair(table[0]), table[0][b.s, b.a])
    v = np.random.default_rng(7).normal(size=b.n_steps)
    for sums in (b.prefix_sums, b.suffix_sums):
        assert np.array_equal(sums(v.copy(), 0.9, overwrite=True), sums(v, 0.9))


def test_a_replicate_never_reads_past_its_block():
    """Batched replicates own fixed blocks of uniforms: a draw that would read past one is
    a ValueError naming the replicate, before any step is taken."""
    from exact_bilevel.estimators.sampling import Uniforms

    mdp = _mdp()
    pi = np.full((5, 3), 1 / 3)
    smp = Sampler(mdp, Uniforms(np.random.default_rng(0).random((2, 12))))
    with pytest.raises(ValueError, match=r"uniforms: replicate \d needs \d+ uniforms, its "
                                         r"block has 12"):
        smp.episode_batch(pi, 4, 0.9)
    assert np.all(smp.steps == 0)


def test_draws_grouped_by_row_match_the_gathered_inverse_cdf():
    """``draw_each_row`` (column counts up to ``COUNT_COLUMNS``, one ``searchsorted`` per
    row beyond) is ``inverse_cdf(cdf[rows], u)`` bit for bit, with repeated CDF values
    (zero-probability entries) and ``u = 0``; ``u`` of the wrong shape is a ValueError."""
    from exact_bilevel.core._transitions import COUNT_COLUMNS, draw_each_row, inverse_cdf

    rng = np.random.default_rng(9)
    for width in (1, 4, COUNT_COLUMNS, COUNT_COLUMNS + 1, 300):
        P = rng.dirichlet(np.full(width, 0.3), size=6)
        P[:, 1::3] = 0.0
        P /= P.sum(axis=1, keepdims=True)
        cdf = np.cumsum(P, axis=1)
        u = rng.random((3, 6, 40))
        u[:, :, 0] = 0.0
        got = draw_each_row(cdf, u)
        rows = np.broadcast_to(np.arange(6)[None, :, None], u.shape)
        assert got.dtype == np.int64 and got.shape == u.shape
        assert np.array_equal(got.ravel(), inverse_cdf(cdf[rows.ravel()], u.ravel())), width
        assert np.all(P[rows, got] > 0)
    with pytest.raises(ValueError, match=r"u: shape \(3, 5, 2\) must end in \(6, m\)"):
        draw_each_row(cdf, u[:, :5, :2])


def test_sweep_draws_are_the_generative_model_draws():
    """``sweep`` (grouped by pair on dense ``P``) gives the draws, costs and cursor of
    ``step`` on the same pairs, bit for bit."""
    from exact_bilevel.estimators.sampling import Uniforms

    mdp = _mdp()
    U = np.random.default_rng(2).random((3, 200))
    a, b = Sampler(mdp, Uniforms(U.copy())), Sampler(mdp, Uniforms(U.copy()))
    s, act, s1 = a.sweep(4)
    assert np.array_equal(s1, b.step(s, act))
    assert np.array_equal(a.steps, b.steps) and np.array_equal(a.uniforms.cursor,
                                                               b.uniforms.cursor)


def test_blocks_sharing_one_cdf_sample_as_stacked_copies():
    """``stacked_mdp`` of one MDP repeated (one shared row-CDF table) and of distinct
    copies (the stacked table) walk the same episodes bit for bit, vectorised and in the
    scalar tail; a block never leaves itself."""
    from exact_bilevel.core.mdp import FiniteMDP
    from exact_bilevel.estimators.sampling import Uniforms, stacked_mdp

    mdp = _mdp()
    M, S = 7, mdp.n_states
    copies = [FiniteMDP(np.array(mdp.transitions), mdp.reward, mdp.gamma, mdp.initial)
              for _ in range(M)]
    pi = np.random.default_rng(1).dirichlet(np.ones(3), size=M * S)
    start = np.arange(40)[None, :] % M * S + np.arange(40)[None, :] % S
    U = np.random.default_rng(4).random((2, 2000))
    out = []
    for env in (stacked_mdp([mdp] * M), stacked_mdp(copies)):
        b = Sampler(env, Uniforms(U.copy())).episode_batch(pi, 40, 0.9,
                                                           start=np.repeat(start, 2, axis=0))
        assert np.array_equal(b.s // S, b.s1 // S)
        out.append((b.s, b.a, b.s1))
    for x, y in zip(*out, strict=True):
        assert np.array_equal(x, y)
    shared, stacked = stacked_mdp([mdp] * M), stacked_mdp(copies)
    for row, u in [(0, 0.0), (5, 0.3), (M * S * 3 - 1, 0.999)]:
        assert shared.next_state(row // 3, row % 3, u) == stacked.next_state(row // 3,
                                                                              row % 3, u)


@pytest.mark.parametrize("parameterize", ["reward", "transitions"])
def test_perturbed_environment_is_the_stacked_followers(parameterize):
    """The zeroth-order estimator's environment (row CDFs from the batched solve's ``P``,
    one table for fixed dynamics) draws as ``stacked_mdp`` of ``perturbed_followers``,
    with the same policies and start distribution, bit for bit."""
    from exact_bilevel.estimators import zeroth_order as zo
    from exact_bilevel.estimators.sampling import stacked_mdp
    from exact_bilevel.experiments.examples import random_problem

    problem, x = random_problem(6, 3, 2, seed=5, gamma=0.9, parameterize=parameterize)
    points = x + 0.05 * np.random.default_rng(0).standard_normal((5, x.size))
    env, pi, rho = zo.perturbed_environment(problem, points)
    mdps, ref_pi = zo.perturbed_followers(problem, points)
    ref = stacked_mdp(mdps)
    assert np.array_equal(pi, ref_pi.reshape(-1, 3))
    assert np.array_equal(np.broadcast_to(rho, (5, 6)), np.stack([m.initial for m in mdps]))
    rng = np.random.default_rng(1)
    s, a, u = rng.integers(30, size=500), rng.integers(3, size=500), rng.random(500)
    assert np.array_equal(env.sample_next(s, a, u), ref.sample_next(s, a, u))


def test_row_cumsum_is_numpy_cumsum_bit_for_bit():
    """:func:`~exact_bilevel.core._transitions.row_cumsum` (the walk's policy CDFs, the
    zeroth-order estimator's transition CDFs) gives ``np.cumsum(a, axis=-1)``'s floats on
    rows of 1 to 11 entries, 1-D to 3-D, and empty arrays."""
    from exact_bilevel.core._transitions import row_cumsum

    rng = np.random.default_rng(2)
    for shape in ((7,), (1,), (50, 1), (400, 4), (30, 11), (6, 5, 3), (0, 4), (3, 0)):
        a = rng.random(shape) ** 3 * 10.0 ** rng.integers(-8, 3, shape)
        got = row_cumsum(a)
        assert got.shape == a.shape and got.dtype == np.float64
        assert np.array_equal(got, np.cumsum(a, axis=-1))
