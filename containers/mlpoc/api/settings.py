"""API settings: the runtime's resource names plus the API's own knobs, from the environment.

The API key is never in the environment on AWS: ``MLPOC_API_KEY_SECRET_ARN`` names the Secrets
Manager secret that holds it. Local mode (no AWS) sets ``MLPOC_API_KEY`` directly. Likewise
``MLPOC_ORIGIN_SECRET_ARN`` names the secret CloudFront sends in the ``X-Origin-Verify`` header:
when it is set, a request without that header is refused (it did not come through CloudFront).
``MLPOC_API_DOCS=off`` serves no ``/docs``, ``/redoc`` or ``/openapi.json`` (the stack sets it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlpoc.aws.clients import client
from mlpoc.errors import SettingsError
from mlpoc.runtime.environment import Settings, integer, number, switch
from mlpoc.runtime.scaling import WorkerServices

MIN_KEY_CHARS = 16


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    runtime: Settings
    api_key: str
    poll_seconds: float
    pinned: dict[str, int]  # model -> version sealed into this deployment
    max_body_bytes: int
    max_rows: int
    docs: bool = True  # /docs, /redoc, /openapi.json
    origin_secret: str | None = None  # the X-Origin-Verify value CloudFront sends
    worker_services: WorkerServices | None = None  # on AWS: the scale-from-zero nudge's services
    # the share of realtime requests whose rows go to input-samples/ for the monitor (0: none),
    # at most ``sample_max_rows`` rows per flush, flushed every ``sample_flush_seconds``
    sample_rate: float = 0.0
    sample_max_rows: int = 1_000
    sample_flush_seconds: float = 60.0

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        read_secret: Callable[[str], str] | None = None,
    ) -> ApiSettings:
        env = os.environ if env is None else env
        runtime = Settings.from_env("api", env)
        return cls(
            runtime=runtime,
            api_key=_api_key(env, read_secret or _secrets_manager),
            poll_seconds=number(env, "MLPOC_MODEL_POLL_SECONDS", 5.0, 0.1, 3600.0),
            pinned=_pinned(env.get("MLPOC_PINNED_MODELS", "")),
            max_body_bytes=integer(env, "MLPOC_MAX_BODY_BYTES", 1_048_576, 1, 100 * 1_048_576),
            max_rows=integer(env, "MLPOC_MAX_PREDICT_ROWS", 1000, 1, 100_000),
            docs=switch(env, "MLPOC_API_DOCS", default=True),
            origin_secret=_origin_secret(env, read_secret or _secrets_manager),
            worker_services=WorkerServices.from_env(env),
            sample_rate=number(env, "MLPOC_SAMPLE_RATE", 0.1, 0.0, 1.0),
            sample_max_rows=integer(env, "MLPOC_SAMPLE_MAX_ROWS", 1_000, 1, 100_000),
            sample_flush_seconds=number(env, "MLPOC_SAMPLE_FLUSH_SECONDS", 60.0, 0.1, 3600.0),
        )


def _secrets_manager(arn: str) -> str:
    value: str = client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    return value


def _api_key(env: Mapping[str, str], read_secret: Callable[[str], str]) -> str:
    arn = env.get("MLPOC_API_KEY_SECRET_ARN")
    key = read_secret(arn).strip() if arn else env.get("MLPOC_API_KEY", "")
    if len(key) < MIN_KEY_CHARS:
        raise SettingsError(
            "no usable API key: set MLPOC_API_KEY_SECRET_ARN to the secret holding it (on AWS) "
            f"or MLPOC_API_KEY (local mode); it must be at least {MIN_KEY_CHARS} characters"
        )
    return key


def _origin_secret(env: Mapping[str, str], read_secret: Callable[[str], str]) -> str | None:
    arn = env.get("MLPOC_ORIGIN_SECRET_ARN")
    if not arn:
        return None
    value = read_secret(arn).strip()
    if len(value) < MIN_KEY_CHARS:
        raise SettingsError(
            f"the origin secret in {arn} is under {MIN_KEY_CHARS} characters: it must be the "
            "value the stack generated for CloudFront's X-Origin-Verify header"
        )
    return value


def _pinned(raw: str) -> dict[str, int]:
    """``digits:3,other:1`` -> {"digits": 3, "other": 1}."""
    pinned: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        model, _, version = part.partition(":")
        if not model or not version.isdigit() or int(version) < 1:
            raise SettingsError(
                f"MLPOC_PINNED_MODELS must look like 'digits:3,other:1'; got {raw!r}"
            )
        pinned[model] = int(version)
    return pinned
