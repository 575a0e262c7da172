"""The import graph: no cycle, and the wings import one way (the zoo never the toolkit)."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

#: The shape of the code is checked after every change (in the quick suite, whatever
#: the checks measure).
pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dagnet_layers"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or a package of dagnet_layers."""
    base = PACKAGE.parent / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _statements(tree: ast.Module, top_level_only: bool) -> list[ast.AST]:
    """Every node, or (top level) those that run at import time: all but the bodies of
    functions and lambdas (class bodies, ``if``/``try``/``with`` blocks do run)."""
    if not top_level_only:
        return list(ast.walk(tree))
    found: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return found


@functools.cache
def _imports(path: Path, top_level_only: bool, module: str = "") -> frozenset[str]:
    """dagnet_layers modules imported by ``path`` (top level: what runs at import time),
    relative imports resolved against ``module`` (its dotted name). Not seen:
    ``importlib.import_module`` with a computed name (commands/entry.py's one use)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _statements(tree, top_level_only):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:  # from . import x, from ..data import y
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*parts, *([node.module] if node.module else [])])
            if not target.startswith("dagnet_layers"):
                continue
            found.add(target)
            for alias in node.names:  # "from dagnet_layers import cli" imports a module
                if _is_module(f"{target}.{alias.name}"):
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dagnet_layers")}
    return frozenset(found)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: set(_imports(path, True, name)) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle in ``graph`` (module -> modules it imports), or ``None``.

    A module importing its own package (``a.b`` -> ``a``) is no edge: Python loads
    the package's ``__init__`` first anyway."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph or dep == node or node.startswith(dep + "."):
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)) is not None:
            return found
    return None


def wing_of(module: str) -> str:
    """``dagnet_layers.commands.train`` -> ``dagnet_layers.commands``."""
    return ".".join(module.split(".")[:2])


def in_wing_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every import, lazy ones included, between modules of the same wing."""
    graph = {}
    for name, path in modules.items():
        deps = _imports(path, False, name)
        graph[name] = {d for d in deps if d in modules and wing_of(d) == wing_of(name)}
    return graph


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_inside_a_wing_lazy_imports_included() -> None:
    """A lazy import (inside a function) that closes a cycle works at run time, but a
    maintainer following one call climbs down the wing and back up: none is allowed."""
    cycle = find_cycle(in_wing_graph(MODULES))
    assert cycle is None, "import cycle inside a wing: " + " -> ".join(cycle or [])


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    """The check itself: a lazy import back from the module it imports is a cycle."""
    wing = tmp_path / "dagnet_layers" / "commands"
    wing.mkdir(parents=True)
    (wing / "args.py").write_text("def entry():\n    from dagnet_layers.commands import train\n")
    (wing / "train.py").write_text("from dagnet_layers.commands.args import entry\n")
    planted = {"dagnet_layers.commands.args": wing / "args.py",
               "dagnet_layers.commands.train": wing / "train.py"}
    assert find_cycle({k: set(_imports(v, True, k)) for k, v in planted.items()}) is None
    assert find_cycle(in_wing_graph(planted)) == [
        "dagnet_layers.commands.args", "dagnet_layers.commands.train",
        "dagnet_layers.commands.args"]


def test_planted_cycles_through_a_relative_or_a_package_import_are_found(
    tmp_path: Path,
) -> None:
    """``from . import x`` inside a function, and ``from package import subpackage``."""
    def plant(files: dict[str, str]) -> dict[str, Path]:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))  # new files: _imports caches
        folder.mkdir()
        planted = {}
        for name, text in files.items():
            path = folder / (name.replace(".", "_") + ".py")
            path.write_text(text)
            planted[name] = path
        return planted

    records, pixels = "dagnet_layers.emotic.data.records", "dagnet_layers.emotic.data.pixels"
    relative = plant({records: "def f():\n    from . import pixels\n",
                      pixels: f"from {records} import f\n"})
    cycle = find_cycle(in_wing_graph(relative))
    assert cycle is not None and set(cycle) == {records, pixels}
    engine = "dagnet_layers.emotic.engine"
    package = plant({records: "def f():\n    from dagnet_layers.emotic import engine\n",
                     engine: f"from {records} import f\n"})
    cycle = find_cycle(in_wing_graph(package))
    assert cycle is not None and set(cycle) == {records, engine}


#: The longest a function in dagnet_layers/ may be, decorators and docstring included.
MAX_FUNCTION_LINES = 120
#: Functions allowed to be longer, each with its reason: none today. A new entry needs
#: a reason a reviewer accepts ("module: function name": "why").
LONG_FUNCTION_EXCEPTIONS: dict[str, str] = {}


