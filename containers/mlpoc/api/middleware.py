"""The API's two guards before any route: the body size limit (413) and, on AWS, the check that a
request came through CloudFront (403)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from mlpoc.api.responses import error_body
from mlpoc.errors import ApiError

ORIGIN_HEADER = b"x-origin-verify"


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
