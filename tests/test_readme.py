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
