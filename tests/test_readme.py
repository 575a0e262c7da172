"""The README's Python examples run as written (the ones that need no local files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
# A block that needs files only the reader has says so with this marker.
NEEDS_FILES = ("# needs your files",)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # what a block writes stays in the test's folder
    code = BLOCKS[index]
    if any(marker in code for marker in NEEDS_FILES):
        pytest.skip("needs a weight file of the reader's")
    namespace: dict = {}
    exec(compile(code, f"README.md block {index}", "exec"), namespace)
    if "out" in namespace and hasattr(namespace["out"], "logits"):
        assert tuple(namespace["out"].logits.shape) == (2, 26)
        assert tuple(namespace["out"].attention_map.shape) == (2, 1, 14, 14)
        assert tuple(namespace["out"].adjacency.shape) == (16, 16)
