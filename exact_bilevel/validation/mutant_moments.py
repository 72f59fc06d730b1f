r"""Exact mean and covariance of the shipped mutants (issue 25, item 4: the planner's
alternative).

**The BC-HG family** (:data:`~.mutants.BCHG_FAMILY`, exact critic, with or without the
baseline). One discount-terminated episode of the mutant built by :func:`~.mutants._mutant`
with options ``(adv, outer, z, scale)`` contributes ``X = grad reg + H + s W``,

.. math::

    H = \sum_{t<T} \rho_L^t h_t, \qquad
    W = \sum_{t<T} a^t c(s_t, a_t)\,\big(Z_t - (1 - \varphi) g_t\big), \qquad
    Z_t = \sum_{t\le k<T} r^{k-t} g_k,

with ``g``, ``h`` the step functions of :mod:`exact_bilevel.estimators.moments` (the
baseline's level subtracted for ``bc-hg-baseline``), ``c`` = ``A_L``, ``-A_L`` or
``Q_L``, ``s`` = ``1/tau`` or ``tau``, ``phi = 0`` for ``sum-from-t+1`` (else 1) and the
per-step ratios ``a = w / beta``, ``r = u / beta`` of the effective discounts ``(w, u)``
of :func:`~.mutants.bchg_family_mean` (``rho_L = gamma_L / beta``). The correct bc-hg is
``a = rho_L``, ``r = gamma / beta``, ``phi = 1``, ``s = 1/tau``, ``c = A_L``; a mutant
changes one of them, so each is a *linear transform of the bc-hg components* with
changed discounts. When ``a != rho_L`` (``leader-gamma-swap``, ``no-survival-weights``,
``wrong-discount-power``) ``H + s W`` is not self-similar, so the recursion of
``moments`` is extended to the triple ``Y = (H, W, Z)``: after the first step ``(s, a,
s')`` and the continuation flag ``C ~ Bernoulli(beta)``,

.. math::

    Y = e + C\, M(s, a)\, Y', \qquad
    e = \big(h,\ \varphi\, c\, g,\ g\big), \qquad
    M = \begin{pmatrix} \rho_L & 0 & 0 \\ 0 & a & r\, c(s,a) \\ 0 & 0 & r \end{pmatrix},

``Y'`` a copy started at ``s'``. ``M`` is upper triangular with constant diagonal, so
the first moments ``m_A = E[A | s]`` and the blocks ``M_{AB} = E[A B^T | s]`` solve one
at a time (``Z``, then ``W``, then ``H``; blocks ``ZZ, WZ, WW, HZ, HW, HH``), each a
linear system with ``I - beta M_AA M_BB P_pi``:

.. math::

    m_A &= (I - \beta M_{AA} P_\pi)^{-1}
           \Big(E[e_A] + \beta \sum_{k \ne A} E[M_{Ak}\, m_k(s')]\Big),\\
    M_{AB} &= (I - \beta M_{AA} M_{BB} P_\pi)^{-1}
           \Big(E[e_A e_B^T] + \beta \sum_l E[M_{Bl}\, e_A\, m_l(s')^T]
           + \beta \sum_k E[M_{Ak}\, m_k(s')\, e_B^T]
           + \beta \sum_{(k,l) \ne (A,B)} E[M_{Ak} M_{Bl}\, M_{kl}(s')]\Big),

``E[.]`` over ``a ~ pi(.|s)``, ``s' ~ P(.|s, a)``. Then ``mean = grad reg + rho^T (m_H +
s m_W)`` and ``Cov = rho^T (M_HH + s (M_HW + M_HW^T) + s^2 M_WW) - (mean - grad reg)(...)^T``.
With the correct options this is ``moments``' bc-hg (``U = H + W/tau``); the tests check
it against that, against brute-force enumeration of every trajectory (1e-12) and
against simulation. Cost: nine solves (three with ``d`` right-hand sides, six with
``d^2``), at most six factorisations of ``I - c P_pi``.

**zeroth-order-no-factor-2** returns twice the zeroth-order estimate: mean ``2 E X``,
covariance ``4 Cov X`` of :func:`~exact_bilevel.estimators.moments.zeroth_order_moments`
(Gauss-Hermite quadrature over the directions).

**At a budget** the mutant averages the same ``n = episodes_for_budget(budget, beta)``
i.i.d. episodes as the estimator it copies, so the covariance is the per-episode one
over ``n`` (the hard cap's truncation neglected as in ``moments``; its probability is
reported, its bias bound is not computed here).

**Not expressible** (:data:`NOT_EXPRESSIBLE`, ``ValueError`` with the reason): the
mutants with a learned critic fitted on the same batch and the HPGD / SoBiRL mutants,
whose estimates are every-visit ratios or inverses of empirical matrices (as their
correct estimators, out of scope for ``moments``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.problem import BilevelProblem
from ..estimators._common import (
    LeaderKnowledge,
    episodes_for_budget,
    leader_knowledge,
    ratio,
    require_leader_return,
)
from ..estimators.critics import exact_critic
from ..estimators.moments import (
    _OUT_OF_SCOPE,
    EstimatorMoments,
    _Chain,
    _Solver,
    _step_functions,
    _StepFn,
    crossing_probability,
    moments,
)
from .mutants import BCHG_FAMILY, MUTANTS, _effective_discounts

#: Mutants whose exact moments :func:`mutant_moments` computes.
EXPRESSIBLE = (*BCHG_FAMILY, "zeroth-order-no-factor-2")

_CRITIC = ("its {} leader critic is fitted on the same batch as the estimate, so the "
           "estimate is not a mean of independent per-episode functionals")
#: The other mutants and why their exact moments are not available.
NOT_EXPRESSIBLE = {
    "mc-critic-follower-gamma": _CRITIC.format("Monte Carlo") + " (every-visit averages)",
    "td-critic-follower-gamma": _CRITIC.format("TD") + " (an inverse of the empirical "
                                                        "transition matrix)",
    "hpgd-dq-from-t+1": "as hpgd: " + _OUT_OF_SCOPE["hpgd"],
    "mc-dq-leader-gamma": "as hpgd: " + _OUT_OF_SCOPE["hpgd"],
    "sobirl-no-centring": "as sobirl: " + _OUT_OF_SCOPE["sobirl"],
}

#: The order in which the triangular recursion solves (last block first).
_ORDER = ("H", "W", "Z")
_BLOCKS = (("Z", "Z"), ("W", "Z"), ("W", "W"), ("H", "Z"), ("H", "W"), ("H", "H"))


def check_expressible(name: str) -> None:
    """``ValueError`` naming ``name`` unless it is a mutant with exact moments."""
    if name not in MUTANTS:
        raise ValueError(f"name = {name!r}: not a mutant; one of {sorted(MUTANTS)}")
    if name not in EXPRESSIBLE:
        raise ValueError(f"name = {name!r}: no exact moments: {NOT_EXPRESSIBLE[name]}; "
                         f"expressible: {list(EXPRESSIBLE)}")


def mutant_moments(problem: BilevelProblem, x: object, name: str, budget: int | None = None,
                   *, baseline: bool = False, know: LeaderKnowledge | None = None
                   ) -> EstimatorMoments:
    r"""Exact mean ``[d]`` and covariance ``[d, d]`` of mutant ``name`` (module docstring).

    Parameters
    ----------
    problem : BilevelProblem
        With a leader-return objective (as :func:`~exact_bilevel.estimators.moments`).
    x : array_like, shape (d,)
    name : str
        One of :data:`EXPRESSIBLE`; the others raise ``ValueError`` with the reason.
    budget : int, optional
        ``None``: one episode (one episode per evaluation for zeroth-order); otherwise
        the estimate at this budget (``n`` i.i.d. episodes, covariance over ``n``).
    baseline : bool
        Mutate ``bc-hg-baseline`` instead of ``bc-hg`` (BC-HG family only), as
        :func:`~exact_bilevel.validation.mutants.mutant_replicates` does.
    know : LeaderKnowledge, optional
        Reuse a follower solve at ``x``.

    Returns
    -------
    EstimatorMoments
        ``estimator`` is ``name``; ``truncation_bias_bound`` is ``None``.
    """
    check_expressible(name)
    if name not in BCHG_FAMILY:
        if baseline:
            raise ValueError(f"baseline = True: {name!r} mutates {MUTANTS[name].mutates}, "
                             "not bc-hg")
        zo = moments(problem, x, "zeroth-order", budget, know=know)
        return dataclasses.replace(zo, estimator=name, mean=2.0 * zo.mean,
                                   covariance=4.0 * zo.covariance)
    if know is None:
        know = leader_knowledge(problem, x)
    require_leader_return(know, name)
    first, second = family_episode_moments(know, baseline, **dict(MUTANTS[name].options))
    cov = second - np.outer(first, first)
    cov = 0.5 * (cov + cov.T)
    beta = know.beta
    n = 1 if budget is None else episodes_for_budget(budget, beta, estimator=name)
    length = 1.0 / (1.0 - beta)
    return EstimatorMoments(
        estimator=name, mean=first + know.reg_grad, covariance=cov / n,
        per_episode=budget is None, episodes=n, beta=beta, expected_length=length,
        expected_transitions=n * (1.0 + length),
        truncation_probability=0.0 if budget is None else crossing_probability(budget, beta,
                                                                               n))


def family_episode_moments(know: LeaderKnowledge, baseline: bool = False, *, adv: str = "A",
                           outer: str = "correct", z: str = "correct",
                           scale: str = "1/tau") -> tuple[np.ndarray, np.ndarray]:
    """``(E U [d], E U U^T [d, d])`` of one episode's ``U = X - grad reg = H + s W`` of the
    BC-HG variant with these options (those of :func:`~.mutants.bchg_family_mean`), from
    the initial law, by the triangular recursion of the module docstring."""
    beta, gL = know.beta, know.gamma_leader
    w_out, w_in = _effective_discounts(know, outer, z)
    crit = exact_critic(know)
    c = {"A": crit.advantage, "-A": -crit.advantage, "Q": crit.q}[adv]
    g, h = _step_functions(know, baseline, crit.v)
    zero = _StepFn(np.zeros_like(g.base), None)
    e = {"H": h, "W": zero if z == "from-t+1" else zero.scaled_add(c, g), "Z": g}
    ones = np.ones_like(c)
    # per-step ratios given survival: the diagonal of M and its one off-diagonal entry
    diag = {"H": ratio(gL, beta), "W": ratio(w_out, beta), "Z": ratio(w_in, beta)}
    eff = {"H": gL, "W": w_out, "Z": w_in}  # beta * diag, as the estimators discount
    coef = {(k, k): diag[k] * ones for k in _ORDER}
    coef[("W", "Z")] = diag["Z"] * c

    def row(a: str) -> list[tuple[str, np.ndarray]]:
        return [(k, m) for (i, k), m in coef.items() if i == a]

    chain, solve = _Chain(know), _Solver(know)
    mean: dict[str, np.ndarray] = {}
    for a in reversed(_ORDER):
        rhs = chain.mean(e[a])
        for k, m in row(a):
            if k != a:
                rhs = rhs + beta * chain.avg(chain.next(mean[k]), m)
        mean[a] = solve(eff[a], rhs)
    sec: dict[tuple[str, str], np.ndarray] = {}

    def block(k: str, l_: str) -> np.ndarray:
        return sec[(k, l_)] if (k, l_) in sec else np.swapaxes(sec[(l_, k)], -1, -2)

    for a, b in _BLOCKS:
        rhs = chain.outer(e[a], e[b])
        for l_, m in row(b):
            rhs = rhs + beta * chain.with_next(e[a], mean[l_], m)
        for k, m in row(a):
            rhs = rhs + beta * np.swapaxes(chain.with_next(e[b], mean[k], m), -1, -2)
        for k, ma in row(a):
            for l_, mb in row(b):
                if (k, l_) != (a, b):
                    rhs = rhs + beta * chain.avg(chain.next(block(k, l_)), ma * mb)
        sec[(a, b)] = solve(ratio(eff[a] * eff[b], beta), rhs)
    s = {"1/tau": 1.0 / know.tau, "tau": know.tau}[scale]
    rho = np.asarray(know.problem.initial, dtype=float)
    first = rho @ (mean["H"] + s * mean["W"])
    hw = np.einsum("s,skl->kl", rho, sec[("H", "W")])
    second = (np.einsum("s,skl->kl", rho, sec[("H", "H")]) + s * (hw + hw.T)
              + s * s * np.einsum("s,skl->kl", rho, sec[("W", "W")]))
    return first, second
