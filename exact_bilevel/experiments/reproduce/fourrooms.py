r"""FourRooms incentive design (Kudo et al. 2026) with the authors' protocol, scored exactly.

Problem: :func:`~exact_bilevel.experiments.paper_problems.four_rooms_design` with
the official conventions (transition matrix 0.56 / 0.1467, terminal goal, cost
counting the goal's share; ``F(0) = -0.740644`` at ``tau = 0.001``).

Protocol (the authors' public code (akimotolab/BC-HG), the official code): SGD with global-norm
clipping 1.0, learning rate the best of a grid per method, initial logits
``N(0, 0.01^2)`` per seed, a budget of transitions per leader step, the SARSA
leader critic carried across steps, Monte Carlo ``dQ``; score = the exact ``F``
averaged over the last 10% of the steps, mean and standard error over seeds.
Every row is scored by the exact objective, whatever gradient drove it.

Deviations of this comparison (stated in the output): our sampler draws
discount-terminated episodes (continuation 0.99, unbiased for the infinite-horizon
sums), where the official code hands each leader step a window of ``budget`` steps
from 1-5 parallel environments (reset at each leader step; 200-step episodes ending at
the goal; fragment sums cut at the window's end); the SARSA step size is fixed at 0.5
(the authors tune it in {0.1, ..., 1.0}).

``--full`` (a run of :data:`~.fourrooms_paper.STEPS` steps or more) runs the paper's
protocol instead, with the official windows and estimators
(:mod:`.fourrooms_paper`): its section of ``reproduce_fourrooms.md`` sits between
markers that this comparison's regeneration keeps.
"""

from __future__ import annotations

import pathlib

import numpy as np

from ...core.errors import require_finite
from ...core.streams import INITIAL_POINT, purpose_rng
from ...estimators import leader_knowledge
from ...estimators.critics import CarriedSarsaCritic
from ...estimators.registry import ESTIMATORS
from ...estimators.sampling import Sampler
from ..optimize import GradientSource, adam, optimize
from ..paper_problems import four_rooms_design
from . import fourrooms_paper as paper
from ._common import RunSize, atomic_write, mean_se, plt, pm, run_all, save_figure, score

QUICK = RunSize(steps=40, seeds=2, budgets=(100, 1000), learning_rates=(0.5,),
                label="quick (CI-sized: 40 steps, 2 seeds, lr 0.5 only)")
FULL = RunSize(steps=10_000, seeds=10, budgets=(100, 200, 400, 1000),
               learning_rates=(0.5, 0.1, 0.05, 0.01),
               label="full (the paper's protocol: official windows, 4 rows, lr by a pilot)")

#: (label, estimator or "exact", critic, sampling kernel); "sarsa" = carried SARSA table.
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("exact gradient, SGD (official optimiser)", "exact", "", "matrix"),
    ("exact gradient, Adam", "exact-adam", "", "matrix"),
    ("bc-hg, SARSA critic (as the authors)", "bc-hg", "sarsa", "matrix"),
    ("bc-hg, exact critic", "bc-hg", "exact", "matrix"),
    ("bc-hg-baseline, SARSA critic", "bc-hg-baseline", "sarsa", "matrix"),
    ("naive (direct term only)", "naive", "exact", "matrix"),
    ("hpgd, Monte Carlo critic", "hpgd", "monte-carlo", "matrix"),
    ("hpgd, SARSA critic", "hpgd", "sarsa", "matrix"),
    ("hpgd-oracle", "hpgd-oracle", "monte-carlo", "matrix"),
    ("sobirl (Monte Carlo dQ)", "sobirl", "monte-carlo", "matrix"),
    ("bc-hg, SARSA critic, episodes from the simulator kernel", "bc-hg", "sarsa", "simulator"),
)
TAUS = (0.001, 0.005)
#: The papers' numbers and the authors' own runs (EXPERIMENTS.md).
PAPER = ("Paper (BC-HG, read off its plot): ~0.65 at 100 transitions per step, ~0.2 at 1000 "
         "(tau = 0.001). Official BC-HG, one seed, 10k steps: 0.603 (lr 0.5, tau 0.001), "
         "0.752 (lr 0.5) / 1.355 (lr 0.1) at tau 0.005. Official exact (AMD) SGD: 0.001 / "
         "0.018. Exact Adam (lr 0.1) from a hallway start: 0.768 / 1.535.")


def _hallway_start(grid: object, d: int) -> np.ndarray:
    """70% of the softmax mass on cell (3, 5) (the top hallway), 30% on the slack."""
    x0 = np.full(d, -20.0)
    x0[grid.state((3, 5))], x0[-1] = np.log(0.7), np.log(0.3)  # type: ignore[attr-defined]
    return x0


