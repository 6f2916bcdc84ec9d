"""The collector's HTTP API (FastAPI), DESIGN.md "Collector".

- ``POST /api/v1/results``: a results file as the body (``Content-Encoding: gzip``
  allowed). ``201 {"id", "measurements"}`` when new, ``200`` with the same body when that
  file was stored before, ``4xx {"error"}`` otherwise, ``503`` when the database is down.
- ``GET /api/v1/measurements`` and ``GET /api/v1/summary``: queries (filters ``asn``,
  ``cc``, ``service``, ``function``, ``since``, ``until``).
- Admin (``Authorization: Bearer <--admin-token>``): ``GET /api/v1/results`` (export the
  index), ``GET /api/v1/results/{id}`` (the raw file), ``DELETE /api/v1/results/{id}``.
- ``GET /openapi.json``: the OpenAPI description.

Every error answer is JSON ``{"error": "..."}``; bad input is never a 5xx. Client
addresses are used only, in memory, by the rate limiter, and are never logged.
"""


import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from probe import __version__
from probe.collector.ratelimit import RateLimiter
from probe.collector.storage import Filters, Storage, StorageUnavailable
from probe.collector.validate import (
    MAX_BYTES_DEFAULT,
    MAX_LINES_DEFAULT,
    Rejected,
    check_filename,
    inflate,
    parse_upload,
)

log = logging.getLogger("probe.collector")

RESULTS_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl", "text/plain",
                       "application/octet-stream")
_SHA256 = r"^[0-9a-f]{64}$"


@dataclass(slots=True)
class CollectorConfig:
    max_bytes: int = MAX_BYTES_DEFAULT  # inflated results file
    max_lines: int = MAX_LINES_DEFAULT
    admin_token: str | None = None
    rate_limit_per_min: float = 600.0
    # Also run the reflector (probe.reflector) in the same process, on these UDP ports.
    reflector_host: str = "127.0.0.1"
    reflector_ports: list[int] = field(default_factory=list)


class Stored(BaseModel):
    id: str = Field(description="SHA-256 (hex) of the stored results file: its identity")
    measurements: int = Field(description="measurement lines indexed from the file")


class ErrorBody(BaseModel):
    error: str


class MeasurementItem(BaseModel):
    cursor: int
    upload_id: str
    line: int
    measurement: dict[str, Any]


class MeasurementPage(BaseModel):
    measurements: list[MeasurementItem]
    next: int | None = Field(description="pass as ?after= to get the next page; null at the end")


class SummaryRow(BaseModel):
    day: str
    asn: str
    cc: str
    network_type: str
    service: str
    function: str
    runs: int
    statuses: dict[str, int]
    reachable: int
    total: int
    methods: dict[str, int]


class SummaryBody(BaseModel):
    summary: list[SummaryRow]


class UploadInfo(BaseModel):
    id: str
    report_id: str
    received_at: str
    filename: str | None
    size_bytes: int
    measurements: int
    complete: bool
    measurement_start_time: str
    probe_asn: str
    probe_cc: str
    network_type: str
    software_name: str | None
    software_version: str | None


class UploadList(BaseModel):
    uploads: list[UploadInfo]
    next: str | None


class Deleted(BaseModel):
    id: str
    deleted: bool


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S",
                 "%Y-%m-%d")


def parse_time(name: str, value: str | None, end: bool) -> str | None:
    """A query time (UTC) in the results files' ``YYYY-MM-DD HH:MM:SS`` form."""
    if value is None:
        return None
    for fmt in _TIME_FORMATS:
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d" and end:
            moment += timedelta(days=1, seconds=-1)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    raise ApiError(422, f"{name}: expected a UTC time like 2016-11-04 or 2016-11-04T09:30:00Z")


