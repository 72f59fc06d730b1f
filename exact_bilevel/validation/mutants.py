r"""Deliberately wrong estimators, for measuring the power of acceptance tests.

Each mutant changes one thing a real implementation could plausibly get wrong,
and :data:`MUTANTS` records which correct estimator (and critic) it is a copy of,
so that the check that accepts the correct one can be asked to reject it.

BC-HG (:func:`exact_bilevel.estimators.bchg.bchg`, exact critic, same sampling):

==================== ==========================================================
name                 the bug
==================== ==========================================================
sign-flip            ``-A_L`` instead of ``A_L``
no-centring          ``Q_L`` instead of ``A_L = Q_L - V_L``
wrong-discount-power ``gamma^k`` (counted from the episode start) instead of ``gamma^(k-t)``
sum-from-t+1         forward sum ``sum_{k>t}`` instead of ``sum_{k>=t}``
tau-not-inverse      multiplies by ``tau`` instead of ``1/tau``
grad-r-for-dQ        ``g_t`` alone instead of the forward sum (``dr`` in place of ``dQ``)
no-survival-weights  drops the ``1/beta^t`` reweighting of discount-terminated episodes
leader-gamma-swap    ``gamma`` in place of ``gamma_L`` in the outer weights (a no-op when
                     ``gamma_L = gamma``: test it where they differ)
==================== ==========================================================

The other estimators and their parts:

========================== ============ ===============================================
name                       mutates      the bug
========================== ============ ===============================================
mc-critic-follower-gamma   bc-hg (mc)   Monte Carlo leader critic discounts with ``gamma``
                                        instead of ``gamma_L``
td-critic-follower-gamma   bc-hg (td)   TD leader critic bootstraps with ``gamma``
hpgd-dq-from-t+1           hpgd         Monte Carlo ``dQ`` forward sums start at ``t+1``
mc-dq-leader-gamma         hpgd         Monte Carlo ``dQ`` discounts with ``gamma_L``
sobirl-no-centring         sobirl       ``dlog pi = dQ / tau`` (no ``- dV``; visible only
                                        for objectives whose ``df/dpi pi`` does not
                                        sum to 0 over actions)
zeroth-order-no-factor-2   zeroth-order ``(F+ - F-) / mu`` instead of ``/ (2 mu)``
game-no-initial-term       game:bc-hg   drops the initial-law score term (follower
                                        observes ``(s, aL)``)
========================== ============ ===============================================

Markov-game BC-HG (:data:`GAME_MUTANTS`, ``fn(game, x, estimator, budget, rng)`` for
``bc-hg`` and ``bc-hg-baseline``, tabular and parameterised leaders, every observation
model; the tabular bug injected into :func:`exact_bilevel.games.estimate` through its
``tabular_estimator=`` / ``initial_value=``; exact means by :func:`game_mutant_mean`):

=========================== ================================== =========================
name                        the bug                            invisible when
=========================== ================================== =========================
game-no-initial-term        drops the initial-law score term   the follower observes s
game-sign-flip              ``-A_L`` in the influence term     no follower response
game-tau-not-inverse        ``tau`` for ``1/tau``              ``tau = 1``
game-leader-gamma-swap      ``gamma`` for ``gamma_L`` (outer)  ``gamma_L = gamma``
game-wrong-discount-power   ``gamma^k`` from the episode start no follower response
game-initial-follower-value initial-law term weighted by the   the follower observes s
                            follower's ``V(s, aL)``, not
                            ``V_L(s, aL)``
=========================== ================================== =========================

Wrong critics (:data:`CRITIC_MUTANTS`): the critics inside the three wrong-discount
mutants above, ``(know, episodes) -> table``, which the deterministic checks of
:mod:`exact_bilevel.validation.critic_checks` reject on every run when ``gamma_L !=
gamma``:

========================== ================ ==========================================
name                       check            the bug
========================== ================ ==========================================
td-critic-follower-gamma   (leader, td)     TD leader critic bootstraps with ``gamma``
mc-critic-follower-gamma   (leader, mc)     Monte Carlo leader returns discount with
                                            ``gamma``
mc-dq-leader-gamma         (dq, mc)         Monte Carlo ``dQ`` (hpgd, sobirl) discounts
                                            with ``gamma_L``
========================== ================ ==========================================

Wrong followers (:data:`FOLLOWER_MUTANTS`): ``authors-toy-follower``, the soft
Q-iteration of the released DiscreteToy code, which bootstraps the log-sum-exp of
the leader-averaged ``Q`` (:func:`authors_toy_follower`).

Cost-accounting mutants (:data:`SAMPLER_MUTANTS`) are samplers that forget part of
the bill: resets to chosen states, or episode starts.

A good acceptance test rejects each of them at the budget where it accepts the
correct estimator; ``tests/test_convergence.py`` asserts a power floor on drawn
problems and ``verification/convergence_power.md`` measures detection rates.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core import _validate
from ..core.errors import ConvergenceError
from ..estimators._common import (
    Estimate,
    LeaderKnowledge,
    contract_batch,
    episodes_for_budget,
    finish,
    leader_knowledge,
    ratio,
    vectorised,
)
from ..estimators.bchg import bchg_indirect_sum, direct_sum
from ..estimators.critics import Critic, exact_critic, monte_carlo_critic, td_critic
from ..estimators.hpgd import hpgd_indirect_sum
from ..estimators.registry import run_replicates
from ..estimators.sampling import EpisodeBatch, Episodes, Sampler
from ..estimators.sobirl import _policy_term
from ..estimators.tabular import dq_monte_carlo
from ..estimators.zeroth_order import zeroth_order
from ..games.estimators import estimate as game_estimate
from ..games.model import (
    OBSERVES_STATE_AND_LEADER_ACTION,
    MarkovGame,
    follower_problem,
    leader_logits,
    leader_policy,
    leader_policy_jacobian,
    tabular,
)


def _mutant(name: str, *, adv: str = "A", outer: str = "correct", z: str = "correct",
            scale: str = "1/tau") -> Callable[[LeaderKnowledge, Sampler, int, bool], Estimate]:
    """A BC-HG with one bug, summed in the dual order of :func:`.bchg.bchg_indirect_sum`:
    ``sum_t c_t Z_t = sum_k g_k Y_k`` with the scalar ``Y_k = sum_{t<=k} r^(k-t) c_t``,
    ``c_t = outer^t table(s_t, a_t)``; the wrong forward sums ``Z`` become wrong ``Y``:
    ``from-t+1`` drops ``g_t`` from ``Z_t`` (``Y - c``), ``from-start`` multiplies ``Z_t``
    by ``gamma^t`` (``c_t gamma^t``), ``g-only`` keeps ``g_t`` alone (``Y = c``),
    ``no-survival`` discounts by ``gamma`` without the ``1/beta`` reweighting.
    The options (``adv``, ``outer``, ``z``, ``scale``; the defaults are the correct
    estimator) are those of :func:`bchg_family_mean`."""
    def estimator(know: LeaderKnowledge, sampler: Sampler, budget: int,
                  baseline: bool = False) -> Estimate:
        start, resets0 = sampler.transitions, sampler.resets
        n = episodes_for_budget(budget, know.beta)
        with sampler.capped(budget):
            batch = sampler.episode_batch(know.pi, n, know.beta)
        c = exact_critic(know)
        table = {"A": c.advantage, "-A": -c.advantage, "Q": c.q}[adv]
        outer_ratio = {"correct": ratio(know.gamma_leader, know.beta),
                       "no-survival": know.gamma_leader,
                       "gamma": ratio(know.gamma, know.beta)}[outer]
        weights = batch.per_pair(table) * batch.step_weights(outer_ratio)
        inner = know.gamma if z == "no-survival" else ratio(know.gamma, know.beta)
        if z == "from-start":
            weights = weights * batch.step_weights(know.gamma)
        Y = weights if z == "g-only" else batch.prefix_sums(weights, inner)
        if z == "from-t+1":
            Y = Y - weights
        s = {"1/tau": 1.0 / know.tau, "tau": know.tau}[scale]
        indirect = s * contract_batch(know, batch, Y, know.dr, know.v, know.gamma,
                                      baseline) / batch.n_episodes
        return finish(sampler, direct_sum(know, batch, c, baseline) + indirect, start,
                      resets0, name)
    estimator.__name__ = name.replace("-", "_").replace("+", "plus")
    return estimator


EstimatorFn = Callable[[LeaderKnowledge, Sampler, int, str], Estimate]


@dataclass(frozen=True)
class Mutant:
    """A wrong estimator: ``fn(know, sampler, budget, critic) -> Estimate`` with the
    registry's signature, the correct estimator and critic it copies, and its bug."""

    fn: EstimatorFn
    mutates: str
    critic: str
    bug: str
    #: For the BC-HG family with the exact critic: the options of :func:`_mutant` that
    #: make it (``(key, value)`` pairs), so that :func:`mutant_mean` gives its exact
    #: mean; ``None`` for the others.
    options: tuple[tuple[str, str], ...] | None = None

    @property
    def accepts_baseline(self) -> bool:
        """Whether ``fn`` takes ``baseline=True`` (mutate ``bc-hg-baseline`` instead)."""
        import inspect

        return "baseline" in inspect.signature(self.fn).parameters