def _source(estimator: str, critic: str, budget: int, kernel: str, tau: float,
            n_states: int, n_actions: int) -> GradientSource:
    """A gradient source with the carried SARSA table (if asked) and episodes drawn from
    ``kernel`` (the simulator's kernel differs from the matrix the follower solves)."""
    info = ESTIMATORS[estimator]
    table = CarriedSarsaCritic(n_states, n_actions, 0.5) if critic == "sarsa" else None
    sim = four_rooms_design(tau, kernel="simulator")[0] if kernel == "simulator" else None

    def source(problem, exact, rng):
        know = leader_knowledge(problem, exact.state.x, state=exact.state)
        mdp = know.state.mdp if sim is None else sim.follower_mdp(exact.state.x)
        e = info.fn(know, Sampler(mdp, rng), budget, table if table is not None else critic)
        return e.gradient, e.transitions
    return source


def run_one(job: tuple) -> np.ndarray:
    """One run: ``(row, tau, budget, lr, seed, steps)`` -> exact ``F`` per step."""
    row, tau, budget, lr, seed, steps = job
    _, estimator, critic, kernel = ROWS[row] if isinstance(row, int) else row
    problem, x0, grid = four_rooms_design(tau)
    x0 = purpose_rng(seed, INITIAL_POINT, 0).normal(0.0, 0.01, size=x0.size)
    if estimator == "exact-adam-hallway":
        res = optimize(problem, _hallway_start(grid, x0.size), steps=steps, update=adam(lr),
                       seed=seed)
        return res.value
    if estimator == "exact-adam":
        return optimize(problem, x0, steps=steps, update=adam(lr), seed=seed).value
    grad = None if estimator == "exact" else _source(estimator, critic, budget, kernel, tau,
                                                     problem.n_states, problem.n_actions)
    return optimize(problem, x0, steps=steps, step_size=lr, clip_norm=1.0, gradient=grad,
                    seed=seed).value


def four_rooms(out: pathlib.Path, *, size: RunSize = QUICK, workers: int = 1) -> str:
    """Run the FourRooms reproduction; write ``reproduce_fourrooms.md`` / ``.png``.

    ``size.steps >= fourrooms_paper.STEPS`` runs the paper's protocol
    (:func:`.fourrooms_paper.paper_protocol`, budgets ``size.budgets``, ``size.seeds``
    seeds); a shorter run is the 11-row comparison below."""
    if size.steps >= paper.STEPS:
        return paper.paper_protocol(out, budgets=size.budgets, seeds=size.seeds,
                                    workers=workers)
    jobs, keys = [], []
    for tau in TAUS:
        for r, (_, est, _, _) in enumerate(ROWS):
            for budget in ((0,) if est.startswith("exact") else size.budgets):
                for lr in size.learning_rates:
                    for seed in range(size.seeds):
                        keys.append((tau, r, budget, lr, seed))
                        jobs.append((r, tau, budget, lr, seed, size.steps))
        for seed in range(size.seeds):  # the exact optimum the papers fall short of
            keys.append((tau, "optimum", 0, 0.1, seed))
            jobs.append((("", "exact-adam-hallway", "", ""), tau, 0, 0.1, seed, size.steps))
    curves = dict(zip(keys, run_all(run_one, jobs, workers=workers, desc="fourrooms"),
                      strict=True))
    for k, c in curves.items():
        require_finite(f"F along run {k}", c, "the run")
    return _report(out, curves, size)


def _best(curves: dict, tau: float, row: object, budget: int, size: RunSize
          ) -> tuple[float, float, float | None, list[np.ndarray]]:
    """Best learning rate by mean score: ``(lr, mean, se, curves of its seeds)``."""
    best = None
    for lr in size.learning_rates if row != "optimum" else (0.1,):
        runs = [curves[tau, row, budget, lr, s] for s in range(size.seeds)]
        m, se = mean_se([score(c) for c in runs])
        if best is None or m > best[1]:
            best = (lr, m, se, runs)
    assert best is not None
    return best


