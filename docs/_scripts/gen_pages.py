"""Build-time generators of the documentation: tables, API listings, includes, figures.

Called from ``docs/conf.py`` each time Sphinx starts. Everything lands in
``docs/_generated`` (git-ignored) as ``.inc`` fragments that the hand-written
pages ``.. include::``. Numbers come from :mod:`dagnet_layers.emotic.paper` and from
result JSON files, never retyped; API listings come from each module's
``__all__``, so modules that are still being written fill in as they land.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import pkgutil
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import dagnet_layers

#: The public modules whose ``__all__`` the API reference covers, in page order.
PUBLIC_MODULES = (
    "dagnet_layers.layers",
    "dagnet_layers.models",
    "dagnet_layers.emotic.data",
    "dagnet_layers.emotic.losses",
    "dagnet_layers.emotic.metrics",
    "dagnet_layers.emotic.engine",
    "dagnet_layers.emotic.diagnostic",
    "dagnet_layers.storage",
    "dagnet_layers.figures",
    "dagnet_layers.inference",
    "dagnet_layers.emotic.paper",
)

#: ``docs/_generated/api_<short>.inc`` -> the package whose members it documents.
GENERATED_API_PAGES = {
    "data": "dagnet_layers.emotic.data",
    "diagnostic": "dagnet_layers.emotic.diagnostic",
    "engine": "dagnet_layers.emotic.engine",
    "figures": "dagnet_layers.figures",
    "inference": "dagnet_layers.inference",
}


# ----------------------------------------------------------------------- helpers
def have_myst() -> bool:
    """Whether ``myst_parser`` (Markdown includes) is importable."""
    return importlib.util.find_spec("myst_parser") is not None


#: Sphinx-built documentation we link to; each publishes an ``objects.inv``.
SPHINX_DOCS = {
    "python": "https://docs.python.org/3",
    "torch": "https://docs.pytorch.org/docs/stable",
    "torchvision": "https://docs.pytorch.org/vision/stable",
    "numpy": "https://numpy.org/doc/stable",
    "torch_geometric": "https://pytorch-geometric.readthedocs.io/en/latest",
}

#: timm's and huggingface_hub's documentation is built by Hugging Face's doc-builder,
#: which publishes no ``objects.inv``; its anchors are the full dotted name. These are
#: the names our docs cite, by page; :func:`write_hf_inventories` turns them into
#: inventories, so the offline build links them.
HF_DOCS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "timm": ("https://huggingface.co/docs/timm", {
        "timm.create_model": ("py:function", "reference/models"),
        "timm.list_models": ("py:function", "reference/models"),
        "timm.models.register_model": ("py:function", "reference/models"),
        "timm.data.resolve_data_config": ("py:function", "reference/data"),
        "timm.data.create_transform": ("py:function", "reference/data"),
        "timm.optim.create_optimizer_v2": ("py:function", "reference/optimizers"),
    }),
    "huggingface_hub": ("https://huggingface.co/docs/huggingface_hub", {
        "huggingface_hub.snapshot_download": ("py:function", "package_reference/file_download"),
        "huggingface_hub.hf_hub_download": ("py:function", "package_reference/file_download"),
        "huggingface_hub.HfApi": ("py:class", "package_reference/hf_api"),
        "huggingface_hub.ModelCard": ("py:class", "package_reference/cards"),
        "huggingface_hub.ModelCardData": ("py:class", "package_reference/cards"),
        "huggingface_hub.EvalResult": ("py:class", "package_reference/cards"),
    }),
}  # fmt: skip


def write_hf_inventories(out_dir: Path) -> dict[str, Path]:
    """Write a Sphinx inventory (format 2) for each of :data:`HF_DOCS`; returns the files."""
    import zlib

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for project, (_, names) in HF_DOCS.items():
        lines = [f"{name} {role} 1 {page}#{name} -" for name, (role, page) in sorted(names.items())]
        head = ("# Sphinx inventory version 2\n"
                f"# Project: {project}\n# Version: \n"
                "# The remainder of this file is compressed using zlib.\n")  # fmt: skip
        path = out_dir / f"{project}.inv"
        path.write_bytes(head.encode() + zlib.compress(("\n".join(lines) + "\n").encode()))
        files[project] = path
    return files


def intersphinx_mapping(inventory_dir: Path, online: bool,
                        built_dir: Path | None = None) -> dict[str, tuple[str, Any]]:  # fmt: skip
    """Intersphinx targets: Sphinx projects online when asked, else those with a local
    inventory (``<inventory_dir>/<name>.inv``); timm and huggingface_hub always, from
    the inventories :func:`write_hf_inventories` writes into ``built_dir``.
    """
    mapping: dict[str, tuple[str, Any]] = {}
    for name, url in SPHINX_DOCS.items():
        local = inventory_dir / f"{name}.inv"
        if local.is_file():
            mapping[name] = (url, str(local))
        elif online:
            mapping[name] = (url, None)
    if built_dir is not None:
        for name, path in write_hf_inventories(built_dir).items():
            mapping[name] = (HF_DOCS[name][0], str(path))
    return mapping


def import_optional(name: str) -> ModuleType | None:
    """Import ``name`` if it exists; ``None`` when the module is not there (yet)."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def public_submodules(package: ModuleType) -> list[ModuleType]:
    """Non-private submodules of ``package``, in file-name order."""
    if not hasattr(package, "__path__"):
        return []
    mods = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"{package.__name__}.{info.name}"))
    return mods


