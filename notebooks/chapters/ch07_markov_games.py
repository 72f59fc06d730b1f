"""Chapter 7: two-player Markov games."""

from ._setup import SETUP_NO_EB as SETUP

NAME = "07_markov_games"
CELLS = [
    ("md", r"""# 7. Two-player Markov games

So far the leader chose parameters $x$ once. In a **Markov game** the leader *acts*:
at every step it draws an action $a_L \sim \pi_L(\cdot|s;\theta)$, the follower an
action $a_F$, and the joint transition $P(s'|s,a_L,a_F)$ moves the state. The leader's
parameters $\theta$ are those of its own policy (here a tabular softmax,
$\pi_L(a_L|s) = \mathrm{softmax}(\theta[s,\cdot])$), the follower soft-best-responds,
and the leader wants $\nabla_\theta F$ of its discounted return. BC-HG was designed
for this decentralised setting, where the leader never sees inside the follower.

The key modelling choice is **what the follower observes**.

* **The follower observes $s$ only.** It faces the *induced* MDP, with the leader
  averaged out: $P_\theta(s'|s,a_F) = \sum_{a_L}\pi_L(a_L|s)\,P(s'|s,a_L,a_F)$ and
  likewise for rewards. $\theta$ enters the follower's rewards *and* transitions; it is
  a bilevel problem of chapter 2 with a jointly parameterised follower.
* **The follower observes $(s, a_L)$** (it sees the leader's move before its own). Its
  state is the pair $(s, a_L)$; the transition to the next pair is
  $P(s'|s,a_L,a_F)\,\pi_L(a_L'|s')$, so $\theta$ enters through the *next* leader
  action. The initial law of the follower's MDP, $\rho(s)\,\pi_L(a_L|s)$, depends on
  $\theta$ as well, which adds a third term to the hypergradient,

$$\nabla F = \underbrace{\text{direct}}_{\text{leader's own policy gradient}}
+ \underbrace{\text{indirect}}_{\text{follower's response}}
+ \underbrace{\sum_{s,a_L}\rho(s)\,\nabla\pi_L(a_L|s)\,V_L(s,a_L)}_{\text{initial law}}.$$

The initial-law term is easy to forget — and forgetting it is one of the game
mutants the test suite must catch. `exact_bilevel.games` computes all three terms
exactly, and a brute-force route (soft value iteration on the game's own tables, no
bilevel reduction) checks them.

## DiscreteToy

The paper's game: 3 states, 2 leader and 3 follower actions, $\gamma = 0.99$,
$\tau = 0.05$, a follower that observes $(s, a_L)$, and a parameter $R$ that changes
the leader's rewards (the paper uses $R = 1$ and $R = 2$). One detail of DiscreteToy matters for the
three terms: the episode always starts in state S, and there the leader's action
changes nothing (it only acts on the follower in state A), so $V_L(S, a_L)$ is the
same for both $a_L$ and the initial-law term is exactly zero in DiscreteToy. To see
all three terms, the right panel uses a random 3-state game (2 leader and 2 follower
actions, $\gamma = 0.9$, $\tau = 0.5$, a random initial law) whose leader matters
everywhere. Both at a random leader policy:"""),
    ("code", SETUP + """
import dataclasses
from exact_bilevel import games as mg
rng = np.random.default_rng(0)
game1 = mg.discrete_toy(1.0)
theta = 0.5 * rng.normal(size=game1.n_params)"""),
    ("code", """\
rng_game = np.random.default_rng(0)
S, AL, AF = 3, 2, 2
random_game = mg.MarkovGame(rng_game.dirichlet(np.ones(S), size=(S, AL, AF)),
                            rng_game.normal(size=(S, AL, AF)), rng_game.normal(size=(S, AL, AF)),
                            rng_game.dirichlet(np.ones(S)), 0.9, 0.5,
                            observes=mg.OBSERVES_STATE_AND_LEADER_ACTION)
toy2 = mg.hypergradient(mg.discrete_toy(2.0), theta)
h_rand = mg.hypergradient(random_game, 0.5 * rng_game.normal(size=random_game.n_params))
fig, ax = plt.subplots(1, 2, figsize=(12, 4))
k = np.arange(len(theta))
ax[0].bar(k - 0.2, toy2.direct, 0.4, label="direct")
ax[0].bar(k + 0.2, toy2.indirect, 0.4, label="indirect (follower's response)")
ax[0].set_title(f"DiscreteToy, R = 2: F = {toy2.value:.4f}\\n"
                f"initial-law term: max |.| = {np.abs(toy2.initial_term).max():.0e} (zero)")
k = np.arange(random_game.n_params)
ax[1].bar(k - 0.27, h_rand.direct, 0.27, label="direct")
ax[1].bar(k, h_rand.indirect, 0.27, label="indirect (follower's response)")
ax[1].bar(k + 0.27, h_rand.initial_term, 0.27, label="initial law")
ax[1].set_title(f"random game: F = {h_rand.value:.4f}")
for a in ax:
    a.set_xlabel("theta index (s * AL + aL)")
    a.axhline(0, color="k", lw=0.5)
    a.legend(fontsize=8)
plt.show()
assert np.abs(toy2.initial_term).max() < 1e-12 * np.abs(toy2.gradient).max()
share = np.linalg.norm(h_rand.initial_term) / np.linalg.norm(h_rand.gradient)
print(f"random game: |initial-law term| / |grad F| = {share:.2f}")
assert share > 0.05"""),
    ("md", r"""**Exercise 7.** The softmax leader's Jacobian
$\partial\pi_L(a|s)/\partial\theta[s,b] = \pi_L(a|s)\,(\delta_{ab} - \pi_L(b|s))$ (and zero
across states) is the building block of the direct and initial-law terms. Write it
with shape `[S, AL, d]` (`d = S * AL`, $\theta$ flattened row-major) in the empty
function below and compare with `mg.leader_policy_jacobian` (a reference answer is
collapsed after it)."""),
    ("code", """\
def my_leader_jacobian(pi):
    \"\"\"Return J[s, a, k] = d pi_L(a|s) / d theta_k for pi[S, AL].\"\"\"
    raise NotImplementedError("your code here")"""),
    ("code", """\
# cell-tags: hide-input
# reference answer: it replaces your function
def my_leader_jacobian(pi):  # noqa: F811
    S, AL = pi.shape
    J = np.zeros((S, AL, S * AL))
    for s in range(S):
        J[s, :, s * AL:(s + 1) * AL] = np.diag(pi[s]) - np.outer(pi[s], pi[s])
    return J"""),
    ("code", """\
mine = my_leader_jacobian(mg.leader_policy(game1, theta))
assert np.allclose(mine, mg.leader_policy_jacobian(game1, theta), atol=1e-15)
print("exercise 7: the softmax Jacobian is right")"""),
    ("md", r"""## The information structure changes the answer

The same tables with a follower that observes only $s$ give a different follower, a
different $F$ and a different gradient. Which one a paper means must be stated; the
file format records it (`"observes": "state" | "state_and_leader_action"`)."""),
    ("code", """\
for observes in (mg.OBSERVES_STATE_AND_LEADER_ACTION, mg.OBSERVES_STATE):
    g = dataclasses.replace(game1, observes=observes)
    h = mg.hypergradient(g, theta)
    print(f"follower observes {observes:24s} F = {h.value:.6f}   |grad F| = "
          f"{np.linalg.norm(h.gradient):.4f}")"""),
    ("md", r"""## A worked example of what `check` catches: the released follower

The DiscreteToy code released with the paper solves its follower (who observes
$(s, a_L)$) by a soft Q-iteration that bootstraps the log-sum-exp of the
*leader-averaged* $Q$,

$$Q(s,a_L,a_F) = r_F + \gamma\sum_{s'}P(s'|s,a_L,a_F)\;\tau\log\sum_{a_F'}
\exp\Big(\sum_{a_L'}\pi_L(a_L'|s')\,Q(s',a_L',a_F')/\tau\Big),$$

instead of averaging the log-sum-exps, $\sum_{a_L'}\pi_L(a_L'|s')\,V(s',a_L')$. The
iteration is still a contraction, so it converges — to the wrong place: effectively
a follower that plans as if it would *not* see the next leader action. Its objective
and gradient are those of a different problem:"""),
    ("code", """\
from exact_bilevel.crosscheck.finite_differences import richardson_gradient
from exact_bilevel.mutants import FOLLOWER_MUTANTS
_, authors_value = FOLLOWER_MUTANTS["authors-toy-follower"]
x0 = np.zeros(game1.n_params)
for R in (1.0, 2.0):
    g = mg.discrete_toy(R)
    exact = mg.hypergradient(g, x0)
    wrong_grad = richardson_gradient(lambda y, g=g: authors_value(g, y), x0, h=1e-3).gradient
    cos = wrong_grad @ exact.gradient / np.linalg.norm(wrong_grad) / np.linalg.norm(exact.gradient)
    print(f"R = {R:g}: F exact {exact.value:.4f}, released follower {authors_value(g, x0):.4f}; "
          f"cosine of their gradients {cos:+.3f}")"""),
    ("md", r"""At $R = 1$ the released follower's $F$ is 0.363 instead of 0.617, and at
$R = 2$ its gradient points *against* the true one. A gradient computed from it
fails `exact-bilevel check` on the game file — exit code 1:"""),
    ("code", """\
import json, pathlib, tempfile
from exact_bilevel import io
from exact_bilevel.cli import main as cli
tmp = pathlib.Path(tempfile.mkdtemp())
g2 = mg.discrete_toy(2.0)
(tmp / "game.json").write_text(json.dumps(io.game_to_dict(g2, x0)))
wrong = richardson_gradient(lambda y: authors_value(g2, y), x0, h=1e-3).gradient
(tmp / "theirs.json").write_text(json.dumps({"gradient": wrong.tolist()}))
print("exit code:", cli(["check", str(tmp / "game.json"), "--estimate", str(tmp / "theirs.json")]))"""),
    ("md", r"""## Summary

* In a Markov game the leader's parameters are its policy; the follower best-responds
  to the *induced* MDP (observes $s$) or to an augmented one (observes $(s,a_L)$).
* Observing $(s, a_L)$ adds the initial-law term
  $\sum\rho\,\nabla\pi_L\,V_L$ to direct + indirect; it vanishes only where the
  leader's first action does not matter (DiscreteToy's start state).
* The information structure is part of the problem: it changes $F$ and $\nabla F$.
* A follower solved by the wrong fixed point converges quietly to a different
  problem; only a comparison with the exact answer shows it."""),
]
