r"""Exact mean and covariance of the estimators (:ref:`docs/math.md, section 10
<moments>`).

**The bc-hg family.** With the exact leader critic, one discount-terminated episode
contributes (to :func:`~exact_bilevel.estimators.bchg.bchg`, :func:`~.bchg.naive`; see
:func:`~.bchg.bchg_per_episode`)

.. math::

    X = \nabla\mathrm{reg} + \sum_{t<T} \rho_L^t\, h_t
        + \frac{1}{\tau} \sum_{t<T} \rho_L^t A_L(s_t,a_t) \sum_{t\le k<T} \rho^{k-t} g_k,
    \qquad \rho = \gamma/\beta,\ \rho_L = \gamma_L/\beta,\ \beta = \max(\gamma, \gamma_L),

with ``T >= 1`` geometric (``Pr(T > k) = beta^k``, independent of the path),
``g_k = dr(s_k,a_k) + gamma dlogP(s_{k+1}|s_k,a_k) (V(s_{k+1}) - b V(s_k))`` and
``h_t = dr_L(s_t,a_t) + gamma_L dlogP(s_{t+1}|s_t,a_t) (V_L(s_{t+1}) - b V_L(s_t))``
(``b = 1`` for ``bc-hg-baseline``, else 0; ``naive`` drops the double sum). By the
memorylessness of ``T``, the episode from ``s_0 = s`` splits after its first step
``(s, a, s')`` and the continuation flag ``C ~ Bernoulli(beta)`` into a copy ``(U', Z')``
started at ``s'``:

.. math::

    Z = g + C\rho Z', \qquad
    U = e + C\big(\rho_L U' + \rho\,\tilde c\, Z'\big), \qquad
    e = h + \tilde c\, g, \quad \tilde c(s,a) = A_L(s,a)/\tau,

``X = grad reg + U(s_0)``. Taking expectations of ``Z``, ``U``, ``Z Z^T``, ``U Z^T``,
``U U^T`` gives five linear (Bellman-like) systems over states — the vector
analogue of Sobel's (1982) variance of the discounted return:

.. math::

    m_Z &= (I - \gamma P_\pi)^{-1}\, E[g] \;(= dV),\\
    m_U &= (I - \gamma_L P_\pi)^{-1}\big(E[e] + \gamma\, E[\tilde c\, m_Z(s')]\big),\\
    M_{ZZ} &= (I - \tfrac{\gamma^2}{\beta} P_\pi)^{-1}
             \big(E[g g^T] + \gamma\,\mathrm{sym}\,E[g\, m_Z(s')^T]\big),\\
    M_{UZ} &= (I - \tfrac{\gamma\gamma_L}{\beta} P_\pi)^{-1}
             \big(E[e g^T] + \gamma E[e\, m_Z'^T] + \gamma_L E[m_U' g^T]
             + \gamma E[\tilde c\, m_Z' g^T] + \tfrac{\gamma^2}{\beta} E[\tilde c M_{ZZ}']\big),\\
    M_{UU} &= (I - \tfrac{\gamma_L^2}{\beta} P_\pi)^{-1}
             \big(E[e e^T] + \mathrm{sym}(\gamma_L E[e\, m_U'^T] + \gamma E[\tilde c\, e\, m_Z'^T])
             + \tfrac{\gamma\gamma_L}{\beta} E[\tilde c\,(M_{UZ}' + M_{UZ}'^T)]
             + \tfrac{\gamma^2}{\beta} E[\tilde c^2 M_{ZZ}']\big),

``E[.]`` over ``a ~ pi(.|s)``, ``s' ~ P(.|s, a)`` per state, primes at ``s'``,
``sym(B) = B + B^T``. Then ``mean = grad reg + rho^T m_U`` and
``covariance = rho^T M_UU - (rho^T m_U)(rho^T m_U)^T``.

Cost: the follower solve and leader values (as for :func:`~.registry.estimate`), one
more LU of ``I - c P_pi`` for each discount among ``gamma_L, gamma^2/beta,
gamma gamma_L/beta, gamma_L^2/beta`` that is not ``gamma`` (none when ``gamma_L =
gamma``; two otherwise: ``gamma_L`` and ``gamma^2/gamma_L`` or ``gamma_L^2/gamma``),
solves with ``d^2`` right-hand sides, and right-hand sides costing ``O(S^2 A d^2)``
when ``P`` depends on ``x`` (the dense score ``[S, A, S, d]`` the estimators use too)
and ``O((S A + nnz P) d^2)`` otherwise. A sparse ``P`` that does not depend on ``x``
stays sparse (``mdp.expect`` and the package's sparse LU); memory ``O(S d^2)``
(``O(S^2 A d)`` with transition parameters).

**At a budget.** :func:`~.bchg.bchg` draws ``n = episodes_for_budget(budget, beta)``
episodes — a *deterministic* count fixed by the budget (the transitions consumed,
``n + sum_i T_i``, are random, the count is not) — and returns ``grad reg + mean_i
U_i`` over i.i.d. episodes, so its covariance is exactly ``covariance_1 / n``; no
renewal argument is needed. One neglected event: the hard budget cap
(:meth:`~.sampling.Sampler.capped`) truncates the batch when ``n + sum_i T_i`` exceeds
the budget, which ``episodes_for_budget`` plans to happen with probability at most
``TRUNCATION_PROBABILITY = 1e-4`` (more only at budgets too small for one episode to
fit with that probability); the moments at a budget are those of the untruncated
estimate, exact up to that event.


**sobirl-simplified** (:func:`~.sobirl.sobirl_simplified`). Its estimate is linear in the
per-pair sample means of ``m = budget // (S A)`` generative-model draws: with ``w =
df_dpi * pi`` (the objective's partials) and ``kappa(s, a) = (w(s, a) - pi(a|s) sum_a'
w(s, a')) / tau``,

.. math::

    X = \partial_x f + \sum_{s,a} \kappa(s,a)\, \hat g(s,a), \qquad
    \hat g = dr + \frac{\gamma}{m} \sum_{j\le m} dlogP(s'_j|s,a)\, V(s'_j),

so ``E X = partial_x f + sum kappa gbar`` (``gbar = dr + gamma E_P[dlogP V]``) and ``Cov X
= (gamma^2/m) sum_{s,a} kappa(s,a)^2 Cov_{s' ~ P(.|s,a)}(dlogP(s'|s,a) V(s'))``, exactly
(``m`` is a fixed count, the sweep is never truncated). With ``P`` independent of ``x``
nothing is drawn: the estimate is deterministic (covariance 0). ``budget=None``: ``m = 1``.
Any objective (the estimator uses ``f``'s partials, not a sampled return). Cost: one
follower solve, ``O(S^2 A d^2)``.

**zeroth-order** (:func:`~.zeroth_order.zeroth_order`, ``M = directions`` Gaussian
directions, radius ``mu = smoothing``, both at the estimator's defaults). Each of the
``2M`` evaluations averages ``n`` discount-terminated episodes (``n =
episodes_for_budget(budget, beta, groups=2M)``, a fixed count; ``n = 1`` when ``budget`` is
None) of the return ``Y = sum_{t<T} rho_L^t r_L(s_t, a_t)`` at ``x' = x +- mu u``, with the
follower re-solved at ``x'`` and ``beta`` that of ``x``. ``Y`` is the scalar case of the
recursion above (``Y = r + C rho_L Y'``, Sobel 1982):

.. math::

    E[Y|s] = V_L(s), \qquad
    M_Y = (I - \tfrac{\gamma_L^2}{\beta} P_\pi)^{-1}\, \textstyle\sum_a \pi\, r_L (2 Q_L - r_L),
    \qquad \sigma^2(x') = \rho^T M_Y - (\rho^T V_L)^2 .

Given the directions ``u_j`` (:func:`zeroth_order_moments` with ``directions``) the ``2M``
evaluations are independent, so with ``D_j = F(x + mu u_j) - F(x - mu u_j)``

.. math::

    E[X|u] = \frac{1}{M}\sum_j \frac{D_j}{2\mu} u_j, \qquad
    \mathrm{Cov}[X|u] = \frac{1}{M^2}\sum_j
        \frac{\sigma^2(x+\mu u_j) + \sigma^2(x-\mu u_j)}{4\mu^2 n}\, u_j u_j^T .

Over ``u ~ N(0, I_d)`` (i.i.d. directions): ``E X = grad F_mu`` (the Gaussian smoothing,
:func:`~.zeroth_order.smoothed_gradient`) and ``Cov X = (1/M) (E_u[(D^2 + (sigma_+^2 +
sigma_-^2)/n) u u^T] / (4 mu^2) - grad F_mu grad F_mu^T)``, the Gaussian expectation by
tensor Gauss-Hermite quadrature (``order^d`` nodes; each node's mirror ``-u`` reuses its
evaluations, so ``order^d`` follower solves): exact for polynomial integrands of degree
``< 2 order`` per coordinate and converging geometrically for the analytic ``F`` of a soft
follower (the tests compare orders 8 and 12). Cost: per node, the follower solve, the
leader values and one more LU when ``gamma_L^2/beta`` is not ``gamma``.

**Out of scope** (``ValueError`` with the reason): the learned critics (Monte Carlo, TD)
and the estimators whose estimate is a *ratio* or another nonlinear function of all
samples: ``hpgd``, ``hpgd-oracle``, ``sobirl`` (every-visit averages ``dQ_hat(s, a) = sum
Z / N(s, a)`` with the random visit count ``N`` in the denominator: its exact mean needs
``E[S / N]``, an integral over exponentially tilted chains, not a finite set of linear
solves), ``hpgd-td``, ``sobirl`` with TD and ``model-based`` (an inverse of an empirical
matrix). The Markov-game estimators (:mod:`exact_bilevel.games.estimators`) are covered by
:func:`exact_bilevel.games.game_moments`: the problem-level ones on the follower's problem
plus an independent initial-law term (docs/math.md, section 10.4; the layering keeps that
composition in :mod:`exact_bilevel.games`).

**The hard cap.** Every moment here is of the *untruncated* estimate. The cap truncates
when the planned batch's cost crosses the budget, an event of probability
:attr:`EstimatorMoments.truncation_probability` (exact negative-binomial tail; ``<= 1e-4``
unless the budget is too small for one episode per group). Truncation only shortens
episodes and keeps their number, so where ``|X_i - grad reg| <= B(T_i)`` with ``B``
increasing (the bc-hg family: ``B(T) = T max|h| + T(T+1)/2 max|A_L| max|g| / tau``,
entrywise, as ``gamma/beta, gamma_L/beta <= 1``) the truncated and untruncated batch
means differ by at most ``2 Bbar`` (``Bbar`` the batch mean of ``B(T_i)``) and only on the
event ``E``; by exchangeability of the episodes the neglected change of the mean is at most

.. math:: |E X_{cap} - E X| \le 2\, E[B(T_1)\, 1_E]
          = 2 \sum_{t \ge 1} \Pr(T = t)\, B(t)\,
            \Pr\big(n + t + \textstyle\sum_{i=2}^{n} T_i > \text{budget}\big),

:attr:`EstimatorMoments.truncation_bias_bound` (bc-hg family; the conditional crossing
probability is the same negative-binomial tail for ``n - 1`` episodes; the sum over ``t``
is carried until the terms underflow). It is ``~ 2 p E[B(T) | E]``, not ``sqrt(p)``; it is a
worst case (no cancellation along the long crossing episode), so it is loose.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from ..core.follower import FollowerState
from ..core.linalg import BellmanFactorization, factorize
from ..core.problem import BilevelProblem
from ._common import (
    LeaderKnowledge,
    check_budget,
    episodes_for_budget,
    leader_knowledge,
    require_leader_return,
)
from .critics import exact_critic
from .registry import ESTIMATORS
from .zeroth_order import zeroth_order as _zeroth_order_fn

#: Estimators whose moments this module computes exactly by linear algebra (a few
#: solves; the CLI's ``check`` uses them for its exact-covariance test).
SUPPORTED = ("bc-hg", "bc-hg-baseline", "naive", "sobirl-simplified")
#: Estimators whose moments are exact given their random directions and, over the
#: directions, computed by Gauss-Hermite quadrature (``order^d`` follower solves).
BY_QUADRATURE = ("zeroth-order",)
#: The zeroth-order estimator's own defaults (read from its signature, so they stay in
#: step): ``directions`` ``M`` and ``smoothing`` ``mu``.
ZO_DIRECTIONS = inspect.signature(_zeroth_order_fn).parameters["directions"].default
ZO_SMOOTHING = inspect.signature(_zeroth_order_fn).parameters["smoothing"].default
#: Gauss-Hermite nodes per coordinate for the zeroth-order moments over the directions.
ZO_ORDER = 8

_RATIO = ("its dQ_hat(s, a) is an every-visit average sum Z / N(s, a) over the batch: the "
          "random visit count N divides, and the exact mean of such a ratio is not a finite "
          "set of linear solves (docs/math.md, section 10)")
_OUT_OF_SCOPE = {
    "hpgd": _RATIO,
    "hpgd-oracle": _RATIO + "; its reset batch enters the same averages",
    "sobirl": _RATIO + " (with critic='td': an inverse of the empirical transition matrix)",
    "hpgd-td": "its dQ comes from a TD fit on the whole batch (an inverse of the empirical "
               "transition matrix), a nonlinear function of all episodes",
    "model-based": "it estimates P from counts and applies the exact formulas, a "
                   "nonlinear function of all samples",
}


@dataclass(frozen=True)
class EstimatorMoments:
    """Exact first and second moments of an estimator at one ``x``.

    Attributes
    ----------
    estimator : str
    mean : ndarray, shape (d,)
        ``E X`` (includes the regulariser's gradient, a constant).
    covariance : ndarray, shape (d, d)
        ``Cov X`` of one episode's contribution (``per_episode``), or of the estimate
        at ``budget`` (``= Cov_1 / episodes``).
    per_episode : bool
        ``True`` when ``budget=None``.
    episodes : int
        I.i.d. units averaged (1 when ``per_episode``): episodes (bc-hg, bc-hg-baseline,
        naive), episodes per evaluation (zeroth-order), generative-model draws per pair
        (sobirl-simplified).
    beta : float
        Continuation probability ``max(gamma, gamma_L)``.
    expected_length : float
        ``E T = 1 / (1 - beta)`` steps per episode.
    expected_transitions : float
        The expected cost (steps + resets): ``episodes * (1 + E T)`` for the bc-hg
        family, ``2 M episodes (1 + E T)`` for zeroth-order, ``S A episodes`` for
        sobirl-simplified (0 when ``P`` does not depend on ``x``).
    truncation_probability : float
        Probability that the hard cap truncates the batch (the moments are those of the
        untruncated estimate; module docstring); 0 when ``per_episode``.
    truncation_bias_bound : ndarray, shape (d,), optional
        Bound on ``|E X_cap - E X|``, the neglected effect of the cap on the mean (module
        docstring); bc-hg family at a budget only (``None`` otherwise; 0 when ``p = 0``).
    """

    estimator: str
    mean: np.ndarray
    covariance: np.ndarray
    per_episode: bool
    episodes: int
    beta: float
    expected_length: float
    expected_transitions: float
    truncation_probability: float = 0.0
    truncation_bias_bound: np.ndarray | None = None

    @property
    def std(self) -> np.ndarray:
        """``sqrt(diag covariance)``, shape ``(d,)``."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))


@dataclass(frozen=True)
class _StepFn:
    """A random ``d``-vector of one step ``(s, a, s')``: ``base[s, a] + jump[s, a, s']``
    (``jump`` is ``None`` when the function does not depend on ``s'``)."""

    base: np.ndarray
    jump: np.ndarray | None

    def scaled_add(self, c: np.ndarray, other: _StepFn) -> _StepFn:
        """``self + c[s, a] * other``."""
        base = self.base + c[..., None] * other.base
        if other.jump is None:
            return _StepFn(base, self.jump)
        jump = c[:, :, None, None] * other.jump
        return _StepFn(base, jump if self.jump is None else self.jump + jump)


class _Chain:
    """Per-state expectations over ``a ~ pi(.|s)``, ``s' ~ P(.|s, a)``; results ``[S, ...]``."""

    def __init__(self, know: LeaderKnowledge) -> None:
        self.pi = know.pi
        self.mdp = know.state.mdp
        self.S = know.pi.shape[0]
        self._P = None

    @property
    def P(self) -> np.ndarray:
        """Dense ``P[s, a, s']``, only when a step function depends on ``s'``."""
        if self._P is None:
            self._P = np.asarray(self.mdp.transitions)
        return self._P

    def next(self, m: np.ndarray) -> np.ndarray:
        """``(P m)[s, a, ...]``."""
        return self.mdp.expect(m.reshape(self.S, -1)).reshape((self.S, -1, *m.shape[1:]))

    def avg(self, f: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """``sum_a pi(a|s) w(s, a) f[s, a, ...]``."""
        pw = self.pi if w is None else self.pi * w
        return np.einsum("sa,sa...->s...", pw, f)

    def mean(self, x: _StepFn) -> np.ndarray:
        """``E[x | s]``, ``[S, d]``."""
        f = x.base if x.jump is None else x.base + np.einsum("sat,satk->sak", self.P, x.jump)
        return self.avg(f)

    def outer(self, x: _StepFn, y: _StepFn) -> np.ndarray:
        """``E[x y^T | s]``, ``[S, d, d]``."""
        f = np.einsum("sak,sal->sakl", x.base, y.base)
        if y.jump is not None:
            f += np.einsum("sak,sal->sakl", x.base, np.einsum("sat,satl->sal", self.P, y.jump))
        if x.jump is not None:
            f += np.einsum("sak,sal->sakl", np.einsum("sat,satk->sak", self.P, x.jump), y.base)
        if x.jump is not None and y.jump is not None:
            f += np.einsum("sat,satk,satl->sakl", self.P, x.jump, y.jump, optimize=True)
        return self.avg(f)

    def with_next(self, x: _StepFn, m: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """``E[w(s, a) x m(s')^T | s]`` for ``m[S, d]``, ``[S, d, d]``."""
        f = np.einsum("sak,sal->sakl", x.base, self.next(m))
        if x.jump is not None:
            f += np.einsum("sat,satk,tl->sakl", self.P, x.jump, m, optimize=True)
        return self.avg(f, w)


def _sym(b: np.ndarray) -> np.ndarray:
    return b + np.swapaxes(b, -1, -2)


def _discounts(gamma: float, gamma_leader: float) -> tuple[float, float, float, float]:
    """``(beta, gamma^2/beta, gamma gamma_L/beta, gamma_L^2/beta)``, exact where one of
    them equals ``gamma`` or ``gamma_L`` (so those solves reuse a factorisation)."""
    if gamma >= gamma_leader:
        beta = gamma
        return beta, gamma, gamma_leader, (gamma_leader**2 / beta if beta > 0 else 0.0)
    beta = gamma_leader
    return beta, gamma * gamma / beta, gamma, gamma_leader


class _Solver:
    """Solves with ``I - c P_pi`` for several ``c``, one factorisation each (the
    follower's own for ``c = gamma``)."""

    def __init__(self, know: LeaderKnowledge) -> None:
        self.know = know
        self.facs: dict[float, BellmanFactorization] = {know.gamma: know.state.factorization}

    def __call__(self, c: float, b: np.ndarray) -> np.ndarray:
        if c == 0.0:
            return b
        if c not in self.facs:
            st = self.know.state
            self.facs[c] = factorize(st.mdp.P_pi(self.know.pi), c)
        S = b.shape[0]
        return np.asarray(self.facs[c].solve(b.reshape(S, -1))).reshape(b.shape)

    @property
    def factorizations(self) -> int:
        """Factorisations made here (beyond the follower's)."""
        return len(self.facs) - 1


def _check(estimator: str, critic: str) -> None:
    """``ValueError`` unless ``estimator`` is covered with this ``critic`` (the bc-hg
    family needs the exact critic; the others do not use one and accept theirs)."""
    covered = SUPPORTED + BY_QUADRATURE
    if estimator in _OUT_OF_SCOPE:
        raise ValueError(f"estimator = {estimator!r}: out of scope for exact moments: "
                         f"{_OUT_OF_SCOPE[estimator]}; supported: {covered}")
    if estimator not in covered:
        raise ValueError(f"estimator = {estimator!r}: unknown; exact moments support "
                         f"{covered}")
    unused = ("exact", *ESTIMATORS[estimator].critics)
    if estimator in _BCHG_FAMILY and critic != "exact":
        raise ValueError(f"critic = {critic!r}: exact moments need the exact critic; a "
                         "learned critic (monte-carlo, td) is fitted on the same episodes, "
                         "so the estimate is no longer a mean of independent per-episode "
                         "additive functionals")
    if critic not in unused:
        raise ValueError(f"critic = {critic!r}: estimator {estimator!r} accepts {unused} "
                         "(it does not use a critic)")


_BCHG_FAMILY = ("bc-hg", "bc-hg-baseline", "naive")


def crossing_probability(total: int, beta: float, episodes: int, groups: int = 1,
                         extra: int = 0) -> float:
    """``Pr(groups n (1 + extra) + sum_{i <= groups n} T_i > total)`` for ``n = episodes``
    i.i.d. ``T_i ~ Geometric(1 - beta)`` on ``{1, 2, ...}``: the probability that a batch
    planned by :func:`~._common.episodes_for_budget` crosses its budget and is truncated
    by the hard cap (the same negative-binomial tail, ``I_beta(k + 1, groups n)``)."""
    r = episodes * groups
    k = total - r * (1 + extra) - r
    if k < 0:
        return 1.0
    return 0.0 if beta == 0.0 else float(betainc(k + 1, r, beta))


def _step_functions(know: LeaderKnowledge, baseline: bool, v_leader: np.ndarray
                    ) -> tuple[_StepFn, _StepFn]:
    """``g`` and ``h`` of the module docstring."""
    def fn(dr: np.ndarray, level_v: np.ndarray, disc: float) -> _StepFn:
        if not know.problem.transitions.depends_on_x:
            return _StepFn(dr, None)
        level = level_v[None, :] - (level_v[:, None] if baseline else 0.0)  # [s, s']
        return _StepFn(dr, disc * know.score * level[:, None, :, None])
    return fn(know.dr, know.v, know.gamma), fn(know.dr_leader, v_leader, know.gamma_leader)


def moments(problem: BilevelProblem, x: object, estimator: str, budget: int | None = None,
            critic: str = "exact", *, know: LeaderKnowledge | None = None
            ) -> EstimatorMoments:
    r"""Exact mean ``[d]`` and covariance ``[d, d]`` of ``estimator`` at ``x``.

    Parameters
    ----------
    problem : BilevelProblem
        With a :class:`~exact_bilevel.core.objectives.LeaderReturn` objective (any
        objective for ``sobirl-simplified``).
    x : array_like, shape (d,)
    estimator : {"bc-hg", "bc-hg-baseline", "naive", "sobirl-simplified", "zeroth-order"}
        Other registered estimators raise ``ValueError`` with the reason.
        ``zeroth-order``: over its random directions, by :func:`zeroth_order_moments`
        at :data:`ZO_ORDER` (exact given the directions; see there).
    budget : int, optional
        ``None``: one unit of the estimate (one episode; one episode per evaluation for
        zeroth-order; one draw per pair for sobirl-simplified). Otherwise the estimate of
        :func:`~exact_bilevel.estimators.registry.estimate` at this budget, with the fixed
        count of units the estimator plans (module docstring).
    critic : str
        ``"exact"`` for the bc-hg family; the others do not use a critic and accept
        ``"exact"`` or their registered ones.
    know : LeaderKnowledge, optional
        Reuse a follower solve at ``x``.

    Returns
    -------
    EstimatorMoments
        See the module docstring for the equations and the cost.
    """
    _check(estimator, critic)
    if estimator == "sobirl-simplified":
        return sobirl_simplified_moments(problem, x, budget, know=know)
    if estimator == "zeroth-order":
        return zeroth_order_moments(problem, x, budget, know=know)
    if know is None:
        know = leader_knowledge(problem, x)
    require_leader_return(know, estimator)
    beta = _discounts(know.gamma, know.gamma_leader)[0]
    m_u, m_uu = _episode_moments(know, estimator)
    rho = np.asarray(problem.initial, dtype=float)
    first = rho @ m_u
    second = np.einsum("s,skl->kl", rho, m_uu)
    cov = second - np.outer(first, first)
    cov = 0.5 * (cov + cov.T)
    n = 1 if budget is None else episodes_for_budget(budget, beta, estimator=estimator)
    length = 1.0 / (1.0 - beta)
    p = 0.0 if budget is None else crossing_probability(budget, beta, n)
    return EstimatorMoments(
        estimator=estimator, mean=first + know.reg_grad, covariance=cov / n,
        per_episode=budget is None, episodes=n, beta=beta, expected_length=length,
        expected_transitions=n * (1.0 + length), truncation_probability=p,
        truncation_bias_bound=(None if budget is None
                               else truncation_bias_bound(know, estimator, budget, n)))


def _step_max(fn: _StepFn) -> np.ndarray:
    """``max_{s, a, s'} |fn(s, a, s')|`` per entry, ``[d]``."""
    if fn.jump is None:
        return np.max(np.abs(fn.base), axis=(0, 1))
    return np.max(np.abs(fn.base[:, :, None, :] + fn.jump), axis=(0, 1, 2))


def truncation_bias_bound(know: LeaderKnowledge, estimator: str, budget: int, n: int
                          ) -> np.ndarray:
    r"""``2 E[B(T_1) 1_E]``, shape ``[d]`` (module docstring): a bound on the change of the
    mean of a bc-hg-family estimate of ``n`` episodes at ``budget`` by the cap's
    truncation (event ``E``), with ``B(T) = T max|h| + T(T+1)/2 max|A_L| max|g| / tau``."""
    beta = know.beta
    d = know.dr.shape[-1]
    if crossing_probability(budget, beta, n) == 0.0:
        return np.zeros(d)
    crit = exact_critic(know)
    g, h = _step_functions(know, estimator == "bc-hg-baseline", crit.v)
    c1 = _step_max(h)
    c2 = (np.zeros_like(c1) if estimator == "naive"
          else np.max(np.abs(crit.advantage)) * _step_max(g) / know.tau)
    if beta == 0.0:
        t = np.ones(1)
        pmf = np.ones(1)
    else:
        t = np.arange(1, int(np.ceil(-800.0 / np.log(beta))) + 2, dtype=float)
        pmf = (1.0 - beta) * np.exp((t - 1.0) * np.log(beta))
    # Pr(n + t + sum_{i=2..n} T_i > budget | T_1 = t): the tail for n - 1 episodes
    rest = budget - 1 - t.astype(int)
    if n == 1:
        cond = (rest < 0).astype(float)
    else:
        k = rest - 2 * (n - 1)
        cond = np.where(k < 0, 1.0, betainc(np.maximum(k, 0) + 1, n - 1, beta)
                        if beta > 0 else 0.0)
    B = np.outer(t, c1) + np.outer(t * (t + 1) / 2, c2)  # [t, d]
    return 2.0 * (pmf * cond) @ B


# -- sobirl-simplified ------------------------------------------------------------------

def policy_term_weights(know: LeaderKnowledge) -> np.ndarray:
    r"""``kappa[s, a] = (w(s, a) - pi(a|s) sum_a' w(s, a')) / tau``, ``w = df_dpi * pi``: the
    SoBiRL policy term ``sum_{s,a} w dlogpi`` with ``dlogpi = (g - E_pi g) / tau`` equals
    ``sum_{s,a} kappa g`` (move the centring onto the weights); shape ``[S, A]``."""
    w = know.objective_terms.df_dpi * know.pi
    return (w - know.pi * w.sum(axis=1, keepdims=True)) / know.tau


def sobirl_simplified_moments(problem: BilevelProblem, x: object, budget: int | None = None,
                              *, know: LeaderKnowledge | None = None) -> EstimatorMoments:
    r"""Exact moments of ``sobirl-simplified`` (module docstring): mean ``[d]``,
    covariance ``[d, d]`` of the estimate from ``m = budget // (S A)`` generative-model
    draws per pair (``m = 1`` when ``budget`` is None),

    .. math:: E X = \partial_x f + \sum_{s,a} \kappa\, \bar g, \qquad
              \mathrm{Cov}\, X = \frac{\gamma^2}{m} \sum_{s,a} \kappa^2\,
              \mathrm{Cov}_{s'}\big(dlogP(s'|s,a) V(s')\big).
    """
    if know is None:
        know = leader_knowledge(problem, x)
    S, A = know.pi.shape
    d = know.dr.shape[-1]
    kappa = policy_term_weights(know)
    g, cov = know.dr, np.zeros((d, d))
    m = 1
    depends = problem.transitions.depends_on_x
    if budget is not None:
        if depends:
            check_budget(budget, S * A, "sobirl-simplified",
                         "one generative-model draw per pair", f"S*A = {S * A}")
            m = budget // (S * A)
        else:
            check_budget(budget, 1, "sobirl-simplified", "it draws nothing here")
    if depends:
        P = np.asarray(know.state.mdp.transitions)
        y = know.score * know.v[None, None, :, None]  # dlogP(s'|s, a) V(s'), [S, A, S, d]
        mean_y = np.einsum("sat,satk->sak", P, y)
        g = g + know.gamma * mean_y
        second = np.einsum("sa,sat,satk,satl->kl", kappa**2, P, y, y, optimize=True)
        cov = know.gamma**2 * (second - np.einsum("sa,sak,sal->kl", kappa**2, mean_y, mean_y))
        cov = 0.5 * (cov + cov.T) / m
    mean = know.objective_terms.direct + np.einsum("sa,sak->k", kappa, g)
    beta = know.beta
    return EstimatorMoments(estimator="sobirl-simplified", mean=mean, covariance=cov,
                            per_episode=budget is None, episodes=m, beta=beta,
                            expected_length=1.0 / (1.0 - beta),
                            expected_transitions=float(S * A * m) if depends else 0.0)


# -- zeroth-order -----------------------------------------------------------------------

@dataclass(frozen=True)
class ReturnMoments:
    """Mean ``F(x') = rho^T V_L + reg(x')`` and variance ``sigma^2`` of one episode's
    estimate of the leader's return at ``x'`` (what :func:`~.zeroth_order.zeroth_order`
    averages per evaluation)."""

    value: float
    variance: float


def return_moments(problem: BilevelProblem, state: FollowerState, beta: float
                   ) -> ReturnMoments:
    r"""Sobel's mean and variance of ``Y = sum_{t<T} (gamma_L/beta)^t r_L(s_t, a_t) +
    reg(x')`` over discount-terminated episodes (continuation ``beta``) under the
    follower's policy at ``state.x``:

    .. math:: M_Y = (I - \tfrac{\gamma_L^2}{\beta} P_\pi)^{-1} \textstyle\sum_a
              \pi\, r_L (2 Q_L - r_L), \qquad
              \sigma^2 = \rho^T M_Y - (\rho^T V_L)^2 .
    """
    lv = problem.objective.leader_values(problem, state)
    pi, gL = state.solution.policy, lv.gamma
    c = 0.0 if beta == 0.0 else (gL if gL == beta else gL * gL / beta)
    rhs = np.sum(pi * lv.reward * (2.0 * lv.q - lv.reward), axis=1)
    if c == 0.0:
        m_y = rhs
    elif c == problem.gamma:
        m_y = state.factorization.solve(rhs)
    else:
        m_y = factorize(state.mdp.P_pi(pi), c).solve(rhs)
    rho = np.asarray(problem.initial, dtype=float)
    mean = float(rho @ lv.v)
    reg = problem.objective.regularizer
    value = mean + (0.0 if reg is None else float(reg(state.x)[0]))
    return ReturnMoments(value=value, variance=max(float(rho @ m_y) - mean * mean, 0.0))


def _conditional_terms(problem: BilevelProblem, x: np.ndarray, directions: np.ndarray,
                       smoothing: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``D_j = F(x + mu u_j) - F(x - mu u_j)`` and ``V_j = sigma^2(x + mu u_j) +
    sigma^2(x - mu u_j)`` for the rows ``u_j`` of ``directions[M, d]``."""
    D, V = np.empty(len(directions)), np.empty(len(directions))
    for j, u in enumerate(directions):
        plus = return_moments(problem, problem.follower_state(x + smoothing * u), beta)
        minus = return_moments(problem, problem.follower_state(x - smoothing * u), beta)
        D[j], V[j] = plus.value - minus.value, plus.variance + minus.variance
    return D, V


def _zo_plan(know: LeaderKnowledge, budget: int | None, directions: int
             ) -> tuple[int, float]:
    """Episodes ``n`` per evaluation and the cap's crossing probability."""
    if budget is None:
        return 1, 0.0
    n = episodes_for_budget(budget, know.beta, groups=2 * directions,
                            estimator="zeroth-order")
    return n, crossing_probability(budget, know.beta, n, groups=2 * directions)


def _zo_result(know: LeaderKnowledge, mean: np.ndarray, cov: np.ndarray, budget: int | None,
               n: int, p: float, directions: int) -> EstimatorMoments:
    beta = know.beta
    length = 1.0 / (1.0 - beta)
    return EstimatorMoments(estimator="zeroth-order", mean=mean, covariance=0.5 * (cov + cov.T),
                            per_episode=budget is None, episodes=n, beta=beta,
                            expected_length=length,
                            expected_transitions=2 * directions * n * (1.0 + length),
                            truncation_probability=p)


def hermite_grid(d: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for ``u ~ N(0, I_d)``: nodes ``[order^d, d]``, weights
    ``[order^d]`` (summing to 1) and the index of each node's mirror ``-u``."""
    if order ** d > 100_000:
        raise ValueError(f"order = {order}: order^d = {order ** d} quadrature nodes "
                         f"(d = {d}) exceed 1e5")
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    weights = weights / np.sqrt(2 * np.pi)
    idx = np.indices((order,) * d).reshape(d, -1).T  # [order^d, d]
    mirror = np.ravel_multi_index(tuple((order - 1 - idx).T), (order,) * d)
    return nodes[idx], np.prod(weights[idx], axis=1), mirror


def zeroth_order_moments(problem: BilevelProblem, x: object, budget: int | None = None, *,
                         directions: np.ndarray | None = None, order: int = ZO_ORDER,
                         know: LeaderKnowledge | None = None) -> EstimatorMoments:
    r"""Exact moments of ``zeroth-order`` (module docstring), ``mean[d]``,
    ``covariance[d, d]``.

    With ``directions[M, d]`` given: the moments *given* those directions (exact; ``M``
    may differ from the estimator's default). Without: over ``u ~ N(0, I_d)`` with
    :data:`ZO_DIRECTIONS` directions, by Gauss-Hermite quadrature with ``order`` nodes per
    coordinate (``order^d <= 1e5``; one follower solve per node),

    .. math:: E X = E_u\Big[\frac{D(u)}{2\mu} u\Big], \qquad
              \mathrm{Cov}\,X = \frac{1}{M}\Big(E_u\Big[\frac{D(u)^2 + (\sigma_+^2 +
              \sigma_-^2)/n}{4\mu^2}\, u u^T\Big] - E X\, E X^T\Big).

    Radius ``mu`` = :data:`ZO_SMOOTHING` (the estimator's default).
    """
    if know is None:
        know = leader_knowledge(problem, x)
    require_leader_return(know, "zeroth-order")
    x = know.state.x
    mu, beta = ZO_SMOOTHING, know.beta
    if directions is not None:
        U = np.asarray(directions, dtype=float)
        if U.ndim != 2 or U.shape[1] != x.size or U.shape[0] < 1 or not np.all(np.isfinite(U)):
            raise ValueError(f"directions: must be a finite [M, {x.size}] array with M >= 1")
        M = U.shape[0]
        n, p = _zo_plan(know, budget, M)
        D, V = _conditional_terms(problem, x, U, mu, beta)
        mean = (D / (2 * mu)) @ U / M
        cov = np.einsum("j,jk,jl->kl", V / (4 * mu * mu * n), U, U) / (M * M)
        return _zo_result(know, mean, cov, budget, n, p, M)
    M = ZO_DIRECTIONS
    n, p = _zo_plan(know, budget, M)
    nodes, w, mirror = hermite_grid(x.size, order)
    F, sig2 = np.empty(len(w)), np.empty(len(w))
    for i, u in enumerate(nodes):
        r = return_moments(problem, problem.follower_state(x + mu * u), beta)
        F[i], sig2[i] = r.value, r.variance
    D, V = F - F[mirror], sig2 + sig2[mirror]
    mean = (w * D / (2 * mu)) @ nodes
    second = np.einsum("i,ik,il->kl", w * (D * D + V / n) / (4 * mu * mu), nodes, nodes)
    cov = (second - np.outer(mean, mean)) / M
    return _zo_result(know, mean, cov, budget, n, p, M)


#: Named parts of the right-hand side of the ``M_UU`` system (see :func:`_episode_moments`).
UU_TERMS = ("ee", "eu", "ez", "uz", "zz")


def _episode_moments(know: LeaderKnowledge, estimator: str, drop: tuple[str, ...] = ()
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``m_U[S, d]`` and ``M_UU[S, d, d]`` of the module docstring (``U`` excludes the
    regulariser). The right-hand side of ``M_UU`` is the sum of the :data:`UU_TERMS`:
    ``ee = E[e e^T]``, ``eu = gamma_L sym E[e m_U'^T]``, ``ez = gamma sym E[c e m_Z'^T]``
    (the step against the continuing product), ``uz = (gamma gamma_L/beta) E[c (M_UZ' +
    M_UZ'^T)]`` (the continuing sums against the continuing product) and ``zz =
    (gamma^2/beta) E[c^2 M_ZZ']``; ``drop`` leaves some out (wrong variants for the tests'
    power checks only)."""
    gamma, gL, tau = know.gamma, know.gamma_leader, know.tau
    _, c_zz, c_uz, c_uu = _discounts(gamma, gL)
    chain, solve = _Chain(know), _Solver(know)
    crit = exact_critic(know)
    g, h = _step_functions(know, estimator == "bc-hg-baseline", crit.v)
    if estimator == "naive":
        ct = np.zeros_like(know.pi)
        e = h
    else:
        ct = crit.advantage / tau
        e = h.scaled_add(ct, g)
    # first moments
    m_z = solve(gamma, chain.mean(g))
    m_u = solve(gL, chain.mean(e) + gamma * chain.avg(chain.next(m_z), ct))
    # second moments
    m_zz = solve(c_zz, chain.outer(g, g) + gamma * _sym(chain.with_next(g, m_z)))
    next_zz = chain.next(m_zz)  # (P M_ZZ)[s, a], used twice
    m_uz = solve(c_uz, chain.outer(e, g) + gamma * chain.with_next(e, m_z)
                 + gL * np.swapaxes(chain.with_next(g, m_u), -1, -2)
                 + gamma * np.swapaxes(chain.with_next(g, m_z, ct), -1, -2)
                 + c_zz * chain.avg(next_zz, ct))
    terms = {"ee": lambda: chain.outer(e, e),
             "eu": lambda: gL * _sym(chain.with_next(e, m_u)),
             "ez": lambda: gamma * _sym(chain.with_next(e, m_z, ct)),
             "uz": lambda: c_uz * chain.avg(chain.next(_sym(m_uz)), ct),
             "zz": lambda: c_zz * chain.avg(next_zz, ct * ct)}
    rhs = sum(terms[k]() for k in UU_TERMS if k not in drop)
    return m_u, solve(c_uu, rhs)
