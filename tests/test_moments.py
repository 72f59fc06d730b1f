"""Exact moments of the estimators (``estimators/moments.py``).

The bc-hg family (bc-hg, bc-hg-baseline, naive) by three independent routes, then the
other covered estimators (sobirl-simplified: every sweep outcome; zeroth-order: every
trajectory of every evaluation given the directions, quadrature convergence; both by
simulation with power against a 1.1x covariance), the cap's crossing probability and
truncation bound, and a 50-digit mpmath golden case:

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
from exact_bilevel.estimators.sampling import Episodes, Sampler, Uniforms, as_batch
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
    computed without materialising ``P[s, a, s']`` (the bc-hg family, sobirl-simplified,
    zeroth-order given its directions)."""
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
        res = {e: moments(problem, x, e, know=know) for e in EST}
        res["sobirl-simplified"] = moments(problem, x, "sobirl-simplified", 90, know=know)
        res["zeroth-order"] = moments_mod.zeroth_order_moments(
            problem, x, 500, directions=np.eye(d), know=know)
        out.append(res)
    for e in out[0]:
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

@pytest.mark.parametrize("estimator", sorted(set(ESTIMATORS) - set(moments_mod.SUPPORTED)
                                              - set(moments_mod.BY_QUADRATURE)))
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


@pytest.mark.parametrize("estimator,critic", [("sobirl-simplified", "td"),
                                              ("zeroth-order", "monte-carlo")])
def test_estimators_without_a_critic_refuse_foreign_critics(estimator, critic):
    problem, x = random_problem(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match=f"critic = '{critic}'"):
        moments(problem, x, estimator, critic=critic)
    moments(problem, x, estimator, critic="exact" if estimator == "zeroth-order"
            else "monte-carlo")  # its own is accepted


def test_crossing_probability_is_the_planning_rule():
    """``truncation_probability`` is the tail ``episodes_for_budget`` plans with: at most
    1e-4 for the planned ``n``, above it for ``n + 1``; and it matches simulation."""
    from exact_bilevel.estimators._common import TRUNCATION_PROBABILITY, episodes_for_budget

    cp = moments_mod.crossing_probability
    for beta, budget, groups in ((0.9, 500, 1), (0.7, 90, 8), (0.95, 3000, 2)):
        n = episodes_for_budget(budget, beta, groups=groups)
        assert cp(budget, beta, n, groups) <= TRUNCATION_PROBABILITY
        assert cp(budget, beta, n + 1, groups) > TRUNCATION_PROBABILITY
    rng = np.random.default_rng(0)
    T = rng.geometric(0.3, size=(200_000, 3))
    p = cp(14, 0.7, 3)
    hits = np.mean(3 + T.sum(axis=1) > 14)
    assert abs(hits - p) < 5 * np.sqrt(p * (1 - p) / 200_000)


# -- sobirl-simplified ---------------------------------------------------------------

class SweepReplay(Sampler):
    """A sampler whose :meth:`sweep` returns given next states (pair-major) and bills them."""

    def __init__(self, mdp, next_states: np.ndarray) -> None:
        super().__init__(mdp, np.random.default_rng(0))
        self._s1 = next_states

    def sweep(self, m):
        S, A = self.mdp.n_states, self.mdp.n_actions
        assert self._s1.size == S * A * m
        self._charge("sweep", S * A * m)
        self.steps += S * A * m
        return (np.repeat(np.arange(S), A * m), np.tile(np.repeat(np.arange(A), m), S),
                self._s1)


@pytest.mark.parametrize("parameterize,objective,m", [
    ("transitions", "leader_return", 1), ("both", "leader_return_x_reward", 2),
    ("both", "quadratic", 1), ("reward", "leader_return", 1)])
