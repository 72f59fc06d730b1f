"""Exact moments of the shipped mutants (``validation/mutant_moments.py``), by independent
routes:

* **Enumeration.** Every trajectory of length ``T <= H`` of a 2-state, 2-action problem,
  weighted by its exact probability, each contributing the mutant's *literal* per-episode
  formula (a double loop over ``t <= k`` written from the definition of the bug, tied to
  the mutant's own code by replaying a batch of mixed-length trajectories through it).
  ``H`` bounds the neglected tail below ``1e-14`` of the moment's scale (``|X| <= |reg|
  + T max|h| + |s| T(T+1)/2 max|c| max|g|``, every per-step ratio ``<= 1``), with small
  discounts (``beta ~ 3e-3``) so that ``S (A S)^H`` stays small; a wrong coefficient of
  the recursion shows at relative size ``~beta >> 1e-12``. Tolerance ``1e-12`` relative.
* **Second formulas.** The correct options reproduce ``moments`` (bc-hg,
  bc-hg-baseline) and the means are :func:`mutant_mean`'s occupancy-measure route, to
  ``1e-12``.
* **Simulation.** ``2e4`` mutant estimates (one episode each) on two random problems
  (reward / reward-and-transition parameters, ``gamma_L != gamma``), for every BC-HG
  mutant (also of bc-hg-baseline on the second): every mean entry and every covariance
  entry as a z-score (the covariance's standard error from the replicates' fourth
  moments, centred at the exact mean), against the two-sided Bonferroni threshold for a
  family-wise false-alarm rate of 1e-3 over all of them (fixed seeds: deterministic).
  Power: the same check rejects the reference's covariance (the planner's pure shift)
  for mutants that change the noise (tau-not-inverse, no-centring, leader-gamma-swap).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from test_moments import ReplaySampler, _all_paths, _length_law, _problem, budget_for

from exact_bilevel.estimators import leader_knowledge, moments
from exact_bilevel.estimators.critics import exact_critic
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.validation.mutant_moments import (
    EXPRESSIBLE,
    NOT_EXPRESSIBLE,
    family_episode_moments,
    mutant_moments,
)
from exact_bilevel.validation.mutants import BCHG_FAMILY, MUTANTS, mutant_mean, mutant_replicates


def _ratios(know, name: str) -> tuple[float, float, float, bool, bool]:
    """From the bug's definition: ``(a, r, s, from_t1, g_only)`` — the outer weight per
    step (times ``gamma^t`` when counted from the episode start), the forward sum's
    discount per step, the scale, and the two forward-sum variants."""
    o = dict(MUTANTS[name].options)
    gamma, gL, beta = know.gamma, know.gamma_leader, know.beta
    a = {"correct": gL / beta, "no-survival": gL, "gamma": gamma / beta}[o.get("outer",
                                                                              "correct")]
    z = o.get("z", "correct")
    if z == "from-start":
        a *= gamma
    r = gamma if z == "no-survival" else gamma / beta
    s = know.tau if o.get("scale") == "tau" else 1.0 / know.tau
    return a, r, s, z == "from-t+1", z == "g-only"


def _steps(know, states: np.ndarray, actions: np.ndarray, baseline: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    """``g[N, T, d]`` and ``h[N, T, d]`` along paths of one length (``states[N, T+1]``)."""
    b = 1.0 if baseline else 0.0
    st, s1 = states[:, :-1], states[:, 1:]

    def step(dr, v, disc):
        out = dr[st, actions]
        if know.problem.transitions.depends_on_x:
            out = out + disc * know.score[st, actions, s1] * (v[s1] - b * v[st])[..., None]
        return out
    return (step(know.dr, know.v, know.gamma),
            step(know.dr_leader, exact_critic(know).v, know.gamma_leader))


def _literal(know, name: str, states: np.ndarray, actions: np.ndarray,
             gh: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``X[N, d]`` of paths of one length ``T`` from the definition, ``reg + sum_t
    (gamma_L/beta)^t h_t + s sum_{t, k} a^t r^(k-t) c_t g_k`` over the pairs ``t <= k``
    the bug keeps (an explicit coefficient matrix ``W[t, k]``)."""
    crit = exact_critic(know)
    adv = dict(MUTANTS[name].options).get("adv", "A")
    c = {"A": crit.advantage, "-A": -crit.advantage, "Q": crit.q}[adv][states[:, :-1], actions]
    a, r, s, from_t1, g_only = _ratios(know, name)
    g, h = gh
    T = actions.shape[1]
    W = np.zeros((T, T))
    for t in range(T):
        for k in range(t, T):
            if not ((from_t1 and k == t) or (g_only and k > t)):
                W[t, k] = a ** t * r ** (k - t)
    direct = np.einsum("t,ntd->nd", (know.gamma_leader / know.beta) ** np.arange(T), h)
    return know.reg_grad + direct + s * np.einsum("nt,tk,nkd->nd", c, W, g)


