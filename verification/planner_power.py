"""The sample-size planner's predicted power against the simulated power of the real test.

For the BC-HG mutants of :data:`exact_bilevel.validation.mutants.BCHG_FAMILY` (applied to
``bc-hg`` and, on a transition-parameterised problem, to ``bc-hg-baseline``), each mutant's
exact bias ``b = E X_mutant - g`` comes from its exact mean
(:func:`exact_bilevel.validation.mutants.mutant_mean`; checked here again against the
simulated replicates' mean). The planner
(:func:`exact_bilevel.validation.planning.plan_sample_size`, relative bias ``B = |b| /
|g|`` along ``b``) gives, for a target power of 0.5 and of 0.8 at alpha = 0.01, the
replicates ``R`` at a budget ``N`` (the largest budget of ``64 * 2^k`` with ``R >= 10``)
and the power of a FAIL verdict of the rule
(:func:`~exact_bilevel.validation.convergence.known_covariance_verdict`) it predicts at
that ``(N, R)`` from the noncentral chi-square with the base estimator's exact
covariance, at the chi-square's threshold where ``R x N`` is in the regular regime and
at the Chebyshev threshold ``r / alpha`` where it is rare-event: the *pure-shift*
prediction, for an estimator with the base's noise and mean ``g + b``. A mutant's
noise is not the base's (``tau`` instead of ``1/tau`` shrinks it, a sign flip changes
its correlations), so beside it the *own-covariance* prediction: the rule's FAIL power
when the estimates have covariance ``Sigma_m`` (:func:`~exact_bilevel.validation.planning.
known_covariance_power_under` / ``chebyshev_power_under`` by the regime, Imhof's
formula), with ``Sigma_m`` estimated from 1000 independent mutant estimates at the same
budget (a disjoint seed). The simulation runs the real rule
(:func:`~exact_bilevel.validation.convergence.known_covariance_verdict` with the base's
exact covariance, the claim "this is bc-hg", and the rarest pair's expected visits in
the ``R x N`` transitions) ``--reps`` times (default 200) on ``R`` fresh mutant
replicates each (one seed per design, replicate streams ``SeedSequence(seed,
spawn_key=(i,))``, all disjoint) and counts FAIL verdicts (a chi-square-only rejection
in the rare-event regime is INCONCLUSIVE, not a FAIL). The same for the correct
estimators (predicted FAIL rate: at most alpha). Rare-event designs need 10-45x the
transitions of regular ones; a design that would draw more than ``--max-transitions``
(default 250M) is listed with its cost and not simulated. Beside it, the sample-covariance
test's (Hotelling / Bonferroni-t) simulated power on the same replicates and its
Gaussian prediction with ``Sigma_m`` (noncentral F) where ``R > 2 d``.

**The planner with the alternative** (``plan_sample_size(..., alternative=name)``, CLI
``exact-bilevel plan --alternative NAME``): the mutant's *exact* mean and covariance
(:func:`exact_bilevel.validation.mutant_moments.mutant_moments`). Two columns: (i) its
prediction at the pure-shift design's ``(N, R)``, against the same simulated rejection
rate (the exact covariance in place of the 1000-estimate one); (ii) the plan it makes
itself (same rule: the largest budget with ``R >= 10``), its predicted power at its own
``(N', R')`` against the real test run ``--reps`` times on fresh mutant replicates
(seed ``ALT_SEED + k``, disjoint from the others). The headline count is (ii): the
planner as a user runs it with ``--alternative``.

Writes ``verification/planner_power.md``. Run: ``nice -n 10 python
verification/planner_power.py [--reps 200] [--max-transitions 250000000]`` (the time of
the last run is in the report's first line).
"""

from __future__ import annotations

import argparse
import pathlib
import time
import warnings

import numpy as np
import scipy.stats

from exact_bilevel.core._progress import progress_bar
from exact_bilevel.estimators import leader_knowledge, moments, replicates
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.validation.acceptance import unbiasedness_test
from exact_bilevel.validation.convergence import (
    MIN_EXPECTED_VISITS,
    is_unresolved_rejection,
    known_covariance_verdict,
    rare_event_diagnostic,
)
from exact_bilevel.validation.mutant_moments import mutant_moments
from exact_bilevel.validation.mutants import BCHG_FAMILY, mutant_mean, mutant_replicates
from exact_bilevel.validation.planning import (
    chebyshev_power_under,
    hotelling_power,
    known_covariance_power_under,
    noncentrality,
    plan_sample_size,
)

