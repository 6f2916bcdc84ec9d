"""``POST /api/v1/results``: receive a results file (DESIGN.md "Collector").

The body is a results file, ``Content-Encoding: gzip`` allowed. ``201 {"id",
"measurements"}`` when new, ``200`` with the same body when that file was stored before,
``409`` when its report id was stored as a different file, ``4xx {"error"}`` when it fails
validation (:mod:`probe.collector.validate`). The body is refused as soon as it grows past
the limit, before it is read whole.
"""

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from probe.collector.deps import ConfigDep, StorageDep
from probe.collector.errors import ApiError
from probe.collector.schemas import ERRORS, RESULTS_MEDIA_TYPES, Stored
from probe.collector.validate import check_filename, inflate, parse_upload

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
    body = await _read_body(request, config.max_bytes)
    data = inflate(body, request.headers.get("content-encoding"), config.max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    known = await run_in_threadpool(storage.stored_count, digest)
    if known is not None:  # the same bytes passed validation when first stored
        return JSONResponse({"id": digest, "measurements": known}, status_code=200)
    upload = await run_in_threadpool(parse_upload, data, partial=partial,
                                     max_lines=config.max_lines)
    result = await run_in_threadpool(storage.store, upload, name)
    if result.conflict is not None:
        raise ApiError(
            409,
            f"report_id {upload.report_id!r} was already stored as a different file "
            f"(id {result.conflict}); a replayed or altered copy is refused",
        )
    return JSONResponse({"id": result.id, "measurements": result.measurements},
                        status_code=201 if result.created else 200)


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
