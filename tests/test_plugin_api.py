"""The plugin API is one module: the scaffold and the worked example import only from
``mlpoc.plugins`` (and its ``check``), and a plugin written against the older imports
(``mlpoc.errors``, ``mlpoc.schema``) still trains, unchanged."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from mlpoc import plugins
from mlpoc.paths import CHECKOUT
from mlpoc.plugins.check import MODULE, check, sample_table, scaffold
from mlpoc.schema import Layout

EXAMPLE = CHECKOUT / "containers" / "plugins" / "lightgbm"


def mlpoc_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return {name for name in found if name.split(".")[0] == "mlpoc"}


def test_the_scaffold_imports_only_the_plugin_api(tmp_path: Path) -> None:
    written = scaffold("tabular_api", tmp_path)
    sources = [p for p in written if p.suffix == ".py"]
    assert len(sources) == 2  # the plugin and its test
    for path in sources:
        assert mlpoc_imports(path) <= {"mlpoc.plugins", "mlpoc.plugins.check"}, path
    assert "mlpoc.plugins" in mlpoc_imports(sources[0])


def test_the_worked_example_imports_only_the_plugin_api() -> None:
    for path in [*EXAMPLE.glob("mlpoc_lightgbm/*.py"), *EXAMPLE.glob("test_*.py")]:
        assert mlpoc_imports(path) <= {"mlpoc.plugins", "mlpoc.plugins.check"}, path


def test_everything_a_plugin_names_is_exported() -> None:
    for name in plugins.__all__:
        assert getattr(plugins, name) is not None
    assert plugins.PluginError.__module__ == "mlpoc.errors"  # one class, not a copy
    assert (plugins.CATEGORY, plugins.NUMBER) == ("category", "number")


OLD_IMPORTS = (
    "from mlpoc.errors import PluginError  # noqa: F401\n"
    "from mlpoc.plugins import ExportedModel, TrainingData, trainer\n"
    "from mlpoc.schema import CATEGORY, NUMBER, REGRESSION\n"
)


def test_a_plugin_with_the_older_imports_still_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a plugin as yesterday's scaffold wrote it: errors and schema from their modules
    source = MODULE.format(name="older_imports")
    new_line = next(line for line in source.splitlines() if line.startswith("from mlpoc.plugins"))
    source = source.replace(new_line + "\n", OLD_IMPORTS)
    assert "from mlpoc.schema import" in source and "from mlpoc.errors import" in source
    (tmp_path / "older_imports_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "older_imports_plugin", raising=False)
    # WHEN it is loaded and checked on the mixed table, both tasks
    plugins.load(["older_imports_plugin"])
    classified = check("older_imports", sample_table(), "sample.csv", layout=Layout(id="id"))
    regressed = check(
        "older_imports",
        sample_table("regression"),
        "sample.csv",
        layout=Layout(id="id", task="regression"),
    )
    # THEN it trains and serves as ONNX, as before
    assert classified.metrics["accuracy"] > 0.8
    assert regressed.metrics["r2"] > 0.5
