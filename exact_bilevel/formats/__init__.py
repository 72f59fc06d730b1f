r"""Files: the problem, Markov-game and golden-vector formats, read and written safely.

* :mod:`.files` — ``exact-bilevel/1`` problem files (dense or sparse features,
  softmax-logit transitions, tabular incentives, objectives), ``exact-bilevel-game/1``
  Markov-game files, ``exact-bilevel-lqr/1`` soft-LQR files (:mod:`exact_bilevel.lqr.files`),
  golden-vector files; a reader that is bounded (at most
  ``MAX_FILE_BYTES``), budgeted (parse cost and implied arrays against the memory
  budget) and strict (duplicate keys, non-finite and overflowing numbers rejected);
  atomic writes; the JSON Schemas in ``exact_bilevel/schema``.

The public entry point is :mod:`exact_bilevel.io`, which re-exports it.

May import: :mod:`exact_bilevel.core`, :mod:`exact_bilevel.games`, :mod:`exact_bilevel.lqr`.
"""
