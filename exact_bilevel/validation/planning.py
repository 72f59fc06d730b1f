r"""How many transitions and replicates does a test need to see a bias? (issue 25, item 4)

**Relative bias.** An estimator has relative bias ``B`` at ``x`` when its mean is off
the exact hypergradient ``g[d]`` by a vector of Euclidean length ``B |g|``:
``E X = g + b``, ``|b|_2 = B |g|_2``. A researcher asking "would my test see a 5% bias?"
rarely knows the bias's direction, so the default plan is for the *worst* direction —
the one the test sees least, the top eigenvector of the exact covariance ``Sigma`` —
and its power is a guarantee for every bias of that size: ``b^T Sigma^+ b >= |b|^2 /
lambda_max``. ``direction="gradient"`` plans for a bias along ``g`` (a scale error,
``E X = (1 + B) g``); an array gives any other direction.

**Power of the exact-covariance test.** :func:`~.acceptance.known_covariance_test`
rejects when ``T = R (Xbar - g)^T Sigma_N^+ (Xbar - g) > chi2_r^{-1}(1 - alpha)`` with
``Sigma_N`` the exact covariance of one estimate at budget ``N`` (``r`` its rank), i.e.
``Sigma_1 / n`` with ``Sigma_1`` that of one episode and ``n =
episodes_for_budget(N, beta)`` episodes per estimate
(:func:`~exact_bilevel.estimators.moments`). With ``E X = g + b``, ``T`` is noncentral
chi-square (Gaussian mean of the ``R n`` episodes, the same approximation as the
test's own law),

.. math:: T \sim \chi^2_r(\delta), \qquad \delta = R\, n\, b^T \Sigma_1^+ b,

so the power is ``P(chi2_r(delta) > chi2_r^{-1}(1 - alpha))`` (``scipy.stats.ncx2``),
for the alternative "mean ``g + b``, the reference's covariance" (a bias on top of the
reference's noise; an estimator with other noise has another power:
:func:`known_covariance_power_under`),
and a bias with a component in the null space of ``Sigma`` is rejected outright
(power 1). The plan at each budget is the smallest ``R`` whose power reaches the
target (at least 2, as the tests take, and at least :data:`MIN_TOTAL_EPISODES` episodes
in all, below which the Gaussian law of the mean is not to be trusted; the power is
then above the target); only ``R n`` matters, so the cheapest budget is
the one that wastes least to rounding ``R`` up.

**The sample-covariance test** (:func:`~.acceptance.unbiasedness_test`, Hotelling
``T^2`` when ``R > 2 d``) has, for Gaussian estimates with covariance ``Sigma_N``,
``(R - d) / (d (R - 1)) T^2 ~ F(d, R - d; delta)`` noncentral (``scipy.stats.ncf``),
so its power is known too; it needs more replicates than the exact test (it pays for
estimating ``Sigma``) and at least ``2 d + 1``. This is the *best case* for it: in the
rare-event regime the replicates are far from Gaussian, the sample covariance misses
the rare events, and the test is miscalibrated (issue 25); the plan states the rarest
pair's expected visits in all the planned transitions (below
:data:`~.convergence.MIN_EXPECTED_VISITS` the chi-square law of either test is in
doubt).

``verification/planner_power.py`` checks the predicted power against the simulated
power of the real test on the BC-HG mutants (whose exact bias is
:func:`~.mutants.mutant_mean`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.stats

from ..core import _validate
from ..core.hypergradient import hypergradient
from ..core.problem import BilevelProblem
from ..estimators._common import (
    TRUNCATION_PROBABILITY,
    episodes_for_budget,
    leader_knowledge,
)
from ..estimators.moments import moments
from .acceptance import EXACT_RTOL, _alpha, covariance_spectrum
from .convergence import MIN_EXPECTED_VISITS, rare_event_diagnostic

#: Budgets of the plan when none are given (those an estimator can use).
DEFAULT_BUDGETS = (1000, 4000, 16000, 64000, 256000)
#: The fewest replicates a plan asks for (the acceptance tests take at least 2).
MIN_REPLICATES = 2
#: The fewest episodes a plan averages in all (``R n``): the chi-square law of the test
#: rests on the mean of the ``R n`` episodes being near-Gaussian, which a handful of
#: episodes is not (a large bias would otherwise be "detected" by 2 or 3 episodes).
MIN_TOTAL_EPISODES = 100
#: The most replicates a plan searches; beyond it the row says "not reachable".
MAX_REPLICATES = 10**8


def known_covariance_power(noncentrality: float, rank: int, alpha: float) -> float:
    r"""Power of the exact-covariance chi-square test: ``P(chi2_r(delta) >
    chi2_r^{-1}(1 - alpha))`` for noncentrality ``delta >= 0`` (``inf``: 1) and rank
    ``r`` (``r = 0``: the bias lies in the null space, power 1 if ``delta > 0``)."""
    alpha = _alpha(alpha)
    if not noncentrality >= 0.0:
        raise ValueError(f"noncentrality = {noncentrality}: must be >= 0")
    if math.isinf(noncentrality) or rank == 0:
        return 1.0 if noncentrality > 0 or math.isinf(noncentrality) else alpha
    crit = float(scipy.stats.chi2.isf(alpha, rank))
    if noncentrality == 0.0:
        return float(scipy.stats.chi2.sf(crit, rank))
    return float(scipy.stats.ncx2.sf(crit, rank, noncentrality))


def hotelling_power(noncentrality: float, dim: int, replicates: int, alpha: float) -> float:
    r"""Power of Hotelling's ``T^2`` test with ``R`` Gaussian replicates in dimension
    ``d < R``: ``P(F(d, R - d; delta) > F_{d, R-d}^{-1}(1 - alpha))``, ``delta = R b^T
    Sigma^{-1} b`` the noncentrality of the mean of the ``R`` replicates."""
    alpha = _alpha(alpha)
    if replicates <= dim:
        raise ValueError(f"replicates = {replicates}: Hotelling needs more than d = {dim}")
    if math.isinf(noncentrality):
        return 1.0
    crit = float(scipy.stats.f.isf(alpha, dim, replicates - dim))
    if noncentrality == 0.0:
        return float(scipy.stats.f.sf(crit, dim, replicates - dim))
    return float(scipy.stats.ncf.sf(crit, dim, replicates - dim, noncentrality))


def quadratic_form_sf(threshold: float, weights: object, noncentralities: object) -> float:
    r"""``P(sum_i w_i chi2_1(nc_i) > threshold)`` for weights ``w_i > 0`` and
    noncentralities ``nc_i >= 0`` (``[k]`` each): Imhof's (1961) inversion of the
    characteristic function,

    .. math:: P(Q > x) = \tfrac12 + \frac1\pi \int_0^\infty
              \frac{\sin\theta(u)}{u\,\rho(u)}\,du,\quad
              \theta = \tfrac12 \sum_i \Big(\arctan w_i u + \frac{nc_i w_i u}{1 + w_i^2
              u^2}\Big) - \tfrac12 x u,\quad
              \rho = \prod_i (1 + w_i^2 u^2)^{1/4}
              \exp\Big(\tfrac12 \sum_i \frac{nc_i w_i^2 u^2}{1 + w_i^2 u^2}\Big),

    by adaptive quadrature (``scipy.integrate.quad``; ``ValueError`` if its error
    estimate exceeds 1e-4 in probability) for three or more terms; one term in closed
    form, two by conditioning on the first (a smooth integral on a finite range), where
    Imhof's integrand decays too slowly. The tests find it within 1e-7 of ``ncx2`` (all
    ``w_i = 1``, where it is
    the noncentral chi-square's tail) and within Monte Carlo error otherwise."""
    import scipy.integrate

    w = np.asarray(weights, dtype=float)
    nc = np.asarray(noncentralities, dtype=float)
    if w.size == 0:
        return 1.0 if threshold < 0 else 0.0
    if w.size == 1:  # closed form (Imhof's integrand decays too slowly for quadrature)
        return _chi2_1_sf(threshold / w[0], nc[0])
    if w.size == 2:  # condition on the first term: one smooth integral on a finite range
        return _two_term_sf(threshold, w, nc)

    def integrand(u: float) -> float:
        wu = w * u
        theta = 0.5 * np.sum(np.arctan(wu) + nc * wu / (1.0 + wu * wu)) - 0.5 * threshold * u
        log_rho = np.sum(0.25 * np.log1p(wu * wu) + 0.5 * nc * wu * wu / (1.0 + wu * wu))
        return float(np.sin(theta) / (u * np.exp(log_rho)))

    with warnings.catch_warnings():  # QUADPACK's estimate is conservative here: checked
        warnings.simplefilter("ignore", scipy.integrate.IntegrationWarning)
        val, err = scipy.integrate.quad(integrand, 0.0, np.inf, limit=1000, epsabs=1e-8)
    if not err <= 1e-4 * np.pi:
        raise ValueError(f"quadratic_form_sf: quadrature error {err / np.pi:.3g} above 1e-4")
    return float(min(1.0, max(0.0, 0.5 + val / np.pi)))


