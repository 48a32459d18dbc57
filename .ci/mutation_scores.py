"""The mutation run's configuration, and each core module's score from its results.

``--configure DIR [MODULE ...]``: write DIR/pyproject.toml, the project's with mutmut's
``[tool.mutmut]`` for these modules (all of ``[tool.mlpoc.mutate]`` when none is named) and the
union of their fast unit tests.

``--report [MODULE ...]`` (in that folder): each module's mutants, those killed, those listed as
equivalent in docs/development.md ("Equivalent mutants": the mutant cannot change behaviour,
with the reason), and the score, killed / (mutants - equivalent); then every survivor by name.
A mutant is killed when a test failed, timed out or crashed under it, and survives when every
test passed or none ran it. Exits 1 when a module scores under 85 %.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

FLOOR = 0.85
KILLED = {1, 3, 24, -24, 36, 37, 152, 255, -9, -11}
CHECKOUT = Path(__file__).resolve().parents[1]
EQUIVALENT = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<why>.+?) \|$", re.M)
PYTEST_ARGS = ["-p", "no:cacheprovider", "-o", "addopts=", "-q"]
FAST = "not integration and not perf and not containers"


def targets(named: list[str]) -> dict[str, list[str]]:
    table = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["mlpoc"]["mutate"]
    unknown = [m for m in named if m not in table]
    if unknown:
        sys.exit(f"not a core module of [tool.mlpoc.mutate]: {unknown}; it has {sorted(table)}")
    return {m: table[m] for m in (named or table)}


def configure(folder: Path, named: list[str]) -> None:
    chosen = targets(named)
    tests = sorted({t for files in chosen.values() for t in files})
    text = (CHECKOUT / "pyproject.toml").read_text()
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["mlpoc", "stacks"]\n'
        f"only_mutate = {json.dumps(list(chosen))}\n"
        f"pytest_add_cli_args = {json.dumps([*PYTEST_ARGS, '-m', FAST])}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
    )
    (folder / "pyproject.toml").write_text(text)


def equivalents() -> dict[str, str]:
    page = (CHECKOUT / "docs" / "development.md").read_text()
    section = page.split("### Equivalent mutants", 1)[-1]
    return {m["name"]: m["why"] for m in EQUIVALENT.finditer(section)}


def report(named: list[str]) -> int:
    known = equivalents()
    worst = 1.0
    survivors: list[str] = []
    print(f"{'module':<34} {'mutants':>7} {'killed':>6} {'equiv.':>6} {'score':>6}")
    for source in targets(named):
        meta = Path("mutants") / f"{source}.meta"
        if not meta.is_file():
            print(f"{source:<34} not run")
            worst = 0.0
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        equivalent = [name for name in codes if name in known]
        counted = {n: c for n, c in codes.items() if n not in known}
        killed = sum(1 for c in counted.values() if c in KILLED)
        score = killed / len(counted) if counted else 1.0
        worst = min(worst, score)
        print(f"{source:<34} {len(codes):>7} {killed:>6} {len(equivalent):>6} {score:>6.1%}")
        survivors += [
            f"  {'not run' if c is None else 'survived'}: {n}"
            for n, c in sorted(counted.items())
            if c not in KILLED
        ]
    for line in survivors:
        print(line)
    print(f"lowest score {worst:.1%} (floor {FLOOR:.0%}); `mutmut show NAME` here shows a mutant")
    return 0 if worst >= FLOOR else 1


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "--configure":
        configure(Path(rest[0]), rest[1:])
    else:
        sys.exit(report(rest))