def test_sobirl_simplified_equals_enumeration_of_all_sweeps(parameterize, objective, m):
    """Every outcome of the sweep of ``m`` draws per pair (``S^(S A m)`` of them),
    weighted by its probability, replayed through the public estimator: mean and
    covariance to 1e-12 (``P`` fixed: deterministic, covariance exactly 0)."""
    from exact_bilevel.estimators.sobirl import sobirl_simplified

    problem, x = random_problem(2, 2, 2, seed=11, gamma=0.8, parameterize=parameterize,
                                objective=objective)
    know = leader_knowledge(problem, x)
    S, A = know.pi.shape
    budget = S * A * m + 1  # floor(budget / (S A)) = m
    mom = moments(problem, x, "sobirl-simplified", budget, critic="monte-carlo", know=know)
    assert mom.episodes == m
    if parameterize == "reward":
        got = sobirl_simplified(know, Sampler(know.state.mdp, np.random.default_rng(0)),
                                budget).gradient
        assert np.max(np.abs(got - mom.mean)) <= 1e-14 * np.max(np.abs(got))
        assert not np.any(mom.covariance) and mom.expected_transitions == 0
        return
    P = np.asarray(know.state.mdp.transitions)
    outcomes = np.indices((S,) * (S * A * m)).reshape(S * A * m, -1).T
    pairs = (np.repeat(np.arange(S), A * m), np.tile(np.repeat(np.arange(A), m), S))
    first, second = 0.0, 0.0
    for s1 in outcomes:
        w = np.prod(P[pairs[0], pairs[1], s1])
        X = sobirl_simplified(know, SweepReplay(know.state.mdp, s1), budget).gradient
        first, second = first + w * X, second + w * np.outer(X, X)
    cov = second - np.outer(first, first)
    assert np.max(np.abs(mom.mean - first)) <= 1e-12 * np.max(np.abs(first))
    assert np.max(np.abs(mom.covariance - cov)) <= 1e-12 * np.max(np.abs(cov))
    assert mom.expected_transitions == S * A * m


def test_sobirl_simplified_matches_simulation():
    problem, x = random_problem(4, 3, 3, seed=4, gamma=0.9, parameterize="both")
    m = moments(problem, x, "sobirl-simplified", 60, critic="monte-carlo")
    X, cost = replicates(problem, x, "sobirl-simplified", 60, 20_000, seed=5)
    zm, zc = z_scores(X, m.mean, m.covariance)
    assert np.max(np.abs(zm)) < 5 and np.max(np.abs(zc)) < 5, (zm, zc)
    assert np.all(cost == m.expected_transitions)
    # power: a covariance scaled by 1.1 is rejected
    assert np.max(np.abs(z_scores(X, m.mean, 1.1 * m.covariance)[1])) > 5


# -- zeroth-order --------------------------------------------------------------------

def _return_per_episode(problem, state, ep: Episodes, beta: float) -> np.ndarray:
    """``Y_i = sum_{t < T_i} (gamma_L/beta)^t r_L(s_t, a_t) + reg(x')``, ``[n]``."""
    obj = problem.objective
    rL = obj.leader_reward.value(state.x)[ep.states[:, :-1], ep.actions]
    w = (obj.gamma_for(problem) / beta if beta > 0 else 0.0) ** np.arange(ep.actions.shape[1])
    reg = 0.0 if obj.regularizer is None else float(obj.regularizer(state.x)[0])
    return np.where(ep.mask, rL, 0.0) @ w + reg


def _enumerate_return(problem, state, beta: float, tol: float = 1e-16):
    """``(E Y, Var Y)`` of one episode's return by enumerating all trajectories of length
    ``<= H``, ``H`` the smallest with the neglected part bounded below ``tol`` of the
    scale (``|Y| <= |reg| + T max|r_L|``)."""
    S, A = state.solution.policy.shape
    pi, P = state.solution.policy, np.asarray(state.mdp.transitions)
    rho = np.asarray(problem.initial, dtype=float)
    obj = problem.objective
    c0 = 0.0 if obj.regularizer is None else abs(float(obj.regularizer(state.x)[0]))
    c1 = np.max(np.abs(obj.leader_reward.value(state.x)))
    first = second = 0.0
    for H in range(1, 12):
        pT = _length_law(beta, np.array(H))
        states, actions = _all_paths(S, A, H)
        s, a, s1 = states[:, :-1], actions, states[:, 1:]
        w = pT * rho[states[:, 0]] * np.prod(pi[s, a] * P[s, a, s1], axis=1)
        ep = Episodes(states=states, actions=actions, lengths=np.full(states.shape[0], H))
        Y = _return_per_episode(problem, state, ep, beta)
        first, second = first + w @ Y, second + w @ (Y * Y)
        T = np.arange(H + 1, H + 4000)
        B = c0 + T * c1
        p = _length_law(beta, T)
        if p @ (B * B) + 2 * abs(first) * (p @ B) <= tol * (second - first * first):
            return first, second - first * first
    raise AssertionError("no horizon <= 11 bounds the tail")


