"""Is the model still good: a model's quality in numbers (``/quality``) and as SVG charts
(``/charts/...``) for the models page: the metric across versions, a confusion matrix, two
versions side by side, realized accuracy over time, and the drifting features of the latest
monitor report (:mod:`mlpoc.worker.monitor`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from mlpoc.api.deps import ClientsDep, RegistryDep, SettingsDep, require_key
from mlpoc.api.responses import errors
from mlpoc.api.settings import ApiSettings
from mlpoc.aws import bucket_layout
from mlpoc.aws.clients import Clients
from mlpoc.data.corrections import corrections
from mlpoc.errors import ApiError
from mlpoc.models import runs
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.quality import charts, monitoring

router = APIRouter(
    prefix="/v1/models", tags=["models"], dependencies=[Depends(require_key)], responses=errors(401)
)
SVG = "image/svg+xml"
CHART_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
VersionQuery = Annotated[int | None, Query(ge=1, description="a version; default: the live one")]


def _versions(registry: Registry, name: str) -> list[ModelVersion]:
    found = sorted(registry.versions(name), key=lambda v: v.version)
    if not found:
        raise ApiError(404, "not_found", f"no model {name!r}")
    return found


def latest_report(clients: Clients, settings: ApiSettings, name: str) -> dict[str, Any] | None:
    return runs.read_json(
        clients.s3, settings.runtime.model_bucket, bucket_layout.latest_report_key(name)
    )


def _realized(
    clients: Clients, settings: ApiSettings, name: str, versions: list[ModelVersion]
) -> list[dict[str, Any]]:
    return monitoring.realized(
        corrections(clients.dynamodb, settings.runtime.annotations_table, name), versions
    )


def _points(registry: Registry, name: str, versions: list[ModelVersion]) -> list[charts.Point]:
    pointer = registry.pointer(name)
    live = pointer.promoted if pointer else None
    promoted = {*(pointer.history if pointer else []), *([live] if live else [])}
    return [
        charts.Point(v.version, v.metric, v.version in promoted, v.version == live)
        for v in versions
        if v.metric_name in v.metrics
    ]


@router.get("/{name}/quality", responses=errors(404, 422))
def quality(
    name: str, registry: RegistryDep, clients: ClientsDep, settings: SettingsDep
) -> dict[str, Any]:
    """The promotion metric of every version, realized accuracy per served version (from the
    corrections, now) and the latest monitor report (drift), if a monitor job has run."""
    versions = _versions(registry, name)
    return {
        "model": name,
        "metric": versions[-1].metric_name,
        "versions": [
            {"version": p.version, "value": p.value, "promoted": p.promoted, "live": p.live}
            for p in _points(registry, name, versions)
        ],
        "realized": _realized(clients, settings, name, versions),
        "monitor": latest_report(clients, settings, name),
    }


def _svg(text: str) -> Response:
    return Response(text, media_type=SVG, headers=CHART_HEADERS)


def _pick(
    registry: Registry, name: str, versions: list[ModelVersion], number: int | None
) -> ModelVersion:
    if number is None:
        pointer = registry.pointer(name)
        number = pointer.promoted if pointer and pointer.promoted else versions[-1].version
    for version in versions:
        if version.version == number:
            return version
    raise ApiError(404, "not_found", f"model {name!r} has no version {number}")


@router.get("/{name}/charts/metric.svg", response_class=Response, responses=errors(404, 422))
def metric_chart(name: str, registry: RegistryDep) -> Response:
    versions = _versions(registry, name)
    points = _points(registry, name, versions)
    return _svg(charts.metric_over_versions(name, versions[-1].metric_name, points))


@router.get("/{name}/charts/confusion.svg", response_class=Response, responses=errors(404, 422))
def confusion_chart(
    name: str,
    registry: RegistryDep,
    clients: ClientsDep,
    settings: SettingsDep,
    version: VersionQuery = None,
) -> Response:
    chosen = _pick(registry, name, _versions(registry, name), version)
    metadata = runs.metadata(clients.s3, settings.runtime.model_bucket, chosen) or {}
    confusion = (((metadata.get("run") or {}).get("evaluation") or {}).get("confusion")) or {}
    return _svg(
        charts.confusion_matrix(
            name, chosen.version, confusion.get("labels", []), confusion.get("matrix", [])
        )
    )


@router.get("/{name}/charts/compare.svg", response_class=Response, responses=errors(404, 422))
def compare_chart(  # noqa: PLR0917 - FastAPI's parameters: path, services and queries
    name: str,
    registry: RegistryDep,
    clients: ClientsDep,
    settings: SettingsDep,
    a: VersionQuery = None,
    b: VersionQuery = None,
) -> Response:
    """Two versions side by side (default: the one before the newest, and the newest)."""
    versions = _versions(registry, name)
    second = _pick(registry, name, versions, b if b is not None else versions[-1].version)
    default_a = versions[-2].version if len(versions) > 1 else versions[-1].version
    first = _pick(registry, name, versions, a if a is not None else default_a)
    rows: list[tuple[str, float | None, float | None]] = [
        (metric, first.metrics.get(metric), second.metrics.get(metric))
        for metric in sorted({*first.metrics, *second.metrics})
    ]
    per_class = [
        ((((runs.metadata(clients.s3, settings.runtime.model_bucket, v) or {}).get("run") or {})
          .get("evaluation") or {}).get("per_class") or {})
        for v in (first, second)
    ]  # fmt: skip
    for label in sorted({*per_class[0], *per_class[1]}, key=_natural):
        rows.append(
            (
                f"F1 of class {label}",
                (per_class[0].get(label) or {}).get("f1"),
                (per_class[1].get(label) or {}).get("f1"),
            )
        )
    return _svg(charts.side_by_side(name, first.version, second.version, rows))


def _natural(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@router.get("/{name}/charts/realized.svg", response_class=Response, responses=errors(404, 422))
def realized_chart(
    name: str,
    registry: RegistryDep,
    clients: ClientsDep,
    settings: SettingsDep,
    version: VersionQuery = None,
) -> Response:
    versions = _versions(registry, name)
    chosen = _pick(registry, name, versions, version)
    found = next(
        (r for r in _realized(clients, settings, name, versions) if r["version"] == chosen.version),
        None,
    )
    days = [(d["day"], d["realized"], d["reviewed"]) for d in (found or {}).get("by_day", [])]
    held_out = chosen.metrics.get("accuracy")
    return _svg(charts.realized_over_time(name, chosen.version, days, held_out))


@router.get("/{name}/charts/drift.svg", response_class=Response, responses=errors(404, 422))
def drift_chart(
    name: str,
    clients: ClientsDep,
    settings: SettingsDep,
    feature: Annotated[str, Query(min_length=1, max_length=256)],
    version: VersionQuery = None,
) -> Response:
    """One feature of the latest monitor report: its bins, training reference against recent."""
    report = latest_report(clients, settings, name)
    if report is None:
        raise ApiError(
            404, "not_found", f"no monitor report for {name!r}: run `mlpoc monitor run {name}`"
        )
    judged = [v for v in report["versions"] if v.get("judged")]
    chosen = next((v for v in judged if version in (None, v["version"])), None)
    if chosen is None:
        raise ApiError(
            404, "not_found", f"the latest report judged no version {version or ''}".strip()
        )
    found = chosen["features"].get(feature) or chosen.get("output", {}).get(feature)
    if found is None:
        raise ApiError(404, "not_found", f"the latest report has no feature {feature!r}")
    return _svg(charts.distributions(name, chosen["version"], feature, found))
