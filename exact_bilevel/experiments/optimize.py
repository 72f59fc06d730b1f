r"""Leader optimisation: ascent on ``F(x)`` with the follower re-solved exactly each step.

.. math:: x_{t+1} = \Pi_{[lo, hi]}\big(x_t \pm \eta_t\, \mathrm{clip}(\hat g_t)\big),

``hat g_t`` from any :data:`GradientSource` — the exact hypergradient
(:func:`exact_gradient`) or a sample-based estimator (:func:`estimator_gradient`)
— with ``clip`` rescaling to at most ``clip_norm`` and ``Pi`` the projection on
optional box bounds. Each step re-solves the follower at ``x_t`` (Newton, warm-
started from the previous value function) and records the exact ``F(x_t)``,
``|grad F(x_t)|`` and, for an estimator, the relative error of its estimate —
the reference curve none of the papers had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core import _validate
from ..core._progress import progress_bar
from ..core.hypergradient import Hypergradient, hypergradient
from ..core.problem import BilevelProblem
from ..core.streams import LEADER_STEP, purpose_rng
from ..estimators import estimate, leader_knowledge

GradientSource = Callable[[BilevelProblem, Hypergradient, np.random.Generator],
                          tuple[np.ndarray, int]]
"""``(problem, exact, rng) -> (gradient estimate [d], transitions used)``; ``exact``
is the exact :class:`Hypergradient` at the current ``x`` (with its follower state)."""


def exact_gradient() -> GradientSource:
    """The exact hypergradient (0 transitions)."""
    def source(problem: BilevelProblem, exact: Hypergradient,
               rng: np.random.Generator) -> tuple[np.ndarray, int]:
        return exact.gradient, 0
    return source


def estimator_gradient(name: str, budget: int, critic: str | None = None) -> GradientSource:
    """A sample-based estimate by estimator ``name`` from ``budget`` transitions per step."""
    def source(problem: BilevelProblem, exact: Hypergradient,
               rng: np.random.Generator) -> tuple[np.ndarray, int]:
        know = leader_knowledge(problem, exact.state.x, state=exact.state)
        e = estimate(problem, exact.state.x, name, budget, rng, critic, know)
        return e.gradient, e.transitions
    return source


UpdateRule = Callable[[int, np.ndarray], np.ndarray]
"""``(t, direction) -> step`` added to ``x`` (may keep state across calls)."""


def adam(lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8) -> UpdateRule:
    """Adam (Kingma & Ba 2015) with bias correction; a fresh state per call of this factory."""
    m: np.ndarray | None = None
    v: np.ndarray | None = None

    def rule(t: int, g: np.ndarray) -> np.ndarray:
        nonlocal m, v
        if m is None or v is None:
            m, v = np.zeros_like(g), np.zeros_like(g)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        mhat, vhat = m / (1 - beta1 ** (t + 1)), v / (1 - beta2 ** (t + 1))
        return lr * mhat / (np.sqrt(vhat) + eps)
    return rule


def constant(step: float) -> Callable[[int], float]:
    """``eta_t = step``."""
    return lambda t: step


def inverse_sqrt(step: float) -> Callable[[int], float]:
    """``eta_t = step / sqrt(t + 1)``."""
    return lambda t: step / np.sqrt(t + 1.0)


@dataclass(frozen=True)
class OptimizationResult:
    """Trajectory of a leader optimisation.

    Arrays have one entry per step ``t = 0..steps`` (the last is the final ``x``
    with no update): ``x[t, d]``, exact ``value[t] = F(x_t)``, exact
    ``grad_norm[t] = |grad F(x_t)|``, ``estimate_error[t] = |g_hat - grad F| /
    |grad F|`` (``nan`` at the last entry), ``transitions[t]`` used at step ``t``.
    """

    x: np.ndarray
    value: np.ndarray
    grad_norm: np.ndarray
    estimate_error: np.ndarray
    transitions: np.ndarray

    @property
    def final_x(self) -> np.ndarray:
        return self.x[-1]


def optimize(problem: BilevelProblem, x0: object, *, steps: int,
             step_size: float | Callable[[int], float] | None = None,
             update: UpdateRule | None = None,
             gradient: GradientSource | None = None, maximize: bool = True,
             clip_norm: float | None = None,
             bounds: tuple[object, object] | None = None, seed: int = 0,
             progress: bool = False) -> OptimizationResult:
    """Run ``steps`` of projected (clipped) gradient ascent (or descent) on ``F``.

    Parameters
    ----------
    problem : BilevelProblem
    x0 : array_like, shape (d,)
    steps : int
        Number of updates.
    step_size : float or callable
        ``eta_t``; a float means :func:`constant`. Give this or ``update``.
    update : callable, optional
        An :data:`UpdateRule` (e.g. :func:`adam`) replacing ``eta_t * direction``.
    gradient : GradientSource, optional
        Default :func:`exact_gradient`.
    maximize : bool
        Ascent (the leader maximises its return) or descent (e.g. the SoBiRL loss).
    clip_norm : float, optional
        Rescale the step direction to Euclidean norm at most ``clip_norm``.
    bounds : (lo, hi), optional
        Box constraints, scalars or ``[d]`` arrays; iterates are projected.
    seed : int
        Step ``t`` samples with ``purpose_rng(seed, LEADER_STEP, t)``
        (:mod:`exact_bilevel.core.streams`).
    progress : bool
        Show a progress bar (on a terminal).
    """
    x = problem.check_x(x0).copy()
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps = {steps!r}: must be an integer >= 0")
    if (step_size is None) == (update is None):
        raise ValueError("step_size / update: give exactly one")
    if update is None:
        schedule = constant(_validate.real_scalar("step_size", step_size)) \
            if not callable(step_size) else step_size

        def update(t: int, direction: np.ndarray) -> np.ndarray:
            return schedule(t) * direction
    source = gradient if gradient is not None else exact_gradient()
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm = {clip_norm}: must be > 0")
    lo = hi = None
    if bounds is not None:
        lo = np.broadcast_to(np.asarray(bounds[0], dtype=float), x.shape)
        hi = np.broadcast_to(np.asarray(bounds[1], dtype=float), x.shape)
        if np.any(lo > hi):
            raise ValueError("bounds: lower bound exceeds upper bound")
        x = np.clip(x, lo, hi)
    sign = 1.0 if maximize else -1.0
    xs, values, norms, errors, used = [], [], [], [], []
    v_prev = None
    for t in progress_bar(range(steps + 1), desc="leader steps", enabled=progress):
        state = problem.follower_state(x, v0=v_prev)
        v_prev = state.solution.v
        exact = hypergradient(problem, x, state=state)
        xs.append(x.copy())
        values.append(float(exact.value))
        gnorm = float(np.linalg.norm(exact.gradient))
        norms.append(gnorm)
        if t == steps:
            errors.append(np.nan)
            used.append(0)
            break
        g, n = source(problem, exact, purpose_rng(seed, LEADER_STEP, t))
        errors.append(float(np.linalg.norm(g - exact.gradient) / gnorm) if gnorm > 0
                      else float(np.linalg.norm(g)))
        used.append(int(n))
        direction = sign * np.asarray(g, dtype=float)
        if clip_norm is not None:
            norm = np.linalg.norm(direction)
            if norm > clip_norm:
                direction = direction * (clip_norm / norm)
        x = x + update(t, direction)
        if lo is not None:
            x = np.clip(x, lo, hi)
    return OptimizationResult(x=np.array(xs), value=np.array(values),
                              grad_norm=np.array(norms), estimate_error=np.array(errors),
                              transitions=np.array(used))
