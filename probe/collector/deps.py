"""FastAPI dependencies of the collector's routes: what a handler is given.

- :func:`get_storage`, :func:`get_config`: the app's storage and settings (``app.state``,
  set by :func:`probe.collector.app.create_app`).
- :func:`limit_rate`: every route under ``/api/`` takes a token of its client's bucket
  (:mod:`probe.collector.ratelimit`) before anything else is done; 429 when empty.
- :func:`require_admin`: ``Authorization: Bearer <--admin-token>``; 403 when the admin
  endpoints are disabled, 401 when the token is missing or wrong (constant-time compare).
- :func:`query_filters`: the query filters ``asn``, ``cc``, ``network_type``, ``service``,
  ``function``, ``since``, ``until`` (UTC), normalised into a
  :class:`~probe.collector.storage.Filters`.
"""

import hmac
import re
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from probe.collector.config import CollectorConfig
from probe.collector.errors import ApiError, rate_limited
from probe.collector.filters import Filters
from probe.collector.ratelimit import take_token
from probe.collector.storage import Storage

_bearer = HTTPBearer(auto_error=False, description="the collector's --admin-token")


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_config(request: Request) -> CollectorConfig:
    config: CollectorConfig = request.app.state.config
    return config


StorageDep = Annotated[Storage, Depends(get_storage)]
ConfigDep = Annotated[CollectorConfig, Depends(get_config)]


async def limit_rate(request: Request) -> None:
    # In a worker thread: with limits in the database, taking a token is a query.
    wait_s = await run_in_threadpool(take_token, request)
    if wait_s > 0:
        raise rate_limited(wait_s)


def require_admin(
    config: ConfigDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if config.admin_token is None:
        raise ApiError(403, "admin endpoints are disabled (start serve with --admin-token)")
    given = creds.credentials if creds is not None else ""
    if not hmac.compare_digest(given.encode(), config.admin_token.encode()):
        raise ApiError(401, "admin token missing or wrong (Authorization: Bearer TOKEN)")


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


def query_filters(
    asn: Annotated[str | None, Query(max_length=16, description="e.g. AS36903")] = None,
    cc: Annotated[str | None, Query(max_length=2, description="country code, e.g. MA")] = None,
    service: Annotated[str | None, Query(max_length=64)] = None,
    function: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=32, description="UTC, inclusive")] = None,
    until: Annotated[str | None, Query(max_length=32, description="UTC, inclusive")] = None,
    network_type: Annotated[str | None, Query(
        max_length=32, description="mobile, fixed, wifi or unknown")] = None,
) -> Filters:
    if asn is not None:
        asn = asn.upper()
        if re.fullmatch(r"\d+", asn):
            asn = "AS" + asn
    return Filters(asn=asn, cc=cc.upper() if cc else None, service=service,
                   function=function, since=parse_time("since", since, end=False),
                   until=parse_time("until", until, end=True), network_type=network_type)


FiltersDep = Annotated[Filters, Depends(query_filters)]
