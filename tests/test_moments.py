"""Exact moments of the BC-HG-type estimators (``estimators/moments.py``).

Three independent routes to the same numbers:

* **Enumeration.** Every trajectory of every length ``T <= H`` of a 2-state,
  2-action problem, weighted by its exact probability ``rho * prod pi P *
  Pr(T)``; each trajectory's contribution is the estimator's own per-episode
  formula (:func:`~exact_bilevel.estimators.bchg.bchg_per_episode`, tied to the
  public :func:`~.bchg.bchg` / :func:`~.bchg.naive` by replaying trajectories
  through a :class:`ReplaySampler`). ``H`` is the smallest horizon whose neglected
  part is *bounded* below ``1e-16`` times the moment's scale (``|X| <= |reg| + T
  max|h| + T(T+1)/2 max|A_L| max|g| / tau`` since ``gamma/beta, gamma_L/beta <=
  1``); enumeration costs ``S (A S)^H`` paths, so ``beta`` is small
  (``~3e-3``) — a wrong coefficient in the recursion still shows at relative
  size ``~beta >> 1e-12``. Tolerance ``1e-12`` relative to the largest entry.
* **The exact hypergradient.** ``mean == hypergradient(...).gradient`` (``.direct``
  for ``naive``) to ``1e-10`` at ``gamma = 0.9``.
* **Simulation.** ``10^4`` replicates through the registry at the largest budget that
  plans one episode each (truncated by the hard cap with probability <= 1e-4): every
  mean entry and every covariance entry within 5 standard errors (the covariance's s.e.
  from the replicates' fourth moments,
  ``sd((X_k - mean_k)(X_l - mean_l)) / sqrt(R)``). Nominal false-alarm rate
  ``P(|N(0,1)| > 5) = 5.7e-7`` per entry, ~20 entries per problem, ~3e-5 for the
  whole file (fixed seeds: the outcome is deterministic). A mutant covariance that
  drops the cross term of the product must exceed 5 s.e. somewhere.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import scipy.sparse

from exact_bilevel.core.hypergradient import hypergradient
from exact_bilevel.core.objectives import LeaderReturn
from exact_bilevel.core.problem import BilevelProblem
from exact_bilevel.estimators._common import leader_knowledge
from exact_bilevel.estimators.bchg import bchg, bchg_per_episode, naive
from exact_bilevel.estimators.critics import Critic, exact_critic
from exact_bilevel.estimators.moments import moments
from exact_bilevel.estimators.registry import ESTIMATORS, replicates
from exact_bilevel.estimators.sampling import Episodes, Sampler, as_batch
from exact_bilevel.experiments.examples import random_problem

# the package exports the function ``moments``, which shadows the submodule's name
moments_mod = importlib.import_module("exact_bilevel.estimators.moments")
EST = ("bc-hg", "bc-hg-baseline", "naive")


def _problem(parameterize: str, gamma: float, gamma_leader: float, *, seed: int = 0,
             S: int = 2, A: int = 2, d: int = 2, tau: float = 0.5):
    """A random problem with ``gamma_L`` set; the leader reward depends on ``x`` unless
    only the transitions do (then the direct term is the pure score term)."""
    obj = "leader_return" if parameterize == "transitions" else "leader_return_x_reward"
    pb, x = random_problem(S, A, d, seed=seed, gamma=gamma, tau=tau,
                           parameterize=parameterize, objective=obj)
    leader = LeaderReturn(pb.objective.leader_reward, leader_gamma=gamma_leader)
    return BilevelProblem(pb.follower_reward, pb.transitions, leader, gamma=gamma,
                          tau=tau, initial=pb.initial), x


# -- enumeration ------------------------------------------------------------------

def _all_paths(S: int, A: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(s_0, a_0, s_1, ..., a_{T-1}, s_T)``: ``states[N, T+1]``, ``actions[N, T]``."""
    grid = np.indices((S,) + (A, S) * T).reshape(1 + 2 * T, -1).T
    return grid[:, 0::2], grid[:, 1::2]


