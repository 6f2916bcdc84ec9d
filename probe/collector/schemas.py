"""The collector API's answer bodies, as published in its OpenAPI description.

Every error answer is :class:`ErrorBody` (``{"error": "..."}``); :data:`ERRORS` lists the
error statuses each route declares.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# The media types an upload may declare: a results file is JSON Lines, sent as is.
RESULTS_MEDIA_TYPES = ("application/x-ndjson", "application/jsonl", "text/plain",
                       "application/octet-stream")


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


class AdvertisedReflector(BaseModel):
    host: str = Field(description="host name (or address) of the reflector to use")
    ports: list[int] = Field(description="UDP ports it answers on")


class ReflectorBody(BaseModel):
    reflector: AdvertisedReflector | None = Field(
        description="the reflector this collector runs; null when it runs none")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
