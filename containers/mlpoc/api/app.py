"""The FastAPI application. ``create_app(settings, clients)`` builds it; nothing runs at import.

Every route but ``/healthz`` needs the ``X-API-Key`` header (compared in constant time), and on
AWS every request but ``/healthz`` the ``X-Origin-Verify`` header CloudFront adds (so nothing
reaches the API around CloudFront). ``/healthz`` says only that the process is up; the loaded
models are at ``/v1/health``, behind the key. Every 4xx/5xx has one shape:
``{"error": {"code": "...", "message": "...", "details": [...]}}``, and a server error never
shows a stack trace.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlpoc import datasets, dynamo, jobs, layout, tables
from mlpoc.api.serving import ModelServer
from mlpoc.api.settings import ApiSettings
from mlpoc.aws import Clients
from mlpoc.contracts import SCHEMA_VERSION, Job, S3Uri, parse_job, queue_for
from mlpoc.errors import ApiError, JobRejected, PointerMoved, RegistryError
from mlpoc.ledger import Ledger
from mlpoc.registry import Registry

log = logging.getLogger("mlpoc.api")

LIST_LIMIT = 100
ORIGIN_HEADER = b"x-origin-verify"


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


# -- request bodies ------------------------------------------------------------------------------
class PredictRequest(BaseModel):
    model: str = Field(min_length=1, max_length=64)
    rows: list[dict[str, float]] = Field(min_length=1)
    ids: list[str] | None = None


class PromoteRequest(BaseModel):
    version: int = Field(ge=1)


class AnnotationRequest(BaseModel):
    item_id: str = Field(min_length=1, max_length=512)
    label: str = Field(min_length=1, max_length=64)


class BodyLimit:
    """Refuse request bodies over the limit (413) before the app reads them."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(
                error_body("payload_too_large", f"the body is over {self.limit} bytes"), 413
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise ApiError(413, "payload_too_large", f"the body is over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


class OriginCheck:
    """Refuse (403) every request but /healthz that lacks CloudFront's X-Origin-Verify value."""

    def __init__(self, app: Callable[..., Awaitable[None]], secret: str) -> None:
        self.app, self.secret = app, secret.encode()

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(ORIGIN_HEADER, b"")
        if not hmac.compare_digest(sent, self.secret):
            response = JSONResponse(
                error_body(
                    "forbidden",
                    "this address serves only requests that come through the API's CloudFront "
                    "address (the ApiUrl output)",
                ),
                403,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: ApiSettings, clients: Clients, *, start_poller: bool = True) -> FastAPI:
    runtime = settings.runtime
    ledger = Ledger(clients.dynamodb, runtime.jobs_table)
    registry = Registry(clients.dynamodb, runtime.models_table)
    server = ModelServer(
        registry=registry,
        s3=clients.s3,
        bucket=runtime.model_bucket,
        pinned=settings.pinned,
        poll_seconds=settings.poll_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if start_poller:
            server.start()
        yield
        server.stop()

    app = FastAPI(
        title="mlpoc API",
        version="1",
        description="Jobs, models, stored and realtime predictions, annotations.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.models = server
    app.state.api_key = settings.api_key.encode()
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.origin_secret:
        app.add_middleware(OriginCheck, secret=settings.origin_secret)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Up or not: what a health check needs, and nothing about the models."""
        return {"status": "ok"}

    @app.get("/v1/health", tags=["health"], dependencies=[Depends(require_key)])
    def health() -> dict[str, Any]:
        """The model versions this process serves, and any new version it refused."""
        return {"status": "ok", "models": server.status()}

    context = ApiDeps(
        settings=settings, clients=clients, ledger=ledger, registry=registry, server=server
    )
    _error_handlers(app)
    _pages(app)
    _jobs(app, context)
    _models(app, context)
    _predictions(app, context)
    _annotations(app, context)
    return app


@dataclass(frozen=True)
class ApiDeps:
    settings: ApiSettings
    clients: Clients
    ledger: Ledger
    registry: Registry
    server: ModelServer

    def enqueue(self, job: Job) -> dict[str, Any]:
        runtime = self.settings.runtime
        queue = queue_for(job.type, runtime)
        if not jobs.submit(self.ledger, self.clients.sqs, queue_url=queue, job=job, source="api"):
            raise ApiError(409, "conflict", f"job {job.job_id!r} exists already")
        return {"job_id": job.job_id, "status": "QUEUED"}


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message, error.details), error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse(error_body("invalid_request", "the request is not valid", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), error.status_code)

    @app.exception_handler(Exception)
    async def crashed(_: Request, error: Exception) -> JSONResponse:
        log.exception("api.error")
        return JSONResponse(error_body("internal", "internal error; see the server log"), 500)


async def require_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Every route but /healthz: the X-API-Key header, compared in constant time."""
    expected: bytes = request.app.state.api_key
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected):
        raise ApiError(401, "unauthorized", "missing or wrong API key")


def _router() -> APIRouter:
    return APIRouter(dependencies=[Depends(require_key)])


def _jobs(app: FastAPI, ctx: ApiDeps) -> None:
    router = _router()
    runtime, ledger = ctx.settings.runtime, ctx.ledger

    @router.post("/v1/jobs", status_code=202, tags=["jobs"])
    async def submit_job(request: Request) -> dict[str, Any]:
        try:
            message = json.loads(await request.body())
        except json.JSONDecodeError as error:
            raise ApiError(422, "invalid_request", f"the body is not JSON ({error})") from None
        if not isinstance(message, dict):
            raise ApiError(422, "invalid_request", "the body must be a JSON object")
        message.setdefault("schema", SCHEMA_VERSION)
        message.setdefault("job_id", f"api-{uuid.uuid4().hex[:16]}")
        try:
            job = parse_job(json.dumps(message), data_bucket=runtime.data_bucket)
        except JobRejected as rejected:
            raise ApiError(422, "invalid_job", rejected.reason) from None
        return ctx.enqueue(job)

    @router.get("/v1/jobs", tags=["jobs"])
    def list_jobs(limit: int = 50) -> dict[str, Any]:
        records = ledger.recent(max(1, min(limit, LIST_LIMIT)))
        return {"jobs": [public_job(r) for r in records]}

    @router.get("/v1/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str) -> dict[str, Any]:
        record = ledger.get(job_id)
        if record is None:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return public_job(record)

    app.include_router(router)


def _models(app: FastAPI, ctx: ApiDeps) -> None:
    router = _router()
    registry = ctx.registry

    @router.get("/v1/models", tags=["models"])
    def list_models() -> dict[str, Any]:
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

    @router.get("/v1/models/{name}", tags=["models"])
    def get_model(name: str) -> dict[str, Any]:
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
                }
                for v in versions
            ],
        }

    @router.post("/v1/models/{name}/promote", tags=["models"])
    def promote(name: str, body: PromoteRequest) -> dict[str, Any]:
        try:
            pointer = registry.promote(name, body.version)
        except RegistryError as error:
            raise ApiError(404, "not_found", str(error)) from None
        except PointerMoved as error:
            raise ApiError(409, "conflict", str(error)) from None
        return {"model": name, "promoted": pointer.promoted, "history": pointer.history}

    @router.post("/v1/models/{name}/rollback", tags=["models"])
    def rollback(name: str) -> dict[str, Any]:
        try:
            pointer = registry.rollback(name)
        except RegistryError as error:
            raise ApiError(409, "nothing_to_roll_back", str(error)) from None
        except PointerMoved as error:
            raise ApiError(409, "conflict", str(error)) from None
        return {"model": name, "promoted": pointer.promoted, "history": pointer.history}

    app.include_router(router)


