r"""Statistical validation of sample-based estimators against the exact answer.

* :mod:`.acceptance` — calibrated acceptance tests: is a set of independent
  estimates unbiased for the exact hypergradient (Hotelling ``T^2`` /
  Bonferroni-t, false-alarm rate ``alpha``), does the error shrink with the
  budget (consistency), does a deterministic gradient match;
* :mod:`.mutants` — deliberately wrong estimators that those tests must reject
  (their power); :mod:`.mutant_moments` — the exact mean and covariance of those that
  are linear-algebra problems (the BC-HG family), the alternative of :mod:`.planning`;
* :mod:`.critic_checks` — deterministic checks that the sampled TD and Monte Carlo
  critics converge to the exact ``Q_L`` and ``dQ`` (no sampling: the exact batch of
  the true transitions, the exact mean of the reweighted returns).

The public entry points are :mod:`exact_bilevel.testing` and
:mod:`exact_bilevel.mutants`, which re-export these modules.

May import: :mod:`exact_bilevel.core`, :mod:`exact_bilevel.estimators`,
:mod:`exact_bilevel.games`.
"""