def _zero_advantage(c: Critic) -> Critic:
    """The exact critic with ``A_L = 0``: ``bchg_per_episode`` then returns the direct
    term alone, which is what :func:`naive` averages (checked by replay below)."""
    return Critic(q=np.repeat(c.v[:, None], c.q.shape[1], axis=1), v=c.v)


def _per_episode(know, ep: Episodes, estimator: str) -> np.ndarray:
    c = exact_critic(know)
    if estimator == "naive":
        return bchg_per_episode(know, ep, _zero_advantage(c))
    return bchg_per_episode(know, ep, c, baseline=estimator == "bc-hg-baseline")


def _length_law(beta: float, T: np.ndarray) -> np.ndarray:
    """``Pr(T)`` of the sampler's episodes: ``T >= 1`` and ``Pr(T > k) = beta^k``."""
    return (1.0 - beta) * beta ** (T - 1.0)


def _bound_per_length(know, estimator: str, T: np.ndarray) -> np.ndarray:
    """``B[T, k] >= |X_k|`` on every episode of length ``T`` (``gamma/beta <= 1``)."""
    c = exact_critic(know)
    b = 1.0 if estimator == "bc-hg-baseline" else 0.0
    score = (know.score if know.score is not None
             else np.zeros(know.dr.shape[:2] + know.dr.shape[:1] + know.dr.shape[2:]))

    def step_max(dr, v, disc):
        lvl = v[None, :] - b * v[:, None]
        return np.max(np.abs(dr[:, :, None, :] + disc * score * lvl[:, None, :, None]),
                      axis=(0, 1, 2))
    hmax = step_max(know.dr_leader, c.v, know.gamma_leader)
    gmax = step_max(know.dr, know.v, know.gamma)
    amax = 0.0 if estimator == "naive" else np.max(np.abs(c.advantage))
    T = T[:, None].astype(float)
    return np.abs(know.reg_grad) + T * hmax + T * (T + 1) / 2 * amax / know.tau * gmax


def _tail_bounds(know, estimator: str, H: int, beta: float):
    """Bounds on the neglected ``E[|X_k| 1{T > H}]`` ``[d]`` and ``E[|X_k X_l| 1{T > H}]``
    ``[d, d]`` (the sum over ``T`` is carried until its terms underflow)."""
    if beta == 0.0:
        d = know.dr.shape[-1]
        return np.zeros(d), np.zeros((d, d))
    T = np.arange(H + 1, H + 4000)
    p = _length_law(beta, T)
    B = _bound_per_length(know, estimator, T)
    return p @ B, np.einsum("t,tk,tl->kl", p, B, B)


def _enumerate(problem, x, H: int, block: int = 1 << 16):
    """Probability-weighted ``sum X`` and ``sum X X^T`` over all trajectories of length
    ``<= H``, for each estimator; ``{estimator: (first[d], second[d, d])}``."""
    know = leader_knowledge(problem, x)
    S, A = know.pi.shape
    beta = know.beta
    P = np.asarray(know.state.mdp.transitions)
    rho = np.asarray(problem.initial, dtype=float)
    out = {e: [0.0, 0.0] for e in EST}
    for T in range(1, H + 1):
        pT = _length_law(beta, np.array(T))
        if pT == 0.0:
            break
        states, actions = _all_paths(S, A, T)
        for i in range(0, states.shape[0], block):
            st, ac = states[i:i + block], actions[i:i + block]
            s, a, s1 = st[:, :-1], ac, st[:, 1:]
            w = pT * rho[st[:, 0]] * np.prod(know.pi[s, a] * P[s, a, s1], axis=1)
            ep = Episodes(states=st, actions=ac, lengths=np.full(st.shape[0], T))
            for e in EST:
                X = _per_episode(know, ep, e)
                out[e][0] = out[e][0] + w @ X
                out[e][1] = out[e][1] + np.einsum("n,nk,nl->kl", w, X, X)
    return know, out


