"""``GET /api/v1/reflector``: the reflector this collector runs (``serve --reflector-ports``),
so that a probe configured with only the collector's URL finds it (DESIGN.md "Collector";
the probe side is :mod:`probe.reflector_choice`).

The answer is ``{"reflector": {"host": NAME, "ports": [...]}}`` while the reflector
listens, else ``{"reflector": null}``. NAME is ``serve --reflector-name`` when given (a
collector behind a proxy, or a reflector on another address), else the host the client
used to reach this collector: the reflector runs on the same machine. Nothing about the
client is read but the ``Host`` header of its own request.
"""

from typing import Any

from fastapi import APIRouter, Request

from probe.collector.deps import ConfigDep
from probe.collector.schemas import ERRORS, ReflectorBody

router = APIRouter()


@router.get("/api/v1/reflector", response_model=ReflectorBody, responses=ERRORS,
            summary="The reflector this collector runs, for probes to use")
def advertised_reflector(request: Request, config: ConfigDep) -> dict[str, Any]:
    refl = request.app.state.reflector
    if refl is None or not refl.ports:
        return {"reflector": None}
    host = config.reflector_name or request.url.hostname
    if not host:
        return {"reflector": None}
    return {"reflector": {"host": host, "ports": sorted(refl.ports)}}
