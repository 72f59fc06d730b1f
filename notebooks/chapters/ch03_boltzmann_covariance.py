"""Chapter 3: the Boltzmann covariance trick (BC-HG)."""

from ._setup import SETUP

NAME = "03_boltzmann_covariance"
CELLS = [
    ("md", r"""# 3. The Boltzmann covariance trick

Chapter 2 wrote the indirect part of the hypergradient with the sensitivities $dQ$,
which need the model. A leader that can only *watch* the follower act must
estimate it from samples. Kudo, Tanabe, Wachi and Akimoto (2026) observed that the
Boltzmann policy turns the indirect part into a **covariance**, and that a
covariance can be estimated from one action per visited state.

**From the score to a covariance.** The Boltzmann policy's derivative is
$d\pi(a|s) = \pi(a|s)\,\big(dQ(s,a) - dV(s)\big)/\tau$, and $dV(s) = \sum_a \pi(a|s)\,
dQ(s,a) = \mathbb{E}_\pi dQ$ (differentiate $V = \tau\log\sum e^{Q/\tau}$). For any
weights $h(s,a)$ — for the leader's return, $h = occ(s)\,Q_L(s,a)$ —

$$\sum_a h(s,a)\, d\pi(a|s) = \frac{1}{\tau}\,\mathbb{E}_{a\sim\pi}\big[h\,(dQ - \mathbb{E}_\pi dQ)\big]
= \frac{1}{\tau}\,\mathrm{Cov}_{a\sim\pi}\big(h(s,a),\, dQ(s,a)\big).$$

A covariance can be centred on *either* side. Centring $dQ$ (as HPGD does) needs
$\mathbb{E}_\pi dQ(s,\cdot)$: $dQ$ for every action at that state. Centring the leader's
side instead, $h - \mathbb{E}_\pi h$, is free when the leader has a critic: for the
return it is the leader's advantage $A_L = Q_L - V_L$, and $\mathbb{E}_\pi A_L = 0$. So

$$\text{indirect} = \frac1\tau\sum_s occ(s)\,\mathbb{E}_{a\sim\pi}\big[A_L(s,a)\, dQ(s,a)\big],$$

an expectation of a product at the *sampled* action. `eb.covariance_decomposition`
returns the per-state terms; their sum is the indirect part:"""),
    ("code", SETUP + "\nfrom exact_bilevel.experiments.examples import random_problem"),
    ("code", """\
problem, x = random_problem(8, 3, 2, seed=4)
hg = eb.hypergradient(problem, x)
cov = eb.covariance_decomposition(problem, x)          # [S, d]
print("sum over states :", cov.sum(axis=0))
print("indirect term   :", hg.indirect)
plt.bar(np.arange(8) - 0.2, cov[:, 0], 0.4, label="k = 0")
plt.bar(np.arange(8) + 0.2, cov[:, 1], 0.4, label="k = 1")
plt.xlabel("state s")
plt.ylabel("(1/tau) occ(s) Cov(Q_L, dQ_k)")
plt.legend()
plt.show()"""),
    ("md", r"""**Exercise 3.** Check the score identity
$d\pi = \pi\,(dQ - \mathbb{E}_\pi dQ)/\tau$ yourself: compute `my_dpi` from the forward
sensitivities `dQ[s, a, k]` and the policy, and compare it with a central finite
difference of the follower's policy in $x$ (step $10^{-5}$; the agreement is limited
by the difference, about $10^{-9}$)."""),
    ("code", """\
sens = eb.hypergradient(problem, x, mode="forward").sensitivities
pi = problem.follower_state(x).solution.policy


def my_dpi(pi, dQ, tau):
    centred = dQ - np.einsum("sa,sak->sk", pi, dQ)[:, None, :]
    return pi[:, :, None] * centred / tau"""),
    ("code", """\
h = 1e-5
fd = np.stack([(problem.follower_state(x + h * e).solution.policy
                - problem.follower_state(x - h * e).solution.policy) / (2 * h)
               for e in np.eye(len(x))], axis=-1)
mine = my_dpi(pi, sens.dQ, problem.tau)
assert np.allclose(mine, fd, atol=1e-8), np.abs(mine - fd).max()
print("exercise 3: dpi matches finite differences to", f"{np.abs(mine - fd).max():.1e}")"""),
    ("md", r"""## Why one visit per state is enough

BC-HG needs an unbiased sample of $dQ(s_t,a_t)$ at the visited pair. By chapter 2,
$dQ$ is the value of the sensitivity reward $g_k = \partial r + \gamma\,\partial\log
P(s_{k+1}|s_k,a_k)\,V(s_{k+1})$ (the likelihood-ratio form of $\gamma\,\partial P\,V$),
so the *forward sum* of the same trajectory,
$\sum_{k\ge t}\gamma^{k-t} g_k$, has conditional mean $dQ(s_t,a_t)$. Multiply by the
leader's advantage at $(s_t,a_t)$, weight by $\gamma_L^t$, sum over the trajectory:
an unbiased estimate of the indirect part from ordinary on-policy episodes. HPGD
(Thoma et al. 2024) samples $A_L\,(dQ - dV)$ instead and needs $dV(s_t)$, i.e. repeated
visits or resets to the same state — expensive in large state spaces.

The price is variance. The forward sum runs to the end of the episode, and the score
term $\partial\log P\cdot V(s')$ carries the whole level of $V$. Any function of
$(s_k, a_k)$ subtracted from $V(s_{k+1})$ keeps the mean (because
$\mathbb{E}_{s'}\partial\log P(s'|s,a) = 0$); `bc-hg-baseline` subtracts $V(s_k)$. On
a transition-parameterised problem, error against the exact gradient versus budget
(10 replicates each, exact leader critic):"""),
    ("code", """\
from exact_bilevel.estimators import replicates
problem2, x2 = random_problem(6, 3, 3, seed=1, parameterize="both")
exact = eb.hypergradient(problem2, x2).gradient
budgets = [300, 1000, 3000, 10000, 30000]
for name in ["bc-hg", "bc-hg-baseline", "hpgd", "hpgd-td", "model-based"]:
    err = [np.mean(np.linalg.norm(replicates(problem2, x2, name, b, 10, seed=b)[0] - exact,
                                  axis=1)) / np.linalg.norm(exact) for b in budgets]
    plt.loglog(budgets, err, "o-", label=name)
plt.loglog(budgets, 3 * np.sqrt(budgets[0] / np.array(budgets)), "k:", label=r"$N^{-1/2}$")
plt.xlabel("transitions per estimate")
plt.ylabel("mean relative error")
plt.legend()
plt.show()"""),
    ("md", r"""## DiscreteToy: when plain BC-HG explodes

The paper's Markov-game example (chapter 7) has $\gamma = 0.99$ and
$\tau = 0.05$. The leader's policy enters the follower's transitions, so the score
term $\partial\log\pi_L\cdot V$ multiplies values of order $1/(1-\gamma) = 100$ by
a factor $1/\tau = 20$, summed over a long forward sum. Plain `bc-hg` is unbiased
but its standard deviation is hundreds of times the gradient; the baseline removes
the common level of $V$ and most of the variance. The paper's BC-HG code in fact uses
the advantage in the influence term, i.e. our `bc-hg-baseline`. 100 replicates of
450 transitions each, at the uniform leader:"""),
    ("code", """\
from exact_bilevel import games as mg
rows = []
for R in (1.0, 2.0):
    game = mg.discrete_toy(R)
    xg = np.zeros(game.n_params)
    g_exact = mg.hypergradient(game, xg).gradient
    for est in ("bc-hg", "bc-hg-baseline"):
        X = np.array([mg.estimate(game, xg, est, 450, np.random.default_rng([7, i])).gradient
                      for i in range(100)])
        rows.append((f"R = {R:g}, {est}", np.linalg.norm(X.std(0)) / np.linalg.norm(g_exact)))
labels, ratios = zip(*rows, strict=True)
plt.barh(labels, ratios)
plt.xscale("log")
plt.xlabel("|per-coordinate sd| / |exact gradient|  (one estimate, 450 transitions)")
plt.show()"""),
    ("md", r"""Both estimators are unbiased — the tests of `exact_bilevel` check that on
random problems every run — but a single plain estimate here points nowhere. A
leader that takes gradient steps with it walks at random; with the baseline it
climbs (chapter 7 and `verification/reproduce_discrete_toy.md`).

## Summary

* The Boltzmann score $d\pi = \pi(dQ - \mathbb{E}_\pi dQ)/\tau$ turns the indirect
  part into $\frac1\tau\sum_s occ(s)\,\mathrm{Cov}_\pi(Q_L, dQ)$.
* Centring the leader's side ($A_L$) instead of $dQ$ lets one sampled action per
  visited state suffice; the forward sum of the sensitivity reward is an unbiased
  sample of $dQ$.
* Unbiased is not enough: the score term's variance can dwarf the gradient.
  Baselines (any function of $(s_k, a_k)$ subtracted from $V(s_{k+1})$) keep the mean
  and cut the variance by orders of magnitude."""),
]
