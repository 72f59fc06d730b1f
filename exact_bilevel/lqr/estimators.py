r"""Sample-based hypergradient estimators for Gaussian (soft-LQR) followers.

From ``N = budget // T`` episodes of :mod:`exact_bilevel.lqr.sampling` (``budget``
counts transitions), with discounted returns-to-go
``G_t = sum_{k >= t} gamma_L^k r_k`` (``G_T = 0``)::

    g = Gamma * d(-sum_k w_k z_k^2)/dx                               (parameter cost)
      + mean_i sum_t (G_t - b_t)   [ d log N(a_t; K_L s_t, Sigma_L)   (leader's action score)
                                   + d log pi(u_t | s_t, a_t) ]       (follower's policy score)
      + mean_i sum_t (G_{t+1} - b_{t+1}) d log N(s_{t+1}; A s_t + B u_t + C a_t, W)

* ``bc-hg`` — the policy score by the Boltzmann covariance identity
  ``d log pi = (dQ_F - E_pi dQ_F) / tau`` with the follower's exact soft-Q gradient
  (Kudo et al. 2026, Prop. 1 and Eq. 9, for Gaussian policies); ``b = 0``.
  Unbiased for the finite-horizon ``F``.
* ``bc-hg-baseline`` — the same with ``b_t`` the leave-one-out mean of ``G_t`` over
  the other episodes (independent of episode ``i``: still unbiased; needs N >= 2).
* ``direct-only`` — no follower policy score (the naive estimator: biased by the
  indirect term).
* ``bc-hg-authors-clip`` — ``bc-hg`` with each transition's score clipped to norm 1
  before weighting, as the authors' BuildingThermalControl code does
  (``transition_logprob_grad_clip: 1.0``): *biased*; its bias is measured exactly by
  ``exact-bilevel reproduce building-thermal``.

* ``zeroth-order`` — two-point Gaussian smoothing of the *sampled* return:
  ``(F_hat(x + mu u) - F_hat(x - mu u)) / (2 mu) u``, ``u ~ N(0, I)``, each ``F_hat`` the
  mean discounted return of half the episodes with the follower re-solved at the
  perturbed point (the leader deploys ``x +- mu u``), the two halves driven by common
  random numbers (the same noise draws; a simulator's variance reduction that keeps
  each side unbiased). Unbiased for ``grad F_mu`` (the
  gradient of ``F_mu(x) = E_u F(x + mu u)``, :func:`smoothed_gradient`), not for
  ``grad F``; needs no derivative of anything.

Mutants (deliberately wrong, for the power of the tests): ``mutant:no-centring``
(``dQ_F / tau``), ``mutant:tau-not-inverse`` (``tau (dQ_F - E dQ_F)``),
``mutant:sign-flip`` (``-(...)``).

Replicates: :func:`replicates` (replicate ``i`` on its own stream ``replicate_sequence(seed,
i)``, the CLI's rule) and :func:`estimate_many` (one generator read in turn) walk the
episodes of all replicates together (:func:`.sampling.rollouts`), each replicate reading
the same normals as a single :func:`estimate` would, so the numbers are unchanged.

A score is only formed for what depends on ``x``: the leader-action score needs a
positive definite ``Sigma_L`` when ``K_L`` depends on ``x``, the transition score a
positive definite ``W`` when ``A``, ``B`` or ``C`` do (a ``ValueError`` says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg

from ..core._budget import check_allocation
from ..core.streams import replicate_sequence
from .model import LQRInstance, LQRProblem
from .objective import ClosedLoop, follower_closed_loop
from .riccati import solve_soft_lqr, sym
from .sampling import Rollouts, rollout_normals, rollouts
from .sensitivities import follower_sensitivities, soft_q_gradient

ScoreRule = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _bchg(dq: np.ndarray, dq_bar: np.ndarray, tau: float) -> np.ndarray:
    return (dq - dq_bar) / tau


RULES: dict[str, ScoreRule | None] = {
    "bc-hg": _bchg,
    "bc-hg-baseline": _bchg,
    "direct-only": None,
    "mutant:no-centring": lambda dq, dq_bar, tau: dq / tau,
    "mutant:tau-not-inverse": lambda dq, dq_bar, tau: (dq - dq_bar) * tau,
    "mutant:sign-flip": lambda dq, dq_bar, tau: -(dq - dq_bar) / tau,
}
RULES["bc-hg-authors-clip"] = _bchg
#: Per-sample norm clip of the transition score, by estimator.
TRANSITION_SCORE_CLIP = {"bc-hg-authors-clip": 1.0}
ESTIMATORS = ("bc-hg", "bc-hg-baseline", "direct-only", "bc-hg-authors-clip", "zeroth-order")
#: Smoothing radius ``mu`` of ``zeroth-order`` (in ``x`` units).
SMOOTHING = 0.05
MUTANTS = tuple(k for k in RULES if k.startswith("mutant:"))


def _pd_factor(name: str, S: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cholesky factor of a covariance whose Gaussian score is needed (clear error if not PD)."""
    try:
        return np.linalg.cholesky(S), True
    except np.linalg.LinAlgError:
        raise ValueError(f"{name}: must be positive definite for the score of its Gaussian "
                         "(it depends on x); the likelihood-ratio estimators need a "
                         "density") from None