class _Directions(Sampler):
    """A single-estimate sampler whose :meth:`normal` returns the given directions
    ``U[M, d]`` (the one draw of ``M d`` normals zeroth-order makes, direction-major); every
    other draw is its generator's."""

    def __init__(self, mdp, rng, U: np.ndarray) -> None:
        super().__init__(mdp, rng)
        self._U = U

    def normal(self, k):
        assert k == self._U.size, (k, self._U.shape)
        return self._U.reshape(1, -1)


@pytest.mark.parametrize("parameterize,gamma,gamma_leader", [
    ("transitions", 3e-3, 3e-3), ("both", 2e-3, 4e-3), ("reward", 4e-3, 2e-3)])
def test_zeroth_order_given_directions_equals_enumeration(parameterize, gamma, gamma_leader):
    """Given the directions ``U``, the moments equal those built from every trajectory of
    every evaluation point ``x +- mu u_j`` (enumerated, tail bounded below 1e-16), to
    1e-12 (the mean relative to ``max|F| max|u| / (2 mu)``: it is a difference quotient);
    the evaluations are independent by construction (separate episodes)."""
    problem, x = _problem(parameterize, gamma, gamma_leader, seed=6, tau=0.3)
    know = leader_knowledge(problem, x)
    U = np.random.default_rng(3).normal(size=(2, x.size))
    mu = moments_mod.ZO_SMOOTHING
    mean, cov, scale = 0.0, 0.0, 0.0
    for u in U:
        plus = _enumerate_return(problem, problem.follower_state(x + mu * u), know.beta)
        minus = _enumerate_return(problem, problem.follower_state(x - mu * u), know.beta)
        mean = mean + (plus[0] - minus[0]) / (2 * mu) * u / len(U)
        cov = cov + (plus[1] + minus[1]) / (4 * mu * mu) * np.outer(u, u) / len(U) ** 2
        scale = max(scale, abs(plus[0]) * np.max(np.abs(u)) / (2 * mu))
    got = moments_mod.zeroth_order_moments(problem, x, directions=U, know=know)
    assert np.max(np.abs(got.mean - mean)) <= 1e-12 * scale
    assert np.max(np.abs(got.covariance - cov)) <= 1e-12 * np.max(np.abs(cov))
    assert got.episodes == 1 and got.per_episode


def test_zeroth_order_code_is_the_enumerated_formula(monkeypatch):
    """Replayed batches and directions through the public :func:`zeroth_order` give
    ``(1/M) sum_j (Ybar(x + mu u_j) - Ybar(x - mu u_j)) / (2 mu) u_j`` with the per-episode
    return the enumeration uses. The estimator walks all ``2M`` evaluations in one batch on
    the stacked MDP (evaluation ``m = 2 j + (0 for +, 1 for -)`` in block ``m``, states
    ``m S + s``); the replay serves each evaluation's own episodes there, in that order."""
    import exact_bilevel.estimators.zeroth_order as zo
    from exact_bilevel.estimators.sampling import concatenate

    problem, x = _problem("both", 0.6, 0.8, seed=5, S=3)
    know = leader_knowledge(problem, x)
    S = know.pi.shape[0]
    M, mu = moments_mod.ZO_DIRECTIONS, moments_mod.ZO_SMOOTHING
    U = np.random.default_rng(2).normal(size=(M, x.size))
    rng = np.random.default_rng(4)
    points = [x + sgn * mu * u for u in U for sgn in (1.0, -1.0)]
    states = [problem.follower_state(p) for p in points]
    n = 3
    batches = [Sampler(st.mdp, rng).episodes(st.solution.policy, n, know.beta)
               for st in states]
    stacked = concatenate(*[Episodes(states=ep.states + m * S, actions=ep.actions,
                                     lengths=ep.lengths)
                            for m, ep in enumerate(batches)])
    served = []

    class Replay(ReplaySampler):
        def __init__(self, mdp, uniforms, *, single):
            assert not single and uniforms is sampler.uniforms
            assert mdp.n_states == 2 * M * S
            super().__init__(mdp, stacked)

        def episode_batch(self, pi, n_episodes, beta, start=None, first_action=None):
            assert beta == know.beta and first_action is None
            # each evaluation's episodes start in its own block, under its own policy
            block = np.arange(2 * M * n) // n
            assert np.array_equal(np.asarray(start).reshape(-1) // S, block)
            for m, st in enumerate(states):
                np.testing.assert_allclose(pi[m * S:(m + 1) * S], st.solution.policy,
                                           rtol=0, atol=1e-15)
            served.append(n_episodes)
            return super().episode_batch(pi, n_episodes, beta)

    monkeypatch.setattr(zo, "Sampler", Replay)
    sampler = _Directions(know.state.mdp, np.random.default_rng(0), U)
    budget = 10**6
    while zo.episodes_for_budget(budget, know.beta, groups=2 * M) > n:
        budget = int(budget * 0.9)
    while zo.episodes_for_budget(budget, know.beta, groups=2 * M) < n:
        budget += 1
    est = zo.zeroth_order(know, sampler, budget)
    assert served == [2 * M * n]
    assert est.transitions == 2 * M * n + sum(ep.n_steps for ep in batches)
    got = est.gradient
    Y = [_return_per_episode(problem, st, ep, know.beta).mean()
         for st, ep in zip(states, batches, strict=True)]
    want = sum((Y[2 * j] - Y[2 * j + 1]) / (2 * mu) * U[j] for j in range(M)) / M
    assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want))


