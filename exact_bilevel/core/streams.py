r"""Random streams of independent replicates: one rule for the whole package.

**The rule** (:data:`STREAM_RULE`, version 3: ``"cell-block/3"``). The replicates of one
*cell* (a plain list of replicates, or one ``(problem, estimator, budget)`` cell of a
sweep) share one PCG64 generator and own disjoint, consecutive blocks of its output.
The cell ``key`` (a tuple of non-negative integers, empty for a plain list) of a run
seeded ``s`` has the generator

.. code-block:: text

    numpy.random.PCG64(numpy.random.SeedSequence(s, spawn_key=(BATCH, len(key), *key)))

and replicate ``i`` owns its uniforms ``i B, ..., i B + B - 1`` (``B`` the block size of
the estimate, fixed before sampling from the budget: :func:`exact_bilevel.estimators.
sampling.block_size`), i.e. row ``i`` of ``Generator(PCG64).random((R, B))``. One call
draws the uniforms of ``R`` replicates at once (:func:`cell_uniforms`; creating ``R``
generators would cost ~15 us each); replicate ``i`` alone is the same generator advanced
by ``i B`` draws (:func:`block_rng`: ``PCG64.advance``, one 64-bit output per float64
uniform), so every replicate is reproducible alone, bit for bit. An estimator consumes
its block in a fixed documented order (:mod:`exact_bilevel.estimators.sampling`) and
never reads past it (a ``ValueError`` if it would).

**Why the tag and the length.** ``BATCH`` (4) follows the purpose tags of a leader run
(:data:`INITIAL_POINT`, :data:`LEADER_STEP`, :data:`PROBE`) and ``len(key)`` makes the
spawn key prefix-free, so a cell's generator is never the sequence of another cell, of a
purpose, or of a per-replicate stream of :func:`replicate_sequence` (the rule before
version 3, still used where one generator per replicate is needed: integer seeds for user
functions, the game and LQR estimators) of a different shape. Within a cell the blocks
are disjoint by construction: two replicates never share a uniform.

**The per-replicate sequences** (:func:`replicate_sequence`, rule ``spawn-key/2``).
Replicate ``i`` of the cell ``key`` draws from ``SeedSequence(s, spawn_key=(*key, i))``.
With an empty key, replicate ``i`` is the ``i``-th child of
``numpy.random.SeedSequence(s).spawn(R)``: numpy's own mechanism for independent
streams. A function that takes an *integer* seed (the certification battery's
``fn(problem, x, budget, seed)``) gets :func:`replicate_int_seed`, 63 bits drawn from
that same sequence.

**Why not ``default_rng([s, i])``** (the rule before version 2): numpy pads a short
entropy list with zeros, so ``[s, 0]`` is the stream of the plain seed ``s``, and a
seed of 32 bits or more is split into two words, so ``default_rng([2**32, 0])`` is
``default_rng([0, 1])``: replicate 0 of seed ``2**32`` *was* replicate 1 of seed 0.
``seed + i`` (the battery's rule before version 2) is worse: seeds ``0`` and ``1`` share
``R - 1`` of their ``R`` replicates. A spawn key is appended after the entropy has been
padded to the full pool (``SeedSequence`` does this precisely so that the entropy and
the key cannot run into each other), so two different ``(s, key, i)`` with
``0 <= s < 2**128`` give different sequences. (Each key entry and the replicate index
must be below ``2**32``: numpy splits a larger integer into 32-bit words, so a key
``(2**32,)`` would be the key ``(0, 1)``. The functions here refuse such entries.)

**What is guaranteed.** Distinct ``(s, key)`` give distinct ``SeedSequence`` inputs,
hence (up to a collision of numpy's 128-bit entropy pool hash, probability ``~2^-128``
per pair) generators whose streams do not overlap within ``2^64`` draws (PCG64 streams
of distinct seeds); the blocks of one cell are disjoint. The integer seeds of
:func:`replicate_int_seed` are 63-bit hashes of their sequences, distinct with
probability ``1 - m^2 / 2^64`` among ``m`` replicates (``< 1e-9`` for ``m = 10^5``).
``tests/test_streams.py`` checks these properties and ships the old rules as mutants
that the same checks reject.
"""

from __future__ import annotations

import numpy as np

#: Name and version of the rule; stored in sweep provenance and printed in reports.
STREAM_RULE = "cell-block/3"

_MAX_SEED = 2**128


def _entry(name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} = {value!r}: must be an integer")
    v = int(value)
    if not 0 <= v < limit:
        raise ValueError(f"{name} = {v}: must lie in [0, 2^{limit.bit_length() - 1})")
    return v


