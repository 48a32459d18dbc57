"""The API's guards before any route, outermost first: on AWS, the check that a request came
through CloudFront (403); the API key of every /v1/ call (401), before its body is read or
parsed, so a caller without the key learns nothing about the route (not its methods, not its
body's shape); the body size limit (413)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from mlpoc.api.responses import error_body
from mlpoc.errors import ApiError

ORIGIN_HEADER = b"x-origin-verify"
KEY_HEADER = b"x-api-key"
KEYED_PREFIX = "/v1/"


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


class KeyCheck:
    """Refuse (401) every /v1/ request without the right X-API-Key, compared in constant time,
    whatever its method, path or body (the routes' own dependency checks it again)."""

    def __init__(self, app: Callable[..., Awaitable[None]], key: bytes) -> None:
        self.app, self.key = app, key

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(KEYED_PREFIX):
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(KEY_HEADER, b"")
        if not hmac.compare_digest(sent, self.key):
            response = JSONResponse(error_body("unauthorized", "missing or wrong API key"), 401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
