"""Write the course chapters as notebooks from their cell sources and execute them.

The cell sources live in ``notebooks/chapters/chNN_*.py`` (one module per chapter,
each defining ``NAME`` and ``CELLS``); the ``.ipynb`` files are generated (edit the
chapter modules, not the notebooks) and committed with their outputs, so they read
well on a code-hosting site and the documentation site (``docs/``) renders them
without re-executing. The test suite re-executes them (``tests/test_notebooks.py``)
and ``ruff check`` lints their code cells.
Run: ``python notebooks/build_notebooks.py [--no-execute] [NAME ...]``.

**Cell tags.** A code cell whose first line is the comment ``# cell-tags: TAG[, TAG]``
gets those tags in its metadata (the line stays in the source, so the committed
notebook's sources are the chapter's, as ``tests/test_notebooks.py`` checks). The site
(MyST-NB) honours
``hide-input`` (the code collapsed behind a "show" toggle, its output shown: used for
exercise solutions, which the test suite still executes), ``hide-output``,
``hide-cell`` and ``remove-input``.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}
for _path in sorted((HERE / "chapters").glob("ch[0-9][0-9]_*.py")):
    _mod = importlib.import_module(f"chapters.{_path.stem}")
    NOTEBOOKS[_mod.NAME] = _mod.CELLS


TAG_PREFIX = "# cell-tags:"


def _cell(kind: str, src: str) -> nbformat.NotebookNode:
    """One notebook cell; a code cell's leading ``# cell-tags:`` line sets its tags."""
    first = src.partition("\n")[0]
    tags = ([t.strip() for t in first[len(TAG_PREFIX):].split(",") if t.strip()]
            if kind != "md" and first.startswith(TAG_PREFIX) else [])
    cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
    if tags:
        cell.metadata["tags"] = tags
    return cell


def build(names: list[str] | None = None, execute: bool = True) -> None:
    for name, cells in NOTEBOOKS.items():
        if names and name not in names:
            continue
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [_cell(*spec) for spec in cells]
        for i, cell in enumerate(nb.cells):
            cell.id = f"{name}-{i}"          # stable ids: rebuilding gives the same file
        if execute:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print("wrote", name, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="chapters to build (default: all)")
    ap.add_argument("--no-execute", action="store_true")
    args = ap.parse_args()
    build(args.names, not args.no_execute)
