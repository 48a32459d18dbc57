"""Predictions: realtime from the held model, and the stored ones the predict worker wrote."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from mlpoc.api.deps import (
    ClientsDep,
    LookupsDep,
    SamplerDep,
    ServerDep,
    SettingsDep,
    require_key,
)
from mlpoc.api.lookups import Lookups
from mlpoc.api.responses import errors
from mlpoc.api.schemas import PredictRequest
from mlpoc.aws import dynamo
from mlpoc.data.feature_binding import Binding
from mlpoc.errors import ApiError, RegistryError, TransientError
from mlpoc.models.inference import OnnxModel, Predictions
from mlpoc.schema import CATEGORY, is_missing, number

router = APIRouter(tags=["predictions"], dependencies=[Depends(require_key)], responses=errors(401))


@router.post("/v1/predict", responses=errors(404, 413, 422, 503))
async def predict(
    body: PredictRequest,
    settings: SettingsDep,
    server: ServerDep,
    sampler: SamplerDep,
    lookups: LookupsDep,
) -> dict[str, Any]:
    """Realtime predictions from the promoted (or pinned) version, held in memory: of the
    rows sent, or of entity keys, whose features are read from the model's feature set."""
    # async on purpose: a held model answers in microseconds, so running it on the event
    # loop beats two thread hand-offs per request (the first request's load blocks once)
    if body.rows is None and body.keys is None:
        raise ApiError(
            422,
            "invalid_request",
            "send rows (each row's features) or keys (entity keys of the model's feature set)",
        )
    sent = len(body.keys if body.keys is not None else body.rows or ())
    if sent > settings.max_rows:
        raise ApiError(422, "too_many_rows", f"at most {settings.max_rows} rows per request")
    if body.ids is not None and len(body.ids) != sent:
        raise ApiError(422, "invalid_request", "ids must have one entry per row")
    if body.keys is not None and body.rows is not None and len(body.rows) != sent:
        raise ApiError(422, "invalid_request", "with keys, rows must have one entry per key")
    held = server.held(body.model)
    if held is None:  # the first request for a model loads it, off the event loop
        try:
            await run_in_threadpool(server.get, body.model)
        except RegistryError as error:
            raise ApiError(404, "not_found", str(error)) from None
        held = server.held(body.model)
        assert held is not None  # noqa: S101 - just loaded, and never dropped
    # the classifier and the feature set version it reads, from one pair (a swap replaces both)
    classifier, bound = held.classifier, held.features
    rows = body.rows or []
    unknown: dict[int, str] = {}
    extra: dict[str, Any] = {}
    if body.keys is not None:
        rows, unknown, extra = await _looked_up(body, body.keys, classifier, bound, lookups)
    columns = _columns(rows, body.model, classifier)
    answers: list[dict[str, Any]] = []
    if rows:
        result = classifier.predict(columns)
        # a share of requests for the monitor's drift check: an append, written later
        sampler.offer(body.model, classifier.version.version, classifier.schema, columns)
        answers = _answers(result)
    known = iter(answers)
    return {
        "model": body.model,
        "version": classifier.version.version,
        **extra,
        "predictions": [
            {
                **({"id": body.ids[i]} if body.ids else {}),
                **({"key": body.keys[i]} if body.keys is not None else {}),
                **({"error": unknown[i]} if i in unknown else next(known)),
            }
            for i in range(sent)
        ],
    }


def _answers(result: Predictions) -> list[dict[str, Any]]:
    if result.values is not None:
        return [{"value": round(float(v), 6)} for v in result.values]
    assert result.confidence is not None  # noqa: S101 - a classifier's
    return [
        {"label": label, "confidence": round(float(confidence), 6)}
        for label, confidence in zip(result.labels, result.confidence.tolist(), strict=True)
    ]