def test_zeroth_order_over_directions_quadrature_converges():
    """Over ``u ~ N(0, I)``: the mean is the smoothed gradient (the estimator's target,
    :func:`smoothed_gradient`) and orders 8 and 12 agree to 1e-12 (geometric
    convergence of Gauss-Hermite on the analytic integrand)."""
    from exact_bilevel.estimators.zeroth_order import smoothed_gradient

    problem, x = random_problem(3, 2, 2, seed=8, gamma=0.8, parameterize="both",
                                objective="leader_return_own_gamma")
    a = moments(problem, x, "zeroth-order", 400)
    b = moments_mod.zeroth_order_moments(problem, x, 400, order=12)
    assert a.episodes == b.episodes and a.episodes >= 1
    assert np.max(np.abs(a.mean - smoothed_gradient(problem, x, moments_mod.ZO_SMOOTHING))) \
        <= 1e-12 * np.max(np.abs(a.mean))
    assert np.max(np.abs(a.mean - b.mean)) <= 1e-12 * np.max(np.abs(a.mean))
    assert np.max(np.abs(a.covariance - b.covariance)) <= 1e-12 * np.max(a.covariance)


def test_zeroth_order_matches_simulation():
    problem, x = random_problem(2, 2, 2, seed=9, gamma=0.7, parameterize="both")
    budget = 400
    m = moments(problem, x, "zeroth-order", budget)
    assert m.truncation_probability <= 1e-4
    X, cost = replicates(problem, x, "zeroth-order", budget, 1500, seed=8)
    zm, zc = z_scores(X, m.mean, m.covariance)
    assert np.max(np.abs(zm)) < 5 and np.max(np.abs(zc)) < 5, (zm, zc)
    assert abs(cost.mean() - m.expected_transitions) < 5 * np.sqrt(
        2 * moments_mod.ZO_DIRECTIONS * m.episodes * m.beta / (1 - m.beta) ** 2 / 1500)


# -- mpmath golden case --------------------------------------------------------------

