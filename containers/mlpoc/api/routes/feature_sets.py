"""Feature sets: their versions and promotion pointer (promote, roll back), and which version
each served model reads. Versions are published by ``features`` jobs (``POST /v1/jobs``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from mlpoc.api.deps import RegistryDep, ServerDep, require_key
from mlpoc.api.responses import errors
from mlpoc.api.schemas import PromoteRequest
from mlpoc.data import feature_sets
from mlpoc.errors import ApiError, PointerMoved, RegistryError
from mlpoc.models.registry import Pointer

router = APIRouter(
    prefix="/v1/features",
    tags=["features"],
    dependencies=[Depends(require_key)],
    responses=errors(401),
)


def _sets(registry: RegistryDep) -> feature_sets.FeatureSets:
    return feature_sets.FeatureSets(registry.dynamodb, registry.table)


def _pointer(name: str, pointer: Pointer) -> dict[str, Any]:
    return {"set": name, "promoted": pointer.promoted, "history": pointer.history}


@router.get("")
def list_feature_sets(registry: RegistryDep) -> dict[str, Any]:
    return {
        "feature_sets": [
            {**_pointer(name, p), "versions": p.next_version}
            for name, p in _sets(registry).pointers().items()
        ]
    }


@router.get("/{name}", responses=errors(404, 422))
def get_feature_set(name: str, registry: RegistryDep, server: ServerDep) -> dict[str, Any]:
    """Every version (key, columns, rows, snapshot) and which version each held model reads."""
    sets = _sets(registry)
    versions = sets.versions(name)
    if not versions:
        raise ApiError(404, "not_found", f"no feature set {name!r}")
    pointer = sets.pointer(name)
    read_by = {
        model: held["features"]
        for model, held in server.status().items()
        if held.get("features", {}).get("set") == name
    }
    return {
        "set": name,
        "promoted": pointer.promoted if pointer else None,
        "history": pointer.history if pointer else [],
        "versions": [v.to_json() for v in versions],
        "read_by": read_by,
    }


@router.post("/{name}/promote", responses=errors(404, 409, 413, 422))
def promote(name: str, body: PromoteRequest, registry: RegistryDep) -> dict[str, Any]:
    """Make a version the promoted one: each model reads it from its next poll on if it has
    the model's columns, with their types (else the model keeps its own; ``/v1/health``)."""
    try:
        pointer = _sets(registry).promote(name, body.version)
    except RegistryError as error:
        raise ApiError(404, "not_found", str(error)) from None
    except PointerMoved as error:
        raise ApiError(409, "conflict", str(error)) from None
    return _pointer(name, pointer)


@router.post("/{name}/rollback", responses=errors(409, 413, 422))
def rollback(name: str, registry: RegistryDep) -> dict[str, Any]:
    """Re-promote the version that was promoted before the current one."""
    try:
        pointer = _sets(registry).rollback(name)
    except RegistryError as error:
        raise ApiError(409, "nothing_to_roll_back", str(error)) from None
    except PointerMoved as error:
        raise ApiError(409, "conflict", str(error)) from None
    return _pointer(name, pointer)
