"""DAG-Net on 38 timm families: every model as body and as context, a training step each.

The list is ``docs/_scripts/backbone_support.py``'s ``FAMILIES``; each observation
(body width, where GSAM goes, which block) must equal the committed
``docs/results/backbone_support.json`` that the docs' support table is rendered from.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of the quick default run; --full runs it

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _support_module():
    spec = importlib.util.spec_from_file_location("backbone_support",
                                                  DOCS / "_scripts" / "backbone_support.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


SUPPORT = _support_module()
TABLE = {row["model"]: row for row in json.loads(
    (DOCS / "results" / "backbone_support.json").read_text(encoding="utf-8"))}


def test_the_list_covers_at_least_30_families_and_matches_the_table() -> None:
    families = {f for f, *_ in SUPPORT.FAMILIES}
    assert len(families) >= 30
    assert [m for _, m, *_ in SUPPORT.FAMILIES] == list(TABLE), "rerun backbone_support.py"


@pytest.mark.parametrize(("family", "name", "kwargs", "size"), SUPPORT.FAMILIES,
                         ids=[m for _, m, *_ in SUPPORT.FAMILIES])  # fmt: skip
def test_backbone_family(family: str, name: str, kwargs: dict, size: int) -> None:
    with warnings.catch_warnings(record=True) as warned:  # the fallbacks, asserted below
        warnings.simplefilter("always")
        seen = SUPPORT.check(name, kwargs, size)
    fell_back = any("light block is used instead" in str(w.message) for w in warned)
    assert fell_back == (seen["gsam_block"] == "light"), f"{name}: a fallback said nothing"
    row = TABLE[name]
    assert row["family"] == family and row["kwargs"] == kwargs and row["size"] == size
    for key in ("body_width", "gsam_stage", "gsam_block", "attention_channels", "logits"):
        assert seen[key] == row[key], f"{name}: {key} is {seen[key]}, the docs say {row[key]}"
