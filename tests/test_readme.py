"""The README's examples run as documented: the exact hypergradient agrees with
Richardson differences, the unbiased estimator passes ``assert_unbiased`` and the biased
one (the direct term only) is rejected (alpha = 0.01); every other Python block runs, and
the README stays a newcomer's page (under 200 lines)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- readme-example: quick-start -->\n```python\n(.*?)```", text, re.S)
    assert m, "README example block not found"
    return m.group(1)


def test_readme_example_passes_then_rejects():
    code = _example().rstrip().splitlines()
    *body, last = code
    assert "wrong" in last and "AssertionError" in last
    namespace: dict = {}
    exec("\n".join(body), namespace)  # the exact check and the unbiased estimator pass
    with pytest.raises(AssertionError, match="REJECT"):
        exec(last, namespace)


def test_every_readme_python_block_runs():
    """Every other ```python block of the README runs as printed, after the example
    (whose imports it continues) and with the battery's verdicts all passing."""
    blocks = re.findall(r"(<!-- readme-example: [\w-]+ -->\n)?```python\n(.*?)```",
                        README.read_text(), re.S)
    plain = [code for marker, code in blocks if not marker]
    assert len(plain) >= 1
    namespace: dict = {}
    exec(_example().rstrip().rsplit("\n", 1)[0], namespace)
    for code in plain:
        exec(code, namespace)
    assert namespace["result"].passed


def test_readme_is_a_newcomers_page():
    lines = README.read_text().splitlines()
    assert len(lines) < 200, len(lines)
