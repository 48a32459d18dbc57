"""Models: every version with its metrics, and the promotion pointer (promote, roll back)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from mlpoc.api.deps import RegistryDep, ServerDep, require_key
from mlpoc.api.responses import errors
from mlpoc.api.schemas import PromoteRequest
from mlpoc.api.serving import ModelServer
from mlpoc.data import feature_binding, feature_sets
from mlpoc.errors import ApiError, PointerMoved, RegistryError
from mlpoc.models.registry import Registry

router = APIRouter(
    prefix="/v1/models", tags=["models"], dependencies=[Depends(require_key)], responses=errors(401)
)


@router.get("")
def list_models(registry: RegistryDep) -> dict[str, Any]:
    return {
        "models": [
            {
                "model": p.model,
                "promoted": p.promoted,
                "promoted_metric": p.promoted_metric,
                "versions": p.next_version,
            }
            for p in registry.pointers()
        ]
    }


@router.get("/{name}", responses=errors(404, 422))
def get_model(name: str, registry: RegistryDep, server: ServerDep) -> dict[str, Any]:
    versions = registry.versions(name)
    if not versions:
        raise ApiError(404, "not_found", f"no model {name!r}")
    pointer = registry.pointer(name)
    return {
        "model": name,
        "promoted": pointer.promoted if pointer else None,
        "history": pointer.history if pointer else [],
        "versions": [
            {
                "version": v.version,
                "metrics": v.metrics,
                "sha256": v.sha256,
                "job_id": v.job_id,
                "dataset": v.dataset,
                "plugin": v.plugin,
                "classes": v.classes,
                "created_at": v.created_at,
                **({"feature_set": v.extra["feature_set"]} if "feature_set" in v.extra else {}),
            }
            for v in versions
        ],
        **({"features": bound.to_json()} if (bound := _reads(name, registry, server)) else {}),
    }


def _reads(name: str, registry: Registry, server: ModelServer) -> feature_binding.Binding | None:
    """The feature set version the model's requests by key read: the served one's, or (not
    loaded yet) the one its promoted version would read."""
    held = server.held(name)
    if held is not None:
        return held.features
    pointer = registry.pointer(name)
    if pointer is None or pointer.promoted is None:
        return None
    sets = feature_sets.FeatureSets(registry.dynamodb, registry.table)
    try:
        return feature_binding.binding(sets, registry.get(name, pointer.promoted))
    except RegistryError:
        return None


@router.post("/{name}/promote", responses=errors(404, 409, 413, 422))
def promote(name: str, body: PromoteRequest, registry: RegistryDep) -> dict[str, Any]:
    """Make a version the live one (the API swaps it in within its poll interval)."""
    try:
        pointer = registry.promote(name, body.version)
    except RegistryError as error:
        raise ApiError(404, "not_found", str(error)) from None
    except PointerMoved as error:
        raise ApiError(409, "conflict", str(error)) from None
    return {"model": name, "promoted": pointer.promoted, "history": pointer.history}


@router.post("/{name}/rollback", responses=errors(409, 413, 422))
def rollback(name: str, registry: RegistryDep) -> dict[str, Any]:
    """Re-promote the version that was live before the current one."""
    try:
        pointer = registry.rollback(name)
    except RegistryError as error:
        raise ApiError(409, "nothing_to_roll_back", str(error)) from None
    except PointerMoved as error:
        raise ApiError(409, "conflict", str(error)) from None
    return {"model": name, "promoted": pointer.promoted, "history": pointer.history}