def _solve_rows(factor: tuple[np.ndarray, bool], rhs: np.ndarray) -> np.ndarray:
    """``rhs[N, k] S^{-1}`` (rows solved against the factorised ``S``)."""
    return scipy.linalg.cho_solve(factor, rhs.T).T


CRITICS = ("monte-carlo", "exact")


def leader_critic(problem: LQRProblem, cl: ClosedLoop, z: np.ndarray, T: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    r"""The leader's exact finite-horizon value ``V_h(s) = -s' Pi[h] s + c[h]`` (``h`` steps
    to go, ``h = 0..T``) for a *quadratic* leader reward::

        Pi[h] = Q_L + K_bar' R_L K_bar + gamma_L F' Pi[h-1] F,
        c[h]  = -tr(R_L Sigma_uu0) - sum_k w_k z_k^2 + gamma_L (c[h-1] - tr(Pi[h-1] N))

    Shapes ``Pi[T + 1, n, n]``, ``c[T + 1]``.
    """
    lr = problem.leader
    if lr.bump_weight != 0.0 or lr.hinge_weight != 0.0:
        raise ValueError("critic = 'exact': needs a quadratic leader reward (no bump or hinge "
                         "term); use critic='monte-carlo'")
    n = cl.F.shape[0]
    QK = lr.Q_L + cl.K_bar.T @ lr.R_L @ cl.K_bar
    stage_c = -np.trace(lr.R_L @ cl.Sigma_uu0) - float(np.sum(lr.cost_weight * z * z))
    Pi = np.zeros((T + 1, n, n))
    c = np.zeros(T + 1)
    g = problem.gamma_L
    for h in range(1, T + 1):
        Pi[h] = sym(QK + g * cl.F.T @ Pi[h - 1] @ cl.F)
        c[h] = stage_c + g * (c[h - 1] - np.trace(Pi[h - 1] @ cl.N))
    return Pi, c


def _weights_exact(problem: LQRProblem, inst: LQRInstance, Pi: np.ndarray, c: np.ndarray,
                   ro: Rollouts, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample weights of the policy scores (``gamma_L^t (Q - V)``) and of the transition
    scores (``gamma_L^{t+1} (V(s_{t+1}) - E[V(s_{t+1}) | s_t, a_t, u_t])``), each ``[N, T]``
    (the leader's discount ``gamma_L``; :ref:`docs/math.md, section 8 <math-lqr>`)."""
    g = problem.gamma_L
    disc = g ** np.arange(T)
    s, s1 = ro.s[:, :T], ro.s[:, 1:]
    m = s @ inst.A.T + ro.u @ inst.B.T + ro.a @ inst.C.T           # E[s_{t+1} | s, a, u]
    Pn = Pi[T - 1 - np.arange(T)]                                    # Pi[h - 1], h = T - t
    Ph = Pi[T - np.arange(T)]
    cn = c[T - 1 - np.arange(T)]
    EV1 = -(np.einsum("Nti,tij,Ntj->Nt", m, Pn, m) + np.einsum("tij,ji->t", Pn, inst.W)) + cn
    Q = ro.r + g * EV1
    V = -np.einsum("Nti,tij,Ntj->Nt", s, Ph, s) + c[T - np.arange(T)]
    V1 = -np.einsum("Nti,tij,Ntj->Nt", s1, Pn, s1) + cn
    return disc * (Q - V), g * disc * (V1 - EV1)


#: Most float64 entries (rollout arrays and normals) of the replicates walked together;
#: more replicates are walked in consecutive chunks (same numbers: each reads its own
#: normals).
CHUNK_ENTRIES = 4_000_000


def _episodes(problem: LQRProblem, estimator: str, budget: int, n_replicates: int,
              critic: str, smoothing: float,
              leader_behaviour: tuple[np.ndarray, np.ndarray] | None) -> int:
    """Validate a call; the episodes ``N = budget // T`` of one estimate."""
    if estimator not in RULES and estimator != "zeroth-order":
        raise ValueError(f"estimator = {estimator!r}: must be one of "
                         f"{sorted([*RULES, 'zeroth-order'])}")
    if critic not in CRITICS:
        raise ValueError(f"critic = {critic!r}: must be one of {CRITICS}")
    if leader_behaviour is not None and (critic != "monte-carlo" or estimator == "zeroth-order"):
        raise ValueError("leader_behaviour: only with critic='monte-carlo' and a score estimator")
    T = problem.horizon
    if T is None:
        raise ValueError("horizon: the estimators need a finite-horizon problem")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < T:
        raise ValueError(f"budget = {budget!r}: must be an integer >= the horizon {T}")
    if (isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer))
            or n_replicates < 1):
        raise ValueError(f"replicates = {n_replicates!r}: must be a positive integer")
    N = int(budget) // T
    if estimator == "bc-hg-baseline" and critic == "monte-carlo" and N < 2:
        raise ValueError(f"budget = {budget}: bc-hg-baseline needs >= 2 episodes (2 T = {2 * T})")
    check_allocation("estimates", (n_replicates, problem.d))
    if estimator == "zeroth-order":
        if N < 2:
            raise ValueError(f"budget = {budget}: zeroth-order needs >= 2 episodes "
                             f"(2 T = {2 * T}), half at x + mu u and half at x - mu u")
        if not (np.isfinite(smoothing) and smoothing > 0):
            raise ValueError(f"smoothing = {smoothing!r}: must be a finite number > 0")
    return N


def estimate_many(problem: LQRProblem, x: object, estimator: str, budget: int,
                  replicates: int, seed: int | np.random.SeedSequence | np.random.Generator = 0, *,
                  critic: str = "monte-carlo", smoothing: float = SMOOTHING,
                  leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None,
                  progress: Callable[[int], object] | None = None) -> np.ndarray:
    """``replicates`` independent estimates, shape ``[replicates, d]`` (module docstring).

    The replicates read one generator ``numpy.random.default_rng(seed)`` in turn: replicate
    ``i`` its next :func:`~.sampling.rollout_normals` standard normals (``zeroth-order``: its
    direction ``u`` and the seed of its common random numbers), so the result equals ``R``
    consecutive calls of :func:`estimate` on that one generator, bit for bit. The episodes
    of all replicates are walked together (:func:`estimates_from_generators`).

    ``leader_behaviour = (K_b[p, n], Sigma_b[p, p])`` draws the leader's actions from
    ``N(K_b s, Sigma_b)`` instead of its own policy (:func:`.sampling.rollout`) while every
    score and weight is formed as if the data were on-policy: off-policy data used as the
    BC-HG authors use their random warm-up data; without importance weights this is not
    an unbiased estimate of ``grad F`` (Monte-Carlo critic only).

    ``critic="monte-carlo"`` weights the scores by sampled returns-to-go (any leader
    reward); ``critic="exact"`` by the exact leader critic of :func:`leader_critic`
    (``Q - V`` and ``V(s') - E V(s')``: same mean, far smaller variance; quadratic
    leader rewards only). ``smoothing`` is ``zeroth-order``'s ``mu``; ``progress(k)`` is
    called after each ``k`` replicates done.
    """
    _episodes(problem, estimator, budget, replicates, critic, smoothing, leader_behaviour)
    rng = np.random.default_rng(seed)
    return estimates_from_generators(problem, x, estimator, budget, [rng] * int(replicates),
                                     critic=critic, smoothing=smoothing,
                                     leader_behaviour=leader_behaviour, progress=progress)


def replicates(problem: LQRProblem, x: object, estimator: str, budget: int,
               n_replicates: int, seed: int, *, key: tuple[int, ...] = (),
               critic: str = "monte-carlo", smoothing: float = SMOOTHING,
               leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None,
               progress: Callable[[int], object] | None = None) -> np.ndarray:
    """``n_replicates`` independent estimates ``[R, d]``, replicate ``i`` drawing from its own
    stream :func:`~exact_bilevel.core.streams.replicate_sequence` ``(seed, i, key)`` (rule
    ``spawn-key/2``): row ``i`` is ``estimate(problem, x, estimator, budget,
    seed=replicate_sequence(seed, i, key))``, bit for bit, and all replicates' episodes are
    walked together (:func:`estimates_from_generators`). Each estimate bills
    ``(budget // T) T`` transitions. Options as :func:`estimate_many`."""
    _episodes(problem, estimator, budget, n_replicates, critic, smoothing, leader_behaviour)
    gens = [np.random.default_rng(replicate_sequence(seed, i, key))
            for i in range(int(n_replicates))]
    return estimates_from_generators(problem, x, estimator, budget, gens, critic=critic,
                                     smoothing=smoothing, leader_behaviour=leader_behaviour,
                                     progress=progress)


def estimates_from_generators(problem: LQRProblem, x: object, estimator: str, budget: int,
                              generators: Sequence[np.random.Generator], *,
                              critic: str = "monte-carlo", smoothing: float = SMOOTHING,
                              leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None,
                              progress: Callable[[int], object] | None = None) -> np.ndarray:
    """Estimates ``[R, d]``, replicate ``i`` reading ``generators[i]`` exactly as
    :func:`estimate` reads its generator (a generator listed several times serves its
    replicates in turn, in list order), all replicates walked together.

    Per chunk of replicates (at most :data:`CHUNK_ENTRIES` rollout entries): each
    replicate's :func:`~.sampling.rollout_normals` standard normals are drawn from its
    generator up front, in the order :func:`.sampling.rollout` reads them; the episodes of
    the chunk are walked time-major with stacked matrix products
    (:func:`.sampling.rollouts`); each replicate's scores and weights are then reduced on
    its own rows with the single-estimate code. Hence row ``i`` equals the single estimate,
    bit for bit. ``zeroth-order``: each replicate's direction and common-random-number seed
    are drawn first, in replicate order; its two half-rollouts at ``x +- mu u`` (a
    different follower per replicate) are walked together the same way.
    """
    R = len(generators)
    for i, g in enumerate(generators):
        if not isinstance(g, np.random.Generator):
            raise ValueError(f"generators[{i}]: must be a numpy.random.Generator, got "
                             f"{type(g).__name__}")
    N = _episodes(problem, estimator, budget, R, critic, smoothing, leader_behaviour)
    x = problem.check_x(x)
    if estimator == "zeroth-order":
        return _zeroth_order(problem, x, N, generators, smoothing, progress)
    T = problem.horizon
    z = problem.z(x)
    inst = problem.instance(x)
    sol = solve_soft_lqr(inst)
    sens = follower_sensitivities(problem, x, inst, sol)
    cl = follower_closed_loop(inst, sol)
    Pi, c = leader_critic(problem, cl, z, T) if critic == "exact" else (None, None)
    df = sens.dfields
    need_a = bool(np.any(df["K_L"]))
    need_trans = bool(np.any(df["A"]) or np.any(df["B"]) or np.any(df["C"]))
    chol_L = _pd_factor("Sigma_L", inst.Sigma_L) if need_a else None
    chol_W = _pd_factor("W", inst.W) if need_trans else None
    Gam = float(np.sum(problem.gamma_L ** np.arange(T)))
    param_cost = -2.0 * Gam * problem.leader.cost_weight * z * problem.dz_dx(x)
    rule = RULES[estimator]
    check_allocation("scores of one estimate [N T, d]", (3, N * T, problem.d))
    out = np.empty((R, problem.d))
    disc = problem.gamma_L ** np.arange(T)
    n, m, p = problem.n, problem.m, problem.p
    K = rollout_normals(problem, N)
    for lo, hi in _chunks(R, N * (T + 1) * (n + m + p + 1) + K):
        _check_chunk(hi - lo, N, T, n + m + p + 1, K)
        noise = np.stack([g.standard_normal(K) for g in generators[lo:hi]])
        batch = rollouts(problem, [inst], [sol], [z], N, noise,
                         leader_behaviour=leader_behaviour)
        for rep in range(lo, hi):
            j = rep - lo
            ro = Rollouts(batch.s[j], batch.a[j], batch.u[j], batch.r[j])
            s, a, u = (ro.s[:, :T].reshape(N * T, n), ro.a.reshape(N * T, p),
                       ro.u.reshape(N * T, m))
            if critic == "exact":
                Gt, Gt1 = _weights_exact(problem, inst, Pi, c, ro, T)
            else:
                Gt = np.cumsum((ro.r * disc)[:, ::-1], axis=1)[:, ::-1]          # [N, T]
                Gt1 = np.concatenate([Gt[:, 1:], np.zeros((N, 1))], axis=1)      # G_{t+1}
                if estimator == "bc-hg-baseline":
                    Gt = Gt - (Gt.sum(0, keepdims=True) - Gt) / (N - 1)
                    Gt1 = Gt1 - (Gt1.sum(0, keepdims=True) - Gt1) / (N - 1)
            score = np.zeros((N * T, problem.d))
            if need_a:
                resid = a - s @ inst.K_L.T
                score += np.einsum("Ni,ijk,Nj->Nk", _solve_rows(chol_L, resid),
                                   df["K_L"], s)
            if rule is not None:
                dq, dq_bar = soft_q_gradient(inst, sol, sens, s, a, u)
                score += rule(dq, dq_bar, inst.tau)
            g = np.einsum("Nt,Ntk->k", Gt, score.reshape(N, T, -1)) / N
            if need_trans:
                s1 = ro.s[:, 1:].reshape(-1, n)
                xi = s1 - (s @ inst.A.T + u @ inst.B.T + a @ inst.C.T)
                dmean = (np.einsum("ijk,Nj->Nik", df["A"], s)
                         + np.einsum("ijk,Nj->Nik", df["B"], u)
                         + np.einsum("ijk,Nj->Nik", df["C"], a))
                tscore = np.einsum("Ni,Nik->Nk", _solve_rows(chol_W, xi), dmean)
                clip = TRANSITION_SCORE_CLIP.get(estimator)
                if clip is not None:
                    norms = np.linalg.norm(tscore, axis=1, keepdims=True)
                    tscore = tscore * np.minimum(1.0, clip / np.maximum(norms, 1e-300))
                g = g + np.einsum("Nt,Ntk->k", Gt1, tscore.reshape(N, T, -1)) / N
            out[rep] = g + param_cost
        if progress is not None:
            progress(hi - lo)
    return out


def _check_chunk(R: int, N: int, T: int, width: int, K: int) -> None:
    """The memory of ``R`` replicates walked together, before anything is drawn: their
    normals ``[R, K]`` and rollout arrays ``[R, N, T + 1, n + m + p + 1]``."""
    check_allocation("standard normals of the replicates walked together [R, K]", (R, K))
    check_allocation("rollout states [R, N, T + 1, n + m + p + 1]", (R, N, T + 1, width))


def _chunks(R: int, entries: int) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` replicate ranges of at most :data:`CHUNK_ENTRIES` entries
    (``entries`` per replicate; at least one replicate a chunk)."""
    per = max(1, CHUNK_ENTRIES // max(1, entries))
    return [(lo, min(R, lo + per)) for lo in range(0, R, per)]


def _zeroth_order(problem: LQRProblem, x: np.ndarray, N: int,
                  generators: Sequence[np.random.Generator], smoothing: float,
                  progress: Callable[[int], object] | None) -> np.ndarray:
    """``(F_hat(x + mu u) - F_hat(x - mu u)) / (2 mu) u`` per replicate, each ``F_hat`` the
    mean discounted return of ``N // 2`` episodes (follower solved at the deployed point),
    both sides reading the normals of ``default_rng(c)`` (``c`` drawn after ``u``)."""
    R, d, T = len(generators), problem.d, problem.horizon
    half = N // 2
    K = rollout_normals(problem, half)
    disc = problem.gamma_L ** np.arange(T)
    out = np.empty((R, d))
    n, m, p = problem.n, problem.m, problem.p
    for lo, hi in _chunks(R, 2 * half * (T + 1) * (n + m + p + 1) + K):
        _check_chunk(hi - lo, half, T, n + m + p + 1, K)
        dirs, crn = [], []
        for g in generators[lo:hi]:
            dirs.append(g.standard_normal(d))
            crn.append(int(g.integers(2**63)))                 # common random numbers
        noise = np.stack([np.random.default_rng(c).standard_normal(K) for c in crn])
        f = []
        for pts in ([x + smoothing * u for u in dirs], [x - smoothing * u for u in dirs]):
            insts = [problem.instance(y) for y in pts]
            ro = rollouts(problem, insts, [solve_soft_lqr(i) for i in insts],
                          [problem.z(y) for y in pts], half, noise)
            f.append([float(np.mean(ro.r[j] @ disc)) for j in range(hi - lo)])
        for j, u in enumerate(dirs):
            out[lo + j] = (f[0][j] - f[1][j]) / (2.0 * smoothing) * u
        if progress is not None:
            progress(hi - lo)
    return out


def smoothed_gradient(problem: LQRProblem, x: object, smoothing: float = SMOOTHING,
                      order: int = 10) -> np.ndarray:
    r"""``grad F_mu(x) = E_u[(F(x + mu u) - F(x - mu u)) / (2 mu) u]``, ``u ~ N(0, I_d)``, exactly
    (tensor Gauss-Hermite quadrature with ``order`` nodes per coordinate, exact ``F``):
    the target of ``zeroth-order``. Shape ``[d]``; ``order^d <= 1e5``."""
    from .objective import value

    x = problem.check_x(x)
    d = problem.d
    if order**d > 100_000:
        raise ValueError(f"order = {order}: order^d = {order**d} quadrature points exceed 1e5")
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    weights = weights / np.sqrt(2.0 * np.pi)
    grid = np.stack(np.meshgrid(*([nodes] * d), indexing="ij"), -1).reshape(-1, d)
    w = np.prod(np.stack(np.meshgrid(*([weights] * d), indexing="ij"), -1).reshape(-1, d), 1)
    diffs = np.array([(value(problem, x + smoothing * u) - value(problem, x - smoothing * u))
                      / (2.0 * smoothing) for u in grid])
    return (w * diffs) @ grid


def estimate(problem: LQRProblem, x: object, estimator: str = "bc-hg", budget: int = 10_000,
             seed: int | np.random.SeedSequence | np.random.Generator = 0, *,
             critic: str = "monte-carlo",
             leader_behaviour: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One estimate of ``grad F(x)``, shape ``[d]``, from ``budget`` transitions
    (``leader_behaviour`` as in :func:`estimate_many`), reading
    ``numpy.random.default_rng(seed)`` (a ``Generator`` is read in place: consecutive
    calls on one generator give :func:`estimate_many`'s replicates)."""
    return estimate_many(problem, x, estimator, budget, 1, seed, critic=critic,
                         leader_behaviour=leader_behaviour)[0]
