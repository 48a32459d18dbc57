"""Print the pinned requirements of the runtime core plus the named extras of pyproject.toml.

The image builds install these in a layer of their own, before the package's code is copied, so
that a code-only edit reuses the dependency layers (``containers/Dockerfile``)::

    python extras.py pyproject.toml worker      # the core + the worker extra, one per line

A self-reference (``mlpoc[worker,api]``) is expanded. Standard library only: it runs on the
base image's bare Python.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF = re.compile(r"^mlpoc\[(?P<extras>[^\]]+)\]$")


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"extras.py: pyproject.toml has no extra named {extra!r}")
        seen.add(extra)
        for line in optional[extra]:
            nested = SELF.match(line.replace(" ", ""))
            if nested:
                pending.extend(nested.group("extras").split(","))
            else:
                found.append(line)
    return list(dict.fromkeys(found))


def main(argv: list[str]) -> int:
    if len(argv) < 2:  # noqa: PLR2004 - pyproject.toml and at least one extra
        sys.stderr.write("usage: python extras.py PYPROJECT EXTRA [EXTRA ...]\n")
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in requirements(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