async def _looked_up(
    body: PredictRequest,
    keys: list[str | int],
    model: OnnxModel,
    bound: Binding | None,
    lookups: Lookups,
) -> tuple[list[dict[str, float | str | None]], dict[int, str], dict[str, Any]]:
    """The rows of ``keys`` from the feature set version the model reads (one BatchGetItem off
    the event loop, shared with the requests that arrive meanwhile: :mod:`mlpoc.api.lookups`),
    the unknown keys' answers by position, and what was read."""
    if bound is None:
        raise ApiError(
            422,
            "invalid_request",
            f"model {body.model} v{model.version.version} was trained on features sent "
            "inline, not on a feature set: send rows",
        )
    entities = [str(k).strip() for k in keys]
    if not all(entities):
        raise ApiError(422, "invalid_request", "a key is empty")
    try:
        found = await lookups.get(bound, entities)
    except TransientError as error:
        raise ApiError(503, "unavailable", str(error)) from None
    rows: list[dict[str, float | str | None]] = []
    unknown: dict[int, str] = {}
    for i, entity in enumerate(entities):
        values = found.get(entity)
        if values is None:
            unknown[i] = f"unknown key: feature set {bound.name} v{bound.version} has no {entity!r}"
            continue
        row: dict[str, float | str | None] = dict(zip(bound.names, values, strict=True))
        if body.rows is not None:
            row.update({k: v for k, v in body.rows[i].items() if v is not None})
        rows.append(row)
    return rows, unknown, {"features": {"set": bound.name, "version": bound.version}}


def _columns(
    rows: list[dict[str, float | str | None]], name: str, model: OnnxModel
) -> dict[str, np.ndarray]:
    """The rows as the version's typed columns, or a 422 that names the columns at fault."""
    schema = model.schema
    wanted = schema.features
    allowed = {*wanted, schema.label, schema.id_column, *schema.ignored}
    for r, row in enumerate(rows):
        missing = [f for f in wanted if f not in row]
        unknown = sorted(set(row) - allowed)
        if missing or unknown:
            problem = []
            if missing:
                problem.append(f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}")  # noqa: PLR2004
            if unknown:
                problem.append(f"unknown {unknown[:5]}")
            raise ApiError(
                422,
                "invalid_features",
                f"row {r}: {', '.join(problem)}; model {name} "
                f"v{model.version.version} takes {len(wanted)} features",
            )
    columns: dict[str, np.ndarray] = {}
    details = []
    for column in schema.columns:
        cells = [row[column.name] for row in rows]
        if column.type == CATEGORY:
            columns[column.name] = np.array([_text(c) for c in cells], dtype=object)
            continue
        values = np.empty(len(cells), dtype=np.float32)
        bad = []
        for r, cell in enumerate(cells):
            value = math.nan if cell is None else _number(cell)
            if value is None:
                bad.append(r)
                value = math.nan
            values[r] = value
        if bad:
            details.append(
                {
                    "where": f"body.rows.{bad[0]}.{column.name}",
                    "problem": f"{len(bad)} row(s) ({', '.join(map(str, bad[:5]))}) are not "
                    "finite numbers (null is a missing value)",
                }
            )
        columns[column.name] = values
    if details:
        named = ", ".join(repr(d["where"].rsplit(".", 1)[-1]) for d in details)
        raise ApiError(
            422,
            "invalid_features",
            f"column(s) {named} of model {name} v{model.version.version} take numbers",
            details,
        )
    return columns


def _number(cell: float | str) -> float | None:
    if isinstance(cell, str):
        return number(cell)
    return float(cell) if math.isfinite(cell) else None


def _text(cell: float | str | None) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float):
        return str(int(cell)) if cell.is_integer() else repr(cell)
    return "" if is_missing(cell) else cell.strip()


@router.get("/v1/predictions/{model}/{item_id}", responses=errors(404, 422))
def stored_prediction(
    model: str, item_id: str, settings: SettingsDep, clients: ClientsDep
) -> dict[str, Any]:
    """What the predict worker stored for one row (by the CSV's id column)."""
    item = dynamo.deserialize(
        clients.dynamodb.get_item(
            TableName=settings.runtime.predictions_table,
            Key={"model": {"S": model}, "item_id": {"S": item_id}},
        ).get("Item")
    )
    if item is None:
        raise ApiError(404, "not_found", f"no stored prediction for {model}/{item_id}")
    item.pop("features", None)
    item.pop("review", None)
    return item