def _bchg_moments_mpmath(know, baseline: bool, dps: int = 50):
    """The section-10 systems re-implemented with explicit sums in ``mpmath`` at ``dps``
    digits, from the float64 inputs taken as exact (``pi, P, dr, dlogP, V, r_L, dr_L,
    rho``); the leader's values are solved here too. Returns ``(mean[d], cov[d, d])``
    as nested lists of ``mpf`` (``U`` part only; the regulariser is added by the caller)."""
    import mpmath as mp

    mp.mp.dps = dps
    f = mp.mpf
    S, A = know.pi.shape
    d = know.dr.shape[-1]
    pi = [[f(float(know.pi[s, a])) for a in range(A)] for s in range(S)]
    P = np.asarray(know.state.mdp.transitions)
    Pm = [[[f(float(P[s, a, t])) for t in range(S)] for a in range(A)] for s in range(S)]
    g_, gL, tau = f(know.gamma), f(know.gamma_leader), f(know.tau)
    beta = max(g_, gL)
    rL = know.r_leader
    Ppi = mp.matrix(S, S)
    for s in range(S):
        for t in range(S):
            Ppi[s, t] = mp.fsum(pi[s][a] * Pm[s][a][t] for a in range(A))

    def solve(c, rhs):  # rhs: list over s of mpf
        M = mp.eye(S) - c * Ppi
        return list(mp.lu_solve(M, mp.matrix(rhs)))

    vL = solve(gL, [mp.fsum(pi[s][a] * f(float(rL[s, a])) for a in range(A)) for s in range(S)])
    qL = [[f(float(rL[s, a])) + gL * mp.fsum(Pm[s][a][t] * vL[t] for t in range(S))
           for a in range(A)] for s in range(S)]
    c = [[(qL[s][a] - vL[s]) / tau for a in range(A)] for s in range(S)]
    b = 1 if baseline else 0
    v = [f(float(val)) for val in know.v]

    def step(dr, val, disc, s, a, t, k):
        out = f(float(dr[s, a, k]))
        if know.score is not None:
            out += disc * f(float(know.score[s, a, t, k])) * (val[t] - b * val[s])
        return out

    G = {(s, a, t, k): step(know.dr, v, g_, s, a, t, k)
         for s in range(S) for a in range(A) for t in range(S) for k in range(d)}
    Hh = {(s, a, t, k): step(know.dr_leader, vL, gL, s, a, t, k)
          for s in range(S) for a in range(A) for t in range(S) for k in range(d)}
    E = {key: Hh[key] + c[key[0]][key[1]] * G[key] for key in G}

    def Es(fn, s):  # E over a ~ pi(.|s), s' ~ P(.|s, a)
        return mp.fsum(pi[s][a] * Pm[s][a][t] * fn(a, t) for a in range(A) for t in range(S))

    def vec_solve(cdisc, fn):  # fn(s, a, t, k) -> mpf; per k
        return [solve(cdisc, [Es(lambda a, t, s=s, k=k: fn(s, a, t, k), s) for s in range(S)])
                for k in range(d)]  # [k][s]

    def mat_solve(cdisc, fn):
        return [[solve(cdisc, [Es(lambda a, t, s=s, k=k, l=l: fn(s, a, t, k, l), s)
                               for s in range(S)]) for l in range(d)] for k in range(d)]

    mZ = vec_solve(g_, lambda s, a, t, k: G[s, a, t, k])
    mU = vec_solve(gL, lambda s, a, t, k: E[s, a, t, k] + g_ * c[s][a] * mZ[k][t])
    czz, cuz, cuu = g_ * g_ / beta, g_ * gL / beta, gL * gL / beta
    MZZ = mat_solve(czz, lambda s, a, t, k, l: G[s, a, t, k] * G[s, a, t, l]
                    + g_ * (G[s, a, t, k] * mZ[l][t] + mZ[k][t] * G[s, a, t, l]))
    MUZ = mat_solve(cuz, lambda s, a, t, k, l: E[s, a, t, k] * G[s, a, t, l]
                    + g_ * E[s, a, t, k] * mZ[l][t] + gL * mU[k][t] * G[s, a, t, l]
                    + g_ * c[s][a] * mZ[k][t] * G[s, a, t, l]
                    + czz * c[s][a] * MZZ[k][l][t])
    MUU = mat_solve(cuu, lambda s, a, t, k, l: E[s, a, t, k] * E[s, a, t, l]
                    + gL * (E[s, a, t, k] * mU[l][t] + mU[k][t] * E[s, a, t, l])
                    + g_ * c[s][a] * (E[s, a, t, k] * mZ[l][t] + mZ[k][t] * E[s, a, t, l])
                    + cuz * c[s][a] * (MUZ[k][l][t] + MUZ[l][k][t])
                    + czz * c[s][a] ** 2 * MZZ[k][l][t])
    rho = [f(float(r)) for r in know.problem.initial]
    mean = [mp.fsum(rho[s] * mU[k][s] for s in range(S)) for k in range(d)]
    cov = [[mp.fsum(rho[s] * MUU[k][l][s] for s in range(S)) - mean[k] * mean[l]
            for l in range(d)] for k in range(d)]
    return mean, cov