def _predictions(app: FastAPI, ctx: ApiDeps) -> None:
    router = _router()
    settings, runtime, clients, server = ctx.settings, ctx.settings.runtime, ctx.clients, ctx.server

    @router.post("/v1/predict", tags=["predictions"])
    async def predict(body: PredictRequest) -> dict[str, Any]:
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

    @router.get("/v1/predictions/{model}/{item_id}", tags=["predictions"])
    def stored_prediction(model: str, item_id: str) -> dict[str, Any]:
        item = dynamo.deserialize(
            clients.dynamodb.get_item(
                TableName=runtime.predictions_table,
                Key={"model": {"S": model}, "item_id": {"S": item_id}},
            ).get("Item")
        )
        if item is None:
            raise ApiError(404, "not_found", f"no stored prediction for {model}/{item_id}")
        item.pop("features", None)
        item.pop("review", None)
        return item

    app.include_router(router)


def _annotations(app: FastAPI, ctx: ApiDeps) -> None:
    router = _router()
    runtime, clients, registry = ctx.settings.runtime, ctx.clients, ctx.registry

    @router.get("/v1/annotations/{model}", tags=["annotations"])
    def review_queue(model: str, limit: int = 24) -> dict[str, Any]:
        response = clients.dynamodb.query(
            TableName=runtime.predictions_table,
            IndexName=tables.REVIEW_INDEX,
            KeyConditionExpression="review = :m",
            ExpressionAttributeValues={":m": {"S": model}},
            Limit=max(1, min(limit, LIST_LIMIT)),
        )
        items = []
        for raw in response["Items"]:
            item = dynamo.deserialize(raw) or {}
            items.append(
                {
                    "item_id": item["item_id"],
                    "label": item["label"],
                    "confidence": item["confidence"],
                    "version": item["version"],
                    "features": json.loads(item["features"]) if "features" in item else None,
                }
            )
        return {"model": model, "items": items}

    @router.post("/v1/annotations/{model}", status_code=201, tags=["annotations"])
    def annotate(model: str, body: AnnotationRequest) -> dict[str, Any]:
        key = {"model": {"S": model}, "item_id": {"S": body.item_id}}
        prediction = dynamo.deserialize(
            clients.dynamodb.get_item(TableName=runtime.predictions_table, Key=key).get("Item")
        )
        if prediction is None:
            raise ApiError(404, "not_found", f"no stored prediction for {model}/{body.item_id}")
        classes = registry.get(model, int(prediction["version"])).classes
        if body.label not in classes:
            raise ApiError(422, "unknown_label", f"label must be one of {classes}")
        now = time.time()
        clients.dynamodb.put_item(
            TableName=runtime.annotations_table,
            Item=dynamo.serialize(
                {
                    "model": model,
                    "item_id": body.item_id,
                    "label": body.label,
                    "predicted_label": prediction["label"],
                    "confidence": prediction["confidence"],
                    "features": prediction.get("features"),
                    "annotated_at": now,
                }
            ),
        )
        # out of the review queue (a later prediction below the threshold puts it back)
        clients.dynamodb.update_item(
            TableName=runtime.predictions_table, Key=key, UpdateExpression="REMOVE review"
        )
        return {"model": model, "item_id": body.item_id, "label": body.label}

    @router.post("/v1/annotations/{model}/retrain", status_code=202, tags=["annotations"])
    def retrain(model: str) -> dict[str, Any]:
        try:
            base = registry.resolve(model, "current")
        except RegistryError as error:
            raise ApiError(409, "no_model", str(error)) from None
        corrections = annotations_of(model)
        usable = [c for c in corrections if c.get("features")]
        if not usable:
            raise ApiError(409, "no_corrections", f"no corrected labels for {model!r} yet")
        text = datasets.fetch(clients.s3, S3Uri.parse(base.dataset))
        header = next(csv.reader(io.StringIO(text)))
        out = io.StringIO()
        out.write(text if text.endswith("\n") else text + "\n")
        writer = csv.writer(out, lineterminator="\n")
        for correction in usable:
            values = dict(zip(base.features, json.loads(correction["features"]), strict=True))
            values["label"] = correction["label"]
            writer.writerow([values.get(column, "") for column in header])
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        key = layout.dataset_version_key(model, stamp, uuid.uuid4().hex[:6])
        clients.s3.put_object(Bucket=runtime.data_bucket, Key=key, Body=out.getvalue().encode())
        job = Job(
            job_id=f"retrain-{model}-{stamp}-{uuid.uuid4().hex[:6]}",
            type="train",
            model=model,
            dataset=S3Uri(runtime.data_bucket, key),
            params={"plugin": base.plugin},
        )
        queued = ctx.enqueue(job)
        return {
            **queued,
            "dataset": str(job.dataset),
            "corrections": len(usable),
            "base_version": base.version,
        }

    def annotations_of(model: str) -> list[dict[str, Any]]:
        return list(
            dynamo.items(
                clients.dynamodb.query,
                TableName=runtime.annotations_table,
                KeyConditionExpression="#m = :m",
                ExpressionAttributeNames={"#m": "model"},
                ExpressionAttributeValues={":m": {"S": model}},
            )
        )

    app.include_router(router)


