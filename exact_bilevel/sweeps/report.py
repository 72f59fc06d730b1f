"""A report from a sweep's results: bias, error and cosine against the exact answer.

Per problem, estimator and budget: ``R`` replicates, the relative error of their mean
``|mean - g| / |g|``, the cosine of the mean with ``g``, the mean relative error of a
single replicate, the largest per-coordinate ``|z|`` of the bias, and the verdict of
the unbiasedness test at ``alpha`` (for an estimator that is not unbiased the verdict
says whether its bias is visible at that ``R``). Beside it, where the exact covariance
of one estimate is known (bc-hg, bc-hg-baseline and naive with the exact critic, and
the BC-HG mutants of :data:`~exact_bilevel.validation.mutants.BCHG_FAMILY` tested
against their base estimator's covariance: the claim under test is "this is bc-hg"),
the p-value of the exact-covariance chi-square test
(:func:`~exact_bilevel.validation.acceptance.known_covariance_test`) of ``E X = g``
with the verdict of :func:`~exact_bilevel.validation.convergence.known_covariance_verdict`
(in the rare-event regime a chi-square rejection is a failure only when the
distribution-free Chebyshev test rejects too, otherwise ``unresolved``), and the
failure count per estimator. The problems are rebuilt from the stored spec
(random problems always; file problems from paths relative to the results file's
directory) and used only when their content hash equals the stored one. A PNG shows
the relative error of a single replicate against the budget, per problem.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections import defaultdict

import numpy as np

from ..core._files import atomic_write, check_output, ensure_directory
from ..validation.acceptance import unbiasedness_test
from ..validation.convergence import (
    MIN_EXPECTED_VISITS,
    is_unresolved_rejection,
    known_covariance_verdict,
)
from . import store
from .provenance import describe


def report(db: str, out: str, *, alpha: float = 0.01, force: bool = False) -> str:
    """Write ``sweep_report.md`` and ``sweep_report.png`` into the directory ``out``
    (created if missing; its files follow the output-path rule of
    :mod:`exact_bilevel.core._files`, errors name ``--out``); return the text.

    The results file is opened read-only after checking it is ours; its provenance
    (:mod:`.provenance`: problem content hashes, numerics version, stream rule, writers)
    heads the report. A file with no rows yet gives a valid report saying so.
    """
    path = pathlib.Path(out)
    targets = [path / "sweep_report.md", path / "sweep_report.png"]
    if path.exists() and not path.is_dir():
        ensure_directory(out, option="--out")  # refused: names --out and the rule
    existing = [p for p in targets if os.path.lexists(p)]
    if existing and not force:
        raise ValueError(f"--out: {existing[0]} exists; pass --force to replace it")
    for target in targets if path.is_dir() else []:  # e.g. a directory named sweep_report.md
        check_output(target, option="--out", inputs=[db])
    con = store.connect_readonly(db)  # checks the file is ours; never writes
    try:
        ensure_directory(out, option="--out")
        prov, writers, spec_text = store.read_provenance(con, db)
        spec = json.loads(spec_text)
        exact = {p: np.array(json.loads(g)) for p, g in
                 con.execute("SELECT problem, exact FROM problems")}
        groups: dict[tuple[str, str, int], list[list[float]]] = defaultdict(list)
        for p, e, b, g in con.execute("SELECT problem, estimator, budget, gradient FROM "
                                      "estimates ORDER BY problem, estimator, budget, "
                                      "replicate"):
            groups[p, e, b].append(json.loads(g))
        visits = {(p, b): v for p, b, v in
                  con.execute("SELECT problem, budget, rarest_visits FROM diagnostics")}
        failed: dict[tuple[str, str, int], list[str]] = defaultdict(list)
        for p, e, b, err in con.execute("SELECT problem, estimator, budget, error FROM "
                                        "failures ORDER BY problem, estimator, budget, "
                                        "replicate"):
            failed[p, e, b].append(err)
    finally:
        con.close()
    import warnings

    lines = ["# Sweep report", "",
             f"Results file `{pathlib.Path(db).name}`; spec: `{json.dumps(spec)}`.", "",
             *describe(prov, writers), "",
             f"Unbiasedness test at alpha = {alpha} (Hotelling / Bonferroni-t).", "",
             "'rel. error of one': the mean of |g_hat - g| / |g| over replicates with a "
             "percentile-bootstrap 95% band (2000 resamples); 'bias 95% CI': the confidence "
             "interval of (mean - g)_k / max|g| at the coordinate k with the largest |z|.", "",
             "'failed': replicates whose estimator raised (listed below the tables); R "
             "counts the others. 'rarest visits': expected on-policy visits of the least "
             f"likely (s, a) in all replicates of the cell; below {MIN_EXPECTED_VISITS:g} "
             "the cell is in the rare-event regime and its verdict says little about the "
             "estimator (marked 'rare').", "",
             "'exact-cov p': the p-value of the exact-covariance chi-square test of E X = g "
             "(the covariance of one estimate from exact_bilevel.estimators.moments, no "
             "sample covariance: not fooled by replicates that missed a rare event); a "
             "mutant of bc-hg(-baseline) is tested against its base estimator's covariance; "
             "'-' where no exact covariance is known. REJECT: a failure; in the rare-event "
             "regime only when the distribution-free Chebyshev test (level <= alpha for any "
             "law of the estimates) rejects too (its p-value then shown), a chi-square-only "
             "rejection there reading 'unresolved' (`exact-bilevel check` calls it "
             "inconclusive).", "",
             "| problem | estimator | budget | R | failed | rarest visits | rel. error of mean "
             "| cosine | rel. error of one [95% band] | bias 95% CI | max abs z | verdict "
             "| exact-cov p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    boot = np.random.default_rng(0)
    curves: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    verdicts: dict[str, list[bool]] = defaultdict(list)
    regular: dict[str, list[bool]] = defaultdict(list)
    known_rejects: dict[str, list[bool]] = defaultdict(list)
    known_unresolved: dict[str, list[bool]] = defaultdict(list)
    covariance = _ExactCovariances(spec_text, prov, pathlib.Path(db).resolve().parent)
    for key in sorted(set(groups) | set(failed)):
        p, e, b = key
        rows = groups.get(key, [])
        nf = len(failed.get(key, []))
        v = visits.get((p, b))
        rare = v is not None and v < MIN_EXPECTED_VISITS
        vtxt = "-" if v is None else f"{v:.3g}"
        if not rows:
            lines.append(f"| {p} | {e} | {b} | 0 | {nf} | {vtxt} | - | - | - | - | - | - "
                         "| - |")
            continue
        X, g = np.array(rows), exact[p]
        norm = max(float(np.linalg.norm(g)), 1e-300)
        m = X.mean(axis=0)
        errors = np.linalg.norm(X - g, axis=1) / norm
        single = float(errors.mean())
        means = errors[boot.integers(errors.size, size=(2000, errors.size))].mean(axis=1)
        band = f"{single:.3g} [{np.quantile(means, 0.025):.3g}, {np.quantile(means, 0.975):.3g}]"
        ci = _bias_ci(X, g)
        cos = float(m @ g / max(np.linalg.norm(m) * norm, 1e-300))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = unbiasedness_test(X, g, alpha) if len(rows) >= 2 else None
        verdict = "-" if res is None else ("REJECT" if res.reject else "accept")
        if rare and res is not None:
            verdict += " (rare)"
        zmax = "-" if res is None else f"{float(np.max(np.abs(res.z))):.3g}"
        cov = covariance(p, e, b) if len(rows) >= 2 else None
        known = "-"
        if cov is not None:
            kres = known_covariance_verdict(X, g, cov, math.inf if v is None else v, alpha)
            unresolved = is_unresolved_rejection(kres)
            known = f"{kres.p_value:.3g}" + (" unresolved" if unresolved else
                                              " REJECT" if kres.reject else "")
            known_rejects[e].append(kres.reject and not unresolved)
            known_unresolved[e].append(unresolved)
        lines.append(f"| {p} | {e} | {b} | {len(rows)} | {nf} | {vtxt} | "
                     f"{np.linalg.norm(m - g) / norm:.3g} "
                     f"| {cos:.4f} | {band} | {ci} | {zmax} | {verdict} | {known} |")
        curves[p, e].append((b, single))
        if res is not None:
            verdicts[e].append(res.reject)
            if not rare:
                regular[e].append(res.reject)
    lines += ["", "Rejection rate per estimator over its (problem, budget) groups: the "
              "false-alarm rate of an unbiased estimator, the power against a mutant "
              "(`mutant:NAME`); for a consistent estimator, how often its bias is visible. "
              "'exact-cov rejected': the exact-covariance verdict's failures (and, beside "
              "them, its unresolved rare-event rejections).", "",
              "| estimator | rejected | groups | rate | rate outside the rare-event regime "
              "| exact-cov rejected |",
              "| --- | --- | --- | --- | --- | --- |"]
    if not groups and not failed:
        lines += ["", "No replicates are stored yet (the sweep has not computed any): "
                  "every table above is empty.", ""]
    for e, v in sorted(verdicts.items()):
        r = regular[e]
        outside = f"{sum(r)}/{len(r)} = {np.mean(r):.3f}" if r else "-"
        k = known_rejects.get(e)
        u = sum(known_unresolved.get(e, []))
        kt = (f"{sum(k)}/{len(k)} = {np.mean(k):.3f}" + (f" (+{u} unresolved)" if u else "")
              if k else "-")
        lines.append(f"| {e} | {sum(v)} | {len(v)} | {np.mean(v):.3f} | {outside} | {kt} |")
    if failed:
        lines += ["", "## Failed replicates", "",
                  "| problem | estimator | budget | failed | first message |",
                  "| --- | --- | --- | --- | --- |"]
        for (p, e, b), errs in sorted(failed.items()):
            msg = errs[0].replace("|", "/").replace("\n", " ")[:200]
            lines.append(f"| {p} | {e} | {b} | {len(errs)} | {msg} |")
    text = "\n".join(lines) + "\n"
    _plot(curves, targets[1], inputs=[db])
    atomic_write(targets[0], text, option="--out", inputs=[db])
    return text


class _ExactCovariances:
    """``(problem, estimator label, budget) -> covariance[d, d]`` of one estimate, or
    ``None`` where it is not known (see the module docstring): the problem is rebuilt
    from the stored spec and used only if its content hash is the stored one."""

    def __init__(self, spec_text: str, prov: dict, base: pathlib.Path) -> None:
        self._spec_text, self._hashes, self._base = spec_text, prov.get("problems", {}), base
        self._problems: dict[str, object] | None = None
        self._cache: dict[tuple[str, str, int], np.ndarray | None] = {}

    def _rebuild(self) -> dict[str, object]:
        from .provenance import problem_hash
        from .run import build
        from .spec import parse_spec

        out: dict[str, object] = {}
        try:
            spec = parse_spec(json.loads(self._spec_text), self._base)
        except (ValueError, OSError):
            return out
        for p in spec.problems:
            try:
                problem, x = build(p)
            except (ValueError, OSError):
                continue  # a file problem not found beside the results file
            if problem_hash(problem, x) == self._hashes.get(p.name):
                out[p.name] = (problem, x)
        return out

    @staticmethod
    def base_estimator(label: str) -> str | None:
        """The estimator whose exact covariance a results label (``name[critic]``,
        ``mutant:NAME[critic,baseline]``) is tested against, or ``None``."""
        from ..estimators.moments import SUPPORTED
        from ..validation.mutants import BCHG_FAMILY

        name, _, rest = label.partition("[")
        parts = rest.rstrip("]").split(",")
        if parts[0] != "exact":
            return None
        if name in SUPPORTED:
            return name
        if name.startswith("mutant:") and name[len("mutant:"):] in BCHG_FAMILY:
            return "bc-hg-baseline" if "baseline" in parts[1:] else "bc-hg"
        return None

    def __call__(self, problem: str, label: str, budget: int) -> np.ndarray | None:
        key = (problem, label, budget)
        if key not in self._cache:
            self._cache[key] = self._compute(problem, label, budget)
        return self._cache[key]

    def _compute(self, problem: str, label: str, budget: int) -> np.ndarray | None:
        from ..core.objectives import LeaderReturn
        from ..estimators.moments import moments
        from ..validation.planning import TRUNCATION_PROBABILITY, truncation_probability

        base = self.base_estimator(label)
        if base is None:
            return None
        if self._problems is None:
            self._problems = self._rebuild()
        built = self._problems.get(problem)
        if built is None:
            return None
        prob, x = built
        if not isinstance(prob.objective, LeaderReturn):
            return None
        m = moments(prob, x, base, budget)
        if truncation_probability(budget, m.episodes, m.beta) > 2 * TRUNCATION_PROBABILITY:
            return None  # the budget cap truncates the batch: not the estimates' covariance
        return m.covariance


def _bias_ci(X: np.ndarray, g: np.ndarray) -> str:
    """95% t-interval of the bias at the coordinate with the largest |z|, over max|g|."""
    import scipy.stats

    R = X.shape[0]
    if R < 2:
        return "-"
    se = X.std(axis=0, ddof=1) / np.sqrt(R)
    diff = X.mean(axis=0) - g
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(diff) / np.where(se > 0, se, 1.0), 0.0)
    k = int(np.argmax(z))
    half = float(scipy.stats.t.ppf(0.975, R - 1)) * se[k]
    scale = max(float(np.max(np.abs(g))), 1e-300)
    return f"[{(diff[k] - half) / scale:.2g}, {(diff[k] + half) / scale:.2g}] (k = {k})"


#: More problems than this are summarised in one panel (medians) instead of one each.
MAX_PANELS = 8


def _plot(curves: dict, target: pathlib.Path, inputs: list[str]) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({p for p, _ in curves})
    if not problems:  # no estimates yet: an empty panel that says so
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.text(0.5, 0.5, "no estimates stored yet", ha="center", va="center")
        ax.set_axis_off()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        atomic_write(target, buf.getvalue())
        return
    if len(problems) > MAX_PANELS:  # one panel: the median over problems per estimator
        by_est: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for (_, e), pts in curves.items():
            for b, err in pts:
                by_est[e][b].append(err)
        curves = {(f"median over {len(problems)} problems", e): [
            (b, float(np.median(v))) for b, v in pb.items()] for e, pb in by_est.items()}
        problems = [f"median over {len(problems)} problems"]
    summary = len(problems) == 1 and len(curves) > 6
    fig, axes = plt.subplots(1, len(problems), figsize=(9 if summary else 5 * len(problems), 4),
                             squeeze=False)
    for ax, p in zip(axes[0], problems, strict=True):
        for (q, e), pts in sorted(curves.items()):
            if q == p:
                b, err = zip(*sorted(pts), strict=True)
                ax.loglog(b, err, "o-", label=e)
        ax.set_title(p, fontsize=8)
        ax.set_xlabel("budget (transitions)")
        ax.set_ylabel("relative error of one estimate")
        if summary:  # many curves: the legend beside the panel, not over it
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write(target, buf.getvalue(), option="--out", inputs=inputs)