def _bchg_family(name: str, bug: str, **kwargs: str) -> Mutant:
    fn = _mutant(name, **kwargs)

    def run(know: LeaderKnowledge, sampler: Sampler, budget: int, critic: str = "exact",
            baseline: bool = False) -> Estimate:
        return fn(know, sampler, budget, baseline)

    return Mutant(run, "bc-hg", "exact", bug, tuple(sorted(kwargs.items())))


def _bchg_with_critic(critic_fn: Callable[[LeaderKnowledge, Episodes], Critic], name: str
                      ) -> EstimatorFn:
    def run(know: LeaderKnowledge, sampler: Sampler, budget: int,
            critic: str = "exact") -> Estimate:
        start, resets0 = sampler.transitions, sampler.resets
        n = episodes_for_budget(budget, know.beta)
        with sampler.capped(budget):
            batch = sampler.episode_batch(know.pi, n, know.beta)
        c = critic_fn(know, batch)
        return finish(sampler, direct_sum(know, batch, c) + bchg_indirect_sum(know, batch, c),
                      start, resets0, name)
    return run


def _hpgd_mutant(name: str, **dq_options: object) -> EstimatorFn:
    """``hpgd`` (exact critic, Monte Carlo ``dQ``) with a wrong ``dQ`` estimate."""
    def run(know: LeaderKnowledge, sampler: Sampler, budget: int,
            critic: str = "exact") -> Estimate:
        start, resets0 = sampler.transitions, sampler.resets
        n = episodes_for_budget(budget, know.beta)
        with sampler.capped(budget):
            batch = sampler.episode_batch(know.pi, n, know.beta)
        c = exact_critic(know)
        opts = {k: (know.gamma_leader if v == "gamma_L" else v) for k, v in dq_options.items()}
        dq = dq_monte_carlo(know, batch, **opts)  # type: ignore[arg-type]
        return finish(sampler, direct_sum(know, batch, c)
                      + hpgd_indirect_sum(know, batch, c.advantage, dq), start, resets0, name)
    return run


