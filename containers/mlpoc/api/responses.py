"""The one error shape, the handlers that give every error that shape, and the error responses
each route documents in the OpenAPI contract."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from mlpoc.api.schemas import ErrorBody
from mlpoc.errors import ApiError, Refused

log = logging.getLogger("mlpoc.api")

DESCRIPTIONS = {
    401: "Missing or wrong X-API-Key",
    404: "No such job, model, version or stored prediction",
    405: "Method not allowed (the Allow header lists the allowed ones)",
    409: "Conflict: the id exists, the pointer moved, nothing to roll back or retrain",
    413: "The body is over the size limit",
    422: "The request is not valid (the details say where)",
    500: "Internal error: the server log has the cause (no trace is ever sent)",
    503: "A store the request reads was throttled: retry",
}
# what a refusal's code answers
REFUSED_STATUS = {
    "not_found": 404,
    "unknown_label": 422,
    "conflict": 409,
    "no_model": 409,
    "no_corrections": 409,
    "no_gpu_pool": 422,
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses a route documents, each with the one error shape."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names one route's at most)."""
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message, error.details), error.status)

    @app.exception_handler(Refused)
    async def refused(_: Request, error: Refused) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message), REFUSED_STATUS[error.code])

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse(error_body("invalid_request", "the request is not valid", details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # noqa: PLR2004 - FastAPI's "error parsing the body"
            # a body that is not UTF-8 JSON: the same documented answer as any invalid body
            return JSONResponse(
                error_body(
                    "invalid_request",
                    "the body is not valid JSON (UTF-8): send a JSON object",
                    [{"where": "body", "problem": str(error.detail)}],
                ),
                422,
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        headers = dict(error.headers or {})
        if error.status_code == 405:  # noqa: PLR2004
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, str(error.detail)), error.status_code, headers)

    @app.exception_handler(Exception)
    async def crashed(_: Request, error: Exception) -> JSONResponse:
        log.exception("api.error")
        return JSONResponse(error_body("internal", "internal error; see the server log"), 500)
