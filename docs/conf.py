"""Sphinx configuration of the exact_bilevel documentation site.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (warnings are errors; CI
runs it). The course chapters are the committed, executed notebooks of
``notebooks/`` (copied into ``docs/course/`` at build time and rendered by MyST-NB
without re-executing); the CLI reference is generated from the argument parser.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import exact_bilevel  # noqa: E402

project = "exact_bilevel"
author = "the exact_bilevel developers"
copyright = "2026, the exact_bilevel developers"
release = exact_bilevel.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "course/README.md"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"            # the committed notebooks carry their outputs
nb_merge_streams = True
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
html_theme = "alabaster"
html_title = f"exact_bilevel {release}"
html_static_path: list[str] = []
suppress_warnings = ["mystnb.unknown_mime_type"]


def _copy_course() -> None:
    """The executed notebooks of ``notebooks/`` become ``docs/course/*.ipynb``."""
    dest = HERE / "course"
    dest.mkdir(exist_ok=True)
    for old in dest.glob("*.ipynb"):
        old.unlink()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copyfile(nb, dest / nb.name)


def _cli_reference() -> None:
    """``docs/_generated/cli.md``: the ``--help`` of every subcommand."""
    from exact_bilevel.cli import build_parser

    parser = build_parser()
    parser.prog = "exact-bilevel"
    out = ["# Command-line reference", "",
           "Generated from the argument parser at build time (`exact-bilevel COMMAND --help`).",
           "", "```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        out += [f"## `exact-bilevel {name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    gen = HERE / "_generated"
    gen.mkdir(exist_ok=True)
    text = "\n".join(out)
    path = gen / "cli.md"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


_copy_course()
_cli_reference()
