"""The collector's HTTP routes, one module per concern (DESIGN.md "Collector").

- :mod:`~probe.collector.routes.upload`: ``POST /api/v1/results``.
- :mod:`~probe.collector.routes.queries`: ``GET /api/v1/measurements``, ``GET /api/v1/summary``.
- :mod:`~probe.collector.routes.admin`: export and delete stored files (admin token).
- :mod:`~probe.collector.routes.health`: ``GET /api/v1/health``.
- :mod:`~probe.collector.routes.reflector`: ``GET /api/v1/reflector`` (the reflector it runs).
- :mod:`~probe.collector.routes.status`: the status page (``/``, ``/network/...``) and
  ``GET /api/v1/events``.

:data:`ROUTERS` is their order in the OpenAPI description.
"""

from fastapi import APIRouter

from probe.collector.routes import admin, health, queries, reflector, status, upload

ROUTERS: tuple[APIRouter, ...] = (upload.router, queries.router, status.router, admin.router,
                                  health.router, reflector.router)
