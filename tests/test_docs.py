"""Every public name has a docstring and a place in the API reference.

"Public" is what a module lists in ``__all__``: ``dagnet_layers`` itself and every
non-private module under it, found with :mod:`pkgutil` (so new modules are covered
as soon as they exist). Classes also need docstrings on their own public methods
and properties. Module-level constants need a ``#:`` comment (or a string literal
right after the assignment) where they are defined, which is what Sphinx renders.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest

import dagnet_layers

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Methods that override a documented framework hook and need no text of their own.
FRAMEWORK_HOOKS = {"extra_repr"}


def _all_modules(include_private: bool = False) -> list[ModuleType]:
    modules = [dagnet_layers]
    for info in pkgutil.walk_packages(dagnet_layers.__path__, prefix="dagnet_layers."):
        parts = info.name.split(".")[1:]
        if not include_private and any(p.startswith("_") for p in parts):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


PUBLIC_MODULES = _all_modules()
EXPORTS = [
    (module.__name__, name)
    for module in PUBLIC_MODULES
    for name in getattr(module, "__all__", ())
]


def _own_doc(obj: object) -> str:
    return (getattr(obj, "__doc__", None) or "").strip()


def _is_generated_class_doc(cls: type, doc: str) -> bool:
    # dataclasses and NamedTuples invent "Name(field, ...)" when none is written
    return doc.startswith(f"{cls.__name__}(")


def _load_gen_pages() -> ModuleType:
    """``docs/_scripts/gen_pages.py``, the script that renders the API pages."""
    sys.path.insert(0, str(DOCS / "_scripts"))
    try:
        return importlib.import_module("gen_pages")
    finally:
        sys.path.remove(str(DOCS / "_scripts"))


def _constant_has_doc(name: str, value: object) -> bool:
    """Whether some module assigning ``name`` (to this very object) documents it.

    Uses the docs build's own reader of ``#:`` comments, so the test fails
    exactly when the rendered page would show no text.
    """
    attr_docs = _load_gen_pages()._attr_docs
    return any(
        getattr(module, name, None) is value and name in attr_docs(module)
        for module in _all_modules(include_private=True)
    )


def test_public_modules_are_found() -> None:
    names = {m.__name__ for m in PUBLIC_MODULES}
    for expected in ("dagnet_layers.layers", "dagnet_layers.models", "dagnet_layers.emotic.losses",
                     "dagnet_layers.emotic.metrics", "dagnet_layers.emotic.paper"):
        assert expected in names


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_public_module_has_docstring_and_all(module: ModuleType) -> None:
    assert _own_doc(module), f"module {module.__name__} has no docstring"
    if hasattr(module, "__path__") or module is dagnet_layers:
        assert isinstance(getattr(module, "__all__", None), list | tuple), (
            f"package {module.__name__} has no explicit __all__"
        )


@pytest.mark.parametrize(("module_name", "name"), EXPORTS, ids=lambda x: str(x))
def test_public_name_is_documented(module_name: str, name: str) -> None:
    module = sys.modules[module_name]
    assert hasattr(module, name), f"{module_name}.__all__ lists {name!r}, which does not exist"
    obj = getattr(module, name)
    where = f"{module_name}.{name}"
    if name.startswith("__") or inspect.ismodule(obj):
        return
    # Python 3.10's isclass takes an alias such as Callable[[int], str] for a class
    if inspect.isclass(obj) and typing.get_origin(obj) is None:
        doc = _own_doc(obj)
        assert doc and not _is_generated_class_doc(obj, doc), f"class {where} has no docstring"
        missing = []
        for attr, member in vars(obj).items():
            if attr.startswith("_") or attr in FRAMEWORK_HOOKS:
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property):
                member = member.fget
            if inspect.isfunction(member) and not _own_doc(member):
                missing.append(attr)
        assert not missing, f"class {where}: public members without a docstring: {missing}"
    elif inspect.isroutine(obj):
        assert _own_doc(obj), f"function {where} has no docstring"
    else:
        assert _constant_has_doc(name, obj), (
            f"constant {where} has no '#:' comment or docstring where it is assigned"
        )


# ----------------------------------------------------------- the API pages
def _api_sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "api").rglob("*.rst")))


def _api_text() -> str:
    """The API pages plus the fragments ``docs/_scripts/gen_pages.py`` writes for them."""
    text = _api_sources()
    gen_pages = _load_gen_pages()
    for short in re.findall(r"/_generated/api_(\w+)\.inc", text):
        if short in gen_pages.GENERATED_API_PAGES:  # api_toplevel.inc only links the names
            text += "\n" + gen_pages.module_members_rst(gen_pages.GENERATED_API_PAGES[short])
    return text


def _documented_names(text: str) -> set[str]:
    names = set()
    for match in re.finditer(r"^\s*\.\. auto(?:class|function|data|exception)::\s+(\S+)", text,
                             flags=re.MULTILINE):
        names.add(match.group(1).rsplit(".", 1)[-1])
    return names


def _automodule_with_members(text: str, module_name: str) -> bool:
    pattern = rf"^\.\. automodule:: {re.escape(module_name)}\s*\n(?:\s+:[^\n]*\n)*?\s+:members:"
    return re.search(pattern, text, flags=re.MULTILINE) is not None


@pytest.mark.skipif(not (DOCS / "conf.py").is_file(), reason="no docs/ in this checkout")
@pytest.mark.parametrize(("module_name", "name"), EXPORTS, ids=lambda x: str(x))
def test_public_name_is_in_api_reference(module_name: str, name: str) -> None:
    """Each exported name has an autodoc directive (written, generated or automodule)."""
    if name == "__version__":
        assert ".. data:: __version__" in _api_sources()
        return
    if module_name == "dagnet_layers":
        # re-exports: documented once, at their sub-package path (see gen_pages)
        owners = [m for m in PUBLIC_MODULES
                  if m is not dagnet_layers and name in getattr(m, "__all__", ())]
        assert owners, f"dagnet_layers.{name} is not exported by any sub-package"
        return
    text = _api_text()
    if _automodule_with_members(text, module_name):
        return
    assert name in _documented_names(text), (
        f"{module_name}.{name} is public but no page of docs/api documents it: add an "
        f"autodoc directive for it"
    )


# ----------------------------------------------------------- the offline link check
def test_link_checker_finds_broken_links_and_cdn_assets(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("check_links",
                                                  DOCS / "_scripts" / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "api").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="api/page.html#there">ok</a> <a href="api/page.html#gone">bad anchor</a>'
        '<a href="missing.html">bad file</a> <a href="https://example.org">external</a>'
        '<script src="https://cdn.example.org/mathjax.js"></script>'
        '<img src="api/pic.png">'
    )
    (tmp_path / "api" / "page.html").write_text('<h1 id="there">x</h1><a href="../index.html">')
    (tmp_path / "api" / "pic.png").write_bytes(b"")
    problems, external = module.check(tmp_path)
    assert len(problems) == 3, problems
    assert any("#gone" in p for p in problems) and any("missing.html" in p for p in problems)
    assert any("from the network" in p for p in problems)
    assert "https://example.org" in external


def test_diagnostic_page_renders_the_committed_report(tmp_path: Path) -> None:
    """The page's tables are the report's cells (``report_tables``), escaped for reST; its
    verdicts and metric checks are the report's; a report that does not say it is
    synthetic is refused."""
    import json

    from dagnet_layers.emotic.diagnostic.report import report_tables

    gen_pages = _load_gen_pages()
    committed = ROOT / "docs" / "results" / "diagnostic" / "report.json"
    text = gen_pages.diagnostic_report_rst(committed, "tables")
    record = json.loads(committed.read_text())
    tables = report_tables(record)
    assert text.count(".. list-table:: SYNTHETIC: ") == len(tables)
    for table in tables:  # every cell of every table is on the page
        for row in table["rows"]:
            for cell in row:
                assert f"- {cell.replace('|', chr(92) + '|')}" in text, cell
    verdicts = gen_pages.diagnostic_report_rst(committed, "verdicts")
    for module, v in record["verdicts"].items():
        assert f"the paper's module is *{v['paper_module']}*" in verdicts, module
    checks = gen_pages.diagnostic_report_rst(committed, "checks")
    assert checks.count("   * - ") == 1 + sum(len(c) for c in record["metric_checks"].values())
    timing = gen_pages.diagnostic_report_rst(committed, "timing")
    assert f"{record['timing']['run_cpu_seconds']:,.0f} CPU-seconds" in timing
    record["synthetic"] = False
    (tmp_path / "r.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="synthetic"):
        gen_pages.diagnostic_report_rst(tmp_path / "r.json")
    assert "No diagnostic report" in gen_pages.diagnostic_report_rst(tmp_path / "none.json")
    with pytest.raises(ValueError, match="unknown part"):
        gen_pages.diagnostic_report_rst(committed, "everything")


def test_readme_and_page_quote_the_committed_diagnostic_report() -> None:
    """The README's numbers and verdicts on the diagnostic benchmark are the report's."""
    import json

    record = json.loads((ROOT / "docs" / "results" / "diagnostic" / "report.json").read_text())
    readme = (ROOT / "README.md").read_text()

    def contrast(module, a, b):
        c = next(c for c in record["contrasts"] if (c["module"], c["a"], c["b"]) == (module, a, b))
        lo, hi = c["ci"]
        return f"{100 * c['mean']:+.1f}", f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"

    def arm(module, name):
        return record["arms"][module][name]

    for module, word in (("lsam", "LSAM"), ("gsam", "GSAM"), ("bam", "BAM")):
        assert f"- {word}: **{record['verdicts'][module]['paper_module']}**" in readme, module
    mean, ci = contrast("lsam", "gcn", "patch_sum")
    assert f"by {mean} points of mAP\n  {ci}" in readme
    assert set(arm("lsam", "gcn_paper_widths")["primary"]["values"]) == {1.0}  # "every seed"
    assert f"adds {contrast('gsam', 'oracle', 'none')[0]} points" in readme
    assert "branch\n  {} {}".format(*contrast("gsam", "gsam", "none")) in readme
    pointing = arm("gsam", "gsam")["secondary"]["pointing among candidates"]["mean"]
    assert f"target in {100 * pointing:.0f}% of the scenes" in readme
    assert f"gets {100 * arm('bam', 'none')['primary']['mean']:.1f}% of the contested" in readme
    assert f"oracle gate {100 * arm('bam', 'oracle')['primary']['mean']:.1f}%" in readme
    timing = record["timing"]
    assert f"took {timing['run_seconds'] / 60:.0f} min in all ({timing['run_cpu_seconds']:,.0f} " \
           "CPU-seconds)" in readme and timing["date"] in readme
    assert f"over {len(record['seeds'])} seeds" in readme


def _gen_pages() -> ModuleType:
    sys.path.insert(0, str(ROOT / "docs" / "_scripts"))
    try:
        return importlib.import_module("gen_pages")
    finally:
        sys.path.pop(0)


def test_hf_inventories_are_what_sphinx_reads(tmp_path: Path) -> None:
    """The inventories we write for timm and huggingface_hub load through Sphinx's own
    reader and give each cited name its doc-builder anchor (the full dotted name)."""
    from sphinx.util.inventory import InventoryFile

    gen = _gen_pages()
    for project, path in gen.write_hf_inventories(tmp_path).items():
        base, names = gen.HF_DOCS[project]
        with open(path, "rb") as f:
            inventory = InventoryFile.load(f, base, lambda b, u: f"{b}/{u}")
        found = {}
        for role, entries in (inventory.data if hasattr(inventory, "data")
                              else inventory).items():  # fmt: skip
            for name, item in entries.items():
                found[name] = (role, item.uri if hasattr(item, "uri") else item[2])
        for name, (role, page) in names.items():
            assert found[name] == (role, f"{base}/{page}#{name}"), name


def test_every_timm_and_hub_name_the_docs_cite_is_linked() -> None:
    """A :func:`timm...` or :class:`huggingface_hub...` reference in a docstring or page
    with no inventory entry would render as plain code, silently."""
    gen = _gen_pages()
    known = {n for _, names in gen.HF_DOCS.values() for n in names}
    pattern = re.compile(r":(?:func|class|meth|data):`~?((?:timm|huggingface_hub)\.[\w.]+)`")
    texts = [p.read_text() for p in (ROOT / "dagnet_layers").rglob("*.py")]
    texts += [p.read_text() for p in (ROOT / "docs").rglob("*.rst") if "_build" not in p.parts]
    cited = {m for text in texts for m in pattern.findall(text)}
    assert cited and cited <= known, sorted(cited - known)


def test_benchmark_pages_have_distinct_titles_in_the_sidebar() -> None:
    """Four model runs on one EPYC shared one title, four identical sidebar entries."""
    gen = _gen_pages()
    text = gen.benchmarks_rst(ROOT, DOCS / "_generated", have_myst=False)
    entries = [line.strip() for line in text.splitlines() if "/_generated/benchmarks/" in line]
    shown = [e.split(" <")[0] if " <" in e else gen._md_title(
        ROOT / "benchmarks" / "results" / f"{e.rsplit('/', 1)[-1]}.md") for e in entries]
    assert len(shown) > 1 and len(set(shown)) == len(shown), shown