OUT = pathlib.Path(__file__).with_suffix(".md")
ALPHA = 0.01
TARGETS = (0.5, 0.8)
TOLERANCE = 0.1
BUDGETS = tuple(64 * 2**k for k in range(13))  # 64 ... 262144
MIN_R = 10
#: The most transitions one simulated design may draw (``reps x R x N``; also ``COV_SAMPLES
#: x N`` for the own covariance): rare-event designs rest on the Chebyshev test and need
#: 10-60x the chi-square's transitions; those above it are listed, not simulated.
MAX_TRANSITIONS = 250_000_000
#: Estimates per design for the mutant's own covariance (an independent batch).
COV_SAMPLES = 1000
#: Seeds: design k draws its test replicates from seed k, its covariance batch from
#: COV_SEED + k (disjoint SeedSequence inputs, so no stream is shared).
COV_SEED = 1_000_000
#: ... and the test replicates of the plan made with the alternative from ALT_SEED + k.
ALT_SEED = 2_000_000
#: (label, random_problem arguments, base estimators)
PROBLEMS = (
    ("A: reward-parameterised, gamma_L != gamma",
     dict(n_states=4, n_actions=3, n_params=2, seed=3, gamma=0.8, tau=0.5,
          parameterize="reward", objective="leader_return_own_gamma"), ("bc-hg",)),
    ("B: reward and transitions, gamma_L != gamma",
     dict(n_states=4, n_actions=3, n_params=2, seed=5, gamma=0.8, tau=0.5,
          parameterize="both", objective="leader_return_own_gamma"),
     ("bc-hg", "bc-hg-baseline")),
)


def _design(problem, x, base, bias, direction, target, alternative=None):
    """``(row)`` of the plan: the largest budget with ``R >= MIN_R`` (else the smallest)."""
    plan = plan_sample_size(problem, x, base, bias, power=target, alpha=ALPHA,
                            budgets=list(BUDGETS), direction=direction,
                            alternative=alternative)
    ok = [r for r in plan.rows if r.replicates is not None and r.replicates >= MIN_R]
    return max(ok, key=lambda r: r.budget) if ok else min(plan.rows, key=lambda r: r.budget)


def _draw(problem, x, know, base: str, name: str | None, N: int, n: int, seed: int
          ) -> np.ndarray:
    """``n`` estimates ``[n, d]`` at budget ``N`` of ``base`` or of mutant ``name`` on it."""
    if name is None:
        return replicates(problem, x, base, N, n, seed)[0]
    return mutant_replicates(name, know, N, n, seed, baseline=base == "bc-hg-baseline")


def _rejections(X: np.ndarray, g: np.ndarray, cov: np.ndarray, R: int, reps: int,
                visits: float) -> tuple[int, int, int]:
    """Over ``reps`` consecutive blocks of ``R`` rows of ``X``: FAIL verdicts of the
    exact-covariance rule (:func:`known_covariance_verdict` with the rarest pair's
    expected ``visits`` in the block's transitions; an unresolved rare-event rejection is
    not a FAIL), chi-square rejections (the verdict is not a pass), and rejections of the
    sample-covariance test."""
    fail, no_pass, sample = 0, 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(reps):
            block = X[j * R:(j + 1) * R]
            v = known_covariance_verdict(block, g, cov, visits, ALPHA)
            fail += v.reject and not is_unresolved_rejection(v)
            no_pass += v.reject
            sample += unbiasedness_test(block, g, ALPHA).reject
    return fail, no_pass, sample


def _rule_power_under(know, cov: np.ndarray, b: np.ndarray, cov_t: np.ndarray, R: int,
                      N: int) -> float:
    """FAIL power of the rule at ``(N, R)`` when the estimates have covariance ``cov_t``:
    the chi-square's threshold in the regular regime, Chebyshev's in the rare-event one."""
    under = (known_covariance_power_under if _regime(know, R, N) == "regular"
             else chebyshev_power_under)
    return under(cov, b, cov_t, R, ALPHA)


def _regime(know, R: int, N: int) -> str:
    return ("regular" if rare_event_diagnostic(know, R * N)[0] >= MIN_EXPECTED_VISITS
            else "rare-event")