def long_functions(paths: dict[str, Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``module: name (N lines)`` for every function or method longer than ``limit``."""
    found = []
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > limit and f"{module}: {node.name}" not in LONG_FUNCTION_EXCEPTIONS:
                    found.append(f"{module}: {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_120_lines() -> None:
    """A long function does several jobs; split it where one ends (see issue 35)."""
    assert not long_functions(MODULES), long_functions(MODULES)


def test_a_planted_121_line_function_is_found(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(119))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n    return x0\n")  # 121 lines
    (tmp_path / "ok.py").write_text(f"def ok():\n{body}\n")  # 120 lines
    planted = {"long": tmp_path / "long.py", "ok": tmp_path / "ok.py"}
    assert long_functions(planted) == ["long: long (121 lines)"]


def test_the_linter_holds_complexity() -> None:
    """ruff's mccabe rule is on, at a bound of 15 or lower (pyproject.toml says why)."""
    tomllib = pytest.importorskip("tomllib")
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"] and lint["mccabe"]["max-complexity"] <= 15


def _deps_of(prefix: str, top_level_only: bool = False) -> dict[str, set[str]]:
    return {name: set(_imports(path, top_level_only, name)) for name, path in MODULES.items()
            if name == prefix or name.startswith(prefix + ".")}


SHARED = ("dagnet_layers.errors", "dagnet_layers.storage", "dagnet_layers._deps",
          "dagnet_layers._arrays", "dagnet_layers._version", "dagnet_layers._detectors",
          "dagnet_layers._paths", "dagnet_layers._distributed")
ZOO = ("dagnet_layers.layers", "dagnet_layers.models", "dagnet_layers._timm")
TOOLKIT = ("dagnet_layers.emotic",)


@pytest.mark.parametrize(("wing", "may_import"), [
    # the shared pieces: errors imports nothing, the rest only each other
    ("dagnet_layers.errors", ()),
    ("dagnet_layers.storage", ("dagnet_layers.errors",)),
    ("dagnet_layers.cli", ("dagnet_layers.errors",)),
    # the zoo: never the toolkit, the figures or the programs; layers not even the models
    ("dagnet_layers.layers", ("dagnet_layers.layers", "dagnet_layers.errors")),
    ("dagnet_layers.models", (*ZOO, *SHARED)),
    # the toolkit imports the zoo, never the figures or the programs
    ("dagnet_layers.emotic", (*TOOLKIT, *ZOO, *SHARED, "dagnet_layers.cli")),
    # inside it: data, losses and metrics know nothing of the models
    ("dagnet_layers.emotic.data", ("dagnet_layers.emotic.data", *SHARED, "dagnet_layers.cli")),
    ("dagnet_layers.emotic.losses", ("dagnet_layers.emotic.data", *SHARED)),
    ("dagnet_layers.emotic.metrics", ("dagnet_layers.emotic.data", *SHARED)),
    ("dagnet_layers.emotic.paper", ("dagnet_layers.emotic.data", *SHARED)),
    # the figures draw what the others compute; only prediction and the programs import them
    ("dagnet_layers.figures", ("dagnet_layers.figures", *TOOLKIT, *ZOO, *SHARED)),
    ("dagnet_layers.inference", ("dagnet_layers.inference", "dagnet_layers.figures", *TOOLKIT,
                                 *ZOO, *SHARED)),
])
def test_each_wing_imports_only_what_it_may(wing: str, may_import: tuple[str, ...]) -> None:
    for module, deps in _deps_of(wing).items():
        bad = sorted(d for d in deps if not any(d == a or d.startswith(a + ".")
                                               for a in may_import))
        assert not bad, f"{module} imports {bad}; {wing} may only import {list(may_import)}"


def test_only_prediction_and_the_programs_import_the_figures() -> None:
    above = ("dagnet_layers.figures", "dagnet_layers.inference", "dagnet_layers.commands")
    for module, deps in _deps_of("dagnet_layers").items():  # at import and at call time
        if module.startswith(above):
            continue
        assert not [d for d in deps if d.startswith(above[:2])], module
    for module, deps in _deps_of("dagnet_layers").items():  # nothing imports the programs
        if not module.startswith("dagnet_layers.commands"):
            assert not [d for d in deps if d.startswith("dagnet_layers.commands")], module


def test_the_data_wing_flows_one_way() -> None:
    order = ["categories", "records", "pixels", "preprocessed", "cache", "dataset", "jpeg",
             "sources"]
    rank = {f"dagnet_layers.emotic.data.{m}": i for i, m in enumerate(order)}
    for module, deps in _deps_of("dagnet_layers.emotic.data").items():
        if module not in rank:
            continue
        for dep in deps:
            if dep in rank:
                assert rank[dep] < rank[module], f"{module} imports {dep}: against the flow"


@pytest.mark.slow
def test_every_module_imports_alone() -> None:
    """Each module first in a fresh interpreter: an import cycle or a hidden order
    dependence fails here even where the package's __init__ hides it."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def first_import(name: str) -> tuple[str, str] | None:
        r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                           text=True, cwd=ROOT, timeout=300)  # fmt: skip
        return None if r.returncode == 0 else (name, r.stderr.strip().splitlines()[-1])

    names = sorted(n for n in MODULES if not n.endswith("__main__"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        bad = [b for b in pool.map(first_import, names) if b is not None]
    assert not bad, bad
