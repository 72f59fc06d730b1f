"""The teaching notebooks execute top to bottom from a clean kernel, and the committed
copies are the output of ``notebooks/build_notebooks.py`` (same cell sources)."""

import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(ROOT))
from build_notebooks import NOTEBOOKS  # noqa: E402

PLOTS = {"01_soft_bellman": 3, "02_hypergradient": 1, "03_boltzmann_covariance": 2,
         "04_fourrooms": 2, "05_check_your_implementation": 0}


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_executes_and_matches_its_source(name):
    path = ROOT / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert [c.source for c in nb.cells] == [src for _, src in NOTEBOOKS[name]], \
        "committed notebook is stale: run python notebooks/build_notebooks.py"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images == PLOTS[name]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