@dataclass(frozen=True)
class CriticMutant:
    """A wrong critic ``fn(know, episodes) -> table`` (``Q_L[S, A]`` or ``dQ[S, A, d]``),
    the key of :data:`exact_bilevel.validation.critic_checks.CRITICS` it replaces
    (``(target, method)``), and its bug."""

    fn: Callable[[LeaderKnowledge, Episodes], np.ndarray]
    replaces: tuple[str, str]
    bug: str


def _td_critic_follower_gamma(know: LeaderKnowledge, ep: Episodes) -> Critic:
    return td_critic(know, ep, discount=know.gamma)  # bug: gamma for gamma_L


def _mc_critic_follower_gamma(know: LeaderKnowledge, ep: Episodes) -> Critic:
    return monte_carlo_critic(know, ep, discount=know.gamma)  # bug: gamma for gamma_L


CRITIC_MUTANTS: dict[str, CriticMutant] = {
    "td-critic-follower-gamma": CriticMutant(
        lambda k, ep: _td_critic_follower_gamma(k, ep).q, ("leader", "td"),
        "TD leader critic bootstraps with gamma, not gamma_L"),
    "mc-critic-follower-gamma": CriticMutant(
        lambda k, ep: _mc_critic_follower_gamma(k, ep).q, ("leader", "monte-carlo"),
        "Monte Carlo leader critic discounts with gamma, not gamma_L"),
    "mc-dq-leader-gamma": CriticMutant(
        lambda k, ep: dq_monte_carlo(k, ep, discount=k.gamma_leader), ("dq", "monte-carlo"),
        "Monte Carlo dQ discounts with gamma_L, not gamma"),
}


