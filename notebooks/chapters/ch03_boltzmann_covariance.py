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
$d\pi = \pi\,(dQ - \mathbb{E}_\pi dQ)/\tau$ yourself: write `my_dpi` from the forward
sensitivities `dQ[s, a, k]` and the policy (in the empty function below; a reference
answer is collapsed after it), and compare it with a central finite difference of the
follower's policy in $x$ (step $10^{-5}$; the agreement is limited by the difference,
about $10^{-9}$)."""),
    ("code", """\
sens = eb.hypergradient(problem, x, mode="forward").sensitivities
pi = problem.follower_state(x).solution.policy


def my_dpi(pi, dQ, tau):
    \"\"\"Return dpi[s, a, k] from pi[s, a] and dQ[s, a, k].\"\"\"
    raise NotImplementedError("your code here")"""),
    ("code", """\
# cell-tags: hide-input
# reference answer: it replaces your function
def my_dpi(pi, dQ, tau):  # noqa: F811
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
$\mathbb{E}_{s'}\partial\log P(s'|s,a) = 0$); `bc-hg-baseline` subtracts $V(s_k)$.

## The exact variance of one estimate

With the exact leader critic, one episode's contribution to BC-HG is a polynomial in
sums along a finite Markov chain, and its mean and covariance solve linear
(Bellman-like) systems — the vector analogue of the variance of a discounted return
(`docs/math.md`, section 10). `exact_bilevel.estimators.moments(problem, x, name,
budget)` returns both for `bc-hg`, `bc-hg-baseline` and `naive`, so the variance needs
no replicates at all. One estimate at a budget averages a fixed number of i.i.d.
episodes, so its covariance is the per-episode covariance divided by that number.

On a transition-parameterised problem, the figure below shows the root-mean-square
error of one estimate relative to $|\nabla F|$ as the budget grows: for `bc-hg` and
`bc-hg-baseline` the *exact* value, $\sqrt{\mathrm{tr\,Cov}}/|\nabla F|$ (lines; both
are unbiased), with the error measured on 10 replicates beside it (open markers), and
three other estimators measured on 10 replicates (filled markers; exact leader critic
for all):"""),
    ("code", """\
from exact_bilevel.estimators import moments, replicates
problem2, x2 = random_problem(6, 3, 3, seed=1, parameterize="both")
exact = eb.hypergradient(problem2, x2).gradient
budgets = np.array([300, 1000, 3000, 10000, 30000])


def measured(name):
    return np.array([np.sqrt(np.mean(np.sum((replicates(problem2, x2, name, int(b), 10,
                                                          seed=int(b))[0] - exact) ** 2, 1)))
                     for b in budgets]) / np.linalg.norm(exact)


rms = {}
for j, name in enumerate(["bc-hg", "bc-hg-baseline"]):
    rms[name] = np.array([np.sqrt(np.trace(moments(problem2, x2, name, int(b)).covariance))
                          for b in budgets]) / np.linalg.norm(exact)
    plt.loglog(budgets, rms[name], "-", color=f"C{j}", label=f"{name} (exact)")
    plt.loglog(budgets, measured(name), "o", mfc="none", color=f"C{j}",
               label=f"{name} (10 replicates)")
for j, name in enumerate(["hpgd", "hpgd-td", "model-based"], start=2):
    rms[name] = measured(name)
    plt.loglog(budgets, rms[name], "s--", color=f"C{j}", label=f"{name} (10 replicates)")
plt.xlabel("transitions per estimate")
plt.ylabel("RMS error / |grad F|")
plt.legend(fontsize=8)
plt.show()
cut = rms["bc-hg"][-1] / rms["bc-hg-baseline"][-1]
below = [n for n in ("hpgd", "hpgd-td", "model-based") if rms[n][-1] < rms["bc-hg-baseline"][-1]]
print(f"exact: the baseline divides bc-hg's RMS error by {cut:.2f} at every budget")
print(f"at {budgets[-1]} transitions, below bc-hg-baseline's error: {', '.join(below) or 'none'}")"""),
    ("md", r"""Two things to read off. First, both BC-HG curves fall exactly like $N^{-1/2}$