def _chi2_1_sf(x: float, nc: float) -> float:
    """``P(chi2_1(nc) > x)``."""
    if x <= 0.0:
        return 1.0
    return float(scipy.stats.ncx2.sf(x, 1, nc) if nc > 0 else scipy.stats.chi2.sf(x, 1))


def _two_term_sf(threshold: float, w: np.ndarray, nc: np.ndarray) -> float:
    """``P(w_1 (y_1 + m_1)^2 + w_2 (y_2 + m_2)^2 > x)``, ``m_i = sqrt(nc_i)``: with ``t =
    y_1 + m_1`` the event is certain for ``|t| >= r = sqrt(x / w_1)``, else it is the
    one-term tail at ``(x - w_1 t^2) / w_2``; integrated against ``phi(t - m_1)``."""
    import scipy.integrate

    if threshold <= 0.0:
        return 1.0
    m1, r = math.sqrt(nc[0]), math.sqrt(threshold / w[0])
    outside = float(scipy.stats.norm.sf(r - m1) + scipy.stats.norm.cdf(-r - m1))
    inside, err = scipy.integrate.quad(
        lambda t: scipy.stats.norm.pdf(t - m1) * _chi2_1_sf((threshold - w[0] * t * t) / w[1],
                                                            nc[1]),
        -r, r, epsabs=1e-12, epsrel=1e-10, limit=200, points=[m1] if -r < m1 < r else None)
    if not err <= 1e-8:
        raise ValueError(f"quadratic_form_sf: quadrature error {err:.3g} above 1e-8")
    return float(min(1.0, outside + inside))


