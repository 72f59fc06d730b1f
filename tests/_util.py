"""Shared test helpers."""

import numpy as np

from exact_bilevel import LeaderReturn, hypergradient


def term_scale(problem, x):
    """Size of the largest term summed into the gradient: the summands of the direct
    term (``occ pi (|dr_L| + gamma_L |dP| |V_L|)`` for the leader return) plus
    ``sum |df/dpi pi dQ| / tau`` (with ``df/dpi = occ * Q_L``).

    Cancellation can make a gradient far smaller than the terms it is summed from
    (a nearly deterministic follower), so agreement is measured against the terms.
    """
    hf = hypergradient(problem, x, mode="forward")
    terms = problem.objective.evaluate(problem, hf.state)
    df_dpi = terms.df_dpi
    if isinstance(problem.objective, LeaderReturn):  # occ * Q_L, before any centring
        lv = problem.objective.leader_values(problem, hf.state)
        df_dpi = lv.occupancy[:, None] * lv.q
    w = np.abs(df_dpi * hf.state.solution.policy)
    indirect = np.einsum("sa,sak->k", w, np.abs(hf.sensitivities.dQ)) / problem.tau
    direct = np.abs(terms.direct)
    if isinstance(problem.objective, LeaderReturn):  # the summands of the direct term
        weights = lv.occupancy[:, None] * hf.state.solution.policy
        mag = np.abs(problem.objective.leader_reward.jacobian(x))
        if problem.transitions.depends_on_x:
            dP = problem.transitions.value(x)[..., None] * problem.transitions.score(x)
            mag = mag + lv.gamma * np.einsum("satk,t->sak", np.abs(dP), np.abs(lv.v))
        direct = np.maximum(direct, np.einsum("sa,sak->k", np.abs(weights), mag))
    return float(np.max(direct + indirect)) + 1e-300