def _horizon(problem, x, estimator: str, tol: float = 1e-16, h_max: int = 9) -> int:
    """Smallest ``H`` whose neglected part of the covariance (and mean) is below ``tol``
    times its scale (the exact moments', for the scale only)."""
    know = leader_knowledge(problem, x)
    m = moments(problem, x, estimator, know=know)
    for H in range(1, h_max + 1):
        t1, t2 = _tail_bounds(know, estimator, H, know.beta)
        am = np.abs(m.mean)
        cov_err = t2 + np.outer(am, t1) + np.outer(t1, am) + np.outer(t1, t1)
        if (np.max(cov_err) <= tol * np.max(np.abs(m.covariance))
                and np.max(t1) <= tol * np.max(am)):
            return H
    raise AssertionError(f"no H <= {h_max} bounds the tail below {tol}: lower gamma")


BRUTE_CASES = [  # (parameterize, gamma, gamma_L)
    ("reward", 3e-3, 3e-3), ("reward", 3e-3, 1.5e-3), ("reward", 2e-3, 4e-3),
    ("transitions", 3e-3, 3e-3), ("transitions", 3e-3, 1.5e-3), ("transitions", 2e-3, 4e-3),
    ("both", 3e-3, 1e-3), ("both", 0.0, 0.0),
]


@pytest.mark.parametrize("parameterize,gamma,gamma_leader", BRUTE_CASES)
def test_moments_equal_enumeration_of_all_trajectories(parameterize, gamma, gamma_leader):
    problem, x = _problem(parameterize, gamma, gamma_leader, seed=3)
    H = max(_horizon(problem, x, e) for e in EST)
    know, brute = _enumerate(problem, x, H)
    for e in EST:
        m = moments(problem, x, e, know=know)
        first, second = brute[e]
        mean = first + know.reg_grad  # reg is a constant in X: add it after
        second = second + np.outer(first, know.reg_grad) + np.outer(know.reg_grad, first) \
            + np.outer(know.reg_grad, know.reg_grad)
        cov = second - np.outer(mean, mean)
        assert np.max(np.abs(m.mean - mean)) <= 1e-12 * np.max(np.abs(mean)), e
        assert np.max(np.abs(m.covariance - cov)) <= 1e-12 * np.max(np.abs(cov)), e
        assert np.max(np.abs(m.covariance)) > 0


def budget_for(n: int, beta: float) -> int:
    """The largest budget at which the estimators plan exactly ``n`` episodes (the hard
    cap's rule, ``episodes_for_budget``); it truncates with probability <= 1e-4 when
    ``n > 1`` and ``beta^(budget - 1)`` when ``n = 1``."""
    from exact_bilevel.estimators._common import episodes_for_budget

    b = 2
    while episodes_for_budget(b + 1, beta) <= n:
        b += 1
    assert episodes_for_budget(b, beta) == n, (n, beta)
    return b


class ReplaySampler(Sampler):
    """A sampler whose :meth:`episodes` returns a given batch (and bills it)."""

    def __init__(self, mdp, episodes: Episodes) -> None:
        super().__init__(mdp, np.random.default_rng(0))
        self._batch = episodes

    def episode_batch(self, pi, n, beta, start=None, first_action=None):
        assert n == self._batch.lengths.size, (n, self._batch.lengths.size)
        self.resets = self.resets + n
        self.steps = self.steps + self._batch.n_steps
        return as_batch(self._batch)


@pytest.mark.parametrize("parameterize", ["reward", "transitions", "both"])
def test_per_episode_formula_is_what_the_public_estimators_average(parameterize):
    """The enumeration uses ``bchg_per_episode``; replaying a batch of trajectories of
    mixed lengths through the public :func:`bchg` and :func:`naive` gives its mean."""
    problem, x = _problem(parameterize, 0.6, 0.8, seed=5, S=3, A=2)
    know = leader_knowledge(problem, x)
    rng = np.random.default_rng(1)
    ep = Sampler(know.state.mdp, rng).episodes(know.pi, 7, know.beta)
    budget = budget_for(7, know.beta)
    for e in EST:
        sampler = ReplaySampler(know.state.mdp, ep)
        if e == "naive":
            got = naive(know, sampler, budget).gradient
        else:
            got = bchg(know, sampler, budget, baseline=e == "bc-hg-baseline").gradient
        want = _per_episode(know, ep, e).mean(axis=0)
        assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want)), e


# -- the exact hypergradient ----------------------------------------------------------

