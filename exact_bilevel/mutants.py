r"""Deliberately wrong hypergradient estimators (public entry point).

:data:`MUTANTS` maps a name to a wrong estimator (:class:`Mutant`: the function,
the correct estimator and critic it copies, its bug): BC-HG variants (sign flip,
missing centring, wrong discount power, ...), wrong critics, HPGD, SoBiRL and
zeroth-order variants; :func:`mutant_replicates` draws independent estimates from
one; :func:`mutant_moments` gives the exact mean and covariance of those where it is
linear algebra (the BC-HG family; :data:`EXPRESSIBLE`). :data:`CRITIC_MUTANTS` holds
the wrong-discount critics inside them, which the deterministic checks of
:mod:`exact_bilevel.validation.critic_checks` reject.
:data:`GAME_MUTANTS` holds wrong Markov-game estimators (BC-HG's sign flip, ``tau``
for ``1/tau``, ``gamma`` for ``gamma_L``, wrong discount power inside the game estimator,
and two wrong initial-law terms; exact means by :func:`game_mutant_mean`),
:data:`SAMPLER_MUTANTS`
samplers that forget part of the transition bill; :data:`FOLLOWER_MUTANTS` wrong
followers (the released DiscreteToy follower). An
acceptance test that cannot reject them has no power.
The implementation and the table of bugs live in
:mod:`exact_bilevel.validation.mutants`.
"""

from .validation.mutant_moments import EXPRESSIBLE, mutant_moments
from .validation.mutants import (
    CRITIC_MUTANTS,
    FOLLOWER_MUTANTS,
    GAME_MUTANTS,
    MUTANTS,
    SAMPLER_MUTANTS,
    CriticMutant,
    Mutant,
    game_mutant_mean,
    mutant_replicates,
)

__all__ = ["CRITIC_MUTANTS", "EXPRESSIBLE", "FOLLOWER_MUTANTS", "GAME_MUTANTS", "MUTANTS",
           "SAMPLER_MUTANTS", "CriticMutant", "Mutant", "game_mutant_mean", "mutant_moments",
           "mutant_replicates"]
