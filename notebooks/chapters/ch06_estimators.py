"""Chapter 6: the estimators side by side."""

from ._setup import SETUP

NAME = "06_estimators"
CELLS = [
    ("md", r"""# 6. The estimators side by side

Chapter 3 derived one estimator, BC-HG. The literature has several, and they differ
less in their formulas — all estimate the same hypergradient of chapter 2 — than in
**what access to the environment they need** and **what they converge to**. The
exact answer lets us compare them on equal terms: same problem, same budget of
transitions (every step and every reset is billed), error measured against
$\nabla F$.

* **BC-HG** (Kudo et al. 2026) — on-policy episodes only. The leader's advantage times
  the forward sum of the sensitivity reward; unbiased with the exact critic.
* **HPGD** (Thoma et al. 2024) — samples $A_L(s,a)\,\big(dQ(s,a) - dV(s)\big)/\tau$,
  centring the follower's side. It needs $dV(s) = \mathbb{E}_\pi dQ(s,\cdot)$: either
  repeated visits to the same state (`hpgd`, `hpgd-td`, whose estimates are
  therefore biased at small budgets) or resets to a chosen state (`hpgd-oracle`).
* **SoBiRL** (Yang, Gao & Yuan, AISTATS 2025; arXiv 2405.19697) — differentiates the soft-Bellman fixed point
  directly: estimate $dQ$ at every state-action pair (resets to $(s,a)$), then apply
  the general formula with the exact partial derivatives of $f$. Consistent, not
  unbiased (a product of estimates).
* **Model-based** — estimate $P$ (and $r$) from a generative model, then apply the
  exact formulas of chapter 2 to the estimated model. Consistent; its error is
  that of $\hat P$, pushed through $(I - \gamma \hat P_\pi)^{-1}$.
* **Zeroth-order** — two-point Gaussian smoothing of the leader's *return*, with the
  leader deploying perturbed $x \pm \mu u$: it needs no derivative at all but is
  unbiased only for the smoothed objective $F_\mu(x) = \mathbb{E}_u F(x + \mu u)$, and
  its variance grows with $d$.
* **Naive** (direct-only) — drops the indirect term: biased by exactly that term.

`exact-bilevel estimators` lists them with their access and bias, from the
estimator registry's own metadata (the cell runs that command):"""),
    ("code", SETUP + """
import scipy.stats
from exact_bilevel.cli import main as cli
from exact_bilevel.estimators import replicates
from exact_bilevel.experiments.examples import random_problem
assert cli(["estimators"]) == 0"""),
    ("md", r"""## Error against the exact gradient

A 6-state, 3-action problem whose follower reward depends on $x \in \mathbb{R}^3$;
budgets from 300 to 30,000 transitions, 10 replicates each. The plot shows the root
mean square error of one estimate, relative to $|\nabla F|$. For an unbiased
estimator it falls like $N^{-1/2}$; a biased one levels off at its bias."""),
    ("code", """\
problem, x = random_problem(6, 3, 3, seed=1)
exact = eb.hypergradient(problem, x).gradient
budgets = np.array([300, 1000, 3000, 10000, 30000])
names = ["bc-hg", "hpgd", "hpgd-td", "hpgd-oracle", "sobirl", "model-based", "zeroth-order",
         "naive"]
fig, ax = plt.subplots(figsize=(8, 5))
for name in names:
    err = []
    for b in budgets:
        X, _ = replicates(problem, x, name, int(b), 10, seed=int(b))
        err.append(np.sqrt(np.mean(np.sum((X - exact) ** 2, axis=1))) / np.linalg.norm(exact))
    ax.loglog(budgets, err, "o-", label=name)
ax.loglog(budgets, 2 * np.sqrt(budgets[0] / budgets), "k:", label=r"$N^{-1/2}$")
ax.set_xlabel("transitions per estimate (steps + resets)")
ax.set_ylabel("RMS error / |grad F|")
ax.legend(fontsize=8, ncol=2)
plt.show()"""),
    ("md", r"""Read the plot with the access column in mind: `model-based` looks best, but
it uses a generative model (any $(s,a)$ on demand) that an observing leader does not
have; `hpgd-oracle` and `sobirl` use resets. `hpgd-td` watches on-policy episodes
only, and its error can be far below BC-HG's: it fits a TD model of $dQ$ to the whole
batch, which averages the noise over all visits but is biased at small budgets and
only as good as that fit (chapter 3 shows the same). Among the estimators that only
watch on-policy episodes, BC-HG is the one that is unbiased at every budget, whatever
the problem — smallest error is a different claim. `naive` sits
at relative error 1 at every budget: on this problem only the follower's reward
depends on $x$, so the direct term is exactly zero, the indirect term is *all* of the
gradient, and the naive estimate is the zero vector (the cell below checks it)."""),
    ("code", """\
hg = eb.hypergradient(problem, x)
assert np.all(hg.direct == 0.0)
print("direct:", hg.direct, " |indirect| / |grad F| =",
      np.linalg.norm(hg.indirect) / np.linalg.norm(hg.gradient))"""),
    ("md", r"""## What the zeroth-order estimator converges to

`zeroth-order` is unbiased for $\nabla F_\mu$, not for $\nabla F$. The package computes
$\nabla F_\mu$ exactly by Gauss-Hermite quadrature (`smoothed_gradient`), which
separates its two errors: the **smoothing bias** $\nabla F_\mu - \nabla F =
O(\mu^2)$, and the sampling noise around $\nabla F_\mu$.

**Exercise 6.** Write the two-point estimator with *exact* returns,
$\hat g = \frac{F(x + \mu u) - F(x - \mu u)}{2\mu}\,u$ with $u \sim N(0, I)$ (one
direction per estimate; the cell averages $K$ of them), and check that its mean is
$\nabla F_\mu$ and *not* $\nabla F$. Write it in the empty function; a reference
answer is collapsed after it.

A check of "not $\nabla F$" must be able to fail, so it has to be designed, not hoped
for. With exact returns, everything about this estimator is an integral over
$u \sim N(0, I)$: its mean $\nabla F_\mu$ and its covariance
$\Sigma = \mathbb{E}[D(u)^2 uu^\top] - \nabla F_\mu \nabla F_\mu^\top$,
$D(u) = (F(x+\mu u) - F(x-\mu u))/2\mu$, both computed by Gauss-Hermite quadrature. So
the distance between $\nabla F_\mu$ and $\nabla F$ in standard errors of the mean of
$K$ estimates, $\delta = \sqrt{K\,\Delta^\top\Sigma^{-1}\Delta}$ with
$\Delta = \nabla F_\mu - \nabla F$, is known *before* sampling. The check uses the
chi-square test with the exact covariance (`known_covariance_test`, the test of
chapter 3) at $\alpha = 10^{-4}$: its acceptance region is a ball of radius
$r = \sqrt{\chi^2_{2,1-\alpha}} \approx 4.3$ standard errors around the mean. Choosing
$\mu$ and $K$ so that $\delta > 2r$ makes the two verdicts — accept $\nabla F_\mu$, reject
$\nabla F$ — hold together except with probability at most $\alpha$, whatever the
random draw. ($\mu = 0.8$ gives a smoothing bias large enough for $K = 4000$; the
quadrature needs more nodes as $\mu$ grows, because $F$ is evaluated further from
$x$, where it is less polynomial, so the cell compares two orders.)"""),
    ("code", """\
from exact_bilevel.estimators.zeroth_order import smoothed_gradient
from exact_bilevel.validation.acceptance import known_covariance_test
small, xs = random_problem(4, 2, 2, seed=3)
mu, K = 0.8, 4000


def my_two_point(problem, x, mu, K, rng):
    \"\"\"Return K single-direction two-point estimates, shape [K, d].\"\"\"
    raise NotImplementedError("your code here")"""),
    ("code", """\
# cell-tags: hide-input
# reference answer: it replaces your function
def my_two_point(problem, x, mu, K, rng):  # noqa: F811
    U = rng.normal(size=(K, len(x)))
    diffs = np.array([(problem.value(x + mu * u) - problem.value(x - mu * u)) / (2 * mu)
                      for u in U])
    return diffs[:, None] * U"""),
    ("code", """\
def two_point_moments(problem, x, mu, order):
    \"\"\"Exact mean [d] and covariance [d, d] of one two-point estimate (d = 2),
    by a tensor Gauss-Hermite rule with order^2 nodes.\"\"\"
    z, w = np.polynomial.hermite_e.hermegauss(order)
    U = np.stack(np.meshgrid(z, z, indexing="ij"), axis=-1).reshape(-1, 2)
    W = np.outer(w, w).ravel() / (2 * np.pi)          # weights of N(0, I)
    D = np.array([(problem.value(x + mu * u) - problem.value(x - mu * u)) / (2 * mu)
                  for u in U])
    mean = (W * D) @ U
    return mean, np.einsum("n,ni,nj->ij", W * D**2, U, U) - np.outer(mean, mean)


target, Sigma = two_point_moments(small, xs, mu, 48)
target_40, _ = two_point_moments(small, xs, mu, 40)
assert np.allclose(target, smoothed_gradient(small, xs, smoothing=mu, order=48), atol=1e-12)
exact_small = eb.hypergradient(small, xs).gradient
delta = target - exact_small
dist = np.sqrt(K * delta @ np.linalg.solve(Sigma, delta))
radius = np.sqrt(scipy.stats.chi2.ppf(1 - 1e-4, 2))
se = np.sqrt(np.diag(Sigma) / K)
print(f"quadrature: orders 40 and 48 agree to {np.abs(target - target_40).max():.1e} "
      f"= {np.max(np.abs(target - target_40) / se):.2f} standard errors")
print(f"by design: grad F is {dist:.1f} standard errors from grad F_mu "
      f"(> 2 x {radius:.2f} = {2 * radius:.2f})")
assert dist > 2 * radius

G = my_two_point(small, xs, mu, K, np.random.default_rng(0))
at_target = known_covariance_test(G, target, Sigma, alpha=1e-4)
at_exact = known_covariance_test(G, exact_small, Sigma, alpha=1e-4)
assert not at_target.reject and at_exact.reject, (at_target.report, at_exact.report)
print("mean of the two-point estimates:", G.mean(0), "+-", se)
print("grad F_mu (quadrature)        :", target)
print("grad F (exact)                :", exact_small)
print("exercise 6: centred on grad F_mu (p = {:.2f}), not on grad F (p = {:.1e}); the "
      "smoothing bias is {:.2f} of |grad F|".format(at_target.p_value, at_exact.p_value,
                                                   np.linalg.norm(delta)
                                                   / np.linalg.norm(exact_small)))"""),
    ("md", r"""## How the package makes these comparisons fair

* **One budget.** Every estimator receives the same number of transitions; a reset
  costs one, a generative-model draw costs one, and a test counts what each
  estimator really consumed at the environment (`tests/test_cost_accounting.py`).
* **One target.** Unbiased estimators are tested for unbiasedness; consistent ones
  with a bias bound that shrinks like $1/N$; zeroth-order against $\nabla F_\mu$.
* **Fresh problems.** The convergence tests draw new random problems on every run
  (hypothesis), and each estimator's deliberately broken twin must be rejected on
  the same draws (`verification/convergence_power.md` measures that power).
* **Sweeps.** `exact-bilevel sweep` runs problems x estimators x budgets x replicates
  into an SQLite file that survives interruption, and `exact-bilevel report` turns it
  into tables and plots (`verification/sweeps/`).

## Summary

* All estimators target the same hypergradient; they differ in access (episodes,
  repeated visits, resets, generative model, perturbed deployments) and in what
  they converge to.
* With on-policy episodes only, BC-HG is unbiased at every budget; HPGD is biased
  until states repeat; SoBiRL and model-based are consistent with resets or a
  generative model; zeroth-order targets $\nabla F_\mu$.
* Compare estimators by their error against the exact gradient at equal budget —
  never by which learning curve looks better."""),
]
