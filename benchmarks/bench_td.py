"""The TD critics' two forms of ``P_hat``: the steps against the dense table, same batches.

Problem: ``random_problem(10, 4, 5, seed=0, gamma=0.9)`` (S = 10, A = 4, d = 5;
``--parameterize transitions`` adds the ``P_hat`` product of the mean sensitivity
rewards). For each (budget, R) the batch hpgd-td draws (``episodes_for_budget`` episodes
per replicate under the budget cap, uniforms of ``cell_uniforms(0, R, block)``) is built
once; then, best of ``--repeats`` CPU times (one BLAS thread), both forms of
:mod:`exact_bilevel.estimators.critics` run the two TD computations on it:

* ``dQ`` (``tabular.dq_td``'s work: the model, the mean sensitivity rewards, ``batch_td``
  with ``d`` columns),
* ``Q_L`` (``td_critic``'s: the model and ``batch_td`` with one column),

printing the times, ``dense / steps`` (> 1: the steps are faster), the largest relative
difference of the two forms' results, the work per table entry ``n / (1 - beta) k / (S A
S)`` and the form :func:`~exact_bilevel.estimators.critics.empirical_form` picks (steps
below :data:`~exact_bilevel.estimators.critics.STEPS_WORK_PER_ENTRY`).

Usage: ``python benchmarks/bench_td.py [--repeats 7] [--parameterize reward]``.
"""

from __future__ import annotations

import argparse
import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import functools  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from exact_bilevel.core.heap import retain_heap  # noqa: E402
from exact_bilevel.core.streams import cell_uniforms  # noqa: E402
from exact_bilevel.estimators._common import episodes_for_budget, leader_knowledge  # noqa: E402
from exact_bilevel.estimators.critics import (  # noqa: E402
    STEPS_WORK_PER_ENTRY,
    EmpiricalSteps,
    EmpiricalTable,
    batch_td,
)
from exact_bilevel.estimators.sampling import Sampler, Uniforms, block_size  # noqa: E402
from exact_bilevel.estimators.tabular import mean_sensitivity_reward  # noqa: E402
from exact_bilevel.experiments.examples import random_problem  # noqa: E402

#: (budget, replicates): the issue's two settings and the range between and beyond.
SETTINGS = ((100, 1000), (200, 1000), (400, 500), (700, 300), (1000, 300), (2000, 200),
            (5000, 50))


def hpgd_td_batch(know, budget: int, R: int):
    """The episodes hpgd-td draws for ``R`` replicates at ``budget``."""
    d = know.dr.shape[-1]
    sampler = Sampler(know.state.mdp, Uniforms(cell_uniforms(0, R, block_size(budget, d))))
    n = episodes_for_budget(budget, know.beta, estimator="hpgd-td")
    with sampler.capped(budget):
        return sampler.episode_batch(know.pi, n, know.beta)


def td_work(form, know, b, what: str) -> np.ndarray:
    """``dQ`` (``what = "dQ"``) or ``Q_L`` by ``batch_td`` on ``form``'s ``P_hat``."""
    S, A = know.pi.shape
    model = form.of(b, S, A)
    if what == "dQ":
        return batch_td(model, know.pi, know.gamma, mean_sensitivity_reward(know, model))
    reward = np.broadcast_to(know.r_leader, (b.n_replicates, S, A))
    return batch_td(model, know.pi, know.gamma_leader, reward)


def best_cpu(fn, repeats: int) -> float:
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def rows(parameterize: str, repeats: int) -> list[str]:
    p, x = random_problem(10, 4, 5, seed=0, gamma=0.9, parameterize=parameterize)
    know = leader_knowledge(p, x)
    S, A, d = know.dr.shape
    out = [f"{'budget':>6} {'R':>5} {'steps':>7} {'what':>3} {'work':>6} {'picks':>6} "
           f"{'steps ms':>9} {'dense ms':>9} {'dense/steps':>11} {'max rel diff':>12}"]
    for budget, R in SETTINGS:
        b = hpgd_td_batch(know, budget, R)
        for what, k in (("dQ", d), ("Q_L", 1)):
            runs = [functools.partial(td_work, form, know, b, what)
                    for form in (EmpiricalSteps, EmpiricalTable)]
            t_steps, t_dense = (best_cpu(run, repeats) for run in runs)
            a, c = (run() for run in runs)
            rel = np.abs(a - c).max() / np.abs(c).max()
            work = b.n_episodes / (1 - know.beta) * k / (S * A * S)
            picks = "steps" if work < STEPS_WORK_PER_ENTRY else "dense"
            out.append(f"{budget:>6} {R:>5} {b.n_steps:>7} {what:>3} {work:>6.3f} "
                       f"{picks:>6} {t_steps * 1e3:>9.3f} {t_dense * 1e3:>9.3f} "
                       f"{t_dense / t_steps:>11.2f} {rel:>12.1e}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--parameterize", default="reward",
                    choices=("reward", "transitions", "both"))
    args = ap.parse_args(argv)
    retain_heap()
    print(f"S = 10, A = 4, d = 5, {args.parameterize}-parameterised; CPU ms, best of "
          f"{args.repeats}; STEPS_WORK_PER_ENTRY = {STEPS_WORK_PER_ENTRY}")
    for line in rows(args.parameterize, args.repeats):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
