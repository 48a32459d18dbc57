"""``mlpoc plugin new|check``: a team's model plugin, scaffolded and proven before any job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mlpoc.cli.common import console, friendly, key_values, plugin_app
from mlpoc.data import digits
from mlpoc.paths import CHECKOUT
from mlpoc.plugins.check import check, scaffold
from mlpoc.schema import CLASSIFICATION, LABEL, Layout

PLUGINS_DIR = CHECKOUT / "containers" / "plugins"
SHOWN = 8  # input names listed


@plugin_app.command("new")
def plugin_new(
    name: Annotated[str, typer.Argument(help="The plugin's name (lowercase, e.g. xgboost).")],
    into: Annotated[Path, typer.Option(help="The folder of the team's plugins.")] = PLUGINS_DIR,
) -> None:
    """Scaffold a plugin package (module, pyproject.toml, test) under containers/plugins/."""
    with friendly():
        written = scaffold(name, into)
    for path in written:
        console.print(f"wrote {path}")
    console.print(
        f"Next: edit the module, pin its libraries in pyproject.toml, then `make install` and "
        f'`mlpoc plugin check {name}`. To ship it in the worker image, add "{name}" to '
        "mlpoc:plugins in cdk.json."
    )


@plugin_app.command("check")
def plugin_check(
    name: Annotated[str, typer.Argument(help="The plugin's name.")],
    csv: Annotated[
        Path | None,
        typer.Argument(help="A training CSV (default: a digits table with categories and blanks)."),
    ] = None,
    label: Annotated[str, typer.Option(help="The label column.")] = LABEL,
    id_column: Annotated[str | None, typer.Option(help="The id column, if any.")] = None,
    ignore: Annotated[list[str], typer.Option(help="A column to leave out (repeatable).")] = [],  # noqa: B006
    task: Annotated[str, typer.Option(help="classification or regression.")] = CLASSIFICATION,
    param: Annotated[
        list[str], typer.Option(help="A plugin parameter key=value (repeatable).")
    ] = [],  # noqa: B006
) -> None:
    """Train a plugin on a sample in seconds and hold its ONNX graph to the contract."""
    with friendly():
        if csv is None:
            text, where = digits.check_csv(task), "the built-in sample"
            label, id_column = LABEL, "id"
        else:
            text, where = csv.read_text(encoding="utf-8-sig"), str(csv)
        layout = Layout.from_params(
            {"label_column": label, "id_column": id_column, "ignore_columns": ignore, "task": task}
        )
        report = check(name, text, where, layout=layout, params=key_values(param))
    table = Table("", "", title=f"plugin {report.plugin}: the ONNX contract holds")
    table.add_row("task", report.task)
    table.add_row("rows (train / held out)", f"{report.train_rows} / {report.test_rows}")
    table.add_row("trained in", f"{report.seconds:.2f} s")
    shown = ", ".join(report.inputs[:SHOWN]) + (", …" if len(report.inputs) > SHOWN else "")
    table.add_row("inputs", shown)
    if report.classes:
        table.add_row("classes", ", ".join(report.classes[:10]))
    table.add_row("held-out metrics (the ONNX graph's)", json.dumps(report.metrics))
    table.add_row("artifact", f"{report.onnx_bytes:,} bytes")
    console.print(table)