PAGES = {
    "annotate": (
        "Review predictions",
        "The model was unsure about these. Confirm its answer or pick the right one; then retrain.",
    ),
    "models": ("Models", "Every trained version with its held-out scores. Promote or roll back."),
    "jobs": ("Jobs", "Training and prediction jobs, newest first. Updates every two seconds."),
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _pages(app: FastAPI) -> None:
    """Server-rendered pages; the data comes from the API with the key the person enters."""
    templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    def render(request: Request, page: str, model: str | None) -> HTMLResponse:
        title, lead = PAGES[page]
        return templates.TemplateResponse(
            request,
            f"{page}.html",
            {"page": page, "model": model, "title": title, "lead": lead},
            headers=PAGE_HEADERS,
        )

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/jobs")

    @app.get("/ui/annotate/{model}", include_in_schema=False)
    def annotate_page(request: Request, model: str) -> HTMLResponse:
        return render(request, "annotate", model)

    @app.get("/ui/models/{model}", include_in_schema=False)
    def models_page(request: Request, model: str) -> HTMLResponse:
        return render(request, "models", model)

    @app.get("/ui/jobs", include_in_schema=False)
    def jobs_page(request: Request) -> HTMLResponse:
        return render(request, "jobs", None)


def public_job(record: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "job_id", "status", "type", "model", "dataset", "requested_version", "attempts",
        "reason", "result", "created_at", "started_at", "finished_at", "source",
    )  # fmt: skip
    return {k: record[k] for k in keep if k in record}
