"""Write the teaching notebooks from the cell sources below and execute them.

The ``.ipynb`` files are generated (edit this script, not the notebooks) and
committed with their outputs so they read well on a code-hosting site; the
test suite re-executes them (``tests/test_notebooks.py``).
Run: ``python notebooks/build_notebooks.py [--no-execute]``.
"""

from __future__ import annotations

import argparse
import pathlib

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).parent
SETUP = """\
import numpy as np
import matplotlib.pyplot as plt
import exact_bilevel as eb
np.set_printoptions(precision=6, suppress=True, linewidth=100)
plt.rcParams["figure.dpi"] = 80"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_soft_bellman"] = [
    ("md", r"""# 1. The soft Bellman equation

The follower maximises $\mathbb{E}\sum_t \gamma^t \big(r(s_t,a_t) - \tau \log \pi(a_t|s_t)\big)$.
Its optimal values solve

$$Q(s,a) = r(s,a) + \gamma \sum_{s'} P(s'|s,a) V(s'),\qquad
V(s) = \tau \log \sum_a e^{Q(s,a)/\tau},\qquad \pi(a|s) = e^{(Q(s,a)-V(s))/\tau}.$$

`eb.solve_soft` solves $V = T(V)$ two ways: **soft value iteration** (a
$\gamma$-contraction: the residual shrinks by at least $\gamma$ per sweep) and
**Newton** on $V - T(V) = 0$, whose Jacobian is $I - \gamma P_\pi$ — this *is*
soft policy iteration, and it converges quadratically."""),
    ("code", SETUP),
    ("code", """\
mdp = eb.random_mdp(30, 4, gamma=0.95, seed=0)
tau = 0.3
# value iteration: residual after each sweep
v, vi = np.zeros(mdp.n_states), []
for _ in range(300):
    tv = eb.soft_bellman.soft_bellman_operator(mdp, v, tau)
    vi.append(np.max(np.abs(tv - v)))
    v = tv
# Newton (no warm start): the residual the solver reports after k steps
newton = []
for k in range(8):
    try:
        newton.append(eb.solve_soft(mdp, tau, max_iter=k, warm_start=0).residual)
    except eb.ConvergenceError as err:
        newton.append(err.residual)
plt.semilogy(vi, label="soft value iteration")
plt.semilogy(newton, "o-", label="Newton (soft policy iteration)")
plt.semilogy(vi[0] * mdp.gamma ** np.arange(300), "k:", label=r"$\\gamma^k$ bound")
plt.xlabel("iteration"); plt.ylabel("Bellman residual (sup norm)"); plt.legend(); plt.show()
print("Newton residuals:", np.array(newton))"""),
    ("md", r"""Newton reaches the float64 floor in a handful of steps; value iteration
needs hundreds at $\gamma = 0.95$ (and thousands at $\gamma = 0.999$).

## The temperature shapes the policy
Small $\tau$: nearly greedy; large $\tau$: nearly uniform. On a gridworld:"""),
    ("code", """\
mdp, grid = eb.gridworld(["    ", " x  ", "    "], goal=(0, 3), gamma=0.95,
                         random_action_prob=0.1, start=(2, 0))
start = grid.state((2, 0))
taus = np.logspace(-3, 1, 40)
probs = np.array([eb.solve_soft(mdp, t).policy[start] for t in taus])
for a, name in enumerate(["up", "right", "down", "left"]):
    plt.semilogx(taus, probs[:, a], label=name)
plt.xlabel(r"$\\tau$"); plt.ylabel("pi(a | start)"); plt.legend(); plt.show()"""),
    ("md", r"""## $\tau \to 0$ recovers hard value iteration
$0 \le V_\tau - V_0 \le \tau \log A / (1-\gamma)$."""),
    ("code", """\
hard = eb.solve_hard(mdp)
taus = np.logspace(-4, 0, 20)
gap = [np.max(eb.solve_soft(mdp, t).v - hard.v) for t in taus]
plt.loglog(taus, gap, "o-", label=r"$\\max_s V_\\tau - V_0$")
plt.loglog(taus, taus * np.log(mdp.n_actions) / (1 - mdp.gamma), "k--",
           label=r"$\\tau \\log A / (1-\\gamma)$")
plt.xlabel(r"$\\tau$"); plt.legend(); plt.show()"""),
]

NOTEBOOKS["02_hypergradient"] = [
    ("md", r"""# 2. The hypergradient by implicit differentiation

The leader's $F(x) = f(x, \pi^*(x))$ depends on $x$ through the fixed point
$V = T(V, x)$. Differentiating the fixed point (implicit function theorem):

$$\frac{dV}{dx} = \Big(I - \frac{\partial T}{\partial V}\Big)^{-1}\frac{\partial T}{\partial x}
= (I - \gamma P_\pi)^{-1} \sum_a \pi\, g,\qquad g = \nabla_x r + \gamma\, \nabla_x P\, V.$$

Below, sympy derives it for a 2-state, 2-action MDP with symbolic $x, \gamma, \tau$."""),
    ("code", SETUP + "\nfrom IPython.display import Math\nfrom exact_bilevel import symbolic"),
    ("code", """\
sb = symbolic.tiny_example(2)
Math(r"\\begin{aligned}" + symbolic.latex_derivation(sb) + r"\\end{aligned}")"""),
    ("md", "The same problem in floating point, and four routes to its gradient:"),
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
    ("md", r"""## The adjoint trick
The forward mode solves $(I-\gamma P_\pi)\, dV = \sum_a \pi g$ for all $d$ columns.
The adjoint mode contracts first: one transposed solve
$\lambda = (I - \gamma P_\pi)^{-\top}(\gamma P^\top w)$, then
$\nabla F = \text{direct} + \frac{1}{\tau}\sum_{s,a} (w + \pi\lambda)\, g$ — its solve
cost does not grow with $d$."""),
    ("code", """\
import time
from exact_bilevel.experiments.examples import random_problem
ds, t_adj, t_fwd = [1, 4, 16, 64, 256], [], []
for d in ds:
    p, x = random_problem(200, 4, d, seed=1)
    state = p.follower_state(x)
    for mode, out in (("adjoint", t_adj), ("forward", t_fwd)):
        t0 = time.perf_counter()
        for _ in range(5):
            eb.hypergradient(p, x, mode=mode, state=state)
        out.append((time.perf_counter() - t0) / 5 * 1e3)
plt.loglog(ds, t_adj, "o-", label="adjoint"); plt.loglog(ds, t_fwd, "s-", label="forward")
plt.xlabel("d (leader parameters)"); plt.ylabel("ms per hypergradient (S = 200)")
plt.legend(); plt.show()"""),
]

NOTEBOOKS["03_boltzmann_covariance"] = [
    ("md", r"""# 3. The Boltzmann covariance trick

For the leader's return, with $A_L = Q_L - V_L$ and the leader's occupancy $occ$,
the indirect part of the hypergradient is

$$\frac{1}{\tau}\sum_s occ(s) \sum_a \pi(a|s)\, A_L(s,a)\, dQ(s,a)
= \frac{1}{\tau}\sum_s occ(s)\, \mathrm{Cov}_{a\sim\pi}\big(Q_L(s,a),\, dQ(s,a)\big),$$

because $\mathbb{E}_\pi A_L = 0$ (the Boltzmann policy's score is $(dQ - dV)/\tau$).
`eb.covariance_decomposition` returns the per-state terms:"""),
    ("code", SETUP + "\nfrom exact_bilevel.experiments.examples import random_problem"),
    ("code", """\
problem, x = random_problem(8, 3, 2, seed=4)
hg = eb.hypergradient(problem, x)
cov = eb.covariance_decomposition(problem, x)          # [S, d]
print("sum over states :", cov.sum(axis=0))
print("indirect term   :", hg.indirect)
plt.bar(np.arange(8) - 0.2, cov[:, 0], 0.4, label="k = 0")
plt.bar(np.arange(8) + 0.2, cov[:, 1], 0.4, label="k = 1")
plt.xlabel("state s"); plt.ylabel("(1/tau) occ(s) Cov(Q_L, dQ_k)"); plt.legend(); plt.show()"""),
    ("md", r"""## Why BC-HG needs no repeated visits
**HPGD** samples $A_L(s_t,a_t)\,(dQ(s_t,a_t) - dV(s_t))/\tau$: the centring
$dV(s) = \mathbb{E}_\pi dQ(s,\cdot)$ is a per-state average over actions, so it
must estimate $dQ$ for every action at every visited state.
**BC-HG** puts the centring on the scalar leader side, $A_L$, and uses the
forward sum $\sum_{k\ge t}\gamma^{k-t} g_k$ from the *same* trajectory as an
unbiased sample of $dQ(s_t,a_t)$: one visit is enough.

Below: error of each estimator against the exact value versus the number of
transitions (10 replicates each; exact leader critic where one is needed)."""),
    ("code", """\
from exact_bilevel.estimators import replicates
problem, x = random_problem(6, 3, 3, seed=1, parameterize="both")
exact = eb.hypergradient(problem, x).gradient
budgets = [300, 1000, 3000, 10000, 30000]
for name in ["bc-hg", "bc-hg-baseline", "hpgd", "hpgd-td", "model-based"]:
    err = [np.mean(np.linalg.norm(replicates(problem, x, name, b, 10, seed=b)[0] - exact,
                                  axis=1)) / np.linalg.norm(exact) for b in budgets]
    plt.loglog(budgets, err, "o-", label=name)
plt.loglog(budgets, 3 * np.sqrt(budgets[0] / np.array(budgets)), "k:", label=r"$N^{-1/2}$")
plt.xlabel("transitions per estimate"); plt.ylabel("mean relative error"); plt.legend()
plt.show()"""),
    ("md", r"""On this transition-parameterised problem plain BC-HG is dominated by the
variance of its score term $\gamma\,\nabla\log P(s'|s,a)\,V(s')$; subtracting the
baseline $V(s_k)$ (any function of $(s_k,a_k)$ keeps the estimate unbiased) removes
it. `verification/estimator_comparison.md` has the full comparison."""),
]

NOTEBOOKS["04_fourrooms"] = [
    ("md", r"""# 4. Bilevel optimisation on FourRooms

The follower walks the 13x13 FourRooms map (104 cells, start (4, 1), goal (1, 9),
actions replaced by a random one with probability 0.44). The leader pays a state
incentive $-0.2\,x_s$ on each cell (bounded here to $x \in [-2, 2]$) and earns 1
per step the follower spends on the target cell (8, 4)."""),
    ("code", SETUP + """
from exact_bilevel.experiments.examples import four_rooms_incentives
from exact_bilevel.experiments.optimize import optimize, estimator_gradient
mdp, grid = eb.four_rooms()
problem, x0 = four_rooms_incentives(tau=0.05)"""),
    ("code", """\
settings = dict(steps=60, step_size=1.0, clip_norm=1.0, bounds=(-2, 2))
exact_run = optimize(problem, x0, **settings)
plt.plot(exact_run.value, "k", lw=2, label="exact hypergradient")
for name, color in [("bc-hg", "C0"), ("hpgd", "C1")]:
    for seed in range(3):
        run = optimize(problem, x0, gradient=estimator_gradient(name, 5000), seed=seed,
                       **settings)
        plt.plot(run.value, color=color, alpha=0.7,
                 label=f"{name}, 5000 transitions/step" if seed == 0 else None)
plt.xlabel("leader step"); plt.ylabel("exact F(x)"); plt.legend(); plt.show()"""),
    ("md", r"""Every curve is scored by the *exact* objective. The estimators are unbiased
or nearly so at $x_0$, but a single estimate from 5000 transitions has a relative
error of about 2 in this 104-dimensional problem; a run that steps into the
region where the follower never reaches the target finds $A_L \approx 0$
everywhere, estimates $\approx 0$, and stays on that plateau."""),
    ("code", """\
def occupancy(x):
    state = problem.follower_state(x)
    return eb.state_occupancy(state.mdp, state.solution.policy)

fig, ax = plt.subplots(1, 3, figsize=(13, 4))
panels = [("incentive -0.2 x after", -0.2 * exact_run.final_x),
          ("occupancy before", occupancy(x0)),
          ("occupancy after", occupancy(exact_run.final_x))]
for a, (title, values) in zip(ax, panels, strict=True):
    im = a.imshow(grid.to_grid(values), cmap="viridis")
    a.set_title(title); a.plot(4, 8, "r*", ms=12); a.plot(9, 1, "w^", ms=10)
    fig.colorbar(im, ax=a, shrink=0.8)
plt.show()"""),
    ("md", r"""The exact ascent pays the follower to linger on the target cell (red star)
and charges it around; the goal (white triangle) is no longer where its time goes."""),
]

NOTEBOOKS["05_check_your_implementation"] = [
    ("md", r"""# 5. Checking your own implementation

Three ways to compare an implementation with the exact answer: a problem file
and the command line, the golden vectors, and the pytest helpers."""),
    ("code", SETUP + """
import json, pathlib, tempfile
from exact_bilevel import io
from exact_bilevel.cli import main as cli
from exact_bilevel.experiments.examples import random_problem
tmp = pathlib.Path(tempfile.mkdtemp())"""),
    ("md", "## The problem file\n"
           "A versioned JSON format (`exact-bilevel/1`, JSON Schema in the package):"),
    ("code", """\
problem, x = random_problem(3, 2, 2, seed=1)
io.save_problem(tmp / "problem.json", problem, x)
doc = json.loads((tmp / "problem.json").read_text())
print(json.dumps({k: doc[k] for k in ["format", "gamma", "tau", "initial", "x"]}, indent=1))
print("fields:", sorted(doc))"""),
    ("md", "## The command line\n`hypergradient` prints the exact answer; `estimate` produces "
           "replicates of a sample-based estimator; `check` compares an estimate file with "
           "the exact answer (exit code 0 pass, 1 fail, 2 bad input)."),
    ("code", """\
cli(["hypergradient", str(tmp / "problem.json")])
import contextlib, io as sio
buf = sio.StringIO()
with contextlib.redirect_stdout(buf):
    cli(["estimate", str(tmp / "problem.json"), "--estimator", "bc-hg",
         "--transitions", "2000", "--replicates", "50"])
(tmp / "est.json").write_text(buf.getvalue())
code = cli(["check", str(tmp / "problem.json"), "--estimate", str(tmp / "est.json")])
print("exit code", code)"""),
    ("code", """\
exact = eb.hypergradient(problem, x).gradient
(tmp / "wrong.json").write_text(json.dumps({"gradient": (exact * (1 + 1e-5)).tolist()}))
print("exit code", cli(["check", str(tmp / "problem.json"),
                        "--estimate", str(tmp / "wrong.json")]))"""),
    ("md", "## Golden vectors\n`verification/golden/*.json` holds 22 problems with value and "
           "gradient to 30 digits; `load_problem` reads them directly."),
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
    ("md", "## In pytest\n`exact_bilevel.testing` has the assertions; "
           "`exact_bilevel.strategies` the hypothesis strategies."),
    ("code", """\
from exact_bilevel.testing import assert_unbiased, assert_matches_exact
from exact_bilevel.estimators import replicates
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
]


def build(execute: bool = True) -> None:
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md"
                    else nbformat.v4.new_code_cell(src) for kind, src in cells]
        if execute:
            NotebookClient(nb, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print("wrote", name)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-execute", action="store_true")
    build(not ap.parse_args().no_execute)