@pytest.mark.parametrize("parameterize", ["reward", "transitions", "both"])
@pytest.mark.parametrize("objective", ["leader_return", "leader_return_own_gamma",
                                       "leader_return_far_sighted", "leader_return_x_reward"])
def test_mean_is_the_hypergradient(parameterize, objective):
    """Unbiased: ``mean == grad F`` (bc-hg, bc-hg-baseline); ``naive``: the direct term."""
    problem, x = random_problem(5, 3, 3, seed=7, gamma=0.9, parameterize=parameterize,
                                objective=objective)
    hg = hypergradient(problem, x)
    scale = np.max(np.abs(hg.gradient))
    for e in EST:
        m = moments(problem, x, e)
        want = hg.direct if e == "naive" else hg.gradient
        assert np.max(np.abs(m.mean - want)) <= 1e-10 * scale, e
        assert m.covariance.shape == (3, 3) and np.allclose(m.covariance, m.covariance.T)
        assert np.min(np.linalg.eigvalsh(m.covariance)) >= -1e-12 * np.max(m.covariance)


def test_sparse_storage_stays_sparse_and_agrees(monkeypatch):
    """A sparse ``P`` that does not depend on ``x``: the same moments as dense storage,
    computed without materialising ``P[s, a, s']``."""
    from exact_bilevel.core.generators import random_mdp
    from exact_bilevel.core.mdp import FiniteMDP
    from exact_bilevel.core.parameterizations import FixedTransitions
    from exact_bilevel.experiments.examples import random_affine_reward

    rng = np.random.default_rng(2)
    S, A, d = 30, 3, 2
    dense = random_mdp(S, A, gamma=0.9, seed=4, support=3)
    follower, leader = random_affine_reward(rng, S, A, d), random_affine_reward(rng, S, A, d)
    x = rng.normal(size=d)
    out = []
    for P in (dense.transitions, FiniteMDP(dense.transitions, dense.reward, 0.9, dense.initial,
                                           storage="sparse").transition_matrix):
        problem = BilevelProblem(follower, FixedTransitions(P, d, n_actions=A),
                                 LeaderReturn(leader, leader_gamma=0.8), gamma=0.9, tau=0.4,
                                 initial=dense.initial)
        know = leader_knowledge(problem, x)
        if scipy.sparse.issparse(P):
            assert know.state.mdp.is_sparse

            def no_dense(self):
                raise AssertionError("P densified")
            monkeypatch.setattr(FiniteMDP, "transitions", property(no_dense))
        out.append({e: moments(problem, x, e, know=know) for e in EST})
    for e in EST:
        a, b = out[0][e], out[1][e]
        assert np.max(np.abs(a.mean - b.mean)) <= 1e-12 * np.max(np.abs(a.mean))
        assert np.max(np.abs(a.covariance - b.covariance)) <= 1e-12 * np.max(a.covariance)


# -- simulation -----------------------------------------------------------------------

R = 10_000
SIM_CASES = {  # name: (parameterize, gamma, gamma_L, seed)
    "reward": ("reward", 0.9, 0.9, 0),
    "transitions": ("transitions", 0.8, 0.6, 1),
    "both": ("both", 0.7, 0.85, 2),
}
#: Mutants of the covariance (terms of the M_UU system left out) and the cases where the
#: simulation check must reject them. "cross": the cross terms of the product (the step
#: against the continuing product, the continuing sums against it); "square": the
#: continuing product's own second moment.
MUTANTS = {"cross": ("ez", "uz"), "square": ("zz",)}
REJECT = {("both", "bc-hg-baseline"): ("cross", "square"),
          ("transitions", "bc-hg"): ("square",), ("both", "bc-hg"): ("square",)}


def z_scores(X: np.ndarray, mean: np.ndarray, cov: np.ndarray):
    """``z`` of the sample mean (s.e. from the exact covariance) and of each sample
    covariance entry (s.e. ``sd((X_k - xbar_k)(X_l - xbar_l)) / sqrt(R)``: the fourth
    moments of the replicates)."""
    n = X.shape[0]
    xbar = X.mean(axis=0)
    zm = (xbar - mean) / np.sqrt(np.diag(cov) / n)
    D = X - xbar
    Y = D[:, :, None] * D[:, None, :]
    zc = (np.cov(X.T, ddof=1).reshape(cov.shape) - cov) / (Y.std(axis=0, ddof=1) / np.sqrt(n))
    return zm, zc


