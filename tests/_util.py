"""Shared test helpers."""

import numpy as np

from exact_bilevel import LeaderReturn, hypergradient


def term_scale(problem, x):
    """Size of the largest term summed into the gradient, ``|direct| + sum |df/dpi pi dQ| / tau``
    (for the leader return with ``df/dpi = occ * Q_L``).

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
    return float(np.max(np.abs(terms.direct) + indirect)) + 1e-300