def _ci(k: int, n: int) -> tuple[float, float]:
    ci = scipy.stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="repetitions of the test")
    parser.add_argument("--max-transitions", type=int, default=MAX_TRANSITIONS,
                        help="skip the simulation of designs drawing more transitions")
    args = parser.parse_args()
    reps, max_transitions = args.reps, args.max_transitions
    t0 = time.perf_counter()
    jobs = []  # (problem label, problem, x, know, base, variant, target)
    for label, kw, bases in PROBLEMS:
        problem, x = random_problem(**kw)
        know = leader_knowledge(problem, x)
        for base in bases:
            jobs.append((label, problem, x, know, base, None, None))
            for name in BCHG_FAMILY:
                for target in TARGETS:
                    jobs.append((label, problem, x, know, base, name, target))
    rows = []
    bar = progress_bar(total=len(jobs), desc="planner power", enabled=True)
    for seed, (label, problem, x, know, base, name, target) in enumerate(jobs):
        g = moments(problem, x, base, know=know).mean  # = the exact hypergradient
        baseline = base == "bc-hg-baseline"
        if name is None:
            N, R, predicted, R_chi2 = 1000, 20, ALPHA, None
            mean = g
        else:
            mean = mutant_mean(name, know)
            b = mean - g
            bias = float(np.linalg.norm(b) / np.linalg.norm(g))
            row = _design(problem, x, base, bias, b, target)
            N, R, predicted, R_chi2 = row.budget, row.replicates, row.power, row.chi2_replicates
        cov = moments(problem, x, base, N, know=know).covariance
        n_ep = moments(problem, x, base, N, know=know).episodes
        out = dict(problem=label, base=base, variant=name or "(correct)",
                   target=target, bias=float(np.linalg.norm(mean - g) / np.linalg.norm(g)),
                   N=N, episodes=n_ep, R=R, R_chi2=R_chi2, regime=_regime(know, R, N),
                   predicted=predicted,
                   cost=reps * R * N, own=None, simulated=None, ci=None, hot_pred=None,
                   hot_sim=None, zmean=None)
        if reps * R * N <= max_transitions:
            X = _draw(problem, x, know, base, name, N, reps * R, seed)
            # the exact mean against the simulation (all reps * R replicates)
            se = X.std(axis=0, ddof=1) / np.sqrt(X.shape[0])
            fail, _, sample = _rejections(X, g, cov, R, reps,
                                          rare_event_diagnostic(know, R * N)[0])
            out |= dict(simulated=fail / reps, ci=_ci(fail, reps), hot_sim=sample / reps,
                        zmean=float(np.max(np.abs((X.mean(axis=0) - mean) / se))))
            del X
            if COV_SAMPLES * N <= max_transitions:
                cov_m = np.cov(_draw(problem, x, know, base, name, N, COV_SAMPLES,
                                     COV_SEED + seed), rowvar=False)
                out["own"] = _rule_power_under(know, cov, mean - g, cov_m, R, N)
                out["hot_pred"] = (hotelling_power(R * noncentrality(cov_m, mean - g)[0],
                                                   g.size, R, ALPHA)
                                   if R > 2 * g.size else None)
        if name is not None:
            exact = mutant_moments(problem, x, name, N, baseline=baseline, know=know)
            out["exact"] = _rule_power_under(know, cov, mean - g, exact.covariance, R, N)
            alt = _design(problem, x, base, None, None, target, alternative=name)
            N2, R2 = alt.budget, alt.replicates
            out |= dict(N2=N2, episodes2=alt.episodes, R2=R2, regime2=alt.regime,
                        alt_pred=alt.power, cost2=reps * R2 * N2, alt_sim=None, alt_ci=None)
            if reps * R2 * N2 <= max_transitions:
                cov2 = moments(problem, x, base, N2, know=know).covariance
                X2 = _draw(problem, x, know, base, name, N2, reps * R2, ALT_SEED + seed)
                k2, _, _ = _rejections(X2, g, cov2, R2, reps,
                                       rare_event_diagnostic(know, R2 * N2)[0])
                out |= dict(alt_sim=k2 / reps, alt_ci=_ci(k2, reps))
        rows.append(out)
        bar.update(1)
    bar.close()
    wall = time.perf_counter() - t0
    write(rows, reps, wall, max_transitions)


