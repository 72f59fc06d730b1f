"""One rule for replicate streams (exact_bilevel.core.streams): replicates of one run
differ, two seeds share no stream; the old rules ship as mutants the same checks reject.

The cell-block rule (version 3): the replicates of a cell read consecutive blocks of one
generator; the checks below find any uniform shared by two replicates (of one cell, of
two cells, of two seeds), and reject a rule that ignores the replicate index or lets
the blocks overlap.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exact_bilevel.cli import main
from exact_bilevel.core.streams import (
    STREAM_RULE,
    block_rng,
    cell_sequence,
    cell_uniforms,
    replicate_int_seed,
    replicate_rng,
    replicate_sequence,
)
from exact_bilevel.estimators import estimate, replicates
from exact_bilevel.estimators.sampling import block_size
from exact_bilevel.experiments.battery import suite
from exact_bilevel.experiments.examples import random_problem
from exact_bilevel.io import save_problem

Rule = Callable[[int, int], np.random.Generator]

#: Seeds at the boundaries where numpy's entropy handling changes (one word, two words).
BOUNDARY_SEEDS = (0, 1, 2, 5, 2**32 - 1, 2**32, 2**32 + 1, 2**63 - 1)


def _fingerprint(rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(v) for v in rng.integers(0, 2**63, size=4))


def shared_streams(rule: Rule, seeds: tuple[int, ...], n_replicates: int
                   ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Pairs of distinct (seed, replicate) whose streams start with the same 4 draws."""
    seen: dict[tuple[int, ...], tuple[int, int]] = {}
    clashes = []
    for s in seeds:
        for i in range(n_replicates):
            f = _fingerprint(rule(s, i))
            if f in seen:
                clashes.append((seen[f], (s, i)))
            seen[f] = (s, i)
    return clashes


# The old rules (before STREAM_RULE spawn-key/2), and a sweep that forgot the index.
OLD_LIST_RULE: Rule = lambda s, i: np.random.default_rng([s, i])  # noqa: E731
OLD_BATTERY_RULE: Rule = lambda s, i: np.random.default_rng(s + i)  # noqa: E731
IGNORES_INDEX: Rule = lambda s, i: np.random.default_rng(s)  # noqa: E731


def test_shipped_rule_shares_no_stream_across_boundary_seeds() -> None:
    assert shared_streams(replicate_rng, BOUNDARY_SEEDS, 4) == []
    ints = [replicate_int_seed(s, i) for s in BOUNDARY_SEEDS for i in range(4)]
    assert len(set(ints)) == len(ints) and all(0 <= v < 2**63 for v in ints)


@pytest.mark.parametrize("rule, example", [
    (OLD_LIST_RULE, ((0, 1), (2**32, 0))),      # [2**32, 0] is [0, 1] after word splitting
    (OLD_BATTERY_RULE, ((0, 1), (1, 0))),       # seed + i: seeds 0 and 1 share R - 1
    (IGNORES_INDEX, ((0, 0), (0, 1))),          # every replicate of a cell identical
])
def test_old_rules_are_caught_by_the_same_check(rule: Rule, example: tuple) -> None:
    clashes = shared_streams(rule, BOUNDARY_SEEDS, 4)
    assert example in clashes


def test_old_list_rule_equals_the_plain_seed() -> None:
    """The reason for the rule change: ``default_rng([s, 0])`` is ``default_rng(s)``."""
    assert _fingerprint(np.random.default_rng([5, 0])) == _fingerprint(
        np.random.default_rng(5))
    assert _fingerprint(replicate_rng(5, 0)) != _fingerprint(np.random.default_rng(5))


@given(st.integers(0, 2**64), st.integers(0, 2**64), st.integers(0, 50), st.integers(0, 50),
       st.lists(st.integers(0, 2**32 - 1), max_size=3))
def test_distinct_coordinates_give_distinct_streams(s: int, t: int, i: int, j: int,
                                                    key: list[int]) -> None:
    if (s, i) == (t, j):
        return
    k = tuple(key)
    assert _fingerprint(replicate_rng(s, i, k)) != _fingerprint(replicate_rng(t, j, k))
    # a key and a replicate index are never confused with a longer key
    assert _fingerprint(replicate_rng(s, i, k)) != _fingerprint(replicate_rng(s, i, (*k, 0)))


def test_spawn_children_are_the_replicates() -> None:
    children = np.random.SeedSequence(7).spawn(3)
    for i, child in enumerate(children):
        assert _fingerprint(np.random.default_rng(child)) == _fingerprint(replicate_rng(7, i))


@pytest.mark.parametrize("bad, field", [
    (dict(seed=-1, replicate=0), "seed"), (dict(seed=2**128, replicate=0), "seed"),
    (dict(seed=0, replicate=2**32), "replicate"), (dict(seed=1.5, replicate=0), "seed"),
    (dict(seed=0, replicate=0, key=(2**32,)), "key[0]"),
    (dict(seed=0, replicate=0, key=(1, -2)), "key[1]"),
])
def test_bad_coordinates_name_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field.replace('[', '.').replace(']', '.')} ="):
        replicate_sequence(**bad)


# --- every entry point uses the rule ----------------------------------------------------
def _problem() -> tuple:
    return random_problem(4, 2, 2, seed=3, gamma=0.8, tau=0.5)


def test_replicates_differ_within_and_across_seeds() -> None:
    problem, x = _problem()
    a, _ = replicates(problem, x, "bc-hg", 200, 5, seed=0)
    b, _ = replicates(problem, x, "bc-hg", 200, 5, seed=1)
    rows = [tuple(r) for r in np.vstack([a, b])]
    assert len(set(rows)) == len(rows)
    # replicate i reproducible alone, from the documented rule
    e = estimate(problem, x, "bc-hg", 200, block_rng(1, 3, block_size(200, x.size)))
    np.testing.assert_array_equal(e.gradient, b[3])