def _sobirl_no_centring(know: LeaderKnowledge, sampler: Sampler, budget: int,
                        critic: str = "monte-carlo") -> Estimate:
    """``sobirl`` with ``dlog pi = dQ / tau``. Invisible for leader returns (their
    weights ``df/dpi * pi = occ pi A_L`` sum to 0 over actions), visible for a general
    ``f`` such as the quadratic objective."""
    start, resets0 = sampler.transitions, sampler.resets
    S, A = know.pi.shape
    n = episodes_for_budget(budget, know.beta)
    with sampler.capped(budget):
        s0, a0 = sampler.integers(S, n), sampler.integers(A, n)
        batch = sampler.episode_batch(know.pi, n, know.beta, start=s0, first_action=a0)
    dq = dq_monte_carlo(know, batch)
    weights = know.objective_terms.df_dpi * know.pi / know.tau  # bug: not centred (no - dV)
    grad = _policy_term(know, dq, weights)
    return finish(sampler, grad, start, resets0, "sobirl-no-centring")


def _zeroth_order_no_factor_2(know: LeaderKnowledge, sampler: Sampler, budget: int,
                              critic: str = "exact") -> Estimate:
    est = zeroth_order(know, sampler, budget, critic)
    return dataclasses.replace(est, gradient=2.0 * est.gradient,  # bug: / mu, not / (2 mu)
                               estimator="zeroth-order-no-factor-2")


MUTANTS: dict[str, Mutant] = {
    "sign-flip": _bchg_family("sign-flip", "-A_L instead of A_L", adv="-A"),
    "no-centring": _bchg_family("no-centring", "Q_L instead of A_L", adv="Q"),
    "wrong-discount-power": _bchg_family("wrong-discount-power",
                                         "gamma^k from the episode start", z="from-start"),
    "sum-from-t+1": _bchg_family("sum-from-t+1", "forward sum from t+1", z="from-t+1"),
    "tau-not-inverse": _bchg_family("tau-not-inverse", "tau instead of 1/tau", scale="tau"),
    "grad-r-for-dQ": _bchg_family("grad-r-for-dQ", "g_t instead of the forward sum",
                                  z="g-only"),
    "no-survival-weights": _bchg_family("no-survival-weights", "no 1/beta^t reweighting",
                                        outer="no-survival", z="no-survival"),
    "leader-gamma-swap": _bchg_family("leader-gamma-swap", "gamma for gamma_L (outer)",
                                      outer="gamma"),
    "mc-critic-follower-gamma": Mutant(
        _bchg_with_critic(_mc_critic_follower_gamma, "mc-critic-follower-gamma"), "bc-hg",
        "monte-carlo",
        "Monte Carlo leader critic discounts with gamma, not gamma_L"),
    "td-critic-follower-gamma": Mutant(
        _bchg_with_critic(_td_critic_follower_gamma, "td-critic-follower-gamma"), "bc-hg",
        "td",
        "TD leader critic bootstraps with gamma, not gamma_L"),
    "hpgd-dq-from-t+1": Mutant(_hpgd_mutant("hpgd-dq-from-t+1", skip_first=True), "hpgd",
                               "exact", "Monte Carlo dQ forward sums start at t+1"),
    "mc-dq-leader-gamma": Mutant(_hpgd_mutant("mc-dq-leader-gamma", discount="gamma_L"),
                                 "hpgd", "exact",
                                 "Monte Carlo dQ discounts with gamma_L, not gamma"),
    "sobirl-no-centring": Mutant(_sobirl_no_centring, "sobirl", "monte-carlo",
                                 "dlog pi = dQ / tau (no - dV)"),
    "zeroth-order-no-factor-2": Mutant(_zeroth_order_no_factor_2, "zeroth-order", "exact",
                                       "(F+ - F-) / mu instead of / (2 mu)"),
}


#: Effective per-step discounts of the outer weights (``(gamma_L/beta)^t`` times the
#: survival ``beta^t``, ...) and of the forward sum, per option of :func:`_mutant`.
def _effective_discounts(know: LeaderKnowledge, outer: str, z: str) -> tuple[float, float]:
    gamma, gL, beta = know.gamma, know.gamma_leader, know.beta
    outer_eff = {"correct": gL, "no-survival": gL * beta, "gamma": gamma}[outer]
    inner = {"correct": gamma, "from-t+1": gamma, "from-start": gamma, "g-only": 0.0,
             "no-survival": gamma * beta}[z]
    return outer_eff * (gamma if z == "from-start" else 1.0), inner


