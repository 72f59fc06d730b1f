r"""Deliberately wrong hypergradient estimators (public entry point).

:data:`MUTANTS` maps a name to a wrong BC-HG variant (sign flip, missing
centring, wrong discount power, ...); :func:`mutant_replicates` draws independent
estimates from one. An acceptance test that cannot reject them has no power.
The implementation and the table of bugs live in
:mod:`exact_bilevel.validation.mutants`.
"""

from .validation.mutants import MUTANTS, mutant_replicates

__all__ = ["MUTANTS", "mutant_replicates"]