def _write(path: Path, text: str) -> None:
    """Write only when the content changed, so Sphinx's incremental build stays valid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _directive(module: str, name: str, obj: Any) -> list[str]:
    """The autodoc directive that documents ``obj`` as ``module.name``."""
    if inspect.isclass(obj):
        return [f".. autoclass:: {module}.{name}", "   :members:", ""]
    if callable(obj):
        return [f".. autofunction:: {module}.{name}", ""]
    return [f".. autodata:: {module}.{name}", "   :no-value:", ""]


def api_members_rst(package_name: str) -> str:
    """Autodoc directives for a package's ``__all__``, one section per defining submodule.

    A name re-exported by the package is documented as ``package.name`` (the
    path the rest of the docs cross-reference); a name only in a submodule's
    ``__all__`` (e.g. a CLI ``main``) is documented under the submodule.
    """
    package = import_optional(package_name)
    if package is None:
        return (
            ".. note::\n\n"
            f"   ``{package_name}`` is not part of this build of the package yet; its\n"
            "   reference appears here as soon as the module exists.\n"
        )
    exported = list(getattr(package, "__all__", []))
    placed: set[str] = set()
    lines: list[str] = []
    for sub in public_submodules(package):
        sub_all = list(getattr(sub, "__all__", []))
        if not sub_all:
            continue
        # the module docstring, rendered right below, says what the file is about
        title = f"``{sub.__name__}``"
        lines += [title, "-" * len(title), ""]
        lines += [f".. automodule:: {sub.__name__}", ""]
        for name in sub_all:
            if name in exported:
                if name in placed:
                    lines += [f"See :py:obj:`{package_name}.{name}` above.", ""]
                    continue
                placed.add(name)
                lines += _directive(package_name, name, getattr(package, name))
            else:
                lines += _directive(sub.__name__, name, getattr(sub, name))
    rest = [n for n in exported if n not in placed]
    if rest:
        title = "Other names"
        lines += [title, "-" * len(title), ""]
        for name in rest:
            lines += _directive(package_name, name, getattr(package, name))
    return "\n".join(lines) + "\n"


def module_members_rst(module_name: str) -> str:
    """``automodule`` of a single-file module, or a note while it does not exist."""
    module = import_optional(module_name)
    if module is None:
        return (
            ".. note::\n\n"
            f"   ``{module_name}`` is not part of this build of the package yet; its\n"
            "   reference appears here as soon as the module exists.\n"
        )
    if hasattr(module, "__path__"):
        return api_members_rst(module_name)
    return f".. automodule:: {module_name}\n   :members:\n   :show-inheritance:\n"


def canonical_location(name: str) -> str:
    """Where a top-level ``dagnet_layers`` name is documented (its sub-package path)."""
    for module_name in PUBLIC_MODULES:
        module = import_optional(module_name)
        if module is not None and name in getattr(module, "__all__", ()):
            return f"{module_name}.{name}"
    return f"dagnet_layers.{name}"


def toplevel_table_rst() -> str:
    """A table of ``dagnet_layers.__all__``: each name, where it is documented, its summary."""
    rows = []
    for name in dagnet_layers.__all__:
        if name == "__version__":
            rows.append(("``__version__``", ":py:data:`dagnet_layers.__version__`",
                         "The package version string."))
            continue
        obj = getattr(dagnet_layers, name)
        target = canonical_location(name)
        doc = inspect.getdoc(obj) if (inspect.isclass(obj) or callable(obj)) else None
        if doc is None:
            doc = constant_doc(target) or ""
        summary = doc.strip().split("\n\n")[0].replace("\n", " ") if doc else ""
        rows.append((f"``{name}``", f":py:obj:`~{target}`", summary))
    out = [".. list-table::", "   :header-rows: 1", "   :widths: 22 30 48", "",
           "   * - Name", "     - Documented as", "     - Summary"]
    for name, target, summary in rows:
        out += [f"   * - {name}", f"     - {target}", f"     - {summary}"]
    return "\n".join(out) + "\n"


# -------------------------------------------------------------- constant docs
def _attr_docs(module: ModuleType) -> dict[str, str]:
    """``#:`` comments and string literals following top-level assignments of a module."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        comment: list[str] = []
        j = node.lineno - 2
        while j >= 0 and lines[j].lstrip().startswith("#:"):
            comment.insert(0, lines[j].lstrip()[2:].strip())
            j -= 1
        after = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            text = inspect.cleandoc(after.value.value)
        else:
            text = "\n".join(comment)
        for t in targets:
            if text:
                docs[t] = text
    return docs


