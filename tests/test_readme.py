"""The README's worked example runs as documented: the correct toy estimator
passes ``assert_unbiased`` and the subtly wrong one is rejected (alpha = 0.01)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- readme-example: check-estimator -->\n```python\n(.*?)```", text, re.S)
    assert m, "README example block not found"
    return m.group(1)


def test_readme_example_passes_then_rejects():
    code = _example().rstrip().splitlines()
    *body, last = code
    assert "bug=True" in last and "AssertionError" in last
    namespace: dict = {}
    exec("\n".join(body), namespace)  # the correct estimator's assertion must pass
    with pytest.raises(AssertionError, match="REJECT"):
        exec(last, namespace)



def test_every_readme_python_block_runs():
    """Every other ```python block of the README runs as printed, in a fresh namespace
    (the import paths and the calls it documents exist; no block leans on names it
    does not define)."""
    blocks = re.findall(r"(<!-- readme-example: [\w-]+ -->\n)?```python\n(.*?)```",
                        README.read_text(), re.S)
    plain = [code for marker, code in blocks if not marker]
    assert len(plain) >= 2
    for code in plain:
        if "bilevel_case" in code:  # a pytest test using the plugin's fixture: run below
            continue
        exec(code, {})
