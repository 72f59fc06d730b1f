"""Sphinx configuration of the exact_bilevel documentation site.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (warnings are errors; CI
runs it). The course chapters are the committed, executed notebooks of
``notebooks/`` (copied into ``docs/course/`` at build time and rendered by MyST-NB
without re-executing); the CLI reference is generated from the argument parser.
"""

from __future__ import annotations

import json
import pathlib
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
    "sphinx_copybutton",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "course/README.md", "course/_download"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
math_eqref_format = "({number})"
copybutton_exclude = ".linenos, .gp, .go"
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


#: The math sections each chapter teaches (labels of docs/math.md), shown in the
#: chapter's header cell on the site; math.md links back to the chapters.
CHAPTER_MATH = {
    "01_soft_bellman": ["math-follower"],
    "02_hypergradient": ["math-sensitivities", "math-hypergradient", "math-adjoint"],
    "03_boltzmann_covariance": ["math-hypergradient", "math-sampling", "moments"],
    "04_fourrooms": ["math-hypergradient"],
    "05_check_your_implementation": ["math-checks"],
    "06_estimators": ["math-sampling"],
    "07_markov_games": ["math-games"],
    "08_continuous_states": ["math-lqr"],
}


def _header_cell(name: str) -> dict:
    """A markdown cell put first in the site's copy of a chapter (never in the committed
    notebook): the notebook download and the math sections behind the chapter."""
    refs = ", ".join(f"{{ref}}`{label}`" for label in CHAPTER_MATH.get(name, []))
    text = (f"{{download}}`Download this notebook <_download/{name}.ipynb>` (executed, with its "
            f"outputs; run it with `jupyter lab {name}.ipynb` after "
            "`pip install -e \".[notebooks]\"`)")
    if refs:
        text += f". Math reference: {refs}. API: {{doc}}`../api/index`."
    return {"cell_type": "markdown", "id": f"{name}-site-header", "metadata": {},
            "source": text}


def _copy_course() -> None:
    """The executed notebooks of ``notebooks/`` become ``docs/course/*.ipynb``: the site
    copy (rendered) with a header cell, the untouched file beside it (``_download/``,
    the download link's target is the committed notebook itself)."""
    dest = HERE / "course"
    (dest / "_download").mkdir(parents=True, exist_ok=True)
    for old in [*dest.glob("*.ipynb"), *(dest / "_download").glob("*.ipynb")]:
        old.unlink()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        (dest / "_download" / nb.name).write_bytes(nb.read_bytes())
        data = json.loads(nb.read_text())
        data["cells"].insert(1, _header_cell(nb.stem))
        (dest / nb.name).write_text(json.dumps(data, indent=1))


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