@pytest.mark.parametrize("name", BCHG_FAMILY)
@pytest.mark.parametrize("baseline", [False, True])
def test_literal_formula_is_what_the_mutant_computes(name, baseline):
    """Replaying 9 trajectories of mixed lengths through the mutant's code gives the mean
    of the literal per-episode formula (so the enumeration below tests the mutant)."""
    problem, x = _problem("both", 0.6, 0.8, seed=5, S=3, A=2)
    know = leader_knowledge(problem, x)
    ep = Sampler(know.state.mdp, np.random.default_rng(2)).episodes(know.pi, 9, know.beta)
    got = np.ravel(MUTANTS[name].fn(know, ReplaySampler(know.state.mdp, ep),
                                    budget_for(9, know.beta), baseline=baseline).gradient)
    paths = [(ep.states[i:i + 1, :T + 1], ep.actions[i:i + 1, :T])
             for i, T in enumerate(ep.lengths)]
    want = np.mean([_literal(know, name, st, ac, _steps(know, st, ac, baseline))[0]
                    for st, ac in paths], axis=0)
    assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want)), (got, want)


def _bound(know, name: str, T: np.ndarray, baseline: bool) -> np.ndarray:
    """``B[T, k] >= |X_k|`` on every episode of length ``T`` (every ratio ``<= 1``)."""
    crit = exact_critic(know)
    adv = dict(MUTANTS[name].options).get("adv", "A")
    c = {"A": crit.advantage, "-A": crit.advantage, "Q": crit.q}[adv]
    s = _ratios(know, name)[2]
    b = 1.0 if baseline else 0.0
    score = know.score if know.score is not None else 0.0

    def step_max(dr, v, disc):
        lvl = v[None, :] - b * v[:, None]
        return np.max(np.abs(dr[:, :, None, :] + disc * score * lvl[:, None, :, None]),
                      axis=(0, 1, 2))
    hmax = step_max(know.dr_leader, crit.v, know.gamma_leader)
    gmax = step_max(know.dr, know.v, know.gamma)
    T = T[:, None].astype(float)
    return np.abs(know.reg_grad) + T * hmax + T * (T + 1) / 2 * s * np.max(np.abs(c)) * gmax


def _horizon(know, name, baseline, exact, tol=1e-14, h_max=8) -> int:
    T = np.arange(1, 4000)
    p = _length_law(know.beta, T)
    B = _bound(know, name, T, baseline)
    scale_m, scale_c = np.max(np.abs(exact.mean)), np.max(np.abs(exact.covariance))
    for H in range(1, h_max + 1):
        t1 = p[H:] @ B[H:]
        t2 = np.einsum("t,tk,tl->kl", p[H:], B[H:], B[H:])
        am = np.abs(exact.mean)
        err = t2 + np.outer(am, t1) + np.outer(t1, am) + np.outer(t1, t1)
        if np.max(err) <= tol * scale_c and np.max(t1) <= tol * scale_m:
            return H
    raise AssertionError(f"no H <= {h_max} bounds the tail below {tol}")


