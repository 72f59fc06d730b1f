r"""The BC-HG paper's continuous tasks as exact soft-LQR problems (Kudo et al. 2026).

Both functions return ``(problem, x0)`` with the authors' settings (akimotolab/BC-HG,
read for facts). The exact model is the *unclipped* linear-Gaussian system: the
authors' simulators clip states (BuildingThermalControl: to [-30, 30], with
truncated noise); their effect is stated beside every reproduced number.
"""

from __future__ import annotations

import numpy as np

from .model import LQRProblem, make_problem

#: BuildingThermalControl_3, config ``experiment_bilevel_lqr_reg_lambda_0_1_steps_10000``.
BUILDING = {
    "A": [[1.0, 0.05, 0.0, 0.05], [0.03, 1.0, 0.04, 0.0], [0.0, 0.04, 1.0, 0.06],
          [0.05, 0.0, 0.03, 1.0]],
    "insulation_effect": [0.04, 0.03, 0.06, 0.05],
    "B": [[0.1, 0.0], [0.6, 0.0], [0.0, 0.55], [0.0, 0.3]],
    "Q": [8.0, 1.0, 5.0, 6.0],
    "R": 0.01,
    "transition_std": 0.02,
    "gamma": 0.9,
    "reg_lambda": 0.1,
    "gamma_L": 0.9,
    "stability_weight": 1.0,
    "energy_weight": 0.5,
    "insulation_cost_weight": 0.1,
    "airflow_cost_weight": 0.1,
    "init_temp_std": 5.0,
    "episode_steps": 100,
}


def building_thermal_control(horizon: int | None = BUILDING["episode_steps"]
                             ) -> tuple[LQRProblem, np.ndarray]:
    r"""BuildingThermalControl (4 zones, 2 HVAC inputs), leader = insulation and airflow.

    ``x[8]`` are logits: ``il = sigmoid(x[:4])`` (insulation level per zone),
    ``aa = sigmoid(x[4:])`` (airflow adjustment of the link ``i -> i+1 mod 4``), and
    ``A(il, aa)`` is ``BuildingThermalControl_3.compute_parameterized_A``: diagonal
    ``A_ii + e_i (1 - il_i) - sum_links A_ij aa_link``, off-diagonal
    ``A_ij aa_link`` on the ring. Follower: ``s' = A s + B u + N(0, 0.02^2 I)``, cost
    ``s'Qs + u'Ru``, ``Q = diag(8, 1, 5, 6)``, ``R = 0.01 I``, ``gamma = 0.9``,
    ``tau = reg_lambda = 0.1``. Leader stage reward ``-1.0 var(s) - 0.5 |u|^2 -
    0.1 |il|^2 - 0.1 |aa|^2`` (population variance), ``gamma_L = 0.9``, episodes of 100
    steps from ``s_0 ~ N(0, 5^2 I)``. ``x0 = 0`` (the authors draw ``N(0, 0.01^2)``).
    """
    c = BUILDING
    A = np.asarray(c["A"])
    e = np.asarray(c["insulation_effect"])
    n = 4
    base = np.diag(np.diag(A) + e)
    J = np.zeros((n, n, 8))
    for i in range(n):
        J[i, i, i] = -e[i]                     # insulation level il_i
    for j in range(n):                          # airflow adjustment aa_j on link (j, j+1)
        k = (j + 1) % n
        J[j, k, 4 + j] += A[j, k]
        J[k, j, 4 + j] += A[k, j]
        J[j, j, 4 + j] -= A[j, k]
        J[k, k, 4 + j] -= A[k, j]
    var = np.eye(n) / n - np.ones((n, n)) / n**2
    names = tuple(f"insulation[{i}]" for i in range(n)) + tuple(f"airflow[{i}]" for i in range(n))
    problem = make_problem(
        A=base, B=c["B"], Q=np.diag(c["Q"]), R=c["R"] * np.eye(2),
        W=c["transition_std"] ** 2 * np.eye(n), gamma=c["gamma"], tau=c["reg_lambda"],
        jac={"A": J}, link="sigmoid", names=names,
        Q_L=c["stability_weight"] * var, R_L=c["energy_weight"] * np.eye(2),
        cost_weight=[c["insulation_cost_weight"]] * 4 + [c["airflow_cost_weight"]] * 4,
        gamma_L=c["gamma_L"], horizon=horizon, mu0=np.zeros(n),
        Sigma0=c["init_temp_std"] ** 2 * np.eye(n))
    return problem, np.zeros(8)


#: LQREnv-v4 with ``markov_game/config/LQREnv-v4/config_bchg.yaml``.
GAME = {
    "A": [[0.0, 1.0], [0.0, 0.0]], "B": [[0.0], [0.1]], "C": [[0.1], [0.0]],
    "Q": [[1.0, 0.0], [0.0, 1.0]], "R": [[1.0]], "cost_lambda": 1.0,
    "initial_state": [1.0, 0.0], "target_state": [-0.8, 0.0], "xstd": [0.2, 0.01],
    "fixed_W": 1e-3, "gamma": 0.95, "beta": 0.1, "gamma_L": 0.99, "episode_steps": 100,
}


def lqr_game(leader_reward: str = "bump", horizon: int | None = GAME["episode_steps"]
             ) -> tuple[LQRProblem, np.ndarray]:
    r"""The LQR Markov game (LQREnv-v4): the leader plays ``a ~ N(K s, W W')``, ``x = K[0, :]``.

    ``s' = A s + B u + C a`` (no process noise), ``A = [[0, 1], [0, 0]]``, ``B = [[0], [0.1]]``,
    ``C = [[0.1], [0]]``; MaxEnt follower observing ``a`` with cost ``s'Qs + u'Ru``
    (``Q = I``, ``R = 1``), ``gamma = 0.95``, ``tau = beta = 0.1``; ``W = 1e-3`` fixed;
    ``s_0 = [1, 0]``; ``gamma_L = 0.99``; episodes of 100 steps.

    ``leader_reward="bump"`` is what ``LQREnv_4.leader_cost`` computes:
    ``r_L = cost_lambda exp(-sum_i (s_i - target_i)^2 / (2 xstd_i^2))`` with target
    ``[-0.8, 0]`` and ``xstd = [0.2, 0.01]``. ``"hinge"`` is the base class's
    ``r_L = -(s'Qs + u'Ru) + cost_lambda min(s[0], 0)`` (the description in our facts
    file, which the v4 environment overrides). ``x0 = 0`` (the authors draw ``N(0, 1)``).
    """
    c = GAME
    J = np.zeros((1, 2, 2))
    J[0, 0, 0] = J[0, 1, 1] = 1.0
    common = dict(A=c["A"], B=c["B"], C=c["C"], K_L=np.zeros((1, 2)),
                  Sigma_L=[[c["fixed_W"] ** 2]], Q=c["Q"], R=c["R"], gamma=c["gamma"],
                  tau=c["beta"], jac={"K_L": J}, names=("K[0]", "K[1]"),
                  gamma_L=c["gamma_L"], horizon=horizon, mu0=c["initial_state"])
    if leader_reward == "bump":
        problem = make_problem(**common, bump_weight=c["cost_lambda"],
                               bump_center=c["target_state"],
                               bump_precision=np.diag(1.0 / np.square(c["xstd"])))
    elif leader_reward == "hinge":
        problem = make_problem(**common, Q_L=c["Q"], R_L=c["R"], hinge_weight=c["cost_lambda"],
                               hinge_index=0)
    else:
        raise ValueError(f"leader_reward = {leader_reward!r}: must be 'bump' or 'hinge'")
    return problem, np.zeros(2)
