"""What a route needs, as FastAPI dependencies: the key check and the services. They are async,
so they run on the event loop (no thread hand-off per request). A test swaps any of them with
``app.dependency_overrides[get_registry] = ...``."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from mlpoc.api.lookups import Lookups
from mlpoc.api.serving import ModelServer
from mlpoc.api.settings import ApiSettings
from mlpoc.aws.clients import Clients
from mlpoc.errors import ApiError
from mlpoc.models.registry import Registry
from mlpoc.quality.input_samples import RequestSampler
from mlpoc.runtime.ledger import Ledger
from mlpoc.runtime.submission import Nudge

API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The API key (`mlpoc outputs` prints where it is; Secrets Manager on AWS)",
)


@dataclass(frozen=True)
class Services:
    """The API's clients and stores, built once by ``create_app``."""

    settings: ApiSettings
    clients: Clients
    ledger: Ledger
    registry: Registry
    server: ModelServer
    sampler: RequestSampler
    lookups: Lookups  # realtime requests by key: feature lookups, coalesced
    nudge: Nudge | None = None  # after a submit, on AWS: start a worker if none runs


async def require_key(
    request: Request, key: Annotated[str | None, Security(API_KEY)] = None
) -> None:
    """Every route but /healthz: the X-API-Key header, compared in constant time."""
    expected: bytes = request.app.state.api_key
    if key is None or not hmac.compare_digest(key.encode(), expected):
        raise ApiError(401, "unauthorized", "missing or wrong API key")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_settings(services: Annotated[Services, Depends(get_services)]) -> ApiSettings:
    return services.settings


async def get_clients(services: Annotated[Services, Depends(get_services)]) -> Clients:
    return services.clients


async def get_nudge(services: Annotated[Services, Depends(get_services)]) -> Nudge | None:
    return services.nudge


async def get_ledger(services: Annotated[Services, Depends(get_services)]) -> Ledger:
    return services.ledger


async def get_registry(services: Annotated[Services, Depends(get_services)]) -> Registry:
    return services.registry


async def get_server(services: Annotated[Services, Depends(get_services)]) -> ModelServer:
    return services.server


async def get_sampler(services: Annotated[Services, Depends(get_services)]) -> RequestSampler:
    return services.sampler


async def get_lookups(services: Annotated[Services, Depends(get_services)]) -> Lookups:
    return services.lookups


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ClientsDep = Annotated[Clients, Depends(get_clients)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ServerDep = Annotated[ModelServer, Depends(get_server)]
NudgeDep = Annotated[Nudge | None, Depends(get_nudge)]
SamplerDep = Annotated[RequestSampler, Depends(get_sampler)]
LookupsDep = Annotated[Lookups, Depends(get_lookups)]
