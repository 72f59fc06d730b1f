r"""Exact mean and covariance of the BC-HG-type estimators (:ref:`docs/math.md, section 10
<moments>`).

With the exact leader critic, one discount-terminated episode contributes (to
:func:`~exact_bilevel.estimators.bchg.bchg`, :func:`~.bchg.naive`; see
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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.linalg import BellmanFactorization, factorize
from ..core.problem import BilevelProblem
from ._common import LeaderKnowledge, episodes_for_budget, leader_knowledge, require_leader_return
from .critics import exact_critic

#: Estimators whose per-episode contribution this module computes exactly.
SUPPORTED = ("bc-hg", "bc-hg-baseline", "naive")

_OUT_OF_SCOPE = {
    "hpgd": "it divides by per-state visit counts (dV(s) from repeated visits), a ratio "
            "across episodes, not a sum of per-episode contributions",
    "hpgd-td": "its dQ comes from a TD fit on the whole batch, a nonlinear function of "
               "all episodes",
    "hpgd-oracle": "it averages reset rollouts per (s, a) with visit-count ratios, not a "
                   "sum of per-episode contributions",
    "sobirl": "it estimates dQ at every (s, a) from resets, a tabular average (ratio) "
              "rather than one episode's additive functional",
    "sobirl-simplified": "it uses generative-model sweeps, not discount-terminated episodes",
    "model-based": "it estimates P from counts and applies the exact formulas, a "
                   "nonlinear function of all samples",
    "zeroth-order": "it deploys perturbed x with Gaussian directions; its contribution is "
                    "not a functional of one episode of the chain at x",
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
        Episodes averaged (1 when ``per_episode``).
    beta : float
        Continuation probability ``max(gamma, gamma_L)``.
    expected_length : float
        ``E T = 1 / (1 - beta)`` steps per episode.
    expected_transitions : float
        ``episodes * (1 + E T)`` (steps + resets), the expected cost.
    """

    estimator: str
    mean: np.ndarray
    covariance: np.ndarray
    per_episode: bool
    episodes: int
    beta: float
    expected_length: float
    expected_transitions: float

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


def _check(problem: BilevelProblem, estimator: str, critic: str) -> None:
    if estimator in _OUT_OF_SCOPE:
        raise ValueError(f"estimator = {estimator!r}: out of scope for exact moments: "
                         f"{_OUT_OF_SCOPE[estimator]}; supported: {SUPPORTED}")
    if estimator not in SUPPORTED:
        raise ValueError(f"estimator = {estimator!r}: unknown; exact moments support "
                         f"{SUPPORTED}")
    if critic != "exact":
        raise ValueError(f"critic = {critic!r}: exact moments need the exact critic; a "
                         "learned critic (monte-carlo, td) is fitted on the same episodes, "
                         "so the estimate is no longer a mean of independent per-episode "
                         "additive functionals")


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
        With a :class:`~exact_bilevel.core.objectives.LeaderReturn` objective.
    x : array_like, shape (d,)
    estimator : {"bc-hg", "bc-hg-baseline", "naive"}
        Other registered estimators raise ``ValueError`` with the reason.
    budget : int, optional
        ``None``: one episode's contribution (the unit the estimators average).
        Otherwise the estimate of :func:`~exact_bilevel.estimators.registry.estimate`
        at this budget: ``n = episodes_for_budget(budget, beta)`` i.i.d. episodes,
        covariance divided by ``n``.
    critic : {"exact"}
    know : LeaderKnowledge, optional
        Reuse a follower solve at ``x``.

    Returns
    -------
    EstimatorMoments
        See the module docstring for the equations and the cost.
    """
    _check(problem, estimator, critic)
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
    n = 1 if budget is None else episodes_for_budget(budget, beta)
    length = 1.0 / (1.0 - beta)
    return EstimatorMoments(estimator=estimator, mean=first + know.reg_grad,
                            covariance=cov / n, per_episode=budget is None, episodes=n,
                            beta=beta, expected_length=length,
                            expected_transitions=n * (1.0 + length))


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