def replicate_sequence(seed: int, replicate: int, key: tuple[int, ...] = ()
                       ) -> np.random.SeedSequence:
    """The ``SeedSequence`` of replicate ``replicate`` of the cell ``key`` of a run seeded
    ``seed``: ``SeedSequence(seed, spawn_key=(*key, replicate))`` (module docstring).

    Parameters
    ----------
    seed : int
        The run's seed, ``0 <= seed < 2**128``.
    replicate : int
        The replicate index, ``0 <= i < 2**32``.
    key : tuple of int
        Non-negative integers (< 2**32 each) naming the cell; ``()`` for plain replicates.
    """
    s = _entry("seed", seed, _MAX_SEED)
    i = _entry("replicate", replicate, 2**32)
    k = tuple(_entry(f"key[{j}]", v, 2**32) for j, v in enumerate(key))
    return np.random.SeedSequence(s, spawn_key=(*k, i))


def replicate_rng(seed: int, replicate: int, key: tuple[int, ...] = ()
                  ) -> np.random.Generator:
    """``numpy.random.default_rng`` of :func:`replicate_sequence` (a PCG64 generator)."""
    return np.random.default_rng(replicate_sequence(seed, replicate, key))


def replicate_int_seed(seed: int, replicate: int, key: tuple[int, ...] = ()) -> int:
    """A 63-bit integer seed for replicate ``replicate`` of a run seeded ``seed``, for user
    functions that take an ``int``: the first 64 bits of :func:`replicate_sequence`'s
    state, top bit cleared (``0 <= result < 2**63``; fits a signed 64-bit integer)."""
    state = replicate_sequence(seed, replicate, key).generate_state(1, np.uint64)
    return int(state[0]) >> 1


#: Purposes of the streams of one leader run: spawn-key tags, so that a run's initial
#: point, its leader steps and its probes never share a stream with one another or with
#: a plain replicate (whose key ``(i,)`` has one entry; a purpose key has two or more).
INITIAL_POINT, LEADER_STEP, PROBE = 1, 2, 3
#: Spawn-key tag of a cell generator (:func:`cell_sequence`).
BATCH = 4
#: Purpose of the stream that draws a run's initial critic table (the official FourRooms
#: SARSA table, ``N(0, 1)``): a use of its own, shared with no leader step.
CRITIC_INIT = 6
#: Purpose of the streams of the fragment-bias measurement (FourRooms windows against the
#: exact gradient): a use of its own.
FRAGMENT_BIAS = 5
#: Every tag in use at the head of a spawn key: the purposes and :data:`BATCH` are
#: distinct, so no two uses share a stream (``tests/test_streams.py``).
SPAWN_TAGS = (INITIAL_POINT, LEADER_STEP, PROBE, BATCH, FRAGMENT_BIAS, CRITIC_INIT)


def purpose_sequence(seed: int, purpose: int, *index: int) -> np.random.SeedSequence:
    """``SeedSequence(seed, spawn_key=(purpose, *index))``: the stream of one use
    (:data:`INITIAL_POINT`, :data:`LEADER_STEP` ``t``, :data:`PROBE`, :data:`CRITIC_INIT`)
    within a run seeded ``seed``; ``index`` must be non-empty (the step, or 0)."""
    if not index:
        raise ValueError("index: give at least one index (the step, or 0)")
    return replicate_sequence(seed, index[-1], (purpose, *index[:-1]))


def purpose_rng(seed: int, purpose: int, *index: int) -> np.random.Generator:
    """``numpy.random.default_rng`` of :func:`purpose_sequence`."""
    return np.random.default_rng(purpose_sequence(seed, purpose, *index))


def cell_sequence(seed: int, key: tuple[int, ...] = ()) -> np.random.SeedSequence:
    """The ``SeedSequence`` of the cell ``key`` of a run seeded ``seed``:
    ``SeedSequence(seed, spawn_key=(BATCH, len(key), *key))`` (module docstring)."""
    s = _entry("seed", seed, _MAX_SEED)
    k = tuple(_entry(f"key[{j}]", v, 2**32) for j, v in enumerate(key))
    return np.random.SeedSequence(s, spawn_key=(BATCH, len(k), *k))


def _block(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} = {value!r}: must be a positive integer")
    return int(value)


def block_rng(seed: int, replicate: int, block: int, key: tuple[int, ...] = ()
              ) -> np.random.Generator:
    """Replicate ``replicate``'s stream alone: the cell generator of :func:`cell_sequence`
    advanced by ``replicate * block`` outputs; its first ``block`` uniforms are row
    ``replicate`` of :func:`cell_uniforms` (``block``: uniforms per replicate)."""
    i = _entry("replicate", replicate, 2**32)
    bg = np.random.PCG64(cell_sequence(seed, key))
    bg.advance(i * _block("block", block))
    return np.random.Generator(bg)


def cell_uniforms(seed: int, n_replicates: int, block: int, key: tuple[int, ...] = (),
                  first: int = 0) -> np.ndarray:
    """Uniforms ``U[R, block]`` of replicates ``first, ..., first + R - 1`` of a cell,
    in one call: row ``j`` is replicate ``first + j``'s block (module docstring)."""
    R = _block("n_replicates", n_replicates)
    if _entry("first", first, 2**32) + R > 2**32:
        raise ValueError(f"first + n_replicates = {first + R}: must be at most 2^32")
    return block_rng(seed, first, block, key).random((R, _block("block", block)))
