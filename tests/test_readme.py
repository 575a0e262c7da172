"""The README's Python examples run as written (the ones that need no local files)."""

from __future__ import annotations

import os
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


BASH = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
ROOT = README.parent


def test_the_readmes_test_command_is_what_ci_runs() -> None:
    tests = [b.strip() for b in BASH if "pytest" in b]
    assert len(tests) == 1 and tests[0].endswith("python -m pytest --full")
    assert "python -m pytest --full" in (ROOT / ".ci" / "run").read_text()


def test_the_cpu_install_is_the_gpu_install_with_the_cpu_torch_first() -> None:
    train = [b.strip() for b in BASH if b.strip().endswith("python examples/train_emotic.py")]
    assert len(train) == 2, train
    cpu, gpu = sorted(train, key=len, reverse=True)
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu
    torch_first = ("pip install torch torchvision --index-url "
                   "https://download.pytorch.org/whl/cpu && ")
    assert cpu.replace(torch_first, "") == gpu
    assert cpu.index("whl/cpu") < cpu.index('pip install -e ".[all]"')


def test_what_the_readme_says_of_the_demo_is_what_it_does(monkeypatch) -> None:
    from dagnet_layers.commands.args import (
        DEMO_DEFAULTS,
        DEMO_IMAGES,
        build_train_parser,
        cache_home,
    )

    text = " ".join(README.read_text().split())
    monkeypatch.delenv("DAGNET_CACHE", raising=False)
    assert f"The demo trains `{DEMO_DEFAULTS['model']}`" in text
    size = DEMO_DEFAULTS["image_size"]
    assert f"{size} x {size} pixels" in text
    assert f"for {DEMO_DEFAULTS['epochs']} epochs on {DEMO_IMAGES} generated images" in text
    assert str(cache_home()).replace(str(Path.home()), "~") + "/" in text
    assert f"the run into `{build_train_parser().get_default('output_dir')}/`" in text


def test_the_offline_options_the_readme_names_exist_where_it_says() -> None:
    from dagnet_layers.commands.args import (
        build_demo_parser,
        build_predict_parser,
        build_train_parser,
    )

    def flags(parser) -> set[str]:
        return {s for a in parser._actions for s in a.option_strings}

    text = README.read_text()
    assert "`--body-weights`/`--context-weights FILE`" in text
    assert {"--body-weights", "--context-weights", "--no-pretrained"} <= flags(
        build_train_parser())
    assert {"--detector-weights", "--box", "--boxes-file"} <= flags(build_predict_parser())
    assert "--detector-weights" in flags(build_demo_parser())
    assert "--box" not in flags(build_demo_parser())  # the README offers it to predict only


def test_ci_runs_what_the_readme_says_it_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    text = " ".join(README.read_text().split())
    for step, command in (("mypy", "mypy"), ("twine check", "twine check --strict"),
                          ("builds the wheel and sdist", "python -m build")):  # fmt: skip
        assert step in text and command in ci, step


def test_the_demo_time_the_readme_states_is_the_committed_measurement() -> None:
    import json

    record = json.loads((ROOT / "docs" / "results" / "demo_time.json").read_text())
    (w0, w1), (c0, c1) = record["wall_s"], record["cpu_s"]
    text = " ".join(README.read_text().split())
    assert (f"it took {w0} to {w1} s wall and {round(c0)} to {round(c1)} CPU-seconds "
            f"({len(record['runs'])} runs") in text
    assert f"on {record['date']}" in text



@pytest.mark.skipif(os.environ.get("DAGNET_REMAKING_QUICK_LIST") == "1",
                    reason="the list is being remade; the README follows it")
def test_the_quick_suite_the_readme_describes_is_the_committed_measurement() -> None:
    """The time is measured (docs/_scripts/time_quick_suite.py), the count computed."""
    import json

    record = json.loads((ROOT / "docs" / "results" / "quick_suite_time.json").read_text())
    listed = [line for line in (ROOT / "tests" / "quick_suite_slow.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]  # fmt: skip
    (w0, w1), (c0, c1) = record["wall_s"], record["cpu_s"]
    text = " ".join(README.read_text().split())
    assert f"the {len(listed)} tests listed in `tests/quick_suite_slow.txt`" in text
    assert (f"the quick suite took {w0} to {w1} s wall and {round(c0)} to {round(c1)} "
            f"CPU-seconds ({len(record['runs'])} runs") in text
    assert f"on {record['date']}" in text and record["left_to_full"] == len(listed)
    assert w1 < 30  # the promise of the quick loop
