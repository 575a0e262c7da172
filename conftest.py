"""Test-suite plumbing: the doctest namespace, and the quick default run.

``python -m pytest`` leaves out the tests marked ``slow`` and those listed in
``tests/quick_suite_slow.txt`` (measured over 0.03 s by
``docs/_scripts/time_quick_suite.py``, which keeps the quick suite a contributor
runs after every change under 30 s), but never a test marked ``quick`` (the checks to
run after every change, whatever they cost). ``--full`` runs everything (what CI
runs); an explicit ``-m`` expression chooses by itself (``-m slow``, ``-m cuda``); a
test named on the command line (``path::test``) runs whatever the list says.
``DAGNET_QUICK_LIST=off`` ignores the list (how the script measures). A whole-suite
run stops when the list names a test that no longer exists.
"""

import os
from pathlib import Path

import pytest
import torch

_MEASURED_SLOW = Path(__file__).parent / "tests" / "quick_suite_slow.txt"

_LEFT_OUT = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", default=False,
                     help="also run the tests marked slow (CI runs the full suite)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full") or config.option.markexpr:
        return
    measured = _measured_slow(config, items)
    slow = [item for item in items if item.get_closest_marker("slow") is not None
            or (item.nodeid in measured and item.get_closest_marker("quick") is None)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        left_out = {id(item) for item in slow}
        items[:] = [item for item in items if id(item) not in left_out]
        config.stash[_LEFT_OUT] = len(slow)


def _measured_slow(config: pytest.Config, items: list[pytest.Item]) -> set[str]:
    """The listed tests, unless the list is off or the command line names tests."""
    args = config.invocation_params.args
    if (os.environ.get("DAGNET_QUICK_LIST", "on") == "off" or not _MEASURED_SLOW.is_file()
            or any("::" in str(a) for a in args)):
        return set()
    listed = {line.strip() for line in _MEASURED_SLOW.read_text().splitlines()
              if line.strip() and not line.startswith("#")}  # fmt: skip
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:  # the whole suite
        gone = sorted(listed - {item.nodeid for item in items})
        if gone:
            raise pytest.UsageError(
                f"{_MEASURED_SLOW.name} lists {len(gone)} test(s) that do not exist, e.g. "
                f"{gone[0]}; remake it: python docs/_scripts/time_quick_suite.py --update-list")
    return listed


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    left_out = config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"quick suite: {left_out} slow tests left out; `python -m pytest --full` runs them"
        )


@pytest.fixture(autouse=True)
def _private_dagnet_cache(monkeypatch: pytest.MonkeyPatch,
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """Demo data and decoded-image caches of the tests go to a temporary folder, never
    to the user's ~/.cache/dagnet_layers."""
    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path_factory.getbasetemp() / "dagnet_cache"))


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)
