r"""Sample-based hypergradient estimators from the literature, behind one interface.

Every estimator is a function ``(know, sampler, budget, critic) -> Estimate``:
``know`` is the sample-free :class:`LeaderKnowledge` at ``x``, ``sampler`` the
only access to the environment, ``budget`` the most transitions (steps + resets)
the estimate may bill: a hard cap (:meth:`.sampling.Sampler.capped`; episodes are
planned to reach it with probability ``<= 1e-4``), and a budget below the
estimator's minimum is a ``ValueError`` naming it. :func:`estimate` runs one by
name. :data:`ESTIMATORS` records, for each, the access it needs and whether it is
unbiased.

================== ========================================== ======================
name               access                                     bias
================== ========================================== ======================
bc-hg              on-policy episodes; follower pi (and V)    unbiased (exact critic)
bc-hg-baseline     as bc-hg                                   unbiased (exact critic)
hpgd               on-policy episodes (repeated visits)       consistent
hpgd-td            on-policy episodes (repeated visits)       consistent
hpgd-oracle        on-policy episodes + resets to (s, a)      consistent
sobirl             resets to (s, a); exact partials of f      consistent
sobirl-simplified  generative model (if P depends on x)       biased by design
model-based        generative model                           consistent
naive              on-policy episodes                         biased (no indirect)
zeroth-order       deploy perturbed x; on-policy episodes     biased O(mu^2)
================== ========================================== ======================

Replicates are batched: a :class:`~.sampling.Sampler` serves ``R`` replicates at once
(each reading its own block of uniforms, stream rule ``cell-block/3`` of
:mod:`exact_bilevel.core.streams`), the episodes of all of them are walked in one
vectorised pass (a flat, time-major :class:`~.sampling.EpisodeBatch`) and every sum is
taken per replicate (segment sums), so :func:`replicates` returns ``[R, d]`` from one
call of the estimator, and replicate ``i`` run alone by :func:`estimate` (with
:func:`exact_bilevel.core.streams.block_rng`) gives the same numbers bit for bit.

Inside, the layers follow the access an estimator has: :mod:`.sampling` (the
``Sampler``, the only access to the environment; it counts transitions) ->
:mod:`._common` (the sample-free ``LeaderKnowledge`` at ``x``) -> :mod:`.critics`
(exact, Monte Carlo and TD leader critics) -> :mod:`.tabular` (tabular ``dQ``
estimates) -> one module per family (:mod:`.bchg`, :mod:`.hpgd`, :mod:`.sobirl`,
:mod:`.model_based`, :mod:`.zeroth_order`) -> :mod:`.registry`.

Beside the registry, the official FourRooms sampling of Kudo et al.: :mod:`.carried`
(:class:`EpisodeStream`: windows of transitions from parallel environments, episodes
capped and ended at terminal states, carried across leader steps or reset) and
:mod:`.fragments` (the BC-HG / HPGD-oracle estimates formed from those windows' fragment
sums as the authors' code forms them, and the carried :class:`SarsaTable` critic).

May import: :mod:`exact_bilevel.core`.
"""

from ._common import Estimate, LeaderKnowledge, leader_knowledge
from .carried import EpisodeStream, Window
from .fragments import SarsaTable, windowed_bchg, windowed_hpgd_oracle
from .moments import moments
from .registry import ESTIMATORS, EstimatorInfo, estimate, replicates

__all__ = ["ESTIMATORS", "EpisodeStream", "Estimate", "EstimatorInfo", "LeaderKnowledge",
           "SarsaTable", "Window", "estimate", "leader_knowledge", "moments", "replicates",
           "windowed_bchg", "windowed_hpgd_oracle"]
