"""Test-suite plumbing: the doctest namespace, and the quick default run.

``python -m pytest`` leaves out the tests marked ``slow`` (the quick suite a
contributor runs after every change); ``--full`` runs everything (what CI
runs); an explicit ``-m`` expression chooses by itself (``-m slow``, ``-m cuda``).
"""

import pytest
import torch

_LEFT_OUT = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", default=False,
                     help="also run the tests marked slow (CI runs the full suite)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full") or config.option.markexpr:
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
        config.stash[_LEFT_OUT] = len(slow)



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