def known_covariance_power_under(covariance: object, b: object, true_covariance: object,
                                 replicates: int, alpha: float) -> float:
    r"""Power of the exact-covariance test that assumes ``covariance[d, d]`` (``Sigma``,
    one estimate) against estimates with mean ``g + b`` and a *different* covariance
    ``true_covariance[d, d]`` (``Sigma_t``, positive definite), Gaussian mean of ``R``
    replicates: ``T = R (b + e)^T Sigma^+ (b + e)``, ``e ~ N(0, Sigma_t / R)``, is
    ``sum_i w_i chi2_1(mu_i^2)`` with ``w`` the eigenvalues of ``K = Sigma_t^{1/2}
    Sigma^+ Sigma_t^{1/2} = Q diag(w) Q^T`` and ``mu = Q^T sqrt(R) Sigma_t^{-1/2} b``
    (:func:`quadratic_form_sf`). With ``Sigma_t = Sigma`` it is
    :func:`known_covariance_power` at ``delta = R b^T Sigma^+ b``. An estimator noisier
    than ``Sigma`` is rejected more often than the plan says, a quieter one (at small
    ``delta``) less often."""
    alpha = _alpha(alpha)
    S = np.asarray(covariance, dtype=float)
    bv = np.asarray(b, dtype=float)
    lam, V, keep = covariance_spectrum(S)
    rank = int(np.count_nonzero(keep))
    lt, Vt, keep_t = covariance_spectrum(true_covariance)
    if not np.all(keep_t):
        raise ValueError("true_covariance: must be positive definite")
    root = (Vt * np.sqrt(lt)) @ Vt.T                   # Sigma_t^{1/2}
    pinv_half = V[:, keep] / np.sqrt(lam[keep])        # Sigma^+ = pinv_half pinv_half^T
    w, Q = np.linalg.eigh((root @ pinv_half) @ (root @ pinv_half).T)
    nu = np.sqrt(replicates) * (Vt @ ((Vt.T @ bv) / np.sqrt(lt)))  # sqrt(R) Sigma_t^{-1/2} b
    mu = Q.T @ nu
    pos = w > 1e-12 * w.max(initial=0.0)
    crit = float(scipy.stats.chi2.isf(alpha, rank))
    return quadratic_form_sf(crit, w[pos], mu[pos] ** 2)


