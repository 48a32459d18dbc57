"""Predictions: realtime from the held model, and the stored ones the predict worker wrote."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from mlpoc import dynamo
from mlpoc.api.deps import ClientsDep, SamplerDep, ServerDep, SettingsDep, require_key
from mlpoc.api.responses import errors
from mlpoc.api.schemas import PredictRequest
from mlpoc.errors import ApiError, RegistryError
from mlpoc.inference import OnnxModel
from mlpoc.schema import CATEGORY, is_missing, number

router = APIRouter(tags=["predictions"], dependencies=[Depends(require_key)], responses=errors(401))


@router.post("/v1/predict", responses=errors(404, 413, 422))
async def predict(
    body: PredictRequest, settings: SettingsDep, server: ServerDep, sampler: SamplerDep
) -> dict[str, Any]:
    """Realtime predictions from the promoted (or pinned) version, held in memory."""
    # async on purpose: a held model answers in microseconds, so running it on the event
    # loop beats two thread hand-offs per request (the first request's load blocks once)
    if len(body.rows) > settings.max_rows:
        raise ApiError(422, "too_many_rows", f"at most {settings.max_rows} rows per request")
    if body.ids is not None and len(body.ids) != len(body.rows):
        raise ApiError(422, "invalid_request", "ids must have one entry per row")
    classifier = server.loaded(body.model)
    if classifier is None:  # the first request for a model loads it, off the event loop
        try:
            classifier = await run_in_threadpool(server.get, body.model)
        except RegistryError as error:
            raise ApiError(404, "not_found", str(error)) from None
    columns = _columns(body, classifier)
    result = classifier.predict(columns)
    # a share of requests for the monitor's drift check: an append, written later off the loop
    sampler.offer(body.model, classifier.version.version, classifier.schema, columns)
    answers: list[dict[str, Any]]
    if result.values is not None:
        answers = [{"value": round(float(v), 6)} for v in result.values]
    else:
        assert result.confidence is not None  # noqa: S101 - a classifier's
        answers = [
            {"label": label, "confidence": round(float(confidence), 6)}
            for label, confidence in zip(result.labels, result.confidence.tolist(), strict=True)
        ]
    return {
        "model": body.model,
        "version": classifier.version.version,
        "predictions": [
            {**({"id": body.ids[i]} if body.ids else {}), **answer}
            for i, answer in enumerate(answers)
        ],
    }


def _columns(body: PredictRequest, model: OnnxModel) -> dict[str, np.ndarray]:
    """The rows as the version's typed columns, or a 422 that names the columns at fault."""
    schema = model.schema
    features = schema.features
    allowed = {*features, schema.label, schema.id_column, *schema.ignored}
    for r, row in enumerate(body.rows):
        missing = [f for f in features if f not in row]
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
                f"row {r}: {', '.join(problem)}; model {body.model} "
                f"v{model.version.version} takes {len(features)} features",
            )
    columns: dict[str, np.ndarray] = {}
    details = []
    for column in schema.columns:
        cells = [row[column.name] for row in body.rows]
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
            f"column(s) {named} of model {body.model} v{model.version.version} take numbers",
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
