"""The README is the front door: about 200 lines, and every link in it and in docs/ resolves
(the file exists, and so does the heading an anchor names)."""

from __future__ import annotations

import json
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


# -- what the pages name exists ---------------------------------------------------------------
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# `mlpoc …` as a shell runs it (not Python's `from mlpoc import …`)
INVOCATION = re.compile(r"(?:^|[\s/(])(?<!from )mlpoc((?: [a-z][a-z-]*)+)((?: [^|;#&]*)?)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


def code_of(page: Path) -> list[str]:
    """The page's code: every line of its fenced blocks, and every inline code span."""
    text = page.read_text()
    blocks = [line for block in FENCE.findall(text) for line in block.splitlines()[1:-1]]
    return blocks + CODE_SPAN.findall(FENCE.sub("", text))


def command_tree() -> dict[str, set[str]]:
    """Every `mlpoc` command path ("train", "dlq show") and the options it takes."""
    import click
    import typer

    from mlpoc.cli.app import app

    tree: dict[str, set[str]] = {}

    def walk(command: click.Command, path: str) -> None:
        tree[path] = {o for p in command.params for o in p.opts if o.startswith("--")}
        tree[path] |= {o for p in command.params for o in p.secondary_opts}
        for name, child in getattr(command, "commands", {}).items():
            walk(child, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return tree


def named_commands() -> list[tuple[str, str, list[str]]]:
    """(page, command path, options) for every `mlpoc …` the pages show."""
    tree = command_tree()
    found = []
    for page in PAGES:
        for code in code_of(page):
            for match in INVOCATION.finditer(code):
                words = match[1].split()
                path = ""
                for word in words:  # the longest prefix of words that is a command
                    if f"{path} {word}".strip() in tree:
                        path = f"{path} {word}".strip()
                    else:
                        break
                options = OPTION.findall(match[1] + (match[2] or ""))
                found.append((page.name, path or words[0], options))
    return found


def test_every_mlpoc_command_and_option_the_pages_name_exists() -> None:
    tree = command_tree()
    named = named_commands()
    assert len(named) > 40
    wrong = [
        f"{page}: mlpoc {path}" + (f" {o}" if path in tree else "")
        for page, path, options in named
        for o in (options or [""])
        if path not in tree or (o and o not in tree[path] | {"--help"})
    ]
    assert not wrong, f"the pages name commands or options that do not exist: {wrong}"


def test_every_mlpoc_key_the_pages_name_exists_and_every_key_is_documented() -> None:
    context = json.loads((CHECKOUT / "cdk.json").read_text())["context"]
    keys = {k for k in context if k.startswith("mlpoc:")}
    named = {
        (page.name, f"mlpoc:{m}")
        for page in PAGES
        for m in re.findall(r"mlpoc:([a-z_]+)", page.read_text())
    }
    assert not [(p, k) for p, k in named if k not in keys], "keys the pages name, not in cdk.json"
    configuration = (CHECKOUT / "docs" / "configuration.md").read_text()
    undocumented = sorted(k for k in keys if f"`{k}`" not in configuration)
    assert not undocumented, (
        f"cdk.json keys docs/configuration.md does not describe: {undocumented}"
    )
