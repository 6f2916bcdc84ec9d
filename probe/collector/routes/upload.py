"""``POST /api/v1/results``: receive a results file (DESIGN.md "Collector").

The body is a results file, ``Content-Encoding: gzip`` allowed. ``201 {"id",
"measurements"}`` when new, ``200`` with the same body when that file was stored before,
``409`` when its report id was stored as a different file, ``4xx {"error"}`` when it fails
validation (:mod:`probe.collector.validate`). The body is validated as it streams in
(:mod:`probe.collector.intake`), and refused as soon as it breaks a rule or grows past a
limit, before it is read whole; a client past its daily quota gets 429.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from probe.collector.deps import ConfigDep, StorageDep
from probe.collector.errors import ApiError
from probe.collector.intake import receive
from probe.collector.schemas import ERRORS, RESULTS_MEDIA_TYPES, Stored
from probe.collector.validate import check_filename

router = APIRouter()


@router.post(
    "/api/v1/results",
    status_code=201,
    response_model=Stored,
    responses={200: {"model": Stored, "description": "this file was stored before"},
               **ERRORS},
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
    storage: StorageDep,
    config: ConfigDep,
    filename: Annotated[str | None, Query(
        max_length=200, description="the file's original name (metadata only)")] = None,
    partial: Annotated[bool, Query(
        description="a crashed run's file: no summary line (torn line removed)")] = False,
) -> Response:
    name = check_filename(filename)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length")
        if int(declared) > config.max_bytes:
            raise ApiError(413, f"body larger than the limit of {config.max_bytes} bytes")
    async with receive(request, storage.blobs, config, partial) as (intake, upload):
        known = await run_in_threadpool(storage.stored_count, upload.sha256)
        if known is not None:  # stored before: it takes no more of the quota
            return JSONResponse({"id": upload.sha256, "measurements": known},
                                status_code=200)
        result = await run_in_threadpool(storage.store, upload, name, config.stored_limit)
        if result.created:
            intake.keep_quota()
    if result.conflict is not None:
        raise ApiError(
            409,
            f"report_id {upload.report_id!r} was already stored as a different file "
            f"(id {result.conflict}); a replayed or altered copy is refused",
        )
    return JSONResponse({"id": result.id, "measurements": result.measurements},
                        status_code=201 if result.created else 200)
