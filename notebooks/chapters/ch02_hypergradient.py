"""Chapter 2: the hypergradient by the implicit function theorem."""

from ._setup import SETUP

#: One BLAS thread, set before numpy loads, so that the timing figure measures the
#: algorithms' cost and not how many cores the BLAS happens to spread a solve over.
THREADS = """\
import os
import sys
assert "numpy" not in sys.modules, "set the thread count before numpy is imported"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
"""

NAME = "02_hypergradient"
CELLS = [
    ("md", r"""# 2. The hypergradient by implicit differentiation

The leader chooses $x \in \mathbb{R}^d$; the follower's reward $r_x$ and/or
transitions $P_x$ depend on it; the leader scores the follower's soft-optimal policy
with $F(x) = f(x, \pi^*(x))$ — typically its own discounted return under that
policy. The follower's policy is only defined *implicitly*, as the Boltzmann policy
of the fixed point $V = T(V, x)$ of chapter 1. We want $\nabla F(x)$ exactly.

**Step 1: differentiate the fixed point.** At the solution, $V(x) = T(V(x), x)$ holds
for every $x$. Differentiate both sides with respect to $x_k$:

$$\frac{dV}{dx_k} = \frac{\partial T}{\partial V}\frac{dV}{dx_k} + \frac{\partial T}{\partial x_k}.$$

**Step 2: identify the two Jacobians.** $T(V)(s) = \tau\log\sum_a
e^{Q(s,a)/\tau}$ with $Q = r + \gamma P V$. The derivative of log-sum-exp is the
softmax, so $\partial T/\partial V = \gamma P_\pi$ (the policy's chain), and
$\partial T/\partial x_k = \sum_a \pi(a|s)\, g_k(s,a)$ with the *sensitivity reward*

$$g_k(s,a) = \partial_k r(s,a) + \gamma \sum_{s'} \partial_k P(s'|s,a)\, V(s').$$

**Step 3: solve.** $I - \gamma P_\pi$ is invertible (its spectrum lies in the disc of
radius $\gamma$ around 1), so the implicit function theorem gives

$$dV = (I - \gamma P_\pi)^{-1} \sum_a \pi\, g,\qquad dQ = g + \gamma P\, dV,\qquad
d\log\pi = (dQ - dV)/\tau.$$

Read the first formula as policy evaluation: $dV$ is the value, under the current
policy and without entropy, of the vector reward $g$. The last one is the score of
the Boltzmann policy — every change of $\pi$ comes through $Q$.

**Step 4: the chain rule.** $F(x) = f(x, \pi^*(x))$ splits into a **direct** part,
$\partial_x f$ at fixed $\pi$ (for the leader's return: how $x$ changes the leader's
rewards and the dynamics the follower's policy runs in), and an **indirect** part,
$\sum_{s,a} \frac{\partial f}{\partial \pi(a|s)} \frac{d\pi(a|s)}{dx}$ (how the
follower *responds*). The indirect part is where bilevel RL differs from ordinary
policy-gradient RL, and it is what the estimators of chapters 3 and 6 approximate.

Below, sympy carries out the steps for a 2-state, 2-action MDP with symbolic
$x, \gamma, \tau$."""),
    ("code", THREADS + SETUP + "\nfrom IPython.display import Math\nfrom exact_bilevel import symbolic"),
    ("code", """\
sb = symbolic.tiny_example(2)
Math(r"\\begin{aligned}" + symbolic.latex_derivation(sb) + r"\\end{aligned}")"""),
    ("md", r"""## Five routes to one number

An exact value is only as good as its independent checks. The same problem in
float64, and the gradient by the adjoint and forward modes of the closed form, by
the complex step $\mathrm{Im}\,F(x + ih e_k)/h$ (no subtraction, hence no
cancellation: $h = 10^{-30}$ is fine), by Richardson-extrapolated finite
differences, and by sympy at 50 digits:"""),
    ("code", """\
from exact_bilevel.crosscheck.complex_step import complex_step_hypergradient
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
problem = symbolic.to_problem(sb, gamma=0.9, tau=0.5)
x = np.array([0.25, -0.5])
routes = {
    "adjoint (one S-sized solve)": eb.hypergradient(problem, x).gradient,
    "forward (all sensitivities)": eb.hypergradient(problem, x, mode="forward").gradient,
    "complex step, h = 1e-30": complex_step_hypergradient(problem, x),
    "Richardson finite differences": richardson_gradient(problem.value, x).gradient,
    "sympy at 50 digits": np.array([float(g) for g in
                                    symbolic.evaluate(sb, x, gamma=0.9, tau=0.5).gradient]),
}
ref = routes["sympy at 50 digits"]
for name, g in routes.items():
    print(f"{name:32s} {g}   rel. diff {np.max(np.abs(g - ref)) / np.max(np.abs(ref)):.1e}")"""),
    ("md", r"""**Exercise 2.** Implement the forward mode for a reward-parameterised
problem: given the follower's policy `pi[s, a]`, the transitions `P[s, a, s']`,
$\gamma$ and the reward Jacobian `dr[s, a, k]` (here $g = dr$ because $P$ does not
depend on $x$), compute `dV[s, k]` with **one** linear solve (no explicit inverse)
and `dQ[s, a, k]`. Write it in the empty function; the collapsed cell after it is a
reference answer, and the check compares with the package's forward mode."""),
    ("code", """\
from exact_bilevel.experiments.examples import random_problem
prob, x2 = random_problem(12, 3, 4, seed=2)
state = prob.follower_state(x2)
pi, P, gamma = state.solution.policy, state.mdp.transitions, prob.gamma
g = prob.follower_reward.jacobian(x2)                     # [S, A, d]


def my_forward_mode(pi, P, gamma, g):
    \"\"\"Return dV[s, k] and dQ[s, a, k].\"\"\"
    raise NotImplementedError("your code here")"""),
    ("code", """\
# cell-tags: hide-input
# reference answer: it replaces your function
def my_forward_mode(pi, P, gamma, g):  # noqa: F811
    P_pi = np.einsum("sa,sat->st", pi, P)                 # the policy's chain
    rhs = np.einsum("sa,sak->sk", pi, g)                  # sum_a pi g
    dV = np.linalg.solve(np.eye(len(pi)) - gamma * P_pi, rhs)
    dQ = g + gamma * np.einsum("sat,tk->sak", P, dV)
    return dV, dQ"""),
    ("code", """\
dV, dQ = my_forward_mode(pi, P, gamma, g)
sens = eb.hypergradient(prob, x2, mode="forward").sensitivities
assert np.allclose(dV, sens.dV, atol=1e-12) and np.allclose(dQ, sens.dQ, atol=1e-12)
print("exercise 2: dV and dQ agree with the package to 1e-12")"""),
    ("md", r"""## Forward or adjoint?

The forward mode solves $(I - \gamma P_\pi)\, dV = \sum_a \pi g$ for all $d$ columns:
its cost grows with the number of leader parameters. But the leader only needs the
*contraction* of the sensitivities with a fixed weight. For the leader's return the
indirect part is $\frac1\tau\sum_{s,a} w(s,a)\, dQ(s,a)$ with
$w = occ\cdot\pi\cdot A_L$ (the leader's discounted occupancy, the follower's
policy and the leader's advantage). Substituting $dQ = g + \gamma P\,dV$ and moving
the inverse onto the weights (a transpose) gives

$$\text{indirect} = \frac1\tau \sum_{s,a} \big(w(s,a) + \pi(a|s)\lambda(s)\big) g(s,a),\qquad
\lambda = (I - \gamma P_\pi)^{-\top}(\gamma P^\top w),$$

one transposed solve whatever $d$ is — the adjoint (reverse) mode, the same idea as
backpropagation. The plot times both modes on a 200-state problem as $d$ grows
(the factorisation of $I - \gamma P_\pi$ is shared; BLAS runs on one thread, set in
the first cell, so the times measure the algorithms and not the number of cores; each
time is the best of seven calls). The forward mode's cost grows linearly in $d$ once
the $d$ right-hand sides dominate the fixed overhead of a call; the adjoint's stays
flat."""),
    ("code", """\
import time
ds, t_adj, t_fwd = [1, 4, 16, 64, 256], [], []
for d in ds:
    p, xd = random_problem(200, 4, d, seed=1)
    st = p.follower_state(xd)
    for mode, out in (("adjoint", t_adj), ("forward", t_fwd)):
        best = np.inf
        for _ in range(7):
            t0 = time.perf_counter()
            eb.hypergradient(p, xd, mode=mode, state=st)
            best = min(best, time.perf_counter() - t0)
        out.append(best * 1e3)
plt.loglog(ds, t_adj, "o-", label="adjoint")
plt.loglog(ds, t_fwd, "s-", label="forward")
plt.loglog(ds, t_fwd[-1] * np.array(ds) / ds[-1], "k:", label=r"$\\propto d$")
plt.xlabel("d (leader parameters)")
plt.ylabel("ms per hypergradient (S = 200, one thread)")
plt.legend()
plt.show()
print(f"d = {ds[-2]} -> {ds[-1]}: forward x {t_fwd[-1] / t_fwd[-2]:.1f}, "
      f"adjoint x {t_adj[-1] / t_adj[-2]:.1f} (linear growth would be x {ds[-1] // ds[-2]})")"""),
    ("md", r"""## Where the indirect term comes from, and how big it is

The indirect part exists because the follower *re-optimises*: if the leader pays
more for action $a$ in state $s$, the follower's $Q(s,a)$ rises by $dQ$, its
Boltzmann probability by $\pi\,(dQ - dV)/\tau$, and everything downstream changes.
It scales like $1/\tau$: a cold follower reacts sharply. Ignoring it — treating
the follower as a fixed policy — is the "naive" or "direct-only" gradient. On the
problem of exercise 2 the direct part is *exactly* zero: only the follower's reward
depends on $x$ and the leader's reward does not, so at a fixed follower policy $x$
changes nothing the leader is scored on. The whole gradient is the indirect part,
and the naive gradient is the zero vector (its angle with $\nabla F$ is undefined, so
the cell reports the shares of the norm instead of a cosine). When $x$ also enters
the transitions, the leader's own return moves with $x$ at a fixed policy and both
parts are non-zero:"""),
    ("code", """\
def shares(hg):
    norm = np.linalg.norm(hg.gradient)
    return np.linalg.norm(hg.direct) / norm, np.linalg.norm(hg.indirect) / norm


hg = eb.hypergradient(prob, x2)
assert np.all(hg.direct == 0.0)
print("reward-parameterised: direct  =", hg.direct)
print("                      indirect =", hg.indirect)
print("  |direct| / |grad F| = {:.3f}, |indirect| / |grad F| = {:.3f}".format(*shares(hg)))
prob_both, x_both = random_problem(12, 3, 4, seed=2, parameterize="both")
hg_both = eb.hypergradient(prob_both, x_both)
cos = hg_both.direct @ hg_both.gradient / np.linalg.norm(hg_both.direct) / np.linalg.norm(
    hg_both.gradient)
print("reward + transitions: direct  =", hg_both.direct)
print("                      indirect =", hg_both.indirect)
print("  |direct| / |grad F| = {:.3f}, |indirect| / |grad F| = {:.3f}".format(*shares(hg_both)),
      f"cosine(direct, grad F) = {cos:.3f}")"""),
    ("md", r"""## Summary

* Differentiating $V = T(V, x)$ gives $dV = (I - \gamma P_\pi)^{-1}\sum_a\pi g$: a
  policy evaluation of the sensitivity reward $g = \partial r + \gamma\,\partial P\,V$.
* $d\log\pi = (dQ - dV)/\tau$; the hypergradient is a direct part (fixed policy) plus
  an indirect part (the follower's response), of order $1/\tau$.
* The adjoint mode costs one transposed solve for any $d$; the forward mode gives
  all sensitivities. Both agree with complex step, Richardson differences and sympy
  to about $10^{-12}$ or better."""),
]
