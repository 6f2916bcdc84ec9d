"""``GET /api/v1/health``: liveness, database reachability (503 when it is down) and the
UDP ports of the in-process reflector, if any."""

from typing import Any

from fastapi import APIRouter, Request

from probe.collector.deps import StorageDep
from probe.collector.schemas import ERRORS

router = APIRouter()


@router.get("/api/v1/health", summary="Liveness and database reachability",
            responses=ERRORS)
def health(request: Request, storage: StorageDep) -> dict[str, Any]:
    storage.list_uploads(1, None)
    refl = request.app.state.reflector
    return {"status": "ok", "database": storage.db.kind,
            "reflector_ports": list(refl.ports) if refl is not None else []}
