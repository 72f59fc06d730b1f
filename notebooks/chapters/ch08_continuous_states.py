"""Chapter 8: continuous states — the soft LQR follower and its exact hypergradient."""

from ._setup import SETUP_NO_EB as SETUP

NAME = "08_continuous_states"
CELLS = [
    ("md", r"""# 8. Continuous states: the soft LQR follower

Everything so far lived in finite MDPs, where the follower's values are vectors and
the implicit function theorem needs one linear solve. Half of the BC-HG paper's
experiments have continuous states: a building whose leader chooses insulation and
airflow (BuildingThermalControl) and a two-player LQR game. In general continuous
followers have no exact solution — but one family does, and it is the one those
experiments use: **linear dynamics, quadratic costs, entropy regularisation**.

The follower sees the state $s\in\mathbb{R}^n$ (and, in a game, the leader's action
$a$), chooses $u\in\mathbb{R}^m$, pays $c(s,u) = s^\top Q s + u^\top R u$, and moves by
$s' = As + Bu + Ca + \xi$, $\xi\sim N(0, W)$. It minimises the discounted cost plus
$\tau\log\pi$ — the same entropy regularisation as chapter 1, with a density instead
of a probability.

**Guess and verify.** Suppose the cost-to-go is quadratic, $J(s) = s^\top Ps + v$. Then
the soft Q-cost after seeing $(s,a)$, with $y = As + Ca$,

$$Q_c(s,a,u) = s^\top Qs + u^\top Ru + \gamma\big[(y+Bu)^\top P(y+Bu) + \mathrm{tr}(PW) + v\big],$$

is quadratic in $u$ with Hessian $2S$, $S = R + \gamma B^\top PB$. The Boltzmann policy
$\pi\propto e^{-Q_c/\tau}$ of a quadratic is a **Gaussian**:

$$u \sim N\big(-Gy,\ \tfrac{\tau}{2}S^{-1}\big),\qquad G = \gamma S^{-1}B^\top P,$$

and the soft minimum $-\tau\log\int e^{-Q_c/\tau}du$ is a Gaussian integral: the hard
minimum plus $\frac\tau2\log\det S - \frac{m\tau}2\log(\pi\tau)$. Matching the quadratic
and constant terms on both sides of $J = \text{soft-min}\,Q_c$ gives the **discounted
Riccati equation** (with $\bar A = A + CK_L$ when the leader plays $a\sim N(K_Ls,\Sigma_L)$)

$$P = Q + \bar A^\top\big(\gamma P - \gamma^2 PB S^{-1}B^\top P\big)\bar A,$$

and a linear equation for $v$. The guess is verified. Two things stand out: $P$ does
not depend on $\tau$ — the temperature only widens the policy and shifts $v$ — and
with $\sqrt\gamma\bar A$, $\sqrt\gamma B$ this is the textbook algebraic Riccati
equation, so scipy's solver is an independent check."""),
    ("code", SETUP + """
from exact_bilevel import lqr
from exact_bilevel.lqr import estimators, tasks
problem, x0 = tasks.building_thermal_control()
inst = problem.instance(x0)                # the matrices A(x0), B, Q, R, W, ...
sol = lqr.solve_soft_lqr(inst)
print("Riccati residual", sol.residual, "after", sol.iterations, "iterations")
print("P vs scipy's DARE:", np.abs(sol.P - lqr.dare_reference(inst)).max())"""),
    ("md", r"""## The Gaussian is the Boltzmann policy

A numerical check of the closed form, with no Gaussian algebra: take one state,
evaluate $e^{-Q_c(s,u)/\tau}$ on a grid of the first input (the second held at its
mean), normalise by the trapezoid rule, and compare with the conditional density of
$N(-GAs, \Sigma_u)$:"""),
    ("code", """\
s = np.array([2.0, -1.0, 0.5, 1.5])
mean = -sol.G @ (inst.A @ s)
Su = sol.Sigma_u
u1 = mean[0] + np.linspace(-5, 5, 2001) * np.sqrt(Su[0, 0])
U = np.column_stack([u1, np.full_like(u1, mean[1])])
nxt = (inst.A @ s)[None, :] + U @ inst.B.T
Qc = (s @ inst.Q @ s + np.einsum("ni,ij,nj->n", U, inst.R, U)
      + inst.gamma * np.einsum("ni,ij,nj->n", nxt, sol.P, nxt))
boltz = np.exp(-(Qc - Qc.min()) / inst.tau)
boltz /= np.trapezoid(boltz, u1)
cond_var = Su[0, 0] - Su[0, 1] ** 2 / Su[1, 1]          # u1 given u2 = its mean
gauss = np.exp(-0.5 * (u1 - mean[0]) ** 2 / cond_var) / np.sqrt(2 * np.pi * cond_var)
plt.plot(u1, boltz, lw=3, label=r"$e^{-Q_c/\\tau}$, normalised numerically")
plt.plot(u1, gauss, "k--", label=r"$N(-GAs,\\ \\Sigma_u)$ (closed form)")
plt.xlabel("u[0]")
plt.legend()
plt.show()
print("max difference:", np.abs(boltz - gauss).max() / gauss.max())"""),
    ("md", r"""**Exercise 8.** Solve the discounted Riccati equation yourself by value
iteration, $P \leftarrow \Phi(P)$ from $P = Q$, using `np.linalg.solve` (no inverse),
for the building's matrices (no leader action here, so $\bar A = A$). It converges
at the rate $\gamma\,\rho(A_{\mathrm{cl}})^2$ of the closed-loop matrix
$A_{\mathrm{cl}} = (I - BG)\bar A$; stop when the relative change is below
$10^{-14}$. Write it in the empty function (a reference answer is collapsed after
it)."""),
    ("code", """\
def my_riccati(A, B, Q, R, gamma, tol=1e-14, max_iter=100_000):
    \"\"\"Return the fixed point P of the discounted Riccati map, iterated from P = Q.\"\"\"
    raise NotImplementedError("your code here")"""),
    ("code", """\
# cell-tags: hide-input
# reference answer: it replaces your function
def my_riccati(A, B, Q, R, gamma, tol=1e-14, max_iter=100_000):  # noqa: F811
    P = Q.copy()
    for _ in range(max_iter):
        S = R + gamma * B.T @ P @ B
        P_new = Q + gamma * A.T @ P @ A - gamma**2 * A.T @ P @ B @ np.linalg.solve(
            S, B.T @ P @ A)
        P_new = (P_new + P_new.T) / 2
        if np.abs(P_new - P).max() <= tol * np.abs(P_new).max():
            return P_new
        P = P_new
    raise RuntimeError("no convergence")"""),
    ("code", """\
P_mine = my_riccati(inst.A, inst.B, inst.Q, inst.R, inst.gamma)
assert np.allclose(P_mine, sol.P, rtol=1e-10, atol=0), np.abs(P_mine - sol.P).max()
print("exercise 8: P agrees with lqr.solve_soft_lqr to", np.abs(P_mine - sol.P).max())"""),
    ("md", r"""## The leader's objective and its derivative

Under the Gaussian policy the closed loop is linear-Gaussian, so the state stays
Gaussian: $s_t\sim N(\mu_t,\Sigma_t)$ with $\mu_{t+1} = A_{\mathrm{cl}}\mu_t$ and
$\Sigma_{t+1} = A_{\mathrm{cl}}\Sigma_tA_{\mathrm{cl}}^\top + N$ ($A_{\mathrm{cl}}$ the
closed-loop matrix, $N$ the noise the policy and the dynamics inject; $F$ stays the
leader's objective). The leader's expected stage reward is then a closed
form in $(\mu_t,\Sigma_t)$ — quadratic terms, a Gaussian bump, even a hinge
$\min(s_i,0)$ — and $F(x)$ is a finite sum over the 100 steps of an episode.

The **hypergradient** follows the tabular recipe. The follower's response enters
through $P$, which is defined implicitly by $P = \Phi(P; x)$. By the envelope theorem
(the gain $G$ already minimises the bracket), $\partial\Phi/\partial P[dP] =
\gamma A_{\mathrm{cl}}^\top dP\,A_{\mathrm{cl}}$, so $dP = \gamma A_{\mathrm{cl}}^\top
dP\,A_{\mathrm{cl}} + H(dx)$: a discrete **Lyapunov** equation plays the role of
$(I-\gamma P_\pi)^{-1}$. In adjoint mode one solves the transposed equation
$Y = \gamma A_{\mathrm{cl}}YA_{\mathrm{cl}}^\top + \partial F/\partial P$ once, whatever the
number of leader parameters ($d = 8$ here: insulation and airflow in four zones).
`docs/math.md`, section 8, has every step. Below, $F$ along a line through $x_0$ and
the tangent the exact gradient predicts:"""),
    ("code", """\
hg = lqr.hypergradient(problem, x0)
direction = hg.gradient / np.linalg.norm(hg.gradient)
ts = np.linspace(-3, 3, 41)
values = [lqr.value(problem, x0 + t * direction) for t in ts]
plt.plot(ts, values, label="exact F along the gradient direction")
plt.plot(ts, hg.value + ts * np.linalg.norm(hg.gradient), "k--",
         label="tangent from the exact hypergradient")
plt.xlabel("t  (x = x0 + t * grad/|grad|)")
plt.ylabel("F")
plt.legend()
plt.show()
print("direct  :", hg.direct)
print("indirect:", hg.indirect)
print(f"|indirect| / |grad F| = {np.linalg.norm(hg.indirect) / np.linalg.norm(hg.gradient):.0%}")"""),
    ("md", r"""Here the *indirect* part — the follower re-tuning its controller when the
building changes — is 84% of the gradient's norm. The tests check the gradient
against complex step, Richardson differences and mpmath at 50 digits, and the
Monte Carlo mean of rollouts against $F$.

## Estimators for Gaussian followers

BC-HG carries over: the follower's policy score is
$\nabla\log\pi(u|s,a) = (\nabla Q_F - \mathbb{E}_\pi\nabla Q_F)/\tau$ (the Boltzmann
identity again; for a Gaussian, $\mathbb{E}_\pi\nabla Q_F$ is a closed form), and the
transitions contribute their likelihood-ratio score
$(s' - \text{mean})^\top W^{-1}\,\partial\,\text{mean}$. With an exact leader critic,
BC-HG is unbiased. The authors' BuildingThermalControl code clips each transition's
score to norm 1 before weighting it. With noise standard deviation 0.02 that score
has a norm far above 1, so the clip scales away most of the direct term. 20 estimates
of 10,000 transitions each, mean ± 2 standard errors, against the exact gradient:"""),
    ("code", """\
k = np.arange(problem.d)
plt.plot(k, hg.gradient, "k_", ms=30, mew=3, label="exact")
for j, name in enumerate(["bc-hg", "bc-hg-authors-clip", "direct-only"]):
    X = estimators.estimate_many(problem, x0, name, 10_000, 20, seed=1, critic="exact")
    plt.errorbar(k + 0.15 * (j - 1), X.mean(0), 2 * X.std(0, ddof=1) / np.sqrt(len(X)),
                 fmt="o", label=name)
plt.xticks(k, problem.names, rotation=45)
plt.ylabel("dF/dx_k")
plt.legend()
plt.show()"""),
    ("md", r"""`bc-hg` lands on the exact gradient; the clipped estimator keeps mainly the
indirect part, and `direct-only` the direct part. The measurement at the authors'
full budget and the leader loops are in `verification/reproduce_building_thermal.md`
and `verification/reproduce_lqr_game.md`.

## Summary

* Linear dynamics + quadratic costs + entropy: the soft-optimal policy is Gaussian,
  $u\sim N(-G(As+Ca), \frac\tau2S^{-1})$, and the cost-to-go solves a discounted Riccati
  equation that does not depend on $\tau$.
* States stay Gaussian under the closed loop, so the leader's objective is exact.
* The implicit function theorem on the Riccati fixed point, with a Lyapunov solve
  in place of $(I-\gamma P_\pi)^{-1}$, gives the exact hypergradient in adjoint mode.
* The exact reference exposes what a learning curve cannot: here, that clipping the
  transition score removes most of the direct term."""),
]
