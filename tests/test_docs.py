"""The README is the front door: about 200 lines, and every link in it and in docs/ resolves
(the file exists, and so does the heading an anchor names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlpoc.paths import CHECKOUT

PAGES = [CHECKOUT / "README.md", *sorted((CHECKOUT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    return [m["target"] for m in LINK.finditer(FENCE.sub("", page.read_text()))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page: Path) -> None:
    for target in links(page):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_file(), f"{page.name}: {target} (no file {linked})"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target} (no such heading)"


def test_the_readme_leads_to_every_docs_page_and_stays_short() -> None:
    readme = CHECKOUT / "README.md"
    linked = {(CHECKOUT / t.partition("#")[0]).resolve() for t in links(readme)}
    assert {p.resolve() for p in PAGES[1:]} <= linked
    assert len(readme.read_text().splitlines()) <= 220
    # the two commands come first
    text = readme.read_text()
    assert text.index("make demo") < text.index("make test") < text.index("make deploy")


def test_the_slug_matches_githubs() -> None:
    assert slug("The `mlpoc` command line") == "the-mlpoc-command-line"
    assert slug("Operator commands (local or AWS)") == "operator-commands-local-or-aws"
    assert slug("What happens to a bad or unlucky job") == "what-happens-to-a-bad-or-unlucky-job"