@pytest.mark.parametrize("estimator", ["bc-hg", "bc-hg-baseline"])
def test_golden_mpmath_50_digits(estimator):
    """A 2-state, 2-action problem (reward and transition parameters, ``gamma_L !=
    gamma``): the float64 moments agree with the 50-digit evaluation to 1e-13."""
    problem, x = _problem("both", 0.9, 0.75, seed=12)
    know = leader_knowledge(problem, x)
    m = moments(problem, x, estimator, know=know)
    mean, cov = _bchg_moments_mpmath(know, estimator == "bc-hg-baseline")
    mean = np.array([float(v) for v in mean]) + know.reg_grad
    cov = np.array([[float(v) for v in row] for row in cov])
    assert np.max(np.abs(m.mean - mean)) <= 1e-13 * np.max(np.abs(mean))
    assert np.max(np.abs(m.covariance - cov)) <= 1e-13 * np.max(np.abs(cov))


def test_truncation_bound_covers_the_capped_mean():
    """One planned episode at ``budget = L + 1`` is cut at ``L`` steps when ``T > L``
    (probability ``beta^L``): the capped estimator's exact mean (all trajectories of
    length ``<= L``, those of length ``L`` carrying ``Pr(T >= L)``) differs from the
    untruncated mean by at most :attr:`truncation_bias_bound` (the capped law enumerated
    exactly; a replay checks that the sampler cuts there)."""
    problem, x = _problem("both", 0.5, 0.4, seed=3)
    know = leader_knowledge(problem, x)
    S, A = know.pi.shape
    P = np.asarray(know.state.mdp.transitions)
    L = 3
    m = moments(problem, x, "bc-hg", L + 1, know=know)
    assert m.episodes == 1
    assert m.truncation_probability == pytest.approx(0.5 ** L, rel=1e-12)
    capped = 0.0
    for T in range(1, L + 1):
        pT = _length_law(0.5, np.array(T)) if T < L else 0.5 ** (L - 1)
        states, actions = _all_paths(S, A, T)
        s, a, s1 = states[:, :-1], actions, states[:, 1:]
        w = pT * problem.initial[states[:, 0]] * np.prod(know.pi[s, a] * P[s, a, s1], axis=1)
        ep = Episodes(states=states, actions=actions, lengths=np.full(states.shape[0], T))
        capped = capped + w @ _per_episode(know, ep, "bc-hg")
    # the public estimator truncates exactly so: uniforms that draw T = L + 2 (length
    # uniform in [1 - beta^(L+1), 1 - beta^(L+2))), replayed through bchg at budget L + 1,
    # give the first L steps of that episode (the uncapped walk from the same uniforms)
    # and exactly its per-episode estimate
    walk = np.random.default_rng(0).random((1, 2 * L + 6))
    walk[0, 0] = 1.0 - 0.75 * 0.5 ** (L + 1)
    long = Sampler(know.state.mdp, Uniforms(walk.copy()), single=True).episodes(
        know.pi, 1, know.beta)
    assert long.lengths.tolist() == [L + 2]
    sampler = Sampler(know.state.mdp, Uniforms(walk.copy()), single=True)
    with sampler.capped(L + 1):
        cut = sampler.episodes(know.pi, 1, know.beta)
    assert cut.lengths.tolist() == [L] and sampler.truncated.tolist() == [1]
    assert np.array_equal(cut.states, long.states[:, :L + 1])
    assert np.array_equal(cut.actions, long.actions[:, :L])
    sampler = Sampler(know.state.mdp, Uniforms(walk.copy()), single=True)
    est = bchg(know, sampler, L + 1)
    assert est.transitions == L + 1 and sampler.truncated.tolist() == [1]
    want = _per_episode(know, cut, "bc-hg")[0]
    assert np.max(np.abs(est.gradient - want)) <= 1e-13 * np.max(np.abs(want))
    gap = np.abs(capped - m.mean)
    # a worst-case bound (no cancellation along the cut episode): valid, and loose
    # (here ~1e3 times the gap)
    assert np.all(gap <= m.truncation_bias_bound) and np.max(gap) > 0
    assert moments(problem, x, "bc-hg", know=know).truncation_bias_bound is None
