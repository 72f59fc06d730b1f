"""The course chapters execute top to bottom from a clean kernel, the committed copies
are the output of ``notebooks/build_notebooks.py`` (same cell sources), and each
chapter is a chapter: enough prose, at least one figure, a summary."""

import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(ROOT))
from build_notebooks import NOTEBOOKS  # noqa: E402

PLOTS = {"01_soft_bellman": 3, "02_hypergradient": 1, "03_boltzmann_covariance": 3,
         "04_fourrooms": 3, "05_check_your_implementation": 1, "06_estimators": 1,
         "07_markov_games": 1, "08_continuous_states": 3}
#: Chapters with an exercise whose self-check cell asserts against the exact answer.
EXERCISES = {"01_soft_bellman", "02_hypergradient", "03_boltzmann_covariance",
             "06_estimators", "07_markov_games", "08_continuous_states"}


def test_there_are_eight_chapters_with_prose_a_figure_and_a_summary():
    assert sorted(NOTEBOOKS) == sorted(PLOTS)
    for name, cells in NOTEBOOKS.items():
        prose = "".join(src for kind, src in cells if kind == "md")
        assert len(prose) >= 2500, f"{name}: {len(prose)} characters of prose"
        assert "## Summary" in prose, name
        assert PLOTS[name] >= 1
        if name in EXERCISES:
            assert "**Exercise" in prose, name
            assert any(kind == "code" and "assert" in src for kind, src in cells), name


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_executes_and_matches_its_source(name):
    path = ROOT / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert [c.source for c in nb.cells] == [src for _, src in NOTEBOOKS[name]], \
        "committed notebook is stale: run python notebooks/build_notebooks.py"
    committed = sum("image/png" in o.get("data", {}) for c in nb.cells
                    if c.cell_type == "code" for o in c.outputs)
    assert committed == PLOTS[name], "committed notebook lacks its figures (build it executed)"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images == PLOTS[name]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
