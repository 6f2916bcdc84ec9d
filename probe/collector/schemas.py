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

class EventItem(BaseModel):
    cc: str
    asn: str
    network_type: str
    service: str
    function: str
    kind: str = Field(description="onset (the function stopped working) or restoration")
    at: str = Field(description="UTC time of the first run in the new state")
    previous: str = Field(description="UTC time of the last run still in the old state: the "
                                      "change happened between `previous` and `at`")
    last_at: str = Field(description="when the last of the agreeing probes saw the change")
    methods: list[str] = Field(description="how it is blocked (onset) or was (restoration)")
    probes: int = Field(description="independent probes (pseudonyms) that saw the change")
    weight: float = Field(description="their summed weight (a steady probe weighs 1; "
                                      "flapping or mostly inconclusive probes less)")
    confidence: str = Field(description="confirmed (weight >= the collector's "
                                        "--confirm-probes) or single-probe")
    pending: bool = Field(description="no probe has held the new state for the window yet")
    measurements: str = Field(description="the API query for the raw measurements behind it")


class EventRule(BaseModel):
    probes: float = Field(description="weight of agreeing probes that confirms an event (K)")
    window_s: float = Field(description="probes agree when they saw the change within this; "
                                        "a probe's change must also last this long")
    impaired_is_down: bool


class EventPage(BaseModel):
    events: list[EventItem]
    next: int | None = Field(description="pass as ?offset= to get the next page; null at the end")
    rule: EventRule


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
