"""Queries over the indexed measurements (DESIGN.md "Collector"): ``GET
/api/v1/measurements`` (paged, oldest upload first) and ``GET /api/v1/summary`` (run
verdicts per day, network, service and function), both filtered by
:func:`probe.collector.deps.query_filters`."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from probe.collector.deps import FiltersDep, StorageDep
from probe.collector.schemas import ERRORS, MeasurementPage, SummaryBody

router = APIRouter()


@router.get("/api/v1/measurements", response_model=MeasurementPage, responses=ERRORS,
            summary="Indexed measurements, oldest upload first, paged")
def measurements(
    storage: StorageDep,
    filters: FiltersDep,
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


@router.get("/api/v1/summary", response_model=SummaryBody, responses=ERRORS,
            summary="Run verdicts per day, network (ASN + type), service and function")
def summary(storage: StorageDep, filters: FiltersDep) -> dict[str, Any]:
    return {"summary": storage.summary(filters)}
