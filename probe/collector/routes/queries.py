"""Queries over the indexed measurements (DESIGN.md "Collector"): ``GET
/api/v1/measurements`` (paged, oldest upload first; a page holds at most ``limit``
measurements and stops before its records pass ``CollectorConfig.page_bytes``, so no
page grows unbounded) and ``GET /api/v1/summary`` (run verdicts per day, network,
service and function), both filtered by :func:`probe.collector.deps.query_filters`."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from probe.collector.deps import ConfigDep, FiltersDep, StorageDep
from probe.collector.schemas import ERRORS, MeasurementPage, SummaryBody

router = APIRouter()


@router.get("/api/v1/measurements", response_model=MeasurementPage, responses=ERRORS,
            summary="Indexed measurements, oldest upload first, paged",
            description="At most `limit` measurements a page, and fewer when their records "
                        "pass the collector's page size in bytes: page on with `next` "
                        "until it is null (a short page is not the end).")
def measurements(
    storage: StorageDep,
    config: ConfigDep,
    filters: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int, Query(ge=0, le=2**62, description="cursor from `next`")] = 0,
) -> Response:
    items, following = storage.measurements(filters, limit, after, config.page_bytes)
    # Assembled from the stored JSON text of each record, which stays byte for byte.
    parts = [
        f'{{"cursor":{i["cursor"]:d},"upload_id":{json.dumps(i["upload_id"])},'
        f'"line":{i["line"]:d},"measurement":{i["measurement_json"]}}}'
        for i in items
    ]
    body = '{"measurements":[' + ",".join(parts) + '],"next":' + json.dumps(following) + "}"
    return Response(body.encode("ascii"), media_type="application/json")


@router.get("/api/v1/summary", response_model=SummaryBody, responses=ERRORS,
            summary="Run verdicts per day, network (ASN + type), service and function")
def summary(storage: StorageDep, filters: FiltersDep) -> dict[str, Any]:
    return {"summary": storage.summary(filters)}