def _mutant_covariance(problem, x, estimator: str, drop: tuple[str, ...]) -> np.ndarray:
    know = leader_knowledge(problem, x)
    m_u, m_uu = moments_mod._episode_moments(know, estimator, drop)
    first = problem.initial @ m_u
    return np.einsum("s,skl->kl", problem.initial, m_uu) - np.outer(first, first)


@pytest.mark.parametrize("case", sorted(SIM_CASES))
def test_moments_match_simulation_and_reject_mutants(case):
    parameterize, gamma, gamma_leader, seed = SIM_CASES[case]
    problem, x = _problem(parameterize, gamma, gamma_leader, seed=seed, S=4)
    for e in EST:
        m = moments(problem, x, e)
        # one planned episode, truncated with probability beta^(one - 1) <= 1e-4 (the cap's
        # planned rate; R = 10^4 replicates then expect < 1 truncated episode)
        one = budget_for(1, m.beta)
        assert m.beta ** (one - 1) <= 1e-4
        X, cost = replicates(problem, x, e, one, R, seed=100 + seed)
        zm, zc = z_scores(X, m.mean, m.covariance)
        assert np.max(np.abs(zm)) < 5 and np.max(np.abs(zc)) < 5, (e, zm, zc)
        # the expected cost: Var(1 + T) = beta / (1 - beta)^2
        z_cost = (cost.mean() - m.expected_transitions) / np.sqrt(
            m.beta / (1 - m.beta) ** 2 / R)
        assert abs(z_cost) < 5
        for name in REJECT.get((case, e), ()):
            _, zmut = z_scores(X, m.mean, _mutant_covariance(problem, x, e, MUTANTS[name]))
            assert np.max(np.abs(zmut)) > 5, (name, e, zmut)


def test_estimate_at_a_budget_averages_a_fixed_number_of_episodes():
    """``bchg`` at a budget averages ``n = episodes_for_budget(budget, beta)`` i.i.d.
    episodes (a deterministic count): covariance ``Cov_1 / n``; checked by simulation."""
    from exact_bilevel.estimators._common import episodes_for_budget

    problem, x = _problem("both", 0.7, 0.85, seed=2, S=4)
    one = moments(problem, x, "bc-hg")
    budget = budget_for(5, one.beta)
    m = moments(problem, x, "bc-hg", budget=budget)
    n = episodes_for_budget(budget, one.beta)
    assert m.episodes == n == 5 and not m.per_episode and one.per_episode
    assert np.array_equal(m.mean, one.mean)
    assert np.allclose(m.covariance, one.covariance / n, rtol=1e-15, atol=0)
    X, cost = replicates(problem, x, "bc-hg", budget, 4000, seed=9)
    zm, zc = z_scores(X, m.mean, m.covariance)
    assert np.max(np.abs(zm)) < 5 and np.max(np.abs(zc)) < 5, (zm, zc)
    assert abs(cost.mean() - m.expected_transitions) < 5 * np.sqrt(
        n * m.beta / (1 - m.beta) ** 2 / 4000)


# -- scope --------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", sorted(set(ESTIMATORS) - set(EST)))
def test_other_estimators_are_refused_with_the_reason(estimator):
    problem, x = random_problem(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match=f"estimator = '{estimator}': out of scope"):
        moments(problem, x, estimator)


@pytest.mark.parametrize("critic", ["monte-carlo", "td"])
def test_learned_critics_are_refused(critic):
    problem, x = random_problem(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="exact critic"):
        moments(problem, x, "bc-hg", critic=critic)


def test_unknown_estimator_and_non_leader_return():
    problem, x = random_problem(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="unknown"):
        moments(problem, x, "bchg")
    quad, xq = random_problem(3, 2, 2, seed=0, objective="quadratic")
    with pytest.raises(ValueError, match="not a LeaderReturn"):
        moments(quad, xq, "bc-hg")
