"""Chapter 5: checking your own implementation against the exact answer."""

from ._setup import SETUP

NAME = "05_check_your_implementation"
CELLS = [
    ("md", r"""# 5. Checking your own implementation

You have written a hypergradient estimator, or a solver, or ported one from a paper.
How do you know it is right? Comparing two noisy estimators with each other, or
looking at a learning curve, cannot tell a small bias from noise. What can is a
problem with a *known* answer: `exact_bilevel` gives the exact $F(x)$ and
$\nabla F(x)$ of any small problem, and a statistical test decides whether your
estimates are consistent with it.

This chapter goes through the three ways in: a **problem file** and the command line
(for code in any language), the **golden vectors** (frozen problems with answers to
30 digits), and the **pytest helpers** (for Python code), and then explains the
statistics behind `check` — what a false alarm is, what power is, and why the
package ships deliberately wrong estimators."""),
    ("code", SETUP + """
import json, pathlib, tempfile
from exact_bilevel import io
from exact_bilevel.cli import main as cli
from exact_bilevel.experiments.examples import random_problem
tmp = pathlib.Path(tempfile.mkdtemp())"""),
    ("md", r"""## The problem file

A versioned JSON format (`"format": "exact-bilevel/1"`; its JSON Schema ships with
the package as `io.schema()`): transitions `P[s][a][s']` (or softmax logits with
features), the follower's reward as a base plus features times $x$, the leader's
reward, discounts, temperature, initial law and the point $x$. Your code reads the
same file, so both sides solve the same problem."""),
    ("code", """\
problem, x = random_problem(3, 2, 2, seed=1)
io.save_problem(tmp / "problem.json", problem, x)
doc = json.loads((tmp / "problem.json").read_text())
print(json.dumps({k: doc[k] for k in ["format", "gamma", "tau", "initial", "x"]}, indent=1))
print("fields:", sorted(doc))"""),
    ("md", r"""## The command line

`hypergradient` prints the exact answer; `estimate` produces replicates of one of
our estimators (stand-in for yours: any program that writes
`{"estimates": [[...], ...]}` will do); `check` compares an estimate file with the
exact answer. Exit code 0 is a pass, 1 a fail, 2 bad input — usable in any CI."""),
    ("code", """\
cli(["hypergradient", str(tmp / "problem.json")])
import contextlib, io as sio
buf = sio.StringIO()
with contextlib.redirect_stdout(buf):
    cli(["estimate", str(tmp / "problem.json"), "--estimator", "bc-hg",
         "--transitions", "2000", "--replicates", "50", "--quiet"])
(tmp / "est.json").write_text(buf.getvalue())
code = cli(["check", str(tmp / "problem.json"), "--estimate", str(tmp / "est.json")])
print("exit code", code)"""),
    ("md", r"""A *deterministic* gradient (`{"gradient": [...]}`, e.g. from your exact
solver) is compared at a tolerance instead; a relative error of $10^{-5}$ is a
clear fail:"""),
    ("code", """\
exact = eb.hypergradient(problem, x).gradient
(tmp / "wrong.json").write_text(json.dumps({"gradient": (exact * (1 + 1e-5)).tolist()}))
print("exit code", cli(["check", str(tmp / "problem.json"),
                        "--estimate", str(tmp / "wrong.json")]))"""),
    ("md", r"""## The statistics behind `check`

Given $R$ independent estimates $\hat g_1,\dots,\hat g_R \in \mathbb{R}^d$, `check`
tests the null hypothesis $H_0: \mathbb{E}\hat g = \nabla F$. When the package knows
the exact covariance of one estimate (the BC-HG estimators and `naive` at a stated
budget, chapter 3), it uses a chi-square test with that covariance — the report
above says so and shows the sample-covariance test beside it; otherwise it uses
Hotelling's $T^2$ with the sample covariance (or a Bonferroni combination of
per-coordinate $t$ tests when $R$ is small relative to $d$), as in the figure below.
Either way it reports a p-value: the probability, *if the estimator were unbiased*,
of a deviation at least as large as the one observed. It fails when $p < \alpha$.

* The **false-alarm rate** is $\alpha$ by construction: a correct estimator fails with
  probability $\alpha$ (the test is calibrated; the package checks the calibration on
  skewed and heavy-tailed data too).
* The **power** is the probability of rejecting a *wrong* estimator. It grows with
  the bias relative to the standard error $\sigma/\sqrt R$: a bias of 1% needs
  $R \gg (\sigma / 0.01\,|\nabla F|)^2$ replicates to be seen.

A test that never fails proves nothing, so `exact_bilevel` ships **mutants** —
estimators with the bugs people actually make (a sign flip, a missing centring, a
wrong discount power, the forward sum started one step late, ...) — and its own
test suite demands that the check rejects each of them. The picture shows power
directly: the **rejection rate** over 60 independent groups of $R$ estimates each
(1000 transitions per estimate), as $R$ grows, for the correct `bc-hg`, for the
mutant `wrong-discount-power` (the forward sum discounted by $\gamma^k$ instead of
$\gamma^{k-t}$) and for the naive (direct-only) estimator, with 95% binomial
intervals. A calibrated test keeps the correct estimator's rate near $\alpha$ at every
$R$; a wrong estimator's rate — the power — climbs towards 1 as $R$ grows, the faster
the larger its bias relative to the noise. On this problem the leader's reward does
not depend on $x$, so the direct term is exactly zero and the naive estimator returns
exactly the zero vector: a zero-variance, maximally biased estimate that every group
rejects. (The jump of the mutant's curve between $R = 4$ and $R = 5$ is the check
switching tests: with $d = 2$ it uses Hotelling's $T^2$ only when $R > 2d$, and below
that the more conservative per-coordinate $t$ tests with a Bonferroni correction.)"""),
    ("code", """\
from exact_bilevel.estimators import replicates
from exact_bilevel.estimators.registry import leader_knowledge
from exact_bilevel.mutants import mutant_replicates
from exact_bilevel.testing import unbiasedness_test
import scipy.stats
groups, sizes, budget, alpha = 60, [3, 4, 5, 6, 8, 12, 20], 1000, 0.05
n = groups * max(sizes)
samples = {
    "bc-hg (correct)": replicates(problem, x, "bc-hg", budget, n, seed=0)[0],
    "mutant: wrong-discount-power": mutant_replicates(
        "wrong-discount-power", leader_knowledge(problem, x), budget, n, seed=0),
    "naive / direct-only (biased)": replicates(problem, x, "naive", budget, n, seed=0)[0],
}
power = {}
for j, (label, X) in enumerate(samples.items()):
    hits = [sum(unbiasedness_test(X[i * R:(i + 1) * R], exact, alpha).reject
                for i in range(groups)) for R in sizes]
    power[label] = np.array(hits) / groups
    lo, hi = np.array([tuple(scipy.stats.binomtest(h, groups).proportion_ci())
                       for h in hits]).T                # Clopper-Pearson, 95%
    plt.fill_between(sizes, lo, hi, color=f"C{j}", alpha=0.15)
    plt.plot(sizes, power[label], "o-", color=f"C{j}", label=label)
plt.axhline(alpha, color="k", ls=":", label=f"alpha = {alpha}")
plt.xscale("log")
plt.xticks(sizes, [str(R) for R in sizes])
plt.xlabel("R (estimates per group)")
plt.ylabel(f"rejection rate over {groups} groups")
plt.legend(fontsize=8, loc="center right")
plt.show()
for label, rate in power.items():
    print(f"{label:30s}", " ".join(f"R={R}: {r:.2f}" for R, r in zip(sizes, rate, strict=True)))
assert np.all(samples["naive / direct-only (biased)"] == 0.0)"""),
    ("md", r"""## Golden vectors

`verification/golden/*.json` holds 22 frozen problems (reward-, transition- and
jointly-parameterised, sparse, $\gamma$ up to 0.999, $\tau$ down to $10^{-3}$) with the
value and gradient computed in mpmath to 30 digits. They are problem files with an
`expected` block, so `load_problem` reads them directly and an implementation in any
language can be regression-tested against them:"""),
    ("code", """\
root = pathlib.Path(eb.__file__).resolve().parent.parent / "verification" / "golden"
files = sorted(root.glob("*.json"))
worst = 0.0
for f in files:
    p, xg = io.load_problem(f)
    expected = np.array([float(g) for g in json.loads(f.read_text())["expected"]["gradient"]])
    got = eb.hypergradient(p, xg).gradient
    worst = max(worst, np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
print(f"{len(files)} golden files, worst relative difference {worst:.1e}")"""),
    ("md", r"""## In pytest

`exact_bilevel.testing` has the assertions (`assert_unbiased`,
`assert_matches_exact`, `assert_bias_within`, ...), `exact_bilevel.strategies` the
hypothesis strategies that draw random problems, and
`exact_bilevel.testing.check_estimator(fn)` a certification battery of curated
problems for any `fn(problem, x, budget, seed) -> gradient` (a pytest plugin offers
it as a fixture, `bilevel_case`)."""),
    ("code", """\
from exact_bilevel.testing import assert_unbiased, assert_matches_exact
good, _ = replicates(problem, x, "bc-hg", 2000, 60, seed=0)
print(assert_unbiased(good, exact).report)
naive, _ = replicates(problem, x, "naive", 2000, 60, seed=0)
try:
    assert_unbiased(naive, exact)
except AssertionError as err:
    print("rejected:", err)
try:
    assert_matches_exact(exact + 1e-6, exact)
except AssertionError as err:
    print("rejected:", err)"""),
    ("md", r"""## Summary

* Write your problem to a file, or load a golden vector, and compare your numbers
  with the exact ones: `exact-bilevel check` (exit code 0/1/2) or the pytest helpers.
* The statistical check rejects a correct estimator with probability $\alpha$ and a
  wrong one with a power that grows with bias$\times\sqrt R/\sigma$.
* Tests that cannot fail prove nothing: the mutants are the proof of power, and the
  picture above is the same check at work on a correct, a subtly wrong and a plainly
  biased estimator — its false-alarm rate stays near $\alpha$, its power grows with $R$."""),
]
