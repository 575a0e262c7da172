"""Check every link of the built HTML docs offline; fail on a broken one.

For each page under the build folder: every relative ``href``/``src`` must name a
file of the build, and its ``#fragment`` an ``id`` in that file; every script and
stylesheet must be local (the pages must work with no network: no CDN). External
``http(s)`` links cannot be fetched here; they are counted and listed with
``--verbose``. Run after ``sphinx -b html`` (``.ci/run`` does)::

    python docs/_scripts/check_links.py docs/_build/html
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name in ("href", "src"):
                self.links.append((tag, name, value))


def check(build: Path) -> tuple[list[str], dict[str, int]]:
    pages: dict[Path, _Page] = {}
    for path in sorted(build.rglob("*.html")):
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        pages[path.resolve()] = page
    problems: list[str] = []
    external: dict[str, int] = defaultdict(int)
    for path, page in pages.items():
        where = path.relative_to(build.resolve())
        for tag, attr, value in page.links:
            parts = urlsplit(value)
            if parts.scheme in ("http", "https") or value.startswith("//"):
                if tag in ("script", "img") or (tag == "link" and attr == "href"
                                                and "stylesheet" in value):
                    problems.append(f"{where}: <{tag} {attr}> loads {value} from the network")
                external[value] += 1
                continue
            if parts.scheme in ("mailto", "data", "javascript"):
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{where}: {value} -> missing file")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and target in pages:
                if fragment not in pages[target].ids:
                    problems.append(f"{where}: {value} -> no anchor #{fragment}")
    return problems, external


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="the html build folder")
    parser.add_argument("--verbose", action="store_true", help="list the external links")
    args = parser.parse_args(argv)
    if not (args.build / "index.html").is_file():
        print(f"check_links: {args.build} has no index.html; build the docs first",
              file=sys.stderr)
        return 2
    problems, external = check(args.build)
    for line in problems:
        print(f"check_links: {line}", file=sys.stderr)
    if args.verbose:
        for url, n in sorted(external.items()):
            print(f"external ({n}x): {url}")
    n_pages = len(list(args.build.rglob("*.html")))
    print(f"check_links: {n_pages} pages, {len(problems)} broken links, "
          f"{len(external)} external links (not fetched offline)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