def needed_noncentrality(power: float, rank: int, alpha: float) -> float:
    """The ``delta`` at which :func:`known_covariance_power` equals ``power`` (``> alpha``);
    0 when ``power <= alpha`` (a test that rejects with probability ``alpha`` anyway)."""
    if rank == 0 or power <= alpha:
        return 0.0
    hi = 1.0
    while known_covariance_power(hi, rank, alpha) < power:
        hi *= 2.0
    return float(scipy.optimize.brentq(
        lambda d: known_covariance_power(d, rank, alpha) - power, 0.0, hi, xtol=1e-12,
        rtol=1e-12))


def bias_vector(covariance: np.ndarray, exact: np.ndarray, bias: float,
                direction: object = "worst") -> np.ndarray:
    """``b[d]`` of length ``bias |g|``: along the top eigenvector of ``covariance[d,
    d]`` (``"worst"``), along ``exact = g[d]`` (``"gradient"``), or along a given
    ``[d]`` vector."""
    g = np.asarray(exact, dtype=float)
    size = bias * float(np.linalg.norm(g))
    if isinstance(direction, str):
        if direction == "worst":
            lam, V, _ = covariance_spectrum(covariance)
            return size * V[:, int(np.argmax(lam))]
        if direction == "gradient":
            return size * g / float(np.linalg.norm(g))
        raise ValueError(f"direction = {direction!r}: 'worst', 'gradient' or a vector [d]")
    u = _validate.real_array("direction", direction, shape=g.shape)
    norm = float(np.linalg.norm(u))
    if norm == 0.0:
        raise ValueError("direction: must be a non-zero vector")
    return size * u / norm