def _filters(
    asn: Annotated[str | None, Query(max_length=16, description="e.g. AS36903")] = None,
    cc: Annotated[str | None, Query(max_length=2, description="country code, e.g. MA")] = None,
    service: Annotated[str | None, Query(max_length=64)] = None,
    function: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=32, description="UTC, inclusive")] = None,
    until: Annotated[str | None, Query(max_length=32, description="UTC, inclusive")] = None,
) -> Filters:
    if asn is not None:
        asn = asn.upper()
        if re.fullmatch(r"\d+", asn):
            asn = "AS" + asn
    return Filters(asn=asn, cc=cc.upper() if cc else None, service=service,
                   function=function, since=parse_time("since", since, end=False),
                   until=parse_time("until", until, end=True))


def create_app(storage: Storage, config: CollectorConfig | None = None) -> FastAPI:
    cfg = config or CollectorConfig()
    limiter = RateLimiter(cfg.rate_limit_per_min)
    bearer = HTTPBearer(auto_error=False, description="the collector's --admin-token")
    running: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not cfg.reflector_ports:
            yield
            return
        from probe import reflector

        refl = await reflector.start(cfg.reflector_host, cfg.reflector_ports)
        for port, reason in sorted(refl.failed.items()):
            log.warning("reflector: cannot listen on UDP %s:%d: %s", cfg.reflector_host, port,
                        reason)
        if not refl.ports:
            raise RuntimeError(f"reflector: could not listen on any UDP port of "
                               f"{cfg.reflector_host}")
        log.info("reflector listening on %s UDP ports %s", cfg.reflector_host,
                 ",".join(map(str, refl.ports)))
        running["reflector"] = refl
        try:
            yield
        finally:
            refl.close()
            running.clear()

    app = FastAPI(
        lifespan=lifespan,
        title="voip-probe collector",
        version=__version__,
        description=(
            "Receives voip-probe results files, stores them immutably by SHA-256 and "
            "answers queries over their measurements."
        ),
    )

    def admin(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if cfg.admin_token is None:
            raise ApiError(403, "admin endpoints are disabled (start serve with --admin-token)")
        given = creds.credentials if creds is not None else ""
        if not hmac.compare_digest(given.encode(), cfg.admin_token.encode()):
            raise ApiError(401, "admin token missing or wrong (Authorization: Bearer TOKEN)")

    @app.middleware("http")
    async def rate_limit_and_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        client = request.client.host if request.client else ""
        wait_s = limiter.check(client) if request.url.path.startswith("/api/") else 0.0
        nul = [k for k, v in request.query_params.multi_items() if "\x00" in k + v]
        if nul:
            response: Response = JSONResponse(
                {"error": f"query parameter {nul[0]!r} must not contain NUL characters"},
                status_code=400)
        elif wait_s > 0:
            response = JSONResponse(
                {"error": f"rate limit exceeded; retry in {wait_s:.0f} s"}, status_code=429,
                headers={"Retry-After": str(max(1, int(wait_s + 0.999)))},
            )
        else:
            response = await call_next(request)
        # Deliberately no client address here (nor in uvicorn's access log: it is off).
        log.info("%s %s %d %.0f ms", request.method, request.url.path,
                 response.status_code, (time.perf_counter() - started) * 1000)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(Rejected)
    async def _rejected(_: Request, exc: Rejected) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StorageUnavailable)
    async def _unavailable(_: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("storage unavailable: %s", exc)
        return JSONResponse({"error": f"{exc}; retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "query")
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.post(
        "/api/v1/results",
        status_code=201,
        response_model=Stored,
        responses={200: {"model": Stored, "description": "this file was stored before"},
                   **_ERRORS},
        openapi_extra={"requestBody": {
            "required": True,
            "description": "a results file (JSON Lines), optionally gzip-compressed "
                           "(Content-Encoding: gzip)",
            "content": {t: {"schema": {"type": "string", "format": "binary"}}
                        for t in RESULTS_MEDIA_TYPES},
        }},
        summary="Upload a results file",
    )
    async def upload_results(
        request: Request,
        filename: Annotated[str | None, Query(
            max_length=200, description="the file's original name (metadata only)")] = None,
        partial: Annotated[bool, Query(
            description="a crashed run's file: no summary line (torn line removed)")] = False,
    ) -> Response:
        name = check_filename(filename)
        body = await _read_body(request, cfg.max_bytes)
        data = inflate(body, request.headers.get("content-encoding"), cfg.max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        known = await run_in_threadpool(storage.stored_count, digest)
        if known is not None:  # the same bytes passed validation when first stored
            return JSONResponse({"id": digest, "measurements": known}, status_code=200)
        upload = await run_in_threadpool(parse_upload, data, partial=partial,
                                         max_lines=cfg.max_lines)
        result = await run_in_threadpool(storage.store, upload, name)
        if result.conflict is not None:
            raise ApiError(
                409,
                f"report_id {upload.report_id!r} was already stored as a different file "
                f"(id {result.conflict}); a replayed or altered copy is refused",
            )
        return JSONResponse({"id": result.id, "measurements": result.measurements},
                            status_code=201 if result.created else 200)

    @app.get("/api/v1/measurements", response_model=MeasurementPage, responses=_ERRORS,
             summary="Indexed measurements, oldest upload first, paged")
    def measurements(
        filters: Annotated[Filters, Depends(_filters)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[int, Query(ge=0, le=2**62, description="cursor from `next`")] = 0,
    ) -> Response:
        items = storage.measurements(filters, limit + 1, after)
        more = len(items) > limit
        items = items[:limit]
        # Assembled from the stored JSON text of each record, which stays byte for byte.
        parts = [
            f'{{"cursor":{i["cursor"]:d},"upload_id":{json.dumps(i["upload_id"])},'
            f'"line":{i["line"]:d},"measurement":{i["measurement_json"]}}}'
            for i in items
        ]
        following = json.dumps(items[-1]["cursor"] if more else None)
        body = '{"measurements":[' + ",".join(parts) + '],"next":' + following + "}"
        return Response(body.encode("ascii"), media_type="application/json")

    @app.get("/api/v1/summary", response_model=SummaryBody, responses=_ERRORS,
             summary="Run verdicts per day, network (ASN + type), service and function")
    def summary(filters: Annotated[Filters, Depends(_filters)]) -> dict[str, Any]:
        return {"summary": storage.summary(filters)}

    @app.get("/api/v1/results", response_model=UploadList, responses=_ERRORS,
             dependencies=[Depends(admin)], summary="Export the list of stored files (admin)")
    def list_results(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        items = storage.list_uploads(limit + 1, after)
        more = len(items) > limit
        items = items[:limit]
        return {"uploads": items, "next": items[-1]["id"] if more else None}

    @app.get("/api/v1/results/{upload_id}", responses={
                 200: {"content": {"application/x-ndjson": {}}, "description": "raw file"},
                 **_ERRORS},
             response_class=Response, dependencies=[Depends(admin)],
             summary="Export one stored results file, byte for byte (admin)")
    def get_result(upload_id: Annotated[str, Path(pattern=_SHA256)]) -> Response:
        data = storage.raw_file(upload_id)
        if data is None:
            raise ApiError(404, f"no stored file with id {upload_id}")
        return Response(data, media_type="application/x-ndjson")

    @app.delete("/api/v1/results/{upload_id}", response_model=Deleted, responses=_ERRORS,
                dependencies=[Depends(admin)], summary="Delete a stored file (admin)")
    def delete_result(upload_id: Annotated[str, Path(pattern=_SHA256)]) -> dict[str, Any]:
        if not storage.delete(upload_id):
            raise ApiError(404, f"no stored file with id {upload_id}")
        return {"id": upload_id, "deleted": True}

    @app.get("/api/v1/health", summary="Liveness and database reachability",
             responses=_ERRORS)
    def health() -> dict[str, Any]:
        storage.list_uploads(1, None)
        refl = running.get("reflector")
        return {"status": "ok", "database": storage.db.kind,
                "reflector_ports": list(refl.ports) if refl is not None else []}

    return app


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """Read the body, refusing early (before reading it all) when it is too large."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length")
        if int(declared) > max_bytes:
            raise ApiError(413, f"body larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"body larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
