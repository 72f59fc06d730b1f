r"""Two-player Markov games: the leader acts too, the follower soft-best-responds.

Shapes: joint transitions ``P[s, aL, aF, s']``, rewards ``r_F[s, aL, aF]``,
``r_L[s, aL, aF]``; the leader plays a softmax ``piL(aL|s; theta)`` of logits that are
``theta`` itself (tabular) or a parameterisation's output (:mod:`.leaders`: the
authors' MLP). The layers inside follow the math:

* :mod:`.model` — :class:`MarkovGame`, the leader's policy and its Jacobian, and
  the follower's bilevel problem under either information structure (follower
  observes ``s``: the induced MDP; observes ``(s, aL)``: the augmented MDP);
* :mod:`.leaders` — leader parameterisations ``theta -> logits`` (:class:`MLPLeader`)
  and the chain rule :func:`pull_back`;
* :mod:`.exact` — the exact ``F(theta)`` and ``grad F = direct + indirect
  (+ the initial-law term)``;
* :mod:`.estimators` — the BC-HG game estimator (benefit x influence), its
  baseline variant and the direct-only baseline; :func:`replicates` draws ``R`` of them
  in one vectorised pass, each replicate on its own stream;
* :mod:`.moments` — the exact mean and covariance of one game estimate;
* :mod:`.discrete_toy` — the DiscreteToy game of Kudo et al. (2026).

This package is also importable as ``exact_bilevel.games`` (its former name).

May import: :mod:`exact_bilevel.core`, :mod:`exact_bilevel.estimators`.
"""

from .discrete_toy import discrete_toy
from .estimators import (
    GAME_ESTIMATORS,
    estimate,
    estimate_replicates,
    estimate_through_policy,
    leader_initial_value,
    replicates,
    uniforms_per_replicate,
)
from .exact import (
    GameHypergradient,
    finite_horizon_return,
    hypergradient,
    hypergradient_through_policy,
    value,
)
from .leaders import LeaderParameterization, MLPLeader, pull_back
from .model import (
    OBSERVES_STATE,
    OBSERVES_STATE_AND_LEADER_ACTION,
    MarkovGame,
    follower_problem,
    leader_logits,
    leader_policy,
    leader_policy_jacobian,
    tabular,
)
from .moments import game_moments, game_moments_through_policy

__all__ = [
    "GAME_ESTIMATORS",
    "OBSERVES_STATE",
    "OBSERVES_STATE_AND_LEADER_ACTION",
    "GameHypergradient",
    "LeaderParameterization",
    "MLPLeader",
    "MarkovGame",
    "discrete_toy",
    "estimate",
    "estimate_replicates",
    "estimate_through_policy",
    "finite_horizon_return",
    "follower_problem",
    "game_moments",
    "game_moments_through_policy",
    "hypergradient",
    "hypergradient_through_policy",
    "leader_initial_value",
    "leader_logits",
    "leader_policy",
    "leader_policy_jacobian",
    "pull_back",
    "replicates",
    "tabular",
    "uniforms_per_replicate",
    "value",
]