def bchg_family_mean(know: LeaderKnowledge, *, adv: str = "A", outer: str = "correct",
                     z: str = "correct", scale: str = "1/tau") -> np.ndarray:
    r"""Exact mean ``[d]`` of one estimate of the BC-HG variant of :func:`_mutant` with
    these options (the defaults give the correct ``bc-hg``; ``bc-hg-baseline`` has the
    same mean), at any budget (an average of i.i.d. episodes; the hard budget cap's
    truncation, probability ``<= 1e-4``, neglected as in
    :func:`exact_bilevel.estimators.moments`).

    By occupancy measures rather than the backward recursions of ``moments`` (an
    independent route, checked against it to 1e-12 for the defaults):

    .. math::

        E X = E X_{\mathrm{naive}} + s \sum_{s} d_w(s) \sum_a \pi(a|s)\, c(s, a)\, m(s, a),
        \qquad d_w = (I - w P_\pi^T)^{-1} \rho,\quad
        m = \bar g + u\, P\, (I - u P_\pi)^{-1} \bar g_\pi,

    with ``g-bar(s, a) = dr(s, a) + gamma sum_s' P(s'|s, a) dlogP(s'|s, a) V(s')`` (so
    ``m = dQ`` for ``u = gamma``), ``c`` = ``A_L`` (``adv="A"``), ``-A_L`` or ``Q_L``,
    ``s`` = ``1/tau`` or ``tau``, and the effective discounts (outer weight times the
    survival ``beta^t``): ``w = gamma_L`` (correct), ``gamma_L beta`` (no survival
    weights), ``gamma`` (``gamma`` for ``gamma_L``), times ``gamma`` when the forward sum
    is weighted ``gamma^t`` from the episode start; ``u = gamma`` (correct, from the
    start, from ``t+1`` where ``m - g-bar`` is used), ``gamma beta`` (no survival
    weights), 0 (``g_t`` alone). ``E X_naive`` (the direct term and ``grad reg``) is
    :func:`~exact_bilevel.estimators.moments` of ``naive``.
    """
    from ..core.linalg import factorize
    from ..estimators.moments import moments

    mdp, pi = know.state.mdp, know.pi
    w, u = _effective_discounts(know, outer, z)
    gbar = np.array(know.dr, dtype=float)
    if know.problem.transitions.depends_on_x:
        gbar += know.gamma * np.einsum("sat,satk,t->sak", np.asarray(mdp.transitions),
                                       know.score, know.v)
    P_pi = mdp.P_pi(pi)
    v_g = np.asarray(factorize(P_pi, u).solve(np.einsum("sa,sak->sk", pi, gbar)))
    m = gbar + u * mdp.expect(v_g)
    if z == "from-t+1":
        m = m - gbar
    rho = np.asarray(know.problem.initial, dtype=float)
    occ = np.asarray(factorize(P_pi, w).solve_transpose(rho))
    crit = exact_critic(know)
    c = {"A": crit.advantage, "-A": -crit.advantage, "Q": crit.q}[adv]
    s = {"1/tau": 1.0 / know.tau, "tau": know.tau}[scale]
    naive = moments(know.problem, know.state.x, "naive", know=know).mean
    return naive + s * np.einsum("s,sa,sak->k", occ, pi * c, m)


def mutant_mean(name: str, know: LeaderKnowledge) -> np.ndarray:
    """Exact mean ``[d]`` of one estimate of mutant ``name`` (a BC-HG family mutant with
    the exact critic; with or without the baseline, which leaves the mean unchanged), by
    :func:`bchg_family_mean`; ``ValueError`` for the others (their bias needs
    simulation)."""
    m = MUTANTS.get(name)
    if m is None:
        raise ValueError(f"name = {name!r}: not a mutant; one of {sorted(MUTANTS)}")
    if m.options is None:
        raise ValueError(f"name = {name!r}: no exact mean (only the BC-HG family mutants "
                         f"with the exact critic: {sorted(BCHG_FAMILY)})")
    return bchg_family_mean(know, **dict(m.options))


#: The BC-HG family mutants with the exact critic (those :func:`mutant_mean` covers).
BCHG_FAMILY = tuple(n for n, m in MUTANTS.items() if m.options is not None)


def mutant_replicates(name: str, know: LeaderKnowledge, budget: int, n_replicates: int,
                      seed: int, baseline: bool = False) -> np.ndarray:
    """``n_replicates`` estimates ``[R, d]`` of mutant ``name``, seeded like
    :func:`exact_bilevel.estimators.replicates`; ``baseline`` mutates
    ``bc-hg-baseline`` instead of ``bc-hg`` (BC-HG mutants only)."""
    m = MUTANTS[name]
    fn = vectorised(functools.partial(m.fn, baseline=True)) if baseline else m.fn
    return run_replicates(fn, know, budget, n_replicates, seed, m.critic)[0]

