"""The Python examples in the README and docs/ run as written."""

import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples():
    for page in PAGES:
        for n, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
            yield pytest.param(match.group(1), id=f"{page.name}#{n}")


@pytest.mark.parametrize("source", list(_examples()))
def test_documented_example_runs(source, tmp_path, monkeypatch):
    # the examples make their folders with tempfile: inside this test's own, which pytest removes
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(source, "<docs example>", "exec"), namespace)
    # an example that defines a property test is run too
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            value()


def test_every_page_is_found():
    assert any(p.name == "autograd.md" for p in PAGES)
