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
* **SoBiRL** (Yang, Gao & Yuan 2025) — differentiates the soft-Bellman fixed point
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

`exact-bilevel estimators` lists them with their access and bias:"""),
    ("code", SETUP + """
from exact_bilevel.estimators import replicates
from exact_bilevel.estimators.registry import ESTIMATORS
from exact_bilevel.experiments.examples import random_problem
for name, info in sorted(ESTIMATORS.items()):
    print(f"{name:18s} {'unbiased' if info.unbiased else 'biased/consistent':18s} {info.access}")"""),
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
have; `hpgd-oracle` and `sobirl` use resets. Among the estimators that only watch
on-policy episodes, BC-HG is the one that is unbiased at every budget. `naive` sits
at relative error ~1 because here the indirect term is most of the gradient.

## What the zeroth-order estimator converges to

`zeroth-order` is unbiased for $\nabla F_\mu$, not for $\nabla F$. The package computes
$\nabla F_\mu$ exactly by Gauss-Hermite quadrature (`smoothed_gradient`), which
separates its two errors: the **smoothing bias** $\nabla F_\mu - \nabla F =
O(\mu^2)$, and the sampling noise around $\nabla F_\mu$.

**Exercise 6.** Write the two-point estimator with *exact* returns,
$\hat g = \frac1K\sum_{i=1}^K \frac{F(x + \mu u_i) - F(x - \mu u_i)}{2\mu}\,u_i$ with
$u_i \sim N(0, I)$, and check that its mean is $\nabla F_\mu$ (within its standard
error) and *not* $\nabla F$. (The quadrature needs more nodes as $\mu$ grows: $F$ is
evaluated further from $x$, where it is less polynomial.)"""),
    ("code", """\
from exact_bilevel.estimators.zeroth_order import smoothed_gradient
small, xs = random_problem(4, 2, 2, seed=3)
mu = 0.3


def my_two_point(problem, x, mu, K, rng):
    U = rng.normal(size=(K, len(x)))
    diffs = np.array([(problem.value(x + mu * u) - problem.value(x - mu * u)) / (2 * mu)
                      for u in U])
    return diffs[:, None] * U                      # K single-direction estimates"""),
    ("code", """\
G = my_two_point(small, xs, mu, 6000, np.random.default_rng(0))
mean, se = G.mean(0), G.std(0, ddof=1) / np.sqrt(len(G))
target = smoothed_gradient(small, xs, smoothing=mu, order=24)   # quadrature, 24^2 nodes
exact_small = eb.hypergradient(small, xs).gradient
assert np.all(np.abs(mean - target) < 4 * se), (mean, target, se)
print("mean of the two-point estimates:", mean, "+-", se)
print("grad F_mu (quadrature)        :", target)
print("grad F (exact)                :", exact_small)
print("exercise 6: the estimator is centred on grad F_mu; its smoothing bias is",
      np.linalg.norm(target - exact_small) / np.linalg.norm(exact_small))"""),
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
