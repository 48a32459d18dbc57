"""`mlpoc features publish|list|show|promote|rollback`: feature sets
(:mod:`mlpoc.data.feature_sets`),
the same on either target. Publishing sends a ``features`` job to the train workers; promotion
and rollback move the set's pointer, apart from any model's."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mlpoc.cli.common import console, fail, features_app, key_values, operates
from mlpoc.cli.operator_commands import Dataset, JobId, Wait, submit_and_wait, version_number
from mlpoc.cli.target import Deployment
from mlpoc.data import feature_sets

SetName = Annotated[str, typer.Argument(help="The feature set's name (lowercase, e.g. users).")]


def _sets(dep: Deployment) -> feature_sets.FeatureSets:
    return feature_sets.FeatureSets(dep.client("dynamodb"), dep.output("ModelsTableName"))


@features_app.command("publish")
@operates
def publish(
    dep: Deployment,
    name: SetName,
    dataset: Dataset,
    key: Annotated[
        str | None,
        typer.Option(help="The entity key column (a set's first version; later ones inherit)."),
    ] = None,
    promote: Annotated[
        str,
        typer.Option(help="auto (only the set's first version), always or never."),
    ] = "auto",
    param: Annotated[
        list[str], typer.Option(help="ignore_columns=…, keep_days=7 (repeatable).")
    ] = [],  # noqa: B006
    job_id: JobId = None,
    wait: Wait = False,
) -> None:
    """Publish a CSV (or an s3:// CSV or folder) as a new version of a feature set: a features
    job writes its snapshot and its online items."""
    params = {**key_values(param), "promote": promote, **({"key": key} if key else {})}
    submit_and_wait(dep, "features", wait, model=name, dataset=dataset, params=params,
                    job_id=job_id)  # fmt: skip


@features_app.command("list")
@operates
def list_sets(dep: Deployment) -> None:
    """Every feature set: its promoted version and how many it has."""
    table = Table("set", "promoted", "versions", "before", title="Feature sets")
    for name, pointer in _sets(dep).pointers().items():
        table.add_row(
            name,
            f"v{pointer.promoted}" if pointer.promoted else "-",
            str(pointer.next_version),
            ", ".join(f"v{v}" for v in pointer.history[-3:]) or "-",
        )
    console.print(table)


@features_app.command("show")
@operates
def show(dep: Deployment, name: SetName) -> None:
    """A feature set's versions: key, columns, rows, snapshot; ● marks the promoted one."""
    sets = _sets(dep)
    versions = sets.versions(name)
    if not versions:
        raise fail(f"no feature set {name!r}: publish one with `mlpoc features publish`")
    pointer = sets.pointer(name)
    promoted = pointer.promoted if pointer else None
    table = Table("", "version", "key", "columns", "rows", "job", "state", title=name)
    for v in versions:
        table.add_row(
            "●" if v.version == promoted else "",
            f"v{v.version}",
            v.key,
            ", ".join(f"{c.name}:{c.type[0]}" for c in v.columns[:8])
            + (f" … (+{len(v.columns) - 8})" if len(v.columns) > 8 else ""),  # noqa: PLR2004
            str(v.rows),
            v.job_id,
            "expiring" if v.expires_at else "kept",
        )
    console.print(table)


@features_app.command("promote")
@operates
def promote_version(
    dep: Deployment, name: SetName, version: Annotated[str, typer.Argument(help="3 or v3.")]
) -> None:
    """Make a version the promoted one. A model reads it from the API's next poll on when it
    has the model's columns, with their types; else the model keeps its own (`/v1/health`)."""
    pointer = _sets(dep).promote(name, version_number(version))
    console.print(
        f"feature set {name}: v{pointer.promoted} is promoted "
        f"(before: {', '.join(f'v{v}' for v in pointer.history) or 'none'})"
    )


@features_app.command("rollback")
@operates
def rollback(dep: Deployment, name: SetName) -> None:
    """Re-promote the version that was promoted before the current one."""
    pointer = _sets(dep).rollback(name)
    console.print(f"feature set {name}: rolled back, v{pointer.promoted} is promoted")
