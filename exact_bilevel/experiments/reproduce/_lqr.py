"""The leader's gradient loop on a soft-LQR problem, scored by the exact objective."""

from __future__ import annotations

import pathlib

import numpy as np

from ...core.errors import require_finite
from ...core.streams import LEADER_STEP, purpose_sequence
from ...lqr import estimators as lqr_estimators
from ...lqr.hypergradient import hypergradient
from ...lqr.model import LQRProblem
from ..optimize import adam
from ._common import atomic_write, mean_se, pm, save_figure


def clip_norm(g: np.ndarray, max_norm: float) -> np.ndarray:
    """``g`` scaled to norm at most ``max_norm`` (optax ``clip_by_global_norm``)."""
    norm = float(np.linalg.norm(g))
    return g if norm <= max_norm else g * (max_norm / norm)


def leader_ascent(problem: LQRProblem, x0: np.ndarray, *, steps: int, lr: float, method: str,
                  budget: int, seed: int, optimizer: str = "sgd", max_norm: float = 1.0,
                  critic: str = "monte-carlo", actor_steps: int = 1, warmup: int = 0,
                  warmup_behaviour: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient *ascent* on ``F`` with the exact hypergradient (``method="exact"``) or an
    estimator of :mod:`exact_bilevel.lqr.estimators` from ``budget`` transitions per update.

    Each of the ``steps`` iterations takes ``actor_steps`` updates (the BC-HG authors'
    ``actor_update_steps_n``), each with a fresh gradient at the current ``x``, clipped to
    norm ``max_norm`` and applied by SGD or by
    :func:`exact_bilevel.experiments.optimize.adam` (betas 0.9/0.999, eps 1e-8, as
    torch; its step counter counts updates). In the first ``warmup`` iterations an
    estimator draws the leader's actions from ``warmup_behaviour = (K_b, Sigma_b)``
    (:func:`exact_bilevel.lqr.estimators.estimate_many`; the exact gradient uses no data
    and is unchanged). Returns ``(F(x_k) exact, |grad F(x_k)|, x_k[steps + 1, d])`` for
    ``k = 0..steps``.
    """
    if isinstance(actor_steps, bool) or not isinstance(actor_steps, int) or actor_steps < 1:
        raise ValueError(f"actor_steps = {actor_steps!r}: must be an integer >= 1")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup = {warmup!r}: must be an integer >= 0")
    x = np.array(x0, dtype=float)
    values, norms, xs = [], [], []
    rule = adam(lr) if optimizer == "adam" else (lambda t, g: lr * g)
    update = 0
    for k in range(steps + 1):
        hg = hypergradient(problem, x)
        values.append(hg.value)
        norms.append(float(np.linalg.norm(hg.gradient)))
        xs.append(x.copy())
        if k == steps:
            break
        behaviour = warmup_behaviour if k < warmup else None
        for j in range(actor_steps):
            if method == "exact":
                g = hg.gradient if j == 0 else hypergradient(problem, x).gradient
            else:
                index = (k,) if actor_steps == 1 else (k, j)
                g = lqr_estimators.estimate(
                    problem, x, method, budget, seed=purpose_sequence(seed, LEADER_STEP, *index),
                    critic=critic, leader_behaviour=behaviour)
            x = x + rule(update, clip_norm(g, max_norm))
            update += 1
    out = np.array(values), np.array(norms), np.array(xs)
    require_finite("exact F along the run", out[0], f"the {method} run")
    return out


def curve_row(runs: list[np.ndarray], steps: int) -> str:
    """``F at step 0 | F at the end +- se | score (mean of the last 10%) +- se`` over seeds."""
    for v in runs:
        require_finite("exact F along a run", v, "the leader loop")
    f0, _ = mean_se([v[0] for v in runs])
    fe, fse = mean_se([v[-1] for v in runs])
    k = max(1, round(0.1 * steps))
    sc, sse = mean_se([float(np.mean(v[-k:])) for v in runs])
    return f"{f0:.6g} | {pm(fe, fse, '.6g', '.2g')} | {pm(sc, sse, '.6g', '.2g')}"


def finish(fig: object, ax: object, reference: float, reference_label: str, lines: list[str],
           deviations: list[str], out: pathlib.Path, stem: str) -> str:
    """Label and save the figure, append the deviations, write the table; return its text."""
    ax.axhline(reference, color="k", ls=":", label=reference_label)  # type: ignore[attr-defined]
    ax.set_xlabel("leader iteration")  # type: ignore[attr-defined]
    ax.set_ylabel("exact leader objective F (mean over seeds)")  # type: ignore[attr-defined]
    ax.legend(fontsize=7)  # type: ignore[attr-defined]
    fig.tight_layout()  # type: ignore[attr-defined]
    save_figure(fig, out / f"reproduce_{stem}.png")
    lines += ["", "## Deviations from the authors' runs", ""] + [f"- {d}" for d in deviations]
    text = "\n".join(lines) + "\n"
    atomic_write(out / f"reproduce_{stem}.md", text)
    return text