def _summary(mut: list[dict], key: str, sim: str = "simulated", ci: str = "ci"
             ) -> tuple[int, int, float, dict | None, int]:
    """Over the simulated designs: (their number, those within the tolerance, the largest
    |difference|, its row, those whose prediction is inside the 95% CI)."""
    done = [r for r in mut if r[sim] is not None and r[key] is not None]
    diffs = [abs(r[sim] - r[key]) for r in done]
    inside = sum(d <= TOLERANCE for d in diffs)
    within_ci = sum(r[ci][0] <= r[key] <= r[ci][1] for r in done)
    worst = done[int(np.argmax(diffs))] if done else None
    return len(done), inside, max(diffs, default=float("nan")), worst, within_ci


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _sim(v: float | None, ci: tuple[float, float] | None, cost: int) -> str:
    if v is None:
        return f"not simulated ({cost / 1e6:.0f}M transitions)"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _diff(sim: float | None, pred: float | None) -> str:
    if sim is None or pred is None:
        return "-"
    return f"{sim - pred:+.3f}" + ("" if abs(sim - pred) <= TOLERANCE else " **out**")


def write(rows: list[dict], reps: int, wall: float, max_transitions: int) -> None:
    mut = [r for r in rows if r["variant"] != "(correct)"]
    nul = [r for r in rows if r["variant"] == "(correct)"]
    alt_n, alt_in, alt_max, alt_worst, alt_ci = _summary(mut, "alt_pred", "alt_sim", "alt_ci")
    by_regime = {reg: _summary([r for r in mut if r["regime2"] == reg], "alt_pred",
                               "alt_sim", "alt_ci") for reg in ("regular", "rare-event")}
    ex_n, ex_in, ex_max, ex_worst, ex_ci = _summary(mut, "exact")
    own_n, own_in, own_max, own_worst, own_ci = _summary(mut, "own")
    sh_n, sh_in, sh_max, sh_worst, sh_ci = _summary(mut, "predicted")
    mid = [r for r in mut if r["alt_sim"] is not None and 0.05 <= r["alt_pred"] <= 0.95]
    mid_in = sum(abs(r["alt_sim"] - r["alt_pred"]) <= TOLERANCE for r in mid)
    zs = [r["zmean"] for r in rows if r["zmean"] is not None]
    null_ok = all(r["ci"][0] <= ALPHA for r in nul if r["ci"] is not None)
    hot = [r for r in mut if r["hot_pred"] is not None and r["hot_sim"] is not None]
    hot_gap = max((abs(r["hot_sim"] - r["hot_pred"]) for r in hot), default=float("nan"))
    skipped = [r for r in mut if r["alt_sim"] is None]
    rare_total = [r for r in mut if r["regime2"] == "rare-event"]
    rare_rows = [r for r in mut if r["regime"] == "rare-event" and r["R_chi2"]]
    ratios = [r["R"] / r["R_chi2"] for r in rare_rows]
    floor = sum(r["R_chi2"] == 2 for r in rare_rows)

    def where(r: dict) -> str:
        return (f"{r['variant']} on {r['base']}, problem {r['problem'][0]}, target "
                f"{r['target']}")
    verdict = ("meets" if alt_in == alt_n else "does NOT meet")
    misses = [r for r in mut if r["alt_sim"] is not None
              and abs(r["alt_sim"] - r["alt_pred"]) > TOLERANCE]
    regimes = "; ".join(f"{reg}: {v[1]} of {v[0]}" + ("" if not v[0] else
                        f" (largest difference {v[2]:.3f})")
                        for reg, v in by_regime.items())
    lines = [
        "# The sample-size planner against simulation", "",
        f"Generated by `python verification/planner_power.py --reps {reps}"
        + ("" if max_transitions == MAX_TRANSITIONS else
           f" --max-transitions {max_transitions}")
        + f"` in {wall / 60:.1f} min (one core). Module docstring: the design. alpha = "
        f"{ALPHA}; each design is tested {reps} times on fresh replicates (one seed per "
        "design, disjoint streams). The planned power is that of a **FAIL verdict** of "
        "`known_covariance_verdict` (the rule `exact-bilevel check` applies): the "
        "chi-square test where the design's R x N transitions put the problem in the "
        "regular regime, the distribution-free Chebyshev test (T >= r / alpha) in the "
        "rare-event regime (the rarest on-policy pair expected fewer than "
        f"{MIN_EXPECTED_VISITS:g} times in all R x N transitions); the simulation counts "
        "the rule's FAIL verdicts (an unresolved chi-square-only rejection is not one). "
        f"Designs that would draw more than {max_transitions / 1e6:.0f}M transitions "
        "(reps x R x N) are listed and not simulated.", "",
        "## Result", "",
        f"**Planner with `--alternative` (the mutant's exact mean and covariance): "
        f"{alt_in} of {alt_n}** simulated mutant designs have a simulated FAIL rate within "
        f"+-{TOLERANCE} of the power the planner predicts for the design it chose itself, "
        f"so the planner {verdict} the +-{TOLERANCE} criterion on them; by regime, "
        f"{regimes}. The largest difference is {alt_max:.3f}"
        + ("" if alt_worst is None else
           f" ({where(alt_worst)}, {alt_worst['regime2']}: predicted "
           f"{alt_worst['alt_pred']:.3f}, simulated {alt_worst['alt_sim']:.3f})")
        + f", and the prediction lies inside the simulated rate's 95% Clopper-Pearson "
        f"interval in {alt_ci} of {alt_n} designs (about 95% if it were exact). "
        f"{len(mid)} of these designs have a predicted power between 0.05 and 0.95 (the "
        f"others are planned near certainty, where agreement is easy); {mid_in} of those "
        f"{len(mid)} are within +-{TOLERANCE}."
        + ("" if not misses else " Outside: " + "; ".join(
            f"{where(r)} ({r['alt_pred']:.3f} vs {r['alt_sim']:.3f})" for r in misses) + ".")
        + f" {len(rare_total)} of the {len(mut)} plans are in the rare-event regime; "
        f"{len(skipped)} of them are not simulated (cost)"
        + ("." if not skipped else ": " + "; ".join(
            f"{where(r)} ({r['cost2'] / 1e6:.0f}M)" for r in skipped) + "."),
        "",
        (f"In the {len(rare_rows)} rare-event pure-shift designs the rule's plan asks for "
         f"{min(ratios):.1f}-{max(ratios):.1f}x the replicates of the chi-square-only plan "
         f"at the same budget (1x where a rejection is certain); the chi-square-only plan "
         f"is at its floor of 2 replicates in {floor} of them, so these ratios understate "
         "the price of a FAIL at a guaranteed level (the ratio of the needed "
         "noncentralities, 13.6x at r = 2 and power 0.9 for the pure shift)." if ratios
         else "No pure-shift plan is in the rare-event regime."), "",
        f"At the pure-shift plan's designs, the same exact mutant covariance predicts the "
        f"simulated FAIL rate within +-{TOLERANCE} in **{ex_in} of {ex_n}** designs "
        f"(largest difference {ex_max:.3f}"
        + ("" if ex_worst is None else f", {where(ex_worst)}")
        + f"; inside the 95% interval in {ex_ci}); with the covariance estimated from "
        f"{COV_SAMPLES} mutant estimates instead, {own_in} of {own_n} (largest "
        f"{own_max:.3f}" + ("" if own_worst is None else f", {where(own_worst)}")
        + f"; inside the interval in {own_ci}).", "",
        f"**Planner without it (pure shift, the base's covariance): {sh_in} of "
        f"{sh_n}** within +-{TOLERANCE}; the largest difference is {sh_max:.3f}"
        + ("" if sh_worst is None else
           f" ({where(sh_worst)}: predicted {sh_worst['predicted']:.3f}, simulated "
           f"{sh_worst['simulated']:.3f})")
        + f"; inside the 95% interval in {sh_ci} of {sh_n}. "
        "The pure shift assumes the biased estimator has the reference's noise; a mutant "
        "whose noise is smaller (e.g. tau-not-inverse scales the indirect term by tau^2) is "
        "rejected less often than planned below the test's threshold and more often "
        "above it, a noisier one the other way round: the gap between the two predictions "
        "is that assumption, not an error of the power formula.", "",
        f"The correct estimators' FAIL rates (at most alpha = {ALPHA}; the Chebyshev "
        "test's level in the rare-event regime is far below it) are "
        + ", ".join(f"{_f(r['simulated'])} ({r['base']}, problem {r['problem'][0]}, "
                    f"{r['regime']})" for r in nul)
        + ("; no 95% interval lies above alpha." if null_ok else
           "; a 95% interval lies ABOVE alpha: see the table.")
        + f" The exact means (mutant_mean) agree with the simulated replicates of every "
        f"simulated design: the largest |z| of (simulated mean - exact mean) is "
        f"{max(zs):.2f} over {len(zs)} designs x 2 coordinates.", "",
        f"Beside it, the sample-covariance test on the same replicates: its Gaussian "
        f"prediction (noncentral F with the mutant's covariance) differs from its simulated "
        f"power by up to {hot_gap:.3f} over the {len(hot)} designs with R > 2d (it falls "
        "back to Bonferroni-t otherwise; Gaussian theory, not a guarantee).", "",
        "## Designs of the pure-shift plan", "",
        "B: exact relative bias |b| / |g|; N: budget per estimate (episodes n); R: "
        "replicates the planner asks for at the target power (R chi2: the chi-square-only "
        "plan at the same budget); regime: of R x N; pure shift: the planner's FAIL power "
        "at (N, R); exact cov.: the rule's FAIL power there with the mutant's exact "
        "covariance (what `--alternative` predicts at this design); own cov.: with the "
        f"covariance of {COV_SAMPLES} mutant estimates; simulated: FAIL rate of the rule "
        "[95% CI]; Hotelling: the sample-covariance test's predicted / simulated power; "
        "|z| mean: the exact mean against the simulated replicates.", "",
        "| problem | base | variant | target | B | N (n) | R | R chi2 | regime | pure shift "
        "| exact cov. | own cov. | simulated [95% CI] | sim. - exact | Hotelling pred. / "
        "sim. | \\|z\\| mean |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- | --- | --- |"]
    for r in rows:
        t = "-" if r["target"] is None else f"{r['target']:g}"
        correct = r["variant"] == "(correct)"
        ex = None if correct else r["exact"]
        lines.append(
            f"| {r['problem'][0]} | {r['base']} | {r['variant']} | {t} | {r['bias']:.3g} | "
            f"{r['N']} ({r['episodes']}) | {r['R']} | {_f(r['R_chi2'], 'd')} | "
            f"{r['regime']} | {r['predicted']:.3f} | {_f(ex)} | {_f(r['own'])} | "
            f"{_sim(r['simulated'], r['ci'], r['cost'])} | "
            f"{'-' if correct else _diff(r['simulated'], ex)} | "
            f"{_f(r['hot_pred'])} / {_f(r['hot_sim'])} | {_f(r['zmean'], '.2f')} |")
    lines += [
        "", "## Designs of the plan with `--alternative`", "",
        "The plan `plan_sample_size(..., power=target, alternative=variant)` makes with the "
        "same rule (the largest budget with R' >= "
        f"{MIN_R}): N' (n'), R', the regime of R' x N', the FAIL power it predicts there, "
        f"and the rule's FAIL rate over {reps} repetitions [95% CI].", "",
        "| problem | base | variant | target | N' (n') | R' | regime | predicted "
        "| simulated [95% CI] | sim. - pred. |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in mut:
        lines.append(
            f"| {r['problem'][0]} | {r['base']} | {r['variant']} | {r['target']:g} | "
            f"{r['N2']} ({r['episodes2']}) | {r['R2']} | {r['regime2']} | "
            f"{r['alt_pred']:.3f} | {_sim(r['alt_sim'], r['alt_ci'], r['cost2'])} | "
            f"{_diff(r['alt_sim'], r['alt_pred'])} |")

    def call(kw: dict) -> str:
        return "random_problem(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
    lines += ["", "Problems: " + "; ".join(f"{lab} (`{call(kw)}`)" for lab, kw, _ in PROBLEMS)
              + "."]
    from exact_bilevel.core._files import atomic_write

    atomic_write(OUT, "\n".join(lines) + "\n")
    print(f"wrote {OUT}: --alternative {alt_in}/{alt_n} simulated ({regimes}), exact "
          f"covariance at the pure-shift designs {ex_in}/{ex_n}, own covariance "
          f"{own_in}/{own_n}, pure shift {sh_in}/{sh_n} within +-{TOLERANCE}; "
          f"{len(skipped)} not simulated; {wall:.0f} s")


if __name__ == "__main__":
    main()
