"""The course chapters execute top to bottom from a clean kernel, the committed copies
are the output of ``notebooks/build_notebooks.py`` (same cell sources), and each
chapter is a chapter: enough prose, at least one figure, a summary. The outputs show
what the prose says: no ``nan``, errors or warnings in them, every plotted curve
distinct from the others and every bar series visible, exercise solutions collapsed
behind an empty cell for the student, and the numbers the prose quotes printed by a
cell."""

import json
import pathlib
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
sys.path.insert(0, str(ROOT))
from build_notebooks import NOTEBOOKS, TAG_PREFIX  # noqa: E402

PLOTS = {"01_soft_bellman": 3, "02_hypergradient": 1, "03_boltzmann_covariance": 5,
         "04_fourrooms": 3, "05_check_your_implementation": 1, "06_estimators": 1,
         "07_markov_games": 1, "08_continuous_states": 3}
#: Chapters with an exercise whose self-check cell asserts against the exact answer.
EXERCISES = {"01_soft_bellman", "02_hypergradient", "03_boltzmann_covariance",
             "06_estimators", "07_markov_games", "08_continuous_states"}
#: Numbers the prose quotes, each of which a cell must print (as a substring).
QUOTED = {"04_fourrooms": ["-0.667413"],
          "07_markov_games": ["0.363", "0.617"],
          "08_continuous_states": ["84%"]}
HIDE = "hide-input"

#: Injected after the setup cell when the test re-executes a chapter: records, at every
#: ``plt.show()``, each axes' lines (y data) and bar series (values).
RECORDER = """\
import json as _json
import matplotlib.pyplot as _plt
_FIGURES = []


def _record_and_show(*args, _show=_plt.show, **kwargs):
    for num in _plt.get_fignums():
        for ax in _plt.figure(num).axes:
            lines = [[float(v) for v in line.get_ydata()] for line in ax.get_lines()]
            lines = [(line.get_label(), ys, list(map(float, line.get_xdata())),
                      line.get_linestyle() in ("None", "none", " ", ""))
                     for line, ys in zip(ax.get_lines(), lines)]
            bars = [(c.get_label(), [float(v) for v in c.datavalues])
                    for c in ax.containers if hasattr(c, "datavalues")]
            _FIGURES.append({"lines": lines, "bars": bars, "ylog": ax.get_yscale() == "log",
                             "title": ax.get_title()})
    return _show(*args, **kwargs)


_plt.show = _record_and_show"""
REPORT = "print('FIGURES=' + _json.dumps(_FIGURES))"


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    return output.get("data", {}).get("text/plain", "")


def _code_outputs(nb):
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs]


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


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_exercise_gives_an_empty_cell_then_a_collapsed_solution(name):
    """The student's cell defines the function with an empty body; the next cell, tagged
    ``hide-input`` (collapsed on the site, still executed), redefines it; a later cell
    checks it with assertions."""
    cells = NOTEBOOKS[name]
    stubs = [i for i, (kind, src) in enumerate(cells)
             if kind == "code" and 'raise NotImplementedError("your code here")' in src]
    assert stubs, f"{name}: no empty exercise cell"
    for i in stubs:
        fn = re.findall(r"^def (\w+)\(", cells[i][1], re.M)[-1]
        kind, solution = cells[i + 1]
        assert kind == "code" and solution.startswith(f"{TAG_PREFIX} {HIDE}"), name
        assert re.search(rf"^def {fn}\(", solution, re.M), f"{name}: solution of {fn}"
        assert "NotImplementedError" not in solution
        assert any(kind == "code" and "assert" in src and f"{fn}(" in src
                   for kind, src in cells[i + 2:]), f"{name}: no check of {fn}"
    nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if HIDE in c.metadata.get("tags", [])]
    assert len(tagged) == len(stubs), "committed notebook lacks the solution tags (rebuild)"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_outputs_are_clean_and_print_the_quoted_numbers(name):
    nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
    outputs = _code_outputs(nb)
    for i, o in outputs:
        assert o.get("output_type") != "error", f"cell {i}: {_text(o)}"
        assert o.get("name") != "stderr", f"cell {i} wrote to stderr: {_text(o)[:300]}"
        text = _text(o)
        assert not re.search(r"\bnan\b", text, re.I), f"cell {i} prints nan: {text[:300]}"
        assert "Warning" not in text and "Traceback" not in text, f"cell {i}: {text[:300]}"
    printed = "\n".join(_text(o) for _, o in outputs)
    for number in QUOTED.get(name, []):
        assert number in "".join(src for kind, src in NOTEBOOKS[name] if kind == "md"), number
        assert number in printed, f"the prose quotes {number} but no cell prints it"


def _curve_problems(figures: list[dict]) -> list[str]:
    """Lines that duplicate another line of the same axes, lines with nothing to draw,
    and bar series whose largest bar is invisible next to the axes' largest. A
    markers-only series may lie on a line: that is how a figure shows agreement."""
    bad = []
    for fig in figures:
        drawn = []
        for label, ys, xs, markers_only in fig["lines"]:
            ok = [y for y in ys if y == y and abs(y) != float("inf")
                  and (y > 0 or not fig["ylog"])]
            if not ok:
                bad.append(f"{fig['title']!r}: line {label!r} has nothing to draw")
            for other_label, other_ys, other_xs, other_markers_only in drawn:
                if markers_only or other_markers_only:
                    continue
                if len(ys) > 1 and xs == other_xs and all(
                        abs(a - b) <= 1e-9 * max(abs(a), abs(b)) for a, b in
                        zip(ys, other_ys, strict=True)):
                    bad.append(f"{fig['title']!r}: lines {label!r} and {other_label!r} "
                               "coincide")
            drawn.append((label, ys, xs, markers_only))
        heights = {label: max(abs(v) for v in values) for label, values in fig["bars"]
                   if values}
        for label, h in heights.items():
            if h < 1e-3 * max(heights.values()):
                bad.append(f"{fig['title']!r}: bar series {label!r} is invisible "
                           f"({h:.1e} against {max(heights.values()):.1e})")
    return bad


def test_curve_checker_catches_coinciding_and_invisible_curves():
    figures = [{"title": "t", "ylog": False, "lines": [("down", [0.1, 0.2], [1, 2], False),
                                                         ("left", [0.1, 0.2], [1, 2], False)],
                "bars": [("direct", [1.0, -1.0]), ("initial", [1e-15, 0.0])]}]
    problems = _curve_problems(figures)
    assert len(problems) == 2 and "coincide" in problems[0] and "invisible" in problems[1]
    figures[0]["lines"][1] = ("left", [0.1, 0.3], [1, 2], False)
    figures[0]["lines"].append(("on the bound", [0.1, 0.2], [1, 2], True))
    figures[0]["bars"][1] = ("initial", [0.03, 0.0])
    assert not _curve_problems(figures)
    figures[0]["lines"].append(("log scale, all <= 0", [0.0, -1.0], [1, 2], False))
    figures[0]["ylog"] = True
    assert _curve_problems(figures) == ["'t': line 'log scale, all <= 0' has nothing to draw"]


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
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(RECORDER))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images == PLOTS[name]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
    report = "".join(_text(o) for o in nb.cells[-1].outputs)
    figures = json.loads(report.split("FIGURES=", 1)[1])
    assert figures, "no figure recorded"
    assert not _curve_problems(figures)