(an unbiased average of i.i.d. episodes), and the baseline shifts the whole line down
by a constant factor. Second, estimators with more access or more machinery can have
a smaller error at the same budget: `model-based` draws any $(s,a)$ from a generative
model and plugs the estimated model into the exact formulas, and `hpgd-td` fits a TD
critic for $dQ$ on the whole batch; both trade variance for a bias at small budgets
and need more than on-policy episodes or a correct critic model. BC-HG's selling
point is not the smallest error but that it is unbiased from on-policy episodes
alone. The cell prints which estimators ended below the baseline BC-HG in this run.

How the baseline's gain depends on the problem is clearest in the exact numbers. The
score term multiplies $V(s')$, whose level is of order $r_{\max}/(1-\gamma)$; the
baseline removes that level. Below, the exact standard deviation of one episode's
contribution, relative to $|\nabla F|$, for the same random problem at discounts from
0.5 to 0.99 (no sampling: each point is a few linear solves):"""),
    ("code", """\
gammas = np.array([0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])
sd = {"bc-hg": [], "bc-hg-baseline": []}
for gm in gammas:
    pg, xg = random_problem(6, 3, 3, seed=1, parameterize="both", gamma=gm)
    norm = np.linalg.norm(eb.hypergradient(pg, xg).gradient)
    for name in sd:
        sd[name].append(np.sqrt(np.trace(moments(pg, xg, name).covariance)) / norm)
for name, marker in (("bc-hg", "o-"), ("bc-hg-baseline", "s-")):
    plt.loglog(1 / (1 - gammas), sd[name], marker, label=name)
plt.xlabel(r"horizon $1/(1-\\gamma)$")
plt.ylabel("exact s.d. of one episode / |grad F|")
plt.legend()
plt.show()
ratio = np.array(sd["bc-hg"]) / np.array(sd["bc-hg-baseline"])
print("variance ratio bc-hg / bc-hg-baseline:", " ".join(f"{r ** 2:.1f}" for r in ratio))
assert np.all(np.diff(ratio) > 0)"""),
    ("md", r"""The ratio grows with the horizon: at short horizons the level of $V$ is small
and the baseline buys little; at $\gamma = 0.99$ it removes most of the variance.

## When replicates lie: the rare-event regime

Every check in chapter 5 compares the mean of $R$ replicates with $\nabla F$ in units
of the *sample* standard error. That assumes the replicates show the estimator's
variability. They need not. Suppose a pair $(s,a)$ has on-policy probability $p$ per
transition, far below $1/(RN)$ for $R$ replicates of $N$ transitions: no replicate
ever visits it. But BC-HG's contribution from that pair is huge when it happens — it
is weighted by $A_L/\tau$, and the pair is rare precisely because its advantage for
the follower is very negative at small $\tau$ — so a fraction of the mean, and most
of the variance, lives in an event the replicates never contain. The replicates look
perfectly ordinary: their spread is small, their histogram is bell-shaped, and their
mean misses $\nabla F$ by many of their own standard errors. A sample-based test
then rejects a *correct* estimator.

The exact covariance is not fooled: it contains the rare event's contribution
whether or not it was sampled. `exact_bilevel.validation.acceptance.known_covariance_test`
is a chi-square test of $\mathbb{E}\hat g = \nabla F$ that uses it instead of the
sample covariance. Below, a 3-state problem ($\gamma = 0.5$) at decreasing
temperatures, so that its least likely on-policy pair gets rarer and rarer; at each
temperature 20 independent sets of $R = 100$ replicates of $N = 2000$ transitions of
the correct `bc-hg`, each set tested both ways at $\alpha = 0.01$:"""),
    ("code", """\
import scipy.stats
import warnings
from exact_bilevel.estimators.registry import leader_knowledge
from exact_bilevel.testing import tail_diagnostic, unbiasedness_test
from exact_bilevel.validation.acceptance import known_covariance_test
from exact_bilevel.validation.convergence import rare_event_diagnostic
taus, sets, R, N, alpha = [0.3, 0.15, 0.1, 0.08, 0.07, 0.06], 20, 100, 2000, 0.01
rows, tail_ok = [], []
for t in taus:
    pt, xt = random_problem(3, 2, 2, seed=0, gamma=0.5, tau=t)
    g_t = eb.hypergradient(pt, xt).gradient
    cov_t = moments(pt, xt, "bc-hg", N).covariance          # exact, one estimate
    p_rare = rare_event_diagnostic(leader_knowledge(pt, xt), 1.0)[0]   # per transition
    reject_sample, reject_exact, z_sample, z_exact, skew, ok = [], [], [], [], [], []
    for k in range(sets):
        X = replicates(pt, xt, "bc-hg", N, R, seed=k)[0]
        with warnings.catch_warnings():          # the sample test warns about its tails
            warnings.simplefilter("ignore")
            reject_sample.append(unbiasedness_test(X, g_t, alpha).reject)
        reject_exact.append(known_covariance_test(X, g_t, cov_t, alpha).reject)
        err = X.mean(0) - g_t
        z_sample.append(np.max(np.abs(err) / (X.std(0, ddof=1) / np.sqrt(R))))
        z_exact.append(np.max(np.abs(err) / np.sqrt(np.diag(cov_t) / R)))
        skew.append(np.max(np.abs(scipy.stats.skew(X))))
        ok.append(tail_diagnostic(X)[0])                 # the package's normality check
    rows.append((t, p_rare, np.mean(reject_sample), np.mean(reject_exact),
                 np.median(z_sample), np.median(z_exact), np.median(skew)))
    tail_ok.append(int(np.sum(ok)))
t_, p_, rs, re, zs, ze, sk = map(np.array, zip(*rows, strict=True))
fig, ax = plt.subplots(1, 2, figsize=(12, 4))
ax[0].semilogx(p_, rs, "o-", label="sample covariance (Hotelling)")
ax[0].semilogx(p_, re, "s-", label="exact covariance (chi-square)")
ax[0].axhline(alpha, color="k", ls=":", label=r"$\\alpha$")
ax[0].set_ylabel(f"rejection rate of the correct bc-hg ({sets} sets)")
ax[1].loglog(p_, zs, "o-", label="in sample standard errors")
ax[1].loglog(p_, ze, "s-", label="in exact standard errors")
ax[1].set_ylabel("median max |mean - grad F| / s.e.")
for a in ax:
    a.set_xlabel("probability of the least likely on-policy pair, per transition")
    a.invert_xaxis()
    a.legend(fontsize=8)
plt.show()
for row in rows:
    print("tau = {:.2f}: p_rare = {:.1e}, rejected (sample / exact) {:.2f} / {:.2f}, "
          "median |z| {:.1f} / {:.2f}, median |skewness| {:.2f}".format(*row))
worst = int(np.argmax(zs))
assert zs[worst] > 10 and ze[worst] < 3 and rs[worst] > 0.5 and re[worst] <= 0.1
normal_skew = np.median([np.max(np.abs(scipy.stats.skew(rng_n.normal(size=(R, 2)))))
                         for rng_n in [np.random.default_rng(1)] for _ in range(2000)])
print(f"at tau = {t_[worst]:g}: the replicates' median |skewness| is {sk[worst]:.2f} "
      f"(normal samples of {R}: {normal_skew:.2f}), yet their mean misses grad F by "
      f"{zs[worst]:.0f} of their own standard errors and {ze[worst]:.2f} exact ones; "
      f"{tail_ok[worst]} of {sets} sets pass the package's tail diagnostic (Cochran's rule)")"""),
    ("md", r"""Read the figure from left to right (rarer and rarer pairs). While the pair is
visited in every set, both tests reject at about $\alpha$. As its probability drops
below $1/(RN) = 5\times10^{-6}$, first the replicates become skewed (some sets see
the pair, most do not), and then, deep in the regime, *no set ever sees it*: the
replicates are again well behaved — skewness as small as for normal samples, and most
sets pass the package's own tail diagnostic — and their mean misses $\nabla F$
by tens to hundreds of sample standard errors. The Hotelling test rejects the
correct estimator almost every time. The exact-covariance test does not: measured in
exact standard errors the miss is a fraction of one, because the exact variance
includes the unseen event. The cell prints the numbers behind each point.

Two lessons. An unbiasedness test is only as good as its estimate of the variance,
and a sample covariance cannot estimate what the sample never saw; a skewness check
does not catch it either, because the replicates look normal. And the exact
covariance says something uncomfortable but true: at this budget one estimate's
standard deviation is many times $|\nabla F|$, so these replicates cannot tell a
correct estimator from a badly wrong one — the honest verdict is "inconclusive", and
the remedy is a larger budget or a higher temperature, not a rejection.
`verification/known_covariance_rates.md` measures both tests on 198 random problems.

## DiscreteToy: when plain BC-HG explodes

The paper's Markov-game example (chapter 7) has $\gamma = 0.99$ and
$\tau = 0.05$. The leader's policy enters the follower's transitions, so the score
term $\partial\log\pi_L\cdot V$ multiplies values of order $1/(1-\gamma) = 100$ by
a factor $1/\tau = 20$, summed over a long forward sum. Plain `bc-hg` is unbiased
but its standard deviation is hundreds of times the gradient; the baseline removes
the common level of $V$. The paper's BC-HG code in fact uses the advantage in the
influence term, i.e. our `bc-hg-baseline`. 100 replicates of 450 transitions each,
at the uniform leader (the exact moments above cover single-agent problems; here the
standard deviations are measured):"""),
    ("code", """\
from exact_bilevel import games as mg
rows = []
for R_toy in (1.0, 2.0):
    game = mg.discrete_toy(R_toy)
    xg = np.zeros(game.n_params)
    h_toy = mg.hypergradient(game, xg)
    sds = {}
    for est in ("bc-hg", "bc-hg-baseline"):
        X = np.array([mg.estimate(game, xg, est, 450, np.random.default_rng([7, i])).gradient
                      for i in range(100)])
        sds[est] = np.linalg.norm(X.std(0)) / np.linalg.norm(h_toy.gradient)
        rows.append((f"R = {R_toy:g}, {est}", sds[est]))
    k = int(np.argmax(np.abs(h_toy.gradient)))
    print(f"R = {R_toy:g}: grad F[{k}] = {h_toy.gradient[k]:+.3f} = direct {h_toy.direct[k]:+.3f}"
          f" + indirect {h_toy.indirect[k]:+.3f}; s.d. / |grad F|: bc-hg {sds['bc-hg']:.0f}, "
          f"baseline {sds['bc-hg-baseline']:.0f} (variance divided by "
          f"{(sds['bc-hg'] / sds['bc-hg-baseline']) ** 2:.0f})")
    assert sds["bc-hg"] / sds["bc-hg-baseline"] > 3
labels, ratios = zip(*rows, strict=True)
plt.barh(labels, ratios)
plt.xscale("log")
plt.xlabel("|per-coordinate sd| / |exact gradient|  (one estimate, 450 transitions)")
plt.show()
assert ratios[-1] > 100"""),
    ("md", r"""Both estimators are unbiased — the tests of `exact_bilevel` check that on
random problems every run — and the baseline divides the variance by a large factor
at both $R$ (printed). But look at the last bar: at $R = 2$ even the baseline's
standard deviation is *hundreds* of times $|\nabla F|$. The reason is in the printed
decomposition: at the uniform leader the direct and indirect parts nearly cancel, so
$|\nabla F|$ is small while each part — and the noise of estimating it — is not. A
single estimate there points nowhere, and a leader needs to average very many
estimates per step (or move away from the cancellation) before its steps follow the
gradient; `verification/reproduce_discrete_toy.md` runs the leader loops.

## Summary

* The Boltzmann score $d\pi = \pi(dQ - \mathbb{E}_\pi dQ)/\tau$ turns the indirect
  part into $\frac1\tau\sum_s occ(s)\,\mathrm{Cov}_\pi(Q_L, dQ)$.
* Centring the leader's side ($A_L$) instead of $dQ$ lets one sampled action per
  visited state suffice; the forward sum of the sensitivity reward is an unbiased
  sample of $dQ$.
* Unbiased is not enough: the score term's variance can dwarf the gradient.
  Baselines (any function of $(s_k, a_k)$ subtracted from $V(s_{k+1})$) keep the mean
  and cut the variance, by more the longer the horizon; `moments` gives that variance
  exactly.
* A sample covariance cannot see events the replicates never contained: in the
  rare-event regime a correct estimator fails sample-based tests while the
  exact-covariance test, correctly, does not."""),
]
