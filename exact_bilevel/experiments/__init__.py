r"""Experiments built on the exact core: problems, leader optimisation, reproductions.

* :mod:`.examples` — small random bilevel problems and the demo problem;
* :mod:`.paper_problems` — the papers' benchmark problems (FourRooms incentive
  design, SoBiRL synthetic); also importable as ``exact_bilevel.experiments.paper_problems``;
* :mod:`.optimize` — the leader's gradient loop with the follower re-solved
  exactly, from the exact hypergradient or any estimator;
* :mod:`.reproduce` — the papers' experiments with the exact answer beside every
  estimate (``exact-bilevel reproduce``).

* :mod:`.battery` — the certification battery for other people's estimators
  (public as :func:`exact_bilevel.testing.check_estimator`);
* :mod:`.game_battery` — the same for two-player Markov-game estimators
  (public as :func:`exact_bilevel.testing.check_game_estimator`).

May import: :mod:`exact_bilevel.core`, :mod:`exact_bilevel.crosscheck`,
:mod:`exact_bilevel.estimators`, :mod:`exact_bilevel.games`,
:mod:`exact_bilevel.validation`, :mod:`exact_bilevel.formats`, :mod:`exact_bilevel.lqr`.
"""