for _m in MUTANTS.values():  # every mutant serves R replicates at once, as its original
    vectorised(_m.fn)


# --- Markov games --------------------------------------------------------------------
def game_no_initial_term(game: MarkovGame, x: object, estimator: str, budget: int,
                         rng: np.random.Generator) -> Estimate:
    """The game BC-HG estimate without its initial-law score term (follower observes
    ``(s, aL)``; otherwise the correct estimate): the problem-level estimator on the
    follower's augmented problem at the whole budget, with no fresh starts. So its
    episodes are not the correct estimator's (the budget the correct one reserves for the
    term's fresh starts goes to episodes here, from the same stream); its mean is the
    correct mean minus the initial-law term."""
    from ..estimators import estimate as _estimate
    from ..estimators import leader_knowledge

    x = _validate.parameter_vector("x", x, game.n_params)
    if estimator not in ("bc-hg", "bc-hg-baseline"):
        raise ValueError(f"estimator = {estimator!r}: must be 'bc-hg' or 'bc-hg-baseline'")
    if game.observes != OBSERVES_STATE_AND_LEADER_ACTION:
        return game_estimate(game, x, estimator, budget, rng)
    problem = follower_problem(game, x)
    est = _estimate(problem, x, estimator, budget, rng, "exact", leader_knowledge(problem, x))
    return dataclasses.replace(est, estimator="game-no-initial-term")


def _follower_initial_value(know: LeaderKnowledge) -> np.ndarray:
    return know.v  # bug: the follower's soft value V(s, aL), not the leader's V_L


def _no_initial_value(know: LeaderKnowledge) -> np.ndarray:
    return np.zeros_like(know.v)  # the mean of game-no-initial-term's (absent) term


#: The parts of each game mutant: ``(tabular BC-HG mutant injected or None, the value
#: weighting the initial-law term or None for V_L)``; drives :func:`game_mutant_mean`.
_GAME_PARTS: dict[str, tuple[str | None,
                             Callable[[LeaderKnowledge], np.ndarray] | None]] = {
    "game-no-initial-term": (None, _no_initial_value),
    "game-sign-flip": ("sign-flip", None),
    "game-tau-not-inverse": ("tau-not-inverse", None),
    "game-leader-gamma-swap": ("leader-gamma-swap", None),
    "game-wrong-discount-power": ("wrong-discount-power", None),
    "game-initial-follower-value": (None, _follower_initial_value),
}