def noncentrality(covariance: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """``(b^T Sigma^+ b, rank)`` on the range of ``covariance[d, d]`` as the exact test
    cuts it (:func:`~.acceptance.covariance_spectrum`); ``inf`` when ``b`` has a
    component in the null space beyond ``1e-12 |b|`` (the test rejects it outright)."""
    lam, V, keep = covariance_spectrum(covariance)
    proj = V.T @ b
    rank = int(np.count_nonzero(keep))
    if np.any(np.abs(proj[~keep]) > EXACT_RTOL * float(np.linalg.norm(b))):
        return math.inf, rank
    return float(np.sum(proj[keep] ** 2 / lam[keep])), rank


@dataclass(frozen=True)
class PlanRow:
    """One budget of a :class:`SamplePlan`: ``replicates`` (``None``: beyond
    :data:`MAX_REPLICATES`) estimates of ``budget`` transitions each (``episodes``
    episodes), their ``power`` and ``total = replicates * budget`` transitions; the same
    for the sample-covariance (Hotelling) test."""

    budget: int
    episodes: int
    replicates: int | None
    power: float | None
    total: int | None
    sample_replicates: int | None
    sample_power: float | None
    sample_total: int | None


@dataclass(frozen=True)
class SamplePlan:
    """The plan of :func:`plan_sample_size` (see the module docstring).

    ``bias_vector[d]`` the planned bias ``b``; ``noncentrality_per_episode = b^T
    Sigma_1^+ b``; ``needed_noncentrality`` the ``delta`` giving the target power;
    ``estimator_bias`` the estimator's own exact relative bias ``|E X - g| / |g|`` (0
    for bc-hg; the tests reject ``naive`` for it); ``rarest_visits`` the expected visits
    of the least likely ``(s, a)`` in the cheapest plan's transitions."""

    estimator: str
    bias: float
    direction: str
    power: float
    alpha: float
    dimension: int
    rank: int
    gradient_norm: float
    bias_vector: np.ndarray
    noncentrality_per_episode: float
    needed_noncentrality: float
    estimator_bias: float
    rows: tuple[PlanRow, ...]
    rarest_visits: float

    @property
    def cheapest(self) -> PlanRow | None:
        """The row with the fewest total transitions for the exact-covariance test."""
        ok = [r for r in self.rows if r.total is not None]
        return min(ok, key=lambda r: (r.total, r.budget)) if ok else None

    @property
    def cheapest_sample(self) -> PlanRow | None:
        """The same for the sample-covariance (Hotelling) test."""
        ok = [r for r in self.rows if r.sample_total is not None]
        return min(ok, key=lambda r: (r.sample_total, r.budget)) if ok else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``None`` for what is not reachable)."""
        best, best_s = self.cheapest, self.cheapest_sample
        return {"estimator": self.estimator, "bias": self.bias, "direction": self.direction,
                "power": self.power, "alpha": self.alpha, "dimension": self.dimension,
                "rank": self.rank, "gradient_norm": self.gradient_norm,
                "bias_vector": self.bias_vector.tolist(),
                "noncentrality_per_episode": _finite(self.noncentrality_per_episode),
                "needed_noncentrality": self.needed_noncentrality,
                "estimator_bias": self.estimator_bias,
                "rows": [r.__dict__ for r in self.rows],
                "cheapest": None if best is None else best.__dict__,
                "cheapest_sample_covariance": None if best_s is None else best_s.__dict__,
                "rarest_visits": _finite(self.rarest_visits),
                "rare_event_regime": self.rarest_visits < MIN_EXPECTED_VISITS}

    def table(self) -> str:
        """A plain-text table over the budgets and the cheapest totals."""
        def n(v: object) -> str:
            return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else f"{v}")
        lines = [f"{'budget N':>10} {'episodes':>9} {'R (exact cov.)':>15} {'power':>7} "
                 f"{'R x N':>12} {'R (sample cov.)':>16} {'power':>7} {'R x N':>12}"]
        for r in self.rows:
            lines.append(f"{r.budget:>10} {r.episodes:>9} {n(r.replicates):>15} "
                         f"{n(r.power):>7} {n(r.total):>12} {n(r.sample_replicates):>16} "
                         f"{n(r.sample_power):>7} {n(r.sample_total):>12}")
        return "\n".join(lines)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _check_scalars(bias: object, power: object, alpha: object) -> tuple[float, float, float]:
    b = _validate.real_scalar("bias", bias)
    if not 0.0 < b < math.inf:
        raise ValueError(f"bias = {b}: must be a finite number > 0 (the relative size "
                         "|E X - g| / |g| of the bias to detect)")
    p = _validate.real_scalar("power", power)
    if not 0.0 < p < 1.0:
        raise ValueError(f"power = {p}: must satisfy 0 < power < 1")
    a = _alpha(alpha)
    if not p > a:
        raise ValueError(f"power = {p}: must exceed alpha = {a} (the test rejects with "
                         "probability alpha when there is no bias at all)")
    return b, p, a


def _smallest_replicates(ok: Any, lo: int) -> int | None:
    """The smallest ``R >= lo`` with ``ok(R)`` (``ok`` monotone), ``None`` beyond
    :data:`MAX_REPLICATES`."""
    if ok(lo):
        return lo
    hi = lo
    while not ok(hi):
        if hi >= MAX_REPLICATES:
            return None
        lo, hi = hi, min(2 * hi, MAX_REPLICATES)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def truncation_probability(budget: int, episodes: int, beta: float) -> float:
    """Probability that ``episodes`` discount-terminated episodes (continuation ``beta``)
    cost more than ``budget`` transitions, ``P(2 n + NB(n, 1 - beta) > N)`` (one reset and
    ``T_i >= 1`` steps each; ``T_i - 1`` geometric failures): the event in which the hard
    budget cap truncates the batch and the exact moments no longer apply."""
    if beta == 0.0:
        return 0.0 if 2 * episodes <= budget else 1.0
    return float(scipy.stats.nbinom.sf(budget - 2 * episodes, episodes, 1.0 - beta))


def _check_untruncated(budget: int, n: int, beta: float) -> None:
    """``ValueError`` naming the budget when its batch is truncated with probability above
    :data:`~exact_bilevel.estimators._common.TRUNCATION_PROBABILITY` (budgets too small for
    one episode to fit that reliably): the exact covariance would not be that of the
    estimates."""
    p = truncation_probability(budget, n, beta)
    if p <= 2 * TRUNCATION_PROBABILITY:  # the planning rule's own tolerance, with margin
        return
    low = budget
    while truncation_probability(low, 1, beta) > TRUNCATION_PROBABILITY:
        low *= 2
    raise ValueError(f"budget = {budget}: its batch of {n} episode(s) is truncated by the "
                     f"budget cap with probability {p:.3g}, so the exact covariance does not "
                     f"describe it; plan with budgets of at least ~{low} transitions")


def _row(budget: int, n: int, delta1: float, rank: int, dim: int, power: float,
         alpha: float, need: float) -> PlanRow:
    per = n * delta1  # noncentrality of one estimate
    if math.isinf(per) or need == 0.0:
        R: int | None = MIN_REPLICATES
    elif per == 0.0:
        R = None
    else:
        R = _smallest_replicates(lambda r: known_covariance_power(r * per, rank, alpha)
                                 >= power, max(MIN_REPLICATES, int(need / per * (1 - 1e-9))))
    if R is not None:
        R = max(R, -(-MIN_TOTAL_EPISODES // n))
    pw = None if R is None else known_covariance_power(R * per, rank, alpha)
    if per == 0.0 or rank < dim:  # Hotelling needs a non-singular covariance
        Rs = None
    else:
        Rs = _smallest_replicates(lambda r: hotelling_power(r * per, dim, r, alpha) >= power,
                                  2 * dim + 1)
    ps = None if Rs is None else hotelling_power(Rs * per, dim, Rs, alpha)
    return PlanRow(budget, n, R, pw, None if R is None else R * budget, Rs, ps,
                   None if Rs is None else Rs * budget)


def plan_sample_size(problem: BilevelProblem, x: object, estimator: str, bias: float, *,
                     power: float = 0.9, alpha: float = 0.01,
                     budgets: tuple[int, ...] | list[int] | None = None,
                     direction: object = "worst") -> SamplePlan:
    r"""Transitions per replicate ``N`` x replicates ``R`` for the exact-covariance test
    (and the sample-covariance test) to detect a relative bias ``bias`` of ``estimator``
    with probability ``power`` at level ``alpha``.

    Parameters
    ----------
    problem : BilevelProblem
        With a leader-return objective (as :func:`~exact_bilevel.estimators.moments`).
    x : array_like, shape (d,)
    estimator : str
        One whose exact covariance is known: ``bc-hg``, ``bc-hg-baseline``, ``naive``
        (exact critic); others raise ``ValueError`` with the reason.
    bias : float
        ``B > 0``: detect ``E X = g + b`` with ``|b|_2 = B |g|_2`` (module docstring).
    power, alpha : float
        Target power and false-alarm rate, ``0 < alpha < power < 1``.
    budgets : sequence of int, optional
        Budgets ``N`` (transitions per estimate) to tabulate; default
        :data:`DEFAULT_BUDGETS` (those the estimator can use).
    direction : {"worst", "gradient"} or array_like, shape (d,)
        Direction of ``b``: the least detectable one (a guarantee for any direction),
        along ``g``, or given.

    Returns
    -------
    SamplePlan
        One row per budget; ``.cheapest`` the smallest ``R N`` (the exact test),
        ``.cheapest_sample`` the same for the sample-covariance test.
    """
    B, p, a = _check_scalars(bias, power, alpha)
    x = _validate.parameter_vector("x", x, problem.n_params)
    know = leader_knowledge(problem, x)
    one = moments(problem, x, estimator, know=know)  # checks the estimator, per episode
    g = hypergradient(problem, x).gradient
    gnorm = float(np.linalg.norm(g))
    if gnorm == 0.0:
        raise ValueError("x: the exact hypergradient is zero here, so a bias relative to "
                         "|g| is undefined")
    b = bias_vector(one.covariance, g, B, direction)
    delta1, rank = noncentrality(one.covariance, b)
    need = needed_noncentrality(p, rank, a)
    given = budgets is not None
    rows = []
    for i, N in enumerate(DEFAULT_BUDGETS if budgets is None else budgets):
        if given and (isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1):
            raise ValueError(f"budgets[{i}] = {N!r}: must be a positive integer")
        try:
            n = episodes_for_budget(int(N), one.beta, estimator=estimator)
            _check_untruncated(int(N), n, one.beta)
        except ValueError:
            if given:
                raise
            continue  # a default budget too small for this problem
        rows.append(_row(int(N), n, delta1, rank, g.size, p, a, need))
    if not rows:
        raise ValueError(f"budgets: none of {list(DEFAULT_BUDGETS)} fits one episode of "
                         f"{estimator}; give larger ones")
    est_bias = float(np.linalg.norm(one.mean - g) / gnorm)
    plan = SamplePlan(estimator, B, direction if isinstance(direction, str) else "given",
                      p, a, g.size, rank, gnorm, b, delta1, need, est_bias, tuple(rows),
                      math.inf)
    best = plan.cheapest
    visits = (rare_event_diagnostic(know, best.total)[0] if best is not None else math.inf)
    return SamplePlan(**{**plan.__dict__, "rarest_visits": visits})