BRUTE_CASES = [("reward", 3e-3, 1.5e-3, False), ("transitions", 2e-3, 4e-3, False),
               ("both", 3e-3, 1e-3, True)]


@pytest.mark.parametrize("parameterize,gamma,gamma_leader,baseline", BRUTE_CASES)
def test_mutant_moments_equal_enumeration_of_all_trajectories(parameterize, gamma,
                                                              gamma_leader, baseline):
    problem, x = _problem(parameterize, gamma, gamma_leader, seed=3)
    know = leader_knowledge(problem, x)
    S, A = know.pi.shape
    P = np.asarray(know.state.mdp.transitions)
    rho = np.asarray(problem.initial, dtype=float)
    exact = {n: mutant_moments(problem, x, n, baseline=baseline, know=know)
             for n in BCHG_FAMILY}
    H = max(_horizon(know, n, baseline, exact[n]) for n in BCHG_FAMILY)
    first = {n: 0.0 for n in BCHG_FAMILY}
    second = {n: 0.0 for n in BCHG_FAMILY}
    for T in range(1, H + 1):
        states, actions = _all_paths(S, A, T)
        s, s1 = states[:, :-1], states[:, 1:]
        w = (_length_law(know.beta, np.array(T)) * rho[states[:, 0]]
             * np.prod(know.pi[s, actions] * P[s, actions, s1], axis=1))
        gh = _steps(know, states, actions, baseline)
        for n in BCHG_FAMILY:
            X = _literal(know, n, states, actions, gh)
            first[n] = first[n] + w @ X
            second[n] = second[n] + np.einsum("n,nk,nl->kl", w, X, X)
    for n in BCHG_FAMILY:
        cov = second[n] - np.outer(first[n], first[n])
        assert np.max(np.abs(exact[n].mean - first[n])) <= 1e-12 * np.max(np.abs(first[n])), n
        assert np.max(np.abs(exact[n].covariance - cov)) <= 1e-12 * np.max(np.abs(cov)), n


@pytest.mark.parametrize("parameterize,objective", [
    ("reward", "leader_return"), ("transitions", "leader_return_own_gamma"),
    ("both", "leader_return_far_sighted")])
def test_correct_options_are_moments_and_means_are_the_occupancy_route(parameterize,
                                                                        objective):
    problem, x = random_problem(4, 3, 2, seed=11, gamma=0.7, tau=0.6,
                                parameterize=parameterize, objective=objective)
    know = leader_knowledge(problem, x)
    for baseline, est in ((False, "bc-hg"), (True, "bc-hg-baseline")):
        m = moments(problem, x, est, know=know)
        f, s = family_episode_moments(know, baseline)
        np.testing.assert_allclose(f + know.reg_grad, m.mean, rtol=0,
                                   atol=1e-12 * np.max(np.abs(m.mean)))
        np.testing.assert_allclose(s - np.outer(f, f), m.covariance, rtol=0,
                                   atol=1e-12 * np.max(np.abs(m.covariance)))
        for name in BCHG_FAMILY:
            mm = mutant_moments(problem, x, name, baseline=baseline, know=know)
            want = mutant_mean(name, know)
            assert np.max(np.abs(mm.mean - want)) <= 1e-12 * np.max(np.abs(want)), name
    at = mutant_moments(problem, x, "tau-not-inverse", 4000, know=know)
    one = mutant_moments(problem, x, "tau-not-inverse", know=know)
    assert at.episodes == moments(problem, x, "bc-hg", 4000, know=know).episodes
    np.testing.assert_allclose(at.covariance, one.covariance / at.episodes, rtol=1e-15)


