"""The public status page and its JSON twin (issue 17).

- ``GET /``: the overview (:func:`probe.collector.page.render_overview`); query ``cc``,
  ``asn``, ``service``, ``since``, ``until`` (the filter form; empty fields are ignored).
- ``GET /network/{cc}/{asn}/{network_type}``: one network's page, query ``service``,
  ``since``, ``until``; 404 when nothing is known about it.
- ``GET /api/v1/events``: the events with their confidence, newest first (filters as
  the other queries, plus ``confidence``; paged by ``offset``), in the OpenAPI document.

Pages are HTML from the page cache (:class:`probe.collector.page.PageCache`), sent with a
Content-Security-Policy that allows only the page's own inline style and script, so a
page can fetch nothing from anywhere. A bad query answers a short HTML page with the
reason (400); the JSON endpoint answers ``{"error"}`` like the rest of the API.
"""

import base64
import hashlib
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from probe.collector.aggregate import StatusReader
from probe.collector.deps import FiltersDep, StorageDep, parse_time
from probe.collector.errors import ApiError
from probe.collector.filters import Filters
from probe.collector.page import (
    SCRIPT,
    PageCache,
    PageRequest,
    raw_href,
    render_network,
    render_overview,
)
from probe.collector.schemas import ERRORS, EventPage

router = APIRouter()

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{_SCRIPT_HASH}'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_CC = re.compile(r"[A-Za-z]{2}")
_ASN = re.compile(r"(?:AS)?(\d{1,10})", re.IGNORECASE)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
Text = Annotated[str | None, Query(max_length=64)]


def _cache(request: Request) -> PageCache:
    cache: PageCache | None = getattr(request.app.state, "page_cache", None)
    if cache is None:
        cache = PageCache(request.app.state.config.page_cache_s)
        request.app.state.page_cache = cache
    return cache


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _page_filters(cc: str | None, asn: str | None, service: str | None, since: str | None,
                  until: str | None) -> Filters:
    cc, asn, service = _blank(cc), _blank(asn), _blank(service)
    if cc is not None and not _CC.fullmatch(cc):
        raise ApiError(400, "country: expected a two-letter code such as MA")
    found = _ASN.fullmatch(asn) if asn is not None else None
    if asn is not None and found is None:
        raise ApiError(400, "ASN: expected a number such as AS36903 or 36903")
    if service is not None and not _NAME.fullmatch(service):
        raise ApiError(400, "service: expected a service name such as whatsapp")
    return Filters(
        cc=cc.upper() if cc else None, asn=f"AS{found.group(1)}" if found else None,
        service=service, since=parse_time("from", _blank(since), end=False),
        until=parse_time("to", _blank(until), end=True))


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _problem(status: int, message: str) -> HTMLResponse:
    from html import escape

    return _html("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 f"<title>{status}</title></head><body><h1>{status}</h1>"
                 f"<p>{escape(message)}</p><p><a href=\"/\">the status page</a></p>"
                 "</body></html>\n", status)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def overview(request: Request, storage: StorageDep, cc: Text = None, asn: Text = None,
             service: Text = None, since: Text = None, until: Text = None) -> HTMLResponse:
    try:
        filters = _page_filters(cc, asn, service, since, until)
    except ApiError as exc:
        return _problem(400, exc.message)
    reader = StatusReader(storage.db)
    rule = storage.status.rule
    page = _cache(request).get(
        f"/?{filters!r}",
        lambda: reader.generation(Filters(cc=filters.cc, asn=filters.asn)),
        lambda: render_overview(reader, PageRequest(filters), rule))
    assert page is not None  # the overview always renders
    return _html(page)


@router.get("/network/{cc}/{asn}/{network_type}", response_class=HTMLResponse,
            include_in_schema=False)
def network(request: Request, storage: StorageDep,
            cc: Annotated[str, Path(max_length=2)], asn: Annotated[str, Path(max_length=16)],
            network_type: Annotated[str, Path(max_length=32)], service: Text = None,
            since: Text = None, until: Text = None) -> HTMLResponse:
    try:
        filters = _page_filters(cc, asn, service, since, until)
    except ApiError as exc:
        return _problem(400, exc.message)
    assert filters.cc is not None and filters.asn is not None
    where = (filters.cc, filters.asn, network_type)
    reader = StatusReader(storage.db)
    rule = storage.status.rule
    page = _cache(request).get(
        f"/network?{filters!r}{network_type!r}",
        lambda: reader.generation(Filters(cc=where[0], asn=where[1],
                                                network_type=network_type)),
        lambda: render_network(reader, PageRequest(
            Filters(service=filters.service, since=filters.since,
                          until=filters.until), where), rule))
    if page is None:
        return _problem(404, f"nothing is known about {' '.join(where)}")
    return _html(page)


@router.get("/api/v1/events", response_model=EventPage, responses=ERRORS,
            summary="Onset and restoration events with their confidence, newest first")
def events(
    storage: StorageDep,
    filters: FiltersDep,
    confidence: Annotated[Literal["confirmed", "single-probe"] | None, Query(
        description="only events of this confidence")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    """Per network (country, ASN, network type), service and function: each onset or
    restoration, with the probes that agree on it and whether that confirms it (the
    crowd rule of the status page)."""
    status_filters = Filters(
        cc=filters.cc, asn=filters.asn, network_type=filters.network_type,
        service=filters.service, function=filters.function, since=filters.since,
        until=filters.until)
    found = StatusReader(storage.db).events(status_filters, confidence, limit + 1, offset)
    rule = storage.status.rule
    more = len(found) > limit
    return {"events": [{**e, "measurements": raw_href(e)} for e in found[:limit]],
            "next": offset + limit if more else None,
            "rule": {"probes": rule.probes, "window_s": rule.window_s,
                     "impaired_is_down": rule.impaired_is_down}}
