"""Chapter 1: the soft Bellman equation and the Boltzmann policy."""

from ._setup import SETUP

NAME = "01_soft_bellman"
CELLS = [
    ("md", r"""# 1. The soft Bellman equation and the Boltzmann policy

Every method in this course starts from the *follower*: an agent that solves an
entropy-regularised Markov decision process. The follower picks actions in a finite
MDP with transitions $P(s'|s,a)$, rewards $r(s,a)$ and discount $\gamma < 1$, and
maximises the discounted reward **plus** $\tau$ times the entropy of its own policy,

$$\max_\pi\ \mathbb{E}\sum_{t\ge 0} \gamma^t \big(r(s_t,a_t) - \tau \log \pi(a_t|s_t)\big).$$

The temperature $\tau > 0$ prices randomness: a policy pays nothing for being
uniform and everything for being deterministic. Why would a follower do that? In
bilevel RL the reason is mathematical as much as behavioural. With $\tau > 0$ the
optimal policy is *unique* and a *smooth* function of the rewards, so the leader's
objective $F(x) = f(x, \pi^*(x))$ has a gradient at all. With $\tau = 0$ the
follower's policy jumps when two actions tie, and $F$ has kinks.

The optimal values solve the **soft Bellman equations**

$$Q(s,a) = r(s,a) + \gamma \sum_{s'} P(s'|s,a)\, V(s'),\qquad
V(s) = \tau \log \sum_a e^{Q(s,a)/\tau},$$

and the optimal policy is the **Boltzmann** (softmax) policy

$$\pi(a|s) = \exp\big((Q(s,a) - V(s))/\tau\big).$$

Two facts do all the work later. First, $V$ is the *soft maximum* of $Q$: the
log-sum-exp lies between $\max_a Q$ and $\max_a Q + \tau\log A$, and its gradient
with respect to $Q(s,\cdot)$ is exactly $\pi(\cdot|s)$. Second, the map
$V \mapsto T(V)$ defined by the right-hand side is a $\gamma$-contraction in the
sup norm, because log-sum-exp is 1-Lipschitz in the sup norm just like the max.

Shapes in this package: `P[s, a, s']`, `r[s, a]`, `q[s, a]`, `v[s]`, `policy[s, a]`."""),
    ("code", SETUP),
    ("md", r"""## Why the log-sum-exp must be shifted

Computed naively, $\tau \log \sum_a e^{Q/\tau}$ overflows as soon as $Q/\tau$ exceeds
about 709, the logarithm of the largest float64. With rewards of order one and
$\tau = 10^{-3}$ that happens at once; at $\tau = 10^{-6}$ (a follower that is
almost greedy) always. The cure is exact algebra: subtract the maximum first,

$$\tau \log \sum_a e^{Q_a/\tau} = m + \tau \log \sum_a e^{(Q_a - m)/\tau},\qquad
m = \max_a Q_a,$$

so every exponent is $\le 0$, the largest term is exactly 1, and the sum lies in
$[1, A]$: no overflow, no underflow of the sum, no loss of the dominant term. The
same shift gives the policy without ever forming $e^{Q/\tau}$.

**Exercise 1.** Write the soft Bellman operator $T(V)$ with the shift, for
arrays `P[s, a, s']`, `r[s, a]`, `v[s]`: replace the body of the empty function
below with your own and run the check after it. The collapsed cell between them is
a reference answer (running it replaces your function)."""),
    ("code", """\
def my_soft_bellman(P, r, v, gamma, tau):
    \"\"\"T(V)[s] = tau log sum_a exp(Q(s, a) / tau), Q = r + gamma P V, computed stably.\"\"\"
    raise NotImplementedError("your code here")"""),
    ("code", """\
# cell-tags: hide-input
# reference answer: it replaces your function
def my_soft_bellman(P, r, v, gamma, tau):  # noqa: F811
    q = r + gamma * P @ v                      # Q(s, a) = r + gamma sum_s' P V
    m = q.max(axis=1)                          # shift by the max of each row
    return m + tau * np.log(np.exp((q - m[:, None]) / tau).sum(axis=1))"""),
    ("code", """\
# self-check: against the package at a moderate and a tiny temperature
mdp = eb.random_mdp(30, 4, gamma=0.95, seed=0)
v = np.random.default_rng(1).normal(size=30)
for tau in (0.3, 1e-6):
    mine = my_soft_bellman(mdp.transitions, mdp.reward, v, mdp.gamma, tau)
    ref = eb.soft_bellman.soft_bellman_operator(mdp, v, tau)
    assert np.all(np.isfinite(mine)), "overflow: did you shift by the maximum?"
    assert np.allclose(mine, ref, rtol=0, atol=1e-12), np.abs(mine - ref).max()
print("exercise 1: correct at tau = 0.3 and tau = 1e-6")
with np.errstate(over="ignore"):
    naive = 1e-6 * np.log(np.exp((mdp.reward + mdp.gamma * mdp.transitions @ v) / 1e-6).sum(1))
print("the unshifted formula at tau = 1e-6 gives", naive[:3], "...")"""),
    ("md", r"""## Two ways to solve $V = T(V)$

**Soft value iteration** repeats $V \leftarrow T(V)$. Because $T$ is a
$\gamma$-contraction, the error shrinks by at least a factor $\gamma$ per sweep:
reaching the float64 floor from an error of order one needs about
$\log(10^{-15}) / \log\gamma$ sweeps — 670 at $\gamma = 0.95$, 34,500 at
$\gamma = 0.999$.

**Newton's method** on $G(V) = V - T(V) = 0$ uses the Jacobian
$I - \gamma P_\pi$, where $P_\pi(s'|s) = \sum_a \pi(a|s) P(s'|s,a)$ is the chain of the
current Boltzmann policy (the derivative of log-sum-exp is the softmax). One Newton
step solves the linear system $(I - \gamma P_\pi)V = r_\pi + \tau\, H(\pi)$ — that is,
it *evaluates* the current policy exactly, entropy bonus included — and the next
policy is the Boltzmann policy of the resulting $Q$. Newton here *is* soft policy
iteration, and it converges quadratically once close: the number of correct digits
doubles per step. `eb.solve_soft` uses Newton by default, with safeguards, and
reports the residual it reached."""),
    ("code", """\
tau = 0.3
v, vi = np.zeros(mdp.n_states), []
for _ in range(300):
    tv = eb.soft_bellman.soft_bellman_operator(mdp, v, tau)
    vi.append(np.max(np.abs(tv - v)))
    v = tv
newton, chord = [], []                       # residual at every iterate, via the callback
sol_n = eb.solve_soft(mdp, tau, method="newton-only", warm_start=0,
                      callback=lambda it, res: newton.append(res))
sol_c = eb.solve_soft(mdp, tau, warm_start=0, callback=lambda it, res: chord.append(res))
plt.semilogy(vi, label="soft value iteration")
plt.semilogy(newton, "o-", label=f"Newton ({sol_n.factorizations} LUs)")
plt.semilogy(chord, "s--", label=f"Newton + chord steps ({sol_c.factorizations} LUs)")
plt.semilogy(vi[0] * mdp.gamma ** np.arange(300), "k:", label=r"$\\gamma^k$ bound")
plt.xlabel("iteration")
plt.ylabel("Bellman residual (sup norm)")
plt.legend()
plt.show()
print("Newton residuals:        ", " ".join(f"{r:.1e}" for r in newton))
print("Newton + chord residuals:", " ".join(f"{r:.1e}" for r in chord))"""),
    ("md", r"""Newton reaches the rounding floor in a handful of steps, value iteration
needs hundreds. Each Newton step costs one linear solve with $I - \gamma P_\pi$,
which is cheap for the small MDPs where exact answers matter, and the same
factorisation is reused for the hypergradient in chapter 2.

The default solver goes one step further: once a step has cut the residual a
hundredfold, it reuses the last factorisation for the next step (a *chord* step: two
triangular solves instead of a new LU). Its residuals fall by a steady factor rather
than squaring — the old matrix is not quite the right one — but when the policy barely
moves any more that factor is tiny, and an LU is the expensive part of a step on large
problems (docs/math.md, section 2). Both reach the rounding floor; compare the number
of factorisations in the legend.

## The temperature shapes the policy

Small $\tau$ makes the follower nearly greedy, large $\tau$ nearly uniform. On a
small gridworld (a wall `x`, a goal in the top right corner, actions slipping with
probability 0.1) the probabilities of the four actions at the start cell, the
bottom-row cell (2, 2), move smoothly between the two limits. (In a corner two moves
would both bump into the boundary, leave the follower where it is, and have equal
probabilities at every $\tau$; from (2, 2) the four moves lead to four different
places, so their curves differ.)"""),
    ("code", """\
grid_mdp, grid = eb.gridworld(["    ", " x  ", "    "], goal=(0, 3), gamma=0.95,
                              random_action_prob=0.1, start=(2, 2))
start = grid.state((2, 2))
taus = np.logspace(-3, 1, 40)
probs = np.array([eb.solve_soft(grid_mdp, t).policy[start] for t in taus])
for a, name in enumerate(["up", "right", "down", "left"]):
    plt.semilogx(taus, probs[:, a], label=name)
plt.xlabel(r"$\\tau$")
plt.ylabel("pi(a | start)")
plt.legend()
plt.show()"""),
    ("md", r"""## $\tau \to 0$ recovers hard value iteration

Since $\max_a Q_a \le \tau\log\sum_a e^{Q_a/\tau} \le \max_a Q_a + \tau \log A$, each
application of $T$ adds at most $\tau\log A$ to what the hard Bellman operator would
give, and discounting sums these to the bound

$$0 \le V_\tau(s) - V_0(s) \le \frac{\tau \log A}{1-\gamma}.$$

So the soft solution converges to the ordinary optimal value at least linearly in
$\tau$, and the Boltzmann policy to a greedy one (where the greedy action is unique).
When is the bound attained? The upper inequality is an equality exactly when all $A$
actions have the same $Q$: then the follower is uniform and collects the full bonus
$\tau\log A$. The gridworld's goal is absorbing and every action there keeps the
follower at the goal, so at the goal the gap sits *on* the bound for every $\tau$ —
the worst case, met because of a four-way tie, not a typical rate. At the start cell
the gap stays below the bound but close to it, and only because of the goal: the
follower reaches it within a few steps and then collects the full bonus forever.
On a random MDP, where one action is strictly best by a margin $\Delta$ in every state,
the softmax puts only about $e^{-\Delta/\tau}$ on the others and the gap vanishes
much faster than $\tau$. The plot shows all three against the bound:"""),
    ("code", """\
hard = eb.solve_hard(grid_mdp)
goal = grid.state((0, 3))
taus = np.logspace(-3, 0, 16)
soft = [eb.solve_soft(grid_mdp, t).v - hard.v for t in taus]
hard_random = eb.solve_hard(mdp)
gap_random = [np.max(eb.solve_soft(mdp, t).v - hard_random.v) for t in taus]
bound = taus * np.log(grid_mdp.n_actions) / (1 - grid_mdp.gamma)   # same A and gamma for both
plt.loglog(taus, bound, "k--", lw=3, label=r"bound $\\tau \\log A / (1-\\gamma)$")
plt.loglog(taus, [g[goal] for g in soft], "o", label="gridworld, at the goal (four-way tie)")
plt.loglog(taus, [g[start] for g in soft], "s-", label="gridworld, at the start cell")
plt.loglog(taus, gap_random, "^-", label=r"random MDP, $\\max_s$ (unique best actions)")
plt.xlabel(r"$\\tau$")
plt.ylabel(r"$V_\\tau - V_0$")
plt.legend(fontsize=8)
plt.show()
at_goal = max(abs(g[goal] / b - 1) for g, b in zip(soft, bound, strict=True))
at_start = max(g[start] / b for g, b in zip(soft, bound, strict=True))
assert mdp.n_actions == grid_mdp.n_actions and mdp.gamma == grid_mdp.gamma
assert at_goal < 1e-9 and at_start < 1 and gap_random[0] < 1e-2 * bound[0]
print(f"goal: gap / bound = 1 to {at_goal:.0e}; start: gap / bound <= {at_start:.3f}; "
      f"random MDP at tau = {taus[0]:g}: gap / bound = {gap_random[0] / bound[0]:.1e}")"""),
    ("md", r"""## Summary

* The follower's optimum is the fixed point $V = T(V)$ of the soft Bellman operator;
  its policy is the Boltzmann policy $\pi = e^{(Q - V)/\tau}$, the gradient of
  log-sum-exp.
* Compute log-sum-exp with the maximum shifted out: stable from $\tau = 10^{-6}$ to
  $10^{3}$.
* Value iteration contracts at rate $\gamma$; Newton (soft policy iteration) with
  Jacobian $I - \gamma P_\pi$ converges quadratically and is what `eb.solve_soft` uses.
* $\tau$ interpolates between greedy ($V_\tau - V_0 \le \tau\log A/(1-\gamma)$) and
  uniform behaviour, and makes $\pi^*(x)$ differentiable — the subject of chapter 2."""),
]
