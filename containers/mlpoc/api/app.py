"""The FastAPI application. ``create_app(settings, clients)`` builds it; nothing runs at import.

Every route but ``/healthz`` needs the ``X-API-Key`` header (compared in constant time), and on
AWS every request but ``/healthz`` the ``X-Origin-Verify`` header CloudFront adds (so nothing
reaches the API around CloudFront). ``/healthz`` says only that the process is up; the loaded
models are at ``/v1/health``, behind the key. Every 4xx/5xx has one shape
(:class:`~mlpoc.api.schemas.ErrorBody`), and a server error never shows a stack trace.

The routes are in :mod:`mlpoc.api.routes`, one module per resource; what they need comes from
:mod:`mlpoc.api.deps`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from mlpoc.api.deps import ServerDep, Services, require_key
from mlpoc.api.lookups import Lookups
from mlpoc.api.middleware import BodyLimit, KeyCheck, OriginCheck
from mlpoc.api.responses import errors, install
from mlpoc.api.routes import annotations as annotation_routes
from mlpoc.api.routes import feature_sets, jobs, models, pages, predictions, quality
from mlpoc.api.serving import ModelServer
from mlpoc.api.settings import ApiSettings
from mlpoc.aws.clients import Clients
from mlpoc.models.registry import Registry
from mlpoc.quality.input_samples import RequestSampler
from mlpoc.runtime.ledger import Ledger
from mlpoc.runtime.scaling import nudger

ROUTERS = (
    jobs.router,
    models.router,
    feature_sets.router,
    quality.router,
    predictions.router,
    annotation_routes.router,
    pages.router,
)


def create_app(
    settings: ApiSettings, clients: Clients, *, start_poller: bool = True, ecs: Any = None
) -> FastAPI:
    """``ecs``: the client of the scale-from-zero nudge (on AWS, when the stack names the
    worker services); None: no nudge."""
    runtime = settings.runtime
    registry = Registry(clients.dynamodb, runtime.models_table)
    server = ModelServer(
        registry=registry,
        s3=clients.s3,
        bucket=runtime.model_bucket,
        pinned=settings.pinned,
        poll_seconds=settings.poll_seconds,
    )

    sampler = RequestSampler(
        s3=clients.s3,
        bucket=runtime.data_bucket,
        rate=settings.sample_rate,
        max_rows=settings.sample_max_rows,
        flush_seconds=settings.sample_flush_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if start_poller:
            server.start()
            sampler.start()
        yield
        server.stop()
        sampler.stop()  # writes what it holds

    app = FastAPI(
        title="mlpoc API",
        version="1",
        description="Jobs, models, stored and realtime predictions, annotations.",
        lifespan=lifespan,
        responses=errors(500),  # any route, if something breaks; never with a trace
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.services = Services(
        settings=settings,
        clients=clients,
        ledger=Ledger(clients.dynamodb, runtime.jobs_table),
        registry=registry,
        server=server,
        sampler=sampler,
        lookups=Lookups(clients.dynamodb, runtime.features_table),
        nudge=nudger(settings.worker_services, ecs) if ecs is not None else None,
    )
    app.state.api_key = settings.api_key.encode()
    # the last added runs first: CloudFront's header, then the key, then the body's size
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(KeyCheck, key=app.state.api_key)
    if settings.origin_secret:
        app.add_middleware(OriginCheck, secret=settings.origin_secret)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Up or not: what a health check needs, and nothing about the models."""
        return {"status": "ok"}

    @app.get(
        "/v1/health", tags=["health"], dependencies=[Depends(require_key)], responses=errors(401)
    )
    def health(models: ServerDep) -> dict[str, Any]:
        """The model versions this process serves, and any new version it refused."""
        return {"status": "ok", "models": models.status(), "sampling": sampler.status()}

    install(app)
    pages.mount_static(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