def constant_doc(qualified: str) -> str | None:
    """The ``#:`` documentation of a module-level constant, wherever it is defined.

    ``qualified`` may be a re-export (``dagnet_layers.emotic.data.EMOTIC_CATEGORIES``):
    the package and its submodules are searched for the defining assignment.
    """
    module_name, _, name = qualified.rpartition(".")
    module = import_optional(module_name) if module_name else None
    if module is None:
        return None
    candidates = [module, *public_submodules(module)]
    for mod in candidates:
        doc = _attr_docs(mod).get(name)
        if doc:
            return doc
    return None


def constant_docstring(app: Any, what: str, name: str, obj: Any, options: Any,
                       lines: list[str]) -> None:
    """``autodoc-process-docstring``: give re-exported constants their ``#:`` docs.

    autodoc finds ``#:`` comments only in the module a constant is documented
    from; for a re-export it would fall back to the docstring of the value's
    type (``dict``'s, for a dict). Use the defining module's comment instead,
    and never show a builtin type's docstring as a constant's.
    """
    if what not in ("data", "attribute"):
        return
    doc = constant_doc(name)
    if doc:
        lines[:] = [*doc.splitlines(), ""]
        return
    type_doc = inspect.getdoc(type(obj)) or ""
    if type_doc and "\n".join(lines).strip() == type_doc.strip():
        lines[:] = []


