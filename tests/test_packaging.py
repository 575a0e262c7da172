"""Lean installs: what each import pulls in, and what a missing extra says.

Each check runs in a fresh interpreter, so that modules other tests imported do
not hide an import that the layers alone would trigger.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of the quick default run; --full runs it

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("timm", "torchvision", "scipy", "sklearn", "matplotlib")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip


@pytest.mark.parametrize("module", ["dagnet_layers", "dagnet_layers.layers",
                                    "dagnet_layers.errors"])  # fmt: skip
def test_the_layers_import_alone(module: str) -> None:
    result = _python(f"""
        import sys
        import {module}
        print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"


def test_models_import_timm_but_no_extra() -> None:
    result = _python(f"""
        import sys
        from dagnet_layers import build_dagnet
        build_dagnet("test_resnet", "test_resnet", partition=2)
        print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    loaded = eval(result.stdout.strip())
    assert "timm" in loaded and not {"scipy", "sklearn", "matplotlib"} & set(loaded)


@pytest.mark.parametrize(
    ("blocked", "call", "extra"),
    [
        ("scipy", "from dagnet_layers.emotic.data import read_emotic_annotations\n"
                  "read_emotic_annotations(d, 'val')", "emotic"),
        ("scipy", "from dagnet_layers.emotic.data import make_synthetic_emotic\n"
                  "make_synthetic_emotic(d, n_images=12)", "emotic"),
        ("sklearn", "import numpy as np\nfrom dagnet_layers.emotic.metrics import "
                    "precision_recall_thresholds\n"
                    "precision_recall_thresholds(np.eye(3), np.eye(3))", "emotic"),
        ("matplotlib", "from dagnet_layers.figures import plot_ap_comparison\n"
                       "plot_ap_comparison({'Peace': 0.5}, reference=None)", "viz"),
        ("av", "from dagnet_layers.inference import VideoWriter\n"
               "VideoWriter(d + '/clip.mp4', fps=5)", "video"),
    ],
)
def test_a_missing_extra_names_its_install_line(blocked: str, call: str, extra: str,
                                                tmp_path: Path) -> None:  # fmt: skip
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "Annotations.mat").write_bytes(b"x")
    code = (
        "import sys\n"
        f"for name in [m for m in list(sys.modules) if m.split('.')[0] == {blocked!r}]:\n"
        "    del sys.modules[name]\n"
        f"sys.modules[{blocked!r}] = None  # what an uninstalled package looks like\n"
        f"d = {str(tmp_path)!r}\n"
        "from dagnet_layers.errors import MissingDependencyError\n"
        "try:\n" + textwrap.indent(call, "    ") + "\n"
        "except MissingDependencyError as err:\n"
        "    print('MISSING', err)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MISSING"), result.stdout
    assert f"pip install 'dagnet-layers[{extra}]'" in result.stdout


def test_extras_are_what_the_code_imports() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"])
    extras = meta["optional-dependencies"]
    for name in ("scipy", "scikit-learn", "matplotlib"):
        assert name not in core, f"{name} is a core dependency; it belongs in an extra"
    assert any("scipy" in d for d in extras["emotic"])
    assert any("scikit-learn" in d for d in extras["emotic"])
    assert any("matplotlib" in d for d in extras["viz"])
    assert "dagnet-layers[emotic,viz,onnx,video,demo,pyg]" in extras["all"]
    assert "torch-geometric" not in core and any("torch-geometric" in d for d in extras["pyg"])
    assert any(d.startswith("av") for d in extras["video"])
    assert any("onnxruntime" in d for d in extras["onnx"])
    assert "dagnet-layers[all]" in extras["test"]


def test_sdist_holds_everything_its_tests_read(tmp_path: Path) -> None:
    """Every tracked file of tests/, examples/, benchmarks/ and docs/ (sources, not build
    output), conftest.py and CHANGELOG.md are in the sdist, so its tests run."""
    import shutil
    import tarfile

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the tracked files")
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT,
                             check=True).stdout.split()  # fmt: skip
    wanted = {p for p in tracked
              if p.split("/")[0] in ("tests", "examples", "benchmarks", "docs", "dagnet_layers")
              and not p.startswith(("docs/_build/", "docs/_generated/"))}
    wanted |= {"conftest.py", "CHANGELOG.md", "README.md", "LICENSE", "pyproject.toml"}
    # Built from a copy of the tracked files: no egg-info of an earlier build can
    # smuggle in files that MANIFEST.in leaves out.
    src = tmp_path / "src"
    for rel in tracked:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    result = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta; import sys; "
         "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path)],
        capture_output=True, text=True, cwd=src, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    archive = tmp_path / result.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = sorted(wanted - names)
    assert not missing, f"the sdist lacks {missing[:10]}"


def _requirement_name(requirement: str) -> str:
    import re

    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_imported_package_is_declared() -> None:
    """Each third-party package the library imports is a core dependency or in an extra,
    found through importlib.metadata's own module -> distribution map."""
    import ast
    import importlib.metadata as md

    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r) for r in meta["dependencies"]}
    for requirements in meta["optional-dependencies"].values():
        declared |= {_requirement_name(r) for r in requirements}
    dists = md.packages_distributions()
    imported: dict[str, str] = {}
    for path in sorted((ROOT / "dagnet_layers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     and node.module else [])  # fmt: skip
            for name in names:
                imported.setdefault(name.split(".")[0], path.name)
    missing = {}
    for top, where in imported.items():
        if top in sys.stdlib_module_names or top == "dagnet_layers" or top not in dists:
            continue
        names = {d.lower().replace("_", "-") for d in dists[top]}
        if not names & declared and top not in ("torch", "typing_extensions"):
            missing[top] = (sorted(names), where)
    assert not missing, f"imported but declared nowhere in pyproject.toml: {missing}"


def test_setup_cfg_holds_only_tool_settings_equal_to_ruffs() -> None:
    import configparser

    tomllib = pytest.importorskip("tomllib")
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert set(cfg.sections()) == {"flake8", "pycodestyle"}  # no metadata to drift
    for section in ("flake8", "pycodestyle"):
        assert cfg.getint(section, "max-line-length") == ruff["line-length"]
        excluded = {p.strip() for p in cfg.get(section, "exclude").split(",")}
        assert set(ruff["extend-exclude"]) <= excluded, section
    assert "C90" in ruff["lint"]["select"]
    assert cfg.getint("flake8", "max-complexity") == ruff["lint"]["mccabe"]["max-complexity"]


def test_type_checkers_see_every_lazy_name_from_its_module() -> None:
    """The ``if TYPE_CHECKING:`` imports in dagnet_layers/__init__.py are the lazy table."""
    import ast

    import dagnet_layers

    tree = ast.parse((ROOT / "dagnet_layers" / "__init__.py").read_text())
    block = next(node for node in ast.walk(tree) if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "TYPE_CHECKING")  # fmt: skip
    seen = {alias.name: stmt.module for stmt in block.body if isinstance(stmt, ast.ImportFrom)
            for alias in stmt.names}  # fmt: skip
    assert seen == dagnet_layers._LAZY
    assert set(seen) | {"__version__"} == set(dagnet_layers.__all__)


def test_mypy_sees_real_types_at_the_top_level(tmp_path: Path) -> None:
    """What the issue found: ``from dagnet_layers import create_model`` was ``Any``."""
    pytest.importorskip("mypy")
    (tmp_path / "user.py").write_text(textwrap.dedent("""
        from dagnet_layers import DAGNetConfig, create_model, grid_adjacency
        reveal_type(create_model("test_dagnet"))
        reveal_type(grid_adjacency(4))
        reveal_type(DAGNetConfig().partition)
    """))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
         "--config-file", str(ROOT / "pyproject.toml"), str(tmp_path / "user.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    revealed = re.findall(r'Revealed type is "([^"]+)"', result.stdout)
    assert revealed == ["dagnet_layers.models.dagnet.DAGNet", "torch._tensor.Tensor",
                        "int"], result.stdout[-3000:]
