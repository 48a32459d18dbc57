"""Annotations: the review queue, a person's correction, and the retrain it feeds
(:mod:`mlpoc.data.corrections` does the work)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from mlpoc.api.deps import Services, get_services, require_key
from mlpoc.api.responses import errors
from mlpoc.api.schemas import AnnotationRequest, list_size
from mlpoc.data.corrections import Annotations

router = APIRouter(
    prefix="/v1/annotations",
    tags=["annotations"],
    dependencies=[Depends(require_key)],
    responses=errors(401),
)


async def get_annotations(services: Annotated[Services, Depends(get_services)]) -> Annotations:
    runtime = services.settings.runtime
    return Annotations(
        runtime, services.clients, services.ledger, services.registry, services.nudge
    )


AnnotationsDep = Annotated[Annotations, Depends(get_annotations)]


@router.get("/{model}", responses=errors(422))
def review_queue(model: str, annotations: AnnotationsDep, limit: int = 24) -> dict[str, Any]:
    """The model's least confident stored predictions, for a person to confirm or correct."""
    return {
        "model": model,
        "items": annotations.review_queue(model, list_size(limit)),
    }


@router.post("/{model}", status_code=201, responses=errors(404, 413, 422))
def annotate(model: str, body: AnnotationRequest, annotations: AnnotationsDep) -> dict[str, Any]:
    """A person's label for a stored prediction."""
    annotations.correct(model, body.item_id, body.label)
    return {"model": model, "item_id": body.item_id, "label": body.label}


@router.post("/{model}/retrain", status_code=202, responses=errors(409, 413, 422))
def retrain(model: str, annotations: AnnotationsDep) -> dict[str, Any]:
    """Train on the promoted version's dataset plus every correction (a new dataset version)."""
    return annotations.retrain(model)
