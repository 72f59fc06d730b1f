"""Chapter 4: incentive design on FourRooms."""

from ._setup import SETUP

NAME = "04_fourrooms"
CELLS = [
    ("md", r"""# 4. Incentive design on FourRooms

FourRooms is the benchmark both the HPGD and the BC-HG papers use for bilevel RL.
The follower walks a 13x13 map of four rooms joined by four hallways (104 free
cells), from the start (4, 1) to the goal (1, 9); its moves slip to a random
direction with a fixed probability. The leader cannot move the follower. It can only
*pay*: an incentive on each cell, added to the follower's reward there, and it earns
reward whenever the follower spends time on a target cell (8, 4) that lies off the
follower's natural route. The leader's problem is to find the cheapest incentive
pattern that diverts a soft-optimal follower through the target.

This is a bilevel problem with $d \approx 100$ parameters, where the exact
hypergradient costs one $104\times104$ solve and a sample-based estimate needs
episodes through a maze. It shows three things that the formulas of the earlier
chapters explain but that only appear at this scale: gradients are tiny where the
follower never reaches the target (a plateau: the leader's advantage $A_L$, which
weights every term of chapter 3, vanishes there), the optimiser and the starting
point matter as much as the gradient, and estimator noise can help or hurt.

We start with a teaching version (incentive $-0.2\,x_s$ per cell, $x\in[-2,2]$,
$\tau = 0.05$, the leader earning 1 per step on the target) and then turn to the
authors' own design."""),
    ("code", SETUP + """
from exact_bilevel.experiments.examples import four_rooms_incentives
from exact_bilevel.experiments.optimize import optimize, estimator_gradient, adam
from exact_bilevel.experiments.paper_problems import four_rooms_design
mdp, grid = eb.four_rooms()
problem, x0 = four_rooms_incentives(tau=0.05)"""),
    ("md", r"""## Exact ascent versus estimated ascent

`optimize` re-solves the follower exactly at every leader step (warm-started) and
records the **exact** objective of every iterate, whichever gradient drives the
step. Here the exact hypergradient against BC-HG and HPGD with 5000 transitions per
step, three seeds each, all with projected, norm-clipped steps:"""),
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
plt.xlabel("leader step")
plt.ylabel("exact F(x)")
plt.legend()
plt.show()"""),
    ("md", r"""Every curve is scored by the exact objective, so the comparison is fair. The
estimators are unbiased or nearly so at $x_0$, but one estimate from 5000
transitions has a relative error of order one in this 104-dimensional problem. A run
that steps into the region where the follower never reaches the target finds
$A_L \approx 0$ everywhere (the leader's advantage vanishes when no action leads to
reward), estimates $\approx 0$, and stays on that plateau: the variance is not only
slow, it can strand the leader.

## What the leader learned

The incentive the exact ascent settled on, and the follower's discounted state
occupancy before and after (red star: target; white triangle: goal):"""),
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
    a.set_title(title)
    a.plot(4, 8, "r*", ms=12)
    a.plot(9, 1, "w^", ms=10)
    fig.colorbar(im, ax=a, shrink=0.8)
plt.show()"""),
    ("md", r"""The exact ascent pays the follower to linger on the target cell and charges it
around: the goal is no longer where its time goes. Note what the heatmap does *not*
show: an incentive on a cell the follower never visits has zero gradient — the
leader can only shape what the follower already does a little.

## The authors' design and its trivial stationary point

`four_rooms_design(tau)` follows the authors' code exactly: 105 logits $x$ (104
cells and one *slack*) give a softmax budget $\sigma = \mathrm{softmax}(x)$, the
incentive on cell $s$ is $-0.2\,\sigma_s$, the leader pays $5 \times 0.2\,(1 -
\sigma_{\mathrm{slack}})$ when the follower reaches the goal, and the transition
kernel, terminal goal and discount are theirs ($F(0)$ at $\tau = 0.005$, printed
below the figure, is the value their code prints, $-0.667413$). Putting all the mass on the slack pays nothing and
earns nothing: $F \to 0$. That is a *stationary point* the gradient can lead to,
and it is worse than what the leader can achieve.

The authors' optimiser is plain SGD with the gradient norm clipped to 1 from
logits near 0. With the *exact* gradient, whose norm at $x_0$ is about $0.009$, that
optimiser creeps; Adam normalises the step per coordinate and climbs. The
comparison, exact gradients only, 150 steps:"""),
    ("code", """\
design, xd, dgrid = four_rooms_design(0.005)
sgd = optimize(design, xd, steps=150, step_size=0.5, clip_norm=1.0)
adam_run = optimize(design, xd, steps=150, update=adam(0.1))


def slack(xs):
    return np.exp(xs[-1] - xs.max()) / np.exp(xs - xs.max()).sum()


plt.plot(sgd.value, label=f"exact SGD (official), final slack share {slack(sgd.final_x):.2f}")
plt.plot(adam_run.value,
         label=f"exact Adam lr 0.1, final slack share {slack(adam_run.final_x):.2f}")
plt.axhline(0.0, color="k", ls=":", label="trivial stationary point (pay nothing)")
plt.xlabel("leader step")
plt.ylabel("exact F")
plt.legend()
plt.show()
print(f"F(x0) = {design.value(xd):.6f}, |grad F(x0)| = "
      f"{np.linalg.norm(eb.hypergradient(design, xd).gradient):.4f}")
print(f"after 150 steps: SGD F = {sgd.value[-1]:.3f}, Adam F = {adam_run.value[-1]:.3f}")
assert adam_run.value[-1] > max(sgd.value[-1], 0.0)"""),
    ("md", r"""In `verification/reproduce_fourrooms.md` this is worked out at the authors'
scale: with their optimiser the exact gradient only approaches the trivial point,
while BC-HG with the authors' lagging SARSA critic *escapes* it by noise and scores
higher than exact SGD — a case where estimator error helps a poor optimiser, and a
reason to compare estimators by their error against the exact gradient (chapter 6)
rather than by the curves they produce.

## Summary

* Incentive design is bilevel RL with ~100 parameters; the exact hypergradient
  costs one small solve, estimates need many episodes.
* Where the follower never reaches the target the leader's advantage vanishes:
  gradients are ~0 and noisy runs can stall on that plateau.
* The authors' design has a trivial stationary point (all budget on the slack,
  $F \to 0$); SGD with clipping creeps towards it, Adam climbs well above it
  (final values printed under the figure).
* Score every curve by the exact objective; judge estimators by their error against
  the exact gradient, not by where a particular optimiser happened to go."""),
]
