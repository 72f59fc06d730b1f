r"""Problem, golden-vector and Markov-game files (public entry point).

The implementation — the ``exact-bilevel/1`` problem format, ``exact-bilevel-game/1``,
golden-vector files, the bounded and budgeted JSON reader, atomic writing, the JSON
Schemas — lives in :mod:`exact_bilevel.formats.files`, whose docstring documents
the formats; this module re-exports its public API.
"""

from .formats.files import (
    FORMAT,
    GAME_FORMAT,
    GOLDEN_FORMAT,
    LQR_FORMAT,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    PARSE_BYTES_PER_NUMBER,
    game_from_dict,
    game_to_dict,
    load_any,
    load_problem,
    lqr_from_dict,
    lqr_to_dict,
    problem_from_dict,
    problem_from_json,
    problem_to_dict,
    read_json,
    save_lqr,
    save_problem,
    schema,
)

__all__ = [
    "FORMAT",
    "GAME_FORMAT",
    "GOLDEN_FORMAT",
    "LQR_FORMAT",
    "MAX_ENTRIES",
    "MAX_FILE_BYTES",
    "PARSE_BYTES_PER_NUMBER",
    "game_from_dict",
    "game_to_dict",
    "load_any",
    "load_problem",
    "lqr_from_dict",
    "lqr_to_dict",
    "problem_from_dict",
    "problem_from_json",
    "problem_to_dict",
    "read_json",
    "save_lqr",
    "save_problem",
    "schema",
]