def skip_member(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """``autodoc-skip-member``: hide NamedTuple field aliases and ``extra_repr``.

    NamedTuple fields are described by the class's ``Attributes:`` section;
    ``extra_repr`` is a :class:`torch.nn.Module` printing hook.
    """
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and doc.startswith("Alias for field number"):
        return True
    if name == "extra_repr":
        return True
    return None


# ---------------------------------------------------------------- paper tables
def _results(results_dir: Path) -> list[dict[str, Any]]:
    """Result files ``docs/results/*.json`` (EmoticReport.to_dict plus a ``label``)."""
    found = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "per_category_ap" in data and not data.get("demo"):
            data.setdefault("label", path.stem)
            data["_file"] = path.name
            found.append(data)
    return found


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


#: Display names of the Table 2 presets in the synthetic results table.
_PRESET_LABELS = {"baseline": "baseline (two-stream)", "full": "full (DAG-Net)"}


def synthetic_table2_rst(path: Path) -> str:
    """The Table 2 sweep on the synthetic demo set, from ``docs/results/synthetic/table2.json``."""
    if not path.is_file():
        return ".. note::\n\n   No synthetic sweep is committed.\n"
    rows = json.loads(path.read_text(encoding="utf-8"))
    first = rows[0]
    how = (f"{first.get('protocol', '?')} AP, ties {first.get('ties') or 'stable'}, "
           f"score {first.get('score') or 'sigmoid'}, {first.get('n', '?')} test persons")
    out = [
        f".. list-table:: SYNTHETIC demo data, not EMOTIC: test mAP (%) and mean AP by where "
        f"the cue is ({how})",
        "   :header-rows: 1",
        "",
        "   * - preset",
        "     - mAP",
        "     - body cues (11)",
        "     - context cues (13)",
        "     - body + context (2)",
    ]
    for r in rows:
        out.append(f"   * - {_PRESET_LABELS.get(r['preset'], r['preset'])}")
        out.append(f"     - {100 * r['mean_ap']:.2f}")
        out += [f"     - {'—' if r[k] is None else f'{r[k]:.1f}'}"
                for k in ("body", "context", "joint")]
    return "\n".join(out) + "\n"


def _rst_text(cell: str) -> str:
    """A table cell or sentence made safe for reST (``|A|`` would be a substitution)."""
    return cell.replace("|", "\\|").replace("`", "``")


def _list_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    out = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        out.append(f"   * - {_rst_text(row[0])}")
        out += [f"     - {_rst_text(cell)}" for cell in row[1:]]
    return [*out, ""]


def _diagnostic_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("synthetic") is not True:
        raise ValueError(f"{path}: a diagnostic report must say it is synthetic")
    return record


#: Short names of the report's secondary numbers, for the page's substitutions.
DIAGNOSTIC_SLUGS = {
    "weight AUC (reliable vs misleading)": "auc", "mean weight: reliable": "w_reliable",
    "mean weight: misleading": "w_misleading", "mean weight: neutral": "w_neutral",
    "accuracy: misleading": "acc_misleading", "test_iid contested accuracy": "iid",
    "pointing among candidates": "pointing", "target share of candidate mass": "share",
    "map range": "range", "relation accuracy": "relacc", "marker AP (control)": "marker",
    "relation contrast of the graph": "contrast", "test mAP": "map",
}  # fmt: skip


def _signed_points(d: dict[str, Any]) -> str:
    lo, hi = d["ci"] if d.get("ci") else (d["mean"], d["mean"])
    return f"{100 * d['mean']:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def diagnostic_numbers_rst(path: Path) -> str:
    """reST substitutions of the report's numbers, so that the page's prose quotes them.

    ``|bam.oracle|`` is an arm's primary mean in %, ``|bam.oracle.ci|`` its 95% CI,
    ``|bam.oracle.values|`` its value per seed,
    ``|bam.oracle-none|`` a contrast in points with its CI, ``|bam.oracle-none.p|`` its
    Holm-adjusted (primary) or raw (exploratory) p and ``|bam.oracle-none.p_exact|``
    its exact sign-flip p, ``|bam.bam.auc|`` a secondary number
    (:data:`DIAGNOSTIC_SLUGS`) and ``|bam.bam.auc.range|`` its lowest to highest seed,
    ``|gsam.gsam.map_flat|`` a test-time swap, and
    ``|bam.verdict|``, ``|seeds|`` what they say.
    """
    record = _diagnostic_record(path)
    if record is None:
        return ""
    subs: dict[str, str] = {"seeds": str(len(record["seeds"]))}
    percent_like = {"pointing", "share", "iid", "acc_misleading", "relacc", "marker", "map"}
    for module, arms in record["arms"].items():
        for name, row in arms.items():
            p = row["primary"]
            subs[f"{module}.{name}"] = f"{100 * p['mean']:.1f}"
            if p.get("ci"):
                subs[f"{module}.{name}.ci"] = f"[{100 * p['ci'][0]:.1f}, {100 * p['ci'][1]:.1f}]"
            subs[f"{module}.{name}.values"] = ", ".join(
                "n/a" if v is None else f"{100 * v:.1f}" for v in p["values"])
            for label, stats in row["secondary"].items():
                slug = DIAGNOSTIC_SLUGS.get(label)
                if slug is None or stats.get("mean") is None:
                    continue
                def show(value: float, slug: str = slug) -> str:
                    return f"{100 * value:.1f}" if slug in percent_like else f"{value:.2f}"

                subs[f"{module}.{name}.{slug}"] = show(stats["mean"])
                seen = [v for v in stats["values"] if v is not None]
                subs[f"{module}.{name}.{slug}.range"] = f"{show(min(seen))} to {show(max(seen))}"
            for swap, d in row.get("interventions", {}).items():
                subs[f"{module}.{name}.{swap}"] = _signed_points(d)
    for c in record["contrasts"]:
        key = f"{c['module']}.{c['a']}-{c['b']}"
        subs[key] = _signed_points(c)
        p = c.get("p_holm", c.get("p"))
        if p is not None:
            subs[f"{key}.p"] = "< 0.001" if p < 0.001 else f"{p:.3f}"
        if c.get("p_exact") is not None:
            subs[f"{key}.p_exact"] = f"{c['p_exact']:.3f}"
    for module, v in record["verdicts"].items():
        subs[f"{module}.verdict"] = v["paper_module"]
        subs[f"{module}.headroom"] = v["headroom"]
        for name, w in v["variants"].items():
            subs[f"{module}.{name}.verdict"] = w
    return "\n".join(f".. |{k}| replace:: {v}" for k, v in sorted(subs.items())) + "\n"


def diagnostic_report_rst(path: Path, part: str = "tables") -> str:
    """One part of the diagnostic benchmark's report, from the committed ``report.json``.

    ``part`` is ``"settings"`` (what was run), ``"verdicts"`` (one line per module),
    ``"tables"`` (every table of
    :func:`~dagnet_layers.emotic.diagnostic.report.report_tables`, the cells of
    ``report.md``), ``"checks"`` (each metric on an oracle and a null) or
    ``"timing"`` (what the run took, where and when).
    """
    record = _diagnostic_record(path)
    if record is None:
        return ".. note::\n\n   No diagnostic report is committed.\n"
    from dagnet_layers.commands.diagnose import settings_text
    from dagnet_layers.emotic.diagnostic.report import report_tables

    if part == "settings":
        return _rst_text(settings_text(record["settings"], record["seeds"])) + "\n"
    if part == "verdicts":
        titles = {"bam": "BAM", "gsam": "GSAM", "lsam": "LSAM"}
        out = []
        for module, v in record["verdicts"].items():
            variants = "; ".join(f"``{k}``: {w}" for k, w in v["variants"].items())
            note = f" ({v['note']})" if v.get("note") else ""
            out.append(f"- **{titles[module]}**: the paper's module is *{v['paper_module']}*"
                       f"{note}; a perfect module's headroom over the floor is "
                       f"*{v['headroom']}*; beyond the paper, {variants}.")
        return "\n".join(out) + "\n"
    if part == "checks":
        rows = [[module, metric, f"{c['oracle']:.3f}", f"{c['null']:.3f}", f"{c['chance']:.3f}"]
                for module, checks in record["metric_checks"].items()
                for metric, c in checks.items()]
        return "\n".join(_list_table(
            "SYNTHETIC: each metric on an oracle and on a null (first seed's test split)",
            ["set", "metric", "oracle", "null", "chance"], rows))
    if part == "timing":
        t = record["timing"]
        return (f"The {t['runs']} runs (arm x seed) of the committed report took "
                f"{t['run_seconds'] / 60:.0f} min of wall time in all "
                f"({t['run_cpu_seconds']:,.0f} CPU-seconds; making the sets and the figures "
                f"is not counted) on {t['cores']} cores of an {_rst_text(t['machine'])} "
                f"({t['device']}, {t['torch_threads']} torch threads); the report was written "
                f"on {t['date']}.\n")
    if part != "tables":
        raise ValueError(f"diagnostic_report_rst: unknown part {part!r}")
    out: list[str] = []
    for table in report_tables(record):
        out += _list_table(f"SYNTHETIC: {table['title']}", table["header"], table["rows"])
        if table["text"]:
            out += [_rst_text(table["text"]), ""]
    return "\n".join(out) + "\n"


def backbone_support_rst(path: Path) -> str:
    """The timm families checked by ``tests/test_backbones.py``, from ``backbone_support.json``."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    out = [
        f".. list-table:: {len(rows)} timm families, each as the body and as the context "
        "backbone (``pretrained=False``, one training step at the given size)",
        "   :header-rows: 1",
        "",
        "   * - family",
        "     - timm model (test size)",
        "     - body width",
        "     - GSAM after stage",
        "     - GSAM block",
    ]
    for r in rows:
        extra = ", ".join(f"{k}={v}" for k, v in r["kwargs"].items())
        model = f"``{r['model']}``" + (f" ({extra})" if extra else "") + f", {r['size']} px"
        out += [f"   * - {r['family']}", f"     - {model}", f"     - {r['body_width']}",
                f"     - {r['gsam_stage']} ({r['attention_channels']} ch)",
                f"     - {r['gsam_block']}"]
    return "\n".join(out) + "\n"


def table1_rst(results: Iterable[dict[str, Any]]) -> str:
    """The paper's Table 1 (per-category AP, %) with a column per results file."""
    from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
    from dagnet_layers.emotic.paper import PAPER_TABLE1, PAPER_TABLE1_MAP

    results = list(results)
    methods = list(PAPER_TABLE1)
    heads = [f"{m} (paper)" for m in methods]
    if results:
        heads += [f"ours: {r['label']} ({r.get('protocol', '?')} AP)" for r in results]
    else:
        heads.append("ours")
    out = [".. list-table:: Per-category test AP (%) on EMOTIC; best published value in bold",
           "   :header-rows: 1", "   :stub-columns: 1", "", "   * - Category"]
    out += [f"     - {h}" for h in heads]

    def ours(r: dict[str, Any], key: str | None) -> str:
        value = r.get("mean_ap") if key is None else r["per_category_ap"].get(key)
        return _fmt(None if value is None else 100.0 * value)

    for cat in EMOTIC_CATEGORIES:
        row = {m: PAPER_TABLE1[m][cat] for m in methods}
        best = max(row.values())
        out.append(f"   * - {cat}")
        out += [f"     - **{v:.2f}**" if v == best else f"     - {v:.2f}" for v in row.values()]
        out += [f"     - {ours(r, cat)}" for r in results] or ["     - —"]
    best_map = max(PAPER_TABLE1_MAP.values())
    out.append("   * - **mAP**")
    out += [f"     - **{v:.2f}**" if v == best_map else f"     - {v:.2f}"
            for v in (PAPER_TABLE1_MAP[m] for m in methods)]
    out += [f"     - {ours(r, None)}" for r in results] or ["     - —"]
    return "\n".join(out) + "\n"


def results_note_rst(results: list[dict[str, Any]]) -> str:
    """What the "ours" column of Table 1 is, stated plainly."""
    if not results:
        return (
            ".. note::\n\n"
            "   **Not yet measured on EMOTIC.** No result file is committed in\n"
            "   ``docs/results/``: this package has not been trained on the real dataset\n"
            "   by its authors yet, so the \"ours\" column is empty rather than filled\n"
            "   with numbers from synthetic data. The paper's columns are what a faithful\n"
            "   reproduction should approach.\n"
        )
    lines = [".. note::", "", "   The \"ours\" columns come from:", ""]
    for r in results:
        n = r.get("num_samples", "?")
        lines.append(f"   - ``docs/results/{r['_file']}``: {r.get('protocol', '?')} AP "
                     f"protocol, {n} test persons.")
    return "\n".join(lines) + "\n"


def table2_rst() -> str:
    """The paper's Table 2 (ablation mAP) with the preset and variant that rebuild each row."""
    from dagnet_layers.emotic.paper import PAPER_TABLE1_MAP, PAPER_TABLE2
    from dagnet_layers.models import ABLATIONS, list_models

    labels = {
        "bam": "BAM",
        "gsam": "GSAM",
        "lsam": "LSAM",
        "bam_gsam": "BAM + GSAM",
        "bam_gsam_lsam_nogcn": "BAM + GSAM + LSAM (w/o GCN)",
        "full": "DAG-Net (BAM + GSAM + LSAM)",
    }
    variants = set(list_models())
    out = [".. list-table:: The paper's Table 2 and how to rebuild each row",
           "   :header-rows: 1", "", "   * - Method", "     - mAP (%, paper)",
           "     - ``ablation=`` preset", "     - registered variant"]
    for method in ("Kosti et al.", "Bendjoudi et al.", "Zhang et al."):
        out += [f"   * - {method}", f"     - {PAPER_TABLE1_MAP[method]:.2f}", "     - —",
                "     - —"]
    for preset, value in PAPER_TABLE2.items():
        if preset not in ABLATIONS:
            raise ValueError(f"paper.PAPER_TABLE2 key {preset!r} is not an ABLATIONS preset")
        variant = "dagnet_r50_r18" if preset == "full" else f"dagnet_r50_r18_{preset}"
        variant_cell = f"``{variant}``" if variant in variants else "—"
        out += [f"   * - {labels.get(preset, preset)}", f"     - {value:.2f}",
                f"     - ``{preset}``", f"     - {variant_cell}"]
    return "\n".join(out) + "\n"


def ablations_rst() -> str:
    """Every ``ABLATIONS`` preset and the config switches it sets."""
    from dagnet_layers.models import ABLATIONS

    out = [".. list-table::", "   :header-rows: 1", "", "   * - preset",
           "     - switches (``DAGNetConfig`` fields)"]
    for preset, switches in ABLATIONS.items():
        text = ", ".join(f"``{k}={v}``" for k, v in switches.items())
        out += [f"   * - ``{preset}``", f"     - {text}"]
    return "\n".join(out) + "\n"


def variants_rst() -> str:
    """Every registered model variant and its :func:`build_dagnet` arguments."""
    from dagnet_layers.models import list_models, model_config

    out = [".. list-table::", "   :header-rows: 1", "", "   * - name",
           "     - ``build_dagnet`` arguments"]
    for name in list_models():
        cfg = model_config(name)
        text = ", ".join(f"``{k}={v!r}``" for k, v in cfg.items()) or "(the paper's defaults)"
        out += [f"   * - ``{name}``", f"     - {text}"]
    return "\n".join(out) + "\n"


# -------------------------------------------------------------- markdown files
def markdown_include(path: Path, generated: Path, have_myst: bool) -> str:
    """Include a whole Markdown file (its ``# Title`` too): MyST when available, else verbatim."""
    if not path.is_file():
        return ""
    # "/..." is relative to the Sphinx source directory (docs/), wherever the include sits.
    rel = Path("/..") / path.relative_to(generated.parent.parent)
    if have_myst:
        return f".. include:: {rel.as_posix()}\n   :parser: myst_parser.sphinx_\n"
    title = _md_title(path) or path.name
    return (f"{title}\n{'=' * len(title)}\n\n"
            f".. literalinclude:: {rel.as_posix()}\n   :language: markdown\n")


def benchmarks_rst(root: Path, generated: Path, have_myst: bool) -> str:
    """The benchmark README and every committed result table, or a titled note."""
    bench = root / "benchmarks"
    results_dir = bench / "results"
    parts: list[str] = []
    readme = bench / "README.md"
    if readme.is_file():
        parts.append(markdown_include(readme, generated, have_myst))
    else:
        parts += ["Benchmarks", "==========", "",
                  "Speed and memory targets are held by the scripts in ``benchmarks/``,",
                  "not by the tests.", ""]
    # each committed result table becomes a sub-page (its "# Title" is the page title)
    pages_dir = generated / "benchmarks"
    pages = []
    for md in sorted(results_dir.glob("*.md")) if results_dir.is_dir() else []:
        page = pages_dir / f"{md.stem}.rst"
        _write(page, markdown_include(md, generated, have_myst))
        pages.append(page)
    for stale in pages_dir.glob("*.rst") if pages_dir.is_dir() else []:
        if stale not in pages:
            stale.unlink()
    if pages:
        parts += [".. rubric:: Committed results", "", ".. toctree::", "   :maxdepth: 1", ""]
        # several runs on one device share a title: the sidebar adds the file's name
        titles = {p.stem: _md_title(results_dir / f"{p.stem}.md") for p in pages}
        for p in pages:
            title = titles[p.stem]
            shared = title is not None and list(titles.values()).count(title) > 1
            entry = f"/_generated/benchmarks/{p.stem}"
            parts.append(f"   {title} ({p.stem}) <{entry}>" if shared else f"   {entry}")
        parts.append("")
    jsons = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
    if jsons:
        parts += [".. rubric:: Raw result files", ""]
        parts += [f"- ``benchmarks/results/{p.name}``" for p in jsons]
        parts.append("")
    if len(parts) == 1 or (not readme.is_file() and not jsons
                           and not (results_dir.is_dir() and any(results_dir.glob("*.md")))):
        parts.append(".. note::\n\n   No benchmark results are committed yet.\n")
    return "\n".join(parts) + "\n"


def _md_title(path: Path) -> str | None:
    """The text of a Markdown file's first ``# Title`` line, if it starts with one."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            return line[2:].strip() if line.startswith("# ") else None
    return None


# ------------------------------------------------------------------------ all
def generate_all(docs: Path, have_myst: bool) -> None:
    """Write every generated fragment and figure under ``docs/_generated``."""
    import make_figures

    root = docs.parent
    gen = docs / "_generated"
    gen.mkdir(exist_ok=True)
    results = _results(docs / "results")
    _write(gen / "table1.inc", table1_rst(results))
    _write(gen / "results_note.inc", results_note_rst(results))
    _write(gen / "table2.inc", table2_rst())
    _write(gen / "synthetic_table2.inc",
           synthetic_table2_rst(docs / "results" / "synthetic" / "table2.json"))
    _write(gen / "diagnostic_numbers.inc",
           diagnostic_numbers_rst(docs / "results" / "diagnostic" / "report.json"))
    for part in ("settings", "verdicts", "tables", "checks", "timing"):
        _write(gen / f"diagnostic_{part}.inc",
               diagnostic_report_rst(docs / "results" / "diagnostic" / "report.json", part))
    _write(gen / "backbone_support.inc",
           backbone_support_rst(docs / "results" / "backbone_support.json"))
    _write(gen / "ablations.inc", ablations_rst())
    _write(gen / "variants.inc", variants_rst())
    _write(gen / "api_toplevel.inc", toplevel_table_rst())
    for short, module_name in GENERATED_API_PAGES.items():
        _write(gen / f"api_{short}.inc", module_members_rst(module_name))
    changelog = root / "CHANGELOG.md"
    _write(gen / "changelog.inc", markdown_include(changelog, gen, have_myst))
    _write(gen / "benchmarks.inc", benchmarks_rst(root, gen, have_myst))
    make_figures.make_all(gen / "figures")
