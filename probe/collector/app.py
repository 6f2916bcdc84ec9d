"""The collector's HTTP API (FastAPI), DESIGN.md "Collector": the app, put together.

- ``POST /api/v1/results``: a results file as the body (``Content-Encoding: gzip``
  allowed). ``201 {"id", "measurements"}`` when new, ``200`` with the same body when that
  file was stored before, ``4xx {"error"}`` otherwise, ``503`` when the database is down.
- ``GET /api/v1/measurements`` and ``GET /api/v1/summary``: queries (filters ``asn``,
  ``cc``, ``service``, ``function``, ``since``, ``until``).
- Admin (``Authorization: Bearer <--admin-token>``): ``GET /api/v1/results`` (export the
  index), ``GET /api/v1/results/{id}`` (the raw file), ``DELETE /api/v1/results/{id}``.
- ``GET /openapi.json``: the OpenAPI description.

:func:`create_app` keeps the storage, the settings and the rate limiter in ``app.state``
(the routes get them through :mod:`probe.collector.deps`), runs the reflector for the
app's lifetime when asked, and includes the routers of :mod:`probe.collector.routes`
behind the rate limit. Every error answer is JSON ``{"error": "..."}``
(:mod:`probe.collector.errors`); bad input is never a 5xx. Client addresses are used only,
in memory, by the rate limiter, and are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from probe import __version__
from probe.collector.config import CollectorConfig
from probe.collector.deps import limit_rate
from probe.collector.errors import install_error_handlers
from probe.collector.ratelimit import DailyQuota, RateLimiter, take_token
from probe.collector.routes import ROUTERS
from probe.collector.storage import Storage

log = logging.getLogger("probe.collector")


def create_app(storage: Storage, config: CollectorConfig | None = None) -> FastAPI:
    cfg = config or CollectorConfig()
    app = FastAPI(
        lifespan=_lifespan,
        title="voip-probe collector",
        version=__version__,
        description=(
            "Receives voip-probe results files, stores them immutably by SHA-256 and "
            "answers queries over their measurements."
        ),
    )
    app.state.storage = storage
    app.state.config = cfg
    shared = cfg.shared_limits if cfg.shared_limits is not None \
        else storage.db.kind == "postgresql"
    if shared:  # several collectors on one database: one allowance per client for all
        from probe.collector.shared_limits import SharedDailyQuota, SharedRateLimiter

        app.state.limiter = SharedRateLimiter(storage.db, cfg.rate_limit_per_min)
        app.state.quota = SharedDailyQuota(storage.db, cfg.daily_quota_bytes)
    else:
        app.state.limiter = RateLimiter(cfg.rate_limit_per_min)
        app.state.quota = DailyQuota(cfg.daily_quota_bytes)
    app.state.reflector = None
    app.middleware("http")(_guard_and_log)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(limit_rate)])
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Also run the reflector (:mod:`probe.reflector`) while the app runs, if asked."""
    cfg: CollectorConfig = app.state.config
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
    app.state.reflector = refl
    try:
        yield
    finally:
        refl.close()
        app.state.reflector = None


async def _guard_and_log(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Refuse NUL in the query string on every path (no database text column can hold
    it), and log each request: method, path, status and time, never the client."""
    started = time.perf_counter()
    nul = [k for k, v in request.query_params.multi_items() if "\x00" in k + v]
    if nul:
        take_token(request)  # a refused request under /api/ still counts against its client
        response: Response = JSONResponse(
            {"error": f"query parameter {nul[0]!r} must not contain NUL characters"},
            status_code=400)
    else:
        response = await call_next(request)
    # Deliberately no client address here (nor in uvicorn's access log: it is off).
    log.info("%s %s %d %.0f ms", request.method, request.url.path,
             response.status_code, (time.perf_counter() - started) * 1000)
    return response
