"""Cell sources of the course chapters: each module defines ``NAME`` and ``CELLS``
(a list of ``("md" | "code", source)``). ``notebooks/build_notebooks.py`` writes and
executes them; ``docs/`` renders the executed notebooks."""