def _finding(curves: dict, size: RunSize) -> list[str]:
    """The finding, with this run's numbers."""
    budget = size.budgets[0]
    cells, pattern = [], []
    for tau in TAUS:
        sgd = _best(curves, tau, 0, 0, size)[1]
        adam_ = _best(curves, tau, 1, 0, size)[1]
        sarsa = _best(curves, tau, 2, budget, size)[1]
        exact_critic = _best(curves, tau, 3, budget, size)[1]
        optimum = _best(curves, tau, "optimum", 0, size)[1]
        cells.append(f"tau = {tau}: exact SGD {sgd:.3f}, exact Adam {adam_:.3f}, bc-hg with "
                     f"the SARSA critic {sarsa:.3f} but with the exact critic "
                     f"{exact_critic:.3f} ({budget} transitions per step), optimum reference "
                     f"{optimum:.3f}")
        # the committed run's pattern: the SARSA-critic run ends above both exact-gradient
        # runs of the same protocol (SGD, and bc-hg with the exact critic)
        pattern.append(sarsa > max(sgd, exact_critic) + 0.01)
    if all(pattern):
        head = "## Finding (this run): exact gradients stall, noisy ones escape"
        why = ("Why (the mechanism, as measured in the committed run "
               "`verification/reproduce_fourrooms.md`): ")
    else:
        head = ("## Finding (this run): the SARSA-critic run does not end above both exact "
                f"runs at every tau (it does at tau = "
                f"{[t for t, p in zip(TAUS, pattern, strict=True) if p]})")
        why = ("For comparison, the mechanism seen in the committed run "
               "(`verification/reproduce_fourrooms.md`), which this run does not reproduce: ")
    return [
        head, "",
        "Measured in this run: " + "; ".join(cells) + ".", "",
        why + "With the official optimiser, exact SGD from N(0, 0.01^2) logits climbs from F(0) "
        "towards F ~ 0 by moving the softmax mass onto the slack logit (no incentive, no "
        "cost): a stationary point of the softmax-with-slack parameterisation, where the "
        "gradient vanishes as the incentive mass leaves the cells (the authors' 10,000-step "
        "exact run ends at 0.001 / 0.018). The sampled estimators escape it not by being "
        "accurate but by being noisy: with the SARSA critic, a table that lags the moving "
        "follower, the raw estimates at x ~ 0 are far larger than |grad F| and mostly hit "
        "the clip, so the iterates random-walk into incentive patterns that block a "
        "hallway, from which ascent continues; the same estimator with the exact critic "
        "(far less noise, no lag) stalls like exact SGD. bc-hg-baseline equals bc-hg here "
        "(the baseline acts only on the transition score; FourRooms' parameters enter the "
        "reward only). The optimum the papers' curves fall short of is the "
        "Adam-from-hallway row (and exact Adam from N(0, 0.01^2) reaches it at tau = "
        "0.005); the simulator-kernel rows show what sampling from the other kernel costs.",
        ""]


def _report(out: pathlib.Path, curves: dict, size: RunSize) -> str:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(TAUS), figsize=(15, 7), sharey=True)
    colors = pyplot.get_cmap("tab20").colors
    lines = [
        "# FourRooms incentive design (Kudo et al. 2026), the authors' protocol", "",
        f"Generated by `exact-bilevel reproduce fourrooms` — run size: {size.label}; "
        f"{size.steps} leader steps, {size.seeds} seeds, budgets {list(size.budgets)} "
        f"transitions per step, learning rates {list(size.learning_rates)} (best per row). "
        "Problem: `four_rooms_design(tau)` with the official conventions (F(0) = -0.740644 at "
        "tau = 0.001, -0.667413 at 0.005). SGD with global-norm clip 1.0, init logits "
        "N(0, 0.01^2); score = exact F averaged over the last 10% of steps; mean +- standard "
        "error over seeds. Every number is the exact objective of the iterate the method "
        "reached.", "",
        "Deviations from the authors' runs: episodes are discount-terminated (continuation "
        "0.99, unbiased for the infinite-horizon objective) and drawn afresh each step, "
        "not the official windows (1-5 environments reset each leader step, 200-step "
        "episodes, fragments cut at the window's end: see the paper-protocol section); "
        "SARSA step size fixed at 0.5 (theirs tuned in 0.1..1.0); "
        f"{size.steps} steps instead of 10,000, so scores are not final values: compare "
        "rows, not the paper's numbers.", "",
        PAPER, ""]
    for ax, tau in zip(axes, TAUS, strict=True):
        lines += [f"## tau = {tau}", "",
                  "| method | budget / step | best lr | score (mean +- se) | final F per seed |",
                  "| --- | --- | --- | --- | --- |"]
        entries = [(label, r, b) for r, (label, est, _, _) in enumerate(ROWS)
                   for b in ((0,) if est.startswith("exact") else size.budgets)]
        entries.append(("exact gradient, Adam lr 0.1, hallway start (optimum reference)",
                        "optimum", 0))
        for label, r, b in entries:
            lr, m, se, runs = _best(curves, tau, r, b, size)
            finals = ", ".join(f"{c[-1]:.3f}" for c in runs)
            lines.append(f"| {label} | {b or '-'} | {lr:g} | {pm(m, se, '.3f')} | {finals} |")
            if b in (0, size.budgets[-1]):
                exact = r in (0, 1, "optimum")
                k = len(ax.get_lines())
                ax.plot(np.mean(runs, axis=0), lw=2.5 if exact else 1.2, color=colors[k % 20],
                        ls="-" if exact else "--",
                        label=f"{label} ({f'{b}/step' if b else 'exact'})")
        ax.set_title(f"FourRooms (official conventions), tau = {tau}")
        ax.set_xlabel("leader step")
        lines.append("")
    axes[0].set_ylabel("exact F (mean over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    save_figure(fig, out / "reproduce_fourrooms.png")
    lines += _finding(curves, size)
    text = "\n".join(lines)
    block = paper.existing_block(out / "reproduce_fourrooms.md")
    if block is not None:  # the paper-protocol section, kept from its own generator
        text = paper.insert_block(text, block)
    atomic_write(out / "reproduce_fourrooms.md", text)
    return text
