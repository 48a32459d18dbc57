"""Predictions: realtime from the held model, and the stored ones the predict worker wrote."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from mlpoc import dynamo
from mlpoc.api.deps import ClientsDep, ServerDep, SettingsDep, require_key
from mlpoc.api.responses import errors
from mlpoc.api.schemas import PredictRequest
from mlpoc.errors import ApiError, RegistryError

router = APIRouter(tags=["predictions"], dependencies=[Depends(require_key)], responses=errors(401))


@router.post("/v1/predict", responses=errors(404, 413, 422))
async def predict(body: PredictRequest, settings: SettingsDep, server: ServerDep) -> dict[str, Any]:
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
    features = classifier.features
    x = np.empty((len(body.rows), len(features)), dtype=np.float32)
    wanted = set(features)
    for r, row in enumerate(body.rows):
        missing = [f for f in features if f not in row]
        unknown = sorted(set(row) - wanted)
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
                f"v{classifier.version.version} takes {len(features)} features",
            )
        values = [row[f] for f in features]
        if not all(math.isfinite(v) for v in values):
            raise ApiError(422, "invalid_features", f"row {r}: values must be finite numbers")
        x[r] = values
    result = classifier.predict(x)
    return {
        "model": body.model,
        "version": classifier.version.version,
        "predictions": [
            {
                **({"id": body.ids[i]} if body.ids else {}),
                "label": label,
                "confidence": round(float(confidence), 6),
            }
            for i, (label, confidence) in enumerate(
                zip(result.labels, result.confidence.tolist(), strict=True)
            )
        ],
    }


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
