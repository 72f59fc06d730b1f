r"""Random streams of independent replicates: one rule for the whole package.

**The rule** (:data:`STREAM_RULE`). Replicate ``i`` of a run seeded ``s`` draws from

.. code-block:: text

    numpy.random.SeedSequence(s, spawn_key=(*key, i))

where ``key`` is a tuple of non-negative integers naming the cell the replicate
belongs to (empty for a plain list of replicates; a sweep uses ``(problem hash,
estimator hash, budget)``). With an empty key, replicate ``i`` is the ``i``-th child of
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

**What is guaranteed.** Distinct ``(s, key, i)`` give distinct ``SeedSequence``
inputs, hence (up to a collision of numpy's 128-bit entropy pool hash, probability
``~2^-128`` per pair) non-overlapping streams; the integer seeds of
:func:`replicate_int_seed` are 63-bit hashes of those sequences, distinct with
probability ``1 - m^2 / 2^64`` among ``m`` replicates (``< 1e-9`` for ``m = 10^5``).
``tests/test_streams.py`` checks both properties and ships the old rules as mutants
that the same checks reject.
"""

from __future__ import annotations

import numpy as np

#: Name and version of the rule; stored in sweep provenance and printed in reports.
STREAM_RULE = "spawn-key/2"

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
#: Purpose of the stream that draws a run's initial critic table (the official FourRooms
#: SARSA table, ``N(0, 1)``): a use of its own, shared with no leader step.
CRITIC_INIT = 4


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