SIM_PROBLEMS = [  # (random_problem arguments, baselines)
    (dict(n_states=4, n_actions=3, n_params=2, seed=3, gamma=0.8, tau=0.5,
          parameterize="reward", objective="leader_return_own_gamma"), (False,)),
    (dict(n_states=4, n_actions=3, n_params=2, seed=5, gamma=0.8, tau=0.5,
          parameterize="both", objective="leader_return_own_gamma"), (False, True)),
]
SIM_R = 20_000
#: z-scores checked: per design 2 mean entries and 3 covariance entries.
SIM_Z = 5 * len(BCHG_FAMILY) * sum(len(b) for _, b in SIM_PROBLEMS)
SIM_CRIT = scipy.stats.norm.isf(1e-3 / (2 * SIM_Z))


def _z(X: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """z-scores of the sample mean and the sample covariance entries (upper triangle)
    against exact values (covariance centred at the exact mean)."""
    R = X.shape[0]
    zm = (X.mean(axis=0) - mean) / np.sqrt(np.diag(cov) / R)
    D = X - mean
    iu = np.triu_indices(X.shape[1])
    prod = D[:, iu[0]] * D[:, iu[1]]
    zc = (prod.mean(axis=0) - cov[iu]) / (prod.std(axis=0, ddof=1) / np.sqrt(R))
    return np.concatenate([zm, zc])


def test_mutant_moments_agree_with_simulation():
    """``SIM_R`` one-episode estimates per design; every |z| below the Bonferroni threshold
    ``SIM_CRIT`` (family-wise 1e-3 over the ``SIM_Z = 120`` z-scores: 4.46); the
    reference's covariance is rejected for tau-not-inverse, no-centring and
    leader-gamma-swap (power)."""
    rejected = set()
    k = 0
    for kw, baselines in SIM_PROBLEMS:
        problem, x = random_problem(**kw)
        know = leader_knowledge(problem, x)
        N = budget_for(1, know.beta)
        for baseline in baselines:
            ref = moments(problem, x, "bc-hg-baseline" if baseline else "bc-hg", N,
                          know=know)
            for name in BCHG_FAMILY:
                m = mutant_moments(problem, x, name, N, baseline=baseline, know=know)
                assert m.episodes == 1 and m.truncation_probability < 1e-4
                X = mutant_replicates(name, know, N, SIM_R, seed=500 + k, baseline=baseline)
                k += 1
                z = _z(X, m.mean, m.covariance)
                assert np.max(np.abs(z)) < SIM_CRIT, (name, baseline, z)
                if np.max(np.abs(_z(X, m.mean, ref.covariance)[2:])) > SIM_CRIT:
                    rejected.add(name)
    assert {"tau-not-inverse", "no-centring", "leader-gamma-swap"} <= rejected, rejected


def test_not_expressible_names_raise_with_the_reason():
    problem, x = random_problem(4, 3, 2, seed=3)
    assert set(EXPRESSIBLE) | set(NOT_EXPRESSIBLE) == set(MUTANTS)
    with pytest.raises(ValueError, match="name = 'hpgd-dq-from-t\\+1': no exact moments: "
                                         "as hpgd: its dQ_hat"):
        mutant_moments(problem, x, "hpgd-dq-from-t+1")
    with pytest.raises(ValueError, match="fitted on the same batch"):
        mutant_moments(problem, x, "td-critic-follower-gamma")
    with pytest.raises(ValueError, match="name = 'nope': not a mutant"):
        mutant_moments(problem, x, "nope")
    with pytest.raises(ValueError, match="baseline = True: 'zeroth-order-no-factor-2' "
                                         "mutates zeroth-order"):
        mutant_moments(problem, x, "zeroth-order-no-factor-2", baseline=True)


def test_zeroth_order_no_factor_2_is_twice_zeroth_order():
    problem, x = random_problem(3, 2, 2, seed=4, gamma=0.5, objective="leader_return")
    zo = moments(problem, x, "zeroth-order", 2000)
    m = mutant_moments(problem, x, "zeroth-order-no-factor-2", 2000)
    np.testing.assert_array_equal(m.mean, 2 * zo.mean)
    np.testing.assert_array_equal(m.covariance, 4 * zo.covariance)