def _game_mutant(name: str, doc: str, tabular: str | None = None,
                 initial_value: Callable[[LeaderKnowledge], np.ndarray] | None = None
                 ) -> Callable[..., Estimate]:
    """``fn(game, x, estimator, budget, rng) -> Estimate``: the game estimate of
    :func:`exact_bilevel.games.estimate` (``bc-hg`` or ``bc-hg-baseline``; tabular and
    parameterised leaders, every observation model) with one part injected: the
    problem-level estimator replaced by the tabular mutant ``MUTANTS[tabular]`` (with the
    baseline for ``bc-hg-baseline``), or the initial-law term's value table by
    ``initial_value``. Serves a block of uniforms as ``games.estimate`` does."""
    def fn(game: MarkovGame, x: object, estimator: str, budget: int,
           rng: np.random.Generator) -> Estimate:
        if estimator not in ("bc-hg", "bc-hg-baseline"):
            raise ValueError(f"estimator = {estimator!r}: must be 'bc-hg' or "
                             "'bc-hg-baseline'")
        kwargs: dict[str, object] = {}
        if tabular is not None:
            kwargs["tabular_estimator"] = functools.partial(
                MUTANTS[tabular].fn, baseline=estimator == "bc-hg-baseline")
        if initial_value is not None:
            kwargs["initial_value"] = initial_value
        est = game_estimate(game, x, estimator, budget, rng, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(est, estimator=name)

    fn.__name__ = name.replace("-", "_")
    fn.__doc__ = doc
    return vectorised(fn)  # type: ignore[return-value]


#: The bug of each game mutant built by :func:`_game_mutant` (its docstring).
_GAME_DOCS = {
    "game-sign-flip":
        """The game BC-HG with ``-A_L`` for ``A_L`` in the influence term (tabular
        ``sign-flip`` on the follower's problem): the mean is ``grad F - 2 (indirect)``.
        Invisible only where the follower's response (the indirect term) is zero; visible
        on every case of the game battery.""",
    "game-tau-not-inverse":
        """The game BC-HG multiplying the influence term by ``tau`` instead of ``1/tau``
        (tabular ``tau-not-inverse``): the indirect term scaled by ``tau^2``. Invisible
        at ``tau = 1`` (and where the indirect term is zero).""",
    "game-leader-gamma-swap":
        """The game BC-HG weighting the influence term's outer sum by the follower's
        ``gamma`` instead of the leader's ``gamma_L`` (tabular ``leader-gamma-swap``).
        Invisible when ``gamma_L = gamma`` (the default ``leader_gamma = None``): only
        the games with their own leader discount show it.""",
    "game-wrong-discount-power":
        """The game BC-HG discounting the influence's forward sum by ``gamma^k`` counted
        from the episode start instead of ``gamma^(k-t)`` (tabular
        ``wrong-discount-power``). Invisible only where the follower's response is zero
        or carried by the first step alone.""",
    "game-initial-follower-value":
        """The game BC-HG whose initial-law term weights the leader's score
        ``dlog piL(aL0|s0)`` by the follower's soft value ``V(s0, aL0)`` (``know.v``, the
        value of the influence rewards) instead of the leader's ``V_L(s0, aL0)``: the
        mean moves by ``sum_s rho(s) sum_aL dpiL(aL|s) (V - V_L)(s, aL)``. Invisible when
        the follower observes ``s`` (no initial-law term) and where that sum vanishes,
        e.g. when ``rho`` sits on states where ``V - V_L`` does not depend on ``aL``.""",
}
#: Wrong game estimators, name -> ``fn(game, x, estimator, budget, rng) -> Estimate``
#: (``estimator``: ``"bc-hg"`` or ``"bc-hg-baseline"``), each serving a block of uniforms
#: as :func:`exact_bilevel.games.estimate` does (marked :func:`vectorised`).
GAME_MUTANTS: dict[str, Callable[..., Estimate]] = {
    "game-no-initial-term": game_no_initial_term,
    **{name: _game_mutant(name, doc, *_GAME_PARTS[name]) for name, doc in _GAME_DOCS.items()},
}


vectorised(game_no_initial_term)  # serves a block of uniforms as games.estimate does


def game_mutant_mean(name: str | None, game: MarkovGame, x: object) -> np.ndarray:
    r"""Exact mean ``[d]`` of one estimate of game mutant ``name`` at ``x[d]`` (``d =
    game.n_params``; estimator ``bc-hg``, the baseline leaves it unchanged), any budget
    (truncation neglected as in :func:`bchg_family_mean`):

    .. math:: \mathbb{E} X = \mathbb{E} X_P + [\text{observes } (s, a_L)]
              \sum_{s, a} \rho(s)\, \partial\pi_L(a \mid s)\, V(s, a),

    ``E X_P`` the problem-level mean on the follower's problem (:func:`bchg_family_mean`
    with the tabular mutant's options; the correct one for ``game-initial-follower-value``
    and ``None``), ``V`` the initial-law term's value (``V_L``; the follower's ``V`` for
    ``game-initial-follower-value``; 0 for ``game-no-initial-term``, whose episodes also
    get the whole budget). With a leader parameterisation: ``J^T`` of the tabular game's
    mean at the logits. ``name=None``: the correct ``bc-hg`` (the game's hypergradient)."""
    if name is not None and name not in GAME_MUTANTS:
        raise ValueError(f"name = {name!r}: not a game mutant; one of {sorted(GAME_MUTANTS)}")
    x = _validate.parameter_vector("x", x, game.n_params)
    if game.leader is not None:
        z = leader_logits(game, x).reshape(-1)
        J = game.leader.logits_jacobian(x).reshape(z.size, -1)
        return J.T @ game_mutant_mean(name, tabular(game), z)
    know = leader_knowledge(follower_problem(game, x), x)
    bug, initial_value = _GAME_PARTS[name] if name is not None else (None, None)
    mean = bchg_family_mean(know, **dict(MUTANTS[bug].options or () if bug else ()))
    if game.observes != OBSERVES_STATE_AND_LEADER_ACTION:
        return mean
    S, AL, _ = game.shape
    v = (exact_critic(know).v if initial_value is None else initial_value(know))
    dpi = leader_policy_jacobian(game, x)                      # [S, AL, d]
    return mean + np.einsum("s,sak,sa->k", game.initial, dpi, v.reshape(S, AL))


# --- cost accounting ------------------------------------------------------------------
class ChosenResetsUncounted(Sampler):
    """Forgets to bill resets to chosen states (``start=`` episodes)."""

    def _run(self, pi: object, lengths: np.ndarray, start: np.ndarray | None,
             first_action: np.ndarray | None = None) -> EpisodeBatch:
        resets = self.resets
        ep = super()._run(pi, lengths, start, first_action)
        if start is not None:
            self.resets = resets  # bug
        return ep


class StartsUncounted(Sampler):
    """Forgets to bill every episode start (the reset to ``rho``)."""

    def reset(self, n: int) -> np.ndarray:
        out = super().reset(n)
        self.resets -= n  # bug
        return out


SAMPLER_MUTANTS: dict[str, type[Sampler]] = {
    "chosen-resets-uncounted": ChosenResetsUncounted,
    "starts-uncounted": StartsUncounted,
}


# --- wrong followers --------------------------------------------------------------------
def authors_toy_follower(game: MarkovGame, x: object, *, tol: float = 1e-14,
                         max_iter: int = 200_000) -> np.ndarray:
    r"""The follower of the released DiscreteToy code (Kudo et al. 2026): a *wrong*
    soft Q-iteration for a follower that observes ``(s, aL)``.

    It bootstraps the log-sum-exp of the leader-averaged ``Q``,

    .. math:: Q(s, a_L, a_F) = r_F + \gamma \sum_{s'} P(s'|s, a_L, a_F)\,
              \tau \log \sum_{a_F'} \exp\Big(\sum_{a_L'} \pi_L(a_L'|s')
              Q(s', a_L', a_F') / \tau\Big),

    instead of the average of the log-sum-exps, ``sum_aL' piL(aL'|s') V(s', aL')``
    with ``V(s', aL') = tau log sum_aF' exp(Q(s', aL', aF') / tau)`` — the soft
    Bellman equation of its own value ``V(s, aL)``. Returns the Boltzmann policy
    ``piF[s, aL, aF] = softmax(Q / tau)`` of that fixed point (a contraction too,
    so it converges; to the wrong place).
    """
    x = _validate.parameter_vector("x", x, game.n_params)
    P, rF, tau, gamma = game.transitions, game.follower_reward, game.tau, game.gamma
    piL = leader_policy(game, x)
    q = np.zeros(rF.shape)
    for _ in range(max_iter):
        avg = np.einsum("tm,tmf->tf", piL, q)               # sum_aL' piL Q(s', aL', .)
        m = avg.max(axis=1)
        w = m + tau * np.log(np.exp((avg - m[:, None]) / tau).sum(axis=1))
        q_new = rF + gamma * P @ w
        step = float(np.max(np.abs(q_new - q)))
        q = q_new
        if step <= tol * (1.0 + float(np.max(np.abs(q)))):
            break
    else:
        raise ConvergenceError("authors' toy follower iteration", step, tol, max_iter,
                               "sweep limit reached")
    e = np.exp((q - q.max(axis=2, keepdims=True)) / tau)
    return e / e.sum(axis=2, keepdims=True)


def authors_toy_value(game: MarkovGame, x: object) -> float:
    """The leader objective ``F`` as the released DiscreteToy code computes it: the joint
    chain evaluated under :func:`authors_toy_follower` (follower observes ``(s, aL)``)."""
    if game.observes != OBSERVES_STATE_AND_LEADER_ACTION:
        raise ValueError("observes: the authors' toy follower observes (s, aL)")
    x = _validate.parameter_vector("x", x, game.n_params)
    piL = leader_policy(game, x)
    joint = piL[:, :, None] * authors_toy_follower(game, x)     # [s, aL, aF]
    P_joint = np.einsum("slf,slft->st", joint, game.transitions)
    r_joint = np.sum(joint * game.leader_reward, axis=(1, 2))
    gL = game.gamma if game.leader_gamma is None else game.leader_gamma
    v = np.linalg.solve(np.eye(P_joint.shape[0]) - gL * P_joint, r_joint)
    return float(game.initial @ v)


#: Wrong followers: name -> (policy function, objective function).
FOLLOWER_MUTANTS: dict[str, tuple[Callable[..., np.ndarray], Callable[..., float]]] = {
    "authors-toy-follower": (authors_toy_follower, authors_toy_value),
}
