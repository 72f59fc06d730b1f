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
``Sigma_1 / n`` with ``Sigma_1`` that of one episode and ``n`` the episodes per estimate
(``episodes_for_budget(N, beta)``; for ``sobirl-simplified`` the draws per pair), both
from :func:`~exact_bilevel.estimators.moments` (``zeroth-order`` is refused: its
covariance at a budget is not ``Sigma_1 / n``). With ``E X = g + b``, ``T`` is noncentral
chi-square (Gaussian mean of the ``R n`` episodes, the same approximation as the
test's own law),

.. math:: T \sim \chi^2_r(\delta), \qquad \delta = R\, n\, b^T \Sigma_1^+ b,

so the power is ``P(chi2_r(delta) > chi2_r^{-1}(1 - alpha))`` (``scipy.stats.ncx2``),
for the *pure shift* "mean ``g + b``, the reference's covariance" (a bias on top of the
reference's noise), and a bias with a component in the null space of ``Sigma`` is rejected outright
(power 1).

**Plans for the verdict rule.** ``exact-bilevel check``, the battery and the sweep
reports decide by :func:`~.convergence.known_covariance_verdict`: where the ``R x N``
transitions put the problem in the *regular* regime (the rarest on-policy pair expected
at least :data:`~.convergence.MIN_EXPECTED_VISITS` times in all of them,
:func:`~.convergence.rare_event_diagnostic`) the chi-square test decides; in the
*rare-event* regime a FAIL needs the distribution-free Chebyshev test too, ``T >= r /
alpha`` (:func:`~.acceptance.chebyshev_test`; above the chi-square's threshold, so it
alone decides a FAIL), and a chi-square-only rejection is INCONCLUSIVE. So the power
of a FAIL verdict at ``(N, R)`` is ``P(T > chi2_r^{-1}(1 - alpha))`` in the regular regime
and ``P(T >= r / alpha)`` (:func:`chebyshev_power`: ``ncx2.sf(r / alpha, r, delta)``; with an
alternative, Imhof at that threshold, :func:`chebyshev_form`) in the rare-event regime,
under the same law of ``T``. The regime depends on ``R N`` (more transitions, more
expected visits: regular from :func:`regular_replicates` on), so the plan at each budget
is :func:`verdict_replicates`, ``min(R_cheb, max(R_reg, R_chi2))``: both powers are
non-decreasing in ``R`` and the Chebyshev one is the smaller, so the ``R`` reaching the
target form an upward-closed set although the power jumps up at ``R_reg`` (tested
against a scan). At least 2 replicates (as the tests take) and at least
:data:`MIN_TOTAL_EPISODES` episodes in all (below which the Gaussian law of the mean is
not to be trusted; the power is then above the target). Each row states its ``regime``
and keeps the chi-square-only plan beside it (``chi2_replicates``: with that many
replicates the verdict is *not a pass* with the target probability — FAIL, or
INCONCLUSIVE in the rare-event regime). Where the rule's plan is rare-event it needs
the ratio of the two needed noncentralities in transitions: for the pure shift at
``alpha = 0.01``, 13.6x (power 0.9) to 24x (power 0.5) at ``r = 2``, 25x to 45x at ``r
= 5``. The cheapest budget is the one with the fewest ``R N``.

**The alternative.** A bug that also changes the noise is rejected with another
probability (``tau-not-inverse`` scales the indirect term's noise by ``tau^2``: the pure
shift's power is then off by up to 0.2 on the shipped mutants). ``alternative=`` plans
against a law with its own covariance ``Sigma_a`` (a mutant's exact mean and covariance,
:func:`~.mutant_moments.mutant_moments`, or a given covariance and mean): ``T`` is then
a weighted sum of noncentral ``chi2_1`` (:func:`quadratic_form`), its tail Imhof's
integral (:func:`quadratic_form_sf`), at ``k = R n`` averaged episodes; the
sample-covariance column uses ``Sigma_a`` too (docs/math.md, section 10.5).

**The sample-covariance test** (:func:`~.acceptance.unbiasedness_test`, Hotelling
``T^2`` when ``R > 2 d``) has, for Gaussian estimates with covariance ``Sigma_N``,
``(R - d) / (d (R - 1)) T^2 ~ F(d, R - d; delta)`` noncentral (``scipy.stats.ncf``),
so its power is known too; it needs more replicates than the exact test (it pays for
estimating ``Sigma``) and at least ``2 d + 1``. This is the *best case* for it: in the
rare-event regime the replicates are far from Gaussian, the sample covariance misses
the rare events, and the test is miscalibrated (issue 25), so its column, often below
the rule's there, is no recommendation.

``verification/planner_power.py`` checks the predicted FAIL power against the simulated
FAIL rate of the real rule on the BC-HG mutants (whose exact bias is
:func:`~.mutants.mutant_mean`), with and without the alternative, in both regimes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from ..core import _validate
from ..core.hypergradient import hypergradient
from ..core.problem import BilevelProblem
from ..estimators._common import (
    TRUNCATION_PROBABILITY,
    LeaderKnowledge,
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
_SQRT_2PI = math.sqrt(2.0 * math.pi)
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


def chebyshev_power(noncentrality: float, rank: int, alpha: float) -> float:
    r"""Power of the distribution-free Chebyshev test for Gaussian estimates: ``P(chi2_r(delta)
    >= r / alpha)`` (:func:`~.acceptance.chebyshev_test`'s threshold on the same ``T``) for
    noncentrality ``delta >= 0`` (``inf``: 1) and rank ``r`` (``r = 0``: 1 if ``delta > 0``,
    else 0: the statistic is 0). Since ``chi2_r^{-1}(1 - alpha) <= r / alpha`` (Markov on
    ``chi2_r``), it never exceeds :func:`known_covariance_power`."""
    alpha = _alpha(alpha)
    if not noncentrality >= 0.0:
        raise ValueError(f"noncentrality = {noncentrality}: must be >= 0")
    if math.isinf(noncentrality) or rank == 0:
        return 1.0 if noncentrality > 0 or math.isinf(noncentrality) else 0.0
    if noncentrality == 0.0:
        return float(scipy.stats.chi2.sf(rank / alpha, rank))
    return float(scipy.stats.ncx2.sf(rank / alpha, rank, noncentrality))


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
    """``P(chi2_1(nc) > x) = P(|y + m| > sqrt(x)) = Phi(m - sqrt(x)) + Phi(-m - sqrt(x))``,
    ``m = sqrt(nc)`` (the normal tails directly: no relative precision lost to ``1 -
    cdf``, and fast inside the two-term quadrature)."""
    if x <= 0.0:
        return 1.0
    r, m = math.sqrt(x), math.sqrt(nc)
    return float(scipy.special.ndtr(m - r) + scipy.special.ndtr(-m - r))


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
        lambda t: (math.exp(-0.5 * (t - m1) ** 2) / _SQRT_2PI
                   * _chi2_1_sf((threshold - w[0] * t * t) / w[1], nc[1])),
        -r, r, epsabs=1e-12, epsrel=1e-10, limit=200, points=[m1] if -r < m1 < r else None)
    if not err <= 1e-8:
        raise ValueError(f"quadratic_form_sf: quadrature error {err:.3g} above 1e-8")
    return float(min(1.0, outside + inside))


@dataclass(frozen=True)
class QuadraticForm:
    r"""The exact-covariance statistic against an alternative law, as a function of the
    number ``k`` of averaged units (``k = R n``: ``R`` replicates of ``n`` episodes):
    ``T(k) = sum_i w_i (y_i + sqrt(k) m_i)^2 + k c`` with ``y ~ N(0, I)``, rejected when
    ``T > crit`` (``crit = chi2_r^{-1}(1 - alpha)``); ``certain`` when the test rejects
    outright (the alternative's mean or noise leaves the range of the test's
    covariance). Built by :func:`quadratic_form`."""

    weights: np.ndarray
    unit_shift: np.ndarray
    offset: float
    crit: float
    rank: int
    certain: bool

    def power(self, k: float) -> float:
        """``P(T(k) > crit)`` (:func:`quadratic_form_sf`); 1 when ``certain``."""
        if self.certain:
            return 1.0
        if self.rank == 0:
            return 0.0  # the test's statistic is 0: it never rejects
        threshold = self.crit - k * self.offset
        if threshold <= 0.0:
            return 1.0
        return quadratic_form_sf(threshold, self.weights, k * self.unit_shift ** 2)


def chebyshev_form(form: QuadraticForm, alpha: float) -> QuadraticForm:
    """``form`` rejected at the Chebyshev threshold ``T >= r / alpha``
    (:func:`~.acceptance.chebyshev_test`) instead of the chi-square's: the same law of
    ``T``, another ``crit`` (``inf`` at rank 0: never rejects unless ``certain``)."""
    alpha = _alpha(alpha)
    return dataclasses.replace(form, crit=form.rank / alpha if form.rank else math.inf)


def quadratic_form(covariance: object, b: object, true_covariance: object,
                   alpha: float) -> QuadraticForm:
    r"""The law of ``T = k (b + e)^T Sigma^+ (b + e)``, ``e ~ N(0, Sigma_t / k)``, for the
    test's covariance ``covariance[d, d]`` (``Sigma = P^{-T} P^{-1}`` on its range, ``P``
    ``[d, r]``), the bias ``b[d]`` and the alternative's covariance
    ``true_covariance[d, d]`` (``Sigma_t = L L^T``, positive semi-definite). With ``A =
    P^T L = U diag(s) W^T`` (its nonzero singular values) and ``c = P^T b``:

    .. math:: T = \lvert A z + \sqrt{k}\, c \rvert^2
              = \sum_i s_i^2 \big(y_i + \sqrt{k}\, (U^T c)_i / s_i\big)^2
              + k\, \lvert c - U U^T c \rvert^2 .

    ``certain`` when ``b`` or the columns of ``L`` have a component in the null space of
    ``Sigma`` beyond ``1e-12`` relative (:func:`~.acceptance.known_covariance_test` then
    rejects outright)."""
    alpha = _alpha(alpha)
    lam, V, keep = covariance_spectrum(np.asarray(covariance, dtype=float))
    bv = np.asarray(b, dtype=float)
    lt, Vt, keep_t = covariance_spectrum(np.asarray(true_covariance, dtype=float))
    L = Vt[:, keep_t] * np.sqrt(lt[keep_t])                # Sigma_t = L L^T
    rank = int(np.count_nonzero(keep))
    null = V[:, ~keep]
    certain = bool(np.any(np.abs(null.T @ bv) > EXACT_RTOL * float(np.linalg.norm(bv)))
                   or np.any(np.abs(null.T @ L) > EXACT_RTOL * float(np.max(np.abs(L),
                                                                           initial=0.0))))
    P = V[:, keep] / np.sqrt(lam[keep])                    # Sigma^+ = P P^T
    U, sv, _ = np.linalg.svd(P.T @ L, full_matrices=False)
    pos = sv > 1e-6 * sv.max(initial=0.0)                  # weights s^2 above 1e-12 max
    c = P.T @ bv
    cpar = U[:, pos].T @ c
    crit = float(scipy.stats.chi2.isf(alpha, rank)) if rank else math.inf
    return QuadraticForm(sv[pos] ** 2, cpar / sv[pos],
                         float(np.sum((c - U[:, pos] @ cpar) ** 2)), crit, rank, certain)


def known_covariance_power_under(covariance: object, b: object, true_covariance: object,
                                 replicates: int, alpha: float) -> float:
    r"""Power of the exact-covariance test that assumes ``covariance[d, d]`` (``Sigma``,
    one estimate) against estimates with mean ``g + b`` and a *different* covariance
    ``true_covariance[d, d]`` (``Sigma_t``, positive semi-definite), Gaussian mean of
    ``R`` replicates: ``T = R (b + e)^T Sigma^+ (b + e)``, ``e ~ N(0, Sigma_t / R)``, is
    ``sum_i w_i chi2_1(mu_i^2)`` plus a constant (:func:`quadratic_form`,
    :func:`quadratic_form_sf`). With ``Sigma_t = Sigma`` it is
    :func:`known_covariance_power` at ``delta = R b^T Sigma^+ b``. An estimator noisier
    than ``Sigma`` is rejected more often than the plan says, a quieter one (at small
    ``delta``) less often."""
    return quadratic_form(covariance, b, true_covariance, alpha).power(replicates)


def chebyshev_power_under(covariance: object, b: object, true_covariance: object,
                          replicates: int, alpha: float) -> float:
    r"""As :func:`known_covariance_power_under`, at the Chebyshev test's threshold ``T >=
    r / alpha`` (:func:`chebyshev_form`): the power of a FAIL verdict of
    :func:`~.convergence.known_covariance_verdict` in the rare-event regime."""
    form = quadratic_form(covariance, b, true_covariance, alpha)
    return chebyshev_form(form, alpha).power(replicates)


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
    episodes), ``power`` the probability of a FAIL verdict of
    :func:`~.convergence.known_covariance_verdict` there, ``total = replicates * budget``
    transitions, ``regime`` the rule's regime at that total (``"regular"``: the chi-square
    decides; ``"rare-event"``: a FAIL needs the Chebyshev test) with ``rarest_visits`` the
    rarest on-policy pair's expected visits in it; ``chi2_replicates`` / ``chi2_power``
    the chi-square-only plan (the fewest replicates with which the chi-square rejects with
    the target probability: then the verdict is *not a pass* — FAIL, or INCONCLUSIVE in
    the rare-event regime — with that probability; equal to ``replicates`` where the
    rule's plan is regular and the regime does not bind); the same for the
    sample-covariance (Hotelling) test."""

    budget: int
    episodes: int
    replicates: int | None
    power: float | None
    total: int | None
    regime: str | None
    rarest_visits: float | None
    chi2_replicates: int | None
    chi2_power: float | None
    sample_replicates: int | None
    sample_power: float | None
    sample_total: int | None


@dataclass(frozen=True)
class SamplePlan:
    """The plan of :func:`plan_sample_size` (see the module docstring).

    ``bias_vector[d]`` the planned bias ``b``; ``noncentrality_per_episode = b^T
    Sigma_1^+ b``; ``needed_noncentrality`` the ``delta`` giving the target power to the
    chi-square test; ``estimator_bias`` the estimator's own exact relative bias ``|E X -
    g| / |g|`` (0 for bc-hg; the tests reject ``naive`` for it); ``rarest_visits`` the
    expected visits of the least likely ``(s, a)`` in the cheapest plan's transitions
    (below :data:`~.convergence.MIN_EXPECTED_VISITS` that plan rests on the Chebyshev
    test: its row's ``regime``); ``alternative``
    the law the power is computed under: ``"shift"`` (the reference's covariance), a
    mutant's name or ``"given"`` (:func:`plan_sample_size`)."""

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
    alternative: str = "shift"

    @property
    def cheapest(self) -> PlanRow | None:
        """The row with the fewest total transitions for a FAIL verdict of the rule."""
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
                "alternative": self.alternative,
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
                "rare_event_regime": self.rarest_visits < MIN_EXPECTED_VISITS,
                "min_expected_visits": MIN_EXPECTED_VISITS}

    def table(self) -> str:
        """A plain-text table over the budgets: the verdict rule's plan (replicates, FAIL
        power, total, the regime it rests on), the chi-square-only plan ("R no pass":
        the verdict is not a pass with the target probability) and the sample-covariance
        test's."""
        def n(v: object) -> str:
            return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else f"{v}")
        lines = [f"{'budget N':>10} {'episodes':>9} {'R (verdict)':>12} {'power':>7} "
                 f"{'R x N':>12} {'regime':>10} {'R (no pass)':>12} "
                 f"{'R (sample cov.)':>16} {'power':>7} {'R x N':>12}"]
        for r in self.rows:
            lines.append(f"{r.budget:>10} {r.episodes:>9} {n(r.replicates):>12} "
                         f"{n(r.power):>7} {n(r.total):>12} {n(r.regime):>10} "
                         f"{n(r.chi2_replicates):>12} {n(r.sample_replicates):>16} "
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


def _check_untruncated(budget: int, n: int, beta: float, p: float) -> None:
    """``ValueError`` naming the budget when its batch (``n`` units) is truncated with
    probability ``p`` above :data:`~exact_bilevel.estimators._common.TRUNCATION_PROBABILITY`
    (budgets too small for one episode to fit that reliably): the exact covariance would
    not be that of the estimates."""
    if p <= 2 * TRUNCATION_PROBABILITY:  # the planning rule's own tolerance, with margin
        return
    low = budget
    while truncation_probability(low, 1, beta) > TRUNCATION_PROBABILITY:
        low *= 2
    raise ValueError(f"budget = {budget}: its batch of {n} episode(s) is truncated by the "
                     f"budget cap with probability {p:.3g}, so the exact covariance does not "
                     f"describe it; plan with budgets of at least ~{low} transitions")


def regular_replicates(know: LeaderKnowledge, budget: int) -> int | None:
    """The fewest replicates ``R`` whose ``R x budget`` transitions put
    :func:`~.convergence.known_covariance_verdict` in the regular regime
    (:func:`~.convergence.rare_event_diagnostic` ``>= MIN_EXPECTED_VISITS``, computed by
    that function itself at the boundary, so the plan and the verdict agree to the last
    bit); ``None`` when the rarest pair has occupancy 0 (never regular). Every larger
    ``R`` is regular too (the expected visits grow linearly with ``R``)."""
    rate = rare_event_diagnostic(know, 1.0)[0]  # expected visits per transition
    if not rate > 0.0:
        return None

    def regular(R: int) -> bool:
        return rare_event_diagnostic(know, R * budget)[0] >= MIN_EXPECTED_VISITS

    R = max(1, math.ceil(MIN_EXPECTED_VISITS / (rate * budget)))
    while R > 1 and regular(R - 1):  # settle the rounding of the estimate
        R -= 1
    while not regular(R):
        R += 1
    return R


def verdict_replicates(chi2: int | None, chebyshev: int | None,
                       regular_from: int | None) -> int | None:
    r"""The fewest replicates ``R`` whose FAIL power under the verdict rule reaches the
    target, from ``chi2`` (the fewest with chi-square power ``>=`` target), ``chebyshev``
    (the same at the Chebyshev threshold) and ``regular_from``
    (:func:`regular_replicates`; ``None``: never regular), ``None`` = not reachable:

    .. math:: R^* = \min\big(R_{\mathrm{cheb}},\ \max(R_{\mathrm{reg}}, R_{\chi^2})\big).

    The rule's FAIL power is ``P_reg(R) = P_chi2(R)`` for ``R >= R_reg`` and ``P_cheb(R)``
    below; both are non-decreasing in ``R`` and ``P_cheb <= P_chi2`` (the Chebyshev
    threshold ``r / alpha`` is above the chi-square's). So the set of ``R`` reaching the
    target is upward closed (``P`` itself jumps up at ``R_reg``): below ``R_reg`` it is
    ``R >= R_cheb``, from ``R_reg`` on it is ``R >= R_chi2``; ``R_cheb >= R_chi2``
    makes the formula right also when ``R_cheb >= R_reg``."""
    regular = (None if chi2 is None or regular_from is None
               or max(chi2, regular_from) > MAX_REPLICATES else max(chi2, regular_from))
    found = [r for r in (regular, chebyshev) if r is not None]
    return min(found) if found else None


def _row(budget: int, n: int, chi2_power: Callable[[int], float],
         cheb_power: Callable[[int], float], start: int,
         sample_power: Callable[[int], float] | None, target: float, dim: int,
         know: LeaderKnowledge) -> PlanRow:
    """One :class:`PlanRow`: the smallest ``R >= start`` (at least :data:`MIN_REPLICATES`
    and ``MIN_TOTAL_EPISODES / n``) whose FAIL power under the verdict rule reaches
    ``target`` (:func:`verdict_replicates`; ``chi2_power`` and ``cheb_power`` the powers at
    the two thresholds, non-decreasing in ``R``), the chi-square-only plan, and the same
    for Hotelling's test (``R > 2 d``; ``sample_power`` ``None``: not applicable)."""
    floor = -(-MIN_TOTAL_EPISODES // n)
    R_chi = _smallest_replicates(lambda r: chi2_power(r) >= target, max(MIN_REPLICATES, start))
    R_reg = regular_replicates(know, budget)
    # the Chebyshev search matters only where the chi-square's plan is rare-event; it
    # starts at R_chi (P_cheb <= P_chi2, so R_cheb >= R_chi)
    rare = R_chi is not None and (R_reg is None or R_chi < R_reg)
    R_cheb = (_smallest_replicates(lambda r: cheb_power(r) >= target, R_chi) if rare
              else None)
    R = verdict_replicates(R_chi, R_cheb, R_reg)
    if R is not None:
        R = max(R, floor)
    visits = None if R is None else rare_event_diagnostic(know, R * budget)[0]
    regime = (None if visits is None else
              "regular" if visits >= MIN_EXPECTED_VISITS else "rare-event")
    pw = (None if R is None else chi2_power(R) if regime == "regular" else cheb_power(R))
    if R_chi is not None:
        R_chi = max(R_chi, floor)
    Rs = (None if sample_power is None else
          _smallest_replicates(lambda r: sample_power(r) >= target, 2 * dim + 1))
    ps = None if Rs is None or sample_power is None else sample_power(Rs)
    return PlanRow(budget, n, R, pw, None if R is None else R * budget, regime, visits,
                   R_chi, None if R_chi is None else chi2_power(R_chi), Rs, ps,
                   None if Rs is None else Rs * budget)


@dataclass(frozen=True)
class Alternative:
    """The law of the biased estimates a plan is for (``alternative=`` of
    :func:`plan_sample_size`).

    Attributes
    ----------
    covariance : ndarray, shape (d, d)
        Covariance of one unit (one episode; one draw per pair for
        sobirl-simplified), symmetric positive semi-definite; an estimate of ``n`` units
        has ``covariance / n``, as the reference estimator's.
    mean : ndarray, shape (d,), optional
        ``E X`` of one estimate; ``None``: ``g + b`` with ``b`` from ``bias`` and
        ``direction``.
    name : str
        A label: the mutant's name, or ``"given"``.
    """

    covariance: np.ndarray
    mean: np.ndarray | None = None
    name: str = "given"


#: Estimators the planner refuses (their covariance at a budget is not that of one unit
#: over the number of units), with the reason.
NOT_PLANNABLE = {
    "zeroth-order": "its covariance at a budget is not one unit's over n (the random "
                    "directions do not average out with more episodes per evaluation)",
}


def alternative_law(problem: BilevelProblem, x: np.ndarray, estimator: str,
                    alternative: object, know: LeaderKnowledge) -> Alternative | None:
    """``alternative`` of :func:`plan_sample_size` as an :class:`Alternative` (``None``:
    the pure shift): a mutant's exact per-episode moments
    (:func:`~.mutant_moments.mutant_moments`; it must mutate ``estimator``), a
    covariance array ``[d, d]``, or an :class:`Alternative` (checked)."""
    from .mutant_moments import check_expressible, mutant_moments
    from .mutants import BCHG_FAMILY, MUTANTS

    d = problem.n_params
    if alternative is None:
        return None
    if isinstance(alternative, str):
        try:
            check_expressible(alternative)
        except ValueError as exc:
            raise ValueError("alternative = " + str(exc)[len("name = "):]) from None
        family = ("bc-hg", "bc-hg-baseline")
        if (estimator not in family if alternative in BCHG_FAMILY
                else estimator != MUTANTS[alternative].mutates):
            targets = family if alternative in BCHG_FAMILY else (MUTANTS[alternative].mutates,)
            raise ValueError(f"alternative = {alternative!r}: mutates "
                             f"{' or '.join(targets)}, not estimator {estimator!r}")
        m = mutant_moments(problem, x, alternative, baseline=estimator == "bc-hg-baseline",
                           know=know)
        return Alternative(m.covariance, m.mean, alternative)
    if not isinstance(alternative, Alternative):
        alternative = Alternative(alternative)
    cov = _validate.real_array("alternative.covariance", alternative.covariance,
                               shape=(d, d))
    try:
        covariance_spectrum(cov)
    except ValueError as exc:
        raise ValueError("alternative." + str(exc)) from None
    mean = (None if alternative.mean is None else
            _validate.real_array("alternative.mean", alternative.mean, shape=(d,)))
    return Alternative(cov, mean, alternative.name)


def plan_sample_size(problem: BilevelProblem, x: object, estimator: str,
                     bias: float | None = None, *, power: float = 0.9, alpha: float = 0.01,
                     budgets: tuple[int, ...] | list[int] | None = None,
                     direction: object = None, alternative: object = None) -> SamplePlan:
    r"""Transitions per replicate ``N`` x replicates ``R`` for the exact-covariance verdict
    (:func:`~.convergence.known_covariance_verdict`) to FAIL a relative bias ``bias`` of
    ``estimator`` with probability ``power`` at level ``alpha`` (the chi-square test in the
    regular regime, the Chebyshev test in the rare-event regime: module docstring), and
    the sample-covariance test to reject it.

    Parameters
    ----------
    problem : BilevelProblem
        With a leader-return objective (as :func:`~exact_bilevel.estimators.moments`).
    x : array_like, shape (d,)
    estimator : str
        One whose exact covariance is known and scales as one unit's over ``n``:
        ``bc-hg``, ``bc-hg-baseline``, ``naive`` (exact critic), ``sobirl-simplified``;
        others raise ``ValueError`` with the reason.
    bias : float, optional
        ``B > 0``: detect ``E X = g + b`` with ``|b|_2 = B |g|_2`` (module docstring).
        Required unless ``alternative`` fixes the mean (then it must be omitted).
    power, alpha : float
        Target power and false-alarm rate, ``0 < alpha < power < 1``.
    budgets : sequence of int, optional
        Budgets ``N`` (transitions per estimate) to tabulate; default
        :data:`DEFAULT_BUDGETS` (those the estimator can use).
    direction : {"worst", "gradient"} or array_like, shape (d,), optional
        Direction of ``b`` (default ``"worst"``): the least detectable one for the pure
        shift (a guarantee for any direction), along ``g``, or given. Not with an
        alternative that fixes the mean.
    alternative : None, str, array_like of shape (d, d), or Alternative
        The law of the biased estimates. ``None`` (the default): the *pure shift*, mean
        ``g + b`` and the reference's own covariance — right for a bias added on top of
        the estimator's noise, wrong when the bug also changes the noise (a mutant
        ``tau-not-inverse`` scales the indirect term's noise by ``tau^2``, a sign flip
        changes its correlations: the planned power is then off, up to 0.2 on the
        shipped mutants, ``verification/planner_power.md``). A mutant name
        (:data:`~.mutant_moments.EXPRESSIBLE` that mutates ``estimator``): its exact
        mean and covariance (:func:`~.mutant_moments.mutant_moments`). An array: the
        alternative's covariance of one unit (scaled by ``1/n`` as the reference's),
        mean ``g + b``; an :class:`Alternative` may give the mean too. The power is
        then :func:`known_covariance_power_under` (Imhof) at ``R n`` units
        (:func:`chebyshev_power_under` in the rare-event regime) and the
        sample-covariance column is Hotelling's with the alternative's covariance.

    Returns
    -------
    SamplePlan
        One row per budget (with the regime its plan rests on); ``.cheapest`` the
        smallest ``R N`` (the verdict rule), ``.cheapest_sample`` the same for the
        sample-covariance test.
    """
    B, p, a = _check_scalars(1.0 if bias is None else bias, power, alpha)
    if estimator in NOT_PLANNABLE:
        raise ValueError(f"estimator = {estimator!r}: not plannable: "
                         f"{NOT_PLANNABLE[estimator]}")
    x = _validate.parameter_vector("x", x, problem.n_params)
    know = leader_knowledge(problem, x)
    one = moments(problem, x, estimator, know=know)  # checks the estimator, per episode
    law = alternative_law(problem, x, estimator, alternative, know)
    g = hypergradient(problem, x).gradient
    gnorm = float(np.linalg.norm(g))
    if gnorm == 0.0:
        raise ValueError("x: the exact hypergradient is zero here, so a bias relative to "
                         "|g| is undefined")
    if law is not None and law.mean is not None:
        if bias is not None:
            raise ValueError(f"bias = {bias}: the alternative {law.name!r} fixes the mean "
                             f"(relative bias {np.linalg.norm(law.mean - g) / gnorm:.3g}); "
                             "omit bias")
        if direction is not None:
            raise ValueError(f"direction = {direction!r}: the alternative {law.name!r} "
                             "fixes the mean; omit direction")
        b = law.mean - g
        B = float(np.linalg.norm(b)) / gnorm
        label = "alternative mean"
    else:
        if bias is None:
            raise ValueError("bias: required (the relative size of the bias to detect) "
                             "unless the alternative fixes the mean")
        direction = "worst" if direction is None else direction
        b = bias_vector(one.covariance, g, B, direction)
        label = direction if isinstance(direction, str) else "given"
    delta1, rank = noncentrality(one.covariance, b)
    need = needed_noncentrality(p, rank, a)
    if law is None:
        form = None
        per_alt = delta1
    else:
        form = quadratic_form(one.covariance, b, law.covariance, a)
        per_alt = (noncentrality(law.covariance, b)[0]
                   if np.all(covariance_spectrum(law.covariance)[2]) else 0.0)
    given = budgets is not None
    rows = []
    for i, N in enumerate(DEFAULT_BUDGETS if budgets is None else budgets):
        if given and (isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1):
            raise ValueError(f"budgets[{i}] = {N!r}: must be a positive integer")
        try:
            at = moments(problem, x, estimator, int(N), know=know)
            _check_untruncated(int(N), at.episodes, one.beta, at.truncation_probability)
        except ValueError:
            if given:
                raise
            continue  # a default budget too small for this problem
        rows.append(_plan_row(int(N), at.episodes, delta1, rank, per_alt, form, g.size, p, a,
                              need, know))
    if not rows:
        raise ValueError(f"budgets: none of {list(DEFAULT_BUDGETS)} fits one episode of "
                         f"{estimator}; give larger ones")
    est_bias = float(np.linalg.norm(one.mean - g) / gnorm)
    plan = SamplePlan(estimator, B, label, p, a, g.size, rank, gnorm, b, delta1, need,
                      est_bias, tuple(rows), math.inf,
                      "shift" if law is None else law.name)
    best = plan.cheapest
    visits = best.rarest_visits if best is not None else math.inf
    return SamplePlan(**{**plan.__dict__, "rarest_visits": visits})


def _plan_row(budget: int, n: int, delta1: float, rank: int, per_alt: float,
              form: QuadraticForm | None, dim: int, power: float, alpha: float,
              need: float, know: LeaderKnowledge) -> PlanRow:
    """:func:`_row` with the pure shift's powers (noncentral chi-square, ``delta = R n
    delta1``, at the chi-square's and at the Chebyshev threshold) or the alternative's
    (``form``, ``R n`` units, both thresholds); Hotelling's with noncentrality ``R n
    per_alt`` (``b^T Sigma_alt^{-1} b`` per unit) where its covariance is non-singular."""
    per = n * delta1  # noncentrality of one estimate
    if form is None:
        if math.isinf(per) or need == 0.0:
            start = MIN_REPLICATES
        elif per == 0.0:
            start = MAX_REPLICATES
        else:
            start = int(need / per * (1 - 1e-9))
        def chi2(r: int) -> float:
            return known_covariance_power(r * per, rank, alpha)
        def cheb(r: int) -> float:
            return chebyshev_power(r * per, rank, alpha)
        sample_ok = per != 0.0 and rank == dim  # Hotelling needs a non-singular covariance
    else:
        start = MIN_REPLICATES
        cform = chebyshev_form(form, alpha)
        def chi2(r: int) -> float:
            return form.power(r * n)
        def cheb(r: int) -> float:
            return cform.power(r * n)
        sample_ok = per_alt != 0.0
    alt = n * per_alt
    sample = ((lambda r: hotelling_power(r * alt, dim, r, alpha)) if sample_ok else None)
    return _row(budget, n, chi2, cheb, min(start, MAX_REPLICATES), sample, power, dim, know)
