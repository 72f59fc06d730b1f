"""Generate the golden vectors in ``verification/golden/``.

Each file ``NN_name.json`` holds

* ``problem``: a problem in the ``exact-bilevel/1`` file format (see README);
* ``expected``: ``value`` ``F(x)`` and ``gradient`` ``grad F(x)`` as decimal
  strings with 30 significant digits, computed by the mpmath route
  (:mod:`exact_bilevel.highprec`) at 60 digits and confirmed by a second run at
  80 digits (the script stops if the two disagree beyond 1e-40 relative).

The float64 inputs are exactly representable, so the expected values are the
exact answers for the stated problem to 30 digits, not for a rounding of it.

Run: ``python verification/make_golden.py`` (a few minutes; FourRooms dominates).
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable

import numpy as np
from mpmath import mp
from tqdm import tqdm

from exact_bilevel import (
    BilevelProblem,
    FixedReward,
    FixedTransitions,
    LeaderReturn,
    gridworld,
    highprec,
    tabular_incentive,
)
from exact_bilevel.core._files import atomic_write
from exact_bilevel.experiments.examples import (
    four_rooms_incentives,
    random_affine_reward,
    random_problem,
    random_softmax_transitions,
)
from exact_bilevel.io import GOLDEN_FORMAT, problem_to_dict

OUT = pathlib.Path(__file__).parent / "golden"
DIGITS = 30


def _random(S: int, A: int, d: int, seed: int, **kw: object) -> Callable:
    return lambda: random_problem(S, A, d, seed=seed, **kw)


def _sparse_transitions(S: int, A: int, d: int, seed: int, gamma: float, tau: float
                        ) -> Callable:
    def make() -> tuple[BilevelProblem, np.ndarray]:
        rng = np.random.default_rng(seed)
        tr = random_softmax_transitions(rng, S, A, d, support=2)
        leader = LeaderReturn(random_affine_reward(rng, S, A, d, scale=0.5))
        p = BilevelProblem(random_affine_reward(rng, S, A, d), tr, leader, gamma=gamma,
                           tau=tau, initial=rng.dirichlet(np.ones(S)))
        return p, rng.normal(size=d)
    return make


def _grid(states: bool, tau: float) -> Callable:
    def make() -> tuple[BilevelProblem, np.ndarray]:
        mdp, grid = gridworld(["    ", "  x ", "    "], goal=(0, 3), gamma=0.95,
                              random_action_prob=0.2, start=(2, 0))
        S = grid.n_states
        if states:
            follower = tabular_incentive(mdp.reward, states=[grid.state(c) for c in
                                                             [(1, 0), (1, 1), (2, 2)]])
        else:
            follower = tabular_incentive(mdp.reward, pairs=[(0, 1), (4, 2), (7, 1), (9, 0)])
        d = follower.n_params
        target = np.zeros((S, 4))
        target[grid.state((2, 3))] = 1.0
        p = BilevelProblem(follower, FixedTransitions(mdp.transitions, d),
                           LeaderReturn(FixedReward(target, d)), gamma=0.95, tau=tau,
                           initial=mdp.initial)
        return p, np.linspace(-0.2, 0.3, d)
    return make


def _four_rooms(tau: float, n_incentives: int) -> Callable:
    return lambda: four_rooms_incentives(tau, n_incentives)


CASES: dict[str, Callable] = {
    "random_reward_S3A2": _random(3, 2, 2, 1),
    "random_reward_S5A3_own_leader_gamma": _random(5, 3, 3, 2,
                                                    objective="leader_return_own_gamma"),
    "random_reward_S6A4_x_leader_reward": _random(6, 4, 4, 3,
                                                   objective="leader_return_x_reward"),
    "random_reward_S4A2_d1": _random(4, 2, 1, 4, gamma=0.7, tau=2.0),
    "random_reward_S8A3_d5": _random(8, 3, 5, 5, gamma=0.9, tau=0.3),
    "transitions_S4A3": _random(4, 3, 2, 6, parameterize="transitions"),
    "transitions_S5A2_sparse": _sparse_transitions(5, 2, 3, 7, gamma=0.9, tau=0.5),
    "both_S4A3": _random(4, 3, 3, 8, parameterize="both"),
    "both_S6A2_own_leader_gamma": _random(6, 2, 2, 9, parameterize="both",
                                          objective="leader_return_own_gamma"),
    "both_S5A3_gamma0.99_tau0.05": _random(5, 3, 3, 10, parameterize="both", gamma=0.99,
                                           tau=0.05),
    "gridworld_state_incentives": _grid(True, 0.1),
    "gridworld_pair_incentives": _grid(False, 0.3),
    "fourrooms_all_state_incentives_tau0.005": _four_rooms(0.005, 104),
    "fourrooms_8_state_incentives_tau0.05": _four_rooms(0.05, 8),
    "tau_1e-3": _random(5, 3, 3, 11, tau=1e-3),
    "tau_10": _random(4, 3, 2, 12, tau=10.0),
    "gamma_0.999": _random(5, 3, 3, 13, gamma=0.999, tau=0.5),
    "gamma_0.999_transitions": _random(4, 2, 2, 14, gamma=0.999, tau=0.2,
                                       parameterize="transitions"),
    "gamma_0": _random(3, 3, 2, 15, gamma=0.0),
    "single_state": _random(1, 3, 2, 16),
    "single_action": _random(4, 1, 2, 17, parameterize="both"),
    "many_params_d12": _random(3, 2, 12, 18, objective="leader_return_x_reward"),
}


def _nstr(v: object) -> str:
    return mp.nstr(v, DIGITS, min_fixed=-5, max_fixed=5, strip_zeros=False)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for i, (name, make) in enumerate(tqdm(CASES.items(), desc="golden", unit="problem"), 1):
        problem, x = make()
        data = problem_to_dict(problem, x)
        a = highprec.hypergradient(problem, x, dps=60)
        b = highprec.hypergradient(problem, x, dps=80)
        with mp.workdps(80):
            scale = max([abs(g) for g in b.gradient] + [abs(b.value), mp.mpf(1)])
            worst = max([abs(ga - gb) for ga, gb in zip(a.gradient, b.gradient, strict=True)]
                        + [abs(a.value - b.value)]) / scale
        if worst > mp.mpf(10) ** -40:
            print(f"{name}: 60- and 80-digit runs disagree ({mp.nstr(worst, 3)})")
            return 1
        with mp.workdps(80):
            expected = {"value": _nstr(b.value), "gradient": [_nstr(g) for g in b.gradient],
                        "significant_digits": DIGITS,
                        "method": "exact_bilevel.highprec (mpmath) at 60 and 80 digits, "
                                  "forward-mode implicit differentiation",
                        "follower_residual": mp.nstr(b.residual, 3)}
        record = {"format": GOLDEN_FORMAT, "name": name, "problem": data, "expected": expected}
        atomic_write(OUT / f"{i:02d}_{name}.json", json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(CASES)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