def test_check_estimator_seeds_never_overlap() -> None:
    case = suite("quick")[0]
    seen: dict[int, list[int]] = {0: [], 1: []}

    def recorder(run: int) -> Callable:
        def fn(problem: object, x: np.ndarray, budget: int, seed: int) -> np.ndarray:
            assert isinstance(seed, int)
            seen[run].append(seed)
            return case.exact + np.random.default_rng(seed).normal(size=x.size)
        return fn

    case.run(recorder(0), replicates=30, seed=0)
    case.run(recorder(1), replicates=30, seed=1)
    assert len(set(seen[0])) == 30 and not set(seen[0]) & set(seen[1])
    assert seen[0] == [replicate_int_seed(0, i) for i in range(30)]


def test_cli_estimate_streams(tmp_path, capsys) -> None:
    problem, x = _problem()
    path = tmp_path / "p.json"
    save_problem(path, problem, x)
    rows = []
    for seed in (0, 1, 2**32):
        assert main(["estimate", str(path), "--estimator", "bc-hg", "--transitions", "100",
                     "--replicates", "3", "--seed", str(seed), "--quiet"]) == 0
        rows += [tuple(r) for r in json.loads(capsys.readouterr().out)["estimates"]]
    assert len(set(rows)) == len(rows)


def test_rule_is_named() -> None:
    assert STREAM_RULE == "cell-block/3"


# --- the cell-block rule (version 3) ---------------------------------------------------
BlockRule = Callable[[int, int, int, tuple], np.random.Generator]
BLOCK = 64


def shared_uniforms(rule: BlockRule, seeds: tuple[int, ...], keys: tuple[tuple, ...],
                    n_replicates: int) -> list[tuple[tuple, tuple]]:
    """Pairs of distinct (seed, key, replicate) whose blocks of ``BLOCK`` uniforms share a
    value (distinct streams share one with probability ~1e-9 here)."""
    seen: dict[float, tuple] = {}
    clashes = []
    for s in seeds:
        for k in keys:
            for i in range(n_replicates):
                for u in rule(s, i, BLOCK, k).random(BLOCK).tolist():
                    if u in seen and seen[u] != (s, k, i):
                        clashes.append((seen[u], (s, k, i)))
                    seen[u] = (s, k, i)
    return clashes


KEYS = ((), (0,), (1,), (0, 0), (7, 7, 100))
IGNORES_BLOCK_INDEX: BlockRule = lambda s, i, B, k: block_rng(s, 0, B, k)  # noqa: E731
OVERLAPPING_BLOCKS: BlockRule = lambda s, i, B, k: block_rng(s, i, B - 1, k)  # noqa: E731


def test_blocks_share_no_uniform_across_replicates_keys_and_seeds() -> None:
    assert shared_uniforms(block_rng, BOUNDARY_SEEDS, KEYS, 4) == []


@pytest.mark.parametrize("rule", [IGNORES_BLOCK_INDEX, OVERLAPPING_BLOCKS],
                         ids=["ignores-index", "overlapping-blocks"])
def test_block_rule_mutants_are_caught_by_the_same_check(rule: BlockRule) -> None:
    clashes = shared_uniforms(rule, (0,), ((),), 4)
    assert clashes and all(a[:2] == b[:2] for a, b in clashes)  # within one cell


def test_a_cell_is_one_call_and_each_replicate_its_block_alone() -> None:
    U = cell_uniforms(5, 6, 10, (3, 4))
    for i in range(6):
        np.testing.assert_array_equal(block_rng(5, i, 10, (3, 4)).random(10), U[i])
    np.testing.assert_array_equal(cell_uniforms(5, 2, 10, (3, 4), first=4), U[4:])


def test_cell_keys_are_prefix_free_and_tagged() -> None:
    """``(BATCH, len(key), *key)``: a cell is never a plain replicate stream or another
    cell whose key is a prefix of its own."""
    seqs = {tuple(cell_sequence(0, k).spawn_key) for k in KEYS}
    assert len(seqs) == len(KEYS)
    assert tuple(cell_sequence(0, ()).spawn_key) == (4, 0)
    plain = {tuple(replicate_sequence(0, i).spawn_key) for i in range(8)}
    assert not seqs & plain


@pytest.mark.parametrize("bad, field", [
    (dict(seed=0, replicate=0, block=0), "block"),
    (dict(seed=0, replicate=-1, block=3), "replicate"),
    (dict(seed=0, replicate=0, block=3, key=(2**32,)), "key[0]"),
])
def test_bad_block_coordinates_name_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field.replace('[', '.').replace(']', '.')} ="):
        block_rng(**bad)


def test_spawn_tags_are_distinct_so_no_two_uses_share_a_stream():
    """Each use of a run's seed heads its spawn key with its own tag: a purpose key
    ``(tag, *index)`` can equal a cell key ``(BATCH, len(key), *key)`` only if the tags
    are equal. (A FourRooms critic table drawn with the cell tag would have been the
    stream of every plain ``replicates(seed=s)`` call.)"""
    from exact_bilevel.core import streams

    assert len(set(streams.SPAWN_TAGS)) == len(streams.SPAWN_TAGS)
    tags = {v for k, v in vars(streams).items() if k.isupper() and isinstance(v, int)
            and not k.startswith("_") and k not in {"MAX_SEED"} and v < 100}
    assert tags <= set(streams.SPAWN_TAGS)
    assert (streams.purpose_sequence(0, streams.CRITIC_INIT, 0).spawn_key
            != streams.cell_sequence(0).spawn_key)
