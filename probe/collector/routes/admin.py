"""Admin routes (``Authorization: Bearer <--admin-token>``, :func:`probe.collector.deps.
require_admin`): ``GET /api/v1/results`` exports the index of stored files, ``GET
/api/v1/results/{id}`` one raw file byte for byte, ``DELETE /api/v1/results/{id}`` deletes
one."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from probe.collector.deps import StorageDep, require_admin
from probe.collector.errors import ApiError
from probe.collector.schemas import ERRORS, Deleted, UploadList

_SHA256 = r"^[0-9a-f]{64}$"

router = APIRouter(dependencies=[Depends(require_admin)])


@router.get("/api/v1/results", response_model=UploadList, responses=ERRORS,
            summary="Export the list of stored files (admin)")
def list_results(
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    items = storage.list_uploads(limit + 1, after)
    more = len(items) > limit
    items = items[:limit]
    return {"uploads": items, "next": items[-1]["id"] if more else None}


@router.get("/api/v1/results/{upload_id}", responses={
                200: {"content": {"application/x-ndjson": {}}, "description": "raw file"},
                **ERRORS},
            response_class=Response,
            summary="Export one stored results file, byte for byte (admin)")
def get_result(storage: StorageDep,
               upload_id: Annotated[str, Path(pattern=_SHA256)]) -> Response:
    data = storage.raw_file(upload_id)
    if data is None:
        raise ApiError(404, f"no stored file with id {upload_id}")
    return Response(data, media_type="application/x-ndjson")


@router.delete("/api/v1/results/{upload_id}", response_model=Deleted, responses=ERRORS,
               summary="Delete a stored file (admin)")
def delete_result(storage: StorageDep,
                  upload_id: Annotated[str, Path(pattern=_SHA256)]) -> dict[str, Any]:
    if not storage.delete(upload_id):
        raise ApiError(404, f"no stored file with id {upload_id}")
    return {"id": upload_id, "deleted": True}
