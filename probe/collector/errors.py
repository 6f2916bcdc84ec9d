"""The collector API's one error map: every failure becomes JSON ``{"error": "..."}``.

:class:`ApiError` is raised by routes and dependencies; :func:`install_error_handlers`
maps it, the validators' :class:`~probe.collector.validate.Rejected`, an unreachable
database (503, ``Retry-After``), FastAPI's request validation (422), routing errors (404,
405) and any bug (500, logged) to that body. Bad input is never a 5xx.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from probe.collector.ratelimit import take_token
from probe.collector.storage import StorageUnavailable
from probe.collector.validate import Rejected

log = logging.getLogger("probe.collector")


class ApiError(Rejected):
    """An error a route or a dependency answers with: the status, the message and any
    headers, the same shape as a refused upload's (:class:`Rejected`)."""


def rate_limited(wait_s: float) -> ApiError:
    """The 429 answer for a client that must wait ``wait_s`` seconds."""
    return ApiError(429, f"rate limit exceeded; retry in {wait_s:.0f} s",
                    headers={"Retry-After": str(max(1, int(wait_s + 0.999)))})


async def _api_error(_: Request, exc: Rejected) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def _unavailable(_: Request, exc: StorageUnavailable) -> JSONResponse:
    log.warning("storage unavailable: %s", exc)
    return JSONResponse({"error": f"{exc}; retry later"}, status_code=503,
                        headers={"Retry-After": "5"})


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # A request under /api/ that matched no route (404, 405) never reached the rate-limit
    # dependency: it takes its token here, as every request under /api/ does.
    wait_s = take_token(request)
    if wait_s > 0:
        return await _api_error(request, rate_limited(wait_s))
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "query")
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)


async def _bug(_: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error")
    return JSONResponse({"error": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.exception_handler(Rejected)(_api_error)  # ApiError is a Rejected
    app.exception_handler(StorageUnavailable)(_unavailable)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(Exception)(_bug)
